//! `cargo xtask bench send`: (1) the facade's own overhead per send — resolve the account,
//! a cached token, build the MIME message — with a transport that discards, median in
//! microseconds (goal: at most 50 µs), on SQLite and PostgreSQL; (2) the agent draining
//! 5,000 queued messages from PostgreSQL to the aiosmtpd test server over STARTTLS +
//! XOAUTH2, in messages per second. Not a test: it prints figures and asserts nothing.
//!
//! Environment: `MAILROOM_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), `MAILROOM_BENCH_SENDS` (default 5000),
//! `MAILROOM_BENCH_MESSAGES` (default 5000), `MAILROOM_BENCH_SERVER_WORKERS` (aiosmtpd
//! processes, default 2), `MAILROOM_BENCH_CONCURRENCY` (agent concurrencies, default `4,8`).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use mailroom::{
    AUTOMATION_AGENT, Agent, AgentOptions, KeyRing, Mailroom, MailroomOptions, MessageDraft,
    Provider, SALES_DOCUMENT, SendRequest,
};
use mailroom_accounts::Accounts;
use mailroom_model::{
    Binding, Credentials, Delivery, MessageTransport, OutgoingMessage, ServerSettingsChange,
    TlsStartup, TransportError, TransportKind,
};
use mailroom_testkit::smtp::{ServerOptions, TestServer};
use mailroom_testkit::{Backend, TestDatabase};
use mailroom_tokens::{
    interactive::{Identity, SignedIn},
    registration::{AppChange, Apps},
    storage::TokenStore,
};

const USER: &str = "bench@contoso.example";
const TOKEN: &str = "bench-access-token";
const LOCAL_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Accepts every message and does nothing with it.
#[derive(Debug)]
struct DiscardTransport;

#[async_trait]
impl MessageTransport for DiscardTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Smtp
    }

    async fn send(
        &self,
        message: &OutgoingMessage,
        _credentials: &Credentials,
    ) -> Result<Delivery, TransportError> {
        std::hint::black_box(message.bytes.len());
        Ok(Delivery {
            reply: "250 2.0.0 discarded".to_owned(),
            provider_message_id: None,
            thread_id: None,
        })
    }
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn draft(number: usize) -> MessageDraft {
    MessageDraft {
        to: vec![format!("Customer {number} <customer{number}@example.com>")],
        bcc: vec!["archive@example.com".to_owned()],
        subject: format!("Order confirmation {number}"),
        text: Some(format!(
            "Thank you for your order {number}.\r\n{}",
            "Line of an order confirmation.\r\n".repeat(30)
        )),
        ..MessageDraft::default()
    }
}

/// A Microsoft account on `port` with a valid stored token, bound to system user `sa`
/// (user account) or as the company account.
async fn configure(db: &TestDatabase, key: &KeyRing, port: u16, as_company: bool) {
    let accounts = Accounts::new(&db.db, key);
    accounts.verify_key().await.unwrap();
    let change = ServerSettingsChange {
        provider: Some(Provider::Microsoft),
        host: Some("127.0.0.1".to_owned()),
        port: Some(port),
        tls: Some(true),
        tls_startup: Some(TlsStartup::StartTls),
        timeout_ms: Some(20_000),
        smtp_user: Some(USER.to_owned()),
        ..ServerSettingsChange::default()
    };
    if as_company {
        accounts.set_company(&change, None).await.unwrap();
    } else {
        accounts
            .set_company(
                &ServerSettingsChange {
                    smtp_user: Some("orders@contoso.example".to_owned()),
                    ..change.clone()
                },
                None,
            )
            .await
            .unwrap();
        accounts
            .add_user_account(&change, Some(Binding::system_user("sa").unwrap()))
            .await
            .unwrap();
    }
    Apps::new(&db.db, key)
        .set(
            Provider::Microsoft,
            AppChange {
                client_id: Some("11111111-2222-3333-4444-555555555555".to_owned()),
                tenant: Some(mailroom_tokens::registration::DEFAULT_MICROSOFT_TENANT.to_owned()),
                ..AppChange::default()
            },
        )
        .await
        .unwrap();
    let signed_in = SignedIn::from_tokens(
        Identity {
            address: USER.to_owned(),
            tenant_id: None,
            subject: None,
        },
        Provider::Microsoft,
        mailroom_tokens::registration::DEFAULT_MICROSOFT_TENANT,
        TOKEN.into(),
        Some("bench-refresh-token".into()),
        Duration::from_secs(24 * 3600),
        Vec::new(),
    );
    TokenStore::new(&db.db, key)
        .save_sign_in(&signed_in, Utc::now())
        .await
        .unwrap();
}

async fn facade_overhead(backend: Backend, sends: usize, resolution_cache_ttl: Duration) {
    let db = TestDatabase::new(backend).await;
    let key = KeyRing::generate();
    configure(&db, &key, 2525, false).await;
    let mut options = MailroomOptions::new(key);
    options.transport_override = Some(Arc::new(DiscardTransport));
    options.resolution_cache_ttl = resolution_cache_ttl;
    let mailroom = Mailroom::with_connection(db.db.clone(), options)
        .await
        .unwrap();
    let request = |number: usize| {
        let mut request = SendRequest::new(SALES_DOCUMENT, draft(number));
        request.system_user = Some("sa".to_owned());
        request
    };
    // Warm up: the app registration and the token are cached after the first send.
    for number in 0..200 {
        mailroom.send(request(number)).await.unwrap();
    }
    let mut samples = Vec::with_capacity(sends);
    for number in 0..sends {
        let request = request(number);
        let started = Instant::now();
        let receipt = mailroom.send(request).await.unwrap();
        samples.push(started.elapsed());
        std::hint::black_box(receipt);
    }
    samples.sort();
    let at = |quantile: f64| {
        samples[((samples.len() - 1) as f64 * quantile) as usize].as_secs_f64() * 1e6
    };
    println!(
        "facade overhead per send on {backend:?} ({sends} sends, resolve + cached token + MIME build, discarding transport, resolution cache {resolution_cache_ttl:?}): median {:.1} µs, p90 {:.1} µs, p99 {:.1} µs",
        at(0.5),
        at(0.9),
        at(0.99)
    );
    // The resolution alone without the facade's cache (one database query for a bound
    // user), for the breakdown.
    let feature = mailroom::FeatureCatalog::with_defaults()
        .get(SALES_DOCUMENT)
        .unwrap()
        .clone();
    let accounts = Accounts::new(mailroom.database(), &mailroom.options().key);
    let mut resolve = Vec::with_capacity(sends);
    for _ in 0..sends {
        let started = Instant::now();
        std::hint::black_box(accounts.resolve(&feature, Some("sa")).await.unwrap());
        resolve.push(started.elapsed());
    }
    resolve.sort();
    println!(
        "  the resolution alone, read from the database: median {:.1} µs",
        resolve[resolve.len() / 2].as_secs_f64() * 1e6
    );
    // The MIME build alone, for the breakdown.
    let mut build = Vec::with_capacity(sends);
    for number in 0..sends {
        let message = draft(number);
        let started = Instant::now();
        std::hint::black_box(message.build(USER, None).unwrap());
        build.push(started.elapsed());
    }
    build.sort();
    println!(
        "  of which the MIME build alone: median {:.1} µs",
        build[build.len() / 2].as_secs_f64() * 1e6
    );
    drop(mailroom);
    db.finish().await;
}

async fn agent_drain(messages: usize, workers: usize, concurrency: usize) {
    let server = TestServer::start(ServerOptions {
        tokens: vec![(USER.to_owned(), TOKEN.to_owned())],
        store: false,
        workers,
        ..ServerOptions::default()
    });
    let db = TestDatabase::new(Backend::Postgres).await;
    let key = KeyRing::generate();
    configure(&db, &key, server.port, true).await;
    let mut options = MailroomOptions::new(key);
    options.extra_root_pem = Some(server.trusted_ca_pem.clone().into_bytes());
    options.smtp_pool_size = Some(concurrency);
    let mailroom = Arc::new(
        Mailroom::with_connection(db.db.clone(), options)
            .await
            .unwrap(),
    );
    let queued = Instant::now();
    for number in 0..messages {
        mailroom
            .queue(SendRequest::new(AUTOMATION_AGENT, draft(number)))
            .await
            .unwrap();
    }
    let queue_seconds = queued.elapsed().as_secs_f64();
    let agent = Agent::new(
        mailroom.clone(),
        AgentOptions {
            concurrency,
            once: true,
            ..AgentOptions::default()
        },
    );
    let started = Instant::now();
    let summary = agent.run(std::future::pending()).await.unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(summary.sent as usize, messages, "{summary:?}");
    println!(
        "agent drain from PostgreSQL to the SMTP test server ({messages} messages, concurrency {concurrency}, {workers} server processes, STARTTLS + XOAUTH2): {:.0} messages/s ({seconds:.2} s); queueing them took {:.0} messages/s",
        messages as f64 / seconds,
        messages as f64 / queue_seconds
    );
    drop(agent);
    drop(mailroom);
    db.finish().await;
}

fn main() {
    mailroom_testkit::rerun_with_postgres_default(LOCAL_POSTGRES);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let sends = env_number("MAILROOM_BENCH_SENDS", 5000);
    let messages = env_number("MAILROOM_BENCH_MESSAGES", 5000);
    let workers = env_number("MAILROOM_BENCH_SERVER_WORKERS", 2);
    let concurrencies: Vec<usize> = std::env::var("MAILROOM_BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "4,8".to_owned())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    runtime.block_on(async {
        // As shipped: resolutions reused for `MailroomOptions::resolution_cache_ttl` (1 s).
        let cached = MailroomOptions::new(KeyRing::generate()).resolution_cache_ttl;
        facade_overhead(Backend::Sqlite, sends, cached).await;
        facade_overhead(Backend::Postgres, sends, cached).await;
        // Without the cache: every send reads its account from the database.
        facade_overhead(Backend::Sqlite, sends, Duration::ZERO).await;
        facade_overhead(Backend::Postgres, sends, Duration::ZERO).await;
        for concurrency in concurrencies {
            agent_drain(messages, workers, concurrency).await;
        }
    });
}
