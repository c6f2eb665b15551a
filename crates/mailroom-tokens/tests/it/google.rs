//! Google contract: code exchange, refresh without a new refresh token, the Testing-app
//! `invalid_grant`, revocation, and the device flow refusal.

use std::time::{Duration, SystemTime};

use mailroom_crypto::KeyRing;
use mailroom_model::Provider;
use mailroom_testkit::{Backend, TestDatabase};
use mailroom_tokens::{
    Error, OAuthHttp,
    interactive::{
        SignInOptions, revoke_at_provider, sign_in_with_browser, sign_in_with_device_code,
    },
    storage::{TokenKey, TokenStatus, TokenStore},
};
use serde_json::json;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::approve;
use crate::support::{
    self, CLIENT_ID, CLIENT_SECRET, browser, form, google_id_token, google_token_body, signed_in,
    store_expired, target,
};

const ADDRESS: &str = "orders@example.com";

#[tokio::test]
async fn a_google_sign_in_asks_for_offline_access_and_consent() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/authorize"))
        .respond_with(approve(None))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(google_token_body(
            "ya29.a0-google-access",
            Some("1//0g-google-refresh"),
            Some(&google_id_token(ADDRESS)),
        )))
        .expect(1)
        .mount(&server)
        .await;
    let db = TestDatabase::new(Backend::Postgres).await;
    let key = KeyRing::generate();
    let app = support::register(&db, &key, Provider::Google, support::app(&server, true)).await;
    let options = SignInOptions {
        expected_address: Some(ADDRESS.to_owned()),
        timeout: Duration::from_secs(20),
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
    assert_eq!(signed_in.identity.address, ADDRESS);
    let requests = server.received_requests().await.unwrap();
    let authorize: std::collections::HashMap<String, String> =
        requests[0].url.query_pairs().into_owned().collect();
    assert_eq!(
        authorize["scope"],
        "https://www.googleapis.com/auth/gmail.send openid email"
    );
    assert_eq!(authorize["access_type"], "offline");
    assert_eq!(authorize["prompt"], "consent");
    assert_eq!(authorize["login_hint"], ADDRESS);
    let token = form(&requests[1]);
    assert_eq!(token["grant_type"], "authorization_code");
    assert_eq!(token["client_id"], CLIENT_ID);
    assert_eq!(token["client_secret"], CLIENT_SECRET);
    assert!(token.contains_key("code_verifier"));

    let stored = TokenStore::new(&db.db, &key)
        .save_sign_in(&signed_in, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(
        stored.refresh_token.unwrap().expose(),
        "1//0g-google-refresh"
    );
    db.finish().await;
}

#[tokio::test]
async fn a_refresh_without_a_new_refresh_token_keeps_the_old_one() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("refresh_token=1%2F%2F0g-old"))
        .respond_with(ResponseTemplate::new(200).set_body_json(google_token_body(
            "ya29.fresh",
            None,
            None,
        )))
        .expect(2)
        .mount(&server)
        .await;
    let db = TestDatabase::new(Backend::Postgres).await;
    let key = KeyRing::generate();
    support::register(&db, &key, Provider::Google, support::app(&server, true)).await;
    store_expired(
        &db,
        &key,
        &signed_in(Provider::Google, ADDRESS, "ya29.old", Some("1//0g-old")),
    )
    .await;
    let broker = support::broker(&db, &key);
    let token = broker
        .access_token(&target(Provider::Google, ADDRESS))
        .await
        .unwrap();
    assert_eq!(token.secret.expose(), "ya29.fresh");
    let stored = TokenStore::new(&db.db, &key)
        .load(&TokenKey::new(Provider::Google, "", ADDRESS))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.refresh_token.unwrap().expose(), "1//0g-old");
    // The kept refresh token works for the next refresh too.
    broker
        .force_refresh(&target(Provider::Google, ADDRESS))
        .await
        .unwrap();
    db.finish().await;
}

#[tokio::test]
async fn the_testing_app_invalid_grant_marks_the_token_revoked() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant",
            "error_description": "Token has been expired or revoked."
        })))
        .expect(1)
        .mount(&server)
        .await;
    let db = TestDatabase::new(Backend::Postgres).await;
    let key = KeyRing::generate();
    support::register(&db, &key, Provider::Google, support::app(&server, true)).await;
    store_expired(
        &db,
        &key,
        &signed_in(Provider::Google, ADDRESS, "ya29.old", Some("1//0g-old")),
    )
    .await;
    let error = support::broker(&db, &key)
        .access_token(&target(Provider::Google, ADDRESS))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "Failed to obtain an access token for orders@example.com (google): the stored sign-in has expired or was revoked (invalid_grant: Token has been expired or revoked.); an administrator must sign in for account 4"
    );
    let stored = TokenStore::new(&db.db, &key)
        .load(&TokenKey::new(Provider::Google, "", ADDRESS))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(stored.status, TokenStatus::Revoked { .. }));
    db.finish().await;
}

#[tokio::test]
async fn revocation_posts_the_token_and_reports_the_answer() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .and(body_string_contains("token=1%2F%2F0g-to-revoke"))
        .respond_with(ResponseTemplate::new(200).set_body_string(""))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .and(body_string_contains("token=1%2F%2F0g-already-gone"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"error": "invalid_token", "error_description": "Token expired or revoked"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    let app = support::register(&db, &key, Provider::Google, support::app(&server, true)).await;
    let answer = revoke_at_provider(&OAuthHttp::new(), &app, &"1//0g-to-revoke".into())
        .await
        .unwrap()
        .unwrap();
    assert!(answer.contains("confirmed"), "{answer}");
    let refused = revoke_at_provider(&OAuthHttp::new(), &app, &"1//0g-already-gone".into())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("invalid_token: Token expired or revoked"),
        "{refused}"
    );
    db.finish().await;
}

#[tokio::test]
async fn google_refuses_the_device_flow_with_the_reason() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    let app = support::register(&db, &key, Provider::Google, support::app(&server, true)).await;
    let error = sign_in_with_device_code(
        &OAuthHttp::new(),
        &app,
        &SignInOptions::default(),
        SystemTime::now,
        |_| {},
        |_| async {},
    )
    .await
    .unwrap_err();
    assert!(matches!(error, Error::DeviceFlowNotSupported));
    assert!(error.to_string().contains("Gmail scopes"), "{error}");
    db.finish().await;
}
