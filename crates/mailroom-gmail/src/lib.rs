//! mailroom's Gmail API transport: sends formatted messages through `users.messages.send`
//! with Google's media upload protocol (and the resumable protocol above a threshold),
//! over reqwest with rustls.
//!
//! Google accounts never send over SMTP: [`GmailTransport`] implements
//! [`mailroom_model::MessageTransport`] against the REST API at
//! `https://gmail.googleapis.com` (overridable with [`GmailConfig::base_url`] for tests and
//! proxies). The contract is the `users.messages.send` method of Google's discovery
//! document (kept in `tests/data/gmail.v1.send.json` with its provenance):
//!
//! - Messages up to [`GmailConfig::resumable_threshold`] (5 MiB by default) are sent in one
//!   `POST /upload/gmail/v1/users/me/messages/send?uploadType=media` with
//!   `Content-Type: message/rfc822`; the body is the formatted message bytes as they are,
//!   without the base64 inflation of the JSON `raw` field.
//! - Larger messages use the resumable protocol (`uploadType=resumable`): a session is
//!   started, the bytes are uploaded in chunks, and after a dropped connection or a 5xx the
//!   transport asks the session what it received and resumes from there.
//! - Messages over the discovery document's `maxSize` ([`MAX_MESSAGE_SIZE`],
//!   36,700,160 bytes) are refused before any request.
//!
//! The message is sent as the authenticated user (`users/me`). **A `From` header that is not
//! the account's own address is sent as it is**: the transport neither checks nor changes
//! it, and Gmail may rewrite it to the account's address, or keep it when it is one of the
//! account's verified "send mail as" aliases. When Gmail refuses the user or sender outright
//! (403 `Delegation denied for ...`), the send fails as `SendAsDenied`.
//!
//! Building a transport checks the configuration without connecting: the base URL must be
//! `https://`, except a loopback test server when plaintext is explicitly allowed.
//!
//! ```
//! use mailroom_gmail::{Error, GmailConfig, GmailTransport};
//! use url::Url;
//!
//! let transport = GmailTransport::new(GmailConfig::default())?;
//!
//! // Plain http only to a loopback host, and only when allowed.
//! let local = GmailConfig::with_base_url(Url::parse("http://127.0.0.1:8080").unwrap());
//! assert!(matches!(
//!     GmailTransport::new(local.clone()),
//!     Err(Error::InsecureUrl { .. })
//! ));
//! let allowed = GmailConfig {
//!     allow_plaintext_loopback: true,
//!     ..local
//! };
//! let test_transport = GmailTransport::new(allowed)?;
//! let remote = GmailConfig {
//!     allow_plaintext_loopback: true,
//!     ..GmailConfig::with_base_url(Url::parse("http://gmail.example.com").unwrap())
//! };
//! assert!(matches!(
//!     GmailTransport::new(remote),
//!     Err(Error::InsecureUrl { .. })
//! ));
//! # drop((transport, test_transport));
//! # Ok::<(), Error>(())
//! ```
//!
//! Sending, with a token the caller obtained:
//!
//! ```no_run
//! use mailroom_gmail::{GmailConfig, GmailTransport};
//! use mailroom_model::{Credentials, MessageTransport, OutgoingMessage};
//!
//! # async fn example(message: OutgoingMessage, credentials: Credentials) -> Result<(), Box<dyn std::error::Error>> {
//! // One transport per configuration; the access token comes with each send.
//! let transport = GmailTransport::new(GmailConfig::default())?;
//! let delivery = transport.send(&message, &credentials).await?;
//! assert!(delivery.provider_message_id.is_some());
//! # Ok(())
//! # }
//! ```
//!
//! Failures come back as [`mailroom_model::TransportError`] with a kind the facade's retry
//! policy decides on and a [`mailroom_model::Remedy`] a front end renders; see
//! [`GmailTransport`] for the mapping. Certificates are always verified (an extra trusted root may be added with
//! [`GmailConfig::extra_root_pem`]); plain `http://` is accepted only for a loopback test
//! server and only when [`GmailConfig::allow_plaintext_loopback`] says so, so the bearer
//! token never crosses a network in the clear. The access token never appears in an error,
//! a log line or `Debug` output.

mod config;
mod error;
mod reply;
#[cfg(test)]
mod reply_props;
mod transport;
mod upload;

pub use config::GmailConfig;
pub use error::{Error, Result};
pub use transport::GmailTransport;

/// The Gmail API's public base URL, used unless [`GmailConfig::base_url`] says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://gmail.googleapis.com";

/// The largest message Gmail accepts, in bytes: `mediaUpload.maxSize` of
/// `users.messages.send` in Google's discovery document (35 MiB).
pub const MAX_MESSAGE_SIZE: u64 = 36_700_160;

/// The media type the message is uploaded as; the discovery document accepts `message/*`.
pub const MESSAGE_MEDIA_TYPE: &str = "message/rfc822";

/// Resumable upload chunks must be a multiple of this many bytes (256 KiB), except the last.
pub const RESUMABLE_CHUNK_GRANULARITY: u64 = 256 * 1024;

// The README's example runs as a doctest too, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
