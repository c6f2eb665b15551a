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
    target,
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
    let key = support::expired_sign_in(
        &db,
        &server,
        Provider::Google,
        ADDRESS,
        "ya29.old",
        "1//0g-old",
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
    let key = support::expired_sign_in(
        &db,
        &server,
        Provider::Google,
        ADDRESS,
        "ya29.old",
        "1//0g-old",
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

/// A sign-in through the browser against `server`'s token answer `body`.
async fn google_sign_in_answered(body: serde_json::Value) -> Result<String, Error> {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/authorize"))
        .respond_with(approve(None))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    let app = support::register(&db, &key, Provider::Google, support::app(&server, true)).await;
    let options = SignInOptions {
        expected_address: Some(ADDRESS.to_owned()),
        timeout: Duration::from_secs(20),
        ..Default::default()
    };
    let result = sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &options,
        SystemTime::now,
        browser(),
    )
    .await
    .map(|signed_in| signed_in.identity.address);
    db.finish().await;
    result
}

/// Google's granular consent ("How to handle granular permissions",
/// developers.google.com/identity/protocols/oauth2/resources/granular-permissions): the
/// person may untick `gmail.send` and grant only the sign-in scopes; the token response's
/// `scope` ("The scopes of access granted by the access_token expressed as a list of
/// space-delimited, case-sensitive strings", OAuth 2.0 for iOS & Desktop Apps) then lacks
/// it. The sign-in is refused instead of storing a token that cannot send.
#[tokio::test]
async fn a_google_sign_in_that_did_not_grant_the_send_scope_is_refused() {
    let mut body = google_token_body(
        "ya29.no-send",
        Some("1//0g-no-send"),
        Some(&google_id_token(ADDRESS)),
    );
    body["scope"] = json!("openid https://www.googleapis.com/auth/userinfo.email");
    let error = google_sign_in_answered(body).await.unwrap_err();
    assert!(
        matches!(&error, Error::ScopeNotGranted { scope } if scope == "https://www.googleapis.com/auth/gmail.send"),
        "{error}"
    );
    // Without `scope` (RFC 6749 §5.1: omitted when it is what was asked), it is accepted.
    let mut body = google_token_body(
        "ya29.all",
        Some("1//0g-all"),
        Some(&google_id_token(ADDRESS)),
    );
    body.as_object_mut().unwrap().remove("scope");
    assert_eq!(google_sign_in_answered(body).await.unwrap(), ADDRESS);
}

/// Google's OpenID Connect page (developers.google.com/identity/openid-connect/openid-connect):
/// `email_verified` is "True if the user's e-mail address has been verified; otherwise
/// false". An unverified address does not stand for the mailbox.
#[tokio::test]
async fn a_google_identity_with_an_unverified_address_is_refused() {
    let claims = |verified: serde_json::Value| {
        let token = google_id_token(ADDRESS);
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut payload: serde_json::Value =
            serde_json::from_slice(&engine.decode(&parts[1]).unwrap()).unwrap();
        payload["email_verified"] = verified;
        parts[1] = engine.encode(payload.to_string());
        parts.join(".")
    };
    let body = google_token_body("ya29.x", Some("1//0g-x"), Some(&claims(json!(false))));
    let error = google_sign_in_answered(body).await.unwrap_err();
    assert!(
        matches!(&error, Error::AddressNotVerified { address } if address == ADDRESS),
        "{error}"
    );
}

/// Google ends the sign-ins of an app in "Testing" publishing status after 7 days
/// ("Using OAuth 2.0 to Access Google APIs", refresh token expiration: "A Google Cloud
/// Platform project with an OAuth consent screen configured for an external user type and
/// a publishing status of 'Testing' is issued a refresh token expiring in 7 days"). A
/// refresh refused 8 days after the sign-in names that cause and its cure, in the error
/// and in the stored reason (which `doctor` and held messages show); 2 hours after, not.
#[tokio::test]
async fn a_google_refresh_refused_a_week_after_the_sign_in_names_the_testing_status() {
    for (age, named) in [
        (chrono::Duration::days(8), true),
        (chrono::Duration::hours(2), false),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({
                "error": "invalid_grant",
                "error_description": "Token has been expired or revoked."
            })))
            .mount(&server)
            .await;
        let db = TestDatabase::new(Backend::Sqlite).await;
        let key = KeyRing::generate();
        support::register(&db, &key, Provider::Google, support::app(&server, true)).await;
        TokenStore::new(&db.db, &key)
            .save_sign_in(
                &signed_in(Provider::Google, ADDRESS, "ya29.old", Some("1//0g-old")),
                chrono::Utc::now() - age,
            )
            .await
            .unwrap();
        let error = support::broker(&db, &key)
            .access_token(&target(Provider::Google, ADDRESS))
            .await
            .unwrap_err()
            .to_string();
        let hint = "if the Google app's publishing status is Testing, Google ends its sign-ins after 7 days; in Google Auth Platform > Audience, make the app Internal (Workspace) or publish it";
        assert_eq!(error.contains(hint), named, "{error}");
        let stored = TokenStore::new(&db.db, &key)
            .load(&TokenKey::new(Provider::Google, "", ADDRESS))
            .await
            .unwrap()
            .unwrap();
        let TokenStatus::Revoked { reason } = stored.status else {
            panic!("not revoked");
        };
        assert_eq!(reason.contains(hint), named, "{reason}");
        if named {
            assert!(reason.contains("the sign-in was 8 days ago"), "{reason}");
        }
        db.finish().await;
    }
}

#[tokio::test]
async fn microsoft_graph_is_refused_for_a_google_account_before_any_request() {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key =
        support::expired_sign_in(&db, &server, Provider::Google, ADDRESS, "ya29.old", "1//0g")
            .await;
    let app = mailroom_tokens::registration::Apps::new(&db.db, &key)
        .require(Provider::Google)
        .await
        .unwrap();
    let graph = mailroom_tokens::Resource::Graph {
        shared: false,
        read_write: false,
    };
    let refusals = [
        support::broker(&db, &key)
            .access_token(&mailroom_tokens::TokenTarget {
                resource: graph,
                ..target(Provider::Google, ADDRESS)
            })
            .await
            .unwrap_err(),
        mailroom_tokens::interactive::RedirectSignIn::begin(
            &app,
            SignInOptions {
                resource: graph,
                ..SignInOptions::default()
            },
            8400,
        )
        .unwrap_err(),
    ];
    for error in refusals {
        assert!(
            error
                .to_string()
                .contains("Microsoft Graph is a Microsoft route"),
            "{error}"
        );
    }
    db.finish().await;
}

#[test]
fn a_sign_in_knows_whether_it_brought_a_refresh_token() {
    let with = signed_in(Provider::Google, ADDRESS, "ya29.a", Some("1//0g"));
    assert!(with.has_refresh_token());
    let without = signed_in(Provider::Google, ADDRESS, "ya29.a", None);
    assert!(!without.has_refresh_token());
}

#[tokio::test]
async fn a_redirect_sign_in_shows_where_it_returns_and_not_its_state() {
    let server = MockServer::start().await;
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    let app = support::register(&db, &key, Provider::Google, support::app(&server, true)).await;
    let sign_in =
        mailroom_tokens::interactive::RedirectSignIn::begin(&app, SignInOptions::default(), 8400)
            .unwrap();
    let shown = format!("{sign_in:?}");
    assert!(shown.starts_with("RedirectSignIn {"), "{shown}");
    assert!(shown.contains("Google"), "{shown}");
    assert!(shown.contains(":8400"), "{shown}");
    assert!(!shown.contains(sign_in.state()), "{shown}");
    db.finish().await;
}

#[tokio::test]
async fn a_redirect_sign_in_completes_from_the_redirects_query() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(google_token_body(
            "ya29.redirected",
            Some("1//0g-redirected"),
            Some(&google_id_token(ADDRESS)),
        )))
        .expect(1)
        .mount(&server)
        .await;
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    let mut change = support::app(&server, true);
    change.overrides.redirect_uri = Some(
        mailroom_tokens::registration::parse_redirect_uri(
            Provider::Google,
            "http://127.0.0.1/mailroom/callback",
        )
        .unwrap(),
    );
    let app = support::register(&db, &key, Provider::Google, change).await;
    let begin = || {
        mailroom_tokens::interactive::RedirectSignIn::begin(
            &app,
            SignInOptions {
                expected_address: Some(ADDRESS.to_owned()),
                ..SignInOptions::default()
            },
            8400,
        )
        .unwrap()
    };
    let sign_in = begin();
    assert_eq!(
        sign_in.redirect_uri(),
        "http://127.0.0.1:8400/mailroom/callback"
    );
    assert_eq!(sign_in.redirect_path(), "/mailroom/callback");

    // The provider's refusal, with its words.
    let error = begin()
        .complete(
            &OAuthHttp::new(),
            [
                ("error", "access_denied"),
                ("error_description", "The user denied the request"),
            ],
            SystemTime::now(),
        )
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("access_denied"), "{text}");
    assert!(text.contains("The user denied the request"), "{text}");
    assert!(text.contains("approve the request"), "{text}");
    // An empty code is no code.
    let error = begin()
        .complete(&OAuthHttp::new(), [("code", "")], SystemTime::now())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("neither a code nor an error"),
        "{error}"
    );
    // The code is exchanged with the redirect URI it was sent with.
    let signed_in = sign_in
        .complete(
            &OAuthHttp::new(),
            [("state", "ignored here"), ("code", "4/0AX4XfWh-code")],
            SystemTime::now(),
        )
        .await
        .unwrap();
    assert_eq!(signed_in.identity.address, ADDRESS);
    assert!(signed_in.has_refresh_token());
    let requests = server.received_requests().await.unwrap();
    let sent = form(&requests[0]);
    assert_eq!(sent["code"], "4/0AX4XfWh-code");
    assert_eq!(
        sent["redirect_uri"],
        "http://127.0.0.1:8400/mailroom/callback"
    );
    db.finish().await;
}
