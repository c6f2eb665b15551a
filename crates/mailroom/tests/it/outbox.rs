//! The outbox and the agent: queue, drain, hold for a sign-in, reclaim an expired lease,
//! stop gracefully, and share the work between agents on PostgreSQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailroom::{
    AUTOMATION_AGENT, Agent, AgentEvent, AgentOptions, Mailroom, MessageDraft, OutboxStatus,
    Provider, SendRequest,
};
use mailroom_accounts::Accounts;
use mailroom_model::{Secret, ServerSettingsChange};
use mailroom_testkit::Backend;
use sea_orm::{ConnectionTrait, Statement};

use crate::support::{SA, World};
use mailroom_testkit::smtp::ServerOptions;

const RELAY: &str = "relay";
const RELAY_PASSWORD: &str = "relay-password";

fn password_server() -> ServerOptions {
    ServerOptions {
        passwords: vec![(RELAY.to_owned(), RELAY_PASSWORD.to_owned())],
        ..ServerOptions::default()
    }
}

async fn company_relay(world: &World) {
    let change = ServerSettingsChange {
        password: Some(Secret::new(RELAY_PASSWORD)),
        ..world.smtp_change(Provider::None, RELAY)
    };
    Accounts::new(&world.db.db, &world.key)
        .set_company(&change, None)
        .await
        .unwrap();
}

fn message(number: usize) -> SendRequest<'static> {
    SendRequest::new(
        AUTOMATION_AGENT,
        MessageDraft {
            from: Some("orders@example.com".to_owned()),
            to: vec![format!("customer{number}@example.com")],
            bcc: vec!["archive@example.com".to_owned()],
            subject: format!("Message {number}"),
            text: Some(format!("Body of message {number}\r\n")),
            ..MessageDraft::default()
        },
    )
}

fn agent_options(concurrency: usize) -> AgentOptions {
    AgentOptions {
        concurrency,
        once: true,
        poll_interval: Duration::from_millis(20),
        ..AgentOptions::default()
    }
}

async fn queue(mailroom: &Mailroom, count: usize) -> Vec<(i64, String)> {
    let mut queued = Vec::new();
    for number in 0..count {
        let id = mailroom.queue(message(number)).await.unwrap();
        let message_id = mailroom.outbox().get(id).await.unwrap().message_id;
        queued.push((id, message_id));
    }
    queued
}

async fn drains_the_queue(backend: Backend) {
    let world = World::new(backend, password_server()).await;
    company_relay(&world).await;
    let mailroom = Arc::new(world.mailroom().await);
    let queued = queue(&mailroom, 20).await;
    assert_eq!(
        mailroom.outbox().counts().await.unwrap()[&OutboxStatus::Queued],
        20
    );

    let summary = Agent::new(mailroom.clone(), agent_options(4))
        .run(std::future::pending())
        .await
        .unwrap();
    assert_eq!(summary.sent, 20);

    let mut delivered = world.delivered_message_ids();
    delivered.sort();
    let mut expected: Vec<String> = queued.iter().map(|(_, id)| id.clone()).collect();
    expected.sort();
    assert_eq!(delivered, expected, "each queued Message-ID delivered once");
    for (_, bytes) in world.smtp.messages() {
        assert!(!String::from_utf8_lossy(&bytes).contains("archive@example.com"));
    }
    let first = mailroom.outbox().get(queued[0].0).await.unwrap();
    assert_eq!(first.status, OutboxStatus::Sent);
    assert_eq!(first.attempts, 1);
    assert_eq!(first.transport.as_deref(), Some("smtp"));
    assert!(first.reply.unwrap().starts_with("250"));
    assert!(first.lease_owner.is_none());
    assert_eq!(
        first.recipients,
        ["customer0@example.com", "archive@example.com"]
    );
    world.finish().await;
}

#[tokio::test]
async fn the_agent_drains_the_queue_on_sqlite() {
    drains_the_queue(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_agent_drains_the_queue_on_postgres() {
    drains_the_queue(Backend::Postgres).await;
}

#[tokio::test]
async fn a_message_needing_a_sign_in_is_held_and_sent_after_the_administrator_signs_in() {
    let world = World::new(Backend::Sqlite, World::tokens(&[(SA, "at-sa")])).await;
    world.register_app(Provider::Microsoft).await;
    world.company_smtp(Provider::Microsoft, SA).await;
    let mailroom = Arc::new(world.mailroom().await);
    let id = mailroom.queue(message(1)).await.unwrap();

    let summary = Agent::new(mailroom.clone(), agent_options(2))
        .run(std::future::pending())
        .await
        .unwrap();
    assert_eq!(summary.held, 1);
    let held = mailroom.outbox().get(id).await.unwrap();
    assert_eq!(held.status, OutboxStatus::Held);
    let error = held.last_error.unwrap();
    assert!(
        error.starts_with("Failed to obtain an access token for sa@contoso.example"),
        "{error}"
    );
    assert!(world.smtp.events().is_empty());
    // Held again and again (each time released at once): holds are not attempts, so the
    // time held never uses up the retry budget.
    for _ in 0..12 {
        assert_eq!(mailroom.outbox().release_held().await.unwrap(), 1);
        let summary = Agent::new(mailroom.clone(), agent_options(2))
            .run(std::future::pending())
            .await
            .unwrap();
        assert_eq!(summary.held, 1);
    }
    assert_eq!(mailroom.outbox().get(id).await.unwrap().attempts, 0);

    // An administrator signs in; the held message goes at its next attempt (made due now).
    world
        .store_token(Provider::Microsoft, SA, "at-sa", false)
        .await;
    let before = mailroom.outbox().due(chrono::Utc::now()).await.unwrap();
    assert_eq!(before, 0, "a held message waits for its hold interval");
    // What `mailroom sign-in` does after storing the token.
    assert_eq!(mailroom.outbox().release_held().await.unwrap(), 1);
    assert_eq!(mailroom.outbox().due(chrono::Utc::now()).await.unwrap(), 1);
    let summary = Agent::new(mailroom.clone(), agent_options(2))
        .run(std::future::pending())
        .await
        .unwrap();
    assert_eq!(summary.sent, 1);
    let sent = mailroom.outbox().get(id).await.unwrap();
    assert_eq!(sent.status, OutboxStatus::Sent);
    assert_eq!(
        sent.attempts, 1,
        "one delivery attempt, whatever the holds before it"
    );
    assert_eq!(world.delivered_message_ids(), [sent.message_id]);
    world.finish().await;
}

#[tokio::test]
async fn a_message_whose_agent_died_is_claimed_again_with_the_same_message_id() {
    let world = World::new(Backend::Sqlite, password_server()).await;
    company_relay(&world).await;
    let mailroom = Arc::new(world.mailroom().await);
    let id = mailroom.queue(message(1)).await.unwrap();
    // What a killed agent leaves behind: leased, attempt counted, lease run out.
    world
        .execute(
            "UPDATE outbox_message SET status = 'sending', attempts = 1, lease_owner = 'dead-agent', lease_until = ? WHERE id = ?",
            vec![(chrono::Utc::now() - chrono::Duration::seconds(1)).into(), id.into()],
        )
        .await;
    let summary = Agent::new(mailroom.clone(), agent_options(1))
        .run(std::future::pending())
        .await
        .unwrap();
    assert_eq!(summary.sent, 1);
    let sent = mailroom.outbox().get(id).await.unwrap();
    assert_eq!(sent.status, OutboxStatus::Sent);
    assert_eq!(sent.attempts, 2);
    assert_eq!(world.delivered_message_ids(), [sent.message_id]);
    world.finish().await;
}

#[tokio::test]
async fn queue_retry_and_cancel_follow_the_status() {
    let world = World::new(Backend::Sqlite, password_server()).await;
    company_relay(&world).await;
    let mailroom = world.mailroom().await;
    let id = mailroom.queue(message(1)).await.unwrap();
    let cancelled = mailroom.outbox().cancel(id).await.unwrap();
    assert_eq!(cancelled.status, OutboxStatus::Cancelled);
    let error = mailroom.outbox().retry(id).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "queued message {id} is cancelled; only queued, held or failed messages can be retried"
        )
    );
    let error = mailroom.outbox().get(id + 100).await.unwrap_err();
    assert_eq!(
        error.remedy(),
        Some(mailroom_model::Remedy::ListQueue),
        "{error}"
    );
    assert!(!error.to_string().contains("`mailroom"), "{error}");
    let listed = mailroom.outbox().list(None, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    world.finish().await;
}

/// A retry makes a message due now; a failed one starts its attempts afresh (the policy
/// gives it its full number again), a queued one waiting for its next attempt keeps the
/// attempts it has made.
#[tokio::test]
async fn a_retry_is_due_now_and_only_a_failed_message_starts_its_attempts_afresh() {
    let world = World::new(Backend::Sqlite, password_server()).await;
    company_relay(&world).await;
    let mailroom = world.mailroom().await;
    let failed = mailroom.queue(message(1)).await.unwrap();
    let waiting = mailroom.queue(message(2)).await.unwrap();
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    for (id, status, attempts) in [(failed, "failed", 5), (waiting, "queued", 2)] {
        world
            .execute(
                "UPDATE outbox_message SET status = ?, attempts = ?, next_attempt_at = ? WHERE id = ?",
                vec![status.into(), attempts.into(), later.into(), id.into()],
            )
            .await;
    }
    assert_eq!(mailroom.outbox().due(chrono::Utc::now()).await.unwrap(), 0);

    let retried = mailroom.outbox().retry(failed).await.unwrap();
    assert_eq!(
        (retried.status, retried.attempts),
        (OutboxStatus::Queued, 0)
    );
    let retried = mailroom.outbox().retry(waiting).await.unwrap();
    assert_eq!(
        (retried.status, retried.attempts),
        (OutboxStatus::Queued, 2)
    );
    assert_eq!(mailroom.outbox().due(chrono::Utc::now()).await.unwrap(), 2);
    world.finish().await;
}

/// A row this version cannot read (its sender is no address: written by hand, or by a
/// version with other rules) fails by itself with what is wrong; the others still go.
#[tokio::test]
async fn a_row_that_cannot_be_read_fails_alone_and_the_others_go() {
    let world = World::new(Backend::Sqlite, password_server()).await;
    company_relay(&world).await;
    let mailroom = Arc::new(world.mailroom().await);
    let queued = queue(&mailroom, 2).await;
    let (bad, good) = (queued[0].0, queued[1].0);
    world
        .execute(
            "UPDATE outbox_message SET sender = 'not an address' WHERE id = ?",
            vec![bad.into()],
        )
        .await;

    let summary = Agent::new(mailroom.clone(), agent_options(2))
        .run(std::future::pending())
        .await
        .unwrap();
    assert_eq!(summary.sent, 1);
    let failed = mailroom.outbox().get(bad).await.unwrap();
    assert_eq!(failed.status, OutboxStatus::Failed);
    assert!(failed.lease_owner.is_none());
    let error = failed.last_error.unwrap();
    assert!(
        error.contains("`not an address` is not an address"),
        "{error}"
    );
    let sent = mailroom.outbox().get(good).await.unwrap();
    assert_eq!(sent.status, OutboxStatus::Sent);
    assert_eq!(world.delivered_message_ids(), [sent.message_id]);
    world.finish().await;
}

/// The benchmark's view of the claim: PostgreSQL's plan of each of its two reading
/// statements, under its heading.
#[tokio::test]
async fn the_claims_plans_are_postgresqls_explain_of_both_statements() {
    let world = World::new(Backend::Postgres, password_server()).await;
    company_relay(&world).await;
    let mailroom = world.mailroom().await;
    queue(&mailroom, 1).await;
    let plans = mailroom.outbox().explain_claim().await.unwrap();
    let (serve, waiting) = plans
        .strip_prefix("-- mailboxes to serve\n")
        .and_then(|rest| rest.split_once("-- waiting messages of a mailbox\n"))
        .unwrap_or_else(|| panic!("two headed plans: {plans}"));
    for plan in [serve, waiting] {
        // EXPLAIN's lines: node names with their estimated costs.
        assert!(plan.contains("(cost="), "{plans}");
    }
    assert!(waiting.contains("outbox_message"), "{plans}");
    world.finish().await;
}

#[tokio::test]
async fn on_shutdown_the_sends_in_flight_finish_and_nothing_new_is_claimed() {
    let world = World::new(Backend::Sqlite, password_server()).await;
    company_relay(&world).await;
    let mailroom = Arc::new(world.mailroom().await);
    queue(&mailroom, 30).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stop = Mutex::new(Some(stop));
    let mut options = agent_options(2);
    options.once = false;
    options.events = Some(Arc::new(move |event: &AgentEvent| {
        if matches!(event, AgentEvent::Sent { .. }) {
            if let Some(stop) = stop.lock().unwrap().take() {
                let _ = stop.send(());
            }
        }
    }));
    let summary = Agent::new(mailroom.clone(), options)
        .run(async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    let counts = mailroom.outbox().counts().await.unwrap();
    assert_eq!(counts.get(&OutboxStatus::Sending), None, "{counts:?}");
    assert_eq!(counts[&OutboxStatus::Sent], summary.sent);
    assert!(summary.sent < 30, "it stopped early: {summary:?}");
    assert_eq!(counts[&OutboxStatus::Queued], 30 - summary.sent);
    // What the agent had claimed ahead and not started was put back as it was: no lease,
    // no attempt used.
    for message in mailroom
        .outbox()
        .list(Some(OutboxStatus::Queued), 100)
        .await
        .unwrap()
    {
        assert_eq!(message.attempts, 0, "{message:?}");
        assert_eq!(message.lease_owner, None, "{message:?}");
    }
    assert_eq!(world.smtp.messages().len() as u64, summary.sent);
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_agents_on_postgres_send_each_message_exactly_once() {
    let world = World::new(Backend::Postgres, password_server()).await;
    company_relay(&world).await;
    let first = Arc::new(world.mailroom().await);
    let second = Arc::new(world.mailroom().await);
    let queued = queue(&first, 200).await;
    let run = |mailroom: Arc<Mailroom>| {
        tokio::spawn(async move {
            Agent::new(mailroom, agent_options(4))
                .run(std::future::pending())
                .await
                .unwrap()
        })
    };
    let (a, b) = (run(first.clone()), run(second));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(a.sent + b.sent, 200, "{a:?} {b:?}");
    let mut counts: HashMap<String, usize> = HashMap::new();
    for id in world.delivered_message_ids() {
        *counts.entry(id).or_default() += 1;
    }
    assert_eq!(counts.len(), 200);
    assert!(counts.values().all(|&n| n == 1), "a message was sent twice");
    for (_, message_id) in &queued {
        assert_eq!(counts.get(message_id), Some(&1));
    }
    world.finish().await;
}

#[tokio::test]
async fn a_queued_message_to_the_gmail_api_gets_its_bcc_header_back() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, ResponseTemplate};

    let world = World::new(Backend::Sqlite, ServerOptions::default()).await;
    world.register_app(Provider::Google).await;
    world.company_google(crate::support::ORDERS).await;
    world
        .store_token(Provider::Google, crate::support::ORDERS, "at-orders", false)
        .await;
    Mock::given(method("POST"))
        .and(path("/upload/gmail/v1/users/me/messages/send"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(crate::support::gmail_sent("18d00001")),
        )
        .expect(1)
        .mount(&world.http)
        .await;
    let mailroom = Arc::new(world.mailroom().await);
    let mut request = message(7);
    request.message.from = None;
    let id = mailroom.queue(request).await.unwrap();
    let stored = mailroom.outbox().bytes(id).await.unwrap();
    assert!(!String::from_utf8_lossy(&stored).contains("archive@example.com"));

    let summary = Agent::new(mailroom.clone(), agent_options(1))
        .run(std::future::pending())
        .await
        .unwrap();
    assert_eq!(summary.sent, 1);
    let upload = world.http.received_requests().await.unwrap().remove(0).body;
    let upload = String::from_utf8(upload).unwrap();
    assert!(
        upload.starts_with("Bcc: archive@example.com\r\n"),
        "{upload}"
    );
    assert!(upload.ends_with(&*String::from_utf8_lossy(&stored)));
    let sent = mailroom.outbox().get(id).await.unwrap();
    assert_eq!(sent.transport.as_deref(), Some("gmail-api"));
    assert_eq!(sent.provider_message_id.as_deref(), Some("18d00001"));
    world.finish().await;
}

#[tokio::test]
async fn a_message_too_large_for_the_provider_is_neither_queued_nor_sent() {
    let world = World::new(Backend::Sqlite, password_server()).await;
    company_relay(&world).await;
    let mailroom = world.mailroom().await;
    let limit = mailroom::max_message_size(&mailroom_model::ServerSettings::preset(Provider::None));
    // 30 MB of attachment: within the attachment limit, over 35 MiB once base64-encoded.
    let mut request = message(1);
    request.message.attachments = vec![mailroom::Attachment::new(
        "ledger.bin",
        vec![0u8; 30 * 1024 * 1024],
    )];
    let error = mailroom.queue(request).await.unwrap_err();
    assert!(
        matches!(error, mailroom::Error::TooLarge { size, limit: l } if size > l && l == limit),
        "{error}"
    );
    assert!(mailroom.outbox().list(None, 10).await.unwrap().is_empty());
    let mut request = message(2);
    request.message.attachments = vec![mailroom::Attachment::new(
        "ledger.bin",
        vec![0u8; 30 * 1024 * 1024],
    )];
    let error = mailroom.send(request).await.unwrap_err();
    assert!(matches!(error, mailroom::Error::TooLarge { .. }), "{error}");
    assert!(
        world.smtp.events().is_empty(),
        "the server was never reached"
    );
    // An ordinary message still goes.
    mailroom.send(message(3)).await.unwrap();
    world.finish().await;
}

/// A transport whose sends wait until the test lets them finish: it reports each send's
/// start, and each permit given lets one waiting send complete (a delivery, or a permanent
/// refusal after [`GatedTransport::refuse_next`]).
#[derive(Debug)]
struct GatedTransport {
    started: tokio::sync::mpsc::UnboundedSender<String>,
    gate: tokio::sync::Semaphore,
    refuse: std::sync::atomic::AtomicBool,
    delivered: Mutex<Vec<String>>,
}

impl GatedTransport {
    fn new() -> (Arc<Self>, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let (started, receiver) = tokio::sync::mpsc::unbounded_channel();
        let transport = Arc::new(Self {
            started,
            gate: tokio::sync::Semaphore::new(0),
            refuse: std::sync::atomic::AtomicBool::new(false),
            delivered: Mutex::new(Vec::new()),
        });
        (transport, receiver)
    }

    /// Lets one waiting (or the next) send finish.
    fn let_one_finish(&self) {
        self.gate.add_permits(1);
    }

    fn refuse_next(&self) {
        self.refuse.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn delivered(&self) -> Vec<String> {
        self.delivered.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl mailroom_model::MessageTransport for GatedTransport {
    fn kind(&self) -> mailroom::TransportKind {
        mailroom::TransportKind::Smtp
    }

    async fn send(
        &self,
        message: &mailroom_model::OutgoingMessage,
        _credentials: &mailroom_model::Credentials,
    ) -> Result<mailroom_model::Delivery, mailroom::TransportError> {
        let message_id = message.message_id.clone().unwrap_or_default();
        let _ = self.started.send(message_id.clone());
        self.gate.acquire().await.unwrap().forget();
        if self.refuse.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(mailroom::TransportError::new(
                mailroom::TransportErrorKind::MessageRejected,
                "550 5.7.1 refused by the test",
            ));
        }
        self.delivered.lock().unwrap().push(message_id);
        Ok(mailroom_model::Delivery {
            reply: "250 2.0.0 OK".to_owned(),
            provider_message_id: None,
            thread_id: None,
        })
    }
}

/// Two facades on one database, as two agent processes would be, sharing a manual clock
/// (the database's clock in production) and the gated transport.
struct LeaseWorld {
    world: World,
    clock: Arc<mailroom::ManualClock>,
    transport: Arc<GatedTransport>,
    started: tokio::sync::mpsc::UnboundedReceiver<String>,
}

const SHORT_LEASE: Duration = Duration::from_secs(3);

impl LeaseWorld {
    async fn new(backend: Backend) -> Self {
        let world = World::new(backend, password_server()).await;
        company_relay(&world).await;
        let (transport, started) = GatedTransport::new();
        Self {
            world,
            clock: Arc::new(mailroom::ManualClock::new(std::time::SystemTime::now())),
            transport,
            started,
        }
    }

    async fn mailroom(&self) -> Arc<Mailroom> {
        let mut options = self.world.options();
        options.clock = self.clock.clone();
        options.outbox_clock = mailroom::OutboxClock::given(self.clock.clone());
        options.transport_override = Some(self.transport.clone());
        Arc::new(
            Mailroom::with_connection(self.world.db.db.clone(), options)
                .await
                .unwrap(),
        )
    }

    /// An agent leasing for [`SHORT_LEASE`], renewing every 10 ms of real time (the
    /// lease itself runs on the manual clock), reporting each renewal's expiry.
    fn agent_options(
        owner: &str,
    ) -> (
        AgentOptions,
        tokio::sync::mpsc::UnboundedReceiver<chrono::DateTime<chrono::Utc>>,
    ) {
        let (renewed, renewals) = tokio::sync::mpsc::unbounded_channel();
        let options = Self::leased_options(owner, move |event| {
            if let AgentEvent::LeaseRenewed { until, .. } = event {
                let _ = renewed.send(*until);
            }
        });
        (options, renewals)
    }

    /// An agent leasing for [`SHORT_LEASE`], renewing every 10 ms of real time, its
    /// events given to `events`.
    fn leased_options(
        owner: &str,
        events: impl Fn(&AgentEvent) + Send + Sync + 'static,
    ) -> AgentOptions {
        AgentOptions {
            owner: owner.to_owned(),
            lease: SHORT_LEASE,
            heartbeat: Some(Duration::from_millis(10)),
            events: Some(Arc::new(events)),
            ..agent_options(1)
        }
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from(mailroom::Clock::now(&*self.clock))
    }
}

/// Agent B's run: claims what is due (or whose lease ran out) now, sends it, stops.
async fn agent_b_runs(mailroom: &Arc<Mailroom>) -> mailroom::AgentSummary {
    let options = AgentOptions {
        owner: "agent-b".to_owned(),
        lease: SHORT_LEASE,
        ..agent_options(1)
    };
    Agent::new(mailroom.clone(), options)
        .run(std::future::pending())
        .await
        .unwrap()
}

/// Waits for a renewal made after the clock showed `after` (a renewal made earlier
/// expires before `after`, since the clock moved by more than the lease).
async fn renewal_after(
    renewals: &mut tokio::sync::mpsc::UnboundedReceiver<chrono::DateTime<chrono::Utc>>,
    after: chrono::DateTime<chrono::Utc>,
) -> chrono::DateTime<chrono::Utc> {
    // A bound, not a synchronisation: a heartbeat that never comes fails the test
    // instead of hanging it.
    let renewal = async {
        loop {
            let until = renewals.recv().await.expect("agent A renews its lease");
            if until > after {
                return until;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), renewal)
        .await
        .expect("agent A renewed its lease within 30 s")
}

async fn a_slow_send_keeps_its_lease_and_is_delivered_once(backend: Backend) {
    let mut lease = LeaseWorld::new(backend).await;
    let (a, b) = (lease.mailroom().await, lease.mailroom().await);
    let id = a.queue(message(1)).await.unwrap();
    let message_id = a.outbox().get(id).await.unwrap().message_id;
    let (options, mut renewals) = LeaseWorld::agent_options("agent-a");
    let agent_a = tokio::spawn({
        let a = a.clone();
        async move { Agent::new(a, options).run(std::future::pending()).await }
    });
    assert_eq!(
        lease.started.recv().await.unwrap(),
        message_id,
        "A is sending"
    );

    // The send takes far longer than the lease: each time the clock moves past the
    // lease, A's heartbeat renews it, and B, claiming then, gets nothing.
    for _ in 0..4 {
        lease.clock.advance(SHORT_LEASE + Duration::from_secs(2));
        let now = lease.now();
        let until = renewal_after(&mut renewals, now).await;
        assert_eq!(
            until,
            now + chrono::Duration::seconds(3),
            "renewed from now"
        );
        // B's send would wait at the gate forever: a send it begins fails the test at once.
        let summary = tokio::select! {
            summary = agent_b_runs(&b) => summary,
            started = lease.started.recv() => panic!("B began sending {started:?} while A holds the lease"),
        };
        assert_eq!(summary, mailroom::AgentSummary::default(), "B claimed it");
        let row = b.outbox().get(id).await.unwrap();
        assert_eq!(row.status, OutboxStatus::Sending);
        assert_eq!(row.lease_owner.as_deref(), Some("agent-a"));
        assert!(row.lease_until.unwrap() > now, "{row:?}");
    }
    assert!(lease.started.try_recv().is_err(), "B began a send");

    lease.transport.let_one_finish();
    let summary = agent_a.await.unwrap().unwrap();
    assert_eq!(summary.sent, 1, "{summary:?}");
    assert_eq!(
        lease.transport.delivered(),
        std::slice::from_ref(&message_id)
    );
    let row = a.outbox().get(id).await.unwrap();
    assert_eq!(row.status, OutboxStatus::Sent);
    assert_eq!(row.attempts, 1);
    assert_eq!(row.lease_owner, None);
    // Nothing is left for B.
    assert_eq!(agent_b_runs(&b).await.sent, 0);
    assert_eq!(lease.transport.delivered(), [message_id]);
    lease.world.finish().await;
}

/// A claimed message waiting for a slot keeps its lease while the only slot is busy with a
/// send that takes longer than the lease: it is renewed each heartbeat as the one being
/// sent is, so another agent claims neither, and both are sent once.
#[tokio::test]
async fn a_message_waiting_for_a_busy_slot_keeps_its_lease() {
    let mut lease = LeaseWorld::new(Backend::Sqlite).await;
    let (a, b) = (lease.mailroom().await, lease.mailroom().await);
    let sending = a.queue(message(1)).await.unwrap();
    let waiting = a.queue(message(2)).await.unwrap();
    let (renewed, mut renewals) = tokio::sync::mpsc::unbounded_channel();
    let options = LeaseWorld::leased_options("agent-a", move |event| {
        if let AgentEvent::LeaseRenewed { id, until } = event {
            let _ = renewed.send((*id, *until));
        }
    });
    let agent_a = tokio::spawn({
        let a = a.clone();
        async move { Agent::new(a, options).run(std::future::pending()).await }
    });
    assert_eq!(
        lease.started.recv().await.unwrap(),
        a.outbox().get(sending).await.unwrap().message_id,
        "A is sending the first; the second waits for the slot"
    );

    for _ in 0..3 {
        lease.clock.advance(SHORT_LEASE + Duration::from_secs(2));
        let now = lease.now();
        // A bound, not a synchronisation: a renewal that never comes fails the test.
        let renewed_now = tokio::time::timeout(Duration::from_secs(30), async {
            let mut ids = std::collections::BTreeSet::new();
            while ids.len() < 2 {
                let (id, until) = renewals.recv().await.expect("agent A renews its leases");
                if until > now {
                    assert_eq!(
                        until,
                        now + chrono::Duration::seconds(3),
                        "renewed from now"
                    );
                    ids.insert(id);
                }
            }
            ids
        })
        .await
        .expect("agent A renewed both leases within 30 s");
        assert_eq!(renewed_now, [sending, waiting].into());
        let summary = tokio::select! {
            summary = agent_b_runs(&b) => summary,
            started = lease.started.recv() => panic!("B began sending {started:?} while A holds the lease"),
        };
        assert_eq!(summary, mailroom::AgentSummary::default(), "B claimed one");
        let row = b.outbox().get(waiting).await.unwrap();
        assert_eq!(row.lease_owner.as_deref(), Some("agent-a"));
    }

    lease.transport.let_one_finish();
    lease.transport.let_one_finish();
    let summary = agent_a.await.unwrap().unwrap();
    assert_eq!((summary.sent, summary.lease_lost), (2, 0), "{summary:?}");
    assert_eq!(lease.transport.delivered().len(), 2);
    lease.world.finish().await;
}

/// A claimed message whose lease another agent took while it waited for a slot (its lease
/// ran out and that agent claimed it) is left to that agent: reported as a lost lease,
/// counted, and not sent by this one.
#[tokio::test]
async fn a_waiting_message_another_agent_took_is_left_to_it() {
    let mut lease = LeaseWorld::new(Backend::Sqlite).await;
    let a = lease.mailroom().await;
    let sending = a.queue(message(1)).await.unwrap();
    let waiting = a.queue(message(2)).await.unwrap();
    let (lost, mut lost_ids) = tokio::sync::mpsc::unbounded_channel();
    let options = LeaseWorld::leased_options("agent-a", move |event| {
        if let AgentEvent::LeaseLost { id, error } = event {
            let _ = lost.send((*id, error.clone()));
        }
    });
    let agent_a = tokio::spawn({
        let a = a.clone();
        async move { Agent::new(a, options).run(std::future::pending()).await }
    });
    let sending_id = a.outbox().get(sending).await.unwrap().message_id;
    assert_eq!(lease.started.recv().await.unwrap(), sending_id);

    lease
        .world
        .execute(
            "UPDATE outbox_message SET lease_owner = 'agent-b' WHERE id = ?",
            vec![waiting.into()],
        )
        .await;
    let (id, error) = tokio::time::timeout(Duration::from_secs(30), lost_ids.recv())
        .await
        .expect("agent A finds the lease lost at its next renewal")
        .unwrap();
    assert_eq!(id, waiting);
    assert!(
        error.contains("lease ran out before the send started"),
        "{error}"
    );

    lease.transport.let_one_finish();
    let summary = agent_a.await.unwrap().unwrap();
    assert_eq!((summary.sent, summary.lease_lost), (1, 1), "{summary:?}");
    assert_eq!(lease.transport.delivered(), [sending_id]);
    let row = a.outbox().get(waiting).await.unwrap();
    assert_eq!(row.lease_owner.as_deref(), Some("agent-b"));
    lease.world.finish().await;
}

#[tokio::test]
async fn a_slow_send_keeps_its_lease_and_is_delivered_once_on_sqlite() {
    a_slow_send_keeps_its_lease_and_is_delivered_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_slow_send_keeps_its_lease_and_is_delivered_once_on_postgres() {
    a_slow_send_keeps_its_lease_and_is_delivered_once(Backend::Postgres).await;
}

async fn when_its_agent_dies_another_claims_the_message_once_the_lease_ran_out(backend: Backend) {
    let mut lease = LeaseWorld::new(backend).await;
    let (a, b) = (lease.mailroom().await, lease.mailroom().await);
    let id = a.queue(message(1)).await.unwrap();
    let message_id = a.outbox().get(id).await.unwrap().message_id;
    let claimed_at = lease.now();
    let (options, mut renewals) = LeaseWorld::agent_options("agent-a");
    let agent_a = tokio::spawn({
        let a = a.clone();
        async move { Agent::new(a, options).run(std::future::pending()).await }
    });
    assert_eq!(lease.started.recv().await.unwrap(), message_id);
    renewal_after(&mut renewals, claimed_at - chrono::Duration::seconds(1)).await;
    // A dies mid-send (on this single-threaded runtime its tasks never run again): its
    // heartbeat stops and the lease it last renewed (at `claimed_at`) runs out.
    agent_a.abort();
    assert!(agent_a.await.unwrap_err().is_cancelled());

    lease.clock.advance(SHORT_LEASE - Duration::from_secs(1));
    assert_eq!(
        agent_b_runs(&b).await,
        mailroom::AgentSummary::default(),
        "B claimed it before the lease ran out"
    );
    lease.clock.advance(Duration::from_secs(2));
    lease.transport.let_one_finish();
    let summary = agent_b_runs(&b).await;
    assert_eq!(summary.sent, 1, "{summary:?}");
    assert_eq!(lease.started.recv().await.unwrap(), message_id, "B sent it");
    assert_eq!(lease.transport.delivered(), [message_id]);
    let row = b.outbox().get(id).await.unwrap();
    assert_eq!(row.status, OutboxStatus::Sent);
    assert_eq!(row.attempts, 2, "A's attempt and B's");
    assert_eq!(row.lease_owner, None);
    lease.world.finish().await;
}

#[tokio::test]
async fn when_its_agent_dies_another_claims_the_message_once_the_lease_ran_out_on_sqlite() {
    when_its_agent_dies_another_claims_the_message_once_the_lease_ran_out(Backend::Sqlite).await;
}

#[tokio::test]
async fn when_its_agent_dies_another_claims_the_message_once_the_lease_ran_out_on_postgres() {
    when_its_agent_dies_another_claims_the_message_once_the_lease_ran_out(Backend::Postgres).await;
}

#[tokio::test]
async fn an_agent_that_lost_the_lease_does_not_overwrite_the_new_owner() {
    let mut lease = LeaseWorld::new(Backend::Sqlite).await;
    let a = lease.mailroom().await;
    let id = a.queue(message(1)).await.unwrap();
    let (options, _renewals) = LeaseWorld::agent_options("agent-a");
    let agent_a = tokio::spawn({
        let a = a.clone();
        async move { Agent::new(a, options).run(std::future::pending()).await }
    });
    lease.started.recv().await.unwrap();
    // What another agent's claim after an expired lease leaves.
    lease
        .world
        .execute(
            "UPDATE outbox_message SET lease_owner = 'agent-b', attempts = 2 WHERE id = ?",
            vec![id.into()],
        )
        .await;
    lease.transport.refuse_next();
    lease.transport.let_one_finish();
    let summary = agent_a.await.unwrap().unwrap();
    assert_eq!(summary.lease_lost, 1, "{summary:?}");
    assert_eq!(summary.failed, 0, "{summary:?}");
    let row = a.outbox().get(id).await.unwrap();
    assert_eq!(row.status, OutboxStatus::Sending, "{row:?}");
    assert_eq!(row.lease_owner.as_deref(), Some("agent-b"));
    assert_eq!(row.last_error, None);
    lease.world.finish().await;
}

#[tokio::test]
async fn a_lease_under_the_minimum_is_refused() {
    let world = World::new(Backend::Sqlite, password_server()).await;
    let mailroom = Arc::new(world.mailroom().await);
    let options = AgentOptions {
        lease: Duration::from_secs(2),
        ..agent_options(1)
    };
    let error = Agent::new(mailroom, options)
        .run(std::future::pending())
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("a lease of 2s is too short; give a lease of at least 3s"),
        "{error}"
    );
    world.finish().await;
}

#[tokio::test]
async fn a_message_whose_secret_this_agent_cannot_open_is_held_not_failed() {
    let world = World::new(Backend::Sqlite, password_server()).await;
    company_relay(&world).await;
    // The agent starts with the database's key; then an administrator rotates it.
    let agent_side = Arc::new(world.mailroom().await);
    let id = agent_side.queue(message(1)).await.unwrap();
    let new_key = mailroom::EncryptionKey::generate();
    let mut both = world.options();
    both.key = world.key.clone().with(new_key.clone());
    let administrator = Mailroom::with_connection(world.db.db.clone(), both)
        .await
        .unwrap();
    administrator.prepare_key_rotation(&new_key).await.unwrap();
    administrator.commit_key_rotation().await.unwrap();

    // Held, and held again each time it is made due (more times than the retry policy's
    // attempts): never failed.
    for _ in 0..8 {
        let summary = Agent::new(agent_side.clone(), agent_options(1))
            .run(std::future::pending())
            .await
            .unwrap();
        assert_eq!((summary.held, summary.failed), (1, 0), "{summary:?}");
        assert_eq!(agent_side.outbox().release_held().await.unwrap(), 1);
    }
    let held = agent_side.outbox().get(id).await.unwrap();
    assert_eq!(held.status, OutboxStatus::Held);
    assert_eq!(held.attempts, 0, "holds use up no attempts");
    let error = held.last_error.unwrap();
    assert!(
        error.contains(&format!("this host lacks key {}", new_key.id())),
        "{error}"
    );
    assert!(!error.contains(RELAY_PASSWORD));
    assert!(world.smtp.events().is_empty());

    // An agent with the new key sends it.
    let mut options = world.options();
    options.key = new_key.into();
    let restarted = Arc::new(
        Mailroom::with_connection(world.db.db.clone(), options)
            .await
            .unwrap(),
    );
    assert_eq!(restarted.outbox().release_held().await.unwrap(), 1);
    let summary = Agent::new(restarted.clone(), agent_options(1))
        .run(std::future::pending())
        .await
        .unwrap();
    assert_eq!(summary.sent, 1, "{summary:?}");
    let sent = restarted.outbox().get(id).await.unwrap();
    assert_eq!(sent.attempts, 1);
    assert_eq!(world.delivered_message_ids(), [sent.message_id]);
    world.finish().await;
}

#[tokio::test]
async fn a_large_message_is_stored_in_pieces_and_sent_whole_on_sqlite() {
    large_message_in_pieces(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_large_message_is_stored_in_pieces_and_sent_whole_on_postgres() {
    large_message_in_pieces(Backend::Postgres).await;
}

/// A message over the chunk size (1 MiB) is stored as several `outbox_chunk` rows, read
/// back byte for byte, listed with its whole size, delivered whole, and its pieces go when
/// the message is purged.
async fn large_message_in_pieces(backend: Backend) {
    let world = World::new(backend, password_server()).await;
    company_relay(&world).await;
    let mailroom = Arc::new(world.mailroom().await);
    let mut request = message(1);
    let content: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
    request
        .message
        .attachments
        .push(mailroom::Attachment::new("statement.pdf", content));
    let id = mailroom.queue(request).await.unwrap();
    let stored = mailroom.outbox().bytes(id).await.unwrap();
    assert!(stored.len() > 3_000_000, "{}", stored.len());
    let count = |sql: &'static str| {
        let db = world.db.db.clone();
        async move {
            db.query_one(Statement::from_string(db.get_database_backend(), sql))
                .await
                .unwrap()
                .unwrap()
                .try_get_by_index::<i64>(0)
                .unwrap()
        }
    };
    let pieces = count("SELECT COUNT(*) FROM outbox_chunk").await;
    assert_eq!(pieces as usize, stored.len().div_ceil(1 << 20));
    let listed = mailroom.outbox().list(None, 10).await.unwrap();
    assert_eq!(listed[0].size, stored.len());

    let summary = Agent::new(mailroom.clone(), agent_options(1))
        .run(std::future::pending())
        .await
        .unwrap();
    assert_eq!(summary.sent, 1, "{summary:?}");
    let delivered = world.smtp.messages();
    assert_eq!(delivered.len(), 1);
    let sent = mailroom.outbox().get(id).await.unwrap();
    assert_eq!(world.delivered_message_ids(), [sent.message_id]);
    // The server got the message as stored (it adds its own trace headers in front).
    assert!(delivered[0].1.len() >= stored.len());
    let tail = &stored[stored.len() - 4096..];
    assert!(
        delivered[0]
            .1
            .windows(tail.len())
            .any(|window| window == tail),
        "the end of the stored message did not arrive"
    );

    world.execute("DELETE FROM outbox_message", vec![]).await;
    assert_eq!(
        count("SELECT COUNT(*) FROM outbox_chunk").await,
        0,
        "pieces left behind"
    );
    world.finish().await;
}

/// The system's clock, reporting each reading: a claim reads the outbox's clock once.
#[derive(Debug)]
struct ReportingClock(tokio::sync::mpsc::UnboundedSender<()>);

impl mailroom_model::Clock for ReportingClock {
    fn now(&self) -> std::time::SystemTime {
        let _ = self.0.send(());
        std::time::SystemTime::now()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_claim_finds_every_mailbox_held_by_another_claim_tries_again() {
    use sea_orm::TransactionTrait;

    let world = World::new(Backend::Postgres, password_server()).await;
    company_relay(&world).await;
    let (readings, mut read) = tokio::sync::mpsc::unbounded_channel();
    let mut options = world.options();
    options.outbox_clock = mailroom::OutboxClock::given(Arc::new(ReportingClock(readings)));
    let mailroom = Arc::new(
        Mailroom::with_connection(world.db.db.clone(), options)
            .await
            .unwrap(),
    );
    queue(&mailroom, 3).await;
    // Another agent's claim in progress: it holds the mailbox's pace row.
    let other_claim = world.db.db.begin().await.unwrap();
    other_claim
        .execute(Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT mailbox FROM mailbox_pace FOR UPDATE",
        ))
        .await
        .unwrap();
    while read.try_recv().is_ok() {}
    let agent = tokio::spawn({
        let mailroom = mailroom.clone();
        async move {
            Agent::new(mailroom, agent_options(2))
                .run(std::future::pending())
                .await
        }
    });
    // The agent keeps claiming (each claim reads the clock) while the row is held, instead
    // of stopping as if nothing were due; a bound, not a synchronisation.
    let retried = tokio::time::timeout(Duration::from_secs(30), async {
        for _ in 0..10 {
            read.recv().await.expect("the clock is read");
        }
    })
    .await;
    assert!(
        retried.is_ok() && !agent.is_finished(),
        "the agent stopped while another claim held the mailbox"
    );
    other_claim.commit().await.unwrap();
    let summary = agent.await.unwrap().unwrap();
    assert_eq!(summary.sent, 3, "{summary:?}");
    assert_eq!(world.smtp.messages().len(), 3);
    world.finish().await;
}

#[tokio::test]
async fn a_message_to_a_hundred_recipients_reaches_a_real_server_with_folded_headers() {
    // Bare addresses: lettre folds only at the spaces inside display names, so a list of
    // them would be one line of thousands of characters.
    let world = World::new(Backend::Sqlite, password_server()).await;
    company_relay(&world).await;
    let mailroom = Arc::new(world.mailroom().await);
    let to: Vec<String> = (0..70)
        .map(|n| format!("customer.number.{n}@example.com"))
        .collect();
    let cc: Vec<String> = (0..30).map(|n| format!("copy{n}@example.com")).collect();
    let request = SendRequest::new(
        AUTOMATION_AGENT,
        MessageDraft {
            from: Some("orders@example.com".to_owned()),
            to: to.clone(),
            cc: cc.clone(),
            subject: "Price list".to_owned(),
            text: Some("Attached.\r\n".to_owned()),
            ..MessageDraft::default()
        },
    );
    mailroom.queue(request).await.unwrap();
    let summary = Agent::new(mailroom.clone(), agent_options(1))
        .run(std::future::pending())
        .await
        .unwrap();
    assert_eq!(summary.sent, 1, "{summary:?}");
    let messages = world.smtp.messages();
    assert_eq!(messages.len(), 1);
    let (event, bytes) = &messages[0];
    assert_eq!(
        event["rcpt_tos"].as_array().map(Vec::len),
        Some(100),
        "{event}"
    );
    // No line is longer than RFC 5322 allows; the headers parse back to every recipient.
    let text = String::from_utf8_lossy(bytes);
    assert!(text.lines().all(|line| line.len() <= 998));
    let parsed = mailparse::parse_mail(bytes).unwrap();
    let addresses = |name: &str| -> Vec<String> {
        let header = parsed
            .headers
            .iter()
            .find(|header| header.get_key_ref().eq_ignore_ascii_case(name))
            .unwrap_or_else(|| panic!("no {name} header"));
        mailparse::addrparse_header(header)
            .unwrap()
            .iter()
            .map(|address| match address {
                mailparse::MailAddr::Single(single) => match &single.display_name {
                    Some(name) => format!("{name} <{}>", single.addr),
                    None => single.addr.clone(),
                },
                mailparse::MailAddr::Group(group) => panic!("a group: {group:?}"),
            })
            .collect()
    };
    assert_eq!(addresses("To"), to);
    assert_eq!(addresses("Cc"), cc);
    world.finish().await;
}

/// A changed server or password is used from the next send: the facade keeps one SMTP
/// pool per account, starts a new one when anything its connections depend on changes,
/// and keeps it while nothing does.
#[tokio::test]
async fn a_changed_server_or_password_is_used_from_the_next_send() {
    let world = World::new(Backend::Sqlite, password_server()).await;
    let other = mailroom_testkit::smtp::TestServer::start(password_server());
    company_relay(&world).await;
    let mut options = world.options();
    // Each send reads the account again (no one-second resolution cache).
    options.resolution_cache_ttl = Duration::ZERO;
    // Each test server has its own certificate authority: trust both.
    options.extra_root_pem =
        Some(format!("{}{}", world.smtp.trusted_ca_pem, other.trusted_ca_pem).into_bytes());
    let mailroom = Mailroom::with_connection(world.db.db.clone(), options)
        .await
        .unwrap();
    let set_company = |port: u16, password: &str| {
        let change = ServerSettingsChange {
            port: Some(port),
            password: Some(Secret::new(password)),
            ..world.smtp_change(Provider::None, RELAY)
        };
        let accounts = Accounts::new(&world.db.db, &world.key);
        async move { accounts.set_company(&change, None).await.unwrap() }
    };
    mailroom.send(message(1)).await.unwrap();
    mailroom.send(message(2)).await.unwrap();
    assert_eq!(world.smtp.messages().len(), 2);

    set_company(other.port, RELAY_PASSWORD).await;
    mailroom.send(message(3)).await.unwrap();
    assert_eq!(other.messages().len(), 1, "sent to the server set now");
    assert_eq!(world.smtp.messages().len(), 2);

    set_company(other.port, "not-the-relays-password").await;
    let error = mailroom.send(message(4)).await.unwrap_err();
    assert!(error.to_string().contains("535"), "{error:?}");
    set_company(other.port, RELAY_PASSWORD).await;
    mailroom.send(message(5)).await.unwrap();
    assert_eq!(other.messages().len(), 2);
    world.finish().await;
}
