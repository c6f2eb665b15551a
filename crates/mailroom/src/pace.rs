//! Pacing per mailbox, enforced through the database for every process that sends from
//! it (agents on several hosts, `send` in the host application): never in one process's
//! memory.
//!
//! Each mailbox (the lower-cased sending address) has a `mailbox_pace` row, read and
//! written in one write transaction (on PostgreSQL the row is locked with `FOR UPDATE`,
//! and a claim skips the rows another claim holds; SQLite's `BEGIN IMMEDIATE` serialises
//! writers):
//! - **per minute**: the sends of the rolling minute, counted per second (at most 60
//!   pairs, whatever the rate). A mailbox at its rate waits until its oldest second
//!   leaves the window (`next_send_at`, which the claim's query skips on).
//! - **per day**: what it sent per minute in `mailbox_usage` (recipients or messages, as
//!   the provider counts), summed over the rolling 24 hours. Reached: the mailbox's
//!   waiting messages are held with "daily limit of N for ADDRESS reached; resumes at
//!   TIME" until the oldest minute that makes room leaves the window.
//! - **at once**: messages of the mailbox leased to agents and not run out.
//! - **a pause**: a provider's throttling reply (Exchange's quota or "sender throttled",
//!   Graph's 429, Gmail's rate limits) pauses the whole mailbox for its `Retry-After`, or
//!   for a backoff doubling with each pause in a row (30 s to an hour), while other
//!   mailboxes keep sending.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use mailroom_model::{AccountRef, DailyUnit, MailboxLimits};
use sea_orm::{ConnectionTrait, DatabaseBackend, QueryResult, Statement, Value};

use crate::{Error, Result};

/// The rolling window of the per-minute limit, in seconds.
const MINUTE: i64 = 60;

/// The rolling window of the daily limit, in minutes.
const DAY_MINUTES: i64 = 24 * 60;

/// The first wait of a throttled mailbox whose provider named none; doubled for each
/// pause in a row, at most [`MAX_BACKOFF`].
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_secs(30);

/// The longest backoff of a throttled mailbox.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// SQL written with PostgreSQL's `$n` placeholders, for the connection's backend (SQLite
/// takes `?n`).
pub(crate) fn sql(backend: DatabaseBackend, text: &str) -> String {
    match backend {
        DatabaseBackend::Sqlite => text.replace('$', "?"),
        _ => text.to_owned(),
    }
}

pub(crate) fn statement(
    backend: DatabaseBackend,
    text: &str,
    values: impl IntoIterator<Item = Value>,
) -> Statement {
    Statement::from_sql_and_values(backend, sql(backend, text), values)
}

/// `FOR UPDATE` (and `SKIP LOCKED`) where the backend has row locks; nothing on SQLite,
/// whose write transaction is the lock.
pub(crate) fn lock_clause(backend: DatabaseBackend, clause: &str) -> &str {
    match backend {
        DatabaseBackend::Postgres => clause,
        _ => "",
    }
}

/// `values` padded to the next power of two by repeating the last one, for an `IN` list:
/// the statement's text then takes one of a few shapes, which the driver keeps prepared
/// (PostgreSQL prepares each new text in a round trip of its own, and a text per length
/// would crowd the other statements out of the cache). A value repeated in an `IN` list
/// changes nothing.
pub(crate) fn padded<T: Clone>(mut values: Vec<T>) -> Vec<T> {
    if let Some(last) = values.last().cloned() {
        values.resize(values.len().next_power_of_two(), last);
    }
    values
}

/// `$start, $start+1, ...` for `count` values.
pub(crate) fn placeholders(start: usize, count: usize) -> String {
    use std::fmt::Write as _;
    let mut list = String::with_capacity(count * 6);
    for n in start..start + count {
        if n > start {
            list.push_str(", ");
        }
        let _ = write!(list, "${n}");
    }
    list
}

pub(crate) fn unix_second(time: DateTime<Utc>) -> i64 {
    time.timestamp()
}

/// The second a send at `time` is counted at: rounded up, so that it leaves the rolling
/// minute no sooner than a full minute after it started.
pub(crate) fn counted_second(time: DateTime<Utc>) -> i64 {
    if time.timestamp_subsec_nanos() > 0 {
        time.timestamp() + 1
    } else {
        time.timestamp()
    }
}

fn at_second(second: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(second, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn minute_of(time: DateTime<Utc>) -> i64 {
    time.timestamp().div_euclid(MINUTE)
}

/// The last minute before the rolling 24 hours ending at `now`: usage of later minutes
/// counts against the daily limit.
pub(crate) fn day_start(now: DateTime<Utc>) -> i64 {
    minute_of(now) - DAY_MINUTES
}

/// The sends of the rolling minute, per second, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Window(Vec<(i64, u32)>);

impl Window {
    /// The stored form; an unreadable value (written by hand) is an empty window, and is
    /// logged.
    pub(crate) fn parse(text: Option<&str>) -> Self {
        let Some(text) = text else {
            return Self::default();
        };
        match serde_json::from_str::<Vec<(i64, u32)>>(text) {
            Ok(mut pairs) => {
                // A minute holds at most 60 seconds; a longer list (written by hand) is
                // cut to the newest twice that, which count the most sends.
                pairs.sort_unstable();
                let excess = pairs.len().saturating_sub(MINUTE as usize * 2);
                pairs.drain(..excess);
                Self(pairs)
            }
            Err(error) => {
                tracing::warn!(error = %error, "a mailbox's per-minute window is unreadable; counting from zero");
                Self::default()
            }
        }
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(&self.0).expect("pairs of numbers serialize")
    }

    /// Forgets the seconds that left the minute ending at `now`.
    pub(crate) fn prune(&mut self, now: i64) {
        self.0.retain(|(second, _)| *second > now - MINUTE);
    }

    /// Sends in the window.
    pub(crate) fn count(&self) -> u64 {
        self.0.iter().map(|(_, count)| u64::from(*count)).sum()
    }

    /// Records `count` sends at second `now`.
    pub(crate) fn add(&mut self, now: i64, count: u32) {
        match self.0.last_mut() {
            Some((second, sent)) if *second == now => *sent = sent.saturating_add(count),
            _ => self.0.push((now, count)),
        }
    }

    /// How many more may start now under `per_minute`.
    pub(crate) fn room(&self, per_minute: u32) -> u64 {
        u64::from(per_minute).saturating_sub(self.count())
    }

    /// The second from which one more may start: now when there is room, else when
    /// enough of the oldest seconds have left the window.
    pub(crate) fn next_room(&self, per_minute: u32, now: i64) -> i64 {
        let mut count = self.count();
        if count < u64::from(per_minute) {
            return now;
        }
        for (second, sent) in &self.0 {
            count -= u64::from(*sent);
            if count < u64::from(per_minute) {
                return second + MINUTE;
            }
        }
        now
    }
}

/// A mailbox's pace row, as a claim or a direct send reads it.
#[derive(Debug, Clone)]
pub(crate) struct PaceRow {
    pub(crate) mailbox: String,
    pub(crate) limits: MailboxLimits,
    pub(crate) window: Window,
    /// Units sent in the rolling 24 hours.
    pub(crate) used: u64,
    /// Messages leased to agents now.
    pub(crate) in_flight: u64,
}

impl PaceRow {
    /// How many messages may start now (before the daily limit, which depends on each
    /// message's units).
    pub(crate) fn allowance(&self) -> u64 {
        let mut allowed = u64::MAX;
        if let Some(rate) = self.limits.per_minute {
            allowed = allowed.min(self.window.room(rate));
        }
        if let Some(concurrent) = self.limits.concurrent {
            allowed = allowed.min(u64::from(concurrent).saturating_sub(self.in_flight));
        }
        allowed
    }
}

fn limit_value(limit: Option<u32>) -> Value {
    limit.map(|value| value.min(i32::MAX as u32) as i32).into()
}

pub(crate) fn read_limit(row: &QueryResult, index: usize) -> Result<Option<u32>> {
    let value: Option<i32> = row.try_get_by_index(index)?;
    Ok(value.map(|value| value.max(0) as u32))
}

pub(crate) fn read_unit(text: &str) -> DailyUnit {
    match text {
        "recipients" => DailyUnit::Recipients,
        _ => DailyUnit::Messages,
    }
}

/// Makes (or updates) the pace row of `mailbox` with its limits as configured now. A row
/// whose limits are unchanged is not written.
pub(crate) async fn ensure<C: ConnectionTrait>(
    db: &C,
    mailbox: &str,
    limits: &MailboxLimits,
    now: DateTime<Utc>,
) -> Result<()> {
    let backend = db.get_database_backend();
    db.execute(statement(
        backend,
        "INSERT INTO mailbox_pace (mailbox, per_minute, daily, daily_unit, concurrent, next_send_at, pauses, last_claim_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, 0, $6, $7)
         ON CONFLICT (mailbox) DO UPDATE SET per_minute = excluded.per_minute, daily = excluded.daily,
             daily_unit = excluded.daily_unit, concurrent = excluded.concurrent, updated_at = excluded.updated_at
         WHERE mailbox_pace.per_minute IS DISTINCT FROM excluded.per_minute
            OR mailbox_pace.daily IS DISTINCT FROM excluded.daily
            OR mailbox_pace.daily_unit IS DISTINCT FROM excluded.daily_unit
            OR mailbox_pace.concurrent IS DISTINCT FROM excluded.concurrent",
        [
            mailbox.into(),
            limit_value(limits.per_minute),
            limit_value(limits.daily),
            limits.daily_unit.as_str().into(),
            limit_value(limits.concurrent),
            // A new row is free from the start, and first in the round robin.
            DateTime::<Utc>::UNIX_EPOCH.into(),
            now.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// The pause on `mailbox` at `now`, if any: until when, and why.
pub(crate) async fn paused<C: ConnectionTrait>(
    db: &C,
    mailbox: &str,
    now: DateTime<Utc>,
) -> Result<Option<(DateTime<Utc>, String)>> {
    let backend = db.get_database_backend();
    let row = db
        .query_one(statement(
            backend,
            "SELECT paused_until, pause_reason FROM mailbox_pace WHERE mailbox = $1 AND paused_until > $2",
            [mailbox.into(), now.into()],
        ))
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let until: DateTime<Utc> = row.try_get_by_index(0)?;
    let reason: Option<String> = row.try_get_by_index(1)?;
    Ok(Some((
        until,
        reason.unwrap_or_else(|| "the provider throttled the mailbox".to_owned()),
    )))
}

/// Pauses `mailbox` until `until` (a later pause already set stands), with `reason`;
/// counts a pause in a row.
pub(crate) async fn pause<C: ConnectionTrait>(
    db: &C,
    mailbox: &str,
    until: DateTime<Utc>,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let backend = db.get_database_backend();
    db.execute(statement(
        backend,
        "UPDATE mailbox_pace SET
             paused_until = CASE WHEN paused_until IS NOT NULL AND paused_until > $2 THEN paused_until ELSE $2 END,
             pause_reason = $3, pauses = pauses + 1, updated_at = $4
         WHERE mailbox = $1",
        [
            mailbox.into(),
            until.into(),
            reason.into(),
            now.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// How many pauses in a row `mailbox` had (the backoff's exponent).
pub(crate) async fn pauses<C: ConnectionTrait>(db: &C, mailbox: &str) -> Result<u32> {
    let backend = db.get_database_backend();
    let row = db
        .query_one(statement(
            backend,
            "SELECT pauses FROM mailbox_pace WHERE mailbox = $1",
            [mailbox.into()],
        ))
        .await?;
    Ok(match row {
        Some(row) => row.try_get_by_index::<i32>(0)?.max(0) as u32,
        None => 0,
    })
}

/// The backoff after `pauses` pauses in a row: 30 s doubled each time, at most an hour.
pub(crate) fn backoff(pauses: u32) -> Duration {
    let factor = 2u32.saturating_pow(pauses.min(31));
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// Ends the run of pauses of mailboxes that delivered again.
pub(crate) async fn delivered<C: ConnectionTrait>(db: &C, mailboxes: &[String]) -> Result<()> {
    if mailboxes.is_empty() {
        return Ok(());
    }
    let backend = db.get_database_backend();
    let mailboxes = padded(mailboxes.iter().map(String::as_str).collect());
    let text = format!(
        "UPDATE mailbox_pace SET pauses = 0 WHERE pauses > 0 AND mailbox IN ({})",
        placeholders(1, mailboxes.len())
    );
    db.execute(statement(
        backend,
        &text,
        mailboxes.iter().map(|mailbox| Value::from(*mailbox)),
    ))
    .await?;
    Ok(())
}

/// Gives the pace rows of `account`'s mailboxes the limits its settings now give
/// (`limits`), in `db` (the transaction that changed them): the mailbox of its sending
/// address (`sender`) and those of its messages still to send. The next claim then applies
/// a changed `--rate` or `--daily`, not the limits the rows had when they were queued.
pub(crate) async fn account_changed<C: ConnectionTrait>(
    db: &C,
    account: AccountRef,
    sender: &str,
    limits: &MailboxLimits,
    now: DateTime<Utc>,
) -> Result<()> {
    let backend = db.get_database_backend();
    let open = "status IN ('queued', 'held', 'sending')";
    let query = match account {
        AccountRef::Company => statement(
            backend,
            &format!(
                "SELECT DISTINCT mailbox FROM outbox_message WHERE account_kind = 'company' AND {open}"
            ),
            [],
        ),
        AccountRef::User(id) => statement(
            backend,
            &format!(
                "SELECT DISTINCT mailbox FROM outbox_message WHERE account_kind = 'user' AND account_id = $1 AND {open}"
            ),
            [id.into()],
        ),
    };
    let mut mailboxes = db
        .query_all(query)
        .await?
        .iter()
        .map(|row| row.try_get_by_index::<String>(0))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    mailboxes.push(mailroom_model::mailbox_key(sender));
    mailboxes.sort();
    mailboxes.dedup();
    for mailbox in mailboxes.iter().filter(|mailbox| !mailbox.is_empty()) {
        ensure(db, mailbox, limits, now).await?;
    }
    Ok(())
}

/// Units sent by `mailbox` in the 24 hours before `now`.
async fn used<C: ConnectionTrait>(db: &C, mailbox: &str, now: DateTime<Utc>) -> Result<u64> {
    let backend = db.get_database_backend();
    let row = db
        .query_one(statement(
            backend,
            "SELECT CAST(COALESCE(SUM(units), 0) AS BIGINT) FROM mailbox_usage WHERE mailbox = $1 AND minute > $2",
            [mailbox.into(), day_start(now).into()],
        ))
        .await?;
    Ok(match row {
        Some(row) => row.try_get_by_index::<i64>(0)?.max(0) as u64,
        None => 0,
    })
}

/// When `mailbox`, having used `used` units of `daily`, can send `units` more: when enough
/// of its oldest minutes have left the rolling 24 hours.
pub(crate) async fn daily_resume<C: ConnectionTrait>(
    db: &C,
    mailbox: &str,
    daily: u32,
    used: u64,
    units: u32,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>> {
    let backend = db.get_database_backend();
    let rows = db
        .query_all(statement(
            backend,
            "SELECT minute, units FROM mailbox_usage WHERE mailbox = $1 AND minute > $2 ORDER BY minute",
            [mailbox.into(), day_start(now).into()],
        ))
        .await?;
    let mut left = used;
    for row in rows {
        let minute: i64 = row.try_get_by_index(0)?;
        let sent: i32 = row.try_get_by_index(1)?;
        left = left.saturating_sub(sent.max(0) as u64);
        if left + u64::from(units) <= u64::from(daily) {
            return Ok(at_second((minute + DAY_MINUTES) * MINUTE));
        }
    }
    Ok(now + chrono::Duration::minutes(DAY_MINUTES))
}

/// Records what mailboxes sent at `now` (units per mailbox), and forgets their minutes
/// older than a day.
pub(crate) async fn record_usage<C: ConnectionTrait>(
    db: &C,
    sent: &[(String, u64)],
    now: DateTime<Utc>,
) -> Result<()> {
    if sent.is_empty() {
        return Ok(());
    }
    let backend = db.get_database_backend();
    let minute = minute_of(now);
    for (mailbox, units) in sent {
        db.execute(statement(
            backend,
            "INSERT INTO mailbox_usage (mailbox, minute, units) VALUES ($1, $2, $3)
             ON CONFLICT (mailbox, minute) DO UPDATE SET units = mailbox_usage.units + excluded.units",
            [
                mailbox.as_str().into(),
                minute.into(),
                ((*units).min(i32::MAX as u64) as i32).into(),
            ],
        ))
        .await?;
    }
    let mailboxes = padded(sent.iter().map(|(mailbox, _)| mailbox.as_str()).collect());
    let text = format!(
        "DELETE FROM mailbox_usage WHERE minute <= $1 AND mailbox IN ({})",
        placeholders(2, mailboxes.len())
    );
    let mut values: Vec<Value> = vec![(minute - DAY_MINUTES).into()];
    values.extend(mailboxes.iter().map(|mailbox| Value::from(*mailbox)));
    db.execute(statement(backend, &text, values)).await?;
    Ok(())
}

/// The text a message held for its mailbox's daily limit carries.
pub(crate) fn daily_limit_text(
    daily: u32,
    unit: DailyUnit,
    mailbox: &str,
    resumes: DateTime<Utc>,
) -> String {
    format!(
        "daily limit of {daily} {unit} for {mailbox} reached; resumes at {}",
        resumes.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

/// Why a message of `units` never fits `mailbox`'s daily limit of `daily`: a direct send's
/// error, and a queued message's failure.
pub(crate) fn over_daily_limit_text(
    units: u32,
    unit: DailyUnit,
    mailbox: &str,
    daily: u32,
) -> String {
    format!(
        "the message has {units} {unit} and {mailbox} sends at most {daily} a day: split it into smaller messages, or raise the account's daily limit"
    )
}

/// What a direct send may do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Permit {
    /// Send; the send is counted.
    Go,
    /// The per-minute limit is reached until then.
    Wait(DateTime<Utc>),
    /// The mailbox is paused (a provider's throttling, or its daily limit) until then.
    Paused {
        until: DateTime<Utc>,
        reason: String,
    },
}

/// Counts one direct send of `units` from `mailbox` under `limits` at `now`, or says why
/// not and until when. One write transaction, the pace row locked.
pub(crate) async fn acquire(
    db: &sea_orm::DatabaseConnection,
    mailbox: &str,
    limits: &MailboxLimits,
    units: u32,
    now: DateTime<Utc>,
) -> Result<Permit> {
    let transaction = mailroom_migrations::begin_write(db).await?;
    ensure(&transaction, mailbox, limits, now).await?;
    let backend = transaction.get_database_backend();
    let row = transaction
        .query_one(statement(
            backend,
            &format!(
                "SELECT recent_sends, paused_until, pause_reason FROM mailbox_pace WHERE mailbox = $1 {}",
                lock_clause(backend, "FOR UPDATE")
            ),
            [mailbox.into()],
        ))
        .await?
        .ok_or_else(|| Error::Database(Box::new(sea_orm::DbErr::RecordNotFound(mailbox.to_owned()))))?;
    let recent: Option<String> = row.try_get_by_index(0)?;
    let paused_until: Option<DateTime<Utc>> = row.try_get_by_index(1)?;
    let reason: Option<String> = row.try_get_by_index(2)?;
    if let Some(until) = paused_until.filter(|until| *until > now) {
        return Ok(Permit::Paused {
            until,
            reason: reason.unwrap_or_else(|| "the provider throttled the mailbox".to_owned()),
        });
    }
    let second = unix_second(now);
    let mut window = Window::parse(recent.as_deref());
    window.prune(second);
    if let Some(rate) = limits.per_minute {
        if window.room(rate) == 0 {
            return Ok(Permit::Wait(at_second(window.next_room(rate, second))));
        }
    }
    if let Some(daily) = limits.daily {
        let used = used(&transaction, mailbox, now).await?;
        if used + u64::from(units) > u64::from(daily) {
            let until = daily_resume(&transaction, mailbox, daily, used, units, now).await?;
            let reason = daily_limit_text(daily, limits.daily_unit, mailbox, until);
            return Ok(Permit::Paused { until, reason });
        }
        record_usage(&transaction, &[(mailbox.to_owned(), u64::from(units))], now).await?;
    }
    window.add(counted_second(now), 1);
    let next = match limits.per_minute {
        Some(rate) => at_second(window.next_room(rate, second)),
        None => now,
    };
    transaction
        .execute(statement(
            backend,
            "UPDATE mailbox_pace SET recent_sends = $2, next_send_at = $3, updated_at = $4 WHERE mailbox = $1",
            [
                mailbox.into(),
                window.to_json().into(),
                next.into(),
                now.into(),
            ],
        ))
        .await?;
    transaction.commit().await?;
    Ok(Permit::Go)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_counts_the_rolling_minute() {
        let mut window = Window::default();
        window.add(100, 10);
        window.add(100, 5);
        window.add(130, 15);
        assert_eq!(window.count(), 30);
        assert_eq!(window.room(30), 0);
        assert_eq!(window.room(40), 10);
        // Full: room again once second 100 has left the minute.
        assert_eq!(window.next_room(30, 131), 160);
        assert_eq!(window.next_room(31, 131), 131);
        window.prune(159);
        assert_eq!(
            window.count(),
            30,
            "second 100 is still in the minute ending at 159"
        );
        window.prune(160);
        assert_eq!(window.count(), 15);
        assert_eq!(Window::parse(Some(&window.to_json())), window);
        assert_eq!(Window::parse(Some("not json")), Window::default());
        assert_eq!(Window::parse(None), Window::default());
    }

    #[test]
    fn a_stored_window_keeps_its_newest_hundred_and_twenty_seconds() {
        let pairs: Vec<(i64, u32)> = (0..200).rev().map(|second| (second, 1)).collect();
        let window = Window::parse(Some(&serde_json::to_string(&pairs).unwrap()));
        assert_eq!(window.count(), 120);
        assert_eq!(window.0.first(), Some(&(80, 1)));
        assert_eq!(window.0.last(), Some(&(199, 1)));
        let short = Window::parse(Some("[[5,2],[3,1]]"));
        assert_eq!(short.0, [(3, 1), (5, 2)], "sorted, all kept");
    }

    #[test]
    fn sends_in_one_second_are_one_pair_so_a_stored_window_counts_them_all() {
        let mut window = Window::default();
        for _ in 0..200 {
            window.add(1_000, 1);
        }
        window.add(1_001, 1);
        assert_eq!(window.0, [(1_000, 200), (1_001, 1)]);
        assert_eq!(Window::parse(Some(&window.to_json())).count(), 201);
    }

    #[test]
    fn a_send_leaves_the_minute_a_full_minute_after_it_started() {
        let on_the_second = Utc.timestamp_opt(1_000, 0).unwrap();
        let within_it = Utc.timestamp_opt(1_000, 1).unwrap();
        assert_eq!(counted_second(on_the_second), 1_000);
        assert_eq!(counted_second(within_it), 1_001);
        // One a minute: a send that started within second 1000 makes room again at
        // 1061, the first whole second a minute after it started, not at 1060.
        let mut window = Window::default();
        window.add(counted_second(within_it), 1);
        let next = window.next_room(1, 1_030);
        assert_eq!(next, 1_061);
        assert!(at_second(next) >= within_it + chrono::Duration::seconds(MINUTE));
        assert!(at_second(next - 1) < within_it + chrono::Duration::seconds(MINUTE));
    }

    #[test]
    fn next_room_drops_the_oldest_seconds_until_one_fits() {
        let mut window = Window::default();
        for second in 0..30 {
            window.add(second * 2, 1);
        }
        assert_eq!(window.next_room(30, 58), 60);
        assert_eq!(window.next_room(29, 58), 62);
        assert_eq!(window.next_room(1, 58), 58 + 60);
    }

    #[test]
    fn the_allowance_is_the_tightest_limit() {
        let mut row = PaceRow {
            mailbox: "a@example.com".to_owned(),
            limits: MailboxLimits::defaults(
                mailroom_model::Provider::Microsoft,
                mailroom_model::Route::Smtp,
            ),
            window: Window::default(),
            used: 0,
            in_flight: 0,
        };
        assert_eq!(row.allowance(), 3, "three connections at once");
        row.in_flight = 2;
        assert_eq!(row.allowance(), 1);
        row.in_flight = 5;
        assert_eq!(row.allowance(), 0);
        row.in_flight = 0;
        row.window.add(10, 29);
        assert_eq!(row.allowance(), 1, "one left of 30 in the minute");
        row.limits = MailboxLimits::NONE;
        assert_eq!(row.allowance(), u64::MAX);
    }

    #[test]
    fn the_backoff_doubles_to_an_hour() {
        assert_eq!(backoff(0), Duration::from_secs(30));
        assert_eq!(backoff(1), Duration::from_secs(60));
        assert_eq!(backoff(3), Duration::from_secs(240));
        assert_eq!(backoff(7), Duration::from_secs(3600));
        assert_eq!(backoff(40), Duration::from_secs(3600));
    }

    #[test]
    fn placeholders_follow_the_backend() {
        assert_eq!(placeholders(2, 3), "$2, $3, $4");
        assert_eq!(sql(DatabaseBackend::Sqlite, "a = $1"), "a = ?1");
        assert_eq!(sql(DatabaseBackend::Postgres, "a = $1"), "a = $1");
    }

    #[test]
    fn in_lists_are_padded_to_a_power_of_two_with_the_last_value() {
        assert_eq!(padded(Vec::<i64>::new()), Vec::<i64>::new());
        assert_eq!(padded(vec![7]), [7]);
        assert_eq!(padded(vec![1, 2]), [1, 2]);
        assert_eq!(padded(vec![1, 2, 3]), [1, 2, 3, 3]);
        assert_eq!(padded(vec![1, 2, 3, 4, 5]), [1, 2, 3, 4, 5, 5, 5, 5]);
        assert_eq!(padded((0..9).collect::<Vec<i64>>()).len(), 16);
    }
}
