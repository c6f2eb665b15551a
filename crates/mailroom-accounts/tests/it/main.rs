//! Integration tests of the accounts repository and resolution, each run on SQLite and on
//! PostgreSQL (a fresh database per test).

mod repository;
mod resolution;

use mailroom_accounts::Accounts;
use mailroom_crypto::KeyRing;
use mailroom_model::{Provider, Secret, ServerSettingsChange};
use mailroom_testkit::{Backend, TestDatabase};

/// A repository over the test database with a fixed key.
fn accounts<'a>(
    db: &'a TestDatabase,
    key: &'a KeyRing,
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
