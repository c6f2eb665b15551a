//! The smtp crate's error: why a transport could not be built. Send failures are
//! `TransportError`s, made in `reply.rs`.

use mailroom_model::{Provider, ValidationError};

/// Why a transport could not be built. Send failures are
/// [`mailroom_model::TransportError`]s instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server settings do not pass validation.
    #[error("the smtp settings are not valid")]
    InvalidSettings(#[source] ValidationError),
    /// The account's provider does not send through SMTP.
    #[error("{provider} accounts send through the Gmail API, not smtp; use the gmail transport")]
    UnsupportedProvider {
        /// The provider of the settings.
        provider: Provider,
    },
    /// The pool size is zero.
    #[error("the smtp pool size is 0; give a pool size of at least 1")]
    InvalidPoolSize,
    /// The extra trusted root is not usable PEM.
    #[error(
        "the extra trusted root certificate cannot be used: {reason}; give a PEM file with at least one `BEGIN CERTIFICATE` block"
    )]
    InvalidRootCertificate {
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS configuration could not be built.
    #[error("cannot set up tls for {host}: {reason}")]
    TlsSetup {
        /// The server name.
        host: String,
        /// What failed.
        reason: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
