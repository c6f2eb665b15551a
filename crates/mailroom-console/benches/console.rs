//! `cargo xtask bench console`: the console's heaviest pages on PostgreSQL, measured as a
//! browser asks for them (an HTTP request on loopback; the time includes the request and
//! response, an upper bound of the server's): the SMTP Setup list with 1,000 accounts
//! (half of them signed in), and the outbox's first page, a page deep in it and a status
//! filter with 100,000 messages (a history: 96% sent, 1% each queued, held, failed and
//! cancelled). Each is the median and 90th percentile of
//! `MAILROOM_BENCH_REQUESTS` requests (default 100), against the login page (no database)
//! in the same run and the goal of 50 ms. Not a test: it prints figures and asserts
//! nothing but that each page was served.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use mailroom::accounts::Accounts;
use mailroom::model::{Binding, Provider, Secret, ServerSettingsChange};
use mailroom::tokens::interactive::{Identity, SignedIn};
use mailroom::tokens::storage::TokenStore;
use mailroom::{AUTOMATION_AGENT, KeyRing, Mailroom, MailroomOptions, MessageDraft, SendRequest};
use mailroom_console::{Console, ConsoleOptions};
use mailroom_testkit::bench::{median_and_p90, ms};
use mailroom_testkit::{Backend, TestDatabase};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

const LOCAL_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
const ACCOUNTS: usize = 1_000;
const MESSAGES: usize = 100_000;
const GOAL: Duration = Duration::from_millis(50);

fn requests() -> usize {
    std::env::var("MAILROOM_BENCH_REQUESTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(100)
}

async fn execute(db: &sea_orm::DatabaseConnection, sql: &str) {
    db.execute(Statement::from_string(DatabaseBackend::Postgres, sql))
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// The median and 90th percentile of GET `url`, which must answer 200.
async fn measure(client: &reqwest::Client, cookie: &str, url: &str) -> (Duration, Duration, usize) {
    let mut times = Vec::new();
    let mut size = 0;
    for round in 0..requests() + 5 {
        let started = Instant::now();
        let response = client
            .get(url)
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{url}");
        size = response.bytes().await.unwrap().len();
        // The first few warm the pool and the caches.
        if round >= 5 {
            times.push(started.elapsed());
        }
    }
    let (median, p90) = median_and_p90(times);
    (median, p90, size)
}

fn main() {
    mailroom_testkit::rerun_with_postgres_default(LOCAL_POSTGRES);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

async fn run() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let key = KeyRing::generate();
    let accounts = Accounts::new(&db.db, &key);
    accounts
        .set_company(
            &ServerSettingsChange {
                provider: Some(Provider::None),
                host: Some("smtp.example.com".to_owned()),
                smtp_user: Some("relay@example.com".to_owned()),
                password: Some(Secret::new("relay-password")),
                ..ServerSettingsChange::default()
            },
            None,
        )
        .await
        .unwrap();
    let started = Instant::now();
    for number in 0..ACCOUNTS {
        let address = format!("user{number}@contoso.example");
        accounts
            .add_user_account(
                &ServerSettingsChange {
                    provider: Some(Provider::Microsoft),
                    smtp_user: Some(address.clone()),
                    ..ServerSettingsChange::default()
                },
                Some(Binding::system_user(&format!("user{number}")).unwrap()),
            )
            .await
            .unwrap();
        if number % 2 == 0 {
            let signed_in = SignedIn::from_tokens(
                Identity {
                    address,
                    tenant_id: None,
                    subject: None,
                },
                Provider::Microsoft,
                mailroom::tokens::registration::DEFAULT_MICROSOFT_TENANT,
                "access".into(),
                Some("refresh".into()),
                Duration::from_secs(3600),
                Vec::new(),
            );
            TokenStore::new(&db.db, &key)
                .save_sign_in(&signed_in, chrono::Utc::now())
                .await
                .unwrap();
        }
    }
    let mailroom = Arc::new(
        Mailroom::with_connection(db.db.clone(), MailroomOptions::new(key))
            .await
            .unwrap(),
    );
    let template = mailroom
        .queue(SendRequest::new(
            AUTOMATION_AGENT,
            MessageDraft {
                to: vec!["customer@example.com".to_owned()],
                subject: "Statement".to_owned(),
                text: Some("Your statement.\r\n".to_owned()),
                ..MessageDraft::default()
            },
        ))
        .await
        .unwrap();
    execute(
        &db.db,
        &format!(
            "INSERT INTO outbox_message (message_id, feature, system_user, account_kind, account_id,
                sender, recipients, bcc_header, bytes, status, attempts, next_attempt_at,
                created_at, updated_at, subject, mailbox, priority, units)
             SELECT t.message_id || '-' || g, t.feature, t.system_user, t.account_kind, t.account_id,
                t.sender, t.recipients, t.bcc_header, t.bytes,
                CASE g % 100 WHEN 0 THEN 'queued' WHEN 1 THEN 'held' WHEN 2 THEN 'failed'
                    WHEN 3 THEN 'cancelled' ELSE 'sent' END, 0,
                t.next_attempt_at, t.created_at, t.updated_at, t.subject, t.mailbox, 1, 1
             FROM outbox_message t, generate_series(1, {}) g WHERE t.id = {template}",
            MESSAGES - 1
        ),
    )
    .await;
    execute(&db.db, "ANALYZE outbox_message").await;
    println!(
        "set up {ACCOUNTS} accounts ({} signed in) and {MESSAGES} outbox messages in {:.1} s",
        ACCOUNTS / 2,
        started.elapsed().as_secs_f64()
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let console = Console::new(
        Arc::clone(&mailroom),
        ConsoleOptions {
            listen: listener.local_addr().unwrap(),
            ..ConsoleOptions::default()
        },
    )
    .unwrap();
    let login = console.login_url();
    let origin = console.origin().as_str().trim_end_matches('/').to_owned();
    tokio::spawn(console.serve(listener, std::future::pending()));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = client.get(login.as_str()).send().await.unwrap().headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let deep = template + (MESSAGES as i64) - 1_000;
    println!(
        "GET over loopback, PostgreSQL, {} requests each (goal: under {} ms)",
        requests(),
        GOAL.as_millis()
    );
    let (baseline, _, _) = measure(&client, &cookie, &format!("{origin}/login")).await;
    println!(
        "  login page (no database, baseline): median {:.2} ms",
        ms(baseline)
    );
    for (what, path) in [
        ("SMTP Setup, 1,000 accounts", "/accounts".to_owned()),
        ("outbox, first page", "/outbox".to_owned()),
        (
            "outbox, a page 99,000 deep",
            format!("/outbox?before={deep}"),
        ),
        ("outbox, failed only", "/outbox?status=failed".to_owned()),
    ] {
        let (median, p90, size) = measure(&client, &cookie, &format!("{origin}{path}")).await;
        println!(
            "  {what:<28} median {:>6.2} ms, p90 {:>6.2} ms, {:>4} KiB, {:>5.1}x the baseline, {}",
            ms(median),
            ms(p90),
            size / 1024,
            median.as_secs_f64() / baseline.as_secs_f64(),
            if median < GOAL {
                "within the goal"
            } else {
                "OVER the goal"
            }
        );
    }
    db.finish().await;
}
