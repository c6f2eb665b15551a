//! Shared test support: app registrations pointing at a mock server, id_tokens, token
//! bodies, a broker with quick retries, and a fake browser.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use chrono::Utc;
use mailroom_crypto::KeyRing;
use mailroom_model::{AccountRef, Clock, Provider, SystemClock};
use mailroom_testkit::TestDatabase;
use mailroom_tokens::{
    BrokerConfig, OAuthHttp, TokenBroker, TokenTarget,
    interactive::SignedIn,
    registration::{AppChange, AppRegistration, Apps, EndpointOverrides, parse_endpoint_url},
    storage::TokenStore,
};
use serde_json::{Value, json};
use wiremock::{MockServer, ResponseTemplate};

pub(crate) const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
pub(crate) const TENANT_ID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub(crate) const CLIENT_SECRET: &str = "client-secret-value-xyz";

pub(crate) fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An unsigned JWT with `claims` (the id_token comes straight from the token endpoint, so
/// mailroom checks claims, not signatures).
pub(crate) fn jwt(claims: Value) -> String {
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    format!(
        "{}.{}.{}",
        encode(br#"{"typ":"JWT","alg":"RS256","kid":"test"}"#),
        encode(claims.to_string().as_bytes()),
        encode(b"not-checked")
    )
}

pub(crate) fn microsoft_id_token(address: &str) -> String {
    jwt(json!({
        "aud": CLIENT_ID,
        "iss": format!("https://login.microsoftonline.com/{TENANT_ID}/v2.0"),
        "iat": now_seconds(),
        "nbf": now_seconds(),
        "exp": now_seconds() + 3600,
        "name": "Sales Admin",
        "oid": "00000000-0000-0000-66f3-3332eca7ea81",
        "preferred_username": address,
        "email": address,
        "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
        "tid": TENANT_ID,
        "ver": "2.0"
    }))
}

pub(crate) fn google_id_token(address: &str) -> String {
    jwt(json!({
        "iss": "https://accounts.google.com",
        "azp": CLIENT_ID,
        "aud": CLIENT_ID,
        "sub": "110169484474386276334",
        "email": address,
        "email_verified": true,
        "iat": now_seconds(),
        "exp": now_seconds() + 3600
    }))
}

/// Microsoft's documented successful token response.
pub(crate) fn microsoft_token_body(access: &str, refresh: &str, id_token: Option<&str>) -> Value {
    let mut body = json!({
        "token_type": "Bearer",
        "scope": "https://outlook.office.com/SMTP.Send",
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": access,
        "refresh_token": refresh
    });
    if let Some(id_token) = id_token {
        body["id_token"] = json!(id_token);
    }
    body
}

/// Google's documented successful token response; `refresh` only on a first exchange.
pub(crate) fn google_token_body(
    access: &str,
    refresh: Option<&str>,
    id_token: Option<&str>,
) -> Value {
    let mut body = json!({
        "access_token": access,
        "expires_in": 3599,
        "scope": "https://www.googleapis.com/auth/gmail.send openid https://www.googleapis.com/auth/userinfo.email",
        "token_type": "Bearer"
    });
    if let Some(refresh) = refresh {
        body["refresh_token"] = json!(refresh);
    }
    if let Some(id_token) = id_token {
        body["id_token"] = json!(id_token);
    }
    body
}

/// An app registration whose endpoints all point at `server`.
pub(crate) fn app(server: &MockServer, secret: bool) -> AppChange {
    let url =
        |path: &str| Some(parse_endpoint_url("url", &format!("{}{path}", server.uri())).unwrap());
    AppChange {
        client_id: Some(CLIENT_ID.to_owned()),
        client_secret: secret.then(|| Some(CLIENT_SECRET.into())),
        tenant: None,
        overrides: EndpointOverrides {
            authorize_url: url("/authorize"),
            token_url: url("/token"),
            device_url: url("/devicecode"),
            revoke_url: url("/revoke"),
            // The real issuers; the tokens above carry them.
            issuer: None,
            gmail_api_url: None,
            graph_api_url: None,
            redirect_uri: None,
        },
        reset_endpoints: false,
        reset_redirect_uri: false,
        cloud: None,
        app_credential: None,
    }
}

/// Registers `app` in the database and returns it.
pub(crate) async fn register(
    db: &TestDatabase,
    key: &KeyRing,
    provider: Provider,
    mut change: AppChange,
) -> AppRegistration {
    if provider == Provider::Microsoft && change.tenant.is_none() {
        // The wiremock endpoints serve any tenant; the token keys of these tests use it.
        change.tenant = Some("organizations".to_owned());
    }
    Apps::new(&db.db, key).set(provider, change).await.unwrap()
}

pub(crate) fn test_config() -> BrokerConfig {
    BrokerConfig {
        transient_backoff: Duration::from_millis(1),
        ..BrokerConfig::default()
    }
}

pub(crate) fn broker(db: &TestDatabase, key: &KeyRing) -> TokenBroker {
    broker_with(db, key, Arc::new(SystemClock), test_config())
}

/// A broker over `db` and `key` with its own clock and configuration.
pub(crate) fn broker_with(
    db: &TestDatabase,
    key: &KeyRing,
    clock: Arc<dyn Clock>,
    config: BrokerConfig,
) -> TokenBroker {
    TokenBroker::new(db.db.clone(), key.clone(), OAuthHttp::new(), clock, config)
}

pub(crate) fn target(provider: Provider, address: &str) -> TokenTarget {
    TokenTarget {
        account: AccountRef::User(4),
        provider,
        address: address.to_owned(),
        token_identity: None,
        resource: Default::default(),
        auth: Default::default(),
    }
}

/// Registers `provider`'s app with its endpoints at `server` (Google's with a client
/// secret) under a new key, and stores an expired sign-in for `address` with the tokens
/// `access` and `refresh`. Returns the key.
pub(crate) async fn expired_sign_in(
    db: &TestDatabase,
    server: &MockServer,
    provider: Provider,
    address: &str,
    access: &str,
    refresh: &str,
) -> KeyRing {
    let key = KeyRing::generate();
    register(
        db,
        &key,
        provider,
        app(server, provider == Provider::Google),
    )
    .await;
    store_expired(
        db,
        &key,
        &signed_in(provider, address, access, Some(refresh)),
    )
    .await;
    key
}

/// Stores a sign-in whose access token is valid for an hour from now.
pub(crate) async fn store_valid(db: &TestDatabase, key: &KeyRing, signed_in: &SignedIn) {
    TokenStore::new(&db.db, key)
        .save_sign_in(signed_in, Utc::now())
        .await
        .unwrap();
}

/// Deletes every stored token row (what is still served then comes from a cache).
pub(crate) async fn delete_token_rows(db: &TestDatabase) {
    use sea_orm::{ConnectionTrait, Statement};
    db.db
        .execute(Statement::from_string(
            db.db.get_database_backend(),
            "DELETE FROM oauth_token".to_owned(),
        ))
        .await
        .unwrap();
}

/// Stores a sign-in whose access token expired an hour ago.
pub(crate) async fn store_expired(db: &TestDatabase, key: &KeyRing, signed_in: &SignedIn) {
    TokenStore::new(&db.db, key)
        .save_sign_in(signed_in, Utc::now() - chrono::Duration::hours(2))
        .await
        .unwrap();
}

/// Plays the browser: follows the authorization URL (and its redirects) to the listener.
pub(crate) fn browser() -> impl FnOnce(&url::Url) {
    |url: &url::Url| {
        let url = url.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::builder().build().unwrap();
            let _ = client.get(url).send().await;
        });
    }
}

/// The form fields of a request body.
pub(crate) fn form(request: &wiremock::Request) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(&request.body)
        .into_owned()
        .collect()
}

/// A sign-in for `address` with the given tokens, valid for an hour from when it is saved.
pub(crate) fn signed_in(
    provider: Provider,
    address: &str,
    access: &str,
    refresh: Option<&str>,
) -> SignedIn {
    SignedIn::from_tokens(
        mailroom_tokens::interactive::Identity {
            address: address.to_owned(),
            tenant_id: None,
            subject: None,
        },
        provider,
        if provider == Provider::Microsoft {
            "organizations"
        } else {
            ""
        },
        access.into(),
        refresh.map(Into::into),
        Duration::from_secs(3600),
        vec!["https://outlook.office.com/SMTP.Send".to_owned()],
    )
}

/// An authorize endpoint that approves at once: redirects to `redirect_uri` with a code and
/// the given state (`None` = echo the request's state).
pub(crate) fn approve(
    state_override: Option<&'static str>,
) -> impl Fn(&wiremock::Request) -> ResponseTemplate {
    move |request: &wiremock::Request| {
        let query: std::collections::HashMap<String, String> =
            request.url.query_pairs().into_owned().collect();
        let state = state_override
            .map(str::to_owned)
            .unwrap_or_else(|| query["state"].clone());
        let location = format!(
            "{}?code=M.C105_BAY.2.U.code-abc&state={}",
            query["redirect_uri"], state
        );
        ResponseTemplate::new(302).insert_header("Location", location.as_str())
    }
}

/// Entra's documented error body for AADSTS`code` (error, description with its trace lines,
/// codes, ids), with `suberror` when given.
pub(crate) fn ms_error(error: &str, code: u64, description: &str, suberror: Option<&str>) -> Value {
    let mut body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description}\r\nTrace ID: 0000aaaa-11bb-cccc-dd22-eeeeee333333\r\nCorrelation ID: aaaa0000-bb11-2222-33cc-444444dddddd\r\nTimestamp: 2026-11-30 08:10:22Z"),
        "error_codes": [code],
        "timestamp": "2026-11-30 08:10:22Z",
        "trace_id": "0000aaaa-11bb-cccc-dd22-eeeeee333333",
        "correlation_id": "aaaa0000-bb11-2222-33cc-444444dddddd",
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}")
    });
    if let Some(suberror) = suberror {
        body["suberror"] = json!(suberror);
    }
    body
}
