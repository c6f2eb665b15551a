//! mailroom's Microsoft Graph transport: sends formatted messages through Graph's
//! `sendMail` with the MIME form, and above Graph's 4 MB request limit through a draft
//! whose large attachments go up in upload sessions, over reqwest with rustls.
//!
//! [`GraphTransport`] implements [`mailroom_model::MessageTransport`] against
//! `https://graph.microsoft.com` (overridable with [`GraphConfig::base_url`] for national
//! clouds and tests). It knows nothing of accounts: the mailbox is
//! [`mailroom_model::Credentials::user`] and the bearer token comes with each send.
//!
//! - A message whose base64 form fits in one request ([`REQUEST_LIMIT`], 4 MB) is sent with
//!   one `POST {base}/v1.0/users/{mailbox}/sendMail`, `Content-Type: text/plain` and the
//!   MIME message base64-encoded (Microsoft's `user-sendmail` page, "send a message in MIME
//!   format"). Graph answers `202 Accepted` with no message id; the receipt keeps its
//!   `request-id` header as [`mailroom_model::Delivery::provider_message_id`]. Every request
//!   carries a fresh `client-request-id`.
//! - A larger one is sent in three steps: a draft is created from the MIME message without
//!   its attachments of [`LARGE_ATTACHMENT`] (3 MB) or more (`POST .../users/{mailbox}/messages`,
//!   MIME form, `user-post-messages`); each of those attachments is added through an upload
//!   session (`POST .../messages/{id}/attachments/createUploadSession`, then `PUT`s of at
//!   most [`MAX_UPLOAD_CHUNK`] bytes with `Content-Range`, `attachment-createuploadsession`
//!   and `concepts/outlook-large-attachments`); then the draft is sent
//!   (`POST .../messages/{id}/send`, `message-send`). The upload URL is pre-authenticated
//!   and on another host (`outlook.office.com`): it gets no `Authorization` header. After a
//!   dropped connection the session is asked for its `nextExpectedRanges` and the upload
//!   resumes from there. This path needs the `Mail.ReadWrite` permission as well as
//!   `Mail.Send`.
//! - A message over [`GraphConfig::max_message_size`] (35 MB by default, Exchange Online's
//!   default message size limit) is refused before any request.
//!
//! **Sent Items.** Graph's MIME send always saves a copy in Sent Items (the
//! `saveToSentItems` parameter exists only in the JSON form), and so does sending a draft.
//! [`GraphConfig::save_to_sent_items`] is therefore `true` by default, and `false` is
//! refused when the transport is built ([`Error::SaveToSentItemsUnsupported`]) rather than
//! silently ignored or approximated by rebuilding the message as JSON.
//!
//! **Bcc.** Graph takes the recipients from the MIME headers, so the message given must
//! carry its `Bcc` header (the caller adds it back for this route, as for the Gmail API).
//!
//! ```
//! use mailroom_graph::{Error, GraphConfig, GraphTransport};
//! use url::Url;
//!
//! let transport = GraphTransport::new(GraphConfig::default())?;
//!
//! // Plain http only to a loopback host, and only when allowed.
//! let local = GraphConfig::with_base_url(Url::parse("http://127.0.0.1:8080").unwrap());
//! assert!(matches!(GraphTransport::new(local.clone()), Err(Error::InsecureUrl { .. })));
//! let test_transport = GraphTransport::new(GraphConfig { allow_plaintext_loopback: true, ..local })?;
//!
//! // The MIME send always saves to Sent Items: `false` is refused, not ignored.
//! let no_copy = GraphConfig { save_to_sent_items: false, ..GraphConfig::default() };
//! assert!(matches!(GraphTransport::new(no_copy), Err(Error::SaveToSentItemsUnsupported)));
//! # drop((transport, test_transport));
//! # Ok::<(), Error>(())
//! ```
//!
//! Failures come back as [`mailroom_model::TransportError`]s; see [`GraphTransport`] for
//! the mapping of Graph's error JSON. The access token never appears in an error, a log
//! line or `Debug` output.

mod config;
mod error;
mod mime;
mod reply;
mod transport;
mod upload;

pub use config::GraphConfig;
pub use error::{Error, Result};
pub use transport::GraphTransport;

/// Microsoft Graph's global endpoint, used unless [`GraphConfig::base_url`] says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://graph.microsoft.com";

/// Exchange Online's default maximum message size (35 MB = 36,700,160 bytes), the default
/// of [`GraphConfig::max_message_size`]; an administrator may raise a mailbox's limit up to
/// 150 MB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 36_700_160;

/// Graph's limit on one request's body, "4 MB", taken as 4,000,000 bytes (the smaller
/// reading, so no request near the limit is refused): a message whose base64 form is
/// larger goes through a draft and upload sessions.
pub const REQUEST_LIMIT: u64 = 4_000_000;

/// Attachments of this size (decoded) or more go through an upload session (3 MB).
pub const LARGE_ATTACHMENT: u64 = 3 * 1024 * 1024;

/// The largest `PUT` of an upload session (4 MiB, the Outlook guidance; the 320 KiB
/// multiple rule is OneDrive's, not Outlook's).
pub const MAX_UPLOAD_CHUNK: u64 = 4 * 1024 * 1024;

/// The largest attachment Graph accepts through an upload session (150 MB).
pub const MAX_ATTACHMENT_SIZE: u64 = 150 * 1024 * 1024;

/// The delegated permission a send needs.
pub const MAIL_SEND_SCOPE: &str = "https://graph.microsoft.com/Mail.Send";

/// The delegated permission a draft (the path above [`REQUEST_LIMIT`]) needs.
pub const MAIL_READ_WRITE_SCOPE: &str = "https://graph.microsoft.com/Mail.ReadWrite";

// The README's example runs as a doctest too, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
