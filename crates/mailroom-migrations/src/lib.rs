//! mailroom's database schema as sea-orm migrations, and [`open`], which connects to
//! SQLite or PostgreSQL and brings the schema up to date.
//!
//! Every crate that reads or writes mailroom's tables (`mailroom-accounts`,
//! `mailroom-tokens`, the `mailroom` facade) expects a database this crate has migrated:
//! run [`open`] (or [`Migrator::up`] on a connection of your own) before anything else.
//! Migrating is idempotent, so every process may run it at start.
//!
//! ```
//! use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // `sqlite://path?mode=rwc` or `postgres://...` in production.
//! let db = mailroom_migrations::open("sqlite::memory:").await?;
//! let rows = db
//!     .query_all(Statement::from_string(
//!         DbBackend::Sqlite,
//!         "SELECT name FROM sqlite_master \
//!          WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'seaql_migrations' \
//!          ORDER BY name",
//!     ))
//!     .await?;
//! let tables: Vec<String> = rows
//!     .iter()
//!     .map(|row| row.try_get("", "name"))
//!     .collect::<Result<_, _>>()?;
//! for table in [
//!     "company_account", "user_account", "setting", "key_check", // mailroom-accounts
//!     "oauth_app", "oauth_token", "oauth_access_token",          // mailroom-tokens
//!     "outbox_message", "outbox_chunk",                          // mailroom (the outbox)
//! ] {
//!     assert!(tables.iter().any(|name| name == table), "{table}");
//! }
//! // The newest migration applied, e.g. `m20261201_000003_outbox`.
//! assert!(mailroom_migrations::schema_version(&db).await?.is_some());
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

pub use sea_orm_migration::MigratorTrait;
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectOptions, Database, DatabaseConnection};

mod m20261201_000001_accounts;
mod m20261201_000002_tokens;
mod m20261201_000003_outbox;
mod m20261202_000004_from_and_subject;
mod m20261203_000005_key_ring;
mod m20261204_000006_plaintext_password;
mod m20261205_000007_outbox_chunks;
mod m20261206_000008_redirect_uri;
mod m20261207_000009_signed_in_identity;
mod m20261208_000010_resource_tokens;
mod m20261208_000011_account_route;
mod m20261209_000012_account_auth;
mod m20261209_000013_app_credentials;
mod m20261210_000014_account_limits;
mod m20261210_000015_outbox_pacing;

/// Every migration, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261201_000001_accounts::Migration),
            Box::new(m20261201_000002_tokens::Migration),
            Box::new(m20261201_000003_outbox::Migration),
            Box::new(m20261202_000004_from_and_subject::Migration),
            Box::new(m20261203_000005_key_ring::Migration),
            Box::new(m20261204_000006_plaintext_password::Migration),
            Box::new(m20261205_000007_outbox_chunks::Migration),
            Box::new(m20261206_000008_redirect_uri::Migration),
            Box::new(m20261207_000009_signed_in_identity::Migration),
            Box::new(m20261208_000010_resource_tokens::Migration),
            Box::new(m20261208_000011_account_route::Migration),
            Box::new(m20261209_000012_account_auth::Migration),
            Box::new(m20261209_000013_app_credentials::Migration),
            Box::new(m20261210_000014_account_limits::Migration),
            Box::new(m20261210_000015_outbox_pacing::Migration),
        ]
    }
}

/// Connects to `database_url` (`sqlite://path?mode=rwc` or `postgres://...`) and applies
/// every pending migration. Migrating is idempotent.
///
/// SQLite gets WAL journaling and a pool of several connections (sea-orm's default is
/// one), so readers do not wait for writers and several processes can share the file.
pub async fn open(database_url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(database_url.to_owned());
    options
        .max_connections(8)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    if database_url.starts_with("sqlite:") {
        create_private_sqlite_file(database_url)
            .map_err(|error| DbErr::Custom(format!("cannot create the SQLite file: {error}")))?;
        options.map_sqlx_sqlite_opts(|sqlite| {
            sqlite
                .journal_mode(sea_orm_migration::sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true)
        });
    }
    let postgres = database_url.starts_with("postgres:") || database_url.starts_with("postgresql:");
    // PostgreSQL: one direct connection first (see `probe_postgres`), which then holds an
    // advisory lock while the schema is brought up to date, so processes starting at once
    // migrate one after the other instead of racing on the catalog.
    let guard = if postgres {
        Some(probe_postgres(database_url).await?)
    } else {
        None
    };
    let db = Database::connect(options).await?;
    let migrated = Migrator::up(&db, None).await;
    if let Some(guard) = guard {
        guard.release().await;
    }
    migrated?;
    Ok(db)
}

/// Begins a transaction that is going to write, taking SQLite's write lock at its start.
///
/// A plain SQLite transaction is deferred: it reads under a snapshot and asks for the
/// write lock at its first write. If another connection wrote in between, SQLite cannot
/// upgrade the stale snapshot and fails at once with "database is locked", whatever the
/// busy timeout (WAL mode). A transaction that writes first instead waits for the lock on
/// the busy timeout like any writer. sea-orm 1.1 cannot begin with `BEGIN IMMEDIATE` on
/// SQLite, so the transaction's first statement is a write that changes nothing (a
/// statement that may write takes the write lock before it looks at any row). On
/// PostgreSQL this is a plain `BEGIN`: rows are locked as they are written.
///
/// Use it for every short transaction that reads and then writes (configuration
/// commands, workflows); a read-only transaction needs none.
pub async fn begin_write(
    db: &DatabaseConnection,
) -> Result<sea_orm_migration::sea_orm::DatabaseTransaction, DbErr> {
    use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend, TransactionTrait};
    let transaction = db.begin().await?;
    if db.get_database_backend() == DatabaseBackend::Sqlite {
        transaction
            .execute_unprepared("UPDATE seaql_migrations SET version = version WHERE 0")
            .await?;
    }
    Ok(transaction)
}

/// The advisory lock key of mailroom's migrations (any constant; "mailroom" in ASCII).
const MIGRATION_LOCK: i64 = 0x6d61_696c_726f_6f6d;

/// A connection holding the migration lock.
struct MigrationGuard(sea_orm_migration::sea_orm::sqlx::postgres::PgConnection);

impl MigrationGuard {
    async fn release(self) {
        use sea_orm_migration::sea_orm::sqlx::{self, Connection};
        let mut connection = self.0;
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut connection)
            .await;
        let _ = connection.close().await;
    }
}

/// Creates a new SQLite file with mode 0600 before SQLite does (which would make it 0644):
/// it holds message bodies. SQLite gives its `-wal` and `-shm` files the database file's
/// mode. An existing file, `:memory:` and non-Unix systems are left as they are.
fn create_private_sqlite_file(database_url: &str) -> std::io::Result<()> {
    let rest = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .unwrap_or_default();
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.starts_with(':') || std::path::Path::new(path).exists() {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            // Another process made it first: theirs is as good.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            other => other.map(drop),
        }
    }
    #[cfg(not(unix))]
    {
        Ok(())
    }
}

/// One direct connection before the pool: the pool retries a refused connection until its
/// acquire timeout, so a server that is down or a database that does not exist would
/// surface only after half a minute; this says so at once (connect timeout: 10 s). The
/// connection then takes the migration lock (waiting while another process migrates).
async fn probe_postgres(database_url: &str) -> Result<MigrationGuard, DbErr> {
    use sea_orm_migration::sea_orm::sqlx::{Connection, postgres::PgConnection};
    use sea_orm_migration::sea_orm::{RuntimeErr, sqlx};
    let options: sqlx::postgres::PgConnectOptions = database_url
        .parse()
        .map_err(|error: sqlx::Error| DbErr::Conn(RuntimeErr::SqlxError(error)))?;
    let mut connection = match tokio::time::timeout(
        Duration::from_secs(10),
        PgConnection::connect_with(&options),
    )
    .await
    {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => return Err(DbErr::Conn(RuntimeErr::SqlxError(error))),
        Err(_) => {
            return Err(DbErr::Conn(RuntimeErr::Internal(
                "the PostgreSQL server did not answer within 10 s".to_owned(),
            )));
        }
    };
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut connection)
        .await
        .map_err(|error| DbErr::Conn(RuntimeErr::SqlxError(error)))?;
    Ok(MigrationGuard(connection))
}

/// The name of the newest migration applied to `db` (the schema version), if any.
pub async fn schema_version(db: &DatabaseConnection) -> Result<Option<String>, DbErr> {
    let applied = Migrator::get_applied_migrations(db).await?;
    Ok(applied.last().map(|migration| migration.name().to_owned()))
}

// The README's example runs as a doctest too, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
