//! The schema on both backends: every table is made, opening again changes nothing, and
//! the schema's own checks refuse what the code must never write.

use mailroom_migrations::{open, schema_version};
use mailroom_testkit::{TestDatabase, on_both_backends};
use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};

on_both_backends!(
    every_table_is_made_and_opening_again_changes_nothing,
    the_schema_refuses_a_second_company_account,
    the_newest_migrations_roll_back_and_apply_again,
);

const TABLES: [&str; 8] = [
    "company_account",
    "user_account",
    "setting",
    "key_check",
    "oauth_app",
    "oauth_token",
    "oauth_access_token",
    "outbox_message",
];

async fn every_table_is_made_and_opening_again_changes_nothing(db: &TestDatabase) {
    for table in TABLES {
        let count = db
            .db
            .query_one(Statement::from_string(
                db.db.get_database_backend(),
                format!("SELECT COUNT(*) AS n FROM {table}"),
            ))
            .await
            .unwrap_or_else(|error| panic!("table {table}: {error}"))
            .unwrap();
        assert_eq!(count.try_get::<i64>("", "n").unwrap(), 0, "{table}");
    }
    let version = schema_version(&db.db).await.unwrap();
    assert!(version.is_some());
    // Opening a migrated database again applies nothing new.
    let again = open(&db.url).await.unwrap();
    assert_eq!(schema_version(&again).await.unwrap(), version);
    again.close().await.unwrap();
}

async fn the_schema_refuses_a_second_company_account(db: &TestDatabase) {
    let backend = db.db.get_database_backend();
    let insert = |id: i32| {
        Statement::from_string(
            backend,
            format!(
                "INSERT INTO company_account (id, provider, host, port, tls, tls_startup, timeout_ms, smtp_user, allow_plaintext_loopback, updated_at) \
                 VALUES ({id}, 'none', 'smtp.example.net', 587, TRUE, 'auto', 100000, 'relay', FALSE, CURRENT_TIMESTAMP)"
            ),
        )
    };
    db.db.execute(insert(1)).await.unwrap();
    let refused = db.db.execute(insert(2)).await;
    assert!(refused.is_err(), "a second company account was stored");
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_sqlite_database_and_its_journal_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("erp.sqlite");
    let db = open(&format!("sqlite://{}?mode=rwc", file.display()))
        .await
        .unwrap();
    // A write, so the write-ahead log and shared memory exist.
    db.execute(Statement::from_string(
        db.get_database_backend(),
        "INSERT INTO setting (key, value) VALUES ('probe', 'x')".to_owned(),
    ))
    .await
    .unwrap();
    for name in ["erp.sqlite", "erp.sqlite-wal", "erp.sqlite-shm"] {
        let path = dir.path().join(name);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|error| panic!("{name}: {error}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name} is {:o}", mode & 0o777);
    }
    db.close().await.unwrap();
}

/// Four processes' worth of pools opening one empty PostgreSQL database at once: the
/// migration lock makes them migrate one after the other, and all four open it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_first_starts_at_once_on_postgresql_all_succeed() {
    let server = mailroom_testkit::postgres_server_url();
    let admin = sea_orm_migration::sea_orm::Database::connect(&server)
        .await
        .expect("the PostgreSQL server");
    let name = format!("mailroom_first_start_{:016x}", rand_suffix());
    let backend = admin.get_database_backend();
    admin
        .execute(Statement::from_string(
            backend,
            format!("CREATE DATABASE {name}"),
        ))
        .await
        .unwrap();
    let url = url_with_database(&server, &name);
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { open(&url).await })
        })
        .collect();
    let mut errors = Vec::new();
    for opened in opens {
        match opened.await.unwrap() {
            Ok(db) => db.close().await.unwrap(),
            Err(error) => errors.push(error.to_string()),
        }
    }
    admin
        .execute(Statement::from_string(
            backend,
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        ))
        .await
        .unwrap();
    assert!(errors.is_empty(), "{errors:#?}");
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}

/// `server` (a PostgreSQL URL) naming `database` instead of its own.
fn url_with_database(server: &str, database: &str) -> String {
    let mut url = url::Url::parse(server).expect("a PostgreSQL URL");
    url.set_path(database);
    url.to_string()
}

/// Writers that read before they write, on one SQLite file at once from separate pools
/// (as separate processes would be): with [`begin_write`] each waits for the write lock on
/// the busy timeout instead of failing with "database is locked", and none loses another's
/// update.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_writers_that_read_first_wait_for_each_other_instead_of_failing() {
    use mailroom_migrations::begin_write;

    const WRITERS: usize = 8;
    const ROUNDS: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("writers.sqlite").display()
    );
    let first = open(&url).await.unwrap();
    first
        .execute_unprepared("CREATE TABLE counter (n INTEGER NOT NULL)")
        .await
        .unwrap();
    first
        .execute_unprepared("INSERT INTO counter (n) VALUES (0)")
        .await
        .unwrap();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let url = url.clone();
        let barrier = barrier.clone();
        writers.push(tokio::spawn(async move {
            let db = open(&url).await.unwrap();
            barrier.wait().await;
            for _ in 0..ROUNDS {
                let transaction = begin_write(&db).await?;
                let row = transaction
                    .query_one(Statement::from_string(
                        transaction.get_database_backend(),
                        "SELECT n FROM counter",
                    ))
                    .await?
                    .unwrap();
                let n: i64 = row.try_get("", "n")?;
                transaction
                    .execute_unprepared(&format!("UPDATE counter SET n = {}", n + 1))
                    .await?;
                transaction.commit().await?;
            }
            Ok::<_, sea_orm_migration::sea_orm::DbErr>(())
        }));
    }
    for writer in writers {
        writer.await.unwrap().expect("every writer succeeds");
    }
    let row = first
        .query_one(Statement::from_string(
            first.get_database_backend(),
            "SELECT n FROM counter",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.try_get::<i64>("", "n").unwrap(),
        (WRITERS * ROUNDS) as i64,
        "no update lost"
    );
}

/// The newest migrations' `down` undo their `up` (columns renamed back, added ones
/// dropped), so applying them again succeeds and ends at the same version.
async fn the_newest_migrations_roll_back_and_apply_again(db: &TestDatabase) {
    use mailroom_migrations::MigratorTrait;
    let version = schema_version(&db.db).await.unwrap();
    mailroom_migrations::Migrator::down(&db.db, Some(3))
        .await
        .unwrap();
    assert_ne!(schema_version(&db.db).await.unwrap(), version);
    mailroom_migrations::Migrator::up(&db.db, None)
        .await
        .unwrap();
    assert_eq!(schema_version(&db.db).await.unwrap(), version);
}
