//! Issue 10's commands: `send --account/--dry-run`, an account's From address,
//! `account remove` with queued messages, `account add`'s checks, the signed-in column,
//! the queue's subject, `queue purge` and the retention setting.

use sea_orm::{ConnectionTrait, Database, Statement};

use crate::Cli;

/// A password company account whose login (`relay`) is not an address; nothing listens
/// on port 9, and nothing here connects.
fn company_relay(cli: &Cli) -> crate::Run {
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
            "relay",
            "--password-stdin",
        ],
        "pw\n",
        &[],
    )
    .ok()
}

fn add_clerk(cli: &Cli, extra: &[&str]) -> (i64, crate::Run) {
    let mut args = vec![
        "account",
        "add",
        "--provider",
        "none",
        "--host",
        "127.0.0.1",
        "--port",
        "9",
        "--user",
        "clerk",
        "--password-stdin",
    ];
    args.extend_from_slice(extra);
    let run = cli.run_with(&args, "pw\n", &[]).ok();
    (run.stdout.trim().parse().expect("the new id"), run)
}

const MESSAGE: [&str; 8] = [
    "--to",
    "buyer@example.com",
    "--bcc",
    "archive@example.com",
    "--subject",
    "Order 7",
    "--body",
    "Thanks",
];

#[test]
fn dry_run_names_the_account_and_envelope_and_sends_nothing() {
    let cli = Cli::new();
    let company = company_relay(&cli);
    assert!(
        company
            .stderr
            .contains("note: the SMTP user `relay` is not an address"),
        "company set warns: {company:?}"
    );
    let (id, added) = add_clerk(&cli, &["--from", "clerk@example.com"]);
    assert!(!added.stderr.contains("not an address"), "{added:?}");
    let id_text = id.to_string();

    let mut args = vec!["send", "--dry-run", "--account", &id_text, "--json"];
    args.extend_from_slice(&MESSAGE);
    let preview = cli.run(&args).ok().json();
    assert_eq!(preview["account"]["kind"], "user");
    assert_eq!(preview["account"]["id"], id);
    assert_eq!(preview["address"], "clerk@example.com");
    assert_eq!(preview["envelope_from"], "clerk@example.com");
    assert_eq!(
        preview["recipients"],
        serde_json::json!(["buyer@example.com", "archive@example.com"])
    );
    assert_eq!(preview["transport"], "smtp");
    assert!(preview["size"].as_u64().unwrap() > 100, "{preview}");
    assert!(
        preview["reason"]
            .as_str()
            .unwrap()
            .contains("named by the caller")
    );

    let mut args = vec!["send", "--dry-run", "--account", &id_text];
    args.extend_from_slice(&MESSAGE);
    let text = cli.run(&args).ok().stdout;
    for expected in [
        "nothing was sent",
        &format!("account {id} (clerk@example.com)"),
        "Transport      smtp",
        "Envelope from  clerk@example.com",
        "Envelope to    buyer@example.com, archive@example.com",
        " bytes",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }
    // Nothing queued.
    let queue = cli.run(&["queue", "list", "--json"]).ok().json();
    assert_eq!(queue, serde_json::json!([]));

    // The company's login is not an address: a dry run says so, until it has a From.
    let mut args = vec!["send", "--dry-run", "--company"];
    args.extend_from_slice(&MESSAGE);
    let refused = cli.run(&args);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("`relay` is not an address"),
        "{refused:?}"
    );
    cli.run(&["company", "set", "--from", "office@example.com"])
        .ok();
    let mut args = vec!["send", "--dry-run", "--company", "--json"];
    args.extend_from_slice(&MESSAGE);
    assert_eq!(
        cli.run(&args).ok().json()["envelope_from"],
        "office@example.com"
    );

    // --account and --company together are a usage error.
    let mut args = vec!["send", "--dry-run", "--company", "--account", &id_text];
    args.extend_from_slice(&MESSAGE);
    assert_eq!(cli.run(&args).code, 2);
}

#[test]
fn an_accounts_from_address_is_shown_changed_and_cleared() {
    let cli = Cli::new();
    let (id, added) = add_clerk(&cli, &[]);
    assert!(
        added.stderr.contains(
            "the SMTP user `clerk` is not an address and the account has no From address"
        ),
        "{added:?}"
    );
    let id = id.to_string();
    cli.run(&["account", "edit", &id, "--from", "clerk@example.com"])
        .ok();
    let show = cli.run(&["account", "show", &id]).ok().stdout;
    assert!(
        show.contains("From") && show.contains("clerk@example.com"),
        "{show}"
    );
    assert_eq!(
        cli.run(&["account", "show", &id, "--json"]).ok().json()["from_address"],
        "clerk@example.com"
    );
    let bad = cli.run(&["account", "edit", &id, "--from", "not an address"]);
    assert_ne!(bad.code, 0, "{bad:?}");
    cli.run(&["account", "edit", &id, "--no-from"]).ok();
    assert!(cli.run(&["account", "show", &id, "--json"]).ok().json()["from_address"].is_null());
    let both = cli.run(&[
        "account",
        "edit",
        &id,
        "--from",
        "a@example.com",
        "--no-from",
    ]);
    assert_eq!(both.code, 2, "{both:?}");
}

#[test]
fn account_remove_refuses_while_messages_wait_and_force_re_resolves_them() {
    let cli = Cli::new();
    company_relay(&cli);
    cli.run(&["company", "set", "--from", "office@example.com"])
        .ok();
    let (id, _) = add_clerk(
        &cli,
        &[
            "--from",
            "sa@example.com",
            "--bind",
            "SystemUser:User_Name:sa",
        ],
    );
    let mut args = vec!["send", "--queue", "--user", "sa"];
    args.extend_from_slice(&MESSAGE);
    let queued = cli.run(&args).ok().stdout.trim().to_owned();
    let id_text = id.to_string();

    let refused = cli.run(&["account", "remove", &id_text]);
    assert_eq!(refused.code, 1, "{refused:?}");
    for expected in [
        &format!("account {id} is used by 1 queued or held message(s): {queued} \"Order 7\""),
        &format!("mailroom account remove {id} --force"),
        &format!("mailroom queue cancel {queued}"),
    ] {
        assert!(
            refused.stderr.contains(expected.as_str()),
            "{expected:?} in {}",
            refused.stderr
        );
    }
    cli.run(&["account", "show", &id_text]).ok();

    let removed = cli
        .run(&["account", "remove", &id_text, "--force", "--json"])
        .ok()
        .json();
    assert_eq!(removed["removed"], 1);
    assert_eq!(
        removed["re_resolved"][0]["id"],
        queued.parse::<i64>().unwrap()
    );
    assert_eq!(removed["re_resolved"][0]["account"]["kind"], "company");
    assert_eq!(cli.run(&["account", "show", &id_text]).code, 1);
    let show = cli.run(&["queue", "show", &queued, "--json"]).ok().json();
    assert_eq!(show["account"]["kind"], "company");
    assert_eq!(show["envelope_from"], "office@example.com");
    assert_eq!(show["subject"], "Order 7");
}

#[test]
fn account_add_refuses_contradictions_and_suggests_providers() {
    let cli = Cli::new();
    let run = cli.run(&[
        "account",
        "add",
        "--provider",
        "none",
        "--host",
        "h",
        "--tls",
        "--no-tls",
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    let run = cli.run(&["account", "add", "--provider", "microsoft", "--device-code"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("--device-code only applies to a sign-in"),
        "{run:?}"
    );
    let run = cli.run(&[
        "account",
        "add",
        "--provider",
        "microsoft",
        "--sign-in",
        "--from",
        "a@example.com",
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    let run = cli.run(&["account", "add", "--provider", "microsfot"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("did you mean `microsoft`?"), "{run:?}");
    let run = cli.run(&["account", "add", "--user", "a@example.com"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--provider is required"), "{run:?}");
    let help = cli.run(&["account", "add", "--help"]).ok().stdout;
    assert!(help.contains("m365") && help.contains("gmail"), "{help}");
    // Nothing was stored by the refusals.
    assert_eq!(
        cli.run(&["account", "list", "--json"]).ok().json(),
        serde_json::json!([])
    );
    // A password account without a password is saved, with a note.
    let run = cli
        .run(&[
            "account",
            "add",
            "--provider",
            "none",
            "--host",
            "h",
            "--user",
            "a@example.com",
        ])
        .ok();
    assert!(
        run.stderr.contains("note: the account has no password"),
        "{run:?}"
    );
}

#[test]
fn account_list_shows_the_sign_in_state() {
    let cli = Cli::new();
    add_clerk(&cli, &["--from", "clerk@example.com"]);
    cli.run(&[
        "account",
        "add",
        "--provider",
        "microsoft",
        "--user",
        "sa@contoso.example",
    ])
    .ok();
    let list = cli.run(&["account", "list", "--json"]).ok().json();
    assert_eq!(list[0]["signed_in"], "not_applicable");
    assert_eq!(list[1]["signed_in"], "not_signed_in");
    let text = cli.run(&["account", "list"]).ok().stdout;
    assert!(text.lines().next().unwrap().contains("Signed in"), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[1].ends_with(" n/a") && lines[2].ends_with(" no"),
        "{text}"
    );
}

async fn age(cli: &Cli, sql: &str) {
    let db = Database::connect(format!("sqlite://{}", cli.path().display()))
        .await
        .unwrap();
    db.execute(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap();
    db.close().await.unwrap();
}

#[tokio::test]
async fn queue_list_shows_subjects_and_purge_removes_old_finished_messages() {
    let cli = Cli::new();
    company_relay(&cli);
    cli.run(&["company", "set", "--from", "office@example.com"])
        .ok();
    let mut ids = Vec::new();
    for subject in ["First", "Second", "Third"] {
        let mut args = vec!["send", "--queue", "--feature", "automation-agent"];
        args.extend_from_slice(&MESSAGE[..4]);
        args.extend_from_slice(&["--subject", subject, "--body", "x"]);
        ids.push(cli.run(&args).ok().stdout.trim().to_owned());
    }
    let list = cli.run(&["queue", "list"]).ok().stdout;
    assert!(list.lines().next().unwrap().contains("Subject"), "{list}");
    assert!(list.contains("Second"), "{list}");
    let show = cli.run(&["queue", "show", &ids[0]]).ok().stdout;
    assert!(show.contains("Subject") && show.contains("First"), "{show}");

    // First: sent 40 days ago; Second: cancelled now; Third: queued.
    age(
        &cli,
        &format!(
            "UPDATE outbox_message SET status = 'sent', updated_at = '2000-01-01 00:00:00+00:00' WHERE id = {}",
            ids[0]
        ),
    )
    .await;
    cli.run(&["queue", "cancel", &ids[1]]).ok();

    let refused = cli.run(&["queue", "purge", "--status", "queued", "--older-than", "1d"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    let refused = cli.run(&["queue", "purge", "--status", "sent", "--older-than", "soon"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    let purged = cli
        .run(&[
            "queue",
            "purge",
            "--status",
            "sent",
            "--status",
            "cancelled",
            "--older-than",
            "30d",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(purged["removed"], 1, "only the old sent one");
    let purged = cli
        .run(&[
            "queue",
            "purge",
            "--status",
            "cancelled",
            "--older-than",
            "0s",
        ])
        .ok();
    assert_eq!(purged.stdout.trim(), "1 message(s) removed");
    let left = cli.run(&["queue", "list", "--json"]).ok().json();
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["id"].to_string(), ids[2]);
}

#[test]
fn the_retention_setting_is_shown_and_changed() {
    let cli = Cli::new();
    let get = cli.run(&["settings", "get", "--json"]).ok().json();
    assert_eq!(get["outbox_retention_days"], 30);
    cli.run(&["settings", "set", "outbox-retention-days", "0"])
        .ok();
    let get = cli
        .run(&["settings", "get", "outbox-retention-days"])
        .ok()
        .stdout;
    assert!(
        get.contains("outbox-retention-days") && get.trim().ends_with(" 0"),
        "{get}"
    );
    assert_eq!(
        cli.run(&["settings", "set", "outbox-retention-days", "forever"])
            .code,
        2
    );
    assert_eq!(
        cli.run(&["settings", "set", "can-sign-in-when-sending", "maybe"])
            .code,
        2
    );
}
