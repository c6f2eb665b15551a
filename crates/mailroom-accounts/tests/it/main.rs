//! Integration tests of the accounts repository and resolution, each run on SQLite and on
//! PostgreSQL (a fresh database per test).

mod repository;
mod resolution;

use mailroom_accounts::Accounts;
use mailroom_crypto::EncryptionKey;
use mailroom_model::{Provider, Secret, ServerSettingsChange};
use mailroom_testkit::{Backend, TestDatabase};

/// Runs each listed `async fn(TestDatabase)` once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = mailroom_testkit::TestDatabase::new(mailroom_testkit::Backend::Sqlite).await;
                    super::$name(&db).await;
                    db.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = mailroom_testkit::TestDatabase::new(mailroom_testkit::Backend::Postgres).await;
                    super::$name(&db).await;
                    db.finish().await;
                }
            )*
        }
    };
}

/// A repository over the test database with a fixed key.
fn accounts<'a>(
    db: &'a TestDatabase,
    key: &'a EncryptionKey,
) -> Accounts<'a, sea_orm::DatabaseConnection> {
    Accounts::new(&db.db, key)
}

fn microsoft(user: &str) -> ServerSettingsChange {
    ServerSettingsChange {
        provider: Some(Provider::Microsoft),
        smtp_user: Some(user.to_owned()),
        ..Default::default()
    }
}

fn google(user: &str) -> ServerSettingsChange {
    ServerSettingsChange {
        provider: Some(Provider::Google),
        smtp_user: Some(user.to_owned()),
        ..Default::default()
    }
}

fn password_server(host: &str, user: &str, password: &str) -> ServerSettingsChange {
    ServerSettingsChange {
        provider: Some(Provider::None),
        host: Some(host.to_owned()),
        smtp_user: Some(user.to_owned()),
        password: Some(Secret::new(password)),
        ..Default::default()
    }
}

#[allow(dead_code)]
fn backend_name(db: &TestDatabase) -> &'static str {
    match db.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}
