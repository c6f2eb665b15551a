//! `mailroom console`: prints a one-time login URL on stderr, serves the console at it,
//! stops on SIGTERM; refuses an address off loopback without TLS.

use std::io::{BufRead, BufReader};
use std::process::Command;

use crate::Cli;

#[test]
fn the_console_prints_a_login_url_that_opens_a_session_once() {
    let cli = Cli::new();
    cli.run(&[
        "company",
        "set",
        "--provider",
        "microsoft",
        "--user",
        "sales@contoso.example",
    ])
    .ok();
    let mut console = cli
        .command(&["console", "--listen", "127.0.0.1:0"])
        .spawn()
        .expect("start the console");
    let stderr = console.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let login = loop {
        let line = lines
            .next()
            .expect("the console printed its login URL before exiting")
            .unwrap();
        if let Some(at) = line.find("http://127.0.0.1:") {
            if line.contains("/login?token=") {
                break line[at..].trim().to_owned();
            }
        }
    };
    std::thread::spawn(move || for _ in lines {});

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (first, second, page) = runtime.block_on(async {
        let first = client.get(&login).send().await.unwrap();
        let cookie = first.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let origin = &login[..login.find("/login").unwrap()];
        let page = client
            .get(format!("{origin}/accounts"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let second = client.get(&login).send().await.unwrap();
        (first.status(), second.status(), page)
    });
    assert_eq!(first.as_u16(), 303);
    assert_eq!(second.as_u16(), 403, "the login URL works once");
    assert!(
        page.contains("sales@contoso.example") || page.contains("smtp.office365.com"),
        "{page}"
    );

    let stopped = Command::new("kill")
        .args(["-TERM", &console.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = console.wait().unwrap();
    assert!(status.success(), "SIGTERM stops the console: {status}");
}

#[test]
fn an_address_off_loopback_without_a_certificate_is_refused() {
    let cli = Cli::new();
    let run = cli.run(&["console", "--listen", "0.0.0.0:0"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("without TLS"), "{}", run.stderr);
    assert!(run.stderr.contains("certificate"), "{}", run.stderr);

    let run = cli.run(&["console", "--tls-cert", "cert.pem"]);
    assert_ne!(run.code, 0, "a certificate without its key");
    assert!(run.stderr.contains("--tls-key"), "{}", run.stderr);
}

#[test]
fn set_password_stores_an_argon2_hash_and_refuses_a_short_one() {
    let cli = Cli::new();
    cli.run(&[
        "company",
        "set",
        "--provider",
        "microsoft",
        "--user",
        "sales@contoso.example",
    ])
    .ok();
    let short = cli.run_with(&["console", "set-password"], "short\n", &[]);
    assert_ne!(short.code, 0);
    assert!(short.stderr.contains("at least 12"), "{}", short.stderr);

    let set = cli
        .run_with(&["console", "set-password"], "correct horse battery\n", &[])
        .ok();
    assert!(set.stdout.contains("Argon2"), "{}", set.stdout);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dump = runtime.block_on(crate::dump(cli.path()));
    assert!(dump.contains("$argon2id$"), "the hash is stored");
    assert!(
        !dump.contains("correct horse battery"),
        "never the password"
    );

    cli.run(&["console", "set-password", "--remove"]).ok();
    let dump = runtime.block_on(crate::dump(cli.path()));
    assert!(!dump.contains("$argon2id$"), "removed");
}
