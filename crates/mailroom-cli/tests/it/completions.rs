//! `mailroom completions SHELL` and `mailroom man`: generated from the clap definition,
//! with no database touched.

use super::Cli;

#[test]
fn bash_completion_names_the_subcommands() {
    let cli = Cli::new();
    let run = cli.run(&["completions", "bash"]).ok();
    for subcommand in [
        "account",
        "send",
        "agent",
        "queue",
        "sign-in",
        "completions",
    ] {
        assert!(
            run.stdout.contains(subcommand),
            "bash completion lacks `{subcommand}`: {}",
            run.stdout
        );
    }
    assert!(run.stdout.contains("complete -F"), "{}", run.stdout);
    assert!(!cli.database.exists(), "completions created a database");
}

#[test]
fn every_release_shell_has_a_script() {
    let cli = Cli::new();
    for (shell, marker) in [
        ("bash", "_mailroom()"),
        ("zsh", "#compdef mailroom"),
        ("fish", "complete -c mailroom"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let run = cli.run(&["completions", shell]).ok();
        assert!(run.stdout.contains(marker), "{shell}: {}", run.stdout);
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error_listing_the_shells() {
    let run = Cli::new().run(&["completions", "tcsh"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("powershell"), "{}", run.stderr);
}

#[test]
fn completions_help_has_an_example() {
    let run = Cli::new().run(&["completions", "--help"]).ok();
    assert!(
        run.stdout
            .contains("mailroom completions bash > ~/.local/share/bash-completion"),
        "{}",
        run.stdout
    );
}

#[test]
fn man_page_is_roff_for_mailroom() {
    let cli = Cli::new();
    let run = cli.run(&["man"]).ok();
    assert!(run.stdout.contains(".TH mailroom 1"), "{}", run.stdout);
    assert!(run.stdout.contains("completions"), "{}", run.stdout);
    assert!(!cli.database.exists(), "the man page created a database");
}

#[test]
fn man_is_hidden_from_help() {
    let run = Cli::new().run(&["--help"]).ok();
    assert!(run.stdout.contains("completions"), "{}", run.stdout);
    assert!(!run.stdout.contains("\n  man "), "{}", run.stdout);
}
