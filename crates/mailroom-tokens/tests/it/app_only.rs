//! App-only credentials end to end in the token crate: stored sealed on the app
//! registration (and in its settings seal), refused where the providers refuse them, and
//! the broker's app tokens — no refresh token, requested with the app's own credential,
//! cached per (app, resource) in the database, renewed before expiry by one process of
//! many (the sign-ins' lease and compare-and-swap). The token endpoints are wiremock
//! playing the documented requests and answers (MicrosoftDocs/entra-docs
//! `v2-oauth2-client-creds-grant-flow.md`; developers.google.com/identity/protocols/oauth2/
//! service-account).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use mailroom_crypto::{EncryptionKey, KeyRing};
use mailroom_model::{
    AccountRef, Auth, ManualClock, Provider, Remedy, Route, Secret, ServerSettings,
};
use mailroom_testkit::{TestDatabase, on_both_backends};
use mailroom_tokens::{
    Error, OAuthHttp, Resource, TokenBroker, TokenTarget,
    app_only::{AppCertificate, ServiceAccountKey},
    registration::{AppChange, AppCredential, Apps},
    storage::TokenStore,
};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::{self, form};

const TENANT: &str = "contoso.onmicrosoft.com";
const MAILBOX: &str = "invoices@contoso.example";
const CERTIFICATE: &str = include_str!("../data/app-only-test-cert.pem");
const EXPIRED_CERTIFICATE: &str = include_str!("../data/app-only-expired-cert.pem");
const KEY: &str = include_str!("../data/app-only-test-key.pem");
const SERVICE_ACCOUNT: &str = "sender@mailroom-test.iam.gserviceaccount.com";

fn service_account_json(token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "mailroom-test",
        "private_key_id": "key-1",
        "private_key": KEY,
        "client_email": SERVICE_ACCOUNT,
        "client_id": "109876543210",
        "token_uri": token_uri,
    })
    .to_string()
}

fn secret() -> AppCredential {
    AppCredential::ClientSecret(Secret::new("app-secret-value~1"))
}

fn certificate() -> AppCredential {
    AppCredential::Certificate(Arc::new(
        AppCertificate::from_pem(&format!("{CERTIFICATE}{KEY}")).unwrap(),
    ))
}

fn service_account(token_uri: &str) -> AppCredential {
    AppCredential::ServiceAccount(Arc::new(
        ServiceAccountKey::from_json(&service_account_json(token_uri)).unwrap(),
    ))
}

/// The Microsoft app of `TENANT` with its endpoints on `server` and `credential`.
async fn register_microsoft(
    db: &TestDatabase,
    key: &KeyRing,
    server: &MockServer,
    credential: AppCredential,
) {
    let mut change = support::app(server, false);
    change.tenant = Some(TENANT.to_owned());
    change.app_credential = Some(Some(credential));
    Apps::new(&db.db, key)
        .set(Provider::Microsoft, change)
        .await
        .unwrap();
}

fn app_target(provider: Provider, route: Route, address: &str) -> TokenTarget {
    let mut server = ServerSettings::preset(provider);
    server.smtp_user = address.to_owned();
    server.route = route;
    server.auth = Auth::AppOnly;
    TokenTarget::of_account(AccountRef::User(7), &server)
}

/// A broker on a clock the test moves.
fn broker(db: &TestDatabase, key: &KeyRing, clock: &Arc<ManualClock>) -> TokenBroker {
    TokenBroker::new(
        db.db.clone(),
        key.clone(),
        OAuthHttp::new(),
        clock.clone(),
        support::test_config(),
    )
}

/// Answers each token request with a new numbered token of `lifetime` seconds, counting
/// them.
fn numbered_tokens(
    count: Arc<AtomicUsize>,
    lifetime: u64,
    delay: Duration,
) -> impl Fn(&Request) -> ResponseTemplate {
    move |_: &Request| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        ResponseTemplate::new(200)
            .set_body_json(json!({
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": format!("app-token-{n}"),
            }))
            .set_delay(delay)
    }
}

async fn sent_forms(server: &MockServer) -> Vec<std::collections::HashMap<String, String>> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(form)
        .collect()
}

/// The credential is sealed (its text is nowhere in the row), reads back whole, shows no
/// secret in `Debug`, and its kind is part of the settings seal: a row whose kind was
/// changed in the database is refused.
async fn credentials_are_sealed_and_their_kind_is_in_the_seal(db: &TestDatabase) {
    let server = MockServer::start().await;
    let key = KeyRing::generate();
    register_microsoft(db, &key, &server, secret()).await;
    let app = Apps::new(&db.db, &key)
        .require(Provider::Microsoft)
        .await
        .unwrap();
    assert_eq!(app.app_credential, Some(secret()));
    assert!(!format!("{app:?}").contains("app-secret-value"));
    let row = db
        .db
        .query_one(Statement::from_string(
            db.db.get_database_backend(),
            "SELECT app_credential_kind, app_credential_sealed FROM oauth_app WHERE provider = 'microsoft'"
                .to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.try_get::<String>("", "app_credential_kind").unwrap(),
        "client-secret"
    );
    let sealed: Vec<u8> = row.try_get("", "app_credential_sealed").unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains("app-secret-value"));

    // A certificate replaces it; its private key is sealed too.
    register_microsoft(db, &key, &server, certificate()).await;
    let app = Apps::new(&db.db, &key)
        .require(Provider::Microsoft)
        .await
        .unwrap();
    let credential = app.app_credential.clone().unwrap();
    assert_eq!(credential, certificate());
    assert_eq!(credential.kind(), "certificate");
    assert!(
        credential
            .describe()
            .contains("expires 2126-11-08 04:28 UTC")
    );
    assert!(!format!("{app:?}").contains("PRIVATE KEY"));

    // Someone without the key relabels the credential: the settings seal no longer opens.
    db.db
        .execute(Statement::from_string(
            db.db.get_database_backend(),
            "UPDATE oauth_app SET app_credential_kind = 'client-secret' WHERE provider = 'microsoft'"
                .to_owned(),
        ))
        .await
        .unwrap();
    let error = Apps::new(&db.db, &key)
        .require(Provider::Microsoft)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::SettingsAltered { .. } | Error::Key(_)),
        "{error:?}"
    );
    drop(server);
}

/// Credentials compare by kind and content, show no secret in `Debug`, and only a
/// certificate says when it expires.
#[test]
fn credentials_compare_by_content_and_only_a_certificate_expires() {
    let other = AppCredential::ClientSecret(Secret::new("another-secret"));
    assert_eq!(secret(), secret());
    assert_ne!(secret(), other);
    assert_ne!(secret(), certificate());
    assert_eq!(format!("{:?}", secret()), "ClientSecret(<redacted>)");
    assert_eq!(secret().expires_at(), None);
    assert_eq!(
        service_account("https://oauth2.example/token").expires_at(),
        None
    );
    let expires = certificate().expires_at().unwrap();
    assert_eq!(
        expires.format("%Y-%m-%d %H:%M").to_string(),
        "2126-11-08 04:28",
        "the certificate's notAfter"
    );
}

/// Both registrations, each with a secret and an app-only credential: listed in provider
/// order with their secrets opened; a rotation re-seals all four secrets and a lost key's
/// reset forgets all four; an altered row makes the list fail, not skip it.
async fn every_registration_is_listed_resealed_and_forgotten_whole(db: &TestDatabase) {
    let server = MockServer::start().await;
    let key = KeyRing::generate();
    register_microsoft(db, &key, &server, secret()).await;
    let mut google = support::app(&server, true);
    google.app_credential = Some(Some(service_account(&format!("{}/token", server.uri()))));
    Apps::new(&db.db, &key)
        .set(Provider::Google, google)
        .await
        .unwrap();
    // Microsoft's delegated sign-in takes no client secret: its one secret here is the
    // app-only credential; Google has its client secret and its service account key.
    let apps = Apps::new(&db.db, &key).list().await.unwrap();
    let providers: Vec<Provider> = apps.iter().map(|app| app.provider).collect();
    assert_eq!(providers, [Provider::Google, Provider::Microsoft]);
    assert_eq!(
        apps[0].client_secret.as_ref().map(Secret::expose),
        Some(support::CLIENT_SECRET)
    );
    assert_eq!(
        apps[0].app_credential.as_ref().map(AppCredential::kind),
        Some("service-account")
    );
    assert_eq!(apps[1].app_credential, Some(secret()));

    let new_key = EncryptionKey::generate();
    let transaction = sea_orm::TransactionTrait::begin(&db.db).await.unwrap();
    let resealed = Apps::new(&transaction, &key)
        .reseal(&new_key)
        .await
        .unwrap();
    transaction.commit().await.unwrap();
    assert_eq!(
        resealed, 3,
        "Google's secret and key, Microsoft's credential"
    );
    let rotated = KeyRing::new([new_key.clone(), key.primary().clone()]).unwrap();
    let listed = Apps::new(&db.db, &rotated).list().await.unwrap();
    assert_eq!(listed, apps, "the same registrations under the new key");

    // Someone without the key points Google's token endpoint elsewhere: the list fails.
    db.db
        .execute(Statement::from_string(
            db.db.get_database_backend(),
            "UPDATE oauth_app SET token_url = 'https://attacker.example/token' WHERE provider = 'google'"
                .to_owned(),
        ))
        .await
        .unwrap();
    let error = Apps::new(&db.db, &rotated).list().await.unwrap_err();
    assert!(matches!(error, Error::SettingsAltered { .. }), "{error:?}");

    let only_new = KeyRing::new([new_key.clone()]).unwrap();
    let forgetting = Apps::new(&db.db, &only_new);
    assert_eq!(forgetting.forget_secrets().await.unwrap(), 3);
    assert_eq!(
        forgetting.forget_secrets().await.unwrap(),
        0,
        "nothing left"
    );
    drop(server);
}

/// What the providers refuse is refused when it is set, with what to do: a credential of
/// the other provider, an expired certificate, app-only under `organizations`.
async fn credentials_the_providers_refuse_are_refused_when_set(db: &TestDatabase) {
    let server = MockServer::start().await;
    let key = KeyRing::generate();
    let apps = Apps::new(&db.db, &key);
    let mut change = support::app(&server, false);
    change.tenant = Some(TENANT.to_owned());
    change.app_credential = Some(Some(service_account("https://oauth2.googleapis.com/token")));
    let error = apps.set(Provider::Microsoft, change).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("a service-account is not an app-only credential of microsoft"),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("a client secret or a certificate"),
        "{error}"
    );
    let mut change = support::app(&server, false);
    change.app_credential = Some(Some(secret()));
    let error = apps.set(Provider::Google, change).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("give Google a service account's JSON key file"),
        "{error}"
    );
    // A client secret is text a form can carry: no control characters.
    let mut change = support::app(&server, false);
    change.tenant = Some(TENANT.to_owned());
    change.app_credential = Some(Some(AppCredential::ClientSecret(Secret::new(
        "app-secret\nvalue",
    ))));
    let error = apps.set(Provider::Microsoft, change).await.unwrap_err();
    assert!(error.to_string().contains("client secret"), "{error}");

    let expired = AppCredential::Certificate(Arc::new(
        AppCertificate::from_pem(&format!("{EXPIRED_CERTIFICATE}{KEY}")).unwrap(),
    ));
    let mut change = support::app(&server, false);
    change.tenant = Some(TENANT.to_owned());
    change.app_credential = Some(Some(expired));
    let error = apps.set(Provider::Microsoft, change).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("expired on 2025-01-01 00:00 UTC"),
        "{error}"
    );

    let mut change = support::app(&server, false);
    change.tenant = Some("organizations".to_owned());
    change.app_credential = Some(Some(secret()));
    let error = apps.set(Provider::Microsoft, change).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("app-only tokens are issued only by the app's own tenant"),
        "{error}"
    );
    assert_eq!(error.remedy(), Some(Remedy::SetMicrosoftTenant));
    // Nothing was stored by the refusals.
    assert!(apps.get(Provider::Microsoft).await.unwrap().is_none());

    // A Google registration made for a service account alone takes its client id.
    let app = apps
        .set(
            Provider::Google,
            AppChange {
                app_credential: Some(Some(service_account("https://oauth2.googleapis.com/token"))),
                ..AppChange::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(app.client_id, "109876543210");
    drop(server);
}

/// Key rotation re-seals the credential; a lost key's reset forgets it (the
/// registration stays).
async fn rotation_reseals_and_a_lost_key_forgets_the_credential(db: &TestDatabase) {
    let server = MockServer::start().await;
    let key = KeyRing::generate();
    register_microsoft(db, &key, &server, certificate()).await;
    let new_key = EncryptionKey::generate();
    let transaction = sea_orm::TransactionTrait::begin(&db.db).await.unwrap();
    assert_eq!(
        Apps::new(&transaction, &key)
            .reseal(&new_key)
            .await
            .unwrap(),
        1
    );
    transaction.commit().await.unwrap();
    // The credential now opens with the new key only (its associated data names the
    // provider and the kind).
    let sealed: Vec<u8> = db
        .db
        .query_one(Statement::from_string(
            db.db.get_database_backend(),
            "SELECT app_credential_sealed FROM oauth_app WHERE provider = 'microsoft'".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "app_credential_sealed")
        .unwrap();
    let aad = b"oauth_app:microsoft:app_credential:certificate";
    let plain = new_key.open(&sealed, aad).unwrap();
    assert!(
        String::from_utf8(plain.to_vec())
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    assert!(key.primary().open(&sealed, aad).is_err());
    let only_new = KeyRing::new([new_key.clone(), key.primary().clone()]).unwrap();
    let apps = Apps::new(&db.db, &only_new);
    assert_eq!(apps.forget_secrets().await.unwrap(), 1);
    apps.seal_all_settings(&new_key).await.unwrap();
    let app = apps.get(Provider::Microsoft).await.unwrap().unwrap();
    assert_eq!(app.app_credential, None);
    drop(server);
}

/// The Microsoft app with a client secret, its token endpoint answering numbered tokens
/// of `lifetime` seconds, and a broker on a clock at `start`.
struct NumberedApp {
    server: MockServer,
    count: Arc<AtomicUsize>,
    key: KeyRing,
    clock: Arc<ManualClock>,
    broker: TokenBroker,
}

async fn numbered_app(db: &TestDatabase, lifetime: u64, start: SystemTime) -> NumberedApp {
    let server = MockServer::start().await;
    let count = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(numbered_tokens(count.clone(), lifetime, Duration::ZERO))
        .mount(&server)
        .await;
    let key = KeyRing::generate();
    register_microsoft(db, &key, &server, secret()).await;
    let clock = Arc::new(ManualClock::new(start));
    let broker = broker(db, &key, &clock);
    NumberedApp {
        server,
        count,
        key,
        clock,
        broker,
    }
}

/// A token is used until exactly the expiry skew (5 minutes) before it expires: at that
/// second, and not a second earlier, a new one is asked for.
async fn an_app_token_is_renewed_at_the_expiry_skew_not_before(db: &TestDatabase) {
    // Whole seconds, so the database keeps the expiry exactly.
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let NumberedApp {
        count,
        clock,
        broker,
        ..
    } = numbered_app(db, 3600, start).await;
    let graph = app_target(Provider::Microsoft, Route::Graph, MAILBOX);
    assert_eq!(
        broker.access_token(&graph).await.unwrap().secret.expose(),
        "app-token-1"
    );
    clock.advance(Duration::from_secs(3600 - 5 * 60 - 1));
    assert_eq!(
        broker.access_token(&graph).await.unwrap().secret.expose(),
        "app-token-1",
        "a second before the skew"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        broker.access_token(&graph).await.unwrap().secret.expose(),
        "app-token-2",
        "at the skew"
    );
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

/// A token endpoint failing transiently (5xx) is asked again, `transient_attempts` times
/// in all; then the failure is transient, and the lease is released (the next send asks
/// at once instead of waiting for a lease nobody holds).
async fn an_app_token_request_failing_transiently_is_retried_then_given_up(db: &TestDatabase) {
    let server = MockServer::start().await;
    let failing = Arc::new(AtomicUsize::new(2));
    let answered = failing.clone();
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(move |_: &Request| {
            if answered
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_ok()
            {
                return ResponseTemplate::new(503).set_body_string("try again later");
            }
            ResponseTemplate::new(200).set_body_json(json!({
                "token_type": "Bearer",
                "expires_in": 3599,
                "access_token": "app-token-after-two-failures",
            }))
        })
        .mount(&server)
        .await;
    let key = KeyRing::generate();
    register_microsoft(db, &key, &server, secret()).await;
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let broker = broker(db, &key, &clock);
    let graph = app_target(Provider::Microsoft, Route::Graph, MAILBOX);
    let token = broker.access_token(&graph).await.unwrap();
    assert_eq!(token.secret.expose(), "app-token-after-two-failures");
    assert_eq!(server.received_requests().await.unwrap().len(), 3);

    // Three failures in a row: given up after the third, the lease released.
    let smtp = app_target(Provider::Microsoft, Route::Smtp, MAILBOX);
    failing.store(usize::MAX, Ordering::SeqCst);
    let error = broker.access_token(&smtp).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert_eq!(server.received_requests().await.unwrap().len(), 6);
    let again = broker.access_token(&smtp).await.unwrap_err();
    assert!(again.is_transient(), "{again:?}");
    assert_eq!(server.received_requests().await.unwrap().len(), 9);
}

/// Microsoft client credentials with a secret: the documented form (the Graph route's
/// `/.default`, no refresh token, no user), one request while the token lives, a new one
/// when it nears expiry, and the SMTP route's token for Exchange Online beside it.
async fn app_tokens_are_requested_cached_and_renewed(db: &TestDatabase) {
    let NumberedApp {
        server,
        count,
        key,
        clock,
        broker,
    } = numbered_app(db, 3599, SystemTime::now()).await;
    let graph = app_target(Provider::Microsoft, Route::Graph, MAILBOX);
    let first = broker.access_token(&graph).await.unwrap();
    assert_eq!(first.secret.expose(), "app-token-1");
    // A Microsoft app token is the app's, for every mailbox it may send as.
    assert_eq!(first.address, format!("app {}", support::CLIENT_ID));
    let again = broker.access_token(&graph).await.unwrap();
    assert_eq!(again.secret.expose(), "app-token-1");
    // Another process finds it in the database.
    let other = self::broker(db, &key, &clock)
        .access_token(&graph)
        .await
        .unwrap();
    assert_eq!(
        (other.secret.expose(), other.version),
        ("app-token-1", first.version)
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);

    let forms = sent_forms(&server).await;
    let sent = &forms[0];
    assert_eq!(sent["grant_type"], "client_credentials");
    assert_eq!(sent["client_id"], support::CLIENT_ID);
    assert_eq!(sent["client_secret"], "app-secret-value~1");
    assert_eq!(sent["scope"], "https://graph.microsoft.com/.default");
    assert!(!sent.contains_key("refresh_token"));

    // Within the expiry skew (5 minutes) of its hour: a new token, a newer version.
    clock.advance(Duration::from_secs(3599 - 4 * 60));
    let renewed = broker.access_token(&graph).await.unwrap();
    assert_eq!(renewed.secret.expose(), "app-token-2");
    assert!(renewed.version > first.version);

    // The SMTP route: Exchange Online's resource, a token of its own.
    let smtp = app_target(Provider::Microsoft, Route::Smtp, MAILBOX);
    let outlook = broker.access_token(&smtp).await.unwrap();
    assert_eq!(outlook.secret.expose(), "app-token-3");
    assert_eq!(
        sent_forms(&server).await[2]["scope"],
        "https://outlook.office365.com/.default"
    );
    // A rejected token is replaced by a newer one.
    let replaced = broker
        .refresh_rejected(&smtp, outlook.version)
        .await
        .unwrap();
    assert_eq!(replaced.secret.expose(), "app-token-4");

    // `token list` shows the app's tokens with their credential kind, no person.
    let list = TokenStore::new(&db.db, &key).list().await.unwrap();
    assert_eq!(list.len(), 2);
    for summary in &list {
        assert_eq!(summary.credential.as_deref(), Some("client-secret"));
        assert!(!summary.has_refresh_token);
        assert_eq!(summary.address, format!("app {}", support::CLIENT_ID));
    }

    // Changing the app drops its cached tokens: the next send asks again.
    register_microsoft(db, &key, &server, certificate()).await;
    assert!(
        TokenStore::new(&db.db, &key)
            .list()
            .await
            .unwrap()
            .is_empty()
    );
    let after = self::broker(db, &key, &clock)
        .access_token(&graph)
        .await
        .unwrap();
    assert_eq!(after.secret.expose(), "app-token-5");
    let forms = sent_forms(&server).await;
    let last = forms.last().unwrap();
    assert_eq!(
        last["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert!(!last.contains_key("client_secret"));
    drop(server);
}

/// Four processes (brokers with their own caches and lease owners on one database), ten
/// tasks each, ask for the same expired app token at once: one token request in all.
async fn four_processes_request_one_app_token(db: &TestDatabase) {
    let server = MockServer::start().await;
    let count = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path("/token"))
        // Keep the request in flight while the others pile up behind it.
        .respond_with(numbered_tokens(
            count.clone(),
            3599,
            Duration::from_millis(300),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let key = KeyRing::generate();
    register_microsoft(db, &key, &server, certificate()).await;
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let brokers: Vec<Arc<TokenBroker>> =
        (0..4).map(|_| Arc::new(broker(db, &key, &clock))).collect();
    let mut tasks = Vec::new();
    for index in 0..40 {
        let broker = brokers[index % 4].clone();
        tasks.push(tokio::spawn(async move {
            broker
                .access_token(&app_target(Provider::Microsoft, Route::Graph, MAILBOX))
                .await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().secret.expose(), "app-token-1");
    }
    assert_eq!(count.load(Ordering::SeqCst), 1);
    drop(server);
}

/// A Google service account: the JWT bearer grant to the key file's token URI, one token
/// per mailbox (the assertion's `sub`), each cached.
async fn a_service_account_gets_a_token_per_mailbox(db: &TestDatabase) {
    let server = MockServer::start().await;
    let count = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path("/sa/token"))
        .respond_with(numbered_tokens(count.clone(), 3599, Duration::ZERO))
        .mount(&server)
        .await;
    let key = KeyRing::generate();
    let token_uri = format!("{}/sa/token", server.uri());
    Apps::new(&db.db, &key)
        .set(
            Provider::Google,
            AppChange {
                app_credential: Some(Some(service_account(&token_uri))),
                ..AppChange::default()
            },
        )
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let broker = broker(db, &key, &clock);
    let ann = app_target(Provider::Google, Route::Smtp, "ann@example.com");
    let bob = app_target(Provider::Google, Route::Smtp, "bob@example.com");
    assert_eq!(
        broker.access_token(&ann).await.unwrap().secret.expose(),
        "app-token-1"
    );
    assert_eq!(
        broker.access_token(&bob).await.unwrap().secret.expose(),
        "app-token-2"
    );
    assert_eq!(
        broker.access_token(&ann).await.unwrap().secret.expose(),
        "app-token-1"
    );
    let forms = sent_forms(&server).await;
    assert_eq!(forms.len(), 2);
    assert_eq!(
        forms[0]["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    // The assertion's claims (its signature is checked in the unit tests).
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            forms[1]["assertion"].split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "bob@example.com");
    assert_eq!(claims["iss"], SERVICE_ACCOUNT);
    assert_eq!(claims["aud"], token_uri);
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/gmail.send"
    );
    let list = TokenStore::new(&db.db, &key).list().await.unwrap();
    assert_eq!(list.len(), 2);
    assert!(
        list.iter()
            .all(|summary| summary.credential.as_deref() == Some("service-account"))
    );
    drop(server);
}

/// The documented refusals become errors with remedies; nothing is cached, and the lease
/// is given up (the next request asks again at once).
async fn refused_credentials_say_what_to_do(db: &TestDatabase) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '11111111-2222-3333-4444-555555555555'.\r\nTrace ID: 0000\r\nCorrelation ID: 0000\r\nTimestamp: 2026-12-02 06:00:00Z",
            "error_codes": [7000215],
            "timestamp": "2026-12-02 06:00:00Z",
            "trace_id": "0000",
            "correlation_id": "0000",
            "error_uri": "https://login.microsoftonline.com/error?code=7000215"
        })))
        .expect(2)
        .mount(&server)
        .await;
    let key = KeyRing::generate();
    register_microsoft(db, &key, &server, secret()).await;
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let broker = broker(db, &key, &clock);
    let target = app_target(Provider::Microsoft, Route::Graph, MAILBOX);
    for _ in 0..2 {
        let error = broker.access_token(&target).await.unwrap_err();
        assert!(error.needs_app_credential(), "{error:?}");
        assert!(
            error
                .to_string()
                .starts_with("Failed to obtain an access token: the microsoft app's own credentials were refused: the client secret is not valid"),
            "{error}"
        );
        assert_eq!(
            error.remedy(),
            Some(Remedy::SetAppCredential {
                provider: Provider::Microsoft
            })
        );
    }

    // An app-only account whose app has no app-only credential.
    let mut change = support::app(&server, false);
    change.tenant = Some(TENANT.to_owned());
    change.app_credential = Some(None);
    Apps::new(&db.db, &key)
        .set(Provider::Microsoft, change)
        .await
        .unwrap();
    broker.forget_cached();
    let error = broker.access_token(&target).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("the account authenticates app-only"),
        "{error}"
    );
    assert_eq!(
        error.remedy(),
        Some(Remedy::SetAppCredential {
            provider: Provider::Microsoft
        })
    );
    drop(server);
}

/// Google's `unauthorized_client` (delegation not configured) names the service account
/// to authorize.
async fn delegation_not_configured_names_the_client(db: &TestDatabase) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sa/token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "unauthorized_client",
            "error_description": "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested."
        })))
        .mount(&server)
        .await;
    let key = KeyRing::generate();
    Apps::new(&db.db, &key)
        .set(
            Provider::Google,
            AppChange {
                app_credential: Some(Some(service_account(&format!("{}/sa/token", server.uri())))),
                ..AppChange::default()
            },
        )
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let error = broker(db, &key, &clock)
        .access_token(&app_target(
            Provider::Google,
            Route::Smtp,
            "ann@example.com",
        ))
        .await
        .unwrap_err();
    assert_eq!(
        error.remedy(),
        Some(Remedy::ConfigureDomainWideDelegation {
            client: Some(SERVICE_ACCOUNT.to_owned())
        })
    );
    drop(server);
}

/// A delegated target never uses the app's credential, and an app-only one never a
/// sign-in: with a sign-in stored for the mailbox, the app-only target still asks the app.
async fn delegated_and_app_only_tokens_stay_apart(db: &TestDatabase) {
    let NumberedApp {
        server,
        count,
        broker,
        ..
    } = numbered_app(db, 3599, SystemTime::now()).await;
    let delegated = TokenTarget {
        auth: Auth::Delegated,
        ..app_target(Provider::Microsoft, Route::Smtp, MAILBOX)
    };
    let error = broker.access_token(&delegated).await.unwrap_err();
    assert!(error.needs_sign_in(), "{error:?}");
    assert_eq!(count.load(Ordering::SeqCst), 0);
    let token = broker
        .access_token(&app_target(Provider::Microsoft, Route::Smtp, MAILBOX))
        .await
        .unwrap();
    assert_eq!(token.resource, Resource::Mail);
    assert_eq!(count.load(Ordering::SeqCst), 1);
    drop(server);
}

on_both_backends!(
    credentials_are_sealed_and_their_kind_is_in_the_seal,
    credentials_the_providers_refuse_are_refused_when_set,
    rotation_reseals_and_a_lost_key_forgets_the_credential,
    every_registration_is_listed_resealed_and_forgotten_whole,
    an_app_token_is_renewed_at_the_expiry_skew_not_before,
    an_app_token_request_failing_transiently_is_retried_then_given_up,
    app_tokens_are_requested_cached_and_renewed,
    four_processes_request_one_app_token,
    a_service_account_gets_a_token_per_mailbox,
    refused_credentials_say_what_to_do,
    delegation_not_configured_names_the_client,
    delegated_and_app_only_tokens_stay_apart
);
