//! `mailroom send` and `mailroom queue` against the aiosmtpd test server: attachments, a
//! fax recipient, Bcc, and the bytes as the server received them.

use std::path::PathBuf;

use base64::Engine as _;

use crate::Cli;
use mailroom_testkit::smtp::{ServerOptions, TestServer};

pub(crate) const RELAY: &str = "relay";
pub(crate) const RELAY_PASSWORD: &str = "relay-password-7781";

pub(crate) fn relay_server() -> TestServer {
    TestServer::start(ServerOptions {
        passwords: vec![(RELAY.to_owned(), RELAY_PASSWORD.to_owned())],
        ..ServerOptions::default()
    })
}

/// Writes the test server's CA where `MAILROOM_CA_FILE` can point.
pub(crate) fn ca_file(cli: &Cli, server: &TestServer) -> PathBuf {
    let path = cli.dir.path().join("test-ca.pem");
    std::fs::write(&path, &server.trusted_ca_pem).unwrap();
    path
}

/// The company account: password SMTP on the test server, with a fax format.
pub(crate) fn configure_relay(cli: &Cli, server: &TestServer) {
    let port = server.port.to_string();
    cli.run_with(
        &[
            "company",
            "set",
            "--provider",
            "none",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--tls",
            "--tls-startup",
            "starttls",
            "--user",
            RELAY,
            "--password-stdin",
            "--fax-format",
            "{0}@fax.example.com",
        ],
        &format!("{RELAY_PASSWORD}\n"),
        &[],
    )
    .ok();
}

/// The Message-ID header of raw message bytes.
pub(crate) fn message_id_of(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .take_while(|line| !line.is_empty())
        .find_map(|line| line.strip_prefix("Message-ID: "))
        .unwrap_or_else(|| panic!("no Message-ID in {text}"))
        .trim()
        .to_owned()
}

fn headers_of(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text[..text.find("\r\n\r\n").expect("a header block")].to_owned()
}

#[test]
fn send_with_attachments_and_a_fax_recipient() {
    let server = relay_server();
    let cli = Cli::new();
    configure_relay(&cli, &server);
    let ca = ca_file(&cli, &server);
    let pdf = cli.dir.path().join("SO-10234.pdf");
    let pdf_bytes: Vec<u8> = b"%PDF-1.4\n".iter().copied().chain(0..=255u8).collect();
    std::fs::write(&pdf, &pdf_bytes).unwrap();
    let notes = cli.dir.path().join("notes.txt");
    std::fs::write(&notes, "Lieferung am Montag.\n").unwrap();
    let html = cli.dir.path().join("body.html");
    std::fs::write(&html, "<p>Vielen Dank für Ihre Bestellung.</p>").unwrap();

    let run = cli
        .run_with(
            &[
                "send",
                "--to",
                "Käufer <buyer@example.com>",
                "--cc",
                "sales@example.com",
                "--bcc",
                "archive@example.com",
                "--fax",
                "+1 (555) 010-2000",
                "--from",
                "Orders <orders@example.com>",
                "--subject",
                "Auftragsbestätigung 10234",
                "--body",
                "Vielen Dank für Ihre Bestellung.",
                "--html-file",
                html.to_str().unwrap(),
                "--attach",
                pdf.to_str().unwrap(),
                "--attach",
                notes.to_str().unwrap(),
                "--json",
            ],
            "",
            &[("MAILROOM_CA_FILE", ca.to_str().unwrap())],
        )
        .ok();
    let receipt = run.json();
    assert_eq!(receipt["account"], serde_json::json!({ "kind": "company" }));
    assert_eq!(receipt["transport"], "smtp");
    assert_eq!(receipt["attempts"], 1);

    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let (event, bytes) = &messages[0];
    assert_eq!(event["mail_from"], "orders@example.com");
    assert_eq!(
        event["rcpt_tos"],
        serde_json::json!([
            "buyer@example.com",
            "+15550102000@fax.example.com",
            "sales@example.com",
            "archive@example.com"
        ])
    );
    assert_eq!(event["tls"], true);
    assert_eq!(
        message_id_of(bytes),
        receipt["message_id"].as_str().unwrap()
    );
    let headers = headers_of(bytes);
    assert!(
        !headers.contains("Bcc") && !headers.contains("archive@"),
        "{headers}"
    );
    assert!(
        headers.contains("From: Orders <orders@example.com>"),
        "{headers}"
    );
    assert!(
        headers.contains("+15550102000@fax.example.com"),
        "{headers}"
    );
    assert!(
        headers.contains("Subject: =?utf-8?"),
        "UTF-8 subject encoded: {headers}"
    );
    let text = String::from_utf8_lossy(bytes).replace("\r\n", "\n");
    assert!(text.contains("Content-Type: application/pdf"), "{text}");
    assert!(text.contains("filename=\"SO-10234.pdf\""), "{text}");
    assert!(text.contains("Content-Type: text/plain"), "{text}");
    assert!(text.contains("filename=\"notes.txt\""), "{text}");
    assert!(text.contains("Content-Type: text/html"), "{text}");
    let encoded = base64::engine::general_purpose::STANDARD.encode(&pdf_bytes);
    let body_base64: String = text.lines().map(str::trim).collect();
    assert!(body_base64.contains(&encoded), "the PDF arrives intact");
    // The password went over TLS with PLAIN or LOGIN.
    let auth = &server.events_of("auth")[0];
    assert_eq!(auth["login"], RELAY);
    assert_eq!(auth["tls"], true);
}

#[test]
fn send_refuses_a_header_injection_with_a_usage_error() {
    let server = relay_server();
    let cli = Cli::new();
    configure_relay(&cli, &server);
    let run = cli.run(&[
        "send",
        "--to",
        "buyer@example.com",
        "--from",
        "orders@example.com",
        "--subject",
        "Invoice\r\nBcc: everyone@example.com",
        "--body",
        "x",
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("line break"), "{}", run.stderr);
    assert!(server.events().is_empty());
}

#[test]
fn queue_then_agent_once_then_queue_list_and_show() {
    let server = relay_server();
    let cli = Cli::new();
    configure_relay(&cli, &server);
    let ca = ca_file(&cli, &server);
    let env = [("MAILROOM_CA_FILE", ca.to_str().unwrap())];
    let queued = cli
        .run_with(
            &[
                "send",
                "--queue",
                "--to",
                "buyer@example.com",
                "--from",
                "orders@example.com",
                "--subject",
                "Queued",
                "--body",
                "later",
                "--feature",
                "automation-agent",
            ],
            "",
            &env,
        )
        .ok();
    let id = queued.stdout.trim().to_owned();
    assert!(
        id.parse::<i64>().is_ok(),
        "send --queue prints the id: {queued:?}"
    );
    assert!(server.events().is_empty(), "queued, not sent");

    let list = cli.run(&["queue", "list"]).ok();
    assert!(list.stdout.contains("queued"), "{}", list.stdout);

    let agent = cli.run_with(&["agent", "--once", "--json"], "", &env).ok();
    assert_eq!(agent.json()["sent"], 1, "{agent:?}");

    let show = cli.run(&["queue", "show", &id, "--json"]).ok().json();
    assert_eq!(show["status"], "sent");
    assert_eq!(show["attempts"], 1);
    assert_eq!(show["transport"], "smtp");
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        message_id_of(&messages[0].1),
        show["message_id"].as_str().unwrap()
    );

    let cancel = cli.run(&["queue", "cancel", &id]);
    assert_eq!(cancel.code, 1);
    assert!(
        cancel
            .stderr
            .contains("is sent; only queued, held or failed messages can be cancelled"),
        "{}",
        cancel.stderr
    );
}

#[test]
fn a_server_refusing_basic_authentication_gets_the_command_that_switches_to_microsoft() {
    // Exchange Online once basic authentication is off for SMTP AUTH.
    let server = mailroom_testkit::scripted::ScriptedServer::start(|conn| {
        if !conn.open_plain(&["AUTH PLAIN LOGIN"]) {
            return;
        }
        conn.read_line();
        conn.send("550 5.7.30 Basic authentication is not supported for Client Submission.\r\n");
        conn.read_to_end(1024);
    });
    let cli = Cli::new();
    let port = server.port.to_string();
    cli.run_with(
        &[
            "company",
            "set",
            "--provider",
            "none",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--no-tls",
            "--user",
            "relay@example.com",
            "--password-stdin",
        ],
        "a-password\n",
        &[],
    )
    .ok();
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
    assert!(run.stderr.contains("5.7.30"), "{run:?}");
    assert!(
        run.stderr
            .contains("mailroom company set --provider microsoft"),
        "{run:?}"
    );
    assert!(!run.stderr.contains("a-password"), "{run:?}");
    // Refused at once: a configuration problem is not retried.
    assert_eq!(server.connections(), 1);
}
