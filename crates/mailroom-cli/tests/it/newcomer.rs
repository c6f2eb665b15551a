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

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A password company account on 127.0.0.1:`port`, without TLS.
fn relay_company(cli: &Cli, port: &str) {
    cli.run(&[
        "company",
        "set",
        "--provider",
        "none",
        "--user",
        "relay@example.com",
        "--host",
        "127.0.0.1",
        "--port",
        port,
        "--no-tls",
    ])
    .ok();
}

#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    let cli = Cli::new();
    cli.run(&[
        "company",
        "set",
        "--provider",
        "google",
        "--user",
        "a@example.com",
    ])
    .ok();
    for args in [
        &["company", "show"][..],
        &["account", "list"],
        &["--json", "info"],
    ] {
        let mut child = cli.command(args).spawn().expect("start mailroom");
        // The reader goes away before mailroom writes a byte (`| true`).
        drop(child.stdout.take());
        drop(child.stdin.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?} printed on stderr: {stderr}");
    }
}

#[test]
fn a_failed_send_says_its_cause_once_and_logs_nothing_by_default() {
    let cli = Cli::new();
    // A port nothing listens on: the connection is refused on every attempt.
    let port = closed_port().to_string();
    relay_company(&cli, &port);
    let args = [
        "send",
        "--company",
        "--to",
        "buyer@example.com",
        "--subject",
        "s",
        "--body",
        "b",
    ];
    let run = cli.run(&args);
    assert_eq!(run.code, 1, "{run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(lines[0].starts_with("error: "), "{run:?}");
    assert!(
        lines
            .iter()
            .all(|line| !line.contains("WARN") && !line.contains("INFO")),
        "log lines by default: {run:?}"
    );
    let refused = run.stderr.matches("Connection refused").count()
        + run.stderr.matches("connection refused").count();
    assert_eq!(refused, 1, "the cause must be said once: {run:?}");
    // -vv shows the attempts as log lines, still without colour on a pipe.
    let verbose = cli.run(&[&["-vv"][..], &args].concat());
    assert!(
        verbose.stderr.contains("send attempt failed"),
        "{verbose:?}"
    );
    assert!(
        !verbose.stderr.contains('\u{1b}'),
        "ANSI on a pipe: {verbose:?}"
    );
    // --quiet and -v together are a usage error.
    assert_eq!(cli.run(&["-q", "-v", "info"]).code, 2);
}

#[test]
fn help_never_shows_the_database_password() {
    let run = Cli::new().run_with(
        &["--help"],
        "",
        &[("MAILROOM_DATABASE_URL", "postgres://u:hunter2@127.0.0.1/db")],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("MAILROOM_DATABASE_URL"), "{run:?}");
    assert!(!run.stdout.contains("hunter2"), "{run:?}");
}

#[test]
fn errors_are_json_on_stderr_under_json() {
    let run = Cli::new().run(&["--json", "account", "show", "7"]);
    assert_eq!(run.code, 1, "{run:?}");
    let error: serde_json::Value = serde_json::from_str(run.stderr.trim()).unwrap();
    assert_eq!(error["error"]["kind"], "not_found", "{error}");
    assert_eq!(
        error["error"]["message"],
        "there is no account 7; list the accounts to find the right id"
    );
    assert_eq!(error["error"]["remedy"]["action"], "list_accounts");
    assert_eq!(error["error"]["remedy"]["command"], "mailroom account list");
}

#[test]
fn a_missing_key_file_is_never_silently_replaced() {
    let cli = Cli::new();
    cli.run_with(
        &[
            "company",
            "set",
            "--provider",
            "none",
            "--user",
            "relay@example.com",
            "--host",
            "smtp.example.net",
            "--password-stdin",
        ],
        "hunter2\n",
        &[],
    )
    .ok();
    let key_id = cli.run(&["--json", "info"]).ok().json()["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::remove_file(cli.key_file()).unwrap();

    let run = cli.run(&["company", "show"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(&cli.key_file().display().to_string()),
        "{run:?}"
    );
    assert!(run.stderr.contains(&key_id), "the fingerprint: {run:?}");
    assert!(
        run.stderr.contains("mailroom key reset --forget-secrets"),
        "{run:?}"
    );
    assert!(!cli.key_file().exists(), "a new key file was made");

    // `info` still reports, and says what is wrong.
    let info = cli.run(&["info"]).ok();
    assert!(info.stdout.contains(&key_id), "{info:?}");
    assert!(info.stdout.contains("missing"), "{info:?}");

    // Another key (MAILROOM_KEY) is refused with both fingerprints, never used.
    let other = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let run = cli.run_with(&["company", "show"], "", &[("MAILROOM_KEY", other)]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("this host lacks key {key_id}"))
            && run.stderr.contains("(this host has "),
        "{run:?}"
    );

    // The way out: the secrets go, the accounts stay, a new key seals from now on.
    assert_eq!(
        cli.run(&["key", "reset"]).code,
        2,
        "--forget-secrets is required"
    );
    let reset = cli
        .run(&["--json", "key", "reset", "--forget-secrets"])
        .ok();
    assert_eq!(reset.json()["passwords"], 1, "{reset:?}");
    assert!(cli.key_file().exists());
    let company = cli.run(&["--json", "company", "show"]).ok().json();
    assert_eq!(company["password_set"], false, "{company}");
    assert_eq!(company["smtp_user"], "relay@example.com", "{company}");
}

#[test]
fn database_urls_say_what_is_wrong_at_once() {
    let cli = Cli::new();
    // A given SQLite file in a directory that does not exist: exit 2, nothing made.
    let missing_dir = cli.dir.path().join("no-such-dir").join("erp.sqlite");
    let run = cli.run(&["--database-url", &missing_dir.display().to_string(), "info"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("does not exist"), "{run:?}");
    assert!(!missing_dir.parent().unwrap().exists());
    // A plain path is SQLite.
    let plain = cli.dir.path().join("plain.db");
    let info = cli
        .run(&[
            "--json",
            "--database-url",
            &plain.display().to_string(),
            "info",
        ])
        .ok()
        .json();
    assert_eq!(info["backend"], "sqlite", "{info}");
    assert!(plain.exists());
    // PostgreSQL refusing the connection is said as such, once.
    let port = closed_port();
    let run = cli.run(&[
        "--database-url",
        &format!("postgres://postgres@127.0.0.1:{port}/x"),
        "info",
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.stderr
            .to_ascii_lowercase()
            .matches("connection refused")
            .count(),
        1,
        "{run:?}"
    );
}

#[test]
fn a_missing_postgresql_database_suggests_createdb() {
    let server = mailroom_testkit::postgres_server_url();
    let mut url = url::Url::parse(&server).unwrap();
    url.set_path("mailroom_newcomer_no_such_database");
    let run = Cli::new().run(&["--database-url", url.as_str(), "info"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("createdb")
            && run.stderr.contains("mailroom_newcomer_no_such_database"),
        "{run:?}"
    );
}

#[test]
fn a_slow_send_in_a_terminal_says_what_it_waits_for() {
    use std::io::Write as _;
    let cli = Cli::new();
    // A server that takes three seconds to refuse: the send waits past the spinner's two.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut stream, _) = listener.accept().unwrap();
            std::thread::sleep(std::time::Duration::from_secs(3));
            let _ = stream.write_all(b"554 5.3.2 not accepting mail\r\n");
        }
    });
    relay_company(&cli, &port);
    let send = "send --company --to buyer@example.com --subject s --body b";
    // In a terminal (a pseudo-terminal made by `script`): the spinner appears.
    let mailroom = env!("CARGO_BIN_EXE_mailroom");
    let output = std::process::Command::new("script")
        .args(["-qec", &format!("{mailroom} {send}"), "/dev/null"])
        .env("MAILROOM_DATABASE_URL", cli.url())
        .env("HOME", cli.dir.path())
        .env_remove("MAILROOM_KEY")
        .output()
        .expect("run script(1)");
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(
        screen.contains(&format!("waiting for the SMTP server 127.0.0.1:{port}")),
        "{screen}"
    );
    // Off a terminal: no spinner, only the error.
    let run = cli.run(&send.split(' ').collect::<Vec<_>>());
    assert_eq!(run.code, 1, "{run:?}");
    assert!(!run.stderr.contains("waiting for"), "{run:?}");
    server.join().unwrap();
}

/// Every key of a JSON document, recursively.
fn keys(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                out.push(key.clone());
                keys(value, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| keys(item, out)),
        _ => {}
    }
}

#[test]
fn every_json_output_uses_one_snake_case_name_per_concept() {
    let cli = Cli::new();
    cli.run(&[
        "company",
        "set",
        "--provider",
        "google",
        "--user",
        "orders@example.com",
    ])
    .ok();
    cli.run(&[
        "account",
        "add",
        "--provider",
        "microsoft",
        "--user",
        "sa@contoso.example",
        "--bind",
        "SystemUser:User_Name:sa",
    ])
    .ok();
    cli.run(&[
        "app",
        "set",
        "microsoft",
        "--client-id",
        "client",
        "--tenant",
        "contoso.onmicrosoft.com",
    ])
    .ok();
    let commands: &[&[&str]] = &[
        &["info"],
        &["company", "show"],
        &["account", "list"],
        &["account", "show", "1"],
        &["resolve", "--user", "sa"],
        &["settings", "get"],
        &["settings", "set", "can-sign-in-when-sending", "false"],
        &["app", "show"],
        &["token", "list"],
        &["queue", "list"],
        &["sign-out", "--account", "1"],
        &["fax-address", "--help"],
    ];
    for args in commands {
        if args.contains(&"--help") {
            continue;
        }
        let mut with_json = vec!["--json"];
        with_json.extend_from_slice(args);
        let run = cli.run(&with_json).ok();
        let mut found = Vec::new();
        keys(&run.json(), &mut found);
        for key in &found {
            assert!(
                key.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{args:?}: key `{key}` is not snake_case"
            );
            assert!(
                !["explanation", "deleted", "account_user", "sender"].contains(&key.as_str()),
                "{args:?}: `{key}` is one of the retired names (reason, removed, address)"
            );
        }
    }
    // Absent values are null, not missing: a company account has no id, no binding.
    let company = cli.run(&["--json", "company", "show"]).ok().json();
    assert!(
        company
            .get("binding")
            .is_some_and(serde_json::Value::is_null),
        "{company}"
    );
    let resolved = cli.run(&["--json", "resolve", "--user", "sa"]).ok().json();
    assert!(resolved["reason"].is_string(), "{resolved}");
}

/// The subcommands `mailroom PATH --help` lists, from its "Commands:" section.
fn subcommands(cli: &Cli, path: &[&str]) -> Vec<String> {
    let mut args = path.to_vec();
    args.push("--help");
    let help = cli.run(&args).ok().stdout;
    help.split("Commands:")
        .nth(1)
        .map(|section| {
            section
                .lines()
                .skip(1)
                .take_while(|line| line.starts_with("  "))
                // A name is indented two spaces; a wrapped description line, more.
                .filter(|line| !line.starts_with("   "))
                .filter_map(|line| line.split_whitespace().next())
                .filter(|name| *name != "help")
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_command_shows_an_example_and_plain_words() {
    let cli = Cli::new();
    let mut pending: Vec<Vec<String>> = vec![Vec::new()];
    let mut leaves = 0;
    while let Some(path) = pending.pop() {
        let path_ref: Vec<&str> = path.iter().map(String::as_str).collect();
        let children = subcommands(&cli, &path_ref);
        let mut args = path_ref.clone();
        args.push("--help");
        let help = cli.run(&args).ok().stdout;
        assert!(
            !help.contains("the guide's"),
            "{path:?} speaks of 'the guide'"
        );
        if children.is_empty() {
            leaves += 1;
            assert!(
                help.contains("Examples:"),
                "`mailroom {}` has no example",
                path.join(" ")
            );
        }
        for child in children {
            let mut next = path.clone();
            next.push(child);
            pending.push(next);
        }
    }
    assert!(leaves > 25, "only {leaves} commands found");
}

#[test]
fn a_servers_control_characters_are_escaped_before_they_reach_the_terminal() {
    use std::io::Write as _;
    let cli = Cli::new();
    // A hostile server greets with a refusal that carries ESC and BEL.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let _ = stream.write_all(b"554 5.3.2 \x1b[31mgo away\x07\r\n");
    });
    relay_company(&cli, &port);
    let run = cli.run(&[
        "send",
        "--company",
        "--to",
        "buyer@example.com",
        "--subject",
        "s",
        "--body",
        "b",
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("go away"), "{run:?}");
    assert!(
        !run.stderr.contains('\u{1b}'),
        "a raw ESC reached the terminal: {run:?}"
    );
    assert!(
        !run.stderr.contains('\u{7}'),
        "a raw BEL reached the terminal: {run:?}"
    );
    assert!(run.stderr.contains("\\u{1b}"), "{run:?}");
    server.join().unwrap();
}
