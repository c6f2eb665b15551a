//! Key rotation in two steps, with several hosts (facades with different key rings) on
//! one database: every host works until the commit, the commit re-seals everything under
//! the key row's lock, a refresh that spans it stores its tokens under the new key, and a
//! host without the new key is refused with its fingerprint and writes nothing.

use std::sync::mpsc;

use mailroom::{AccountRef, EncryptionKey, Error, KeyRing, Mailroom, Provider, Remedy};
use mailroom_accounts::Accounts;
use mailroom_model::{Secret, ServerSettingsChange, TlsStartup};
use mailroom_testkit::Backend;
use mailroom_tokens::storage::TokenStore;
use sea_orm::{ConnectionTrait, Statement};
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::support::{ORDERS, SA, World, microsoft_token_body};

async fn facade(world: &World, ring: &KeyRing) -> Result<Mailroom, Error> {
    let mut options = world.options();
    options.key = ring.clone();
    Mailroom::with_connection(world.db.db.clone(), options).await
}

/// What the doctor says of this host's key, checking the company account only.
async fn doctor_key_check(host: &Mailroom) -> mailroom::DoctorCheck {
    let report = host
        .doctor(mailroom::DoctorOptions {
            account: Some(AccountRef::Company),
            ..mailroom::DoctorOptions::default()
        })
        .await;
    report
        .checks
        .into_iter()
        .find(|check| check.name == "key")
        .expect("a key check")
}

/// The key id every sealed value in the database carries, per table and column.
async fn sealed_by(world: &World) -> Vec<(String, Option<String>)> {
    let mut found = Vec::new();
    for (table, column) in [
        ("company_account", "password_sealed"),
        ("oauth_token", "access_token_sealed"),
        ("oauth_token", "refresh_token_sealed"),
    ] {
        let rows = world
            .db
            .db
            .query_all(Statement::from_string(
                world.db.db.get_database_backend(),
                format!("SELECT {column} FROM {table} WHERE {column} IS NOT NULL"),
            ))
            .await
            .unwrap();
        for row in rows {
            let bytes: Vec<u8> = row.try_get_by_index(0).unwrap();
            found.push((
                format!("{table}.{column}"),
                mailroom_crypto::sealed_by(&bytes),
            ));
        }
    }
    found
}

fn password_account(world: &World) -> ServerSettingsChange {
    ServerSettingsChange {
        provider: Some(Provider::None),
        host: Some("127.0.0.1".to_owned()),
        port: Some(world.smtp.port),
        tls: Some(true),
        tls_startup: Some(TlsStartup::StartTls),
        smtp_user: Some(ORDERS.to_owned()),
        password: Some(Secret::new("correct horse")),
        ..ServerSettingsChange::default()
    }
}

#[tokio::test]
async fn a_rotation_in_two_steps_on_sqlite() {
    rotation_in_two_steps(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_rotation_in_two_steps_on_postgres() {
    rotation_in_two_steps(Backend::Postgres).await;
}

async fn rotation_in_two_steps(backend: Backend) {
    let world = World::new(backend, World::tokens(&[])).await;
    let old = world.key.primary().clone();
    Accounts::new(&world.db.db, &world.key)
        .set_company(&password_account(&world), None)
        .await
        .unwrap();
    world
        .store_token(Provider::Microsoft, SA, "at-1", false)
        .await;
    let before_version = TokenStore::new(&world.db.db, &world.key)
        .list()
        .await
        .unwrap()[0]
        .version;

    // Step 1 on host A: the next key is recorded; nothing is re-sealed.
    let next = EncryptionKey::generate();
    let host_a = facade(&world, &world.key).await.unwrap();
    let state = host_a.prepare_key_rotation(&next).await.unwrap();
    assert_eq!(state.current, old.id());
    assert_eq!(state.prepared.as_deref(), Some(next.id().as_str()));
    assert!(
        sealed_by(&world)
            .await
            .iter()
            .all(|(_, id)| id.as_deref() == Some(old.id().as_str()))
    );

    // Host A (old key only) still works, and cannot commit: it lacks the prepared key.
    let refused = host_a.commit_key_rotation().await.unwrap_err();
    match refused.key_problem() {
        Some(mailroom_crypto::Error::MissingKey { id, .. }) => assert_eq!(id, &next.id()),
        other => panic!("expected a missing key, got {other:?}: {refused}"),
    }
    assert_eq!(
        refused.remedy(),
        Some(Remedy::RestoreKey { key_id: next.id() })
    );
    assert_eq!(
        mailroom::key_state(&world.db.db)
            .await
            .unwrap()
            .unwrap()
            .current,
        old.id()
    );
    // The doctor warns this host before the commit stops it.
    let key_check = doctor_key_check(&host_a).await;
    assert_eq!(
        key_check.status,
        mailroom::CheckStatus::Problem,
        "{key_check:?}"
    );
    assert_eq!(
        key_check.remedy,
        Some(Remedy::RestoreKey { key_id: next.id() })
    );
    // The facade's own reading is the same; the seals still name the old key.
    assert_eq!(host_a.key_state().await.unwrap(), Some(state.clone()));
    assert_eq!(
        mailroom::sealed_with(&world.db.db).await.unwrap(),
        Some(old.id())
    );

    // Host B has both keys: the commit re-seals everything and bumps versions.
    let both = world.key.clone().with(next.clone());
    let host_b = facade(&world, &both).await.unwrap();
    let key_check = doctor_key_check(&host_b).await;
    assert_eq!(key_check.status, mailroom::CheckStatus::Ok, "{key_check:?}");
    assert!(
        key_check.detail.ends_with("this host has it"),
        "{key_check:?}"
    );
    let resealed = host_b.commit_key_rotation().await.unwrap();
    assert_eq!(resealed.key_id, next.id());
    assert_eq!(
        (resealed.passwords, resealed.client_secrets, resealed.tokens),
        (1, 0, 1)
    );
    let after = sealed_by(&world).await;
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(
        after
            .iter()
            .all(|(_, id)| id.as_deref() == Some(next.id().as_str())),
        "{after:?}"
    );
    let state = mailroom::key_state(&world.db.db).await.unwrap().unwrap();
    assert_eq!(host_b.key_state().await.unwrap(), Some(state.clone()));
    assert_eq!(
        mailroom::sealed_with(&world.db.db).await.unwrap(),
        Some(next.id()),
        "the seals name the new key"
    );
    assert_eq!(
        (state.current.as_str(), state.prepared),
        (next.id().as_str(), None)
    );
    let only_next = KeyRing::from(next.clone());
    let tokens = TokenStore::new(&world.db.db, &only_next)
        .list()
        .await
        .unwrap();
    assert_eq!(tokens[0].version, before_version + 1);

    // A host with only the new key reads everything.
    let company = Accounts::new(&world.db.db, &only_next)
        .company()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(company.server.password.unwrap().expose(), "correct horse");
    let key = mailroom_tokens::storage::TokenKey::new(
        Provider::Microsoft,
        mailroom_tokens::registration::DEFAULT_MICROSOFT_TENANT,
        SA,
    );
    let token = TokenStore::new(&world.db.db, &only_next)
        .load(&key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(token.access_token.expose(), "at-1");

    // A host that never got the new key is refused at open, naming it, and its writes
    // store nothing.
    let opened = facade(&world, &world.key)
        .await
        .expect_err("the old host is refused");
    let text = opened.to_string();
    assert!(
        text.contains(&format!("this host lacks key {}", next.id())),
        "{text}"
    );
    assert_eq!(
        opened.remedy(),
        Some(Remedy::RestoreKey { key_id: next.id() })
    );
    let mut change = password_account(&world);
    change.password = Some(Secret::new("written with the old key"));
    let write = Accounts::new(&world.db.db, &world.key)
        .set_company(&change, None)
        .await;
    assert!(
        matches!(
            write,
            Err(mailroom_accounts::Error::Key(
                mailroom_crypto::Error::MissingKey { .. }
            ))
        ),
        "{write:?}"
    );
    let company = Accounts::new(&world.db.db, &only_next)
        .company()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(company.server.password.unwrap().expose(), "correct horse");
    // Nothing left to commit.
    let again = host_b.commit_key_rotation().await.unwrap_err();
    assert_eq!(again.remedy(), Some(Remedy::PrepareKeyRotation));
    world.finish().await;
}

/// A token endpoint that answers only when the test says so, after saying it was asked.
struct Gated {
    asked: mpsc::SyncSender<()>,
    go: std::sync::Mutex<mpsc::Receiver<()>>,
    body: serde_json::Value,
}

impl Respond for Gated {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let _ = self.asked.send(());
        // The mock server answers on its own thread: blocking it holds this answer only.
        let _ = self.go.lock().unwrap().recv();
        ResponseTemplate::new(200).set_body_json(self.body.clone())
    }
}

#[tokio::test]
async fn a_refresh_that_spans_a_rotation_stores_its_tokens_under_the_new_key_on_sqlite() {
    refresh_spanning_rotation(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_refresh_that_spans_a_rotation_stores_its_tokens_under_the_new_key_on_postgres() {
    refresh_spanning_rotation(Backend::Postgres).await;
}

async fn refresh_spanning_rotation(backend: Backend) {
    let world = World::new(backend, World::tokens(&[])).await;
    world.register_app(Provider::Microsoft).await;
    world.company_smtp(Provider::Microsoft, SA).await;
    world
        .store_token(Provider::Microsoft, SA, "at-expired", true)
        .await;
    let (asked_tx, asked_rx) = mpsc::sync_channel(1);
    let (go_tx, go_rx) = mpsc::channel();
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(Gated {
            asked: asked_tx,
            go: std::sync::Mutex::new(go_rx),
            body: microsoft_token_body("at-fresh", "rt-2"),
        })
        .expect(1)
        .mount(&world.http)
        .await;

    // Every host got the next key at the prepare step.
    let next = EncryptionKey::generate();
    let both = world.key.clone().with(next.clone());
    let refresher = facade(&world, &both).await.unwrap();
    refresher.prepare_key_rotation(&next).await.unwrap();
    let refreshing =
        tokio::spawn(async move { refresher.access_token(AccountRef::Company, None).await });
    // The refresh is at the token endpoint; the rotation commits meanwhile.
    tokio::task::spawn_blocking(move || asked_rx.recv())
        .await
        .unwrap()
        .unwrap();
    facade(&world, &both)
        .await
        .unwrap()
        .commit_key_rotation()
        .await
        .unwrap();
    go_tx.send(()).unwrap();
    let token = refreshing.await.unwrap().unwrap();
    assert_eq!(token.secret.expose(), "at-fresh");

    // The refreshed tokens are stored under the new key: a host holding only it uses
    // them without refreshing again (the mock expects one call).
    let sealed = sealed_by(&world).await;
    let token_columns: Vec<_> = sealed
        .iter()
        .filter(|(column, _)| column.starts_with("oauth_token"))
        .collect();
    assert_eq!(token_columns.len(), 2, "{sealed:?}");
    assert!(
        token_columns
            .iter()
            .all(|(_, id)| id.as_deref() == Some(next.id().as_str())),
        "{sealed:?}"
    );
    let new_host = facade(&world, &KeyRing::from(next.clone())).await.unwrap();
    let again = new_host
        .access_token(AccountRef::Company, None)
        .await
        .unwrap();
    assert_eq!(again.secret.expose(), "at-fresh");
    let key = mailroom_tokens::storage::TokenKey::new(
        Provider::Microsoft,
        mailroom_tokens::registration::DEFAULT_MICROSOFT_TENANT,
        SA,
    );
    let stored = TokenStore::new(&world.db.db, &KeyRing::from(next))
        .load(&key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.refresh_token.unwrap().expose(), "rt-2");
    world.finish().await;
}

async fn execute(world: &World, sql: &str) {
    world.execute(sql, vec![]).await;
}

/// A loopback port that records whether anything connected to it.
fn trap() -> std::net::TcpListener {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    listener
}

fn nobody_connected(listener: &std::net::TcpListener) -> bool {
    matches!(listener.accept(), Err(error) if error.kind() == std::io::ErrorKind::WouldBlock)
}

fn send_request() -> mailroom::SendRequest<'static> {
    mailroom::SendRequest::new(
        mailroom::AUTOMATION_AGENT,
        mailroom::MessageDraft {
            to: vec!["buyer@example.com".to_owned()],
            subject: "Statement".to_owned(),
            text: Some("Body".to_owned()),
            ..mailroom::MessageDraft::default()
        },
    )
}

#[tokio::test]
async fn settings_changed_in_the_database_send_no_secret_on_sqlite() {
    settings_changed_in_the_database(Backend::Sqlite).await;
}

#[tokio::test]
async fn settings_changed_in_the_database_send_no_secret_on_postgres() {
    settings_changed_in_the_database(Backend::Postgres).await;
}

/// Someone with write access to the database but not the key points the company account
/// and the Microsoft registration at their own server: mailroom refuses both before any
/// connection, and an administrator's change sets them right.
async fn settings_changed_in_the_database(backend: Backend) {
    let world = World::new(backend, World::tokens(&[])).await;
    world.register_app(Provider::Microsoft).await;
    Accounts::new(&world.db.db, &world.key)
        .set_company(&password_account(&world), None)
        .await
        .unwrap();
    let user = world.user_microsoft(SA, "sa").await;
    world
        .store_token(Provider::Microsoft, SA, "at-expired", true)
        .await;
    let mailroom = world.mailroom().await;

    let smtp_trap = trap();
    let port = smtp_trap.local_addr().unwrap().port();
    execute(
        &world,
        &format!("UPDATE company_account SET port = {port}, tls = false"),
    )
    .await;
    let error = mailroom.send(send_request()).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Accounts(mailroom_accounts::Error::SettingsAltered {
                account: AccountRef::Company
            })
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("changed outside mailroom"),
        "{error}"
    );
    assert_eq!(
        error.remedy(),
        Some(Remedy::EditAccount {
            account: Some(AccountRef::Company)
        })
    );
    // Removing the seal does not help.
    execute(&world, "UPDATE company_account SET settings_seal = NULL").await;
    mailroom.forget_cached();
    let error = mailroom.send(send_request()).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Accounts(mailroom_accounts::Error::SettingsAltered { .. })
        ),
        "{error:?}"
    );
    assert!(
        nobody_connected(&smtp_trap),
        "the password went to the altered server"
    );

    let token_trap = trap();
    let token_port = token_trap.local_addr().unwrap().port();
    execute(
        &world,
        &format!("UPDATE oauth_app SET token_url = 'http://127.0.0.1:{token_port}/token'"),
    )
    .await;
    let error = mailroom
        .access_token(AccountRef::User(user), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Tokens(mailroom_tokens::Error::SettingsAltered {
                provider: Provider::Microsoft
            })
        ),
        "{error:?}"
    );
    assert_eq!(
        error.remedy(),
        Some(Remedy::ReviewApp {
            provider: Some(Provider::Microsoft)
        })
    );
    assert!(
        nobody_connected(&token_trap),
        "the refresh token went to the altered endpoint"
    );

    // The administrator sets them again: sealed anew, usable.
    let accounts = Accounts::new(&world.db.db, &world.key);
    accounts
        .set_company(&password_account(&world), None)
        .await
        .unwrap();
    assert_eq!(
        accounts.company().await.unwrap().unwrap().server.port,
        world.smtp.port
    );
    world.register_app(Provider::Microsoft).await;
    mailroom_tokens::registration::Apps::new(&world.db.db, &world.key)
        .require(Provider::Microsoft)
        .await
        .unwrap();
    world.finish().await;
}

#[tokio::test]
async fn a_database_from_before_seals_is_sealed_once_at_open() {
    let world = World::new(Backend::Sqlite, World::tokens(&[])).await;
    world.register_app(Provider::Microsoft).await;
    Accounts::new(&world.db.db, &world.key)
        .set_company(&password_account(&world), None)
        .await
        .unwrap();
    // As an older version left it: no settings seals, and a key check without the marker.
    let key = world.key.primary();
    execute(&world, "UPDATE company_account SET settings_seal = NULL").await;
    execute(&world, "UPDATE oauth_app SET settings_seal = NULL").await;
    let old_check = key.seal(b"mailroom key check", b"key_check:1");
    world
        .execute("UPDATE key_check SET sealed = ?", vec![old_check.into()])
        .await;
    assert!(
        !mailroom_crypto::store::settings_sealed(&world.db.db, &world.key)
            .await
            .unwrap()
    );
    // Readable as it is until a facade opens it ...
    assert!(
        Accounts::new(&world.db.db, &world.key)
            .company()
            .await
            .unwrap()
            .is_some()
    );
    world.mailroom().await;
    // ... which seals every row once; from then on a missing seal is refused.
    assert!(
        mailroom_crypto::store::settings_sealed(&world.db.db, &world.key)
            .await
            .unwrap()
    );
    assert!(
        Accounts::new(&world.db.db, &world.key)
            .company()
            .await
            .unwrap()
            .is_some()
    );
    execute(&world, "UPDATE company_account SET settings_seal = NULL").await;
    let refused = Accounts::new(&world.db.db, &world.key).company().await;
    assert!(
        matches!(
            refused,
            Err(mailroom_accounts::Error::SettingsAltered { .. })
        ),
        "{refused:?}"
    );
    world.finish().await;
}

#[tokio::test]
async fn a_commit_that_fails_part_way_leaves_the_prepared_state_as_it_was() {
    let world = World::new(Backend::Sqlite, World::tokens(&[])).await;
    let old = world.key.primary().clone();
    Accounts::new(&world.db.db, &world.key)
        .set_company(&password_account(&world), None)
        .await
        .unwrap();
    world
        .store_token(Provider::Microsoft, SA, "at-1", false)
        .await;
    let next = EncryptionKey::generate();
    let both = world.key.clone().with(next.clone());
    let host = facade(&world, &both).await.unwrap();
    host.prepare_key_rotation(&next).await.unwrap();
    // A damaged token makes the commit fail after the password was re-sealed in its
    // transaction (as a crash there would): everything rolls back.
    execute(
        &world,
        "UPDATE oauth_token SET access_token_sealed = refresh_token_sealed",
    )
    .await;
    let error = host.commit_key_rotation().await.unwrap_err();
    assert!(error.key_problem().is_some(), "{error:?}");
    let state = mailroom::key_state(&world.db.db).await.unwrap().unwrap();
    assert_eq!(state.current, old.id());
    assert_eq!(state.prepared.as_deref(), Some(next.id().as_str()));
    let company_seal = sealed_by(&world)
        .await
        .into_iter()
        .find(|(column, _)| column == "company_account.password_sealed")
        .unwrap();
    assert_eq!(company_seal.1.as_deref(), Some(old.id().as_str()));
    // Hosts with only the old key keep working; once the damage is removed the commit
    // goes through.
    facade(&world, &world.key).await.unwrap();
    execute(&world, "DELETE FROM oauth_token").await;
    let resealed = host.commit_key_rotation().await.unwrap();
    assert_eq!((resealed.passwords, resealed.tokens), (1, 0));
    world.finish().await;
}
