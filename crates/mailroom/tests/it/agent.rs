//! What the agent does with each kind of failed send, against a transport that answers by
//! recipient: a refusal for now is retried later, a refusal for good fails the message, and
//! a rate set on an account after its messages were queued paces them from the next claim.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailroom::{
    AUTOMATION_AGENT, Agent, AgentEvent, AgentOptions, AgentSummary, DELIVERY_UNKNOWN_MARK,
    Mailroom, ManualClock, MessageDraft, OutboxClock, OutboxStatus, Provider, SendRequest,
};
use mailroom_accounts::Accounts;
use mailroom_model::{
    Credentials, Delivery, Limit, MessageTransport, OutgoingMessage, Secret, ServerSettingsChange,
    TransportError, TransportErrorKind, TransportKind,
};
use mailroom_testkit::Backend;
use mailroom_testkit::smtp::ServerOptions;

use crate::support::World;

/// Refuses mail for `later@` for now (a 4xx) and for `never@` for good (a 5xx); takes
/// the rest, and records their recipients.
#[derive(Debug, Default)]
struct ByRecipient {
    delivered: Mutex<Vec<String>>,
    /// The SMTP user each message was sent as.
    users: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl MessageTransport for ByRecipient {
    fn kind(&self) -> TransportKind {
        TransportKind::Smtp
    }

    async fn send(
        &self,
        message: &OutgoingMessage,
        credentials: &Credentials,
    ) -> Result<Delivery, TransportError> {
        let to = message.envelope.recipients()[0].to_string();
        if to.starts_with("later@") {
            return Err(TransportError::new(
                TransportErrorKind::Transient,
                "451 4.3.0 Mail server temporarily rejected message",
            ));
        }
        if to.starts_with("never@") {
            return Err(TransportError::new(
                TransportErrorKind::Permanent,
                "550 5.1.1 The email account that you tried to reach does not exist",
            ));
        }
        self.delivered.lock().unwrap().push(to);
        self.users.lock().unwrap().push(credentials.user.clone());
        Ok(Delivery {
            reply: "250 2.0.0 OK".to_owned(),
            provider_message_id: None,
            thread_id: None,
        })
    }
}

struct Relay {
    world: World,
    clock: Arc<ManualClock>,
    transport: Arc<ByRecipient>,
    mailroom: Arc<Mailroom>,
}

impl Relay {
    /// A password relay as the company account, the outbox on a manual clock; accounts
    /// are read afresh for each claim (no resolution cache).
    async fn new() -> Self {
        let world = World::new(Backend::Sqlite, ServerOptions::default()).await;
        Accounts::new(&world.db.db, &world.key)
            .set_company(
                &ServerSettingsChange {
                    password: Some(Secret::new("relay-password")),
                    ..world.smtp_change(Provider::None, "relay@example.com")
                },
                None,
            )
            .await
            .unwrap();
        let clock = Arc::new(ManualClock::new(std::time::SystemTime::now()));
        let transport = Arc::new(ByRecipient::default());
        let mut options = world.options();
        options.outbox_clock = OutboxClock::given(clock.clone());
        options.transport_override = Some(transport.clone());
        options.pacing_wait = Duration::ZERO;
        options.resolution_cache_ttl = Duration::ZERO;
        let mailroom = Arc::new(
            Mailroom::with_connection(world.db.db.clone(), options)
                .await
                .unwrap(),
        );
        Self {
            world,
            clock,
            transport,
            mailroom,
        }
    }

    /// `account edit` on the company account.
    async fn edit_company(&self, change: ServerSettingsChange) {
        Accounts::new(&self.world.db.db, &self.world.key)
            .set_company(&change, None)
            .await
            .unwrap();
    }

    fn world_now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from(mailroom::Clock::now(&*self.clock))
    }

    async fn queue(&self, to: &str) -> i64 {
        self.mailroom
            .queue(SendRequest::new(
                AUTOMATION_AGENT,
                MessageDraft {
                    to: vec![to.to_owned()],
                    subject: "Invoice 42".to_owned(),
                    text: Some("Your invoice.\r\n".to_owned()),
                    ..MessageDraft::default()
                },
            ))
            .await
            .unwrap()
    }

    /// One agent (`--once`, one send at a time); its summary and events.
    async fn run(&self) -> (AgentSummary, Vec<AgentEvent>) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let summary = Agent::new(
            self.mailroom.clone(),
            AgentOptions {
                concurrency: 1,
                once: true,
                events: Some(Arc::new(move |event: &AgentEvent| {
                    sink.lock().unwrap().push(event.clone());
                })),
                ..AgentOptions::default()
            },
        )
        .run(std::future::pending())
        .await
        .unwrap();
        let events = events.lock().unwrap().clone();
        (summary, events)
    }
}

/// An agent that keeps running (not `--once`), one send at a time, polling every 10 ms.
struct Running {
    sent: tokio::sync::mpsc::UnboundedReceiver<i64>,
    stop: tokio::sync::oneshot::Sender<()>,
    agent: tokio::task::JoinHandle<mailroom::Result<AgentSummary>>,
}

impl Relay {
    fn start(&self) -> Running {
        let (sent, sent_ids) = tokio::sync::mpsc::unbounded_channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let agent = Agent::new(
            self.mailroom.clone(),
            AgentOptions {
                concurrency: 1,
                poll_interval: Duration::from_millis(10),
                events: Some(Arc::new(move |event: &AgentEvent| {
                    if let AgentEvent::Sent { id, .. } = event {
                        let _ = sent.send(*id);
                    }
                })),
                ..AgentOptions::default()
            },
        );
        let agent = tokio::spawn(async move {
            agent
                .run(async {
                    let _ = stopped.await;
                })
                .await
        });
        Running {
            sent: sent_ids,
            stop,
            agent,
        }
    }
}

impl Running {
    /// Queues a message to `to` and waits until the agent sent it.
    async fn send(&mut self, relay: &Relay, to: &str) {
        let id = relay.queue(to).await;
        let sent = tokio::time::timeout(Duration::from_secs(30), self.sent.recv())
            .await
            .expect("the agent sends within 30 s");
        assert_eq!(sent, Some(id));
    }

    async fn stop(self) -> AgentSummary {
        self.stop.send(()).unwrap();
        self.agent.await.unwrap().unwrap()
    }
}

#[tokio::test]
async fn a_refusal_for_now_is_retried_later_and_one_for_good_fails_the_message() {
    let relay = Relay::new().await;
    let later = relay.queue("later@example.com").await;
    let never = relay.queue("never@example.com").await;

    let (summary, events) = relay.run().await;

    assert_eq!(
        summary,
        AgentSummary {
            retrying: 1,
            failed: 1,
            ..AgentSummary::default()
        }
    );
    let retried = relay.mailroom.outbox().get(later).await.unwrap();
    assert_eq!(retried.status, OutboxStatus::Queued);
    assert_eq!(retried.attempts, 1);
    assert!(retried.next_attempt_at > relay.world_now());
    let why = retried.last_error.unwrap_or_default();
    assert!(why.contains("451 4.3.0"), "{why}");
    assert!(
        !why.contains(DELIVERY_UNKNOWN_MARK),
        "a refusal is not an unknown outcome: {why}"
    );
    let failed = relay.mailroom.outbox().get(never).await.unwrap();
    assert_eq!(failed.status, OutboxStatus::Failed);
    let why = failed.last_error.unwrap_or_default();
    assert!(why.contains("550 5.1.1"), "{why}");
    assert!(
        events
            .iter()
            .any(|event| matches!(event, AgentEvent::Retrying { id, .. } if *id == later)),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|event| matches!(event, AgentEvent::Failed { id, .. } if *id == never)),
        "{events:?}"
    );
    assert!(relay.transport.delivered.lock().unwrap().is_empty());
    relay.world.finish().await;
}

/// `account edit --rate` after messages were queued: the agent gives the mailbox the
/// account's limits as configured now, so its next claim is paced by them.
#[tokio::test]
async fn a_rate_set_after_messages_were_queued_paces_the_next_claim() {
    let relay = Relay::new().await;
    let first = relay.queue("first@example.com").await;
    let waiting = [
        relay.queue("second@example.com").await,
        relay.queue("third@example.com").await,
    ];
    // The two others are due in an hour: the first claim takes only the first.
    let in_an_hour = relay.world_now() + chrono::Duration::hours(1);
    for id in waiting {
        relay
            .world
            .execute(
                "UPDATE outbox_message SET next_attempt_at = ? WHERE id = ?",
                vec![in_an_hour.into(), id.into()],
            )
            .await;
    }
    relay
        .edit_company(ServerSettingsChange {
            rate_per_minute: Some(Some(Limit::At(1))),
            ..ServerSettingsChange::default()
        })
        .await;

    let (summary, _) = relay.run().await;
    assert_eq!(summary.sent, 1, "{summary:?}");
    let sent = relay.mailroom.outbox().get(first).await.unwrap();
    assert_eq!(sent.status, OutboxStatus::Sent);

    // Both are due now; one a minute goes out.
    relay.clock.advance(Duration::from_secs(2 * 60 * 60));
    let (summary, _) = relay.run().await;
    assert_eq!(summary.sent, 1, "one a minute: {summary:?}");
    relay.clock.advance(Duration::from_secs(61));
    let (summary, _) = relay.run().await;
    assert_eq!(summary.sent, 1, "{summary:?}");
    assert_eq!(relay.transport.delivered.lock().unwrap().len(), 3);
    relay.world.finish().await;
}

/// The retention setting is applied at most once an hour per agent: a sent message that
/// grows old within the hour after a pass waits for the next one, an hour after it.
#[tokio::test]
async fn a_running_agent_applies_the_retention_once_an_hour() {
    let relay = Relay::new().await;
    Accounts::new(&relay.world.db.db, &relay.world.key)
        .set_outbox_retention_days(30)
        .await
        .unwrap();
    // Sent 30 days less half an hour ago: old enough in half an hour.
    let old = relay.queue("old@example.com").await;
    let sent_at = relay.world_now() - chrono::Duration::days(30) + chrono::Duration::minutes(30);
    relay
        .world
        .execute(
            "UPDATE outbox_message SET status = 'sent', updated_at = ? WHERE id = ?",
            vec![sent_at.into(), old.into()],
        )
        .await;
    let mut running = relay.start();
    // Two messages, the second queued once the first was sent: the loop turn that claims
    // the second began after the first was claimed, so after the clock last moved, and
    // looked at the retention then.
    let turns = async |running: &mut Running| {
        running.send(&relay, "a@example.com").await;
        running.send(&relay, "b@example.com").await;
    };
    let exists = async || relay.mailroom.outbox().get(old).await.is_ok();

    // The first pass, as the agent starts: not old yet.
    turns(&mut running).await;
    assert!(exists().await);
    // 40 minutes on it is old, and waits for the next pass.
    relay.clock.advance(Duration::from_secs(40 * 60));
    turns(&mut running).await;
    assert!(exists().await, "a second pass within the hour");
    // An hour after the first pass.
    relay.clock.advance(Duration::from_secs(20 * 60));
    turns(&mut running).await;
    assert!(!exists().await, "no pass an hour after the first");

    let summary = running.stop().await;
    assert_eq!((summary.sent, summary.purged), (6, 1), "{summary:?}");
    relay.world.finish().await;
}

/// A run with `--once` whose claim fails stops with the error, the message left queued
/// for the next run.
#[tokio::test]
async fn a_once_run_whose_claim_fails_stops_with_the_error() {
    let relay = Relay::new().await;
    let id = relay.queue("a@example.com").await;
    relay
        .world
        .execute(
            "ALTER TABLE mailbox_pace RENAME TO mailbox_pace_away",
            vec![],
        )
        .await;

    let agent = Agent::new(
        relay.mailroom.clone(),
        AgentOptions {
            concurrency: 1,
            once: true,
            poll_interval: Duration::from_millis(10),
            ..AgentOptions::default()
        },
    );
    let run = agent.run(std::future::pending());
    // A bound: a run that kept trying would never end.
    let error = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("a once run stops")
        .expect_err("its claim failed");
    assert!(matches!(error, mailroom::Error::Database(_)), "{error:?}");

    relay
        .world
        .execute(
            "ALTER TABLE mailbox_pace_away RENAME TO mailbox_pace",
            vec![],
        )
        .await;
    assert_eq!(
        relay.mailroom.outbox().get(id).await.unwrap().status,
        OutboxStatus::Queued
    );
    let (summary, _) = relay.run().await;
    assert_eq!(summary.sent, 1, "{summary:?}");
    relay.world.finish().await;
}

/// A running agent reads each claim's accounts afresh once they are older than the
/// resolution cache's time to live: a changed SMTP user is used from the next send.
#[tokio::test]
async fn a_running_agent_sends_with_an_account_changed_since_its_last_claim() {
    let relay = Relay::new().await;
    let mut running = relay.start();
    running.send(&relay, "a@example.com").await;
    relay
        .edit_company(ServerSettingsChange {
            smtp_user: Some("relay2@example.com".to_owned()),
            ..ServerSettingsChange::default()
        })
        .await;
    running.send(&relay, "b@example.com").await;
    running.stop().await;
    assert_eq!(
        *relay.transport.users.lock().unwrap(),
        ["relay@example.com", "relay2@example.com"]
    );
    relay.world.finish().await;
}
