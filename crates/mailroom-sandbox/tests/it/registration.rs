//! The providers' app registration rules, as the sandbox enforces them for a registered
//! client, met by mailroom's own sign-in: Entra's redirect URI matching
//! (MicrosoftDocs/entra-docs `docs/identity-platform/reply-url.md`), single-tenant apps
//! at their tenant's endpoints (`AADSTS50194`), no secret from a public client
//! (`AADSTS700025`; both in `docs/identity-platform/reference-error-codes.md`), and
//! Google's Desktop app clients ("OAuth 2.0 for iOS & Desktop Apps": a loopback IP
//! redirect on any port, no registration).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mailroom_model::{Provider, Remedy, Secret};
use mailroom_sandbox::{Audience, ClientRegistration};
use mailroom_tokens::registration::{AppRegistration, parse_redirect_uri};
use mailroom_tokens::{
    Error, OAuthHttp,
    interactive::{SignInOptions, sign_in_with_browser, sign_in_with_device_code},
};

use crate::support::*;

/// A sandbox whose apps are registered as the README says: a single-tenant Microsoft
/// public client with the redirect URI `http://localhost`, a Google Desktop app client.
async fn registered_sandbox() -> TestSandbox {
    sandbox_with(|config| {
        config.clients = vec![
            ClientRegistration::microsoft_public(
                MICROSOFT_CLIENT,
                &["http://localhost"],
                Audience::SingleTenant,
            ),
            ClientRegistration::google_desktop(GOOGLE_CLIENT, GOOGLE_SECRET),
        ];
    })
    .await
}

/// mailroom's registration of the sandbox's app, with the tenant the README's
/// `app set microsoft --tenant` gives.
fn registered_app(sandbox: &TestSandbox, provider: Provider) -> AppRegistration {
    let mut app = app(sandbox, provider);
    if provider == Provider::Microsoft {
        app.tenant = Some(sandbox.endpoints().tenant_id.clone());
    }
    app
}

fn options(expected: &str, seconds: u64) -> SignInOptions {
    SignInOptions {
        expected_address: Some(expected.to_owned()),
        timeout: Duration::from_secs(seconds),
        ..Default::default()
    }
}

/// An `open_url` that plays the browser and keeps what the last page said: (status, text).
fn recording_browser(seen: Arc<Mutex<Option<(u16, String)>>>) -> impl FnOnce(&url::Url) {
    move |url: &url::Url| {
        let url = url.clone();
        tokio::spawn(async move {
            let response = browser()
                .get(url)
                .send()
                .await
                .expect("the browser's request");
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            *seen.lock().unwrap() = Some((status, text));
        });
    }
}

/// Item 1: the redirect URI a person registers in the portal (`http://localhost`) is the
/// one mailroom sends (`http://localhost:PORT/`); before, it sent
/// `http://127.0.0.1:PORT/callback`, which Entra answers with AADSTS50011.
#[tokio::test]
async fn a_microsoft_sign_in_uses_the_redirect_uri_the_portal_registers() {
    let sandbox = registered_sandbox().await;
    let app = registered_app(&sandbox, Provider::Microsoft);
    let seen = Arc::new(Mutex::new(None));
    let signed_in = sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &options(MICROSOFT_USER, 20),
        SystemTime::now,
        recording_browser(seen.clone()),
    )
    .await;
    let page = seen.lock().unwrap().clone();
    let signed_in = signed_in.unwrap_or_else(|error| panic!("{error}; the page: {page:?}"));
    assert_eq!(signed_in.identity.address, MICROSOFT_USER);
}

/// Item 1: a registration with a path does not match a sign-in without it (Entra: "the
/// path must match"); the browser shows AADSTS50011 and mailroom's timeout names the URI
/// to register. With the app's redirect URI set to the registered one, it works.
#[tokio::test]
async fn a_redirect_uri_the_registration_lacks_is_refused_and_named() {
    let sandbox = registered_sandbox().await;
    sandbox
        .authority()
        .register_client(ClientRegistration::microsoft_public(
            MICROSOFT_CLIENT,
            &["http://localhost/mailroom"],
            Audience::SingleTenant,
        ));
    let mut app = registered_app(&sandbox, Provider::Microsoft);
    let seen = Arc::new(Mutex::new(None));
    let error = sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &options(MICROSOFT_USER, 3),
        SystemTime::now,
        recording_browser(seen.clone()),
    )
    .await
    .expect_err("the sandbox never redirects");
    let (status, page) = seen
        .lock()
        .unwrap()
        .clone()
        .expect("the browser saw a page");
    assert_eq!(status, 400);
    assert!(page.contains("AADSTS50011"), "{page}");
    let text = error.to_string();
    assert!(
        text.contains("register http://localhost with the microsoft app"),
        "{text}"
    );

    app.overrides.redirect_uri =
        Some(parse_redirect_uri(Provider::Microsoft, "http://localhost:8080/mailroom").unwrap());
    let signed_in = sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &options(MICROSOFT_USER, 20),
        SystemTime::now,
        play_browser,
    )
    .await
    .expect("the registered redirect URI works");
    assert_eq!(signed_in.identity.address, MICROSOFT_USER);
}

/// Entra's matching on raw requests: the port is ignored, host and path are not, and
/// `127.0.0.1` is not `localhost`.
#[tokio::test]
async fn the_authorize_endpoint_matches_redirect_uris_as_entra_does() {
    let sandbox = registered_sandbox().await;
    let authorize = sandbox.endpoints().microsoft.authorize.clone();
    for (redirect_uri, expected) in [
        ("http://localhost:50123/", 302),
        ("http://localhost:1/", 302),
        ("http://localhost:50123/callback", 400),
        ("http://127.0.0.1:50123/", 400),
        ("http://[::1]:50123/", 400),
    ] {
        let response = http()
            .get(authorize.clone())
            .query(&[
                ("response_type", "code"),
                ("client_id", MICROSOFT_CLIENT),
                ("redirect_uri", redirect_uri),
                ("scope", MICROSOFT_SCOPE),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
                ("login_hint", MICROSOFT_USER),
            ])
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, expected, "{redirect_uri}: {text}");
        if expected == 400 {
            assert!(text.contains("AADSTS50011"), "{text}");
        }
    }
}

/// Item 3: a single-tenant app at `organizations` is refused with AADSTS50194 (in the
/// browser, and as Entra's error JSON at the device endpoint), which mailroom turns into
/// the remedy "set the tenant".
#[tokio::test]
async fn a_single_tenant_app_at_organizations_is_refused_with_aadsts50194() {
    let sandbox = registered_sandbox().await;
    let tenant_id = sandbox.endpoints().tenant_id.clone();
    let mut app = app(&sandbox, Provider::Microsoft);
    let at_organizations = |url: &Option<url::Url>| {
        url.as_ref()
            .map(|url| url::Url::parse(&url.as_str().replace(&tenant_id, "organizations")).unwrap())
    };
    app.overrides.authorize_url = at_organizations(&app.overrides.authorize_url);
    app.overrides.token_url = at_organizations(&app.overrides.token_url);
    app.overrides.device_url = at_organizations(&app.overrides.device_url);

    let error = sign_in_with_device_code(
        &OAuthHttp::new(),
        &app,
        &options(MICROSOFT_USER, 20),
        SystemTime::now,
        |_| panic!("no device code is issued"),
        |_| async {},
    )
    .await
    .expect_err("refused");
    assert!(matches!(error, Error::TenantRequired { .. }), "{error:?}");
    assert!(error.to_string().contains("AADSTS50194"), "{error}");
    assert_eq!(error.remedy(), Some(Remedy::SetMicrosoftTenant));

    let seen = Arc::new(Mutex::new(None));
    let _ = sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &options(MICROSOFT_USER, 2),
        SystemTime::now,
        recording_browser(seen.clone()),
    )
    .await
    .expect_err("the sandbox never redirects");
    let (status, page) = seen
        .lock()
        .unwrap()
        .clone()
        .expect("the browser saw a page");
    assert_eq!(status, 400);
    assert!(page.contains("AADSTS50194"), "{page}");

    // A multi-tenant registration may use organizations.
    sandbox
        .authority()
        .register_client(ClientRegistration::microsoft_public(
            MICROSOFT_CLIENT,
            &["http://localhost"],
            Audience::MultiTenant,
        ));
    sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &options(MICROSOFT_USER, 20),
        SystemTime::now,
        play_browser,
    )
    .await
    .expect("a multi-tenant app signs in at organizations");
}

/// Item 7: a public client presents no secret. A secret stored by an older mailroom is
/// not sent, so the sign-in works; the raw token call with one gets Entra's AADSTS700025
/// body.
#[tokio::test]
async fn a_public_client_sends_no_secret() {
    let sandbox = registered_sandbox().await;
    let mut app = registered_app(&sandbox, Provider::Microsoft);
    app.client_secret = Some(Secret::new("a-secret-from-an-old-database"));
    sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &options(MICROSOFT_USER, 20),
        SystemTime::now,
        play_browser,
    )
    .await
    .expect("no secret is sent, so the public client signs in");

    let (status, body) = token_call(
        &sandbox,
        Provider::Microsoft,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "whatever"),
            ("client_id", MICROSOFT_CLIENT),
            ("client_secret", "a-secret"),
        ],
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["error_codes"], serde_json::json!([700025]));
    let description = body["error_description"].as_str().unwrap();
    assert!(description.starts_with("AADSTS700025: "), "{description}");
    for field in ["timestamp", "trace_id", "correlation_id", "error_uri"] {
        assert!(body.get(field).is_some(), "{field} missing: {body}");
    }
}

/// Google: a Desktop app client takes `http://127.0.0.1:PORT/` (mailroom's default) with
/// its secret, and refuses a wrong secret.
#[tokio::test]
async fn a_google_desktop_client_takes_the_loopback_ip_and_needs_its_secret() {
    let sandbox = registered_sandbox().await;
    let mut app = registered_app(&sandbox, Provider::Google);
    let signed_in = sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &options(GOOGLE_USER, 20),
        SystemTime::now,
        play_browser,
    )
    .await
    .expect("the desktop client signs in");
    assert_eq!(signed_in.identity.address, GOOGLE_USER);

    app.client_secret = Some(Secret::new("GOCSPX-wrong"));
    let error = sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &options(GOOGLE_USER, 20),
        SystemTime::now,
        play_browser,
    )
    .await
    .expect_err("a wrong secret is refused");
    assert!(error.to_string().contains("invalid_client"), "{error}");
}
