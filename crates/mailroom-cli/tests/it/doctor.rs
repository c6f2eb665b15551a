//! `mailroom doctor`: all checks ok against aiosmtpd (exit 0), problems with their fixes
//! (exit 1), the `--json` shape, and no secret in the output.

use crate::Cli;
use crate::send::ca_file;
use mailroom_testkit::smtp::{ServerOptions, TestServer};

const OFFICE: &str = "office@example.com";
const OFFICE_PASSWORD: &str = "office-password-5521";

fn server() -> TestServer {
    TestServer::start(ServerOptions {
        passwords: vec![(OFFICE.to_owned(), OFFICE_PASSWORD.to_owned())],
        ..ServerOptions::default()
    })
}

/// The company account: password SMTP with STARTTLS on `port`, as `user`.
fn configure_company(cli: &Cli, port: u16, user: &str) {
    let port = port.to_string();
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
            user,
            "--password-stdin",
        ],
        &format!("{OFFICE_PASSWORD}\n"),
        &[],
    )
    .ok();
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn line_of<'a>(stdout: &'a str, start: &str) -> &'a str {
    stdout
        .lines()
        .find(|line| line.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?} in:\n{stdout}"))
}

#[test]
fn all_ok_against_aiosmtpd_exits_0_and_never_authenticates() {
    let server = server();
    let cli = Cli::new();
    configure_company(&cli, server.port, OFFICE);
    let ca = ca_file(&cli, &server);
    let run = cli.run_with(
        &["doctor"],
        "",
        &[("MAILROOM_CA_FILE", ca.to_str().unwrap())],
    );
    assert_eq!(run.code, 0, "{run:?}");
    line_of(
        &run.stdout,
        "ok       database: reachable, schema version m2026",
    );
    line_of(&run.stdout, "ok       key: ");
    line_of(&run.stdout, "ok       root certificate: MAILROOM_CA_FILE=");
    let server_line = line_of(&run.stdout, "ok       company account server: ");
    assert!(server_line.contains("STARTTLS"), "{server_line}");
    assert!(
        server_line.contains(" AUTH ") && server_line.contains(" PLAIN"),
        "{server_line}"
    );
    line_of(&run.stdout, "ok       company account authentication: ");
    assert!(!run.stdout.contains("problem"), "{}", run.stdout);
    assert!(!run.stdout.contains(OFFICE_PASSWORD) && !run.stderr.contains(OFFICE_PASSWORD));
    assert!(server.events_of("auth").is_empty(), "{:?}", server.events());
    assert!(server.messages().is_empty());
}

#[test]
fn a_closed_port_is_a_problem_with_its_fix_and_exits_1() {
    let cli = Cli::new();
    configure_company(&cli, closed_port(), OFFICE);
    let run = cli.run(&["doctor", "--company", "--refresh"]);
    assert_eq!(run.code, 1, "{run:?}");
    let problem = line_of(&run.stdout, "problem  company account server: 127.0.0.1:");
    assert!(problem.contains("connecting"), "{problem}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    let at = lines.iter().position(|line| *line == problem).unwrap();
    assert_eq!(lines[at + 1], "  to fix: mailroom company set [OPTIONS]");
    assert!(!run.stdout.contains(OFFICE_PASSWORD) && !run.stderr.contains(OFFICE_PASSWORD));
}

#[test]
fn a_microsoft_account_without_an_app_registration_is_a_problem() {
    let cli = Cli::new();
    let port = closed_port().to_string();
    cli.run(&[
        "company",
        "set",
        "--provider",
        "microsoft",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--user",
        OFFICE,
    ])
    .ok();
    let run = cli.run(&["doctor"]);
    assert_eq!(run.code, 1, "{run:?}");
    line_of(
        &run.stdout,
        "problem  app microsoft: no microsoft app registration",
    );
    assert!(
        run.stdout
            .contains("  to fix: mailroom app set microsoft --client-id ID"),
        "{}",
        run.stdout
    );
    line_of(
        &run.stdout,
        "skipped  company account token: no app registration",
    );
}

#[test]
fn a_password_user_that_is_not_an_address_is_flagged() {
    let server = server();
    let cli = Cli::new();
    configure_company(&cli, server.port, "relay");
    let ca = ca_file(&cli, &server);
    let run = cli.run_with(
        &["doctor"],
        "",
        &[("MAILROOM_CA_FILE", ca.to_str().unwrap())],
    );
    assert_eq!(run.code, 1, "{run:?}");
    let line = line_of(&run.stdout, "problem  company account settings: ");
    assert!(
        line.contains("every send must give its From address"),
        "{line}"
    );
}

#[test]
fn json_is_a_list_of_checks_with_remedies_as_data_and_commands() {
    let cli = Cli::new();
    configure_company(&cli, closed_port(), OFFICE);
    let run = cli.run(&["doctor", "--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let json = run.json();
    let checks = json.as_array().expect("a list");
    for check in checks {
        let fields = check.as_object().expect("an object");
        let mut keys: Vec<&str> = fields.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["detail", "name", "remedy", "status"], "{check}");
        assert!(
            ["ok", "problem", "skipped"].contains(&check["status"].as_str().unwrap()),
            "{check}"
        );
    }
    let problem = checks
        .iter()
        .find(|check| check["name"] == "company account server")
        .expect("the server check");
    assert_eq!(problem["status"], "problem");
    assert_eq!(problem["remedy"]["action"], "edit_account");
    assert_eq!(problem["remedy"]["account"]["kind"], "company");
    assert_eq!(
        problem["remedy"]["command"],
        "mailroom company set [OPTIONS]"
    );
    let database = checks
        .iter()
        .find(|check| check["name"] == "database")
        .unwrap();
    assert_eq!(database["status"], "ok");
    assert!(database["remedy"].is_null());
    assert!(!run.stdout.contains(OFFICE_PASSWORD));
}

#[test]
fn an_unreadable_ca_file_is_a_problem_not_a_failure() {
    let cli = Cli::new();
    configure_company(&cli, closed_port(), OFFICE);
    let missing = cli.dir.path().join("missing-ca.pem");
    let run = cli.run_with(
        &["doctor"],
        "",
        &[("MAILROOM_CA_FILE", missing.to_str().unwrap())],
    );
    assert_eq!(run.code, 1, "{run:?}");
    line_of(
        &run.stdout,
        "problem  root certificate: cannot read MAILROOM_CA_FILE=",
    );
    assert!(
        run.stdout.contains(
            "  to fix: point MAILROOM_CA_FILE at a readable PEM file of trusted root certificates, or unset it"
        ),
        "{}",
        run.stdout
    );
}
