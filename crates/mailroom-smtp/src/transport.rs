//! [`SmtpTransport`]: the `MessageTransport` of SMTP accounts, with one pool per
//! credential version and a bound on connections and sends in flight.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mailroom_model::{
    Credentials, Delivery, MessageTransport, OutgoingMessage, TransportError, TransportKind,
};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::Result;
use crate::config::SmtpTransportConfig;
use crate::connection::{ConnectionSettings, SmtpConnection, check_credentials};
use crate::pool::Pool;
use crate::reply::Failure;
use crate::tls::TlsMaterial;

/// The name sent in `EHLO`: the given one, else this machine's host name (lettre's
/// `ClientId`, an address literal when there is none). A name that is not one printable
/// ASCII word (it would change the command) is replaced the same way.
pub(crate) fn hello_name(name: Option<&str>) -> String {
    let usable = |name: &str| !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_graphic());
    match name {
        Some(name) if usable(name) => name.to_owned(),
        _ => {
            let default = lettre::transport::smtp::extension::ClientId::default().to_string();
            if usable(&default) {
                default
            } else {
                "[127.0.0.1]".to_owned()
            }
        }
    }
}

/// Sends through one account's SMTP server. Cheap to share (`Arc` inside); build it once
/// per account and keep it, so connections are reused.
///
/// Must be used inside a Tokio runtime.
#[derive(Clone)]
pub struct SmtpTransport {
    shared: Arc<Shared>,
}

struct Shared {
    connection: ConnectionSettings,
    config: SmtpTransportConfig,
    /// One permit per connection: holding one is the right to use (or open) a connection,
    /// so it bounds connections and sends in flight at once; other sends wait in FIFO order.
    permits: Semaphore,
    current: Mutex<Option<Arc<Pool>>>,
    /// How many permits there are now: fewer than `config.pool_size` after the server
    /// refused a connection as one too many (`432 4.3.2`).
    capacity: Mutex<Capacity>,
}

/// The pool's current size after `432 4.3.2` refusals shrank it.
#[derive(Debug)]
struct Capacity {
    permits: usize,
    /// The last change (a shrink, or a step back up).
    changed_at: Option<Instant>,
}

impl Shared {
    /// After a `432 4.3.2`: gives up `permit` for good, so one connection fewer is used
    /// from now on. False (the permit is released as usual) when only one is left.
    fn shrink(&self, permit: SemaphorePermit<'_>) -> bool {
        let mut capacity = self
            .capacity
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if capacity.permits <= 1 {
            return false;
        }
        capacity.permits -= 1;
        capacity.changed_at = Some(Instant::now());
        permit.forget();
        tracing::info!(
            connections = capacity.permits,
            "the smtp server refused a connection as one too many for the mailbox; using fewer"
        );
        true
    }

    /// After a send that succeeded: a shrunk pool grows back by one connection once the
    /// idle timeout has passed without a refusal (the other sender may be gone).
    fn maybe_grow(&self) {
        let mut capacity = self
            .capacity
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let quiet = capacity
            .changed_at
            .is_none_or(|at| at.elapsed() >= self.config.idle_timeout);
        if capacity.permits < self.config.pool_size && quiet {
            capacity.permits += 1;
            capacity.changed_at = Some(Instant::now());
            self.permits.add_permits(1);
        }
    }
}

impl fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl SmtpTransport {
    /// Checks the settings and builds the TLS configuration; connects nothing yet.
    pub fn new(config: SmtpTransportConfig) -> Result<Self> {
        config.validate()?;
        let tls = TlsMaterial::new(&config.settings.host, config.extra_root_pem.as_deref())?;
        let connection = ConnectionSettings {
            server: config.settings.clone(),
            tls,
            hello: hello_name(config.hello_name.as_deref()),
            timeout: Duration::from_millis(u64::from(config.settings.timeout_ms)),
            final_reply_timeout: config.final_reply_timeout,
        };
        Ok(Self {
            shared: Arc::new(Shared {
                connection,
                permits: Semaphore::new(config.pool_size),
                current: Mutex::new(None),
                capacity: Mutex::new(Capacity {
                    permits: config.pool_size,
                    changed_at: None,
                }),
                config,
            }),
        })
    }

    /// The pool of these credentials. A new user or a newer version retires the previous
    /// pool: it hands out nothing more and closes its connections as their sends finish.
    fn pool_for(&self, credentials: &Credentials) -> Arc<Pool> {
        let shared = &self.shared;
        let mut current = shared
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let start = || {
            Pool::start(
                credentials.user.clone(),
                credentials.version,
                shared.config.idle_timeout,
                shared.config.health_check_after,
                shared.connection.timeout,
            )
        };
        if let Some(pool) = current.as_ref() {
            if pool.user == credentials.user {
                if pool.version == credentials.version {
                    return Arc::clone(pool);
                }
                if credentials.version < pool.version {
                    // A send that took its token before a refresh: serve it on a pool of
                    // its own that keeps nothing, and leave the current pool alone.
                    let pool = start();
                    pool.retire(shared.connection.timeout);
                    return pool;
                }
            }
        }
        let pool = start();
        if let Some(old) = current.replace(Arc::clone(&pool)) {
            tracing::debug!(
                old_version = old.version,
                new_version = credentials.version,
                "new smtp credentials: the old connection pool drains"
            );
            old.retire(shared.connection.timeout);
        }
        pool
    }

    async fn send_with_pool(
        &self,
        message: &OutgoingMessage,
        credentials: &Credentials,
    ) -> Result<Delivery, Failure> {
        check_credentials(self.shared.connection.server.provider, credentials)?;
        let pool = self.pool_for(credentials);
        // Each refusal as one connection too many shrinks the pool by one, so this ends
        // after at most `pool_size` tries; none of them counts as the message's failure.
        loop {
            // The semaphore is never closed.
            let permit = self
                .shared
                .permits
                .acquire()
                .await
                .map_err(|error| Failure::io(crate::reply::Stage::Connect, error))?;
            match self.send_on_pool(&pool, message, credentials).await {
                Ok(delivery) => {
                    drop(permit);
                    self.shared.maybe_grow();
                    return Ok(delivery);
                }
                // The server has enough connections of this mailbox (Exchange: three).
                // The refused connection was dropped with the failure; the message goes
                // on one of the others (a pooled one, once a send in flight returns it).
                Err(failure) if failure.is_too_many_connections() => {
                    if !self.shared.shrink(permit) {
                        return Err(failure);
                    }
                }
                Err(failure) => return Err(failure),
            }
        }
    }

    /// One try on a pooled connection (or a new one); a pooled connection the server
    /// closed meanwhile is replaced once.
    async fn send_on_pool(
        &self,
        pool: &Pool,
        message: &OutgoingMessage,
        credentials: &Credentials,
    ) -> Result<Delivery, Failure> {
        let settings = &self.shared.connection;
        let (mut connection, mut reused) = match pool.checkout(settings).await {
            Some(connection) => (connection, true),
            None => (SmtpConnection::open(settings, credentials).await?, false),
        };
        loop {
            match connection.send(settings, message).await {
                Ok(reply) => {
                    pool.check_in(connection, settings.timeout);
                    return Ok(Delivery {
                        reply: reply.to_string(),
                        provider_message_id: None,
                        thread_id: None,
                    });
                }
                // The server closed a pooled connection before taking the message: one
                // more try on a new connection, which cannot be stale.
                Err(failure) if reused && failure.is_stale_connection() => {
                    tracing::debug!(
                        "a pooled smtp connection was closed by the server; reconnecting"
                    );
                    drop(connection);
                    connection = SmtpConnection::open(settings, credentials).await?;
                    reused = false;
                }
                // Any other failure may leave the connection mid-transaction: close it.
                Err(failure) => return Err(failure),
            }
        }
    }

    /// Connects, starts TLS, authenticates with `credentials` and QUITs, sending no
    /// message: whether the server takes these credentials (for a doctor's check; Exchange
    /// says only at AUTH that SMTP AUTH is off for a mailbox, `535 5.7.139`). It holds one
    /// of the transport's connection permits while it runs, and its connection is not
    /// pooled.
    pub async fn verify(&self, credentials: &Credentials) -> Result<(), TransportError> {
        let verified = async {
            check_credentials(self.shared.connection.server.provider, credentials)?;
            let _permit = self
                .shared
                .permits
                .acquire()
                .await
                .map_err(|error| Failure::io(crate::reply::Stage::Connect, error))?;
            let settings = &self.shared.connection;
            let connection = SmtpConnection::open(settings, credentials).await?;
            connection.quit(settings.timeout).await;
            Ok::<(), Failure>(())
        };
        verified
            .await
            .map_err(|failure| failure.into_transport_error(&credentials.user))
    }

    #[cfg(test)]
    fn current_pool(&self) -> Option<Arc<Pool>> {
        self.shared.current.lock().unwrap().clone()
    }
}

#[async_trait]
impl MessageTransport for SmtpTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Smtp
    }

    async fn send(
        &self,
        message: &OutgoingMessage,
        credentials: &Credentials,
    ) -> Result<Delivery, TransportError> {
        self.send_with_pool(message, credentials)
            .await
            .map_err(|failure| failure.into_transport_error(&credentials.user))
    }
}

#[cfg(test)]
mod tests {
    use mailroom_model::{CredentialSecret, Provider, Secret, ServerSettings};

    use super::*;

    fn transport() -> SmtpTransport {
        let mut settings = ServerSettings::preset(Provider::Microsoft);
        settings.smtp_user = "box@example.com".to_owned();
        SmtpTransport::new(SmtpTransportConfig::new(settings)).unwrap()
    }

    fn token(version: u64) -> Credentials {
        Credentials {
            user: "box@example.com".to_owned(),
            secret: CredentialSecret::AccessToken(Secret::new(format!("token-{version}"))),
            version,
        }
    }

    #[tokio::test]
    async fn a_new_credential_version_retires_the_old_pool() {
        let transport = transport();
        let first = transport.pool_for(&token(1));
        assert!(Arc::ptr_eq(&first, &transport.pool_for(&token(1))));
        let second = transport.pool_for(&token(2));
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(Arc::ptr_eq(&second, &transport.current_pool().unwrap()));
        assert_eq!(first.idle_count(), 0);
        // A late send with the old token does not take the pool away from the new one.
        let late = transport.pool_for(&token(1));
        assert!(!Arc::ptr_eq(&late, &second));
        assert!(Arc::ptr_eq(&second, &transport.current_pool().unwrap()));
        assert!(Arc::ptr_eq(&second, &transport.pool_for(&token(2))));
    }

    #[test]
    fn the_hello_name_is_the_given_word_else_this_machines_name() {
        assert_eq!(hello_name(Some("erp.example.com")), "erp.example.com");
        assert_eq!(hello_name(Some("[192.0.2.7]")), "[192.0.2.7]");
        let default = hello_name(None);
        assert!(
            !default.is_empty() && default.bytes().all(|byte| byte.is_ascii_graphic()),
            "{default:?}"
        );
        // Anything that would change the command is replaced by the default.
        for unusable in ["", "two words", "erp\r\nRSET", "caf\u{e9}.example"] {
            assert_eq!(hello_name(Some(unusable)), default, "{unusable:?}");
        }
    }

    fn capacity(transport: &SmtpTransport) -> (usize, usize) {
        let permits = transport.shared.capacity.lock().unwrap().permits;
        (permits, transport.shared.permits.available_permits())
    }

    /// Each `432 4.3.2` gives up one connection for good, down to one; a send that
    /// succeeds grows the pool back by one once an idle timeout has passed since the last
    /// change, never past the configured size.
    #[tokio::test]
    async fn refusals_shrink_the_pool_and_quiet_time_grows_it_back() {
        let transport = transport();
        let shared = &transport.shared;
        assert_eq!(capacity(&transport), (3, 3));
        assert!(shared.shrink(shared.permits.acquire().await.unwrap()));
        assert_eq!(capacity(&transport), (2, 2));
        // Just shrunk: a success does not grow it yet.
        shared.maybe_grow();
        assert_eq!(capacity(&transport), (2, 2));
        assert!(shared.shrink(shared.permits.acquire().await.unwrap()));
        assert_eq!(capacity(&transport), (1, 1));
        // The last connection is kept: the refusal is the send's.
        assert!(!shared.shrink(shared.permits.acquire().await.unwrap()));
        assert_eq!(capacity(&transport), (1, 1));

        let quiet_since = |transport: &SmtpTransport| {
            let idle = transport.shared.config.idle_timeout;
            transport.shared.capacity.lock().unwrap().changed_at =
                Instant::now().checked_sub(idle + Duration::from_secs(1));
        };
        quiet_since(&transport);
        shared.maybe_grow();
        assert_eq!(capacity(&transport), (2, 2));
        // The step back up is a change too: the next one waits another idle timeout.
        shared.maybe_grow();
        assert_eq!(capacity(&transport), (2, 2));
        quiet_since(&transport);
        shared.maybe_grow();
        assert_eq!(capacity(&transport), (3, 3));
        quiet_since(&transport);
        shared.maybe_grow();
        assert_eq!(capacity(&transport), (3, 3), "never past the pool size");
    }

    #[test]
    fn debug_shows_no_secret() {
        let mut settings = ServerSettings::preset(Provider::None);
        settings.host = "smtp.example.com".to_owned();
        settings.smtp_user = "user".to_owned();
        settings.password = Some(Secret::new("hunter2-password"));
        let config = SmtpTransportConfig::new(settings);
        let transport = SmtpTransport::new(config.clone()).unwrap();
        for text in [format!("{config:?}"), format!("{transport:?}")] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("smtp.example.com"), "{text}");
        }
        assert!(format!("{transport:?}").starts_with("SmtpTransport"));
    }

    #[test]
    fn microsoft_pools_hold_three_connections_and_password_pools_four() {
        let mut settings = ServerSettings::preset(Provider::Microsoft);
        settings.smtp_user = "box@example.com".to_owned();
        assert_eq!(SmtpTransportConfig::new(settings).pool_size, 3);
        let mut settings = ServerSettings::preset(Provider::None);
        settings.host = "smtp.example.com".to_owned();
        assert_eq!(
            SmtpTransportConfig::new(settings).pool_size,
            crate::DEFAULT_POOL_SIZE
        );
    }

    #[test]
    fn google_and_zero_pools_are_refused() {
        let google = SmtpTransportConfig::new(ServerSettings::preset(Provider::Google));
        assert!(matches!(
            SmtpTransport::new(google),
            Err(crate::Error::UnsupportedProvider { .. })
        ));
        let mut settings = ServerSettings::preset(Provider::Microsoft);
        settings.smtp_user = "box@example.com".to_owned();
        let zero = SmtpTransportConfig::new(settings).with_pool_size(0);
        assert!(matches!(
            SmtpTransport::new(zero),
            Err(crate::Error::InvalidPoolSize)
        ));
    }
}
