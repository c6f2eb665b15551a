//! mailroom's SMTP transport: Microsoft 365 (XOAUTH2, or OAUTHBEARER where a server offers
//! only that) and password servers (PLAIN, LOGIN), on its own SMTP session over tokio and
//! rustls: replies read with bounds through `smtp-proto`'s parser, PIPELINING when offered.
//!
//! [`SmtpTransport`] implements [`mailroom_model::MessageTransport`]. It runs its own SMTP
//! session and small connection pool (see `connection.rs`, `wire.rs`, `pool.rs`) instead
//! of lettre's, because lettre 0.11.23 reads a whole reply line before checking its length
//! (a hostile server grows the process without bound), keeps bytes received before
//! STARTTLS as if they came through TLS, never sets `TCP_NODELAY` and NOOPs before every
//! reuse. Here every read is bounded, sockets are `TCP_NODELAY`, and a connection is
//! checked only after it sat idle.
//!
//! The transport sends a message that is already formatted, with the credentials of one
//! send (a password, or an access token that the caller obtained and refreshes); it knows
//! nothing of accounts, tokens or databases, retries nothing, and reads no environment.
//! Building a transport checks the settings and the TLS configuration without connecting:
//!
//! ```
//! use mailroom_model::{Provider, ServerSettings};
//! use mailroom_smtp::{Error, SmtpTransport, SmtpTransportConfig, xoauth2_initial_response};
//!
//! let mut settings = ServerSettings::preset(Provider::Microsoft);
//! settings.smtp_user = "sales@contoso.example".to_owned();
//! let transport = SmtpTransport::new(SmtpTransportConfig::new(settings))?;
//!
//! // Google accounts send through the Gmail API (mailroom-gmail), never over SMTP.
//! let google = SmtpTransportConfig::new(ServerSettings::preset(Provider::Google));
//! assert!(matches!(
//!     SmtpTransport::new(google),
//!     Err(Error::UnsupportedProvider { .. })
//! ));
//!
//! // What `AUTH XOAUTH2` carries (base64-encoded on the wire).
//! assert_eq!(
//!     xoauth2_initial_response("sales@contoso.example", "token"),
//!     "user=sales@contoso.example\x01auth=Bearer token\x01\x01"
//! );
//! # drop(transport);
//! # Ok::<(), Error>(())
//! ```
//!
//! Sending, with a token the caller obtained:
//!
//! ```no_run
//! use mailroom_model::{
//!     CredentialSecret, Credentials, MessageTransport, OutgoingMessage, Provider, Secret,
//!     ServerSettings,
//! };
//! use mailroom_smtp::{SmtpTransport, SmtpTransportConfig};
//!
//! # async fn example(message: OutgoingMessage) -> Result<(), Box<dyn std::error::Error>> {
//! let mut settings = ServerSettings::preset(Provider::Microsoft);
//! settings.smtp_user = "sales@example.com".to_owned();
//! // Build once per account and keep it: the pool lives inside.
//! let transport = SmtpTransport::new(SmtpTransportConfig::new(settings))?;
//! let credentials = Credentials {
//!     user: "sales@example.com".to_owned(),
//!     secret: CredentialSecret::AccessToken(Secret::new("an access token")),
//!     version: 1,
//! };
//! match transport.send(&message, &credentials).await {
//!     Ok(delivery) => println!("sent: {}", delivery.reply),
//!     Err(error) if error.is_auth_rejected() => { /* refresh the token once, retry */ }
//!     Err(error) => return Err(error.into()),
//! }
//! # Ok(())
//! # }
//! ```

mod config;
mod connection;
mod error;
mod pool;
mod probe;
mod reply;
#[cfg(test)]
mod reply_props;
mod sasl;
mod tls;
mod transport;
mod wire;

pub use config::{
    DEFAULT_FINAL_REPLY_TIMEOUT, DEFAULT_HEALTH_CHECK_AFTER, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_POOL_SIZE, MICROSOFT_POOL_SIZE, SmtpTransportConfig, default_pool_size,
};
pub use error::{Error, Result};
pub use probe::{Probe, ProbeError, ProbeTls, probe};
pub use reply::MAILBOX_PAUSE;
pub use sasl::{oauthbearer_initial_response, xoauth2_initial_response};
pub use tls::count_root_certificates;
pub use transport::SmtpTransport;
#[doc(hidden)]
pub use wire::read_replies_in_pieces;

// The README's example runs as a doctest too, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
