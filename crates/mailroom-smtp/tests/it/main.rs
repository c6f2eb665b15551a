//! mailroom-smtp's integration tests, against aiosmtpd (`mailroom_testkit::smtp`) on
//! 127.0.0.1: authentication, TLS, message bytes, pooling and the reply table; and against
//! scripted hostile servers (`mailroom_testkit::scripted`).

mod auth;
mod hostile;
mod messages;
mod modes;
mod pool;
mod replies;
mod support;
mod tls;
