//! [`OutboxClock`]: the one clock every outbox time (a claim, a lease and its renewals, a
//! next attempt, an outcome) is taken from.
//!
//! Leases are compared across processes, and processes may run on hosts whose clocks
//! disagree: an agent whose clock runs a minute fast would see every other agent's lease
//! as run out. So in production the time comes from the database, the one clock all agents
//! share: [`OutboxClock::read`] asks it (PostgreSQL `clock_timestamp()`, SQLite
//! `strftime('%Y-%m-%d %H:%M:%f', 'now')`, milliseconds) once per claim, and remembers how
//! far the host's clock is from it; [`Clock::now`] between reads (a lease renewal, an
//! outcome) is the host's clock corrected by that offset, with no query. This makes the
//! adapter an ordinary [`Clock`], so other time-dependent logic over the database (pacing)
//! can take the same clock. Tests give a [`mailroom_model::ManualClock`] instead
//! ([`OutboxClock::given`]) and move it past a lease rather than sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDateTime, Utc};
use mailroom_model::Clock;
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

use crate::{Error, Result};

enum Source {
    /// The database's clock; the host's clock plus this many microseconds between reads.
    Database { offset_micros: AtomicI64 },
    /// A clock the caller gives (tests: a manual clock).
    Given(Arc<dyn Clock>),
}

/// The clock of outbox times: the database's (the default) or one given. Cloning shares
/// it.
#[derive(Clone)]
pub struct OutboxClock {
    source: Arc<Source>,
}

impl fmt::Debug for OutboxClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.source {
            Source::Database { offset_micros } => f
                .debug_struct("OutboxClock::Database")
                .field("offset_micros", &offset_micros.load(Ordering::Relaxed))
                .finish(),
            Source::Given(clock) => f.debug_tuple("OutboxClock::Given").field(clock).finish(),
        }
    }
}

impl Default for OutboxClock {
    fn default() -> Self {
        Self::database()
    }
}

impl OutboxClock {
    /// The database's clock (production).
    pub fn database() -> Self {
        Self {
            source: Arc::new(Source::Database {
                offset_micros: AtomicI64::new(0),
            }),
        }
    }

    /// `clock` instead of the database's (tests, or a host that keeps time itself).
    pub fn given(clock: Arc<dyn Clock>) -> Self {
        Self {
            source: Arc::new(Source::Given(clock)),
        }
    }

    /// Now, read from the database (for the database's clock: one query, which also
    /// corrects [`Clock::now`] until the next read).
    pub async fn read<C: ConnectionTrait>(&self, db: &C) -> Result<DateTime<Utc>> {
        let Source::Database { offset_micros } = &*self.source else {
            return Ok(self.now_utc());
        };
        let host_before = Utc::now();
        let now = database_now(db).await?;
        let host_after = Utc::now();
        let offset = (now - midpoint(host_before, host_after))
            .num_microseconds()
            .unwrap_or(0);
        offset_micros.store(offset, Ordering::Relaxed);
        Ok(now)
    }

    /// [`Clock::now`] as a UTC date.
    pub fn now_utc(&self) -> DateTime<Utc> {
        DateTime::<Utc>::from(self.now())
    }
}

impl Clock for OutboxClock {
    fn now(&self) -> SystemTime {
        match &*self.source {
            Source::Database { offset_micros } => {
                shifted(SystemTime::now(), offset_micros.load(Ordering::Relaxed))
            }
            Source::Given(clock) => clock.now(),
        }
    }
}

/// The host's time halfway through a query that began at `before` and ended at `after`:
/// the best match for the database's reading.
fn midpoint(before: DateTime<Utc>, after: DateTime<Utc>) -> DateTime<Utc> {
    before + (after - before) / 2
}

/// `host` moved by `offset_micros` (later when positive, earlier when negative).
fn shifted(host: SystemTime, offset_micros: i64) -> SystemTime {
    let by = Duration::from_micros(offset_micros.unsigned_abs());
    if offset_micros >= 0 {
        host + by
    } else {
        host - by
    }
}

async fn database_now<C: ConnectionTrait>(db: &C) -> Result<DateTime<Utc>> {
    let backend = db.get_database_backend();
    let sql = match backend {
        // `now()` is the transaction's start; `clock_timestamp()` the moment of reading.
        DatabaseBackend::Postgres => "SELECT clock_timestamp() AS now",
        DatabaseBackend::Sqlite => "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now') AS now",
        DatabaseBackend::MySql => {
            return Err(Error::Database(Box::new(sea_orm::DbErr::Custom(
                "MySQL is not supported; use SQLite or PostgreSQL".to_owned(),
            ))));
        }
    };
    let row = db
        .query_one(Statement::from_string(backend, sql))
        .await?
        .ok_or_else(|| sea_orm::DbErr::RecordNotFound("the database's clock".to_owned()))?;
    match backend {
        DatabaseBackend::Postgres => Ok(row.try_get::<DateTime<Utc>>("", "now")?),
        _ => {
            let text: String = row.try_get("", "now")?;
            let naive =
                NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f").map_err(|error| {
                    sea_orm::DbErr::Custom(format!(
                        "the database's clock reads `{text}`, not a time ({error})"
                    ))
                })?;
            Ok(naive.and_utc())
        }
    }
}

#[cfg(test)]
mod tests {
    use mailroom_model::ManualClock;

    use super::*;

    #[test]
    fn the_reading_is_matched_with_the_middle_of_its_query() {
        let before = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(100);
        let after = before + chrono::Duration::milliseconds(30);
        assert_eq!(
            midpoint(before, after),
            before + chrono::Duration::milliseconds(15)
        );
        assert_eq!(midpoint(before, before), before);
    }

    #[test]
    fn between_reads_the_hosts_clock_is_moved_by_the_offset_either_way() {
        let host = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(shifted(host, 0), host);
        assert_eq!(
            shifted(host, 2_500_000),
            host + Duration::from_millis(2_500)
        );
        assert_eq!(
            shifted(host, -2_500_000),
            host - Duration::from_millis(2_500)
        );
        assert_eq!(shifted(host, -1), host - Duration::from_micros(1));
    }

    #[test]
    fn debug_names_the_source_and_its_offset() {
        let database = OutboxClock::database();
        if let Source::Database { offset_micros } = &*database.source {
            offset_micros.store(-42, Ordering::Relaxed);
        }
        assert_eq!(
            format!("{database:?}"),
            "OutboxClock::Database { offset_micros: -42 }"
        );
        let given = OutboxClock::given(Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH)));
        assert!(
            format!("{given:?}").starts_with("OutboxClock::Given(ManualClock"),
            "{given:?}"
        );
    }
}
