//! mailroom's SMTP transport: Microsoft 365 (XOAUTH2, or OAUTHBEARER where a server offers
//! only that) and password servers (PLAIN, LOGIN), over lettre's async SMTP connection on
//! tokio and rustls.
//!
//! [`SmtpTransport`] implements [`mailroom_model::MessageTransport`]. It keeps its own
//! small connection pool (see `pool.rs`) instead of lettre's `AsyncSmtpTransport`, because
//! lettre 0.11.23 never sets `TCP_NODELAY` (every message then waits for a delayed ACK)
//! and NOOPs before every reuse; here sockets are `TCP_NODELAY` and a connection is
//! checked only after it sat idle.

mod config;
mod connection;
mod pool;
mod reply;
mod sasl;
mod tls;
mod transport;

pub use config::{
    DEFAULT_HEALTH_CHECK_AFTER, DEFAULT_IDLE_TIMEOUT, DEFAULT_POOL_SIZE, Error, Result,
    SmtpTransportConfig,
};
pub use sasl::{oauthbearer_initial_response, xoauth2_initial_response};
pub use transport::SmtpTransport;
