//! The message-transport port: what the facade hands a transport (SMTP, Gmail API) and what
//! comes back. Transports implement [`MessageTransport`]; they know nothing of accounts.

use std::error::Error as StdError;
use std::fmt::{self, Debug};
use std::time::Duration;

use bytes::Bytes;
use lettre::Address;

use crate::{Secret, ValidationError};

/// Who the message is from and whom it goes to on the wire (Bcc recipients included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    sender: Address,
    recipients: Vec<Address>,
}

impl Envelope {
    /// An envelope with at least one recipient; duplicates are removed, order is kept.
    pub fn new(sender: Address, recipients: Vec<Address>) -> Result<Self, ValidationError> {
        // A set beside the list: a message to thousands of recipients is checked in
        // linear time, not by comparing each with every earlier one.
        let mut seen = std::collections::HashSet::with_capacity(recipients.len());
        let mut unique: Vec<Address> = Vec::with_capacity(recipients.len());
        for recipient in recipients {
            if seen.insert(recipient.clone()) {
                unique.push(recipient);
            }
        }
        if unique.is_empty() {
            return Err(ValidationError::new(
                "recipients",
                "the message has no recipient",
                "give at least one --to, --cc, --bcc or --fax",
            ));
        }
        Ok(Self {
            sender,
            recipients: unique,
        })
    }

    /// The envelope sender (SMTP `MAIL FROM`).
    pub fn sender(&self) -> &Address {
        &self.sender
    }

    /// The envelope recipients (SMTP `RCPT TO`).
    pub fn recipients(&self) -> &[Address] {
        &self.recipients
    }
}

/// A formatted message ready for a transport. The bytes are formatted once and reused
/// unchanged for every retry, so the Message-ID and MIME boundaries never change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Envelope sender and recipients.
    pub envelope: Envelope,
    /// The RFC 5322 message, CRLF line endings.
    pub bytes: Bytes,
    /// The message's `Message-ID` header value, when known (for logs and receipts).
    pub message_id: Option<String>,
}

/// The secret part of [`Credentials`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSecret {
    /// No authentication (a relay that trusts the client).
    None,
    /// A password for SASL PLAIN or LOGIN.
    Password(Secret),
    /// An OAuth 2.0 access token for XOAUTH2, OAUTHBEARER or an `Authorization: Bearer`
    /// header.
    AccessToken(Secret),
}

/// What a transport authenticates with. `Debug` prints no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The SMTP user / mailbox the credentials belong to.
    pub user: String,
    /// The password or token.
    pub secret: CredentialSecret,
    /// Changes whenever the secret changes (a token refresh, a new password), so a
    /// transport can keep one connection pool per credential version.
    pub version: u64,
}

/// Which kind of transport delivered a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// SMTP submission (Microsoft 365 and password servers).
    Smtp,
    /// The Gmail REST API.
    GmailApi,
    /// The Microsoft Graph REST API (`sendMail`, drafts and upload sessions).
    GraphApi,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Smtp => "smtp",
            TransportKind::GmailApi => "gmail-api",
            TransportKind::GraphApi => "graph",
        })
    }
}

/// A transport's answer to a successful send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The server's final reply, e.g. `250 2.0.0 OK queued as 1234` or a Gmail summary.
    pub reply: String,
    /// The provider's id of the sent message (Gmail `id`), when it gives one.
    pub provider_message_id: Option<String>,
    /// The provider's thread id (Gmail `threadId`), when it gives one.
    pub thread_id: Option<String>,
}

/// Sends formatted messages. Implemented by `mailroom-smtp` and `mailroom-gmail`.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait::async_trait]
pub trait MessageTransport: Send + Sync + Debug {
    /// Which kind of transport this is.
    fn kind(&self) -> TransportKind;

    /// Sends one message with the given credentials.
    async fn send(
        &self,
        message: &OutgoingMessage,
        credentials: &Credentials,
    ) -> Result<Delivery, TransportError>;
}

/// What went wrong in a send, as the facade's retry policy and the CLI need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The server refused the credentials; a fresh token may work (refresh once, retry).
    AuthenticationRejected,
    /// The token cannot work for this account (wrong account or scope): sign in again.
    SignInRequired,
    /// The mailbox or tenant must be configured by an administrator (SMTP AUTH disabled,
    /// Gmail not enabled).
    AccountConfiguration,
    /// The From address is not one this account may send as.
    SendAsDenied,
    /// The server refused the message itself (recipient, content, policy).
    MessageRejected,
    /// The message is larger than the provider accepts.
    MessageTooLarge,
    /// The server's certificate could not be verified or TLS failed.
    Tls,
    /// The connection would not protect the credentials (no TLS where it is required).
    Insecure,
    /// Worth retrying later: 4xx replies, HTTP 429/5xx, dropped connections, timeouts.
    Transient,
    /// The server refused another connection for this mailbox (Exchange Online's
    /// `432 4.3.2 Concurrent connections limit exceeded`: three per mailbox). Not a pause:
    /// retry soon on fewer connections. Transient ([`TransportError::is_transient`]).
    TooManyConnections,
    /// The provider paused sending from this mailbox for a while: a quota is used up
    /// (Exchange Online's 10,000 recipients per rolling 24 hours, `554 5.2.0 ...
    /// SubmissionQuotaExceededException`) or the mailbox is throttled after continuous
    /// errors (`550 5.2.251`-`5.2.255`). Nothing is wrong with the message: hold it (and
    /// the mailbox's other messages) until [`TransportError::retry_after`] has passed,
    /// never mark it failed and never retry it at once.
    MailboxThrottled,
    /// Any other failure that retrying will not fix.
    Permanent,
    /// The whole message was handed over but the server's final answer never came (the
    /// final-reply timeout passed or the connection dropped): the server may or may not
    /// have accepted it. Not retried at once; a queued message is retried at most once
    /// more, after a delay, and a duplicate with the same Message-ID is then possible.
    DeliveryUnknown,
}

/// The longest wait a server's `Retry-After` (or a reply's equivalent) is honoured for: one
/// hour, for every provider. Longer asks are clamped to it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The most bytes of a server's reply a [`TransportError`] keeps: a reply is the server's
/// (or a proxy's) words, and a hostile or broken one must not carry megabytes into an
/// error, a log line or the outbox's `last_error`. Longer replies are cut, marked `...`.
pub const MAX_SERVER_REPLY: usize = 1024;

/// The most bytes of a [`TransportError`]'s message (which may quote a server), cut the
/// same way.
pub const MAX_ERROR_MESSAGE: usize = 2048;

/// `text` cut to at most `max` bytes on a character boundary, ending in `...` when cut.
fn bounded(mut text: String, max: usize) -> String {
    const MARK: &str = "...";
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub(MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(MARK);
    text
}

/// A failed send: its kind, what happened, what to do, and the server's words.
///
/// The message and reply never contain credentials.
#[derive(Debug)]
pub struct TransportError {
    kind: TransportErrorKind,
    message: String,
    remediation: Option<String>,
    remedy: Option<Box<crate::Remedy>>,
    server_reply: Option<String>,
    retry_after: Option<Duration>,
    throttled: bool,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl TransportError {
    /// An error of `kind` with a message in the user's terms (at most
    /// [`MAX_ERROR_MESSAGE`] bytes are kept).
    pub fn new(kind: TransportErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: bounded(message.into(), MAX_ERROR_MESSAGE),
            remediation: None,
            remedy: None,
            server_reply: None,
            retry_after: None,
            throttled: false,
            source: None,
        }
    }

    /// Marks a transient failure as the provider's rate limiting of the mailbox (Graph's
    /// `429`, the Gmail API's `rateLimitExceeded` / `userRateLimitExceeded`): one send may
    /// wait out a short `Retry-After`, and the outbox pauses the whole mailbox for it
    /// ([`TransportError::is_throttled`]).
    pub fn throttled(mut self) -> Self {
        self.throttled = true;
        self
    }

    /// Adds what the user or administrator should do, in prose that names no program.
    pub fn with_remediation(mut self, remediation: impl Into<String>) -> Self {
        self.remediation = Some(remediation.into());
        self
    }

    /// Adds the action that fixes it, for a front end to offer.
    pub fn with_remedy(mut self, remedy: crate::Remedy) -> Self {
        self.remedy = Some(Box::new(remedy));
        self
    }

    /// Adds the server's reply text (at most [`MAX_SERVER_REPLY`] bytes are kept).
    pub fn with_server_reply(mut self, reply: impl Into<String>) -> Self {
        self.server_reply = Some(bounded(reply.into(), MAX_SERVER_REPLY));
        self
    }

    /// Adds how long the server asked the client to wait, at most [`MAX_RETRY_AFTER`]: a
    /// server cannot park a message (or overflow a clock) with a wait from the far future.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after.min(MAX_RETRY_AFTER));
        self
    }

    /// Adds the underlying error.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> TransportErrorKind {
        self.kind
    }

    /// What happened.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What to do about it, when known.
    pub fn remediation(&self) -> Option<&str> {
        self.remediation.as_deref()
    }

    /// The action that fixes it, when there is one.
    pub fn remedy(&self) -> Option<&crate::Remedy> {
        self.remedy.as_deref()
    }

    /// The same error with its remedy's unknown account filled in (the facade knows
    /// which account a transport served).
    #[must_use]
    pub fn for_account(mut self, account: crate::AccountRef) -> Self {
        self.remedy = self
            .remedy
            .map(|remedy| Box::new(remedy.for_account(account)));
        self
    }

    /// The server's reply, when there was one.
    pub fn server_reply(&self) -> Option<&str> {
        self.server_reply.as_deref()
    }

    /// The wait the server asked for (`Retry-After`), when it asked.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// True when retrying later may succeed: a transient failure, or too many connections
    /// (retried on fewer). A paused mailbox is not transient in this sense (it is not
    /// retried within a send): see [`TransportError::is_mailbox_paused`].
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            TransportErrorKind::Transient | TransportErrorKind::TooManyConnections
        )
    }

    /// True when the provider asked the mailbox to slow down: a rate limit (marked with
    /// [`TransportError::throttled`]) or a pause ([`TransportError::is_mailbox_paused`]).
    /// The outbox pauses the mailbox, not only the message, for the `Retry-After` or a
    /// backoff, while other mailboxes keep sending.
    pub fn is_throttled(&self) -> bool {
        self.throttled || self.is_mailbox_paused()
    }

    /// True when the server refused one more connection for the mailbox: use fewer.
    pub fn is_too_many_connections(&self) -> bool {
        self.kind == TransportErrorKind::TooManyConnections
    }

    /// True when the provider paused sending from the mailbox (a quota or throttling):
    /// the message is fine and is held until [`TransportError::retry_after`] has passed.
    pub fn is_mailbox_paused(&self) -> bool {
        self.kind == TransportErrorKind::MailboxThrottled
    }

    /// True when a refreshed token may succeed.
    pub fn is_auth_rejected(&self) -> bool {
        self.kind == TransportErrorKind::AuthenticationRejected
    }

    /// True when the message may have been delivered: the server took the whole message
    /// but its final answer never came.
    pub fn is_delivery_unknown(&self) -> bool {
        self.kind == TransportErrorKind::DeliveryUnknown
    }

    /// True when only a new sign-in can fix it.
    pub fn needs_sign_in(&self) -> bool {
        self.kind == TransportErrorKind::SignInRequired
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(reply) = &self.server_reply {
            write!(f, " (server said: {reply})")?;
        }
        if let Some(remediation) = &self.remediation {
            write!(f, "; {remediation}")?;
        }
        Ok(())
    }
}

impl StdError for TransportError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod retry_after_tests {
    use super::*;

    #[test]
    fn a_wait_from_the_far_future_is_clamped_to_an_hour() {
        let error = TransportError::new(TransportErrorKind::Transient, "slow down")
            .with_retry_after(Duration::from_secs(u64::MAX));
        assert_eq!(error.retry_after(), Some(MAX_RETRY_AFTER));
        let error = TransportError::new(TransportErrorKind::Transient, "slow down")
            .with_retry_after(Duration::from_secs(30));
        assert_eq!(error.retry_after(), Some(Duration::from_secs(30)));
        let exactly = TransportError::new(TransportErrorKind::Transient, "slow down")
            .with_retry_after(MAX_RETRY_AFTER);
        assert_eq!(exactly.retry_after(), Some(MAX_RETRY_AFTER));
    }
}
