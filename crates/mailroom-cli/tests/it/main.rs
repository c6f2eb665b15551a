//! End-to-end tests of the `mailroom` binary on a temporary SQLite file.

mod agent;
mod agent_scale;
mod app_only;
mod bad_input;
mod commands;
mod completions;
mod configure;
mod console;
mod demo;
mod doctor;
mod limits;
mod newcomer;
mod oauth;
mod scale;
mod send;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sea_orm::{ConnectionTrait, Database, Statement};

/// A temporary database and a way to run `mailroom` against it.
struct Cli {
    dir: tempfile::TempDir,
    database: PathBuf,
}

/// What one run of `mailroom` did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "mailroom failed: {self:?}");
        self
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

impl Cli {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("erp.sqlite");
        Self { dir, database }
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.database.display())
    }

    fn key_file(&self) -> PathBuf {
        self.dir.path().join("erp.sqlite.key")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mailroom"));
        command
            .args(args)
            .env("MAILROOM_DATABASE_URL", self.url())
            .env_remove("MAILROOM_KEY")
            .env_remove("MAILROOM_KEY_FILE")
            .env_remove("MAILROOM_LOG")
            .env("HOME", self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, "", &[])
    }

    fn run_with(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
        let mut command = self.command(args);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start mailroom");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().unwrap();
        Run {
            code: status.code().expect("mailroom exited by a signal"),
            stdout: String::from_utf8(stdout).unwrap(),
            stderr: String::from_utf8(stderr).unwrap(),
        }
    }

    fn path(&self) -> &Path {
        &self.database
    }
}

/// Every row of every table, each value through SQLite's `quote()`, in a stable order: a
/// textual dump that differs whenever any stored byte differs.
async fn dump(database: &Path) -> String {
    let db = Database::connect(format!("sqlite://{}?mode=ro", database.display()))
        .await
        .unwrap();
    let backend = db.get_database_backend();
    let query = |sql: String| Statement::from_string(backend, sql);
    let tables: Vec<String> = db
        .query_all(query(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name".to_owned(),
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect();
    let mut out = String::new();
    for table in tables {
        let columns: Vec<String> = db
            .query_all(query(format!(
                "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
            )))
            .await
            .unwrap()
            .iter()
            .map(|row| row.try_get_by_index::<String>(0).unwrap())
            .collect();
        let select = columns
            .iter()
            .map(|c| format!("quote(\"{c}\")"))
            .collect::<Vec<_>>()
            .join(" || ',' || ");
        out.push_str(&format!("-- {table} ({})\n", columns.join(",")));
        for row in db
            .query_all(query(format!(
                "SELECT {select} FROM \"{table}\" ORDER BY rowid"
            )))
            .await
            .unwrap()
        {
            out.push_str(&row.try_get_by_index::<String>(0).unwrap());
            out.push('\n');
        }
    }
    db.close().await.unwrap();
    out
}
