//! The automation agent: claims due messages from the outbox, sends them (never
//! prompting for a sign-in), and records each outcome. On shutdown it claims nothing new,
//! puts back what it claimed and did not start, and lets the sends in flight finish.
//!
//! One claim takes up to eight messages per send slot, or about a second of this agent's
//! sending when that is more (at most 1,024), so that its statements are shared by many
//! sends; the messages not started yet wait in the agent, leased to it. The accounts of a
//! claim's messages are read together. Outcomes are recorded together: deliveries in one
//! statement, at most a quarter of a second after the first of them.
//!
//! A claim leases a message for [`AgentOptions::lease`]; while the send is in flight a
//! heartbeat renews the lease every third of it (or [`AgentOptions::heartbeat`]), so a long
//! wait for a server's final reply does not need a long lease, and a dead agent's messages
//! are claimed again soon after it stopped renewing. Lease times come from the outbox's
//! clock ([`crate::OutboxClock`]), which every agent on the database shares.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mailroom_accounts::Account;
use mailroom_model::AccountRef;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::facade::Receipt;
use crate::outbox::{Claimed, Finish, OutboxStatus, Outcome};
use crate::retry::DELIVERY_UNKNOWN_MARK;
use crate::{Mailroom, Result};

/// What the agent reports as it works (the CLI draws its progress bar from these).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AgentEvent {
    /// A message was delivered.
    Sent {
        /// Its outbox id.
        id: i64,
        /// What the send did.
        receipt: Receipt,
    },
    /// A message failed transiently and is due again later.
    Retrying {
        /// Its outbox id.
        id: i64,
        /// Why.
        error: String,
    },
    /// A message's account needs a sign-in, or its stored secret cannot be opened with
    /// this agent's key (the key was rotated or replaced), or the provider paused sending
    /// from its mailbox (a quota, throttling); it is held until then.
    Held {
        /// Its outbox id.
        id: i64,
        /// Why ("Failed to obtain an access token ..." for a sign-in).
        error: String,
    },
    /// A message was given up on.
    Failed {
        /// Its outbox id.
        id: i64,
        /// Why.
        error: String,
    },
    /// The lease of a claimed message, being sent or waiting for a free slot, was renewed
    /// (the heartbeat); not a finished message.
    LeaseRenewed {
        /// Its outbox id.
        id: i64,
        /// The lease's new expiry, on the outbox's clock.
        until: chrono::DateTime<chrono::Utc>,
    },
    /// This agent lost the lease of a message it was sending (its lease ran out and
    /// another agent claimed it): the send's outcome, other than a delivery, was not
    /// recorded, so the message is left to the agent holding it now.
    LeaseLost {
        /// Its outbox id.
        id: i64,
        /// The outcome that was not recorded.
        error: String,
    },
}

impl AgentEvent {
    /// True for the events that end a message's claim (sent, retrying, held, failed,
    /// lease lost); false for a heartbeat.
    pub fn is_finished(&self) -> bool {
        !matches!(self, AgentEvent::LeaseRenewed { .. })
    }
}

/// The shortest lease an agent takes. The lease is renewed every third of it while a
/// send is in flight, so a shorter one would mostly add database writes: a slow server
/// needs no long lease, only the renewals.
pub const MIN_LEASE: Duration = Duration::from_secs(3);

/// A callback for [`AgentEvent`]s.
pub type AgentEventSink = Arc<dyn Fn(&AgentEvent) + Send + Sync>;

/// How the agent runs.
#[derive(Clone)]
pub struct AgentOptions {
    /// How many messages it sends at once, at least 1.
    pub concurrency: usize,
    /// Drain what is due now, then stop (instead of waiting for new messages).
    pub once: bool,
    /// How long a claimed message stays leased to this agent without a renewal. The lease
    /// is renewed while the send is in flight, so this bounds how long a dead agent's
    /// messages wait, not how long a send may take. At least [`MIN_LEASE`].
    pub lease: Duration,
    /// How often the lease of a message being sent is renewed. `None`: a third of the
    /// lease; a longer interval is shortened to that, so two renewals in a row can fail
    /// before the lease runs out.
    pub heartbeat: Option<Duration>,
    /// How often an idle agent looks for due messages.
    pub poll_interval: Duration,
    /// How long a message whose account needs a sign-in waits before it is tried again.
    pub hold_retry: Duration,
    /// The name this agent leases messages under (unique per process).
    pub owner: String,
    /// Receives an event for every finished message, and one for each lease renewal.
    pub events: Option<AgentEventSink>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            concurrency: 4,
            once: false,
            lease: Duration::from_secs(300),
            heartbeat: None,
            poll_interval: Duration::from_secs(1),
            hold_retry: Duration::from_secs(60),
            owner: format!(
                "agent-{}-{:016x}",
                std::process::id(),
                rand::random::<u64>()
            ),
            events: None,
        }
    }
}

impl AgentOptions {
    /// How often a lease is renewed: [`AgentOptions::heartbeat`], at most a third of the
    /// lease.
    pub fn heartbeat_interval(&self) -> Duration {
        let third = self.lease / 3;
        self.heartbeat.map_or(third, |given| given.min(third))
    }

    fn emit(&self, event: &AgentEvent) {
        if let Some(sink) = &self.events {
            sink(event);
        }
    }
}

impl fmt::Debug for AgentOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentOptions")
            .field("concurrency", &self.concurrency)
            .field("once", &self.once)
            .field("lease", &self.lease)
            .field("heartbeat", &self.heartbeat)
            .field("poll_interval", &self.poll_interval)
            .field("hold_retry", &self.hold_retry)
            .field("owner", &self.owner)
            .field("events", &self.events.is_some())
            .finish()
    }
}

/// What one run of the agent did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct AgentSummary {
    /// Messages delivered.
    pub sent: u64,
    /// Messages rescheduled after a transient failure.
    pub retrying: u64,
    /// Messages held (for a sign-in, the database's key, or a mailbox the provider paused).
    pub held: u64,
    /// Messages given up on.
    pub failed: u64,
    /// Messages whose lease this agent lost during the send (another agent claimed them);
    /// their outcome was left to that agent.
    pub lease_lost: u64,
    /// Old sent and cancelled messages deleted under the retention setting.
    pub purged: u64,
}

/// The automation agent over one [`Mailroom`].
#[derive(Debug, Clone)]
pub struct Agent {
    mailroom: Arc<Mailroom>,
    options: AgentOptions,
}

/// A send that ended, its outcome not recorded yet: the agent records a batch of them in
/// one transaction.
struct Done {
    outcome: Outcome,
    event: AgentEvent,
    message_id: String,
    /// When the send ended.
    finished: tokio::time::Instant,
}

async fn process(
    mailroom: Arc<Mailroom>,
    options: Arc<AgentOptions>,
    message: Claimed,
    account: Option<Account>,
) -> Done {
    let id = message.id;
    let outbox = mailroom.outbox();
    let span = tracing::info_span!("agent send", id, message_id = %message.message_id, attempt = message.attempts);
    // Boxed: the send's state is large, and the task (spawned per message) would otherwise
    // carry it inline and be copied whole as it is spawned.
    let mut send = Box::pin(
        mailroom
            .deliver_claimed(&message, account)
            .instrument(span.clone()),
    );
    let heartbeat = options.heartbeat_interval();
    let mut lease_lost = false;
    let result = loop {
        tokio::select! {
            result = &mut send => break result,
            () = tokio::time::sleep(heartbeat), if !lease_lost => {
                match outbox.renew(id, &options.owner, options.lease).await {
                    Ok(Some(until)) => options.emit(&AgentEvent::LeaseRenewed { id, until }),
                    Ok(None) => {
                        lease_lost = true;
                        tracing::warn!(parent: &span, "the lease ran out and another agent claimed the message; only a delivery will be recorded");
                    }
                    Err(error) => {
                        tracing::warn!(parent: &span, error = %error, "cannot renew the lease; trying again at the next heartbeat");
                    }
                }
            }
        }
    };
    let now = outbox.clock().now_utc();
    // A wait from the far future (a hostile Retry-After) saturates instead of overflowing.
    let later = |duration: Duration| {
        chrono::Duration::from_std(duration)
            .ok()
            .and_then(|delta| now.checked_add_signed(delta))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
    };
    let mut pause = None;
    let unknown_before = message
        .last_error
        .as_deref()
        .is_some_and(|last| last.starts_with(DELIVERY_UNKNOWN_MARK));
    let (outcome, event) = match result {
        Ok(receipt) => (
            Finish::Sent(receipt.clone()),
            AgentEvent::Sent { id, receipt },
        ),
        // A secret this agent's key cannot open (the key was rotated after the agent
        // started, or this host has another key), or an app-only credential the provider
        // refused, is fixed by an administrator like a sign-in is: hold the message, do
        // not fail it.
        Err(error)
            if error.needs_sign_in() || error.is_key_problem() || error.needs_app_credential() =>
        {
            let text = error.to_string();
            (
                Finish::Held {
                    error: text.clone(),
                    at: later(options.hold_retry),
                },
                AgentEvent::Held { id, error: text },
            )
        }
        // The provider throttled the mailbox (a quota, "sender throttled", Graph's 429,
        // Gmail's rate limits): the whole mailbox pauses for the wait it asked for (or a
        // backoff that doubles with each pause in a row) while other mailboxes keep
        // sending; the message is held until then, which uses up no attempt, so a long
        // pause never fails a message that is fine.
        Err(error) if error.is_throttled() => {
            let wait = match error.retry_after() {
                Some(wait) => wait,
                None => {
                    let pauses = crate::pace::pauses(&mailroom.db, &message.mailbox)
                        .await
                        .unwrap_or(0);
                    crate::pace::backoff(pauses)
                }
            };
            let at = later(wait);
            let reason = format!(
                "{error}; sending from {} paused until {}",
                message.mailbox,
                at.format("%Y-%m-%d %H:%M:%S UTC")
            );
            pause = Some((at, reason.clone()));
            let text = if unknown_before {
                format!("{DELIVERY_UNKNOWN_MARK} (earlier) {reason}")
            } else {
                reason
            };
            (
                Finish::Held {
                    error: text.clone(),
                    at,
                },
                AgentEvent::Held { id, error: text },
            )
        }
        Err(error) if error.is_delivery_unknown() => {
            let text = error.to_string();
            if unknown_before {
                let text = format!(
                    "{DELIVERY_UNKNOWN_MARK} {text}; the outcome was unknown twice, so mailroom does not try again: ask the recipients whether message {} arrived",
                    message.message_id
                );
                (
                    Finish::Failed(text.clone()),
                    AgentEvent::Failed { id, error: text },
                )
            } else {
                let wait = mailroom.options.retry.outbox_delivery_unknown_delay;
                let text = format!(
                    "{DELIVERY_UNKNOWN_MARK} {text}; tried once more after {} s, so a duplicate with the same Message-ID {} is possible",
                    wait.as_secs(),
                    message.message_id
                );
                (
                    Finish::Retry {
                        error: text.clone(),
                        at: later(wait),
                    },
                    AgentEvent::Retrying { id, error: text },
                )
            }
        }
        Err(error) if error.is_transient() => {
            let text = error.to_string();
            // Keep the mark: a message whose delivery was unknown once is never tried after
            // a second unknown outcome.
            let text = if unknown_before {
                format!("{DELIVERY_UNKNOWN_MARK} (earlier) {text}")
            } else {
                text
            };
            match mailroom
                .options
                .retry
                .outbox_delay(message.attempts, error.retry_after())
            {
                Some(wait) => (
                    Finish::Retry {
                        error: text.clone(),
                        at: later(wait),
                    },
                    AgentEvent::Retrying { id, error: text },
                ),
                None => {
                    let text = format!("{text} (gave up after {} attempts)", message.attempts);
                    (
                        Finish::Failed(text.clone()),
                        AgentEvent::Failed { id, error: text },
                    )
                }
            }
        }
        Err(error) => {
            let text = error.to_string();
            (
                Finish::Failed(text.clone()),
                AgentEvent::Failed { id, error: text },
            )
        }
    };
    Done {
        outcome: Outcome {
            id,
            mailbox: message.mailbox.clone(),
            finish: outcome,
            pause,
        },
        event,
        message_id: message.message_id.clone(),
        finished: tokio::time::Instant::now(),
    }
}

/// The event of a finished send once its outcome was (or was not) recorded: a lost lease
/// when not.
fn recorded_event(id: i64, event: AgentEvent, message_id: &str, recorded: bool) -> AgentEvent {
    if !recorded {
        let error = match event {
            AgentEvent::Retrying { error, .. }
            | AgentEvent::Held { error, .. }
            | AgentEvent::Failed { error, .. } => error,
            _ => String::new(),
        };
        tracing::warn!(id, message_id = %message_id, error = %error, "the lease was lost: this outcome is not recorded, the agent holding the message now records its own");
        return AgentEvent::LeaseLost { id, error };
    }
    match &event {
        AgentEvent::Retrying { error, .. } => {
            tracing::warn!(id, message_id = %message_id, error = %error, "queued message will be retried")
        }
        AgentEvent::Held { error, .. } => {
            tracing::warn!(id, message_id = %message_id, error = %error, "queued message held until an administrator signs in, gives this agent the database's key, or the provider's pause on the mailbox is over")
        }
        AgentEvent::Failed { error, .. } => {
            tracing::error!(id, message_id = %message_id, error = %error, "queued message failed")
        }
        _ => {}
    }
    event
}

/// How many messages one claim keeps leased per send slot, at least: the claim's
/// statements are shared by this many rounds of sends.
const CLAIM_ROUNDS: usize = 8;

/// The most messages one agent keeps claimed (sending and waiting to be sent).
pub(crate) const MAX_CLAIM_AHEAD: usize = 1024;

/// How far ahead an agent that sends fast claims: what it delivered in this long (measured
/// over the last [`RATE_WINDOW`]). While its servers keep that pace, a message queued just
/// after a claim waits behind about this much of the agent's sending; when they slow down,
/// behind what was claimed at the faster pace (at most [`MAX_CLAIM_AHEAD`]).
const CLAIM_HORIZON: Duration = Duration::from_secs(1);

/// How long the agent's send rate is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// How many messages an agent with `concurrency` slots keeps claimed, having sent at
/// `per_second` lately: [`CLAIM_ROUNDS`] rounds of its slots, or what it sends in
/// [`CLAIM_HORIZON`] when that is more, at most [`MAX_CLAIM_AHEAD`].
fn claim_ahead(concurrency: usize, per_second: usize) -> usize {
    let horizon = (per_second as u128 * CLAIM_HORIZON.as_millis() / 1000)
        .try_into()
        .unwrap_or(usize::MAX);
    concurrency
        .saturating_mul(CLAIM_ROUNDS)
        .max(horizon)
        .clamp(1, MAX_CLAIM_AHEAD)
}

/// The agent's recent send rate: sends finished per second, over the last whole
/// [`RATE_WINDOW`].
#[derive(Debug)]
struct SendRate {
    since: tokio::time::Instant,
    count: usize,
    per_second: usize,
}

impl SendRate {
    fn new(now: tokio::time::Instant) -> Self {
        Self {
            since: now,
            count: 0,
            per_second: 0,
        }
    }

    /// Counts `finished` sends that ended at `now`.
    fn finished(&mut self, finished: usize, now: tokio::time::Instant) {
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed >= RATE_WINDOW {
            let per_second = self.count as u128 * 1000 / elapsed.as_millis().max(1);
            self.per_second = per_second.try_into().unwrap_or(usize::MAX);
            self.since = now;
            self.count = 0;
        }
        self.count = self.count.saturating_add(finished);
    }

    /// Sends per second over the last whole window; 0 when idle for longer than a window.
    fn per_second(&self, now: tokio::time::Instant) -> usize {
        if now.saturating_duration_since(self.since) >= RATE_WINDOW * 2 {
            return 0;
        }
        self.per_second
    }
}

/// How soon an agent whose claim found every mailbox held by other agents' claims tries
/// again.
const BUSY_RETRY: Duration = Duration::from_millis(20);

/// When a claim that found nothing is tried again: when other agents' claims held every
/// mailbox with due messages (`busy`), as soon as theirs are done, not after a whole poll
/// interval; when nothing was due, at the next poll.
fn claim_retry(busy: bool, poll_interval: Duration) -> Duration {
    if busy {
        BUSY_RETRY.min(poll_interval)
    } else {
        poll_interval
    }
}

/// The longest a finished send's outcome waits to be recorded with others.
const RECORD_DELAY: Duration = Duration::from_millis(250);

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A claimed message not started yet.
struct Ready {
    message: Claimed,
    /// As read when the message was claimed (at most `resolution_cache_ttl` before), so
    /// used up to that plus the wait for a slot: about a second of sending.
    account: Option<Account>,
    /// When its lease was taken or last renewed.
    leased_at: tokio::time::Instant,
}

/// At most this many finished messages are deleted per retention pass.
pub(crate) const RETENTION_BATCH: u64 = 500;

impl Agent {
    /// Deletes sent and cancelled messages older than the `outbox_retention_days`
    /// setting (0 keeps them), at most [`RETENTION_BATCH`] of them, at most once an hour
    /// per agent. Returns how many were deleted; a failure is logged, never fatal.
    async fn apply_retention(&self, last: &mut Option<chrono::DateTime<chrono::Utc>>) -> u64 {
        let now = self.mailroom.outbox().clock().now_utc();
        if last.is_some_and(|at| now - at < chrono::Duration::hours(1)) {
            return 0;
        }
        *last = Some(now);
        let settings =
            match mailroom_accounts::Accounts::new(&self.mailroom.db, &self.mailroom.options.key)
                .settings()
                .await
            {
                Ok(settings) => settings,
                Err(error) => {
                    tracing::warn!(error = %error, "cannot read the outbox retention setting");
                    return 0;
                }
            };
        if settings.outbox_retention_days == 0 {
            return 0;
        }
        let cutoff = now - chrono::Duration::days(i64::from(settings.outbox_retention_days));
        match crate::outbox::purge(
            &self.mailroom.db,
            &[OutboxStatus::Sent, OutboxStatus::Cancelled],
            cutoff,
            Some(RETENTION_BATCH),
        )
        .await
        {
            Ok(purged) => {
                if purged > 0 {
                    tracing::info!(
                        purged,
                        days = settings.outbox_retention_days,
                        "old sent and cancelled messages deleted"
                    );
                }
                purged
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot apply the outbox retention");
                0
            }
        }
    }

    /// Records the outcomes of the sends in `done` in one transaction (tried three times
    /// over about a second: a database that hiccups must not leave delivered messages to
    /// be claimed again), then reports them.
    async fn record(
        &self,
        options: &AgentOptions,
        done: &mut Vec<Done>,
        summary: &mut AgentSummary,
    ) {
        if done.is_empty() {
            return;
        }
        let outbox = self.mailroom.outbox();
        let mut outcomes = Vec::with_capacity(done.len());
        let mut reports = Vec::with_capacity(done.len());
        for finished in done.drain(..) {
            reports.push((finished.outcome.id, finished.event, finished.message_id));
            outcomes.push(finished.outcome);
        }
        let mut recorded = None;
        for wait in [100u64, 900, 0] {
            let now = outbox.clock().now_utc();
            match outbox.finish_batch(&options.owner, &outcomes, now).await {
                Ok(flags) => {
                    recorded = Some(flags);
                    break;
                }
                Err(error) => {
                    tracing::error!(error = %error, sends = outcomes.len(), "cannot record the outcomes of finished sends");
                    if wait > 0 {
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                    }
                }
            }
        }
        let Some(flags) = recorded else {
            tracing::error!(
                sends = outcomes.len(),
                "the outcomes were not recorded: the leases run out and these messages are claimed again"
            );
            return;
        };
        for ((id, event, message_id), recorded) in reports.into_iter().zip(flags) {
            let event = recorded_event(id, event, &message_id, recorded);
            match &event {
                AgentEvent::Sent { .. } => summary.sent += 1,
                AgentEvent::Retrying { .. } => summary.retrying += 1,
                AgentEvent::Held { .. } => summary.held += 1,
                AgentEvent::Failed { .. } => summary.failed += 1,
                AgentEvent::LeaseLost { .. } => summary.lease_lost += 1,
                AgentEvent::LeaseRenewed { .. } => {}
            }
            options.emit(&event);
        }
    }

    /// Starts claimed messages while slots are free. Messages that waited a heartbeat or
    /// longer since their lease was taken have it renewed first, all in one statement,
    /// also while every slot is busy (each renewal is reported as a
    /// [`AgentEvent::LeaseRenewed`]); one whose lease was lost (it ran out and another
    /// agent claimed the message) is left to that agent.
    async fn start_ready(
        &self,
        options: &Arc<AgentOptions>,
        ready: &mut VecDeque<Ready>,
        tasks: &mut JoinSet<Done>,
        heartbeat: Duration,
        summary: &mut AgentSummary,
    ) {
        let concurrency = options.concurrency.max(1);
        // Not only when a slot is free: the loop wakes for a waiting message's renewal
        // while every slot is busy, and would wake again at once, and again, until a send
        // ended, were the renewal left for then.
        if ready.is_empty() {
            return;
        }
        let stale = ready
            .front()
            .is_some_and(|first| first.leased_at.elapsed() >= heartbeat);
        if stale {
            let ids: Vec<i64> = ready.iter().map(|waiting| waiting.message.id).collect();
            let renewed_at = tokio::time::Instant::now();
            match self
                .mailroom
                .outbox()
                .renew_many(&ids, &options.owner, options.lease)
                .await
            {
                Ok((until, kept)) => {
                    let kept: HashSet<i64> = kept.into_iter().collect();
                    let mut still = VecDeque::with_capacity(kept.len());
                    for mut waiting in ready.drain(..) {
                        let id = waiting.message.id;
                        if kept.contains(&id) {
                            waiting.leased_at = renewed_at;
                            still.push_back(waiting);
                            options.emit(&AgentEvent::LeaseRenewed { id, until });
                        } else {
                            let error = "the lease ran out before the send started; the agent holding the message now sends it".to_owned();
                            tracing::warn!(id, message_id = %waiting.message.message_id, "{error}");
                            summary.lease_lost += 1;
                            options.emit(&AgentEvent::LeaseLost { id, error });
                        }
                    }
                    *ready = still;
                }
                Err(error) => {
                    // Not sent with a lease that may run out: left to run out, and claimed
                    // again (by this agent or another).
                    tracing::warn!(error = %error, messages = ids.len(), "cannot renew the leases of claimed messages; they are claimed again when their leases run out");
                    ready.clear();
                }
            }
        }
        while tasks.len() < concurrency {
            let Some(waiting) = ready.pop_front() else {
                break;
            };
            tasks.spawn(process(
                self.mailroom.clone(),
                options.clone(),
                waiting.message,
                waiting.account,
            ));
        }
    }

    /// Puts back what was claimed and not started (the agent stops): queued again, the
    /// attempt taken back, for any agent to claim at once.
    async fn release_ready(&self, options: &AgentOptions, ready: &mut VecDeque<Ready>) {
        if ready.is_empty() {
            return;
        }
        let ids: Vec<i64> = ready.drain(..).map(|waiting| waiting.message.id).collect();
        match self.mailroom.outbox().release(&options.owner, &ids).await {
            Ok(released) => {
                tracing::info!(released, "claimed messages not started are queued again");
            }
            Err(error) => {
                tracing::warn!(error = %error, messages = ids.len(), "cannot put back claimed messages; they are claimed again when their leases run out");
            }
        }
    }

    /// Puts back the messages of `mailbox` (which the provider paused) that were claimed
    /// and not started: they wait with the rest of its queue instead of being sent into
    /// the pause.
    async fn release_mailbox(
        &self,
        options: &AgentOptions,
        ready: &mut VecDeque<Ready>,
        mailbox: &str,
    ) {
        let (mut paused, kept): (VecDeque<Ready>, VecDeque<Ready>) = ready
            .drain(..)
            .partition(|waiting| waiting.message.mailbox == mailbox);
        *ready = kept;
        self.release_ready(options, &mut paused).await;
    }

    /// Gives a mailbox's pace row its account's limits as read with the claim, when this
    /// agent has not already. Saving an account updates its mailboxes' rows itself; this
    /// covers a row that missed it (the account was changed by a program that does not,
    /// such as an earlier version). A failure is logged: the row keeps the limits it had.
    async fn sync_limits(
        &self,
        synced: &mut HashMap<String, mailroom_model::MailboxLimits>,
        mailbox: &str,
        account: &Account,
    ) {
        let limits = account.server().mailbox_limits();
        if synced.get(mailbox) == Some(&limits) {
            return;
        }
        let now = self.mailroom.outbox().clock().now_utc();
        match crate::pace::ensure(&self.mailroom.db, mailbox, &limits, now).await {
            Ok(()) => {
                synced.insert(mailbox.to_owned(), limits);
            }
            Err(error) => {
                tracing::warn!(error = %error, mailbox, "cannot update the mailbox's limits");
            }
        }
    }

    /// An agent sending through `mailroom`.
    pub fn new(mailroom: Arc<Mailroom>, options: AgentOptions) -> Self {
        Self { mailroom, options }
    }

    /// Runs until `shutdown` completes (or, with [`AgentOptions::once`], until nothing is
    /// due). After `shutdown`, nothing new is claimed and the sends in flight finish.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<AgentSummary> {
        if self.options.lease < MIN_LEASE {
            return Err(crate::Error::LeaseTooShort {
                lease: self.options.lease,
                minimum: MIN_LEASE,
            });
        }
        let options = Arc::new(self.options.clone());
        let concurrency = options.concurrency.max(1);
        // One claim fills the free slots and several rounds ahead of them: its statements
        // are shared by that many sends. What is claimed and not started yet waits in
        // `ready`, its leases renewed when it waits longer than a heartbeat, and is put
        // back when the agent stops.
        let mut rate = SendRate::new(tokio::time::Instant::now());
        let mut claim_after: Option<tokio::time::Instant> = None;
        let heartbeat = options.heartbeat_interval();
        let outbox = self.mailroom.outbox();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut stopping = false;
        let mut tasks: JoinSet<Done> = JoinSet::new();
        let mut ready: VecDeque<Ready> = VecDeque::new();
        // Sends that ended, recorded together: before each claim, when half a claim's worth
        // is done, at most `RECORD_DELAY` after the first of them, and when nothing is in
        // flight.
        let mut done: Vec<Done> = Vec::new();
        let mut claim_size = claim_ahead(concurrency, 0);
        let mut summary = AgentSummary::default();
        // The limits each mailbox's row was last given by this agent.
        let mut synced: HashMap<String, mailroom_model::MailboxLimits> = HashMap::new();
        // The accounts of claimed messages, as read and when.
        let mut accounts: HashMap<AccountRef, (std::time::Instant, Account)> = HashMap::new();
        let started = outbox.now().await?;
        let mut last_purge: Option<chrono::DateTime<chrono::Utc>> = None;
        tracing::info!(owner = %options.owner, concurrency, claim_ahead = claim_size, once = options.once, "agent started");
        loop {
            let mut claimed_now = 0;
            let mut busy = false;
            if !stopping {
                summary.purged += self.apply_retention(&mut last_purge).await;
            }
            // A claim that found nothing is not tried again at each send that ends while
            // others are in flight: only once `claim_after` has passed (or nothing is in
            // flight, when the idle wait below applies).
            let may_claim =
                tasks.is_empty() || claim_after.is_none_or(|at| tokio::time::Instant::now() >= at);
            if !stopping && ready.len() < concurrency && may_claim {
                claim_after = None;
                self.record(&options, &mut done, &mut summary).await;
                // Deeper when this agent sends fast: the claim's statements are then shared
                // by more sends, and what waits behind it is still about a second's worth.
                claim_size = claim_ahead(concurrency, rate.per_second(tokio::time::Instant::now()));
                let free = claim_size.saturating_sub(ready.len() + tasks.len());
                // A run with `once` drains what was due when it started: a message it held
                // or rescheduled is not due again in the same run.
                let due_by = options.once.then_some(started);
                let claimed = outbox
                    .claim(&options.owner, free as u64, options.lease, due_by)
                    .await;
                match claimed {
                    Ok(claim) => {
                        busy = claim.busy;
                        let batch = claim.messages;
                        claimed_now = batch.len();
                        if claimed_now == 0 {
                            claim_after = Some(
                                tokio::time::Instant::now()
                                    + claim_retry(busy, options.poll_interval),
                            );
                        }
                        // The accounts are read once per `resolution_cache_ttl` (as sends
                        // resolve theirs), all of a claim's in one query, not per message;
                        // an account that cannot be read is left to its messages' sends,
                        // which record the error.
                        let ttl = self.mailroom.options.resolution_cache_ttl;
                        let stale: HashSet<AccountRef> = batch
                            .iter()
                            .map(|message| message.account)
                            .filter(|account| {
                                accounts
                                    .get(account)
                                    .is_none_or(|(read, _)| read.elapsed() >= ttl)
                            })
                            .collect();
                        if !stale.is_empty() {
                            accounts.retain(|account, _| !stale.contains(account));
                            let stale: Vec<AccountRef> = stale.into_iter().collect();
                            match self.mailroom.accounts(&stale).await {
                                Ok(read) => {
                                    let at = std::time::Instant::now();
                                    for (account, result) in read {
                                        if let Ok(loaded) = result {
                                            accounts.insert(account, (at, loaded));
                                        }
                                    }
                                }
                                Err(error) => {
                                    tracing::warn!(error = %error, "cannot read the accounts of claimed messages; each send reads its own");
                                }
                            }
                        }
                        let now = tokio::time::Instant::now();
                        for message in batch {
                            let account = accounts
                                .get(&message.account)
                                .map(|(_, account)| account.clone());
                            if let Some(account) = &account {
                                self.sync_limits(&mut synced, &message.mailbox, account)
                                    .await;
                            }
                            ready.push_back(Ready {
                                message,
                                account,
                                leased_at: now,
                            });
                        }
                    }
                    Err(error) if options.once => {
                        self.release_ready(&options, &mut ready).await;
                        return Err(error);
                    }
                    Err(error) => {
                        tracing::error!(error = %error, "cannot claim queued messages; trying again");
                    }
                }
            }
            if stopping {
                self.release_ready(&options, &mut ready).await;
            } else {
                self.start_ready(&options, &mut ready, &mut tasks, heartbeat, &mut summary)
                    .await;
            }
            if tasks.is_empty() && ready.is_empty() {
                self.record(&options, &mut done, &mut summary).await;
                if stopping || (options.once && claimed_now == 0 && !busy) {
                    break;
                }
                if claimed_now == 0 {
                    tokio::select! {
                        () = &mut shutdown => stopping = true,
                        () = tokio::time::sleep(claim_retry(busy, options.poll_interval)) => {}
                    }
                }
                continue;
            }
            if tasks.is_empty() {
                continue;
            }
            let record_by = done.first().map(|first| first.finished + RECORD_DELAY);
            // The leases of messages waiting for a slot are renewed a heartbeat after they
            // were taken, as those being sent are.
            let renew_by = ready.front().map(|first| first.leased_at + heartbeat);
            // A claim that found nothing is tried again at `claim_after`, even while a long
            // send is still in flight.
            let claim_by = claim_after.filter(|_| !stopping && ready.len() < concurrency);
            tokio::select! {
                () = sleep_until(renew_by), if renew_by.is_some() => {}
                () = sleep_until(claim_by), if claim_by.is_some() => {}
                () = &mut shutdown, if !stopping => {
                    stopping = true;
                    tracing::info!(in_flight = tasks.len(), "stopping: the sends in flight finish, nothing new is claimed");
                }
                () = sleep_until(record_by), if record_by.is_some() => {
                    self.record(&options, &mut done, &mut summary).await;
                }
                Some(joined) = tasks.join_next() => {
                    match joined {
                        Ok(finished) => {
                            // Only deliveries set the pace: a burst of holds or failures
                            // (which end at once) must not deepen the next claim.
                            let sent = usize::from(matches!(finished.event, AgentEvent::Sent { .. }));
                            rate.finished(sent, finished.finished);
                            let paused = finished
                                .outcome
                                .pause
                                .is_some()
                                .then(|| finished.outcome.mailbox.clone());
                            done.push(finished);
                            if let Some(mailbox) = paused {
                                // The pause is recorded before its messages go back.
                                self.record(&options, &mut done, &mut summary).await;
                                self.release_mailbox(&options, &mut ready, &mailbox).await;
                            }
                        }
                        // The outcome is lost with the task: the lease runs out and the
                        // message is claimed again (at least once).
                        Err(error) => tracing::error!(error = %error, "a send task failed"),
                    }
                    if done.len() >= claim_size.div_ceil(2) {
                        self.record(&options, &mut done, &mut summary).await;
                    }
                }
            }
        }
        self.record(&options, &mut done, &mut summary).await;
        tracing::info!(
            sent = summary.sent,
            retrying = summary.retrying,
            held = summary.held,
            failed = summary.failed,
            "agent stopped"
        );
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_but_a_heartbeat_ends_a_message_claim() {
        let error = || "why".to_owned();
        for finished in [
            AgentEvent::Retrying {
                id: 1,
                error: error(),
            },
            AgentEvent::Held {
                id: 1,
                error: error(),
            },
            AgentEvent::Failed {
                id: 1,
                error: error(),
            },
            AgentEvent::LeaseLost {
                id: 1,
                error: error(),
            },
        ] {
            assert!(finished.is_finished(), "{finished:?}");
        }
        let heartbeat = AgentEvent::LeaseRenewed {
            id: 1,
            until: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
        };
        assert!(!heartbeat.is_finished());
    }

    #[test]
    fn the_heartbeat_is_the_one_given_at_most_a_third_of_the_lease() {
        let options = |heartbeat| AgentOptions {
            lease: Duration::from_secs(30),
            heartbeat,
            ..AgentOptions::default()
        };
        assert_eq!(options(None).heartbeat_interval(), Duration::from_secs(10));
        assert_eq!(
            options(Some(Duration::from_secs(4))).heartbeat_interval(),
            Duration::from_secs(4)
        );
        assert_eq!(
            options(Some(Duration::from_secs(20))).heartbeat_interval(),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn options_debug_shows_the_settings_and_only_whether_events_are_taken() {
        let options = AgentOptions {
            owner: "agent-7".to_owned(),
            events: Some(Arc::new(|_: &AgentEvent| {})),
            ..AgentOptions::default()
        };
        let shown = format!("{options:?}");
        assert!(shown.starts_with("AgentOptions {"), "{shown}");
        for part in [
            "concurrency: 4",
            "owner: \"agent-7\"",
            "lease: 300s",
            "events: true",
        ] {
            assert!(shown.contains(part), "{part} in {shown}");
        }
    }

    #[test]
    fn a_claim_that_found_every_mailbox_busy_is_tried_again_sooner_than_an_empty_one() {
        let poll = Duration::from_secs(5);
        assert_eq!(claim_retry(false, poll), poll);
        assert_eq!(claim_retry(true, poll), BUSY_RETRY);
        assert_eq!(
            claim_retry(true, Duration::from_millis(5)),
            Duration::from_millis(5),
            "never later than the poll"
        );
    }

    #[test]
    fn an_outcome_not_recorded_is_a_lost_lease_with_the_same_error() {
        let retrying = || AgentEvent::Retrying {
            id: 7,
            error: "451 try later".to_owned(),
        };
        match recorded_event(7, retrying(), "<m@example.com>", false) {
            AgentEvent::LeaseLost { id, error } => {
                assert_eq!((id, error.as_str()), (7, "451 try later"));
            }
            other => panic!("{other:?}"),
        }
        let failed = AgentEvent::Failed {
            id: 7,
            error: "550 no such user".to_owned(),
        };
        match recorded_event(7, failed, "<m@example.com>", false) {
            AgentEvent::LeaseLost { error, .. } => assert_eq!(error, "550 no such user"),
            other => panic!("{other:?}"),
        }
        match recorded_event(7, retrying(), "<m@example.com>", true) {
            AgentEvent::Retrying { id, error } => {
                assert_eq!((id, error.as_str()), (7, "451 try later"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_claim_takes_eight_rounds_of_the_slots_or_a_seconds_sends_within_bounds() {
        assert_eq!(claim_ahead(0, 0), 1);
        assert_eq!(claim_ahead(1, 0), 8);
        assert_eq!(claim_ahead(4, 0), 32);
        // A second's worth of sends, when that is more than eight rounds.
        assert_eq!(claim_ahead(4, 31), 32);
        assert_eq!(claim_ahead(4, 33), 33);
        assert_eq!(claim_ahead(4, 600), 600);
        assert_eq!(claim_ahead(4, 1024), MAX_CLAIM_AHEAD);
        assert_eq!(claim_ahead(4, 1025), MAX_CLAIM_AHEAD);
        assert_eq!(claim_ahead(4, usize::MAX), MAX_CLAIM_AHEAD);
        assert_eq!(claim_ahead(128, 0), MAX_CLAIM_AHEAD);
        assert_eq!(claim_ahead(usize::MAX, 0), MAX_CLAIM_AHEAD);
    }

    #[test]
    fn the_send_rate_is_what_finished_over_the_last_whole_window() {
        let start = tokio::time::Instant::now();
        let at = |millis: u64| start + Duration::from_millis(millis);
        let mut rate = SendRate::new(start);
        assert_eq!(rate.per_second(start), 0);
        rate.finished(1, at(100));
        rate.finished(299, at(900));
        // The first window is not over yet.
        assert_eq!(rate.per_second(at(999)), 0);
        // It ends with the first send after it: 300 in 1 s.
        rate.finished(1, at(1000));
        assert_eq!(rate.per_second(at(1000)), 300);
        // 100 more over the next 2 s: 50 a second, measured over the whole wait.
        rate.finished(99, at(1500));
        rate.finished(1, at(3000));
        assert_eq!(rate.per_second(at(3000)), 50);
        // Idle for two windows: the rate is forgotten.
        assert_eq!(rate.per_second(at(4999)), 50);
        assert_eq!(rate.per_second(at(5000)), 0);
    }
}
