//! The graph crate's error: a configuration the transport cannot be built with. Send
//! failures are `TransportError`s, made in `reply.rs`.

use crate::{DEFAULT_BASE_URL, MAX_UPLOAD_CHUNK};

/// A problem in the configuration, found when the transport is built (send failures are
/// [`mailroom_model::TransportError`]s instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The base URL is not `https://` (and not an allowed loopback test server).
    #[error(
        "the Microsoft Graph URL `{url}` does not use https; give an https URL (plain http is accepted only for a loopback test server when plaintext is explicitly allowed)"
    )]
    InsecureUrl {
        /// The URL as given, without any password.
        url: String,
    },

    /// The base URL cannot serve as a base (a query, a fragment, a password, no host).
    #[error(
        "the Microsoft Graph URL `{url}` cannot be used: {problem}; give a base URL such as {DEFAULT_BASE_URL}"
    )]
    InvalidUrl {
        /// The URL as given, without any password.
        url: String,
        /// What is wrong with it.
        problem: &'static str,
    },

    /// `save_to_sent_items = false` was asked for, which the MIME send cannot honour.
    #[error(
        "Graph's MIME send always saves a copy in Sent Items (saveToSentItems exists only in the JSON form of sendMail, and a sent draft is saved too); keep saving to Sent Items, or send this account over SMTP if no copy may be kept"
    )]
    SaveToSentItemsUnsupported,

    /// The upload chunk size is zero or above 4 MiB.
    #[error(
        "the upload chunk size {chunk_size} is not between 1 and {MAX_UPLOAD_CHUNK} bytes (4 MiB, Outlook's limit per request); use for example 4194304"
    )]
    InvalidChunkSize {
        /// The size given.
        chunk_size: u64,
    },

    /// The maximum message size is zero.
    #[error(
        "the maximum message size is 0 bytes; give the mailbox's limit (36700160, 35 MB, unless an administrator raised it)"
    )]
    InvalidMaxMessageSize,

    /// The extra trusted root is not a PEM certificate.
    #[error(
        "the extra root certificate cannot be used: {problem}; give a PEM file with at least one `-----BEGIN CERTIFICATE-----` block"
    )]
    InvalidRootCertificate {
        /// What is wrong with it.
        problem: String,
        /// The parser's error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client for Microsoft Graph; check the extra root certificate")]
    HttpClient {
        /// reqwest's error, boxed so reqwest's types stay out of this crate's API.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
