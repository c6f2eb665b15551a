//! Pacing per mailbox, on the outbox's clock (a manual clock the tests move instead of
//! waiting): Exchange Online's 30 messages a minute and 10,000 recipients a day for a
//! Microsoft mailbox, shared by every agent on the database; a throttled mailbox pauses
//! while other mailboxes keep sending; fair claiming across mailboxes and by priority.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use mailroom::{
    AUTOMATION_AGENT, AccountRef, Agent, AgentOptions, AgentSummary, Error, Mailroom, ManualClock,
    MessageDraft, OutboxClock, OutboxStatus, Priority, Provider, SendRequest,
};
use mailroom_accounts::{Accounts, BindingChange};
use mailroom_model::{
    Credentials, Delivery, Limit, MessageTransport, OutgoingMessage, Secret, ServerSettingsChange,
    TransportError, TransportErrorKind, TransportKind,
};
use mailroom_testkit::Backend;
use mailroom_testkit::smtp::ServerOptions;

use crate::support::World;

/// The Microsoft mailbox (company account): 30 a minute, 10,000 recipients a day.
const SALES: &str = "sales@contoso.example";
/// The password relay's user account: no limits.
const RELAY: &str = "relay@example.com";

/// Records every message handed to it; throttles a mailbox's next send when told to,
/// with a `Retry-After` or without one.
#[derive(Debug, Default)]
struct Recorder {
    sent: Mutex<Vec<(String, String)>>,
    throttle: Mutex<HashMap<String, Option<Duration>>>,
}

impl Recorder {
    /// The next send from `mailbox` is throttled, asking to wait `retry_after`.
    fn throttle_next(&self, mailbox: &str, retry_after: Option<Duration>) {
        self.throttle
            .lock()
            .unwrap()
            .insert(mailbox.to_owned(), retry_after);
    }

    fn sent_by(&self, sender: &str) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|(from, _)| from == sender)
            .map(|(_, id)| id.clone())
            .collect()
    }
}

#[async_trait::async_trait]
impl MessageTransport for Recorder {
    fn kind(&self) -> TransportKind {
        TransportKind::Smtp
    }

    async fn send(
        &self,
        message: &OutgoingMessage,
        _credentials: &Credentials,
    ) -> Result<Delivery, TransportError> {
        let sender = message.envelope.sender().to_string();
        if let Some(wait) = self.throttle.lock().unwrap().remove(&sender) {
            let error = TransportError::new(
                TransportErrorKind::Transient,
                "Microsoft Graph is throttling requests (HTTP 429)",
            );
            return Err(match wait {
                Some(wait) => error.with_retry_after(wait),
                None => error,
            }
            .throttled());
        }
        self.sent
            .lock()
            .unwrap()
            .push((sender, message.message_id.clone().unwrap_or_default()));
        Ok(Delivery {
            reply: "250 2.0.0 OK".to_owned(),
            provider_message_id: None,
            thread_id: None,
        })
    }
}

struct Paced {
    world: World,
    clock: Arc<ManualClock>,
    recorder: Arc<Recorder>,
    relay: i64,
}

impl Paced {
    async fn new(backend: Backend) -> Self {
        let world = World::new(backend, ServerOptions::default()).await;
        world.register_app(Provider::Microsoft).await;
        world
            .store_token(Provider::Microsoft, SALES, "sales-token", false)
            .await;
        let accounts = Accounts::new(&world.db.db, &world.key);
        accounts
            .set_company(&world.smtp_change(Provider::Microsoft, SALES), None)
            .await
            .unwrap();
        let relay = accounts
            .add_user_account(
                &ServerSettingsChange {
                    password: Some(Secret::new("relay-password")),
                    ..world.smtp_change(Provider::None, RELAY)
                },
                None,
            )
            .await
            .unwrap()
            .account
            .id;
        // A whole second: the per-minute window counts whole seconds (a send at 10.3 s
        // leaves the minute at 71 s), and the steps below land on them.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let start = std::time::UNIX_EPOCH + Duration::from_secs(now.as_secs());
        Self {
            world,
            clock: Arc::new(ManualClock::new(start)),
            recorder: Arc::new(Recorder::default()),
            relay,
        }
    }

    /// A facade (one agent process) on the shared database and outbox clock. Tokens keep
    /// the real clock: only the outbox's time is simulated.
    async fn mailroom(&self) -> Arc<Mailroom> {
        let mut options = self.world.options();
        options.outbox_clock = OutboxClock::given(self.clock.clone());
        options.transport_override = Some(self.recorder.clone());
        options.pacing_wait = Duration::ZERO;
        Arc::new(
            Mailroom::with_connection(self.world.db.db.clone(), options)
                .await
                .unwrap(),
        )
    }

    /// The Microsoft mailbox's daily limit, set on its account (`--daily`) as the CLI and
    /// the console do.
    async fn daily_limit(&self, recipients: u32) {
        self.mailroom()
            .await
            .save_company(
                &ServerSettingsChange {
                    daily_limit: Some(Some(Limit::At(recipients))),
                    ..ServerSettingsChange::default()
                },
                None,
            )
            .await
            .unwrap();
    }

    fn now(&self) -> DateTime<Utc> {
        DateTime::from(mailroom::Clock::now(&*self.clock))
    }
}

fn request(account: AccountRef, number: usize, recipients: usize) -> SendRequest<'static> {
    let mut request = SendRequest::new(
        AUTOMATION_AGENT,
        MessageDraft {
            to: (0..recipients)
                .map(|n| format!("customer{number}-{n}@example.com"))
                .collect(),
            subject: format!("Statement {number}"),
            text: Some(format!("Statement {number}\r\n")),
            ..MessageDraft::default()
        },
    );
    request.account = Some(account);
    request
}

/// Queues `count` messages from `account`, numbered from 0, each to `recipients`
/// recipients; their ids, in order.
async fn queue_numbered(
    mailroom: &Mailroom,
    account: AccountRef,
    count: usize,
    recipients: usize,
) -> Vec<i64> {
    let mut ids = Vec::with_capacity(count);
    for number in 0..count {
        ids.push(
            mailroom
                .queue(request(account, number, recipients))
                .await
                .unwrap(),
        );
    }
    ids
}

async fn run_agent(mailroom: &Arc<Mailroom>, owner: &str) -> AgentSummary {
    Agent::new(
        mailroom.clone(),
        AgentOptions {
            concurrency: 8,
            once: true,
            owner: owner.to_owned(),
            ..AgentOptions::default()
        },
    )
    .run(std::future::pending())
    .await
    .unwrap()
}

/// One agent (`--once`) sending one message at a time.
async fn run_agent_one_at_a_time(mailroom: &Arc<Mailroom>) -> AgentSummary {
    Agent::new(
        mailroom.clone(),
        AgentOptions {
            concurrency: 1,
            once: true,
            ..AgentOptions::default()
        },
    )
    .run(std::future::pending())
    .await
    .unwrap()
}

async fn sent_times(mailroom: &Mailroom) -> Vec<DateTime<Utc>> {
    let mut times: Vec<DateTime<Utc>> = mailroom
        .outbox()
        .list(Some(OutboxStatus::Sent), 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|message| message.sender == SALES)
        .filter_map(|message| message.sent_at)
        .collect();
    times.sort();
    times
}

/// The most sends in any minute (a window starting at a send).
fn busiest_minute(times: &[DateTime<Utc>]) -> usize {
    times
        .iter()
        .map(|start| {
            times
                .iter()
                .filter(|t| **t >= *start && **t < *start + chrono::Duration::seconds(60))
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_month_end_backlog_goes_out_at_thirty_a_minute_and_does_not_delay_another_mailbox() {
    let paced = Paced::new(Backend::Sqlite).await;
    let mailroom = paced.mailroom().await;
    queue_numbered(&mailroom, AccountRef::Company, 2_000, 1).await;
    let other = mailroom
        .queue(request(AccountRef::User(paced.relay), 0, 1))
        .await
        .unwrap();
    let start = paced.now();

    // The first run: the other mailbox's message goes out at once, beside the backlog's
    // first minute.
    run_agent(&mailroom, "agent").await;
    let other = mailroom.outbox().get(other).await.unwrap();
    assert_eq!(other.status, OutboxStatus::Sent);
    assert_eq!(other.sent_at, Some(start));
    assert_eq!(
        sent_times(&mailroom).await.len(),
        30,
        "the first minute's 30"
    );

    let mut steps = 0;
    while paced.recorder.sent_by(SALES).len() < 2_000 {
        paced.clock.advance(Duration::from_secs(5));
        run_agent(&mailroom, "agent").await;
        steps += 1;
        assert!(
            steps <= 67 * 12,
            "2,000 messages sent within 67 simulated minutes"
        );
    }
    let times = sent_times(&mailroom).await;
    assert_eq!(times.len(), 2_000);
    assert_eq!(busiest_minute(&times), 30, "never more than 30 in a minute");
    let last = *times.last().unwrap();
    assert!(
        last - start <= chrono::Duration::minutes(67),
        "all sent within 67 simulated minutes: {}",
        last - start
    );
    // Exactly once each.
    let mut ids = paced.recorder.sent_by(SALES);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2_000);
    paced.world.finish().await;
}

async fn two_agents_share_one_mailboxs_limit(backend: Backend) {
    let paced = Paced::new(backend).await;
    let (a, b) = (paced.mailroom().await, paced.mailroom().await);
    queue_numbered(&a, AccountRef::Company, 100, 1).await;
    let mut steps = 0;
    while paced.recorder.sent_by(SALES).len() < 100 {
        tokio::join!(run_agent(&a, "agent-a"), run_agent(&b, "agent-b"));
        paced.clock.advance(Duration::from_secs(5));
        steps += 1;
        assert!(steps < 200, "all sent");
    }
    let times = sent_times(&a).await;
    assert_eq!(times.len(), 100);
    assert!(
        busiest_minute(&times) <= 30,
        "two agents together stay under 30 a minute: {}",
        busiest_minute(&times)
    );
    let mut ids = paced.recorder.sent_by(SALES);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 100, "each once");
    paced.world.finish().await;
}

#[tokio::test]
async fn two_agents_share_one_mailboxs_limit_on_sqlite() {
    two_agents_share_one_mailboxs_limit(Backend::Sqlite).await;
}

#[tokio::test]
async fn two_agents_share_one_mailboxs_limit_on_postgres() {
    two_agents_share_one_mailboxs_limit(Backend::Postgres).await;
}

/// `account edit --rate 1/min` on a user account whose messages are already queued (its
/// mailbox's row was made without limits): saving the account paces the very next claim,
/// one message and not all three.
async fn a_rate_set_on_a_user_account_paces_its_next_claim(backend: Backend) {
    let paced = Paced::new(backend).await;
    let mailroom = paced.mailroom().await;
    queue_numbered(&mailroom, AccountRef::User(paced.relay), 3, 1).await;
    mailroom
        .edit_account(
            paced.relay,
            &ServerSettingsChange {
                rate_per_minute: Some(Some(Limit::At(1))),
                ..ServerSettingsChange::default()
            },
            BindingChange::Keep,
        )
        .await
        .unwrap();
    let summary = run_agent(&paced.mailroom().await, "agent").await;
    assert_eq!(summary.sent, 1, "{summary:?}");
    assert_eq!(paced.recorder.sent_by(RELAY).len(), 1);
    paced.clock.advance(Duration::from_secs(61));
    let summary = run_agent(&paced.mailroom().await, "agent").await;
    assert_eq!(summary.sent, 1, "one a minute: {summary:?}");
    paced.world.finish().await;
}

#[tokio::test]
async fn a_rate_set_on_a_user_account_paces_its_next_claim_on_sqlite() {
    a_rate_set_on_a_user_account_paces_its_next_claim(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_rate_set_on_a_user_account_paces_its_next_claim_on_postgres() {
    a_rate_set_on_a_user_account_paces_its_next_claim(Backend::Postgres).await;
}

async fn the_daily_limit_holds_the_mailbox_until_it_resets(backend: Backend) {
    let paced = Paced::new(backend).await;
    // Exchange's day is 10,000 recipients; this account allows 100 (`--daily 100`).
    paced.daily_limit(100).await;
    let mailroom = paced.mailroom().await;
    // 21 messages of 5 recipients: the 21st is one too many.
    let ids = queue_numbered(&mailroom, AccountRef::Company, 21, 5).await;
    let start = paced.now();
    run_agent(&mailroom, "agent").await;
    assert_eq!(paced.recorder.sent_by(SALES).len(), 20);
    let held = mailroom.outbox().get(ids[20]).await.unwrap();
    assert_eq!(held.status, OutboxStatus::Held);
    let resumes = start + chrono::Duration::hours(24);
    let reason = held.last_error.unwrap_or_default();
    assert!(
        reason.contains(&format!(
            "daily limit of 100 recipients for {SALES} reached; resumes at {}",
            resumes.format("%Y-%m-%d %H:%M")
        )),
        "{reason}"
    );
    assert_eq!(held.attempts, 0, "a hold is not an attempt");
    // Another mailbox sends meanwhile; this one does not, even a small message.
    let small = mailroom
        .queue(request(AccountRef::Company, 99, 1))
        .await
        .unwrap();
    let other = mailroom
        .queue(request(AccountRef::User(paced.relay), 0, 1))
        .await
        .unwrap();
    paced.clock.advance(Duration::from_secs(23 * 3600));
    run_agent(&mailroom, "agent").await;
    assert_eq!(
        mailroom.outbox().get(other).await.unwrap().status,
        OutboxStatus::Sent
    );
    assert_eq!(
        mailroom.outbox().get(small).await.unwrap().status,
        OutboxStatus::Held
    );
    assert_eq!(paced.recorder.sent_by(SALES).len(), 20);
    // After the reset, without anyone acting.
    paced.clock.advance(Duration::from_secs(3600));
    run_agent(&mailroom, "agent").await;
    assert_eq!(
        mailroom.outbox().get(ids[20]).await.unwrap().status,
        OutboxStatus::Sent
    );
    assert_eq!(
        mailroom.outbox().get(small).await.unwrap().status,
        OutboxStatus::Sent
    );
    paced.world.finish().await;
}

#[tokio::test]
async fn the_daily_limit_holds_the_mailbox_until_it_resets_on_sqlite() {
    the_daily_limit_holds_the_mailbox_until_it_resets(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_daily_limit_holds_the_mailbox_until_it_resets_on_postgres() {
    the_daily_limit_holds_the_mailbox_until_it_resets(Backend::Postgres).await;
}

/// The day's limit counts within one claim too: a claim larger than what is left of the
/// day takes only what fits (two messages of 5 recipients of a day of 10).
#[tokio::test]
async fn one_claim_takes_no_more_than_is_left_of_the_day() {
    let paced = Paced::new(Backend::Sqlite).await;
    paced.daily_limit(10).await;
    let mailroom = paced.mailroom().await;
    queue_numbered(&mailroom, AccountRef::Company, 3, 5).await;
    assert_eq!(
        mailroom.outbox().claim_and_release("day", 3).await.unwrap(),
        2
    );
    paced.world.finish().await;
}

/// A message queued under the default limit, which an administrator then lowered below
/// it: the claim fails it with what to do, and the mailbox's other messages still go.
#[tokio::test]
async fn a_message_larger_than_a_lowered_daily_limit_fails_with_what_to_do() {
    let paced = Paced::new(Backend::Sqlite).await;
    let mailroom = paced.mailroom().await;
    let id = mailroom
        .queue(request(AccountRef::Company, 0, 11))
        .await
        .unwrap();
    let fits = mailroom
        .queue(request(AccountRef::Company, 1, 10))
        .await
        .unwrap();
    paced.daily_limit(10).await;
    let mailroom = paced.mailroom().await;
    run_agent(&mailroom, "agent").await;
    let failed = mailroom.outbox().get(id).await.unwrap();
    assert_eq!(failed.status, OutboxStatus::Failed);
    let reason = failed.last_error.unwrap_or_default();
    assert!(reason.contains("11 recipients"), "{reason}");
    assert!(reason.contains("split it"), "{reason}");
    // It does not block the mailbox: the next message goes.
    assert_eq!(
        mailroom.outbox().get(fits).await.unwrap().status,
        OutboxStatus::Sent
    );
    paced.world.finish().await;
}

#[tokio::test]
async fn a_429_pauses_its_mailbox_for_the_retry_after_and_not_the_others() {
    let paced = Paced::new(Backend::Sqlite).await;
    let mailroom = paced.mailroom().await;
    paced
        .recorder
        .throttle_next(SALES, Some(Duration::from_secs(30)));
    let first = mailroom
        .queue(request(AccountRef::Company, 0, 1))
        .await
        .unwrap();
    let other = mailroom
        .queue(request(AccountRef::User(paced.relay), 0, 1))
        .await
        .unwrap();
    let start = paced.now();
    run_agent(&mailroom, "agent").await;
    assert_eq!(
        mailroom.outbox().get(other).await.unwrap().status,
        OutboxStatus::Sent
    );
    let held = mailroom.outbox().get(first).await.unwrap();
    assert_eq!(held.status, OutboxStatus::Held);
    assert_eq!(held.attempts, 0);
    assert_eq!(held.next_attempt_at, start + chrono::Duration::seconds(30));
    assert!(
        held.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("paused until"),
        "{:?}",
        held.last_error
    );

    // The whole mailbox waits: a message queued now stays, another mailbox's goes.
    let second = mailroom
        .queue(request(AccountRef::Company, 1, 1))
        .await
        .unwrap();
    let other = mailroom
        .queue(request(AccountRef::User(paced.relay), 1, 1))
        .await
        .unwrap();
    paced.clock.advance(Duration::from_secs(29));
    run_agent(&mailroom, "agent").await;
    assert_eq!(
        mailroom.outbox().get(other).await.unwrap().status,
        OutboxStatus::Sent
    );
    // Queued into a paused mailbox: held at once, with the pause's reason.
    let waiting = mailroom.outbox().get(second).await.unwrap();
    assert_eq!(waiting.status, OutboxStatus::Held);
    assert_eq!(
        waiting.next_attempt_at,
        start + chrono::Duration::seconds(30)
    );
    assert!(paced.recorder.sent_by(SALES).is_empty());

    paced.clock.advance(Duration::from_secs(1));
    run_agent(&mailroom, "agent").await;
    for id in [first, second] {
        assert_eq!(
            mailroom.outbox().get(id).await.unwrap().status,
            OutboxStatus::Sent
        );
    }
    paced.world.finish().await;
}

/// A throttling reply without a `Retry-After` pauses the mailbox for a backoff: 30 s, then
/// doubled for each pause in a row, and back to 30 s once the mailbox delivered again.
#[tokio::test]
async fn a_throttled_mailbox_without_a_retry_after_backs_off_doubling_until_it_delivers() {
    let paced = Paced::new(Backend::Sqlite).await;
    let mailroom = paced.mailroom().await;
    let held_for = async |id: i64| {
        let held = mailroom.outbox().get(id).await.unwrap();
        assert_eq!(held.status, OutboxStatus::Held);
        (held.next_attempt_at - paced.now()).num_seconds()
    };
    paced.recorder.throttle_next(SALES, None);
    let id = mailroom
        .queue(request(AccountRef::Company, 0, 1))
        .await
        .unwrap();
    run_agent(&mailroom, "agent").await;
    assert_eq!(held_for(id).await, 30);

    paced.clock.advance(Duration::from_secs(30));
    paced.recorder.throttle_next(SALES, None);
    run_agent(&mailroom, "agent").await;
    assert_eq!(held_for(id).await, 60, "the second pause in a row");

    paced.clock.advance(Duration::from_secs(60));
    run_agent(&mailroom, "agent").await;
    assert_eq!(
        mailroom.outbox().get(id).await.unwrap().status,
        OutboxStatus::Sent
    );

    paced.recorder.throttle_next(SALES, None);
    let next = mailroom
        .queue(request(AccountRef::Company, 1, 1))
        .await
        .unwrap();
    run_agent(&mailroom, "agent").await;
    assert_eq!(
        held_for(next).await,
        30,
        "a delivery ended the run of pauses"
    );
    paced.world.finish().await;
}

/// A direct send counts against its mailbox's daily limit as the agent's do (in
/// recipients, for Microsoft), and one that would pass it is refused until enough of the
/// oldest minutes have left the rolling 24 hours.
#[tokio::test]
async fn direct_sends_stop_at_the_daily_limit_until_enough_of_the_day_has_passed() {
    let paced = Paced::new(Backend::Sqlite).await;
    paced.daily_limit(6).await;
    let mailroom = paced.mailroom().await;
    // Two recipients each, ten minutes apart: the day's 6.
    let first = paced.now();
    for number in 0..3 {
        mailroom
            .send(request(AccountRef::Company, number, 2))
            .await
            .unwrap();
        paced.clock.advance(Duration::from_secs(10 * 60));
    }
    let error = mailroom
        .send(request(AccountRef::Company, 3, 2))
        .await
        .unwrap_err();
    // Room for two once the first minute's two have left the day.
    let first_minute = first.timestamp().div_euclid(60) * 60;
    let resumes = DateTime::<Utc>::from_timestamp(first_minute + 24 * 60 * 60, 0).unwrap();
    match &error {
        Error::MailboxLimit { mailbox, until, .. } => {
            assert_eq!(mailbox, SALES);
            assert_eq!(*until, resumes);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        error.to_string().contains("daily limit of 6 recipients"),
        "{error}"
    );
    assert_eq!(paced.recorder.sent_by(SALES).len(), 3);
    paced.world.finish().await;
}

/// `error` refuses 11 recipients from the Microsoft mailbox with a day of 10, for what it
/// is (no retry makes it fit), with the account to edit.
fn assert_eleven_over_ten(error: &Error) {
    assert!(
        matches!(error, Error::OverDailyLimit { mailbox, units: 11, daily: 10, .. } if mailbox == SALES),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "the message has 11 recipients and {SALES} sends at most 10 a day: split it into smaller messages, or raise the account's daily limit"
        )
    );
    assert!(!error.is_transient(), "no retry makes it fit");
    assert_eq!(
        error.remedy(),
        Some(mailroom_model::Remedy::EditAccount {
            account: Some(AccountRef::Company)
        })
    );
}

/// A direct send with more recipients than its mailbox sends in a day is refused for what
/// it is (no wait makes it fit), with the account to edit, and uses none of the day.
#[tokio::test]
async fn a_direct_send_larger_than_the_daily_limit_is_refused_with_what_to_do() {
    let paced = Paced::new(Backend::Sqlite).await;
    paced.daily_limit(10).await;
    let mailroom = paced.mailroom().await;
    let error = mailroom
        .send(request(AccountRef::Company, 0, 11))
        .await
        .unwrap_err();
    assert_eleven_over_ten(&error);
    // The day is untouched: ten recipients still go.
    mailroom
        .send(request(AccountRef::Company, 1, 10))
        .await
        .unwrap();
    assert_eq!(paced.recorder.sent_by(SALES).len(), 1);
    paced.world.finish().await;
}

/// Queueing a message larger than its mailbox's day refuses it at once, with the same
/// error as a direct send, and writes nothing: it would only fail in the agent later.
#[tokio::test]
async fn queueing_a_message_larger_than_the_daily_limit_is_refused_and_writes_nothing() {
    let paced = Paced::new(Backend::Sqlite).await;
    paced.daily_limit(10).await;
    let mailroom = paced.mailroom().await;
    let error = mailroom
        .queue(request(AccountRef::Company, 0, 11))
        .await
        .unwrap_err();
    assert_eleven_over_ten(&error);
    assert_eq!(
        mailroom
            .outbox()
            .counts()
            .await
            .unwrap()
            .values()
            .sum::<u64>(),
        0,
        "nothing was queued"
    );
    // At the limit it is queued.
    mailroom
        .queue(request(AccountRef::Company, 1, 10))
        .await
        .unwrap();
    assert_eq!(
        mailroom
            .outbox()
            .counts()
            .await
            .unwrap()
            .values()
            .sum::<u64>(),
        1
    );
    paced.world.finish().await;
}

/// A mailbox the provider paused (a 429 to the agent) refuses direct sends too, until the
/// pause is over.
#[tokio::test]
async fn a_paused_mailbox_refuses_direct_sends_until_the_pause_is_over() {
    let paced = Paced::new(Backend::Sqlite).await;
    let mailroom = paced.mailroom().await;
    paced
        .recorder
        .throttle_next(SALES, Some(Duration::from_secs(30)));
    mailroom
        .queue(request(AccountRef::Company, 0, 1))
        .await
        .unwrap();
    let start = paced.now();
    run_agent(&mailroom, "agent").await;

    let error = mailroom
        .send(request(AccountRef::Company, 1, 1))
        .await
        .unwrap_err();
    match &error {
        Error::MailboxLimit { mailbox, until, .. } => {
            assert_eq!(mailbox, SALES);
            assert_eq!(*until, start + chrono::Duration::seconds(30));
        }
        other => panic!("{other:?}"),
    }
    paced.clock.advance(Duration::from_secs(30));
    mailroom
        .send(request(AccountRef::Company, 2, 1))
        .await
        .unwrap();
    assert_eq!(paced.recorder.sent_by(SALES).len(), 1);
    paced.world.finish().await;
}

#[tokio::test]
async fn direct_sends_count_against_the_same_minute_as_the_agent() {
    let paced = Paced::new(Backend::Sqlite).await;
    let mailroom = paced.mailroom().await;
    for number in 0..30 {
        mailroom
            .send(request(AccountRef::Company, number, 1))
            .await
            .unwrap();
    }
    let start = paced.now();
    // Refused at once: the minute's wait is longer than the facade's `pacing_wait` (zero
    // here), so the send does not sleep through it first (that would take 60 s).
    let error = tokio::time::timeout(
        Duration::from_secs(30),
        mailroom.send(request(AccountRef::Company, 30, 1)),
    )
    .await
    .expect("refused at once, not after waiting for the minute")
    .unwrap_err();
    match &error {
        Error::MailboxLimit { mailbox, until, .. } => {
            assert_eq!(mailbox, SALES);
            // A whole minute after the first send.
            assert_eq!(*until, start + chrono::Duration::seconds(60));
        }
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains("queue the message"), "{error}");
    assert!(error.is_transient());
    // The agent sees the same minute.
    let queued = mailroom
        .queue(request(AccountRef::Company, 31, 1))
        .await
        .unwrap();
    run_agent(&mailroom, "agent").await;
    assert_eq!(
        mailroom.outbox().get(queued).await.unwrap().status,
        OutboxStatus::Queued
    );
    paced.clock.advance(Duration::from_secs(59));
    run_agent(&mailroom, "agent").await;
    assert_eq!(
        mailroom.outbox().get(queued).await.unwrap().status,
        OutboxStatus::Queued,
        "a second early"
    );
    paced.clock.advance(Duration::from_secs(1));
    run_agent(&mailroom, "agent").await;
    assert_eq!(
        mailroom.outbox().get(queued).await.unwrap().status,
        OutboxStatus::Sent
    );
    paced.world.finish().await;
}

async fn claims_are_fair_across_mailboxes_and_by_priority(backend: Backend) {
    let paced = Paced::new(backend).await;
    let mailroom = paced.mailroom().await;
    // A bulk backlog for the relay, then one message for the Microsoft mailbox and one
    // interactive message for the relay.
    for number in 0..20 {
        let mut bulk = request(AccountRef::User(paced.relay), number, 1);
        bulk.priority = Priority::Bulk;
        mailroom.queue(bulk).await.unwrap();
    }
    let sales = mailroom
        .queue(request(AccountRef::Company, 0, 1))
        .await
        .unwrap();
    let mut urgent = request(AccountRef::User(paced.relay), 99, 1);
    urgent.priority = Priority::Interactive;
    let urgent = mailroom.queue(urgent).await.unwrap();
    let urgent_id = mailroom.outbox().get(urgent).await.unwrap().message_id;
    let sales_id = mailroom.outbox().get(sales).await.unwrap().message_id;

    // One agent sending one at a time: its first claim serves both mailboxes, the relay's
    // interactive message first, then the other mailbox's, before any of the bulk.
    run_agent_one_at_a_time(&mailroom).await;
    let order: Vec<String> = paced
        .recorder
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(order.len(), 22);
    assert_eq!(order[..2], [urgent_id, sales_id], "{order:?}");
    paced.world.finish().await;
}

#[tokio::test]
async fn claims_are_fair_across_mailboxes_and_by_priority_on_sqlite() {
    claims_are_fair_across_mailboxes_and_by_priority(Backend::Sqlite).await;
}

#[tokio::test]
async fn claims_are_fair_across_mailboxes_and_by_priority_on_postgres() {
    claims_are_fair_across_mailboxes_and_by_priority(Backend::Postgres).await;
}

/// A claim takes at most its share of each mailbox it serves (the claim's size over the
/// mailboxes): round robin would give none of them more while each has that many, so a
/// deep claim over many backlogs reads about as many rows as it leases.
async fn a_claim_takes_at_most_its_share_of_each_mailbox(backend: Backend) {
    let paced = Paced::new(backend).await;
    let mailroom = paced.mailroom().await;
    queue_numbered(&mailroom, AccountRef::User(paced.relay), 12, 1).await;
    mailroom
        .queue(request(AccountRef::Company, 0, 1))
        .await
        .unwrap();
    let outbox = mailroom.outbox();
    // Two mailboxes, a claim of 8: 4 of the relay's 12 and the Microsoft mailbox's one.
    assert_eq!(outbox.claim_and_release("share", 8).await.unwrap(), 5);
    // A claim of 9: a share of 5.
    assert_eq!(outbox.claim_and_release("share", 9).await.unwrap(), 6);
    paced.world.finish().await;
}

#[tokio::test]
async fn a_claim_takes_at_most_its_share_of_each_mailbox_on_sqlite() {
    a_claim_takes_at_most_its_share_of_each_mailbox(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_claim_takes_at_most_its_share_of_each_mailbox_on_postgres() {
    a_claim_takes_at_most_its_share_of_each_mailbox(Backend::Postgres).await;
}

#[tokio::test]
async fn a_throttled_mailboxs_claimed_messages_wait_for_the_pause_too() {
    let paced = Paced::new(Backend::Sqlite).await;
    let mailroom = paced.mailroom().await;
    paced
        .recorder
        .throttle_next(RELAY, Some(Duration::from_secs(30)));
    let ids = queue_numbered(&mailroom, AccountRef::User(paced.relay), 4, 1).await;
    // One claim takes all four; the first send is throttled. The three claimed behind it
    // are not sent into the pause: they go back to the queue, no attempt used.
    let summary = run_agent_one_at_a_time(&mailroom).await;
    assert_eq!((summary.sent, summary.held), (0, 1), "{summary:?}");
    assert!(paced.recorder.sent_by(RELAY).is_empty());
    let held = mailroom.outbox().get(ids[0]).await.unwrap();
    assert_eq!(held.status, OutboxStatus::Held);
    for id in &ids[1..] {
        let waiting = mailroom.outbox().get(*id).await.unwrap();
        assert_eq!(waiting.status, OutboxStatus::Queued, "{waiting:?}");
        assert_eq!(waiting.attempts, 0);
    }
    // After the pause, all four go.
    paced.clock.advance(Duration::from_secs(30));
    run_agent(&mailroom, "agent").await;
    assert_eq!(paced.recorder.sent_by(RELAY).len(), 4);
    paced.world.finish().await;
}
