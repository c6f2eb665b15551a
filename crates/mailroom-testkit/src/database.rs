//! A fresh, migrated database per test, on SQLite or on PostgreSQL.

use std::fmt;
use std::path::{Path, PathBuf};

use rand::Rng;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

/// The environment variable naming the PostgreSQL server for tests.
pub const POSTGRES_URL_VARIABLE: &str = "MAILROOM_TEST_POSTGRES_URL";

/// For benchmarks' `main`: when [`POSTGRES_URL_VARIABLE`] is not set, runs this program
/// again with it set to `default_url` (the local server) and exits with its status, rather
/// than change this process's environment; returns when it is set.
#[allow(clippy::print_stderr)] // a benchmark says which server it uses
pub fn rerun_with_postgres_default(default_url: &str) {
    if std::env::var_os(POSTGRES_URL_VARIABLE).is_some() {
        return;
    }
    eprintln!("{POSTGRES_URL_VARIABLE} is not set; using {default_url}");
    let status = std::process::Command::new(std::env::current_exe().expect("own path"))
        .args(std::env::args_os().skip(1))
        .env(POSTGRES_URL_VARIABLE, default_url)
        .status()
        .expect("run the benchmark again");
    std::process::exit(status.code().unwrap_or(1));
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A new SQLite file in a temporary directory.
    Sqlite,
    /// A new database on the PostgreSQL server of `MAILROOM_TEST_POSTGRES_URL`.
    Postgres,
}

/// A fresh, migrated database that is removed when the test ends.
pub struct TestDatabase {
    /// The backend.
    pub backend: Backend,
    /// The URL the database was opened with (give it to code under test).
    pub url: String,
    /// The open, migrated connection.
    pub db: DatabaseConnection,
    /// The temporary directory holding the SQLite file (and any key file); kept alive.
    pub dir: tempfile::TempDir,
    postgres_admin: Option<(String, String)>,
}

impl fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDatabase")
            .field("backend", &self.backend)
            .field("url", &self.url)
            .finish()
    }
}

/// The PostgreSQL server URL for tests, or a panic that says how to provide it.
pub fn postgres_server_url() -> String {
    std::env::var(POSTGRES_URL_VARIABLE).unwrap_or_else(|_| {
        panic!(
            "{POSTGRES_URL_VARIABLE} is not set: PostgreSQL tests need a server. Run the tests with \
             `cargo xtask ci`, or set {POSTGRES_URL_VARIABLE}=postgres://postgres@127.0.0.1:5432/test"
        )
    })
}

fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base
        .find("://")
        .map(|scheme| scheme + 3)
        .and_then(|start| base[start..].find('/').map(|slash| start + slash))
        .unwrap_or(base.len());
    let mut new = format!("{}/{database}", &base[..authority_end]);
    if let Some(query) = query {
        new.push('?');
        new.push_str(query);
    }
    new
}

impl TestDatabase {
    /// A fresh database on `backend`, migrated.
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        match backend {
            Backend::Sqlite => {
                let url = sqlite_url(&dir.path().join("mailroom.sqlite"));
                let db = mailroom_migrations::open(&url)
                    .await
                    .expect("open and migrate the SQLite test database");
                Self {
                    backend,
                    url,
                    db,
                    dir,
                    postgres_admin: None,
                }
            }
            Backend::Postgres => {
                let server = postgres_server_url();
                let name = format!("mailroom_test_{:016x}", rand::thread_rng().r#gen::<u64>());
                let admin = Database::connect(server.as_str()).await.unwrap_or_else(|error| {
                    panic!("cannot connect to PostgreSQL at {server} ({POSTGRES_URL_VARIABLE}): {error}")
                });
                admin
                    .execute(Statement::from_string(
                        admin.get_database_backend(),
                        format!("CREATE DATABASE {name}"),
                    ))
                    .await
                    .expect("create the PostgreSQL test database");
                admin.close().await.ok();
                let url = replace_database(&server, &name);
                let db = mailroom_migrations::open(&url)
                    .await
                    .expect("open and migrate the PostgreSQL test database");
                Self {
                    backend,
                    url,
                    db,
                    dir,
                    postgres_admin: Some((server, name)),
                }
            }
        }
    }

    /// The directory for files that belong with this database (key files, outputs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Closes the database and, on PostgreSQL, drops it.
    pub async fn finish(self) {
        self.db.close().await.ok();
        if let Some((server, name)) = self.postgres_admin {
            if let Ok(admin) = Database::connect(server.as_str()).await {
                admin
                    .execute(Statement::from_string(
                        admin.get_database_backend(),
                        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    ))
                    .await
                    .ok();
                admin.close().await.ok();
            }
        }
    }
}

/// The sea-orm URL of an SQLite file, created if missing.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// A path inside a new temporary directory, which lives as long as the returned guard.
pub fn temp_path(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join(name);
    (dir, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            replace_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            replace_database("postgres://u:p@h:1/test?sslmode=disable", "x"),
            "postgres://u:p@h:1/x?sslmode=disable"
        );
        assert_eq!(replace_database("postgres://h", "x"), "postgres://h/x");
    }
}
