//! The schema on both backends: every table is made, opening again changes nothing, and
//! the schema's own checks refuse what the code must never write.

use mailroom_migrations::{open, schema_version};
use mailroom_testkit::{TestDatabase, on_both_backends};
use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};

on_both_backends!(
    every_table_is_made_and_opening_again_changes_nothing,
    the_schema_refuses_a_second_company_account,
);

const TABLES: [&str; 7] = [
    "company_account",
    "user_account",
    "setting",
    "key_check",
    "oauth_app",
    "oauth_token",
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
