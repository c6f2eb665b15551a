//! mailroom-smtp's integration tests, against aiosmtpd (see `tests/smtp_server.py`) on
//! 127.0.0.1: authentication, TLS, message bytes, pooling and the reply table.

mod auth;
mod messages;
mod pool;
mod replies;
mod server;
mod support;
mod tls;
