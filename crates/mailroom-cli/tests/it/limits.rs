//! Issue 18's administration: an account's `--rate` and `--daily` limits (set, shown,
//! back to the provider's default, lifted with `off`, bad values refused) and
//! `send --queue --priority`.

use crate::Cli;

/// Adds a user account with `args` after `account add` and returns its id.
fn add(cli: &Cli, args: &[&str], stdin: &str) -> String {
    let mut all = vec!["account", "add"];
    all.extend_from_slice(args);
    cli.run_with(&all, stdin, &[]).ok().stdout.trim().to_owned()
}

fn show(cli: &Cli, id: &str) -> (String, serde_json::Value) {
    let text = cli.run(&["account", "show", id]).ok().stdout;
    let json = cli.run(&["account", "show", id, "--json"]).ok().json();
    (text, json)
}

/// The value of the `Limits` line of `account show`.
#[track_caller]
fn limits_line(text: &str) -> String {
    let line = text
        .lines()
        .find(|line| line.starts_with("Limits "))
        .unwrap_or_else(|| panic!("no Limits line in {text}"));
    line["Limits".len()..].trim().to_owned()
}

#[test]
fn limits_are_set_shown_reset_to_the_default_and_lifted() {
    let cli = Cli::new();
    let id = add(
        &cli,
        &["--provider", "microsoft", "--user", "sa@contoso.example"],
        "",
    );
    let (text, json) = show(&cli, &id);
    assert_eq!(
        limits_line(&text),
        "30 messages/min, 10,000 recipients per 24 h, 3 at once (Microsoft default)"
    );
    assert_eq!(
        json["limits"],
        serde_json::json!({
            "per_minute": 30, "daily": 10000, "daily_unit": "recipients", "concurrent": 3,
            "overrides": {"per_minute": null, "daily": null}
        })
    );

    // Set both: the edit prints the saved account with them.
    let saved = cli
        .run(&[
            "account", "edit", &id, "--rate", "10/min", "--daily", "500", "--json",
        ])
        .ok()
        .json();
    assert_eq!(saved["limits"]["per_minute"], 10);
    assert_eq!(saved["limits"]["overrides"]["daily"], 500);
    let (text, json) = show(&cli, &id);
    assert_eq!(
        limits_line(&text),
        "10 messages/min (set), 500 recipients per 24 h (set), 3 at once (Microsoft default)"
    );
    assert_eq!(json["limits"]["overrides"]["per_minute"], 10);
    assert_eq!(json["limits"]["daily"], 500);

    // An unrelated change keeps them; `off` lifts one.
    cli.run(&["account", "edit", &id, "--port", "25"]).ok();
    cli.run(&["account", "edit", &id, "--daily", "off"]).ok();
    let (text, json) = show(&cli, &id);
    assert_eq!(
        limits_line(&text),
        "10 messages/min (set), no daily limit (set), 3 at once (Microsoft default)"
    );
    assert!(json["limits"]["daily"].is_null(), "{json}");
    assert_eq!(json["limits"]["overrides"]["daily"], "off");

    // `default` goes back to the provider's.
    cli.run(&[
        "account", "edit", &id, "--rate", "default", "--daily", "DEFAULT",
    ])
    .ok();
    let (text, json) = show(&cli, &id);
    assert_eq!(
        limits_line(&text),
        "30 messages/min, 10,000 recipients per 24 h, 3 at once (Microsoft default)"
    );
    assert_eq!(
        json["limits"]["overrides"],
        serde_json::json!({"per_minute": null, "daily": null})
    );

    // Google, at `account add`; the list carries the limits too.
    let google = add(
        &cli,
        &[
            "--provider",
            "google",
            "--user",
            "orders@example.com",
            "--rate",
            "45",
        ],
        "",
    );
    let (text, json) = show(&cli, &google);
    assert_eq!(
        limits_line(&text),
        "45 messages/min (set), 2,000 messages per 24 h (Google default)"
    );
    assert_eq!(json["limits"]["daily_unit"], "messages");
    assert!(json["limits"]["concurrent"].is_null(), "{json}");
    let list = cli.run(&["account", "list", "--json"]).ok().json();
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|account| account["id"] == google.parse::<i64>().unwrap())
        .expect("the Google account in the list");
    assert_eq!(listed["limits"], json["limits"]);
}

#[test]
fn a_password_relay_has_none_and_takes_limits_too() {
    let cli = Cli::new();
    let relay = [
        "--provider",
        "none",
        "--host",
        "127.0.0.1",
        "--port",
        "9",
        "--user",
        "relay@example.net",
        "--password-stdin",
    ];
    let id = add(&cli, &relay, "pw\n");
    let (text, json) = show(&cli, &id);
    assert_eq!(limits_line(&text), "none");
    for field in ["per_minute", "daily", "concurrent"] {
        assert!(json["limits"][field].is_null(), "{field}: {json}");
    }
    cli.run(&["account", "edit", &id, "--rate", "120"]).ok();
    let (text, json) = show(&cli, &id);
    assert_eq!(limits_line(&text), "120 messages/min (set)");
    assert_eq!(json["limits"]["per_minute"], 120);

    // The company account takes them with `company set`.
    let mut company = vec!["company", "set"];
    company.extend_from_slice(&relay);
    company.extend_from_slice(&["--daily", "1000"]);
    cli.run_with(&company, "pw\n", &[]).ok();
    let shown = cli.run(&["company", "show", "--json"]).ok().json();
    assert_eq!(shown["limits"]["daily"], 1000);
    assert_eq!(shown["limits"]["overrides"]["daily"], 1000);
    cli.run(&["company", "set", "--daily", "default"]).ok();
    let shown = cli.run(&["company", "show"]).ok().stdout;
    assert_eq!(limits_line(&shown), "none");
}

#[test]
fn bad_limits_are_usage_errors_that_name_the_forms_and_change_nothing() {
    let cli = Cli::new();
    let id = add(
        &cli,
        &[
            "--provider",
            "microsoft",
            "--user",
            "sa@contoso.example",
            "--rate",
            "12",
        ],
        "",
    );
    let before = show(&cli, &id);
    for (option, value, expected) in [
        ("--rate", "0", "0 is out of range"),
        ("--rate", "0/min", "0 is out of range"),
        ("--rate", "100001", "use 1 to 100000"),
        ("--rate", "fast", "`fast` is not a rate"),
        ("--rate", "-5", "`-5` is not a rate"),
        ("--rate", "1.5", "`1.5` is not a rate"),
        ("--daily", "0", "0 is out of range"),
        ("--daily", "30/min", "`30/min` is not a daily limit"),
        ("--daily", "lots", "`lots` is not a daily limit"),
    ] {
        let argument = format!("{option}={value}");
        let run = cli.run(&["account", "edit", &id, &argument]);
        assert_eq!(run.code, 2, "{argument}: {run:?}");
        assert!(run.stderr.contains(expected), "{argument}: {}", run.stderr);
        assert!(
            run.stderr
                .contains("`off` for no limit, or `default` for the provider's"),
            "{argument}: {}",
            run.stderr
        );
    }
    let refused = cli.run(&[
        "account",
        "add",
        "--provider",
        "google",
        "--user",
        "a@example.com",
        "--daily",
        "0",
    ]);
    assert_eq!(refused.code, 2, "{refused:?}");
    let refused = cli.run(&["company", "set", "--rate", "none"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert_eq!(show(&cli, &id), before);
    assert_eq!(
        cli.run(&["account", "list", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(cli.run(&["company", "show"]).code, 1);
}

#[test]
fn priority_is_taken_with_queue_only() {
    let cli = Cli::new();
    cli.run_with(
        &[
            "company",
            "set",
            "--provider",
            "none",
            "--host",
            "127.0.0.1",
            "--port",
            "9",
            "--user",
            "office@example.com",
            "--password-stdin",
        ],
        "pw\n",
        &[],
    )
    .ok();
    let message = [
        "--company",
        "--to",
        "buyer@example.com",
        "--subject",
        "Statement",
        "--body",
        "Attached",
    ];
    let send = |extra: &[&str]| {
        let mut args = vec!["send"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&message);
        cli.run(&args)
    };
    for priority in ["interactive", "normal", "bulk"] {
        let queued = send(&["--queue", "--priority", priority]).ok();
        assert!(queued.stdout.trim().parse::<i64>().is_ok(), "{queued:?}");
    }
    let before = cli.run(&["queue", "list", "--json"]).ok().json();
    assert_eq!(before.as_array().unwrap().len(), 3, "{before}");

    for extra in [
        &["--priority", "bulk"][..],
        &["--dry-run", "--priority", "bulk"],
    ] {
        let refused = send(extra);
        assert_eq!(refused.code, 2, "{extra:?}: {refused:?}");
        assert!(
            refused
                .stderr
                .contains("--priority only applies with --queue"),
            "{extra:?}: {}",
            refused.stderr
        );
    }
    let refused = send(&["--queue", "--priority", "urgent"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("use interactive, normal or bulk"),
        "{}",
        refused.stderr
    );
    assert_eq!(cli.run(&["queue", "list", "--json"]).ok().json(), before);
}
