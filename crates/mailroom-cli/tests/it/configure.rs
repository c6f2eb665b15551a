//! Configure a company account and two user accounts, resolve, edit, remove.

use crate::{Cli, dump};

#[test]
fn configure_resolve_edit_and_remove() {
    let cli = Cli::new();
    cli.run(&[
        "company",
        "set",
        "--provider",
        "google",
        "--user",
        "orders@example.com",
        "--fax-format",
        "{0}@fax.example.com",
    ])
    .ok();
    let sa = cli
        .run(&[
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
    let sa_id: i64 = sa
        .stdout
        .trim()
        .parse()
        .expect("account add prints the new id");
    let bob = cli
        .run_with(
            &[
                "account",
                "add",
                "--provider",
                "none",
                "--host",
                "smtp.example.net",
                "--port",
                "2525",
                "--user",
                "bob",
                "--password-stdin",
                "--bind",
                "SystemUser:User_Name:bob",
            ],
            "bobs-secret-password\n",
            &[],
        )
        .ok();
    let bob_id: i64 = bob.stdout.trim().parse().unwrap();
    assert_ne!(sa_id, bob_id);

    #[track_caller]
    fn check(cli: &Cli, user: &str, account: &str, rule: &str) {
        let run = cli
            .run(&["resolve", "--user", user, "--feature", "sales-document"])
            .ok();
        let mut lines = run.stdout.lines();
        assert!(lines.next().unwrap().starts_with(account), "{}", run.stdout);
        assert_eq!(lines.next().unwrap(), format!("rule: {rule}"));
    }
    check(
        &cli,
        "sa",
        &format!("account {sa_id} sends: sa@contoso.example via microsoft"),
        "the user account bound to SystemUser:User_Name:sa",
    );
    check(
        &cli,
        "BOB",
        &format!("account {bob_id} sends: bob via none (smtp.example.net:2525)"),
        "the user account bound to SystemUser:User_Name:bob",
    );
    check(
        &cli,
        "carol",
        "the company account sends: orders@example.com via google",
        "the company account, because no user account is bound to SystemUser:User_Name:carol",
    );
    let agent = cli
        .run(&[
            "resolve",
            "--user",
            "sa",
            "--feature",
            "automation-agent",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(agent["account"]["kind"], "company");
    assert_eq!(agent["rule"]["rule"], "company_only_feature");

    let list = cli.run(&["account", "list"]).ok();
    let header = list.stdout.lines().next().unwrap();
    assert!(header.starts_with("ID  Provider"), "{header}");
    assert!(
        header.ends_with("Business Object  Column Name  Column Value"),
        "{header}"
    );
    assert_eq!(list.stdout.lines().count(), 3);

    cli.run(&[
        "account",
        "edit",
        &sa_id.to_string(),
        "--host",
        "smtp-eu.office365.com",
        "--port",
        "25",
    ])
    .ok();
    let shown = cli
        .run(&["account", "show", &sa_id.to_string(), "--json"])
        .ok()
        .json();
    assert_eq!(shown["host"], "smtp-eu.office365.com");
    assert_eq!(shown["port"], 25);
    assert_eq!(shown["binding"]["column_value"], "sa");

    cli.run(&["account", "remove", &bob_id.to_string()]).ok();
    check(
        &cli,
        "bob",
        "the company account sends",
        "the company account, because no user account is bound to SystemUser:User_Name:bob",
    );
    let list = cli.run(&["account", "list", "--json"]).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 1);

    assert_eq!(
        cli.run(&["fax-address", "+1 (555) 010-2000"])
            .ok()
            .stdout
            .trim(),
        "+15550102000@fax.example.com"
    );
}

#[test]
fn every_read_command_speaks_json() {
    let cli = Cli::new();
    cli.run(&[
        "company",
        "set",
        "--provider",
        "microsoft",
        "--user",
        "a@contoso.example",
        "--fax-format",
        "{0}@fax.example.com",
    ])
    .ok();
    cli.run(&[
        "account",
        "add",
        "--provider",
        "google",
        "--user",
        "b@example.com",
        "--bind",
        "SystemUser:User_Name:b",
    ])
    .ok();
    for args in [
        &["company", "show", "--json"][..],
        &["account", "list", "--json"],
        &["account", "show", "1", "--json"],
        &["settings", "get", "--json"],
        &["resolve", "--user", "b", "--json"],
        &["fax-address", "5550100", "--json"],
        &["info", "--json"],
    ] {
        let value = cli.run(args).ok().json();
        assert!(value.is_object() || value.is_array(), "{args:?}: {value}");
    }
    let info = cli.run(&["info", "--json"]).ok().json();
    assert_eq!(info["backend"], "sqlite");
    use mailroom_migrations::MigratorTrait;
    let newest = mailroom_migrations::Migrator::migrations()
        .last()
        .unwrap()
        .name()
        .to_owned();
    assert_eq!(info["schema_version"], newest.as_str());
    assert_eq!(info["key_file"], cli.key_file().display().to_string());
}

#[test]
fn settings_and_ignored_google_fields_are_reported() {
    let cli = Cli::new();
    assert_eq!(
        cli.run(&["settings", "get"]).ok().stdout.trim(),
        "can-sign-in-when-sending  true\noutbox-retention-days     30"
    );
    cli.run(&["settings", "set", "can-sign-in-when-sending", "false"])
        .ok();
    assert_eq!(
        cli.run(&["settings", "get", "--json"]).ok().json()["can_sign_in_when_sending"],
        false
    );
    let run = cli
        .run(&[
            "company",
            "set",
            "--provider",
            "google",
            "--user",
            "o@example.com",
            "--no-tls",
            "--timeout-ms",
            "5000",
        ])
        .ok();
    assert!(run.stderr.contains("note: tls was saved but is ignored: Google accounts send through the Gmail API over HTTPS"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("note: timeout was saved but is ignored"),
        "{}",
        run.stderr
    );
    let shown = cli.run(&["company", "show"]).ok();
    assert!(
        shown
            .stdout
            .lines()
            .any(|line| line.starts_with("Timeout (ms) ")
                && line.ends_with(" 5000 (ignored: sent through the Gmail API over HTTPS)")),
        "{}",
        shown.stdout
    );
}

#[test]
fn passwords_never_appear_in_output_or_the_database_file() {
    let cli = Cli::new();
    let password = "P4ssw0rd-that-must-not-leak";
    cli.run_with(
        &[
            "company",
            "set",
            "--provider",
            "none",
            "--host",
            "smtp.example.net",
            "--user",
            "relay",
            "--password-stdin",
        ],
        password,
        &[],
    )
    .ok();
    let id = cli
        .run_with(
            &[
                "account",
                "add",
                "--provider",
                "none",
                "--host",
                "smtp.example.net",
                "--user",
                "u",
                "--password-stdin",
            ],
            password,
            &[],
        )
        .ok();
    for args in [
        &["company", "show"][..],
        &["company", "show", "--json"],
        &["account", "list"],
        &["account", "list", "--json"],
        &["account", "show", id.stdout.trim()],
        &["account", "show", id.stdout.trim(), "--json"],
    ] {
        let run = cli.run(args).ok();
        assert!(
            !run.stdout.contains(password) && !run.stderr.contains(password),
            "{args:?} leaked the password"
        );
    }
    let shown = cli.run(&["company", "show", "--json"]).ok().json();
    assert_eq!(shown["password_set"], true);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let text = runtime.block_on(dump(cli.path()));
    assert!(!text.contains(password));
    for file in std::fs::read_dir(cli.dir.path()).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        assert!(
            !bytes
                .windows(password.len())
                .any(|w| w == password.as_bytes())
        );
    }
}

#[test]
fn usage_errors_exit_with_2_and_other_failures_with_1() {
    let cli = Cli::new();
    let run = cli.run(&["no-such-command"]);
    assert_eq!(run.code, 2, "{run:?}");
    let run = cli.run(&["account", "show", "7"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.stderr.trim(),
        "error: there is no account 7; list the accounts to find the right id\n  to fix: mailroom account list"
    );
    let run = cli.run(&["--help"]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("company"));
    // A lease under the minimum is a usage error that says what to give instead.
    let run = cli.run(&["agent", "--once", "--lease-secs", "2"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("a lease under 3 seconds is too short; give at least 3"),
        "{}",
        run.stderr
    );
}

/// Configuration commands run at once on one SQLite file (each reads the key check, then
/// writes) all succeed: each waits for the write lock instead of failing with "database
/// is locked".
#[test]
fn settings_set_from_several_processes_at_once_all_succeed() {
    let cli = Cli::new();
    cli.run(&["settings", "get"]).ok();
    let children: Vec<_> = (1..=8)
        .map(|days| {
            let days = days.to_string();
            let mut command = cli.command(&["settings", "set", "outbox-retention-days", &days]);
            command.stdin(std::process::Stdio::null());
            command.spawn().expect("start mailroom")
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let days = cli.run(&["settings", "get", "--json"]).ok().json()["outbox_retention_days"]
        .as_u64()
        .unwrap();
    assert!((1..=8).contains(&days), "{days}");
}

#[test]
fn allowing_a_plaintext_password_is_explicit_shown_and_warned_about() {
    let cli = Cli::new();
    let set = |extra: &[&str]| {
        let args = [
            &[
                "company",
                "set",
                "--provider",
                "none",
                "--host",
                "relay.internal.example",
                "--port",
                "25",
                "--no-tls",
                "--user",
                "relay@example.com",
                "--password-stdin",
            ][..],
            extra,
        ]
        .concat();
        cli.run_with(&args, "a-password\n", &[]).ok()
    };
    let without = set(&["--json"]);
    assert_eq!(without.json()["allow_plaintext_password"], false);
    assert!(!without.stderr.contains("without TLS"), "{without:?}");

    let with = set(&["--allow-plaintext-password"]);
    assert!(
        with.stderr
            .contains("the password may be sent without TLS to relay.internal.example"),
        "{with:?}"
    );
    let shown = cli.run(&["company", "show"]).ok();
    assert!(shown.stdout.contains("Plaintext password"), "{shown:?}");
    let json = cli.run(&["company", "show", "--json"]).ok().json();
    assert_eq!(json["allow_plaintext_password"], true);

    // And off again.
    cli.run(&["company", "set", "--allow-plaintext-password=false"])
        .ok();
    let json = cli.run(&["company", "show", "--json"]).ok().json();
    assert_eq!(json["allow_plaintext_password"], false);
}

/// `--shared-mailbox`: a Microsoft account whose SMTP user is a shared mailbox; shown,
/// in JSON, and refused where it cannot work (Google, password accounts, no mailbox).
#[test]
fn a_shared_mailbox_is_marked_shown_and_refused_where_it_cannot_work() {
    let cli = Cli::new();
    cli.run(&[
        "company",
        "set",
        "--provider",
        "microsoft",
        "--user",
        "orders@contoso.example",
        "--shared-mailbox",
    ])
    .ok();
    let shown = cli.run(&["company", "show"]).ok();
    assert!(shown.stdout.contains("Shared mailbox"), "{shown:?}");
    let json = cli.run(&["company", "show", "--json"]).ok().json();
    assert_eq!(json["shared_mailbox"], true);

    let google = cli.run(&[
        "account",
        "add",
        "--provider",
        "google",
        "--user",
        "team@example.com",
        "--shared-mailbox",
    ]);
    assert_eq!(google.code, 2, "bad input: {google:?}");
    assert!(
        google
            .stderr
            .contains("the Gmail API sends only from the signed-in person's own mailbox"),
        "{google:?}"
    );
    let no_user = cli.run(&[
        "account",
        "add",
        "--provider",
        "microsoft",
        "--shared-mailbox",
    ]);
    assert_eq!(no_user.code, 2, "bad input: {no_user:?}");
    assert!(
        no_user.stderr.contains("is empty for a shared mailbox"),
        "{no_user:?}"
    );

    cli.run(&["company", "set", "--shared-mailbox=false"]).ok();
    let json = cli.run(&["company", "show", "--json"]).ok().json();
    assert_eq!(json["shared_mailbox"], false);
}

/// `--route graph` (and `--large-attachments`): a Microsoft account sending through
/// Microsoft Graph; shown by show, list and resolve (text and JSON), refused for other
/// providers and for large attachments on the SMTP route.
#[test]
fn the_graph_route_is_set_shown_and_refused_where_it_cannot_work() {
    let cli = Cli::new();
    cli.run(&[
        "company",
        "set",
        "--provider",
        "microsoft",
        "--user",
        "orders@contoso.example",
        "--route",
        "graph",
        "--large-attachments",
    ])
    .ok();
    let shown = cli.run(&["company", "show"]).ok();
    assert!(
        shown.stdout.contains("Route")
            && shown.stdout.contains("graph (Microsoft Graph sendMail")
            && shown.stdout.contains("Mail.ReadWrite"),
        "{shown:?}"
    );
    let json = cli.run(&["company", "show", "--json"]).ok().json();
    assert_eq!(json["route"], "graph");
    assert_eq!(json["large_attachments"], true);
    let resolved = cli.run(&["resolve"]).ok();
    assert!(
        resolved
            .stdout
            .contains("via microsoft (route graph: Microsoft Graph)"),
        "{resolved:?}"
    );
    assert_eq!(
        cli.run(&["resolve", "--json"]).ok().json()["transport"],
        "graph"
    );

    let google = cli.run(&[
        "account",
        "add",
        "--provider",
        "google",
        "--user",
        "team@example.com",
        "--route",
        "graph",
    ]);
    assert_eq!(google.code, 2, "bad input: {google:?}");
    assert!(
        google.stderr.contains("graph is a Microsoft route"),
        "{google:?}"
    );
    let added = cli
        .run(&[
            "account",
            "add",
            "--provider",
            "microsoft",
            "--user",
            "sa@contoso.example",
        ])
        .ok();
    let id = added.stdout.trim().to_owned();
    let list = cli.run(&["account", "list"]).ok();
    assert!(list.stdout.contains("Route"), "{list:?}");
    let smtp_large = cli.run(&["account", "edit", &id, "--large-attachments"]);
    assert_eq!(smtp_large.code, 2, "bad input: {smtp_large:?}");
    assert!(
        smtp_large
            .stderr
            .contains("applies to the Graph route only"),
        "{smtp_large:?}"
    );
    let bad = cli.run(&["account", "edit", &id, "--route", "rest"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("use smtp or graph"), "{bad:?}");
}

/// `--auth app-only`: an account that sends with the app's own credentials; shown by
/// show, list and resolve (text and JSON), refused where it cannot work, and `sign-in`
/// and `sign-out` say it needs none and succeed.
#[test]
fn app_only_is_set_shown_and_needs_no_sign_in() {
    let cli = Cli::new();
    let company = cli
        .run(&[
            "company",
            "set",
            "--provider",
            "google",
            "--user",
            "noreply@example.com",
            "--auth",
            "app-only",
        ])
        .ok();
    assert!(company.stderr.is_empty(), "{company:?}");
    let shown = cli.run(&["company", "show"]).ok();
    assert!(
        shown
            .stdout
            .lines()
            .any(|line| line.starts_with("Authentication")
                && line.ends_with("  app-only (the app's own credentials; no sign-in)")),
        "{shown:?}"
    );
    assert_eq!(
        cli.run(&["company", "show", "--json"]).ok().json()["auth"],
        "app-only"
    );
    let resolved = cli.run(&["resolve"]).ok();
    let lines: Vec<&str> = resolved.stdout.lines().collect();
    assert_eq!(
        lines[1..],
        [
            "rule: the company account, because no current user was given",
            "auth: app-only (the app's own credentials; no sign-in)",
            "signed in: n/a",
        ],
        "{resolved:?}"
    );
    let json = cli.run(&["resolve", "--json"]).ok().json();
    assert_eq!(json["auth"], "app-only");
    assert_eq!(json["account"]["auth"], "app-only");
    assert_eq!(json["signed_in"], "not_applicable");

    // A delegated Microsoft account, then switched to app-only with `account edit`.
    let id = cli
        .run(&[
            "account",
            "add",
            "--provider",
            "microsoft",
            "--user",
            "sa@contoso.example",
            "--auth",
            "delegated",
        ])
        .ok()
        .stdout
        .trim()
        .to_owned();
    let shown = cli.run(&["account", "show", &id]).ok();
    assert!(
        shown
            .stdout
            .lines()
            .any(|line| line.starts_with("Authentication")
                && line.ends_with("  delegated (a person signs in)")),
        "{shown:?}"
    );
    let list = cli.run(&["account", "list"]).ok().stdout;
    let header: Vec<&str> = list.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header[..4], ["ID", "Provider", "Route", "Auth"], "{list}");
    let row: Vec<&str> = list.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row[..4],
        [id.as_str(), "microsoft", "smtp", "delegated"],
        "{list}"
    );
    let edited = cli
        .run(&["account", "edit", &id, "--auth", "app-only", "--json"])
        .ok()
        .json();
    assert_eq!(edited["auth"], "app-only");
    let list = cli.run(&["account", "list"]).ok().stdout;
    let row: Vec<&str> = list.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row[..4],
        [id.as_str(), "microsoft", "smtp", "app-only"],
        "{list}"
    );
    let json = cli.run(&["account", "list", "--json"]).ok().json();
    assert_eq!(json[0]["auth"], "app-only");
    assert_eq!(json[0]["signed_in"], "not_applicable");
    assert_eq!(
        cli.run(&["account", "show", &id, "--json"]).ok().json()["auth"],
        "app-only"
    );

    // sign-in and sign-out explain that there is none, and succeed.
    let reason = format!(
        "the account {id} uses the microsoft app's own credentials (app-only) and never needs a sign-in: there is no sign-in to start, store or remove; the app's credentials are changed with its microsoft app registration"
    );
    for command in ["sign-in", "sign-out"] {
        let run = cli.run(&[command, "--account", &id]).ok();
        assert_eq!(run.stdout.trim(), reason, "{command}: {run:?}");
        let json = cli.run(&[command, "--account", &id, "--json"]).ok().json();
        assert_eq!(json["status"], "not_needed", "{command}: {json}");
        assert_eq!(json["reason"], reason.as_str());
        assert_eq!(json["provider"], "microsoft");
        assert_eq!(json["account"]["kind"], "user");
    }
    let run = cli.run(&["sign-in", "--company", "--json"]).ok().json();
    assert_eq!(run["status"], "not_needed");
    assert_eq!(run["provider"], "google");

    // Refused where it cannot work, each saying what to do.
    let password = cli.run(&[
        "account",
        "add",
        "--provider",
        "none",
        "--host",
        "smtp.example.net",
        "--user",
        "bob",
        "--auth",
        "app-only",
    ]);
    assert_eq!(password.code, 2, "bad input: {password:?}");
    assert!(
        password.stderr.contains("app-only is for OAuth accounts")
            && password.stderr.contains("use --auth delegated"),
        "{password:?}"
    );
    let no_user = cli.run(&[
        "account",
        "add",
        "--provider",
        "google",
        "--auth",
        "app-only",
    ]);
    assert_eq!(no_user.code, 2, "bad input: {no_user:?}");
    assert!(
        no_user
            .stderr
            .contains("is empty for an app-only account: it is the mailbox the app sends as"),
        "{no_user:?}"
    );
    let shared = cli.run(&["account", "edit", &id, "--shared-mailbox"]);
    assert_eq!(shared.code, 2, "bad input: {shared:?}");
    assert!(
        shared.stderr.contains("is for delegated sign-ins"),
        "{shared:?}"
    );
    let with_sign_in = cli.run(&[
        "account",
        "add",
        "--provider",
        "microsoft",
        "--user",
        "orders@contoso.example",
        "--auth",
        "app-only",
        "--sign-in",
    ]);
    assert_eq!(with_sign_in.code, 2, "{with_sign_in:?}");
    assert!(
        with_sign_in
            .stderr
            .contains("--sign-in is not taken with --auth app-only"),
        "{with_sign_in:?}"
    );
    let bad = cli.run(&["account", "edit", &id, "--auth", "robot"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(
        bad.stderr
            .contains("use delegated (a person signs in) or app-only"),
        "{bad:?}"
    );

    // A provider change to none makes it delegated again, with a notice.
    let password = cli.run_with(
        &[
            "account",
            "edit",
            &id,
            "--provider",
            "none",
            "--host",
            "smtp.example.net",
            "--password-stdin",
        ],
        "secret\n",
        &[],
    );
    let password = password.ok();
    assert!(
        password
            .stderr
            .contains("note: auth is delegated now: a password account (provider none)"),
        "{password:?}"
    );
    let shown = cli.run(&["account", "show", &id]).ok().stdout;
    assert!(
        !shown.contains("Authentication"),
        "password accounts have none: {shown}"
    );
}
