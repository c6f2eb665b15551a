//! Repository checks that need no build, run first by `cargo xtask ci`: each returns every
//! offending place (`file:line`) so one run shows all of them.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};

use crate::workspace::CLI_PACKAGE;

/// One offending place.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Finding {
    /// `file:line` relative to the workspace root (or just the file).
    pub(crate) location: String,
    pub(crate) problem: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.problem)
    }
}

/// A check's name, what it enforces, and what it found.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) name: &'static str,
    pub(crate) rule: &'static str,
    pub(crate) findings: Vec<Finding>,
}

/// Runs every check; `tracked` is `git ls-files` (paths relative to `root`).
pub(crate) fn run_all(root: &Path, tracked: &[String]) -> Result<Vec<Report>> {
    Ok(vec![
        Report {
            name: "no-cli-in-libraries",
            rule: "a library crate's src/ names no `mailroom ...` command: library errors carry a Remedy that each front end renders",
            findings: cli_named_in_library_src(root)?,
        },
        Report {
            name: "no-path-outside-crate",
            rule: "no #[path] attribute under crates/ reaches outside its own crate: shared test code lives in mailroom-testkit",
            findings: path_attributes_leaving_their_crate(root)?,
        },
        Report {
            name: "one-smtp-server-script",
            rule: "exactly one smtp_server.py among the tracked files (the test kit's)",
            findings: one_smtp_server_script(tracked),
        },
    ])
}

/// A backtick followed by `mailroom `: a CLI command named in a library's prose.
const CLI_IN_PROSE: &str = "`mailroom ";

/// (a) No `` `mailroom `` in the `src/` of any crate under `crates/` but the binary's.
pub(crate) fn cli_named_in_library_src(root: &Path) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    for crate_dir in crate_dirs(root)? {
        if crate_dir
            .file_name()
            .is_some_and(|name| name == CLI_PACKAGE)
        {
            continue;
        }
        for file in files_under(&crate_dir.join("src"))? {
            let Some(text) = read_text(&file)? else {
                continue;
            };
            for (index, line) in text.lines().enumerate() {
                if line.contains(CLI_IN_PROSE) {
                    findings.push(Finding {
                        location: location(root, &file, index + 1),
                        problem: format!("names a CLI command: {}", line.trim()),
                    });
                }
            }
        }
    }
    Ok(findings)
}

/// (b) No `#[path = "..."]` under `crates/` that resolves outside the crate holding it.
pub(crate) fn path_attributes_leaving_their_crate(root: &Path) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    for crate_dir in crate_dirs(root)? {
        for file in files_under(&crate_dir)? {
            if file.extension().is_none_or(|extension| extension != "rs") {
                continue;
            }
            let Some(text) = read_text(&file)? else {
                continue;
            };
            let directory = file.parent().expect("a file has a parent");
            for (index, line) in text.lines().enumerate() {
                let Some(value) = path_attribute(line) else {
                    continue;
                };
                // Rust resolves a `#[path]` on a module declared in a file relative to the
                // directory of that file.
                let target = normalize(&directory.join(value));
                if !target.starts_with(&crate_dir) {
                    findings.push(Finding {
                        location: location(root, &file, index + 1),
                        problem: format!(
                            "#[path = \"{value}\"] includes {}, outside {}",
                            relative(root, &target).display(),
                            relative(root, &crate_dir).display()
                        ),
                    });
                }
            }
        }
    }
    Ok(findings)
}

/// (c) Exactly one tracked `smtp_server.py`.
pub(crate) fn one_smtp_server_script(tracked: &[String]) -> Vec<Finding> {
    let scripts: Vec<&String> = tracked
        .iter()
        .filter(|path| {
            Path::new(path)
                .file_name()
                .is_some_and(|name| name == "smtp_server.py")
        })
        .collect();
    match scripts.len() {
        0 => vec![Finding {
            location: "(repository)".to_owned(),
            problem: "no tracked smtp_server.py: the SMTP tests have no server".to_owned(),
        }],
        1 => Vec::new(),
        count => scripts
            .into_iter()
            .map(|path| Finding {
                location: path.clone(),
                problem: format!("one of {count} tracked copies of smtp_server.py"),
            })
            .collect(),
    }
}

/// The value of a `#[path = "..."]` attribute on this line, if there is one.
fn path_attribute(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix("#[path")?;
    let rest = rest.trim_start().strip_prefix('=')?;
    let rest = rest.trim_start().strip_prefix('"')?;
    rest.split_once('"').map(|(value, _)| value)
}

/// `a/b/../c` -> `a/c`, without touching the file system (the target may not exist).
fn normalize(path: &Path) -> PathBuf {
    let mut normalized = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normalized.pop();
            }
            other => normalized.push(other),
        }
    }
    normalized
}

/// Every folder directly under `crates/`, sorted.
fn crate_dirs(root: &Path) -> Result<Vec<PathBuf>> {
    let crates = root.join("crates");
    let mut dirs = Vec::new();
    for entry in
        std::fs::read_dir(&crates).with_context(|| format!("cannot list {}", crates.display()))?
    {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Every file under `dir` (none when it does not exist), skipping build output and hidden
/// folders, sorted.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name();
            let hidden_or_output = name.to_string_lossy().starts_with('.') || name == "target";
            if entry.file_type()?.is_dir() {
                if !hidden_or_output {
                    pending.push(path);
                }
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The file's text, or `None` for a file that is not UTF-8 (data, not prose or code).
fn read_text(file: &Path) -> Result<Option<String>> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok(String::from_utf8(bytes).ok())
}

fn relative<'a>(root: &Path, path: &'a Path) -> &'a Path {
    path.strip_prefix(root).unwrap_or(path)
}

fn location(root: &Path, file: &Path, line: usize) -> String {
    format!("{}:{line}", relative(root, file).display())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temporary tree with these files (path, contents).
    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    fn locations(findings: &[Finding]) -> Vec<&str> {
        findings
            .iter()
            .map(|finding| finding.location.as_str())
            .collect()
    }

    #[test]
    fn cli_commands_in_library_src_are_found_with_file_and_line() {
        let root = tree(&[
            (
                "crates/mailroom-smtp/src/reply.rs",
                "//! Replies.\nconst HINT: &str = \"run `mailroom sign-in --account 4`\";\n",
            ),
            (
                "crates/mailroom-model/src/deep/server.rs",
                "a\nb\n/// see `mailroom company set`\n",
            ),
            // Not offences: the binary may name itself; prose outside src/; the crate name
            // in backticks; `mailroom` not followed by a space.
            (
                "crates/mailroom-cli/src/remedy.rs",
                "\"run `mailroom sign-in`\"\n",
            ),
            ("crates/mailroom-smtp/README.md", "`mailroom send`\n"),
            ("crates/mailroom-smtp/tests/it/main.rs", "`mailroom send`\n"),
            (
                "crates/mailroom/src/lib.rs",
                "//! `mailroom` and `mailroom-smtp` and `mailroom_model`\n",
            ),
        ]);
        let findings = cli_named_in_library_src(root.path()).unwrap();
        assert_eq!(
            locations(&findings),
            [
                "crates/mailroom-model/src/deep/server.rs:3",
                "crates/mailroom-smtp/src/reply.rs:2"
            ]
        );
        assert_eq!(
            findings[1].to_string(),
            "crates/mailroom-smtp/src/reply.rs:2: names a CLI command: const HINT: &str = \"run `mailroom sign-in --account 4`\";"
        );
    }

    #[test]
    fn path_attributes_reaching_another_crate_are_found() {
        let root = tree(&[
            (
                "crates/mailroom/tests/it/main.rs",
                "mod a;\n#[path = \"../../../mailroom-smtp/tests/it/server.rs\"]\nmod server;\n",
            ),
            (
                "crates/mailroom-cli/benches/b.rs",
                "  #[path=\"/etc/passwd\"] mod x;\n",
            ),
            // Inside its own crate: allowed, however many `..` it takes.
            (
                "crates/mailroom-smtp/benches/smtp.rs",
                "#[path = \"../tests/it/server.rs\"]\nmod server;\n",
            ),
            (
                "crates/mailroom-smtp/src/a/b.rs",
                "#[path = \"../../tests/../src/c.rs\"]\nmod c;\n",
            ),
            // Not Rust: ignored.
            ("crates/mailroom/notes.md", "#[path = \"../../x.rs\"]\n"),
        ]);
        let findings = path_attributes_leaving_their_crate(root.path()).unwrap();
        assert_eq!(
            locations(&findings),
            [
                "crates/mailroom/tests/it/main.rs:2",
                "crates/mailroom-cli/benches/b.rs:1"
            ]
        );
        assert_eq!(
            findings[0].problem,
            "#[path = \"../../../mailroom-smtp/tests/it/server.rs\"] includes crates/mailroom-smtp/tests/it/server.rs, outside crates/mailroom"
        );
    }

    #[test]
    fn exactly_one_smtp_server_script() {
        let tracked = |paths: &[&str]| -> Vec<String> {
            paths.iter().map(|path| (*path).to_owned()).collect()
        };
        assert!(
            one_smtp_server_script(&tracked(&[
                "crates/mailroom-testkit/smtp_server.py",
                "crates/mailroom-smtp/tests/it/main.rs",
                "smtp_server.pyc",
            ]))
            .is_empty()
        );
        let two = one_smtp_server_script(&tracked(&[
            "crates/mailroom/tests/smtp_server.py",
            "crates/mailroom-smtp/tests/smtp_server.py",
        ]));
        assert_eq!(
            locations(&two),
            [
                "crates/mailroom/tests/smtp_server.py",
                "crates/mailroom-smtp/tests/smtp_server.py"
            ]
        );
        assert_eq!(two[0].problem, "one of 2 tracked copies of smtp_server.py");
        assert_eq!(one_smtp_server_script(&[]).len(), 1);
    }

    #[test]
    fn a_clean_tree_passes_every_check() {
        let root = tree(&[
            ("crates/mailroom-model/src/lib.rs", "//! The model.\n"),
            (
                "crates/mailroom-testkit/src/smtp_server.py",
                "print('hi')\n",
            ),
        ]);
        let reports = run_all(
            root.path(),
            &["crates/mailroom-testkit/src/smtp_server.py".to_owned()],
        )
        .unwrap();
        assert_eq!(reports.len(), 3);
        assert!(reports.iter().all(|report| report.findings.is_empty()));
    }
}
