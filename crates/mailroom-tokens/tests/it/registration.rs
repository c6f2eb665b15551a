//! The app registration as the providers document it: the redirect URI sent and the
//! remedy when the provider lacks it, the tenant a single-tenant app needs, no client
//! secret from a Microsoft public client. Error bodies follow Entra's documented shape
//! (MicrosoftDocs/entra-docs `docs/identity-platform/reference-error-codes.md`: `error`,
//! `error_description` starting with `AADSTSnnnnn:`, `error_codes`, `timestamp`,
//! `trace_id`, `correlation_id`, `error_uri`) and Google's (`error`, `error_description`).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use mailroom_crypto::KeyRing;
use mailroom_model::{Provider, Remedy, Secret};
use mailroom_testkit::{Backend, TestDatabase};
use mailroom_tokens::registration::{AppChange, Apps, parse_redirect_uri};
use mailroom_tokens::{
    Error, OAuthHttp,
    interactive::{SignInOptions, sign_in_with_browser},
};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{self, approve, browser, form, microsoft_id_token, microsoft_token_body};

/// A Microsoft app of the contoso tenant, with the real endpoints.
fn contoso() -> AppChange {
    AppChange {
        client_id: Some("client".to_owned()),
        tenant: Some("contoso.onmicrosoft.com".to_owned()),
        ..AppChange::default()
    }
}

/// Reading the Microsoft registration is refused: its settings were altered without the
/// key.
async fn refused_as_altered(apps: &Apps<'_, sea_orm::DatabaseConnection>) {
    let error = apps.require(Provider::Microsoft).await.unwrap_err();
    assert!(matches!(error, Error::SettingsAltered { .. }), "{error:?}");
}

fn options() -> SignInOptions {
    SignInOptions {
        expected_address: Some("sa@contoso.example".to_owned()),
        timeout: Duration::from_secs(20),
        ..Default::default()
    }
}

/// An Entra error body as the error reference shows it.
fn entra_error(error: &str, code: u32, text: &str) -> Value {
    json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {text}\r\nTrace ID: 0000aaaa-11bb-cccc-dd33-eeeeee333333\r\nCorrelation ID: aaaa0000-bb11-2222-33cc-444444dddddd\r\nTimestamp: 2026-12-01 02:02:12Z"),
        "error_codes": [code],
        "timestamp": "2026-12-01 02:02:12Z",
        "trace_id": "0000aaaa-11bb-cccc-dd33-eeeeee333333",
        "correlation_id": "aaaa0000-bb11-2222-33cc-444444dddddd",
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    })
}

async fn server_answering(token_status: u16, token_body: Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/authorize"))
        .respond_with(approve(None))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(token_status).set_body_json(token_body))
        .mount(&server)
        .await;
    server
}

async fn sign_in_error(provider: Provider, change: AppChange) -> Error {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    let app = support::register(&db, &key, provider, change).await;
    let error = sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &options(),
        SystemTime::now,
        browser(),
    )
    .await
    .expect_err("the provider refuses");
    db.finish().await;
    error
}

/// Entra's AADSTS50011 at the token endpoint names the URI to register, as a remedy.
#[tokio::test]
async fn aadsts50011_becomes_the_remedy_naming_the_uri_to_register() {
    let server = server_answering(
        400,
        entra_error(
            "invalid_request",
            50011,
            "The redirect URI 'http://localhost:50123/' specified in the request does not match the redirect URIs configured for the application '11111111-2222-3333-4444-555555555555'.",
        ),
    )
    .await;
    let error = sign_in_error(Provider::Microsoft, support::app(&server, false)).await;
    assert!(
        matches!(error, Error::RedirectUriNotRegistered { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.remedy(),
        Some(Remedy::RegisterRedirectUri {
            provider: Provider::Microsoft,
            redirect_uri: "http://localhost".to_owned(),
        })
    );
    assert!(error.to_string().contains("AADSTS50011"), "{error}");
}

/// A redirect URI set on the app is the one sent (with the listener's port) and named.
#[tokio::test]
async fn a_set_redirect_uri_is_sent_and_named() {
    let server = server_answering(
        400,
        entra_error("invalid_request", 50011, "The redirect URI does not match."),
    )
    .await;
    let mut change = support::app(&server, false);
    change.overrides.redirect_uri =
        Some(parse_redirect_uri(Provider::Microsoft, "http://127.0.0.1:8400/mailroom").unwrap());
    let error = sign_in_error(Provider::Microsoft, change).await;
    let requests = server.received_requests().await.unwrap();
    let authorize: HashMap<String, String> = requests[0].url.query_pairs().into_owned().collect();
    let sent = &authorize["redirect_uri"];
    assert!(
        sent.starts_with("http://127.0.0.1:") && sent.ends_with("/mailroom"),
        "{sent}"
    );
    assert!(
        !sent.contains(":8400/"),
        "the listener's port is used: {sent}"
    );
    assert_eq!(
        error.remedy(),
        Some(Remedy::RegisterRedirectUri {
            provider: Provider::Microsoft,
            redirect_uri: "http://127.0.0.1/mailroom".to_owned(),
        })
    );
}

/// Google's "OAuth 2.0 for iOS & Desktop Apps": the loopback IP address
/// `http://127.0.0.1:PORT`; a `redirect_uri_mismatch` names it.
#[tokio::test]
async fn google_uses_the_loopback_ip_and_names_it_on_a_mismatch() {
    let server = server_answering(
        400,
        json!({"error": "redirect_uri_mismatch", "error_description": "Bad Request"}),
    )
    .await;
    let error = sign_in_error(Provider::Google, support::app(&server, true)).await;
    let requests = server.received_requests().await.unwrap();
    let authorize: HashMap<String, String> = requests[0].url.query_pairs().into_owned().collect();
    let sent = &authorize["redirect_uri"];
    assert!(
        sent.starts_with("http://127.0.0.1:") && sent.ends_with('/'),
        "{sent}"
    );
    assert_eq!(
        error.remedy(),
        Some(Remedy::RegisterRedirectUri {
            provider: Provider::Google,
            redirect_uri: "http://127.0.0.1".to_owned(),
        })
    );
}

/// AADSTS50194: a single-tenant app used `organizations`; the remedy sets the tenant.
#[tokio::test]
async fn aadsts50194_becomes_set_the_tenant() {
    let server = server_answering(
        400,
        entra_error(
            "invalid_request",
            50194,
            "Application '11111111-2222-3333-4444-555555555555'(mailroom) is not configured as a multi-tenant application. Usage of the /common endpoint is not supported for such applications created after '10/15/2018'. Use a tenant-specific endpoint or configure the application to be multi-tenant.",
        ),
    )
    .await;
    let error = sign_in_error(Provider::Microsoft, support::app(&server, false)).await;
    assert!(matches!(error, Error::TenantRequired { .. }), "{error:?}");
    assert_eq!(error.remedy(), Some(Remedy::SetMicrosoftTenant));
}

/// AADSTS700025: a public client presents no secret. A Microsoft secret stored by an
/// older version is never sent; Google's is.
#[tokio::test]
async fn a_stored_microsoft_secret_is_never_sent() {
    for (provider, sent) in [(Provider::Microsoft, false), (Provider::Google, true)] {
        let server = server_answering(
            200,
            microsoft_token_body("at", "rt", Some(&microsoft_id_token("sa@contoso.example"))),
        )
        .await;
        let db = TestDatabase::new(Backend::Sqlite).await;
        let key = KeyRing::generate();
        let mut app = support::register(&db, &key, provider, support::app(&server, false)).await;
        app.client_secret = Some(Secret::new(support::CLIENT_SECRET));
        let _ = sign_in_with_browser(
            &OAuthHttp::new(),
            &app,
            &options(),
            SystemTime::now,
            browser(),
        )
        .await;
        let requests = server.received_requests().await.unwrap();
        let token = form(&requests[1]);
        assert_eq!(
            token.contains_key("client_secret"),
            sent,
            "{provider}: {token:?}"
        );
        db.finish().await;
    }
}

/// `app set microsoft` refuses a client secret (AADSTS700025) and, for a new
/// registration, a missing tenant (AADSTS50194 would follow at sign-in).
#[tokio::test]
async fn a_microsoft_registration_needs_a_tenant_and_takes_no_secret() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    let apps = Apps::new(&db.db, &key);
    let error = apps
        .set(
            Provider::Microsoft,
            AppChange {
                client_id: Some("client".to_owned()),
                ..AppChange::default()
            },
        )
        .await
        .expect_err("no tenant");
    assert!(error.to_string().contains("tenant"), "{error}");
    assert_eq!(error.remedy(), Some(Remedy::SetMicrosoftTenant));

    let error = apps
        .set(
            Provider::Microsoft,
            AppChange {
                client_id: Some("client".to_owned()),
                tenant: Some("contoso.onmicrosoft.com".to_owned()),
                client_secret: Some(Some(Secret::new("a-secret"))),
                ..AppChange::default()
            },
        )
        .await
        .expect_err("no secret");
    assert!(error.to_string().contains("AADSTS700025"), "{error}");

    let app = apps.set(Provider::Microsoft, contoso()).await.unwrap();
    assert_eq!(app.redirect_uri_to_register(), "http://localhost");
    assert_eq!(app.redirect_uri_with_port(50123), "http://localhost:50123/");
    db.finish().await;
}

/// The redirect URI joins the settings seal: changed in the database without the key,
/// nothing is sent.
#[tokio::test]
async fn a_redirect_uri_changed_behind_mailrooms_back_breaks_the_seal() {
    use sea_orm::{ConnectionTrait, Statement};
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    let apps = Apps::new(&db.db, &key);
    let change = AppChange {
        overrides: mailroom_tokens::registration::EndpointOverrides {
            redirect_uri: Some(
                parse_redirect_uri(Provider::Microsoft, "http://localhost/a").unwrap(),
            ),
            ..Default::default()
        },
        ..contoso()
    };
    apps.set(Provider::Microsoft, change).await.unwrap();
    let app = apps.require(Provider::Microsoft).await.unwrap();
    assert_eq!(app.redirect_uri_to_register(), "http://localhost/a");
    db.db
        .execute(Statement::from_string(
            db.db.get_database_backend(),
            "UPDATE oauth_app SET redirect_uri = 'http://localhost/b'".to_owned(),
        ))
        .await
        .unwrap();
    refused_as_altered(&apps).await;
    db.finish().await;
}

/// A registration without its settings seal is refused once seals are required (a
/// database made since they exist); in an older database (its key check made before the
/// marker) it is read until every row is sealed and marked.
#[tokio::test]
async fn a_registration_without_its_seal_is_refused_once_seals_are_required() {
    use sea_orm::{ConnectionTrait, Statement};
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    let apps = Apps::new(&db.db, &key);
    apps.set(Provider::Microsoft, contoso()).await.unwrap();
    db.db
        .execute_unprepared("UPDATE oauth_app SET settings_seal = NULL")
        .await
        .unwrap();
    refused_as_altered(&apps).await;

    // As an older version left it: a key check without the marker.
    let old_check = key.primary().seal(b"mailroom key check", b"key_check:1");
    db.db
        .execute(Statement::from_sql_and_values(
            db.db.get_database_backend(),
            "UPDATE key_check SET sealed = ?",
            [old_check.into()],
        ))
        .await
        .unwrap();
    assert_eq!(
        apps.require(Provider::Microsoft).await.unwrap().client_id,
        "client"
    );
    assert_eq!(apps.list().await.unwrap().len(), 1);
    mailroom_crypto::store::mark_settings_sealed(&db.db, key.primary())
        .await
        .unwrap();
    refused_as_altered(&apps).await;
    db.finish().await;
}

/// Going back to the real endpoints keeps a registered redirect URI; an API URL of the
/// other provider is refused.
#[tokio::test]
async fn resetting_the_endpoints_keeps_the_redirect_uri() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    let apps = Apps::new(&db.db, &key);
    let server = MockServer::start().await;
    let mut change = support::app(&server, false);
    change.tenant = Some("contoso.onmicrosoft.com".to_owned());
    change.overrides.redirect_uri =
        Some(parse_redirect_uri(Provider::Microsoft, "http://localhost/mailroom").unwrap());
    apps.set(Provider::Microsoft, change).await.unwrap();
    let app = apps
        .set(
            Provider::Microsoft,
            AppChange {
                reset_endpoints: true,
                ..AppChange::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        app.endpoints().token.as_str(),
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    );
    assert_eq!(app.redirect_uri_to_register(), "http://localhost/mailroom");

    let gmail = mailroom_tokens::registration::parse_endpoint_url(
        "gmail api url",
        "https://gmail.example/",
    )
    .unwrap();
    let mut change = AppChange::default();
    change.overrides.gmail_api_url = Some(gmail);
    let error = apps.set(Provider::Microsoft, change).await.unwrap_err();
    assert!(
        error.to_string().contains("applies to Google only"),
        "{error}"
    );
    db.finish().await;
}

/// A Microsoft registration stored before the tenant was required (tenant null) keeps
/// working as `organizations` and can still be changed without naming a tenant.
#[tokio::test]
async fn a_registration_stored_without_a_tenant_keeps_working() {
    use sea_orm::{ConnectionTrait, Statement};
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    let apps = Apps::new(&db.db, &key);
    apps.set(Provider::Microsoft, contoso()).await.unwrap();
    // The row as an older version left it: no tenant, sealed as it stands.
    db.db
        .execute(Statement::from_string(
            db.db.get_database_backend(),
            "UPDATE oauth_app SET tenant = NULL".to_owned(),
        ))
        .await
        .unwrap();
    let sealing = mailroom_crypto::store::sealing_key(&db.db, &key)
        .await
        .unwrap();
    apps.seal_all_settings(sealing).await.unwrap();

    let app = apps.require(Provider::Microsoft).await.unwrap();
    assert_eq!(app.tenant(), "organizations");
    let app = apps
        .set(
            Provider::Microsoft,
            AppChange {
                overrides: mailroom_tokens::registration::EndpointOverrides {
                    redirect_uri: Some(
                        parse_redirect_uri(Provider::Microsoft, "http://localhost/mailroom")
                            .unwrap(),
                    ),
                    ..Default::default()
                },
                ..AppChange::default()
            },
        )
        .await
        .expect("an existing registration changes without a tenant");
    assert_eq!(app.tenant(), "organizations");
    assert_eq!(app.redirect_uri_to_register(), "http://localhost/mailroom");
    db.finish().await;
}
