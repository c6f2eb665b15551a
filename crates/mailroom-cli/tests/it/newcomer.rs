//! What a newcomer meets first: the version, quiet output, help that shows no secret.

use super::Cli;

#[test]
fn version_is_the_workspace_version_and_the_commit() {
    let run = Cli::new().run(&["--version"]).ok();
    let line = run.stdout.trim();
    let rest = line
        .strip_prefix("mailroom 0.2.0")
        .unwrap_or_else(|| panic!("not the workspace version: {line:?}"));
    // The tests run from a git checkout, so the commit is there: 12 hex digits.
    let commit = rest
        .strip_prefix(" (commit ")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no commit after the version: {line:?}"));
    assert_eq!(commit.len(), 12, "{line:?}");
    assert!(commit.chars().all(|c| c.is_ascii_hexdigit()), "{line:?}");
    // Every subcommand says the same.
    let sub = Cli::new().run(&["account", "--version"]).ok();
    assert!(
        sub.stdout.contains(line.trim_start_matches("mailroom ")),
        "{sub:?}"
    );
}
