//! The repository: round trips, constraints, sealing, the key check.

use mailroom_accounts::{Account, BindingChange, Error, account_warnings};
use mailroom_crypto::KeyRing;
use mailroom_model::{
    Auth, Binding, FaxFormat, Limit, PaceOverrides, Provider, Route, ServerSettingsChange,
    TlsStartup,
};
use mailroom_testkit::{TestDatabase, on_both_backends};
use sea_orm::{ConnectionTrait, Statement, TransactionTrait};

use crate::{accounts, google, microsoft, password_server};

on_both_backends!(
    company_account_round_trips_and_counts_versions,
    only_one_company_row_can_exist,
    user_accounts_are_added_listed_edited_and_removed,
    a_binding_belongs_to_one_account_only,
    the_schema_refuses_out_of_range_ports_and_passwords_on_oauth_rows,
    passwords_are_sealed_and_bound_to_their_row,
    a_wrong_key_is_refused_with_a_clear_error,
    settings_default_to_sign_in_allowed,
    a_rolled_back_transaction_leaves_nothing,
    google_reports_ignored_settings_and_keeps_its_host,
    the_route_round_trips_and_is_sealed,
    app_only_round_trips_and_is_sealed,
    rows_from_before_the_auth_column_are_delegated,
    limits_round_trip_and_go_back_to_the_default,
    limits_are_outside_the_seal_and_a_corrupt_one_is_refused,
    the_from_address_is_the_sender_else_the_smtp_user,
    a_row_without_its_seal_is_refused_once_seals_are_required,
    a_rotation_reseals_every_password_and_settings_seal_with_the_new_key,
    a_lost_keys_reset_forgets_the_passwords_and_reseals_the_settings,
    every_change_counts_a_new_version,
    settings_round_trip,
    several_accounts_are_read_at_once_as_each_is_alone,
);

async fn column_bytes(db: &TestDatabase, sql: &str) -> Vec<u8> {
    let row = db
        .db
        .query_one(Statement::from_string(
            db.db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap()
        .expect("a row");
    row.try_get_by_index::<Vec<u8>>(0).unwrap()
}

async fn company_account_round_trips_and_counts_versions(db: &TestDatabase) {
    let key = KeyRing::generate();
    let repo = accounts(db, &key);
    assert!(repo.company().await.unwrap().is_none());
    let saved = repo
        .set_company(
            &microsoft("invoices@contoso.example"),
            Some(Some(FaxFormat::parse("{0}@fax.contoso.example").unwrap())),
        )
        .await
        .unwrap();
    assert!(saved.ignored.is_empty());
    let company = repo.company().await.unwrap().unwrap();
    assert_eq!(company, saved.account);
    assert_eq!(company.server.host, "smtp.office365.com");
    assert_eq!(company.server.port, 587);
    assert_eq!(
        company.fax_format.unwrap().as_str(),
        "{0}@fax.contoso.example"
    );

    let change = ServerSettingsChange {
        port: Some(25),
        tls_startup: Some(TlsStartup::StartTls),
        ..Default::default()
    };
    repo.set_company(&change, None).await.unwrap();
    let company = repo.company().await.unwrap().unwrap();
    assert_eq!(company.server.port, 25);
    assert_eq!(company.server.tls_startup, TlsStartup::StartTls);
    assert_eq!(company.server.smtp_user, "invoices@contoso.example");
    assert!(
        company.fax_format.is_some(),
        "an unrelated change keeps the fax format"
    );
    let version = db
        .db
        .query_one(Statement::from_string(
            db.db.get_database_backend(),
            "SELECT version FROM company_account".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap();
    assert_eq!(version, 2);

    repo.set_company(&ServerSettingsChange::default(), Some(None))
        .await
        .unwrap();
    assert!(repo.company().await.unwrap().unwrap().fax_format.is_none());
}

async fn only_one_company_row_can_exist(db: &TestDatabase) {
    let key = KeyRing::generate();
    accounts(db, &key)
        .set_company(&microsoft("a@contoso.example"), None)
        .await
        .unwrap();
    let second = db
        .db
        .execute(Statement::from_string(
            db.db.get_database_backend(),
            "INSERT INTO company_account (id, provider, host, port, tls, tls_startup, timeout_ms, smtp_user, allow_plaintext_loopback, version, updated_at) \
             VALUES (2, 'none', 'h', 25, false, 'auto', 1000, '', false, 1, CURRENT_TIMESTAMP)"
                .to_owned(),
        ))
        .await;
    assert!(
        second.is_err(),
        "a second company row must be refused by the schema"
    );
}

async fn user_accounts_are_added_listed_edited_and_removed(db: &TestDatabase) {
    let key = KeyRing::generate();
    let repo = accounts(db, &key);
    let first = repo
        .add_user_account(
            &microsoft("sa@contoso.example"),
            Some(Binding::system_user("sa").unwrap()),
        )
        .await
        .unwrap()
        .account;
    let second = repo
        .add_user_account(
            &google("bob@example.com"),
            Some(Binding::system_user("bob").unwrap()),
        )
        .await
        .unwrap()
        .account;
    let third = repo
        .add_user_account(
            &password_server("smtp.example.net", "relay", "s3cret"),
            None,
        )
        .await
        .unwrap()
        .account;
    assert!(first.id < second.id && second.id < third.id);
    let listed = repo.user_accounts().await.unwrap();
    assert_eq!(listed, vec![first.clone(), second.clone(), third.clone()]);
    assert_eq!(
        listed[2].server.password.as_ref().unwrap().expose(),
        "s3cret"
    );

    let edited = repo
        .edit_user_account(
            first.id,
            &ServerSettingsChange {
                host: Some("smtp-eu.office365.com".to_owned()),
                ..Default::default()
            },
            BindingChange::Set(Binding::new("Customer", "Territory", "EAST").unwrap()),
        )
        .await
        .unwrap()
        .account;
    assert_eq!(repo.user_account(first.id).await.unwrap(), edited);
    assert_eq!(edited.server.host, "smtp-eu.office365.com");
    assert_eq!(
        edited.binding.unwrap().to_string(),
        "Customer:Territory:EAST"
    );

    let unbound = repo
        .edit_user_account(
            second.id,
            &ServerSettingsChange::default(),
            BindingChange::Clear,
        )
        .await
        .unwrap()
        .account;
    assert!(unbound.binding.is_none());

    repo.remove_user_account(third.id).await.unwrap();
    assert!(matches!(
        repo.user_account(third.id).await,
        Err(Error::AccountNotFound { id }) if id == third.id
    ));
    assert!(matches!(
        repo.remove_user_account(third.id).await,
        Err(Error::AccountNotFound { .. })
    ));
    assert_eq!(repo.user_accounts().await.unwrap().len(), 2);
}

async fn a_binding_belongs_to_one_account_only(db: &TestDatabase) {
    let key = KeyRing::generate();
    let repo = accounts(db, &key);
    let first = repo
        .add_user_account(
            &microsoft("sa@contoso.example"),
            Some(Binding::system_user("sa").unwrap()),
        )
        .await
        .unwrap()
        .account;
    // The same binding in other case and with spaces is the same binding.
    let duplicate = repo
        .add_user_account(
            &microsoft("other@contoso.example"),
            Some(Binding::new("systemuser", "USER_NAME", "  SA ").unwrap()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&duplicate, Error::DuplicateBinding { existing, .. } if *existing == first.id),
        "{duplicate}"
    );
    assert!(
        duplicate
            .to_string()
            .contains(&format!("account {} is already bound", first.id))
    );
    // The unique index backs the check up.
    let raw = db
        .db
        .execute(Statement::from_string(
            db.db.get_database_backend(),
            format!(
                "INSERT INTO user_account (provider, host, port, tls, tls_startup, timeout_ms, smtp_user, allow_plaintext_loopback, version, updated_at, business_object, column_name, column_value, binding_key) \
                 VALUES ('none', 'h', 25, false, 'auto', 1000, '', false, 1, CURRENT_TIMESTAMP, 'x', 'y', 'z', '{}')",
                Binding::system_user("sa").unwrap().key()
            ),
        ))
        .await;
    assert!(
        raw.is_err(),
        "the unique index must refuse a duplicate binding key"
    );
    assert_eq!(repo.user_accounts().await.unwrap().len(), 1);
}

async fn the_schema_refuses_out_of_range_ports_and_passwords_on_oauth_rows(db: &TestDatabase) {
    let key = KeyRing::generate();
    let repo = accounts(db, &key);
    let account = repo
        .add_user_account(&microsoft("sa@contoso.example"), None)
        .await
        .unwrap()
        .account;
    let backend = db.db.get_database_backend();
    for sql in [
        format!("UPDATE user_account SET port = 0 WHERE id = {}", account.id),
        format!(
            "UPDATE user_account SET port = 65536 WHERE id = {}",
            account.id
        ),
        format!(
            "UPDATE user_account SET timeout_ms = 0 WHERE id = {}",
            account.id
        ),
        format!(
            "UPDATE user_account SET provider = 'yahoo' WHERE id = {}",
            account.id
        ),
        format!(
            "UPDATE user_account SET business_object = 'SystemUser' WHERE id = {}",
            account.id
        ),
    ] {
        let result = db
            .db
            .execute(Statement::from_string(backend, sql.clone()))
            .await;
        assert!(result.is_err(), "the schema accepted: {sql}");
    }
    let sealed_password = key.primary().seal(b"x", b"user_account:1:password");
    let result = db
        .db
        .execute(Statement::from_sql_and_values(
            backend,
            match db.backend {
                mailroom_testkit::Backend::Sqlite => {
                    "UPDATE user_account SET password_sealed = ? WHERE id = ?"
                }
                mailroom_testkit::Backend::Postgres => {
                    "UPDATE user_account SET password_sealed = $1 WHERE id = $2"
                }
            },
            [sealed_password.into(), account.id.into()],
        ))
        .await;
    assert!(
        result.is_err(),
        "a password on a Microsoft row must be refused by the schema"
    );
    assert_eq!(repo.user_account(account.id).await.unwrap(), account);
}

async fn passwords_are_sealed_and_bound_to_their_row(db: &TestDatabase) {
    let key = KeyRing::generate();
    let repo = accounts(db, &key);
    let first = repo
        .add_user_account(
            &password_server("smtp.example.net", "one", "first-password-123"),
            None,
        )
        .await
        .unwrap()
        .account;
    let second = repo
        .add_user_account(
            &password_server("smtp.example.net", "two", "second-password-456"),
            None,
        )
        .await
        .unwrap()
        .account;
    repo.set_company(
        &password_server("smtp.example.net", "co", "company-password-789"),
        None,
    )
    .await
    .unwrap();
    for (sql, plaintext) in [
        (
            format!(
                "SELECT password_sealed FROM user_account WHERE id = {}",
                first.id
            ),
            "first-password-123",
        ),
        (
            format!(
                "SELECT password_sealed FROM user_account WHERE id = {}",
                second.id
            ),
            "second-password-456",
        ),
        (
            "SELECT password_sealed FROM company_account".to_owned(),
            "company-password-789",
        ),
    ] {
        let bytes = column_bytes(db, &sql).await;
        assert!(
            !bytes
                .windows(plaintext.len())
                .any(|w| w == plaintext.as_bytes()),
            "plaintext password in the database"
        );
    }
    // Move the first account's ciphertext onto the second row: it must not open there.
    let sealed = column_bytes(
        db,
        &format!(
            "SELECT password_sealed FROM user_account WHERE id = {}",
            first.id
        ),
    )
    .await;
    let backend = db.db.get_database_backend();
    db.db
        .execute(Statement::from_sql_and_values(
            backend,
            match db.backend {
                mailroom_testkit::Backend::Sqlite => {
                    "UPDATE user_account SET password_sealed = ? WHERE id = ?"
                }
                mailroom_testkit::Backend::Postgres => {
                    "UPDATE user_account SET password_sealed = $1 WHERE id = $2"
                }
            },
            [sealed.into(), second.id.into()],
        ))
        .await
        .unwrap();
    let error = repo.user_account(second.id).await.unwrap_err();
    assert!(
        matches!(error, Error::Key(mailroom_crypto::Error::CannotOpen)),
        "{error}"
    );
    assert_eq!(
        repo.user_account(first.id)
            .await
            .unwrap()
            .server
            .password
            .unwrap()
            .expose(),
        "first-password-123"
    );
}

async fn a_wrong_key_is_refused_with_a_clear_error(db: &TestDatabase) {
    let key = KeyRing::generate();
    accounts(db, &key).verify_key().await.unwrap();
    accounts(db, &key).verify_key().await.unwrap();
    let wrong = KeyRing::generate();
    let error = accounts(db, &wrong).verify_key().await.unwrap_err();
    let text = error.to_string();
    let needed = key.primary().id();
    assert!(
        text.contains(&format!("this host lacks key {needed}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("this host has {}", wrong.primary().id())),
        "{text}"
    );
    assert_eq!(
        error.remedy(),
        Some(mailroom_model::Remedy::RestoreKey { key_id: needed })
    );
    // A write from the host that lacks the key is refused before anything is stored.
    let change = ServerSettingsChange {
        provider: Some(Provider::None),
        host: Some("smtp.example.com".to_owned()),
        smtp_user: Some("office@example.com".to_owned()),
        password: Some(mailroom_model::Secret::new("hunter2")),
        ..Default::default()
    };
    let refused = accounts(db, &wrong).set_company(&change, None).await;
    assert!(
        matches!(
            &refused,
            Err(Error::Key(mailroom_crypto::Error::MissingKey { .. }))
        ),
        "{refused:?}"
    );
    assert!(accounts(db, &key).company().await.unwrap().is_none());
    // A ring holding both keys works: the database's key seals.
    let both = KeyRing::new([wrong.primary().clone(), key.primary().clone()]).unwrap();
    accounts(db, &both).verify_key().await.unwrap();
    accounts(db, &both)
        .set_company(&change, None)
        .await
        .unwrap();
    let company = accounts(db, &key).company().await.unwrap().unwrap();
    assert_eq!(company.server.password.unwrap().expose(), "hunter2");
}

async fn settings_default_to_sign_in_allowed(db: &TestDatabase) {
    let key = KeyRing::generate();
    let repo = accounts(db, &key);
    assert!(repo.settings().await.unwrap().can_sign_in_when_sending);
    repo.set_can_sign_in_when_sending(false).await.unwrap();
    assert!(!repo.settings().await.unwrap().can_sign_in_when_sending);
    repo.set_can_sign_in_when_sending(true).await.unwrap();
    assert!(repo.settings().await.unwrap().can_sign_in_when_sending);
}

async fn a_rolled_back_transaction_leaves_nothing(db: &TestDatabase) {
    let key = KeyRing::generate();
    let txn = db.db.begin().await.unwrap();
    {
        let repo = mailroom_accounts::Accounts::new(&txn, &key);
        repo.set_company(&microsoft("a@contoso.example"), None)
            .await
            .unwrap();
        repo.add_user_account(&password_server("smtp.example.net", "u", "p"), None)
            .await
            .unwrap();
        repo.set_can_sign_in_when_sending(false).await.unwrap();
    }
    txn.rollback().await.unwrap();
    let repo = accounts(db, &key);
    assert!(repo.company().await.unwrap().is_none());
    assert!(repo.user_accounts().await.unwrap().is_empty());
    assert!(repo.settings().await.unwrap().can_sign_in_when_sending);
}

async fn google_reports_ignored_settings_and_keeps_its_host(db: &TestDatabase) {
    let key = KeyRing::generate();
    let repo = accounts(db, &key);
    let mut change = google("ar@example.com");
    change.timeout_ms = Some(5_000);
    change.tls = Some(false);
    let saved = repo.add_user_account(&change, None).await.unwrap();
    let ignored: Vec<&str> = saved.ignored.iter().map(|i| i.setting).collect();
    assert_eq!(ignored, ["tls", "timeout"]);
    assert_eq!(saved.account.server.provider, Provider::Google);
    assert_eq!(saved.account.server.host, "gmail.googleapis.com");
    let moved = repo
        .edit_user_account(
            saved.account.id,
            &ServerSettingsChange {
                host: Some("smtp.gmail.com".to_owned()),
                ..Default::default()
            },
            BindingChange::Keep,
        )
        .await
        .unwrap_err();
    assert!(moved.to_string().contains("Gmail API URL"), "{moved}");
    assert_eq!(moved.remedy(), Some(mailroom_model::Remedy::SetGmailApiUrl));
    assert_eq!(
        repo.user_account(saved.account.id).await.unwrap(),
        saved.account
    );
}

/// The Graph route is stored and read back, and it is inside the settings seal (it decides
/// where the token goes): a row switched back to SMTP in the database, without the key,
/// is refused once seals are required.
async fn the_route_round_trips_and_is_sealed(db: &TestDatabase) {
    let key = KeyRing::generate();
    let repo = accounts(db, &key);
    let change = ServerSettingsChange {
        route: Some(Route::Graph),
        large_attachments: Some(true),
        ..microsoft("orders@contoso.example")
    };
    let id = repo
        .add_user_account(&change, None)
        .await
        .unwrap()
        .account
        .id;
    let stored = repo.user_account(id).await.unwrap();
    assert_eq!(stored.server.route, Route::Graph);
    assert!(stored.server.large_attachments);
    let plain = repo
        .add_user_account(&microsoft("sa@contoso.example"), None)
        .await
        .unwrap()
        .account
        .id;
    assert_eq!(
        repo.user_account(plain).await.unwrap().server.route,
        Route::Smtp
    );

    mailroom_crypto::store::mark_settings_sealed(&db.db, key.primary())
        .await
        .unwrap();
    repo.user_account(id).await.unwrap();
    db.db
        .execute_unprepared(&format!(
            "UPDATE user_account SET route = 'smtp', large_attachments = false WHERE id = {id}"
        ))
        .await
        .unwrap();
    let refused = repo.user_account(id).await.unwrap_err();
    assert!(
        matches!(refused, Error::SettingsAltered { .. }),
        "{refused:?}"
    );
    // The schema takes only the two routes.
    assert!(
        db.db
            .execute_unprepared(&format!(
                "UPDATE user_account SET route = 'rest' WHERE id = {plain}"
            ))
            .await
            .is_err()
    );
}

async fn auth_column(db: &TestDatabase, sql: &str) -> Option<String> {
    db.db
        .query_one(Statement::from_string(
            db.db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap()
        .expect("a row")
        .try_get_by_index::<Option<String>>(0)
        .unwrap()
}

/// App-only is stored and read back on both kinds of account, and it is inside the
/// settings seal (it decides whose credentials the token is issued on): a row switched
/// back to delegated in the database, without the key, is refused once seals are required.
async fn app_only_round_trips_and_is_sealed(db: &TestDatabase) {
    let key = KeyRing::generate();
    let repo = accounts(db, &key);
    let company = repo
        .set_company(
            &ServerSettingsChange {
                auth: Some(Auth::AppOnly),
                ..google("noreply@example.com")
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(company.account.server.auth, Auth::AppOnly);
    assert_eq!(
        repo.company().await.unwrap().unwrap().server.auth,
        Auth::AppOnly
    );
    assert_eq!(
        auth_column(db, "SELECT auth FROM company_account")
            .await
            .as_deref(),
        Some("app-only")
    );

    let id = repo
        .add_user_account(
            &ServerSettingsChange {
                auth: Some(Auth::AppOnly),
                ..microsoft("orders@contoso.example")
            },
            None,
        )
        .await
        .unwrap()
        .account
        .id;
    assert_eq!(
        repo.user_account(id).await.unwrap().server.auth,
        Auth::AppOnly
    );
    let plain = repo
        .add_user_account(&microsoft("sa@contoso.example"), None)
        .await
        .unwrap()
        .account
        .id;
    assert_eq!(
        repo.user_account(plain).await.unwrap().server.auth,
        Auth::Delegated
    );
    assert_eq!(
        auth_column(
            db,
            &format!("SELECT auth FROM user_account WHERE id = {plain}")
        )
        .await,
        None,
        "delegated is stored as null, as rows from before have it"
    );

    // Back to delegated through the repository: stored, and re-sealed.
    let back = repo
        .edit_user_account(
            plain,
            &ServerSettingsChange {
                auth: Some(Auth::AppOnly),
                ..Default::default()
            },
            BindingChange::Keep,
        )
        .await
        .unwrap();
    assert_eq!(back.account.server.auth, Auth::AppOnly);
    let back = repo
        .edit_user_account(
            plain,
            &ServerSettingsChange {
                auth: Some(Auth::Delegated),
                ..Default::default()
            },
            BindingChange::Keep,
        )
        .await
        .unwrap();
    assert_eq!(back.account.server.auth, Auth::Delegated);

    mailroom_crypto::store::mark_settings_sealed(&db.db, key.primary())
        .await
        .unwrap();
    repo.user_account(id).await.unwrap();
    repo.user_account(plain).await.unwrap();
    repo.company().await.unwrap();
    for flipped in ["NULL", "'delegated'"] {
        db.db
            .execute_unprepared(&format!(
                "UPDATE user_account SET auth = {flipped} WHERE id = {id}"
            ))
            .await
            .unwrap();
        let refused = repo.user_account(id).await.unwrap_err();
        assert!(
            matches!(refused, Error::SettingsAltered { .. }),
            "{flipped}: {refused:?}"
        );
    }
    db.db
        .execute_unprepared("UPDATE company_account SET auth = NULL")
        .await
        .unwrap();
    let refused = repo.company().await.unwrap_err();
    assert!(
        matches!(refused, Error::SettingsAltered { .. }),
        "{refused:?}"
    );
    // The other way too: a delegated row made app-only without the key.
    db.db
        .execute_unprepared(&format!(
            "UPDATE user_account SET auth = 'app-only' WHERE id = {plain}"
        ))
        .await
        .unwrap();
    let refused = repo.user_account(plain).await.unwrap_err();
    assert!(
        matches!(refused, Error::SettingsAltered { .. }),
        "{refused:?}"
    );
    // The schema takes only the two kinds.
    assert!(
        db.db
            .execute_unprepared(&format!(
                "UPDATE user_account SET auth = 'apponly' WHERE id = {plain}"
            ))
            .await
            .is_err()
    );
}

/// Rows written before the `auth` column (null) and rows that say `delegated` are
/// delegated, and their seals, made without auth, still open.
async fn rows_from_before_the_auth_column_are_delegated(db: &TestDatabase) {
    let key = KeyRing::generate();
    let repo = accounts(db, &key);
    let id = repo
        .add_user_account(&microsoft("orders@contoso.example"), None)
        .await
        .unwrap()
        .account
        .id;
    repo.set_company(&google("noreply@example.com"), None)
        .await
        .unwrap();
    mailroom_crypto::store::mark_settings_sealed(&db.db, key.primary())
        .await
        .unwrap();
    for value in ["NULL", "'delegated'"] {
        db.db
            .execute_unprepared(&format!(
                "UPDATE user_account SET auth = {value} WHERE id = {id}"
            ))
            .await
            .unwrap();
        db.db
            .execute_unprepared(&format!("UPDATE company_account SET auth = {value}"))
            .await
            .unwrap();
        assert_eq!(
            repo.user_account(id).await.unwrap().server.auth,
            Auth::Delegated,
            "{value}"
        );
        assert_eq!(
            repo.company().await.unwrap().unwrap().server.auth,
            Auth::Delegated,
            "{value}"
        );
    }
}

/// The two limit columns of an account row, as stored.
async fn limit_columns(
    db: &TestDatabase,
    table_and_filter: &str,
) -> (Option<String>, Option<String>) {
    let row = db
        .db
        .query_one(Statement::from_string(
            db.db.get_database_backend(),
            format!("SELECT rate_per_minute, daily_limit FROM {table_and_filter}"),
        ))
        .await
        .unwrap()
        .expect("a row");
    (
        row.try_get_by_index::<Option<String>>(0).unwrap(),
        row.try_get_by_index::<Option<String>>(1).unwrap(),
    )
}

/// An account's limits are stored as a number, `off` or null (the provider's default),
/// read back as set, kept across a provider change, and go back to the default.
async fn limits_round_trip_and_go_back_to_the_default(db: &TestDatabase) {
    let key = KeyRing::generate();
    let repo = accounts(db, &key);
    let company = repo
        .set_company(
            &ServerSettingsChange {
                rate_per_minute: Some(Some(Limit::At(45))),
                daily_limit: Some(Some(Limit::Off)),
                ..google("noreply@example.com")
            },
            None,
        )
        .await
        .unwrap();
    let set = PaceOverrides {
        per_minute: Some(Limit::At(45)),
        daily: Some(Limit::Off),
    };
    assert_eq!(company.account.server.pace, set);
    assert_eq!(repo.company().await.unwrap().unwrap().server.pace, set);
    assert_eq!(
        limit_columns(db, "company_account").await,
        (Some("45".to_owned()), Some("off".to_owned()))
    );
    let limits = repo
        .company()
        .await
        .unwrap()
        .unwrap()
        .server
        .mailbox_limits();
    assert_eq!((limits.per_minute, limits.daily), (Some(45), None));

    // A password relay takes limits too; an account without any stores nulls.
    let relay = repo
        .add_user_account(
            &ServerSettingsChange {
                daily_limit: Some(Some(Limit::At(500))),
                ..password_server("smtp.example.net", "relay", "pw")
            },
            None,
        )
        .await
        .unwrap()
        .account
        .id;
    assert_eq!(
        repo.user_account(relay).await.unwrap().server.pace,
        PaceOverrides {
            per_minute: None,
            daily: Some(Limit::At(500)),
        }
    );
    let id = repo
        .add_user_account(&microsoft("orders@contoso.example"), None)
        .await
        .unwrap()
        .account
        .id;
    let by_id = format!("user_account WHERE id = {id}");
    assert_eq!(limit_columns(db, &by_id).await, (None, None));
    assert_eq!(
        repo.user_account(id).await.unwrap().server.pace,
        PaceOverrides::default()
    );

    // Set, then an unrelated change and a change of provider keep it.
    let edit = |change: ServerSettingsChange| {
        let repo = &repo;
        async move {
            repo.edit_user_account(id, &change, BindingChange::Keep)
                .await
                .unwrap()
                .account
                .server
                .pace
        }
    };
    let rate = PaceOverrides {
        per_minute: Some(Limit::At(10)),
        daily: None,
    };
    assert_eq!(
        edit(ServerSettingsChange {
            rate_per_minute: Some(Some(Limit::At(10))),
            ..Default::default()
        })
        .await,
        rate
    );
    assert_eq!(
        edit(ServerSettingsChange {
            port: Some(25),
            ..Default::default()
        })
        .await,
        rate
    );
    assert_eq!(
        edit(ServerSettingsChange {
            provider: Some(Provider::Google),
            ..Default::default()
        })
        .await,
        rate
    );
    assert_eq!(repo.user_account(id).await.unwrap().server.pace, rate);
    assert_eq!(
        limit_columns(db, &by_id).await,
        (Some("10".to_owned()), None)
    );

    // Back to the provider's default: null again.
    assert_eq!(
        edit(ServerSettingsChange {
            rate_per_minute: Some(None),
            ..Default::default()
        })
        .await,
        PaceOverrides::default()
    );
    assert_eq!(limit_columns(db, &by_id).await, (None, None));

    // Out of range is refused before anything is written.
    for refused in [
        Limit::At(0),
        Limit::At(mailroom_model::validate::MAX_RATE_PER_MINUTE + 1),
    ] {
        let error = repo
            .edit_user_account(
                id,
                &ServerSettingsChange {
                    rate_per_minute: Some(Some(refused)),
                    ..Default::default()
                },
                BindingChange::Keep,
            )
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Invalid(_)), "{refused:?}: {error:?}");
    }
    assert_eq!(limit_columns(db, &by_id).await, (None, None));
}

/// A limit decides neither where a secret goes nor whose credentials a token is issued
/// on, so it is outside the settings seal: a limit written without the key still opens.
/// What is not a limit is a corrupt row, named, and the account can be set right.
async fn limits_are_outside_the_seal_and_a_corrupt_one_is_refused(db: &TestDatabase) {
    let key = KeyRing::generate();
    let repo = accounts(db, &key);
    let id = repo
        .add_user_account(&microsoft("orders@contoso.example"), None)
        .await
        .unwrap()
        .account
        .id;
    mailroom_crypto::store::mark_settings_sealed(&db.db, key.primary())
        .await
        .unwrap();
    db.db
        .execute_unprepared(&format!(
            "UPDATE user_account SET rate_per_minute = '5', daily_limit = 'off' WHERE id = {id}"
        ))
        .await
        .unwrap();
    assert_eq!(
        repo.user_account(id).await.unwrap().server.pace,
        PaceOverrides {
            per_minute: Some(Limit::At(5)),
            daily: Some(Limit::Off),
        }
    );

    for (column, value) in [
        ("rate_per_minute", "0"),
        ("rate_per_minute", "fast"),
        ("daily_limit", "-3"),
        ("daily_limit", "+7"),
        ("daily_limit", "OFF"),
        ("daily_limit", "99999999999"),
    ] {
        db.db
            .execute_unprepared(&format!(
                "UPDATE user_account SET rate_per_minute = {}, daily_limit = {} WHERE id = {id}",
                if column == "rate_per_minute" {
                    format!("'{value}'")
                } else {
                    "NULL".to_owned()
                },
                if column == "daily_limit" {
                    format!("'{value}'")
                } else {
                    "NULL".to_owned()
                },
            ))
            .await
            .unwrap();
        match repo.user_account(id).await.unwrap_err() {
            Error::CorruptRow { what, problem, .. } => {
                let name = column.replace('_', " ");
                assert!(what.contains(&name), "{column}={value}: {what}");
                assert!(problem.contains(value), "{column}={value}: {problem}");
            }
            other => panic!("{column}={value}: {other:?}"),
        }
    }
    // Setting the corrupt limit sets it right (the remedy the error names); another
    // change cannot be applied to a row that cannot be read.
    let other = repo
        .edit_user_account(
            id,
            &ServerSettingsChange {
                rate_per_minute: Some(Some(Limit::At(20))),
                ..Default::default()
            },
            BindingChange::Keep,
        )
        .await;
    assert!(matches!(other, Err(Error::CorruptRow { .. })), "{other:?}");
    let fixed = repo
        .edit_user_account(
            id,
            &ServerSettingsChange {
                daily_limit: Some(None),
                ..Default::default()
            },
            BindingChange::Keep,
        )
        .await
        .unwrap();
    assert_eq!(fixed.account.server.pace, PaceOverrides::default());
    assert_eq!(
        repo.user_account(id).await.unwrap().server.pace,
        PaceOverrides::default()
    );
    repo.set_company(&google("noreply@example.com"), None)
        .await
        .unwrap();
    db.db
        .execute_unprepared("UPDATE company_account SET rate_per_minute = 'lots'")
        .await
        .unwrap();
    assert!(matches!(
        repo.company().await,
        Err(Error::CorruptRow { .. })
    ));
    let company = repo
        .set_company(
            &ServerSettingsChange {
                rate_per_minute: Some(Some(Limit::Off)),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(company.account.server.pace.per_minute, Some(Limit::Off));
}

async fn the_from_address_is_the_sender_else_the_smtp_user(db: &TestDatabase) {
    let key = KeyRing::generate();
    let repo = accounts(db, &key);
    repo.set_company(
        &password_server("smtp.example.net", "relay-login", "secret"),
        None,
    )
    .await
    .unwrap();
    let company = repo
        .account(mailroom_model::AccountRef::Company)
        .await
        .unwrap();
    assert_eq!(company.from_address(), None);
    assert_eq!(company.sender(), "relay-login");
    let company = repo
        .set_from_address(
            mailroom_model::AccountRef::Company,
            Some(" Orders@Example.com "),
        )
        .await
        .unwrap();
    assert_eq!(company.from_address(), Some("Orders@Example.com"));
    assert_eq!(company.sender(), "Orders@Example.com");

    let id = repo
        .add_user_account(&microsoft("sa@contoso.example"), None)
        .await
        .unwrap()
        .account
        .id;
    let user = repo
        .account(mailroom_model::AccountRef::User(id))
        .await
        .unwrap();
    assert!(matches!(user, Account::User(_)));
    assert_eq!(user.from_address(), None);
    assert_eq!(user.sender(), "sa@contoso.example");
    let user = repo
        .set_from_address(
            mailroom_model::AccountRef::User(id),
            Some("shared@contoso.example"),
        )
        .await
        .unwrap();
    assert_eq!(user.from_address(), Some("shared@contoso.example"));
    assert_eq!(user.sender(), "shared@contoso.example");
}

#[test]
fn password_accounts_are_warned_about_a_missing_sender_or_password() {
    let applied = |change: ServerSettingsChange| change.apply(None).unwrap().settings;
    // An address as the user, a password: nothing to say.
    let fine = applied(password_server(
        "smtp.example.net",
        "relay@example.net",
        "secret",
    ));
    assert_eq!(account_warnings(&fine, None), Vec::<String>::new());
    // A login that is not an address: every send needs a From address, unless the
    // account has one.
    let login = applied(password_server("smtp.example.net", "relay-login", "secret"));
    let warnings = account_warnings(&login, None);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("the SMTP user `relay-login` is not an address"),
        "{warnings:?}"
    );
    assert_eq!(
        account_warnings(&login, Some("orders@example.net")),
        Vec::<String>::new()
    );
    // No password.
    let mut open = login.clone();
    open.password = None;
    let warnings = account_warnings(&open, Some("orders@example.net"));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("the account has no password"),
        "{warnings:?}"
    );
    // OAuth accounts need neither: no warnings.
    let mut oauth = applied(microsoft("sa@contoso.example"));
    oauth.smtp_user = "relay-login".to_owned();
    assert_eq!(oauth.password, None);
    assert_eq!(account_warnings(&oauth, None), Vec::<String>::new());
}

async fn a_row_without_its_seal_is_refused_once_seals_are_required(db: &TestDatabase) {
    let key = KeyRing::generate();
    let repo = accounts(db, &key);
    let id = repo
        .add_user_account(&microsoft("sa@contoso.example"), None)
        .await
        .unwrap()
        .account
        .id;
    db.db
        .execute_unprepared(&format!(
            "UPDATE user_account SET settings_seal = NULL WHERE id = {id}"
        ))
        .await
        .unwrap();
    // A database made since seals exist requires them: a missing seal means the row was
    // altered.
    let refused = repo.user_account(id).await.unwrap_err();
    assert!(
        matches!(refused, Error::SettingsAltered { .. }),
        "{refused:?}"
    );
    // As an older version left it (a key check without the marker): rows from before
    // seals are read until every row is sealed and marked.
    let old_check = key.primary().seal(b"mailroom key check", b"key_check:1");
    let backend = db.db.get_database_backend();
    let placeholder = match backend {
        sea_orm::DatabaseBackend::Postgres => "$1",
        _ => "?",
    };
    db.db
        .execute(Statement::from_sql_and_values(
            backend,
            format!("UPDATE key_check SET sealed = {placeholder}"),
            [old_check.into()],
        ))
        .await
        .unwrap();
    repo.user_account(id).await.unwrap();
    mailroom_crypto::store::mark_settings_sealed(&db.db, key.primary())
        .await
        .unwrap();
    let refused = repo.user_account(id).await.unwrap_err();
    assert!(
        matches!(refused, Error::SettingsAltered { .. }),
        "{refused:?}"
    );
}

/// A company account and a user account with passwords, and a Microsoft account without
/// one: `(user with password, user without)`.
async fn three_accounts(
    repo: &mailroom_accounts::Accounts<'_, sea_orm::DatabaseConnection>,
) -> (i64, i64) {
    repo.set_company(
        &password_server("smtp.example.net", "relay@example.net", "company-secret"),
        None,
    )
    .await
    .unwrap();
    let with = repo
        .add_user_account(
            &password_server("smtp.example.org", "user@example.org", "user-secret"),
            None,
        )
        .await
        .unwrap()
        .account
        .id;
    let without = repo
        .add_user_account(&microsoft("sa@contoso.example"), None)
        .await
        .unwrap()
        .account
        .id;
    (with, without)
}

fn password_of(account: &mailroom_accounts::Account) -> Option<String> {
    account
        .server()
        .password
        .as_ref()
        .map(|password| password.expose().to_owned())
}

async fn a_rotation_reseals_every_password_and_settings_seal_with_the_new_key(db: &TestDatabase) {
    let old = KeyRing::generate();
    let (with, without) = three_accounts(&accounts(db, &old)).await;
    let versions = || async {
        let mut versions = Vec::new();
        for sql in [
            "SELECT version FROM company_account".to_owned(),
            format!("SELECT version FROM user_account WHERE id = {with}"),
            format!("SELECT version FROM user_account WHERE id = {without}"),
        ] {
            let row = db
                .db
                .query_one(Statement::from_string(db.db.get_database_backend(), sql))
                .await
                .unwrap()
                .unwrap();
            versions.push(row.try_get_by_index::<i64>(0).unwrap());
        }
        versions
    };
    let before = versions().await;
    let next = mailroom_crypto::EncryptionKey::generate();
    let both = old.clone().with(next.clone());
    let resealed = accounts(db, &both).reseal(&next).await.unwrap();
    assert_eq!(resealed, 2, "the two passwords");
    // The database's key is now the new one alone: everything opens with it.
    mailroom_crypto::store::replace(&db.db, &next)
        .await
        .unwrap();
    let new_only = KeyRing::new([next]).unwrap();
    let repo = accounts(db, &new_only);
    let company = repo
        .account(mailroom_model::AccountRef::Company)
        .await
        .unwrap();
    assert_eq!(password_of(&company).as_deref(), Some("company-secret"));
    let user = repo
        .account(mailroom_model::AccountRef::User(with))
        .await
        .unwrap();
    assert_eq!(password_of(&user).as_deref(), Some("user-secret"));
    let oauth = repo
        .account(mailroom_model::AccountRef::User(without))
        .await
        .unwrap();
    assert_eq!(password_of(&oauth), None);
    let after = versions().await;
    assert_eq!(
        after,
        before.iter().map(|version| version + 1).collect::<Vec<_>>(),
        "a new version each"
    );
}

async fn a_lost_keys_reset_forgets_the_passwords_and_reseals_the_settings(db: &TestDatabase) {
    let lost = KeyRing::generate();
    let (with, without) = three_accounts(&accounts(db, &lost)).await;
    let fresh = KeyRing::generate();
    // Sealing the settings as they stand, with the same key: the two passwords re-sealed.
    assert_eq!(
        accounts(db, &lost)
            .seal_all_settings(lost.primary())
            .await
            .unwrap(),
        2
    );
    let forgotten = accounts(db, &fresh)
        .forget_passwords(fresh.primary())
        .await
        .unwrap();
    assert_eq!(forgotten, 2, "the company's and the user's");
    let repo = accounts(db, &fresh);
    let company = repo
        .account(mailroom_model::AccountRef::Company)
        .await
        .unwrap();
    assert_eq!(password_of(&company), None);
    assert_eq!(company.server().smtp_user, "relay@example.net");
    let user = repo
        .account(mailroom_model::AccountRef::User(with))
        .await
        .unwrap();
    assert_eq!(password_of(&user), None);
    assert_eq!(user.server().host, "smtp.example.org");
    repo.account(mailroom_model::AccountRef::User(without))
        .await
        .unwrap();
    // Nothing left to forget.
    assert_eq!(
        accounts(db, &fresh)
            .forget_passwords(fresh.primary())
            .await
            .unwrap(),
        0
    );
}

async fn version_of(db: &TestDatabase, sql: String) -> i64 {
    db.db
        .query_one(Statement::from_string(db.db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap()
}

async fn every_change_counts_a_new_version(db: &TestDatabase) {
    use mailroom_model::AccountRef;

    let key = KeyRing::generate();
    let repo = accounts(db, &key);
    let company = || version_of(db, "SELECT version FROM company_account".to_owned());
    repo.set_company(&microsoft("sales@contoso.example"), None)
        .await
        .unwrap();
    assert_eq!(company().await, 1);
    repo.set_company(&microsoft("sales@contoso.example"), None)
        .await
        .unwrap();
    assert_eq!(company().await, 2);
    repo.set_token_identity(AccountRef::Company, Some("oid:t:o"))
        .await
        .unwrap();
    assert_eq!(company().await, 3);
    repo.set_from_address(AccountRef::Company, Some("orders@contoso.example"))
        .await
        .unwrap();
    assert_eq!(company().await, 4);

    let id = repo
        .add_user_account(&microsoft("sa@contoso.example"), None)
        .await
        .unwrap()
        .account
        .id;
    let user = || {
        version_of(
            db,
            format!("SELECT version FROM user_account WHERE id = {id}"),
        )
    };
    assert_eq!(user().await, 1);
    repo.edit_user_account(id, &microsoft("sa@contoso.example"), BindingChange::Keep)
        .await
        .unwrap();
    assert_eq!(user().await, 2);
    repo.set_token_identity(AccountRef::User(id), Some("oid:t:u"))
        .await
        .unwrap();
    assert_eq!(user().await, 3);
    repo.set_from_address(AccountRef::User(id), None)
        .await
        .unwrap();
    assert_eq!(user().await, 4);
    // A missing account is an error, not a silent no-op.
    assert!(matches!(
        repo.set_from_address(AccountRef::User(id + 100), None)
            .await,
        Err(Error::AccountNotFound { .. })
    ));

    // Every account, the company's first.
    let all = repo.all_accounts().await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(matches!(all[0], Account::Company(_)));
    assert!(matches!(all[1], Account::User(_)));
}

async fn settings_round_trip(db: &TestDatabase) {
    let key = KeyRing::generate();
    let repo = accounts(db, &key);
    assert_eq!(mailroom_accounts::sealed_with(&db.db).await.unwrap(), None);
    repo.set_outbox_retention_days(7).await.unwrap();
    assert_eq!(repo.settings().await.unwrap().outbox_retention_days, 7);
    repo.set_outbox_retention_days(0).await.unwrap();
    assert_eq!(repo.settings().await.unwrap().outbox_retention_days, 0);
    // Once a key was checked against the database, it names that key.
    repo.set_company(&microsoft("sales@contoso.example"), None)
        .await
        .unwrap();
    assert_eq!(
        mailroom_accounts::sealed_with(&db.db).await.unwrap(),
        Some(key.primary().id())
    );
}

async fn several_accounts_are_read_at_once_as_each_is_alone(db: &TestDatabase) {
    use mailroom_model::AccountRef;
    let key = KeyRing::generate();
    let repo = accounts(db, &key);
    let none = repo
        .accounts(&[AccountRef::Company, AccountRef::User(7)])
        .await
        .unwrap();
    assert_eq!(none.len(), 2);
    assert_eq!(none[0].0, AccountRef::Company);
    assert!(
        matches!(none[0].1, Err(Error::NoCompanyAccount)),
        "{none:?}"
    );
    assert_eq!(none[1].0, AccountRef::User(7));
    assert!(
        matches!(none[1].1, Err(Error::AccountNotFound { id: 7 })),
        "{none:?}"
    );

    let (with, without) = three_accounts(&repo).await;
    let asked = [
        AccountRef::User(without),
        AccountRef::Company,
        AccountRef::User(999),
        AccountRef::User(with),
        AccountRef::User(without),
    ];
    let read = repo.accounts(&asked).await.unwrap();
    // Each once, in the order first asked.
    let order: Vec<AccountRef> = read.iter().map(|(account, _)| *account).collect();
    assert_eq!(order, asked[..4].to_vec());
    for (account, result) in read {
        match account {
            AccountRef::User(999) => assert!(
                matches!(result, Err(Error::AccountNotFound { id: 999 })),
                "{result:?}"
            ),
            _ => assert_eq!(result.unwrap(), repo.account(account).await.unwrap()),
        }
    }
    // The passwords were opened, as a single read opens them.
    let company = repo.accounts(&[AccountRef::Company]).await.unwrap();
    assert_eq!(
        password_of(company[0].1.as_ref().unwrap()).as_deref(),
        Some("company-secret")
    );
    // A key that cannot open the rows is refused for each of them, as alone.
    let wrong = KeyRing::generate();
    let refused = accounts(db, &wrong)
        .accounts(&[AccountRef::User(with)])
        .await;
    let alone = accounts(db, &wrong).account(AccountRef::User(with)).await;
    assert_eq!(
        refused
            .map(|read| read
                .into_iter()
                .map(|(_, result)| result.map_err(|e| e.to_string()))
                .collect::<Vec<_>>())
            .map_err(|e| e.to_string()),
        alone
            .map(|account| vec![Ok(account)])
            .map_err(|e| e.to_string()),
    );
}
