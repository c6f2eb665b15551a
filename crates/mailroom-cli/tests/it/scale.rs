//! The agent at scale, shared by the CI test (`agent_scale`) and `cargo xtask bench agent`
//! (which includes this file): a fresh PostgreSQL database with N password SMTP mailboxes
//! (provider none, so no rate limits) on one aiosmtpd server that records every delivery's
//! Message-ID, M messages queued over them through the public `Mailroom::queue`, K
//! `mailroom agent --once` processes run at once on that database, and the check that
//! every queued message was delivered exactly once. Only public interfaces: the binary,
//! the facade and the account repository, so it holds whatever the outbox does inside.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use mailroom::{
    KeyRing, Mailroom, MailroomOptions, MessageDraft, OutboxStatus, SALES_DOCUMENT, SendRequest,
};
use mailroom_accounts::Accounts;
use mailroom_model::{Binding, Provider, Secret, ServerSettingsChange};
use mailroom_testkit::smtp::{ServerOptions, ServerTls, TestServer};
use mailroom_testkit::{Backend, TestDatabase};

/// One mailbox: a password account bound to system user `u{number}`, sending as its own
/// address.
#[derive(Debug, Clone)]
pub(crate) struct Mailbox {
    /// The system user the account is bound to (`SystemUser / User_Name / u{number}`).
    pub(crate) system_user: String,
    /// The SMTP login, which is also the From address and envelope sender.
    pub(crate) address: String,
    /// The SMTP password the server accepts for `address`.
    pub(crate) password: String,
}

/// The mailboxes `0..count`, the same for the server and the database.
pub(crate) fn mailboxes(count: usize) -> Vec<Mailbox> {
    (0..count)
        .map(|number| Mailbox {
            system_user: format!("u{number}"),
            address: format!("u{number}@contoso.example"),
            password: format!("scale-password-{number}"),
        })
        .collect()
}

/// The counting server: aiosmtpd on 127.0.0.1 without TLS (a password goes in plaintext
/// to a loopback host only, which is what this is), accepting every mailbox's password and
/// recording each delivery's envelope sender and Message-ID, without keeping the bytes.
pub(crate) fn counting_server(mailboxes: &[Mailbox], workers: usize) -> TestServer {
    TestServer::start(ServerOptions {
        tls: ServerTls::None,
        mechanisms: vec!["PLAIN", "LOGIN"],
        passwords: mailboxes
            .iter()
            .map(|mailbox| (mailbox.address.clone(), mailbox.password.clone()))
            .collect(),
        store: true,
        store_bodies: false,
        workers,
        ..ServerOptions::default()
    })
}

/// Message `number`, for mailbox `number % mailboxes`: a short order confirmation.
pub(crate) fn draft(number: usize) -> MessageDraft {
    MessageDraft {
        to: vec![format!("Customer {number} <customer{number}@example.com>")],
        subject: format!("Order confirmation {number}"),
        text: Some(format!(
            "Thank you for your order {number}.\r\n{}",
            "Line of an order confirmation.\r\n".repeat(20)
        )),
        ..MessageDraft::default()
    }
}

/// A fresh PostgreSQL database holding one account per mailbox, and the facade on it.
pub(crate) struct Fleet {
    database: TestDatabase,
    key: KeyRing,
    mailroom: Arc<Mailroom>,
    mailboxes: Vec<Mailbox>,
    home: tempfile::TempDir,
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("database", &self.database.url)
            .field("mailboxes", &self.mailboxes.len())
            .finish_non_exhaustive()
    }
}

/// What was queued: each message's Message-ID and the mailbox (address) it sends from.
#[derive(Debug, Default)]
pub(crate) struct Queued {
    pub(crate) senders: HashMap<String, String>,
    pub(crate) seconds: f64,
}

/// One run of the agent processes.
#[derive(Debug)]
pub(crate) struct AgentRun {
    /// Wall time from starting the first process to the last one's exit.
    pub(crate) seconds: f64,
    /// User + system CPU time of the agent processes (this process's reaped children).
    pub(crate) cpu_seconds: f64,
    /// Of that, user time (the rest is the kernel's, mostly sockets).
    pub(crate) user_seconds: f64,
    /// Each process's `--json` summary.
    pub(crate) summaries: Vec<serde_json::Value>,
}

impl AgentRun {
    /// The sum of one field over the processes' summaries.
    pub(crate) fn total(&self, field: &str) -> u64 {
        self.summaries
            .iter()
            .map(|summary| summary[field].as_u64().unwrap_or(0))
            .sum()
    }
}

impl Fleet {
    /// A fresh database with the mailboxes' accounts on `server`. Fails loudly when
    /// PostgreSQL is missing (the test kit's rule).
    pub(crate) async fn new(server: &TestServer, mailboxes: Vec<Mailbox>) -> Self {
        let database = TestDatabase::new(Backend::Postgres).await;
        let key = KeyRing::generate();
        {
            let accounts = Accounts::new(&database.db, &key);
            accounts.verify_key().await.expect("verify the new key");
            for mailbox in &mailboxes {
                let change = ServerSettingsChange {
                    provider: Some(Provider::None),
                    host: Some("127.0.0.1".to_owned()),
                    port: Some(server.port),
                    tls: Some(false),
                    smtp_user: Some(mailbox.address.clone()),
                    password: Some(Secret::new(mailbox.password.clone())),
                    ..ServerSettingsChange::default()
                };
                let binding = Binding::system_user(&mailbox.system_user).expect("a binding");
                accounts
                    .add_user_account(&change, Some(binding))
                    .await
                    .expect("add a mailbox's account");
            }
        }
        let mailroom =
            Mailroom::with_connection(database.db.clone(), MailroomOptions::new(key.clone()))
                .await
                .expect("open the facade");
        Self {
            database,
            key,
            mailroom: Arc::new(mailroom),
            mailboxes,
            home: tempfile::tempdir().expect("a HOME for the agents"),
        }
    }

    /// Queues `messages` messages, message `n` for mailbox `n % mailboxes`, through
    /// `Mailroom::queue` from `tasks` concurrent tasks; returns what each should be
    /// delivered as.
    pub(crate) async fn queue(&self, messages: usize, tasks: usize) -> Queued {
        let started = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for task in 0..tasks.max(1) {
            let mailroom = Arc::clone(&self.mailroom);
            let mailboxes = self.mailboxes.clone();
            let tasks = tasks.max(1);
            workers.spawn(async move {
                let mut ids = Vec::new();
                for number in (task..messages).step_by(tasks) {
                    let mailbox = &mailboxes[number % mailboxes.len()];
                    let mut request = SendRequest::new(SALES_DOCUMENT, draft(number));
                    request.system_user = Some(mailbox.system_user.clone());
                    ids.push(mailroom.queue(request).await.expect("queue a message"));
                }
                ids
            });
        }
        let mut queued = 0;
        while let Some(ids) = workers.join_next().await {
            queued += ids.expect("a queueing task panicked").len();
        }
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(queued, messages);
        let listed = self
            .mailroom
            .outbox()
            .list(None, messages as u64 + 1)
            .await
            .expect("list the outbox");
        assert_eq!(listed.len(), messages, "the outbox holds what was queued");
        let senders = listed
            .into_iter()
            .map(|message| (message.message_id, message.sender))
            .collect::<HashMap<_, _>>();
        assert_eq!(
            senders.len(),
            messages,
            "each message has its own Message-ID"
        );
        Queued { senders, seconds }
    }

    /// Runs `agents` processes of `mailroom --json agent --once --concurrency
    /// {concurrency}` on this database at once and waits for all of them. Each must exit
    /// successfully.
    pub(crate) fn run_agents(&self, binary: &Path, agents: usize, concurrency: u16) -> AgentRun {
        let cpu_before = children_cpu_seconds();
        let user_before = children_user_seconds();
        let started = Instant::now();
        let key = self.key.to_text();
        let children: Vec<_> = (0..agents)
            .map(|_| {
                Command::new(binary)
                    .args(["--json", "agent", "--once", "--concurrency"])
                    .arg(concurrency.to_string())
                    .env("MAILROOM_DATABASE_URL", &self.database.url)
                    .env("MAILROOM_KEY", key.as_str())
                    .env("MAILROOM_LOG", "warn")
                    .env("HOME", self.home.path())
                    .env_remove("MAILROOM_KEY_FILE")
                    .env_remove("MAILROOM_CA_FILE")
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .expect("start `mailroom agent`")
            })
            .collect();
        let summaries = children
            .into_iter()
            .map(|child| {
                let output = child.wait_with_output().expect("wait for an agent");
                let stdout = String::from_utf8_lossy(&output.stdout);
                assert!(
                    output.status.success(),
                    "an agent failed ({}): {stdout}",
                    output.status
                );
                serde_json::from_str(&stdout).unwrap_or_else(|error| {
                    panic!("the agent's summary is not JSON ({error}): {stdout}")
                })
            })
            .collect();
        AgentRun {
            seconds: started.elapsed().as_secs_f64(),
            cpu_seconds: children_cpu_seconds() - cpu_before,
            user_seconds: children_user_seconds() - user_before,
            summaries,
        }
    }

    /// Compares the server's deliveries from `first_delivery` on (what it recorded before
    /// is another run's) with what was queued, and reads the outbox's counts.
    pub(crate) async fn verify(
        &self,
        server: &TestServer,
        first_delivery: usize,
        queued: &Queued,
    ) -> Verdict {
        let deliveries: Vec<(Option<String>, String)> = server
            .events_of("message")
            .into_iter()
            .skip(first_delivery)
            .map(|event| {
                (
                    event["message_id"].as_str().map(str::to_owned),
                    event["mail_from"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        let mut verdict = Verdict {
            queued: queued.senders.len(),
            deliveries: deliveries.len(),
            ..Verdict::default()
        };
        for (message_id, mail_from) in &deliveries {
            let Some(message_id) = message_id else {
                verdict.unknown.push("(no Message-ID)".to_owned());
                continue;
            };
            match queued.senders.get(message_id) {
                None => verdict.unknown.push(message_id.clone()),
                Some(sender) => {
                    *counts.entry(message_id.as_str()).or_default() += 1;
                    if sender != mail_from {
                        verdict.wrong_sender.push(format!(
                            "{message_id} from {mail_from}, queued for {sender}"
                        ));
                    }
                }
            }
        }
        for message_id in queued.senders.keys() {
            match counts.get(message_id.as_str()) {
                None => verdict.missing.push(message_id.clone()),
                Some(1) => {}
                Some(times) => verdict.duplicated.push(format!("{message_id} x{times}")),
            }
        }
        verdict.missing.sort();
        verdict.duplicated.sort();
        verdict.outbox = self
            .mailroom
            .outbox()
            .counts()
            .await
            .expect("count the outbox")
            .into_iter()
            .map(|(status, count)| (status.as_str().to_owned(), count))
            .collect();
        verdict.all_sent = verdict.outbox.get(OutboxStatus::Sent.as_str())
            == Some(&(verdict.queued as u64))
            && verdict.outbox.values().sum::<u64>() == verdict.queued as u64;
        verdict
    }

    /// Drops the database.
    pub(crate) async fn finish(self) {
        drop(self.mailroom);
        self.database.finish().await;
    }
}

/// How the deliveries compare with what was queued.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) queued: usize,
    pub(crate) deliveries: usize,
    /// Queued, never delivered.
    pub(crate) missing: Vec<String>,
    /// Delivered more than once (`<id> xN`).
    pub(crate) duplicated: Vec<String>,
    /// Delivered, never queued in this run.
    pub(crate) unknown: Vec<String>,
    /// Delivered with an envelope sender other than its mailbox.
    pub(crate) wrong_sender: Vec<String>,
    /// The outbox's messages by status.
    pub(crate) outbox: std::collections::BTreeMap<String, u64>,
    /// Every message in the outbox is `sent`.
    pub(crate) all_sent: bool,
}

impl Verdict {
    pub(crate) fn exactly_once(&self) -> bool {
        self.missing.is_empty()
            && self.duplicated.is_empty()
            && self.unknown.is_empty()
            && self.wrong_sender.is_empty()
            && self.deliveries == self.queued
            && self.all_sent
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = |list: &[String]| list.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        write!(
            f,
            "{}: {} queued, {} deliveries, {} missing, {} duplicated, {} unknown, {} from the wrong mailbox; outbox {:?}",
            if self.exactly_once() {
                "every message delivered exactly once"
            } else {
                "NOT exactly once"
            },
            self.queued,
            self.deliveries,
            self.missing.len(),
            self.duplicated.len(),
            self.unknown.len(),
            self.wrong_sender.len(),
            self.outbox,
        )?;
        for (name, list) in [
            ("missing", &self.missing),
            ("duplicated", &self.duplicated),
            ("unknown", &self.unknown),
            ("wrong mailbox", &self.wrong_sender),
        ] {
            if !list.is_empty() {
                write!(f, "; {name}: {}", first(list))?;
            }
        }
        Ok(())
    }
}

/// User + system CPU seconds of this process's children that have been waited for
/// (`getrusage(RUSAGE_CHILDREN)`: `cutime` and `cstime` of /proc/self/stat, Linux only;
/// the workspace forbids the `unsafe` a libc call would need).
pub(crate) fn children_cpu_seconds() -> f64 {
    proc_stat_seconds(&[13, 14])
}

/// The user part of [`children_cpu_seconds`] (`cutime`).
pub(crate) fn children_user_seconds() -> f64 {
    proc_stat_seconds(&[13])
}

/// The sum of /proc/self/stat's fields at these indexes (11 and 12 are this process's
/// user and system time, `getrusage(RUSAGE_SELF)`) (counted after the command name,
/// which is in parentheses and may hold spaces), in seconds: the kernel counts them in
/// USER_HZ ticks, 100 a second on Linux.
pub(crate) fn proc_stat_seconds(fields: &[usize]) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let values: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = fields
        .iter()
        .map(|&index| {
            values
                .get(index)
                .and_then(|value| value.parse::<f64>().ok())
                .expect("a CPU time field in /proc/self/stat")
        })
        .sum();
    ticks / 100.0
}
