//! `cargo xtask bench claim`: the agent's claim on PostgreSQL with a 1,000-row and a
//! 100,000-row outbox, every message due, spread over 50 mailboxes and all in one
//! mailbox (a month-end backlog): the median and 90th percentile of one claim of 16
//! messages (choosing the mailboxes, their waiting messages, leasing them, reading their
//! bytes), its ratio at 100,000 rows to 1,000 (goal: at most 1.5), and PostgreSQL's plans
//! of the claim's reading statements at 100,000 rows (they should use the outbox's
//! indexes, not scan it). Not a test: it prints figures and asserts nothing.
//!
//! Environment: `MAILROOM_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), `MAILROOM_BENCH_CLAIMS` (claims measured
//! per case, default 300).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::{Duration, Instant};

use mailroom::{
    AUTOMATION_AGENT, KeyRing, Mailroom, MailroomOptions, MessageDraft, Provider, SendRequest,
};
use mailroom_accounts::Accounts;
use mailroom_model::{Secret, ServerSettingsChange};
use mailroom_testkit::bench::{median_and_p90, ms};
use mailroom_testkit::{Backend, TestDatabase};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

const LOCAL_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

fn claims() -> usize {
    std::env::var("MAILROOM_BENCH_CLAIMS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(300)
}

async fn execute(mailroom: &Mailroom, sql: &str) {
    mailroom
        .database()
        .execute(Statement::from_string(DatabaseBackend::Postgres, sql))
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// Replaces the outbox with `rows` due copies of message `template` over `mailboxes`
/// mailboxes.
async fn fill(mailroom: &Mailroom, template: i64, rows: usize, mailboxes: usize) {
    execute(
        mailroom,
        &format!("DELETE FROM outbox_message WHERE id <> {template}"),
    )
    .await;
    execute(mailroom, "DELETE FROM mailbox_pace").await;
    execute(
        mailroom,
        &format!(
            "INSERT INTO outbox_message (message_id, feature, system_user, account_kind, account_id,
                sender, recipients, bcc_header, bytes, status, attempts, next_attempt_at,
                created_at, updated_at, subject, mailbox, priority, units)
             SELECT t.message_id || '-' || g, t.feature, t.system_user, t.account_kind, t.account_id,
                t.sender, t.recipients, t.bcc_header, t.bytes, 'queued', 0, t.next_attempt_at,
                t.created_at, t.updated_at, t.subject, 'm' || (g % {mailboxes}) || '@example.com',
                1, 1
             FROM outbox_message t, generate_series(1, {}) g WHERE t.id = {template}",
            rows - 1
        ),
    )
    .await;
    execute(
        mailroom,
        &format!("UPDATE outbox_message SET status = 'cancelled' WHERE id = {template}"),
    )
    .await;
    execute(
        mailroom,
        "INSERT INTO mailbox_pace (mailbox, daily_unit, next_send_at, pauses, last_claim_at, updated_at)
         SELECT DISTINCT mailbox, 'messages', TIMESTAMPTZ '1970-01-01 00:00:00+00', 0,
            TIMESTAMPTZ '1970-01-01 00:00:00+00', now()
         FROM outbox_message WHERE status = 'queued'",
    )
    .await;
    execute(mailroom, "ANALYZE outbox_message").await;
    execute(mailroom, "ANALYZE mailbox_pace").await;
}

async fn measure(mailroom: &Mailroom, count: usize) -> (Duration, Duration) {
    let outbox = mailroom.outbox();
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let claimed = outbox.claim_and_release("bench", 16).await.unwrap();
        times.push(started.elapsed());
        assert_eq!(claimed, 16, "every claim finds 16 due messages");
    }
    median_and_p90(times)
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
    Accounts::new(&db.db, &key)
        .set_company(
            &ServerSettingsChange {
                provider: Some(Provider::None),
                host: Some("127.0.0.1".to_owned()),
                port: Some(2525),
                tls: Some(false),
                smtp_user: Some("relay@example.com".to_owned()),
                password: Some(Secret::new("relay-password")),
                ..ServerSettingsChange::default()
            },
            None,
        )
        .await
        .unwrap();
    let mailroom = Mailroom::with_connection(db.db.clone(), MailroomOptions::new(key))
        .await
        .unwrap();
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
    let count = claims();
    println!("claim of 16 due messages on PostgreSQL, {count} claims per case");
    for mailboxes in [50, 1] {
        let mut medians = Vec::new();
        for rows in [1_000, 100_000] {
            fill(&mailroom, template, rows, mailboxes).await;
            // Warm the caches and the connection pool first.
            measure(&mailroom, 20).await;
            let (median, p90) = measure(&mailroom, count).await;
            println!(
                "  {rows:>7} rows over {mailboxes:>2} mailboxes: median {:.2} ms, p90 {:.2} ms",
                ms(median),
                ms(p90)
            );
            medians.push(median);
            if rows == 100_000 && mailboxes == 50 {
                println!("  plans at 100,000 rows:");
                for line in mailroom.outbox().explain_claim().await.unwrap().lines() {
                    println!("    {line}");
                }
            }
        }
        println!(
            "  {mailboxes:>2} mailboxes: median at 100,000 rows / at 1,000 rows = {:.2} (goal <= 1.5)",
            medians[1].as_secs_f64() / medians[0].as_secs_f64()
        );
    }
    db.finish().await;
}
