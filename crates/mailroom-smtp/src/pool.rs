//! The connection pool of one credential version. Connections are reused newest first;
//! one idle for longer than the health-check threshold gets a `NOOP` first, one idle
//! longer than the idle timeout is closed. The number of connections and of sends in
//! flight is bounded by the transport's semaphore, not here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::connection::{ConnectionSettings, SmtpConnection};

/// Idle connections in the order they were returned; the logic without I/O, so it can be
/// tested with plain values.
#[derive(Debug)]
pub(crate) struct IdleList<T> {
    entries: Vec<(T, Instant)>,
}

/// A connection taken from the idle list, and whether it must be checked before use.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Checkout<T> {
    pub(crate) connection: T,
    pub(crate) needs_health_check: bool,
}

impl<T> IdleList<T> {
    pub(crate) fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, connection: T, now: Instant) {
        self.entries.push((connection, now));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Removes and returns every connection idle for `idle_timeout` or longer. Entries are
    /// pushed in time order and taken from the end, so the expired ones are at the front.
    pub(crate) fn take_expired(&mut self, now: Instant, idle_timeout: Duration) -> Vec<T> {
        let expired = self
            .entries
            .iter()
            .take_while(|(_, since)| now.saturating_duration_since(*since) >= idle_timeout)
            .count();
        self.entries
            .drain(..expired)
            .map(|(connection, _)| connection)
            .collect()
    }

    /// The most recently returned connection: it is the likeliest to be alive, and the
    /// older ones then expire instead of being kept warm.
    pub(crate) fn pop(
        &mut self,
        now: Instant,
        health_check_after: Duration,
    ) -> Option<Checkout<T>> {
        let (connection, since) = self.entries.pop()?;
        Some(Checkout {
            connection,
            needs_health_check: now.saturating_duration_since(since) > health_check_after,
        })
    }

    /// When the oldest connection expires, if any.
    pub(crate) fn next_expiry(&self, idle_timeout: Duration) -> Option<Instant> {
        self.entries
            .iter()
            .map(|(_, since)| *since + idle_timeout)
            .min()
    }

    /// When the pool's reaper looks again, at `now`: when the oldest connection expires,
    /// or, with none idle, one idle timeout from now (a connection returned meanwhile
    /// expires no sooner than that).
    pub(crate) fn next_check(&self, now: Instant, idle_timeout: Duration) -> Instant {
        self.next_expiry(idle_timeout)
            .unwrap_or_else(|| now + idle_timeout)
    }

    pub(crate) fn drain(&mut self) -> Vec<T> {
        self.entries
            .drain(..)
            .map(|(connection, _)| connection)
            .collect()
    }
}

/// The pool of one (user, credential version).
#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) user: String,
    pub(crate) version: u64,
    idle: Mutex<IdleList<SmtpConnection>>,
    retired: AtomicBool,
    idle_timeout: Duration,
    health_check_after: Duration,
}

impl Pool {
    /// A new pool, with a task that closes connections left idle too long. The task holds
    /// only a weak reference and ends with the pool.
    pub(crate) fn start(
        user: String,
        version: u64,
        idle_timeout: Duration,
        health_check_after: Duration,
        quit_timeout: Duration,
    ) -> Arc<Self> {
        let pool = Arc::new(Self {
            user,
            version,
            idle: Mutex::new(IdleList::new()),
            retired: AtomicBool::new(false),
            idle_timeout,
            health_check_after,
        });
        tokio::spawn(close_expired(Arc::downgrade(&pool), quit_timeout));
        pool
    }

    fn idle(&self) -> MutexGuard<'_, IdleList<SmtpConnection>> {
        // A panic while holding this lock leaves a consistent list (push/pop only).
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A live idle connection, if there is one. Connections that fail their check are
    /// dropped.
    pub(crate) async fn checkout(&self, settings: &ConnectionSettings) -> Option<SmtpConnection> {
        loop {
            let now = Instant::now();
            let (checkout, expired) = {
                let mut idle = self.idle();
                let expired = idle.take_expired(now, self.idle_timeout);
                (idle.pop(now, self.health_check_after), expired)
            };
            drop(expired);
            let mut checkout = checkout?;
            if !checkout.needs_health_check || checkout.connection.is_healthy(settings).await {
                return Some(checkout.connection);
            }
        }
    }

    /// Takes a connection back after a successful send; a retired pool closes it instead.
    pub(crate) fn check_in(&self, connection: SmtpConnection, quit_timeout: Duration) {
        if self.retired.load(Ordering::Acquire) {
            tokio::spawn(connection.quit(quit_timeout));
            return;
        }
        self.idle().push(connection, Instant::now());
        // Retirement may have happened between the check and the push.
        if self.retired.load(Ordering::Acquire) {
            self.close_idle(quit_timeout);
        }
    }

    /// Stops handing out connections: idle ones are closed now, busy ones when they
    /// come back.
    pub(crate) fn retire(&self, quit_timeout: Duration) {
        self.retired.store(true, Ordering::Release);
        self.close_idle(quit_timeout);
    }

    fn close_idle(&self, quit_timeout: Duration) {
        let connections = self.idle().drain();
        for connection in connections {
            tokio::spawn(connection.quit(quit_timeout));
        }
    }

    #[cfg(test)]
    pub(crate) fn idle_count(&self) -> usize {
        self.idle().len()
    }
}

async fn close_expired(pool: Weak<Pool>, quit_timeout: Duration) {
    loop {
        let wake_at = {
            let Some(pool) = pool.upgrade() else { return };
            if pool.retired.load(Ordering::Acquire) {
                return;
            }
            let expired = pool.idle().take_expired(Instant::now(), pool.idle_timeout);
            for connection in expired {
                tokio::spawn(connection.quit(quit_timeout));
            }
            pool.idle().next_check(Instant::now(), pool.idle_timeout)
        };
        tokio::time::sleep_until(wake_at.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(60);
    const CHECK: Duration = Duration::from_secs(5);

    #[test]
    fn newest_first_and_health_check_only_after_idling() {
        let start = Instant::now();
        let mut list = IdleList::new();
        list.push("old", start);
        list.push("new", start + Duration::from_secs(10));
        let now = start + Duration::from_secs(12);
        assert_eq!(
            list.pop(now, CHECK),
            Some(Checkout {
                connection: "new",
                needs_health_check: false
            })
        );
        assert_eq!(
            list.pop(now, CHECK),
            Some(Checkout {
                connection: "old",
                needs_health_check: true
            })
        );
        assert_eq!(list.pop(now, CHECK), None);
    }

    #[test]
    fn a_connection_idle_exactly_the_threshold_is_reused_without_a_check() {
        let start = Instant::now();
        let mut list = IdleList::new();
        list.push("exactly", start);
        list.push("just over", start);
        assert_eq!(
            list.pop(start + CHECK + Duration::from_millis(1), CHECK),
            Some(Checkout {
                connection: "just over",
                needs_health_check: true
            })
        );
        assert_eq!(
            list.pop(start + CHECK, CHECK),
            Some(Checkout {
                connection: "exactly",
                needs_health_check: false
            })
        );
    }

    #[test]
    fn the_reaper_looks_again_at_the_oldest_expiry_or_a_timeout_from_now() {
        let start = Instant::now();
        let now = start + Duration::from_secs(45);
        let mut list = IdleList::new();
        assert_eq!(list.next_check(now, IDLE), now + IDLE);
        list.push(1, start);
        list.push(2, start + Duration::from_secs(30));
        assert_eq!(list.next_check(now, IDLE), start + IDLE);
    }

    #[test]
    fn expired_connections_are_taken_out() {
        let start = Instant::now();
        let mut list = IdleList::new();
        list.push(1, start);
        list.push(2, start + Duration::from_secs(30));
        assert_eq!(list.next_expiry(IDLE), Some(start + IDLE));
        assert_eq!(
            list.take_expired(start + Duration::from_secs(59), IDLE),
            Vec::<i32>::new()
        );
        assert_eq!(list.take_expired(start + IDLE, IDLE), vec![1]);
        assert_eq!(list.len(), 1);
        assert_eq!(
            list.next_expiry(IDLE),
            Some(start + Duration::from_secs(90))
        );
        assert_eq!(list.drain(), vec![2]);
        assert_eq!(list.next_expiry(IDLE), None);
    }
}
