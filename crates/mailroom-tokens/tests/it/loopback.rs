//! The browser flow end to end: a test plays the browser, following the authorization URL
//! to a mock authorize endpoint that redirects to mailroom's loopback listener.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use mailroom_crypto::KeyRing;
use mailroom_model::Provider;
use mailroom_testkit::{Backend, TestDatabase};
use mailroom_tokens::{
    Error, OAuthHttp,
    interactive::{SignInOptions, sign_in_with_browser},
    storage::TokenStore,
};
use sha2::{Digest, Sha256};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::{
    self, CLIENT_ID, approve, browser, form, microsoft_id_token, microsoft_token_body,
};

fn options(expected: &str) -> SignInOptions {
    SignInOptions {
        expected_address: Some(expected.to_owned()),
        timeout: Duration::from_secs(20),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_browser_sign_in_sends_pkce_state_and_hint_and_checks_the_identity() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/authorize"))
        .respond_with(approve(None))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(microsoft_token_body(
                "at-signed-in",
                "rt-signed-in",
                Some(&microsoft_id_token("SA@contoso.example")),
            )),
        )
        .expect(1)
        .mount(&server)
        .await;
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    let app = support::register(&db, &key, Provider::Microsoft, support::app(&server, false)).await;

    let signed_in = sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &options("sa@contoso.example"),
        SystemTime::now,
        browser(),
    )
    .await
    .unwrap();
    assert_eq!(signed_in.identity.address, "SA@contoso.example");
    assert!(signed_in.has_refresh_token());

    let requests = server.received_requests().await.unwrap();
    let authorize: std::collections::HashMap<String, String> =
        requests[0].url.query_pairs().into_owned().collect();
    assert_eq!(authorize["response_type"], "code");
    assert_eq!(authorize["client_id"], CLIENT_ID);
    assert_eq!(
        authorize["scope"],
        "https://outlook.office.com/SMTP.Send offline_access openid profile email"
    );
    assert_eq!(authorize["code_challenge_method"], "S256");
    assert_eq!(authorize["prompt"], "select_account");
    assert_eq!(authorize["login_hint"], "sa@contoso.example");
    assert!(authorize["state"].len() >= 16);
    // What a person registers in the Entra portal is `http://localhost`; Entra ignores a
    // loopback URI's port and uses a URI without a path as `/`
    // (MicrosoftDocs/entra-docs docs/identity-platform/reply-url.md), so the request
    // carries `http://localhost:PORT/`.
    let redirect_uri = &authorize["redirect_uri"];
    let port = redirect_uri
        .strip_prefix("http://localhost:")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("{redirect_uri}"));
    assert!(port.parse::<u16>().is_ok(), "{redirect_uri}");

    let token = form(&requests[1]);
    assert_eq!(token["grant_type"], "authorization_code");
    assert_eq!(token["code"], "M.C105_BAY.2.U.code-abc");
    assert_eq!(&token["redirect_uri"], redirect_uri);
    assert_eq!(token["client_id"], CLIENT_ID);
    assert_eq!(
        token["scope"],
        "https://outlook.office.com/SMTP.Send offline_access openid profile email"
    );
    let verifier = &token["code_verifier"];
    assert!((43..=128).contains(&verifier.len()));
    assert!(
        verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    );
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    assert_eq!(
        authorize["code_challenge"], challenge,
        "S256(code_verifier) = code_challenge"
    );
    db.finish().await;
}

/// A browser that first sends a forged redirect (another state) to the loopback listener,
/// then follows the real authorization URL; reports (forged status, forged page, final
/// status, final page).
fn forging_browser(
    report: tokio::sync::oneshot::Sender<(u16, String, u16, String)>,
) -> impl FnOnce(&url::Url) {
    move |url: &url::Url| {
        let url = url.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
            let redirect_uri = url
                .query_pairs()
                .find(|(name, _)| name == "redirect_uri")
                .map(|(_, value)| value.into_owned())
                .unwrap();
            let forged = client
                .get(format!("{redirect_uri}?code=stolen&state=forged-state"))
                .send()
                .await
                .unwrap();
            let forged_status = forged.status().as_u16();
            let forged_page = forged.text().await.unwrap();
            let real = client.get(url).send().await.unwrap();
            let status = real.status().as_u16();
            let page = real.text().await.unwrap();
            let _ = report.send((forged_status, forged_page, status, page));
        });
    }
}

#[tokio::test]
async fn a_redirect_with_another_state_is_refused_and_the_sign_in_goes_on() {
    let server = MockServer::start().await;
    Mock::given(path("/authorize"))
        .respond_with(approve(None))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(microsoft_token_body(
                "at-signed-in",
                "rt-signed-in",
                Some(&microsoft_id_token("sa@contoso.example")),
            )),
        )
        .expect(1)
        .mount(&server)
        .await;
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    let app = support::register(&db, &key, Provider::Microsoft, support::app(&server, false)).await;
    let (report, reported) = tokio::sync::oneshot::channel();
    let signed_in = sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &options("sa@contoso.example"),
        SystemTime::now,
        forging_browser(report),
    )
    .await
    .unwrap();
    assert_eq!(signed_in.identity.address, "sa@contoso.example");
    let (forged_status, forged_page, status, page) = reported.await.unwrap();
    assert_eq!(forged_status, 400, "{forged_page}");
    assert!(forged_page.contains("Not this sign-in"), "{forged_page}");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Signed in as sa@contoso.example"), "{page}");
    db.finish().await;
}

#[tokio::test]
async fn the_browser_page_says_when_mailroom_refuses_the_sign_in() {
    let server = MockServer::start().await;
    Mock::given(path("/authorize"))
        .respond_with(approve(None))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(microsoft_token_body(
                "at-other",
                "rt-other",
                Some(&microsoft_id_token("someone.else@contoso.example")),
            )),
        )
        .mount(&server)
        .await;
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    let app = support::register(&db, &key, Provider::Microsoft, support::app(&server, false)).await;
    let (report, reported) = tokio::sync::oneshot::channel();
    let error = sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &options("sa@contoso.example"),
        SystemTime::now,
        forging_browser(report),
    )
    .await
    .unwrap_err();
    let (_, _, status, page) = reported.await.unwrap();
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("Sign-in refused"), "{page}");
    assert!(
        page.contains("someone.else@contoso.example"),
        "{page}: {error}"
    );
    assert!(!page.contains("Signed in"), "{page}");
    db.finish().await;
}

#[tokio::test]
async fn an_access_denied_redirect_ends_the_sign_in() {
    let server = MockServer::start().await;
    Mock::given(path("/authorize"))
        .respond_with(|request: &Request| {
            let query: std::collections::HashMap<String, String> = request.url.query_pairs().into_owned().collect();
            let location = format!(
                "{}?error=access_denied&error_description=the+user+canceled+the+authentication&state={}",
                query["redirect_uri"], query["state"]
            );
            ResponseTemplate::new(302).insert_header("Location", location.as_str())
        })
        .mount(&server)
        .await;
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    let app = support::register(&db, &key, Provider::Microsoft, support::app(&server, false)).await;
    let error = sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &options("sa@contoso.example"),
        SystemTime::now,
        browser(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "sign-in failed: the provider answered access_denied (the user canceled the authentication); sign in again and approve the request"
    );
    db.finish().await;
}

#[tokio::test]
async fn signing_in_as_someone_else_is_refused_and_nothing_is_stored() {
    let server = MockServer::start().await;
    Mock::given(path("/authorize"))
        .respond_with(approve(None))
        .mount(&server)
        .await;
    Mock::given(path("/token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(microsoft_token_body(
                "at-other",
                "rt-other",
                Some(&microsoft_id_token("someone.else@contoso.example")),
            )),
        )
        .mount(&server)
        .await;
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    let app = support::register(&db, &key, Provider::Microsoft, support::app(&server, false)).await;
    let result = sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &options("sa@contoso.example"),
        SystemTime::now,
        browser(),
    )
    .await;
    let error = result.unwrap_err();
    assert!(matches!(error, Error::IdentityMismatch { .. }));
    assert_eq!(
        error.to_string(),
        "signed in as someone.else@contoso.example, but this account sends as sa@contoso.example: sign in again as sa@contoso.example; or, if sa@contoso.example is a shared mailbox that someone.else@contoso.example may send as, mark the account as a shared mailbox and sign in again as someone.else@contoso.example"
    );
    assert!(
        TokenStore::new(&db.db, &key)
            .list()
            .await
            .unwrap()
            .is_empty()
    );
    db.finish().await;
}

#[tokio::test]
async fn other_paths_do_not_end_the_wait_and_a_timeout_does() {
    let server = MockServer::start().await;
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    let app = support::register(&db, &key, Provider::Microsoft, support::app(&server, false)).await;
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let options = SignInOptions {
        expected_address: None,
        timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let error = sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &options,
        SystemTime::now,
        move |url: &url::Url| {
            let redirect: String = url
                .query_pairs()
                .find(|(k, _)| k == "redirect_uri")
                .unwrap()
                .1
                .into_owned();
            let favicon = format!("{redirect}favicon.ico");
            tokio::spawn(async move {
                let status = reqwest::get(favicon).await.map(|r| r.status().as_u16());
                let _ = sender.send(status);
            });
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        receiver.await.unwrap().unwrap(),
        404,
        "the listener answers other paths with 404"
    );
    assert!(
        error.to_string().contains("no sign-in arrived within 1 s"),
        "{error}"
    );
    // The provider shows a redirect URI it does not know in the browser, so the timeout
    // names the URI the app registration must hold.
    assert!(
        error
            .to_string()
            .contains("register http://localhost with the microsoft app"),
        "{error}"
    );
    db.finish().await;
}
