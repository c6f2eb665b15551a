//! Test support shared by mailroom's crates, and the only test code they share: no test or
//! benchmark includes another crate's files.
//!
//! Each part is behind a feature, so a crate's tests build only what they use:
//!
//! - `database`: [`TestDatabase`], a fresh migrated database per test on SQLite or
//!   PostgreSQL, and [`on_both_backends!`], which runs a test on both. PostgreSQL tests read
//!   the server from `MAILROOM_TEST_POSTGRES_URL` (CI and `cargo xtask ci` set it); when it
//!   is missing the test fails with instructions: a test that needs PostgreSQL never skips
//!   silently.
//! - `certificates`: [`certificates::TestCertificates`], a CA made at test time and a
//!   server certificate it issued for `localhost` and `127.0.0.1`.
//! - `smtp`: [`smtp::TestServer`], a real SMTP server (aiosmtpd, run from this crate's
//!   `smtp_server.py`) on 127.0.0.1 with STARTTLS, implicit TLS or none, XOAUTH2,
//!   OAUTHBEARER, PLAIN and LOGIN, scripted replies, and a log of what it received; and
//!   [`scripted::ScriptedServer`], SMTP servers scripted line by line for the hostile cases
//!   (endless lines, bytes behind STARTTLS, late final replies, dropped connections).
//! - `tls-front`: [`tls_front::TlsFront`], an HTTPS front with its own CA for a plain
//!   HTTP server on loopback (wiremock, the sandbox), to test which roots a client trusts.
//! - `sandbox`: [`sandbox::endpoint_overrides`], an app registration's endpoints pointing
//!   at a running `mailroom-sandbox`.
//!
//! Used only as a dev-dependency.
//!
//! Built alone (`cargo test -p mailroom-testkit`), the `database` part is on by default;
//! the crates that use the kit name the parts they need.
//!
//! ```
//! use mailroom_testkit::{Backend, TestDatabase};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let database = TestDatabase::new(Backend::Sqlite).await;
//! assert!(database.url.starts_with("sqlite://"));
//! // Already migrated: the code under test gets `database.db` or `database.url`.
//! let version = mailroom_migrations::schema_version(&database.db).await.unwrap();
//! assert!(version.is_some());
//! database.finish().await;
//! # }
//! ```

pub mod bench;
#[cfg(feature = "certificates")]
pub mod certificates;
#[cfg(feature = "database")]
mod database;
#[cfg(feature = "sandbox")]
pub mod sandbox;
#[cfg(feature = "smtp")]
pub mod scripted;
#[cfg(feature = "smtp")]
pub mod smtp;
#[cfg(feature = "tls-front")]
pub mod tls_front;

#[cfg(feature = "database")]
pub use database::{
    Backend, POSTGRES_URL_VARIABLE, TestDatabase, postgres_server_url, rerun_with_postgres_default,
    sqlite_url, temp_path,
};

/// Runs each listed `async fn(&TestDatabase)` once on SQLite and once on PostgreSQL, as the
/// tests `sqlite::NAME` and `postgres::NAME` (each on a fresh database, dropped at the end).
///
/// The calling crate needs `tokio` (with `macros` and `rt-multi-thread`) among its
/// dev-dependencies.
#[cfg(feature = "database")]
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::TestDatabase::new($crate::Backend::Sqlite).await;
                    super::$name(&db).await;
                    db.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::TestDatabase::new($crate::Backend::Postgres).await;
                    super::$name(&db).await;
                    db.finish().await;
                }
            )*
        }
    };
}

// The README's example runs as a doctest too, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
