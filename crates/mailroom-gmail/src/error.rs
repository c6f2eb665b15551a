//! The gmail crate's error: a configuration the transport cannot be built with. Send
//! failures are `TransportError`s, made in `reply.rs`.

use crate::{DEFAULT_BASE_URL, MAX_MESSAGE_SIZE, RESUMABLE_CHUNK_GRANULARITY};

/// A problem in the configuration, found when the transport is built (send failures are
/// [`mailroom_model::TransportError`]s instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The base URL is not `https://` (and not an allowed loopback test server).
    #[error(
        "the gmail API URL `{url}` does not use https; give an https URL (plain http is accepted only for a loopback test server when plaintext is explicitly allowed)"
    )]
    InsecureUrl {
        /// The URL as given, without any password.
        url: String,
    },

    /// The base URL cannot serve as a base (a query, a fragment, a password, no host).
    #[error(
        "the gmail API URL `{url}` cannot be used: {problem}; give a base URL such as {DEFAULT_BASE_URL}"
    )]
    InvalidUrl {
        /// The URL as given, without any password.
        url: String,
        /// What is wrong with it.
        problem: &'static str,
    },

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

    /// The resumable chunk size is not a positive multiple of 256 KiB.
    #[error(
        "the resumable upload chunk size {chunk_size} is not a positive multiple of {RESUMABLE_CHUNK_GRANULARITY} bytes (256 KiB) as Google requires; use for example 8388608 (8 MiB)"
    )]
    InvalidChunkSize {
        /// The size given.
        chunk_size: u64,
    },

    /// The resumable threshold is above what Gmail accepts in one upload anyway.
    #[error(
        "the resumable upload threshold {threshold} is above gmail's limit of {MAX_MESSAGE_SIZE} bytes; use a smaller threshold (the default is 5 MiB)"
    )]
    InvalidThreshold {
        /// The threshold given.
        threshold: u64,
    },

    /// The HTTP client could not be built (a root certificate rustls refused, for one).
    #[error("cannot build the HTTP client for the gmail API; check the extra root certificate")]
    HttpClient {
        /// reqwest's error, boxed so reqwest's types stay out of this crate's API.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
