//! The facade's integration tests: end-to-end sends against wiremock (token endpoint,
//! Gmail API) and the aiosmtpd test server, the outbox and the agent on SQLite and
//! PostgreSQL.

// mailroom-smtp's harness for the aiosmtpd server, shared rather than copied; it starts
// `tests/smtp_server.py` of this crate, a wrapper that imports mailroom-smtp's server.
#[path = "../../../mailroom-smtp/tests/it/server.rs"]
mod server;

mod outbox;
mod send;
mod support;
