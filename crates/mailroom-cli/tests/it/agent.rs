//! The `mailroom agent` binary under fire: killed with SIGKILL at random moments and
//! restarted, it still delivers every queued message at least once; two agents on one
//! PostgreSQL database deliver each message exactly once.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailroom::{
    AUTOMATION_AGENT, KeyRing, Mailroom, MailroomOptions, MessageDraft, OutboxStatus, SendRequest,
};
use mailroom_accounts::Accounts;
use mailroom_model::{Provider, Secret, ServerSettingsChange, TlsStartup};
use mailroom_testkit::{Backend, TestDatabase};
use rand::{Rng, SeedableRng};

use crate::Cli;
use crate::send::{RELAY, RELAY_PASSWORD, ca_file, configure_relay, message_id_of, relay_server};
use mailroom_testkit::smtp::TestServer;

const MESSAGES: usize = 200;
const KILLS: usize = 6;

fn message(number: usize) -> SendRequest<'static> {
    SendRequest::new(
        AUTOMATION_AGENT,
        MessageDraft {
            from: Some("orders@example.com".to_owned()),
            to: vec![format!("customer{number}@example.com")],
            subject: format!("Queued message {number}"),
            text: Some(format!("Body of queued message {number}\r\n")),
            ..MessageDraft::default()
        },
    )
}

async fn queue_messages(mailroom: &Mailroom) -> Vec<String> {
    let mut message_ids = Vec::with_capacity(MESSAGES);
    for number in 0..MESSAGES {
        let id = mailroom.queue(message(number)).await.unwrap();
        message_ids.push(mailroom.outbox().get(id).await.unwrap().message_id);
    }
    message_ids
}

/// Deliveries the server recorded so far (duplicates included).
fn delivered(server: &TestServer) -> usize {
    server.events_of("message").len()
}

/// Waits until the server recorded at least `target` deliveries; the agent's progress is
/// what is waited for, not a fixed time.
#[track_caller]
fn wait_for_deliveries(server: &TestServer, target: usize, agent: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while delivered(server) < target {
        if let Some(status) = agent.try_wait().unwrap() {
            panic!(
                "the agent exited early ({status}) at {} deliveries",
                delivered(server)
            );
        }
        assert!(
            Instant::now() < deadline,
            "no progress: {} deliveries, waiting for {target}",
            delivered(server)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Counts each Message-ID the server received.
fn deliveries_by_message_id(server: &TestServer) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for (_, bytes) in server.messages() {
        *counts.entry(message_id_of(&bytes)).or_default() += 1;
    }
    counts
}

fn agent_command(
    database_url: &str,
    key: Option<&str>,
    ca: &std::path::Path,
    home: &std::path::Path,
    args: &[&str],
) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mailroom"));
    command
        .arg("agent")
        .args(args)
        .env("MAILROOM_DATABASE_URL", database_url)
        .env("MAILROOM_CA_FILE", ca)
        .env("MAILROOM_LOG", "warn")
        .env("HOME", home)
        .env_remove("MAILROOM_KEY_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    match key {
        Some(key) => command.env("MAILROOM_KEY", key),
        None => command.env_remove("MAILROOM_KEY"),
    };
    command
}

/// A PostgreSQL database with the company account on the test server, and its key.
fn postgres_relay(
    runtime: &tokio::runtime::Runtime,
    server: &TestServer,
) -> (TestDatabase, KeyRing) {
    let database = runtime.block_on(TestDatabase::new(Backend::Postgres));
    let key = KeyRing::generate();
    let change = ServerSettingsChange {
        provider: Some(Provider::None),
        host: Some("127.0.0.1".to_owned()),
        port: Some(server.port),
        tls: Some(true),
        tls_startup: Some(TlsStartup::StartTls),
        smtp_user: Some(RELAY.to_owned()),
        password: Some(Secret::new(RELAY_PASSWORD)),
        ..ServerSettingsChange::default()
    };
    runtime
        .block_on(async {
            let accounts = Accounts::new(&database.db, &key);
            accounts.verify_key().await?;
            accounts.set_company(&change, None).await
        })
        .unwrap();
    (database, key)
}

#[test]
fn the_agent_killed_at_random_moments_loses_nothing_on_sqlite() {
    crash_test(Backend::Sqlite);
}

#[test]
fn the_agent_killed_at_random_moments_loses_nothing_on_postgres() {
    crash_test(Backend::Postgres);
}

// The seed and the number of duplicates are part of the result.
#[allow(clippy::print_stdout)]
fn crash_test(backend: Backend) {
    let seed: u64 = std::env::var("MAILROOM_TEST_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(rand::random);
    println!("crash test on {backend:?}, seed {seed} (rerun with MAILROOM_TEST_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let server = relay_server();
    let cli = Cli::new();
    let ca = ca_file(&cli, &server);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (database_url, key_text, postgres, mailroom) = match backend {
        Backend::Sqlite => {
            configure_relay(&cli, &server);
            let (key, _) = KeyRing::load_or_create(&cli.key_file()).unwrap();
            let mailroom = runtime
                .block_on(Mailroom::open(&cli.url(), MailroomOptions::new(key)))
                .unwrap();
            (cli.url(), None, None, mailroom)
        }
        Backend::Postgres => {
            let (database, key) = postgres_relay(&runtime, &server);
            let mailroom = runtime
                .block_on(Mailroom::with_connection(
                    database.db.clone(),
                    MailroomOptions::new(key.clone()),
                ))
                .unwrap();
            let key_text = key.to_text().to_string();
            (
                database.url.clone(),
                Some(key_text),
                Some(database),
                mailroom,
            )
        }
    };
    let message_ids = runtime.block_on(queue_messages(&mailroom));

    // The shortest lease, so a killed agent's messages are claimed again soon.
    let args = ["--concurrency", "4", "--lease-secs", "3", "--poll-ms", "20"];
    let start = || {
        agent_command(
            &database_url,
            key_text.as_deref(),
            &ca,
            cli.dir.path(),
            &args,
        )
        .spawn()
        .expect("start the agent")
    };
    let mut agent = start();
    for kill in 1..=KILLS {
        let target = (delivered(&server) + rng.gen_range(5..=30)).min(MESSAGES - 1);
        wait_for_deliveries(&server, target, &mut agent);
        agent.kill().expect("SIGKILL the agent");
        agent.wait().unwrap();
        println!(
            "kill {kill}: SIGKILL after {} deliveries",
            delivered(&server)
        );
        agent = start();
    }

    // The last agent runs until the outbox is empty, then is stopped with SIGTERM.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let counts = runtime.block_on(mailroom.outbox().counts()).unwrap();
        if counts.get(&OutboxStatus::Sent) == Some(&(MESSAGES as u64)) {
            break;
        }
        assert!(
            agent.try_wait().unwrap().is_none(),
            "the agent exited early"
        );
        assert!(
            Instant::now() < deadline,
            "the outbox did not drain: {counts:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopped = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = agent.wait().unwrap();
    assert!(status.success(), "SIGTERM is a graceful stop: {status}");

    let counts = deliveries_by_message_id(&server);
    for message_id in &message_ids {
        assert!(
            counts.contains_key(message_id),
            "{message_id} was never delivered (seed {seed})"
        );
    }
    assert_eq!(
        counts.len(),
        MESSAGES,
        "only queued messages were delivered"
    );
    let total: usize = counts.values().sum();
    let duplicates = total - MESSAGES;
    let attempts: u32 = runtime
        .block_on(mailroom.outbox().list(None, MESSAGES as u64))
        .unwrap()
        .iter()
        .map(|message| message.attempts)
        .sum();
    println!(
        "crash test on {backend:?}: {MESSAGES} messages, {KILLS} kills, {total} deliveries, {duplicates} duplicates, {attempts} claims (seed {seed})"
    );
    drop(mailroom);
    if let Some(database) = postgres {
        runtime.block_on(database.finish());
    }
}

#[test]
fn two_agents_on_one_postgres_database_deliver_each_message_exactly_once() {
    let server = relay_server();
    let cli = Cli::new();
    let ca = ca_file(&cli, &server);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (database, key) = postgres_relay(&runtime, &server);
    let mailroom = runtime
        .block_on(Mailroom::with_connection(
            database.db.clone(),
            MailroomOptions::new(key.clone()),
        ))
        .unwrap();
    let message_ids = runtime.block_on(queue_messages(&mailroom));

    let key_text = key.to_text();
    let args = ["--once", "--concurrency", "4"];
    let mut agents: Vec<Child> = (0..2)
        .map(|_| {
            agent_command(&database.url, Some(&key_text), &ca, cli.dir.path(), &args)
                .spawn()
                .expect("start an agent")
        })
        .collect();
    for agent in &mut agents {
        let status = agent.wait().unwrap();
        assert!(status.success(), "{status}");
    }

    let counts = deliveries_by_message_id(&server);
    assert_eq!(counts.len(), MESSAGES);
    for message_id in &message_ids {
        assert_eq!(counts.get(message_id), Some(&1), "{message_id}");
    }
    let sent = runtime.block_on(mailroom.outbox().counts()).unwrap();
    assert_eq!(sent.get(&OutboxStatus::Sent), Some(&(MESSAGES as u64)));
    drop(mailroom);
    runtime.block_on(database.finish());
}
