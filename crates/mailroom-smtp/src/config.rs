//! The transport's configuration and the crate's own error, for problems found before any
//! message is sent (bad settings, an unreadable extra root certificate).

use std::fmt;
use std::time::Duration;

use mailroom_model::{Provider, ServerSettings};

use crate::{Error, Result};

/// How many connections (and sends in flight) a transport allows unless told otherwise
/// (password SMTP servers; Microsoft 365 has [`MICROSOFT_POOL_SIZE`]).
pub const DEFAULT_POOL_SIZE: usize = 4;

/// Exchange Online's limit: "up to three concurrent connections are allowed to send email
/// messages at the same time" per mailbox; a fourth gets `432 4.3.2 Concurrent connections
/// limit exceeded` (learn.microsoft.com/exchange/troubleshoot/send-emails/smtp-submission-improvements).
pub const MICROSOFT_POOL_SIZE: usize = 3;

/// The pool size a transport for `provider` gets unless told otherwise.
pub fn default_pool_size(provider: Provider) -> usize {
    match provider {
        Provider::Microsoft => MICROSOFT_POOL_SIZE,
        _ => DEFAULT_POOL_SIZE,
    }
}

/// How long an unused connection stays open unless told otherwise.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A pooled connection that sat idle longer than this is checked with `NOOP` before reuse.
pub const DEFAULT_HEALTH_CHECK_AFTER: Duration = Duration::from_secs(5);

/// How long the client waits for the server's reply to the message data's final `.`
/// unless told otherwise: ten minutes, RFC 5321 4.5.3.2.6.
pub const DEFAULT_FINAL_REPLY_TIMEOUT: Duration = Duration::from_secs(600);

/// Everything an [`crate::SmtpTransport`] needs: one account's server settings and the
/// pool's bounds.
#[derive(Clone)]
pub struct SmtpTransportConfig {
    /// The account's server settings (host, port, TLS, timeout, user, password).
    pub settings: ServerSettings,
    /// The most connections open at once, which is also the most sends in flight; more
    /// sends wait their turn. At least 1.
    pub pool_size: usize,
    /// An idle connection is closed after this long.
    pub idle_timeout: Duration,
    /// A connection idle for longer than this is checked with `NOOP` before it is reused;
    /// connections used more recently are reused without a round trip.
    pub health_check_after: Duration,
    /// Extra trusted root certificates (PEM), in addition to the Mozilla roots: a company
    /// CA or a test CA. The caller reads the file (the CLI takes it from a setting or
    /// `MAILROOM_CA_FILE`); this crate does not read the environment.
    pub extra_root_pem: Option<Vec<u8>>,
    /// The name sent in `EHLO`; `None` sends this machine's host name.
    pub hello_name: Option<String>,
    /// How long to wait for the reply to the message data's final `.`, independent of the
    /// account's per-command timeout. When it passes (or the connection drops) after the
    /// whole message was written, the send fails as `DeliveryUnknown`: the server may
    /// have accepted the message.
    pub final_reply_timeout: Duration,
}

impl SmtpTransportConfig {
    /// A configuration with the provider's default pool bounds ([`default_pool_size`]) and
    /// no extra root.
    pub fn new(settings: ServerSettings) -> Self {
        Self {
            pool_size: default_pool_size(settings.provider),
            settings,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            health_check_after: DEFAULT_HEALTH_CHECK_AFTER,
            extra_root_pem: None,
            hello_name: None,
            final_reply_timeout: DEFAULT_FINAL_REPLY_TIMEOUT,
        }
    }

    /// The same configuration trusting the given PEM root certificates as well.
    pub fn with_extra_root_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.extra_root_pem = Some(pem.into());
        self
    }

    /// The same configuration with another wait for the final reply after the data.
    pub fn with_final_reply_timeout(mut self, timeout: Duration) -> Self {
        self.final_reply_timeout = timeout;
        self
    }

    /// The same configuration with another pool size.
    pub fn with_pool_size(mut self, pool_size: usize) -> Self {
        self.pool_size = pool_size;
        self
    }

    /// Checks what can be checked before connecting.
    pub(crate) fn validate(&self) -> Result<()> {
        self.settings.validate().map_err(Error::InvalidSettings)?;
        if self.settings.provider == Provider::Google {
            return Err(Error::UnsupportedProvider {
                provider: self.settings.provider,
            });
        }
        if self.pool_size == 0 {
            return Err(Error::InvalidPoolSize);
        }
        Ok(())
    }
}

impl fmt::Debug for SmtpTransportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpTransportConfig")
            // `ServerSettings`' Debug redacts the password.
            .field("settings", &self.settings)
            .field("pool_size", &self.pool_size)
            .field("idle_timeout", &self.idle_timeout)
            .field("health_check_after", &self.health_check_after)
            .field(
                "extra_root_pem",
                &self.extra_root_pem.as_ref().map(|pem| pem.len()),
            )
            .field("hello_name", &self.hello_name)
            .field("final_reply_timeout", &self.final_reply_timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use mailroom_model::Secret;

    use super::*;

    #[test]
    fn debug_shows_the_settings_but_not_the_password_or_the_certificates() {
        let mut settings = ServerSettings::preset(Provider::None);
        settings.host = "mail.example.test".to_owned();
        settings.password = Some(Secret::new("hunter2-secret".to_owned()));
        let mut config = SmtpTransportConfig::new(settings);
        config.pool_size = 7;
        let pem = b"-----BEGIN CERTIFICATE-----PEMBODY";
        config.extra_root_pem = Some(pem.to_vec());
        config.hello_name = Some("erp.example.test".to_owned());
        let shown = format!("{config:?}");
        // The certificate is shown by its length only.
        let length = format!("Some({})", pem.len());
        for expected in [
            "mail.example.test",
            "pool_size: 7",
            length.as_str(),
            "erp.example.test",
        ] {
            assert!(
                shown.contains(expected),
                "{expected:?} missing from {shown}"
            );
        }
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert!(!shown.contains("PEMBODY"), "{shown}");
    }
}
