//! No secret in logs (tracing at TRACE), errors, `Debug` output, or database files.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mailroom_crypto::KeyRing;
use mailroom_model::Provider;
use mailroom_testkit::{Backend, TestDatabase};
use mailroom_tokens::{
    OAuthHttp, TokenTarget,
    interactive::{SignInOptions, sign_in_with_browser},
    storage::TokenStore,
};
use serde_json::json;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::approve;
use crate::support::{
    self, CLIENT_SECRET, browser, microsoft_id_token, microsoft_token_body, target,
};

const ADDRESS: &str = "sa@contoso.example";
const SECRETS: &[&str] = &[
    "access-token-SIGNIN-0001",
    "refresh-token-SIGNIN-0002",
    "access-token-REFRESH-0003",
    "refresh-token-REFRESH-0004",
    CLIENT_SECRET,
];

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[track_caller]
fn assert_clean(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "{what} contains the secret {secret}:\n{text}"
        );
    }
}

#[tokio::test]
async fn secrets_stay_out_of_logs_errors_debug_and_the_database() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/authorize"))
        .respond_with(approve(None))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=authorization_code"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(microsoft_token_body(
                SECRETS[0],
                SECRETS[1],
                Some(&microsoft_id_token(ADDRESS)),
            )),
        )
        .mount(&server)
        .await;
    let refresh = Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(microsoft_token_body(SECRETS[2], SECRETS[3], None)),
        )
        .expect(1)
        .mount_as_scoped(&server)
        .await;

    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    let app = support::register(&db, &key, Provider::Microsoft, support::app(&server, false)).await;
    let options = SignInOptions {
        expected_address: Some(ADDRESS.to_owned()),
        timeout: Duration::from_secs(20),
        ..Default::default()
    };
    let signed_in = sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &options,
        SystemTime::now,
        browser(),
    )
    .await
    .unwrap();
    let mut debug = format!("{signed_in:?} {app:?}");
    let store = TokenStore::new(&db.db, &key);
    let stored = store
        .save_sign_in(&signed_in, chrono::Utc::now() - chrono::Duration::hours(2))
        .await
        .unwrap();
    debug.push_str(&format!("{stored:?}"));

    let broker = support::broker(&db, &key);
    let refreshed = broker
        .access_token(&TokenTarget {
            token_identity: Some(stored.key.identity_key.clone()),
            ..target(Provider::Microsoft, ADDRESS)
        })
        .await
        .unwrap();
    assert_eq!(refreshed.secret.expose(), SECRETS[2]);
    debug.push_str(&format!("{refreshed:?} {broker:?}"));
    drop(refresh);

    // A failing refresh: its error and logs must not carry the tokens either.
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant",
            "error_description": "AADSTS50173: The provided grant has expired due to it being revoked.",
            "error_codes": [50173]
        })))
        .mount(&server)
        .await;
    let error = broker
        .force_refresh(&TokenTarget {
            token_identity: Some(stored.key.identity_key.clone()),
            ..target(Provider::Microsoft, ADDRESS)
        })
        .await
        .unwrap_err();
    let errors = format!("{error} {error:?}");

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("refreshing access token"),
        "TRACE logging was captured:\n{logs}"
    );
    assert_clean("the logs", &logs);
    assert_clean("Debug output", &debug);
    assert_clean("the errors", &errors);

    let row = store.load(&stored.key).await.unwrap().unwrap();
    assert_eq!(
        row.refresh_token.unwrap().expose(),
        SECRETS[3],
        "the rotated refresh token was stored"
    );
    // Read the files while the database is open, so the write-ahead log (where recent
    // writes live until a checkpoint) is still there to inspect.
    let mut files = 0;
    for entry in std::fs::read_dir(db.dir()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        files += 1;
        for secret in SECRETS {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a database file holds {secret} in plaintext"
            );
        }
    }
    assert!(
        files >= 2,
        "the database file and its write-ahead log were inspected"
    );
    db.finish().await;
}

/// A database with `provider`'s app registered against `server` (Google's with its client
/// secret, which its token requests carry; Microsoft's, a public client, without) and a
/// sign-in whose access token has expired, so the next use refreshes.
async fn expired_sign_in(server: &MockServer, provider: Provider) -> (TestDatabase, KeyRing) {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    let secret = provider == Provider::Google;
    support::register(&db, &key, provider, support::app(server, secret)).await;
    let stored = support::signed_in(
        provider,
        ADDRESS,
        "access-token-SIGNIN-0001",
        Some("refresh-token-SIGNIN-0002"),
    );
    support::store_expired(&db, &key, &stored).await;
    (db, key)
}

/// The error of a token request that must refresh and cannot.
async fn refresh_error(
    db: &TestDatabase,
    key: &KeyRing,
    provider: Provider,
) -> mailroom_tokens::Error {
    support::broker(db, key)
        .access_token(&target(provider, ADDRESS))
        .await
        .unwrap_err()
}

/// A token endpoint that fails and echoes the request body back, as HTML or inside an
/// OAuth error's description.
async fn echoing_refresh(status: u16, json: bool, provider: Provider) -> String {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(move |request: &wiremock::Request| {
            let echoed = String::from_utf8_lossy(&request.body).into_owned();
            if json {
                ResponseTemplate::new(status).set_body_json(json!({
                    "error": "invalid_request",
                    "error_description": format!("bad request: {echoed}")
                }))
            } else {
                ResponseTemplate::new(status)
                    .insert_header("content-type", "text/html")
                    .set_body_string(format!("<html><body>Request was: {echoed}</body></html>"))
            }
        })
        .mount(&server)
        .await;
    let (db, key) = expired_sign_in(&server, provider).await;
    let error = refresh_error(&db, &key, provider).await;
    let rows = TokenStore::new(&db.db, &key).list().await.unwrap();
    let reasons: Vec<String> = rows
        .iter()
        .filter_map(|row| row.status_reason.clone())
        .collect();
    db.finish().await;
    format!("{error} | {error:?} | {}", reasons.join(" "))
}

#[tokio::test]
async fn a_failure_that_echoes_the_request_never_shows_its_secrets() {
    // Google's requests carry the client secret as well as the refresh token.
    for provider in [Provider::Microsoft, Provider::Google] {
        for (status, json) in [(400, false), (400, true), (401, true)] {
            let text = echoing_refresh(status, json, provider).await;
            assert_clean(&format!("{provider}: HTTP {status} (json {json})"), &text);
            assert!(
                text.contains("[redacted]"),
                "{provider}: HTTP {status}: {text}"
            );
        }
    }
}

#[tokio::test]
async fn an_endless_answer_from_the_token_endpoint_is_cut_off() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_string("x".repeat(4 * 1024 * 1024)))
        .mount(&server)
        .await;
    let (db, key) = expired_sign_in(&server, Provider::Microsoft).await;
    let error = refresh_error(&db, &key, Provider::Microsoft).await;
    assert!(error.to_string().contains("larger than"), "{error}");
    db.finish().await;
}

#[tokio::test]
async fn a_token_endpoint_changed_behind_mailrooms_back_to_plain_http_gets_no_secret() {
    use sea_orm::{ConnectionTrait, Statement};
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(microsoft_token_body(
                "access-token-REFRESH-0003",
                "refresh-token-REFRESH-0004",
                None,
            )),
        )
        .expect(0)
        .mount(&server)
        .await;
    let (db, key) = expired_sign_in(&server, Provider::Microsoft).await;
    // Someone with write access to the database (not the key) points the token endpoint
    // at plain http on an address the CLI refuses (an IPv4-mapped IPv6 address).
    let port = server.address().port();
    db.db
        .execute(Statement::from_string(
            db.db.get_database_backend(),
            format!("UPDATE oauth_app SET token_url = 'http://[::ffff:127.0.0.1]:{port}/token'"),
        ))
        .await
        .unwrap();
    // The registration's seal no longer opens: nothing is sent (the use-time rule for
    // plain http, `OAuthHttp`'s destination check, stands behind it; its tests are in
    // `src/oauth.rs`).
    let error = refresh_error(&db, &key, Provider::Microsoft).await;
    let text = error.to_string();
    assert!(
        matches!(
            error,
            mailroom_tokens::Error::SettingsAltered {
                provider: Provider::Microsoft
            }
        ),
        "{text}"
    );
    assert!(text.contains("changed outside mailroom"), "{text}");
    assert_clean("the error", &text);
    db.finish().await;
    // `expect(0)`: the mock server received nothing.
}

/// The sealed columns of the row of `address`: its id, tenant and identity key, and the
/// access and refresh tokens as sealed.
async fn sealed_row(db: &TestDatabase, address: &str) -> (i64, String, String, Vec<u8>, Vec<u8>) {
    use sea_orm::{ConnectionTrait, Statement};
    let backend = db.db.get_database_backend();
    let row = db
        .db
        .query_one(Statement::from_sql_and_values(
            backend,
            "SELECT id, tenant, identity_key, access_token_sealed, refresh_token_sealed FROM oauth_token WHERE address = $1",
            [address.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    (
        row.try_get("", "id").unwrap(),
        row.try_get("", "tenant").unwrap(),
        row.try_get("", "identity_key").unwrap(),
        row.try_get("", "access_token_sealed").unwrap(),
        row.try_get("", "refresh_token_sealed").unwrap(),
    )
}

/// Writes `sealed` into the refresh token column of row `id`.
async fn set_refresh_sealed(db: &TestDatabase, id: i64, sealed: Vec<u8>) {
    use sea_orm::{ConnectionTrait, Statement};
    db.db
        .execute(Statement::from_sql_and_values(
            db.db.get_database_backend(),
            "UPDATE oauth_token SET refresh_token_sealed = $1 WHERE id = $2",
            [sealed.into(), id.into()],
        ))
        .await
        .unwrap();
}

/// Each token is sealed with associated data naming its row and column
/// (`oauth_token:{provider}:{tenant}:{identity}:{column}`, the mail access token's column
/// being `access`, as in rows from before resources): rows written by earlier versions
/// open, and a sealed token moved to another row or column does not.
#[tokio::test]
async fn each_sealed_token_is_bound_to_its_row_and_column() {
    const OTHER: &str = "orders@contoso.example";
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    let store = TokenStore::new(&db.db, &key);
    for (address, access, refresh) in [
        (ADDRESS, "at-sales", "rt-sales"),
        (OTHER, "at-orders", "rt-orders"),
    ] {
        let saved = store
            .save_sign_in(
                &support::signed_in(Provider::Microsoft, address, access, Some(refresh)),
                chrono::Utc::now(),
            )
            .await
            .unwrap();
        assert_eq!(saved.version, 1);
    }
    let (id, tenant, identity, access, refresh) = sealed_row(&db, ADDRESS).await;
    let aad = |column: &str| format!("oauth_token:microsoft:{tenant}:{identity}:{column}");
    assert_eq!(
        *key.open_string(&access, aad("access").as_bytes()).unwrap(),
        "at-sales"
    );
    assert_eq!(
        *key.open_string(&refresh, aad("refresh").as_bytes())
            .unwrap(),
        "rt-sales"
    );
    assert!(key.open(&access, aad("access:graph").as_bytes()).is_err());

    // A second sign-in for the same address is a new version of the row.
    let again = store
        .save_sign_in(
            &support::signed_in(
                Provider::Microsoft,
                ADDRESS,
                "at-sales-2",
                Some("rt-sales-2"),
            ),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(again.version, 2);

    // The other row's sealed refresh token moved into this row does not open; nor does
    // this row's access token moved into its refresh column.
    let key_of_row = mailroom_tokens::storage::TokenKey::new(Provider::Microsoft, &tenant, ADDRESS);
    let (_, _, _, own_access, own_refresh) = sealed_row(&db, ADDRESS).await;
    let (_, _, _, _, other_refresh) = sealed_row(&db, OTHER).await;
    for moved in [other_refresh, own_access] {
        set_refresh_sealed(&db, id, moved).await;
        assert!(store.load(&key_of_row).await.is_err());
    }
    set_refresh_sealed(&db, id, own_refresh).await;
    assert!(store.load(&key_of_row).await.unwrap().is_some());
    db.finish().await;
}
