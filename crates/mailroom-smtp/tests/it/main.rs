//! mailroom-smtp's integration tests, against aiosmtpd (`mailroom_testkit::smtp`) on
//! 127.0.0.1: authentication, TLS, message bytes, pooling and the reply table.

mod auth;
mod messages;
mod modes;
mod pool;
mod replies;
mod support;
mod tls;
