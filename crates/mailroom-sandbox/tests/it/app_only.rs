//! App-only grants against the sandbox, with mailroom-tokens' requests: Microsoft's client
//! credentials with a secret and with a certificate's assertion (verified against the
//! registered certificate), and Google's JWT bearer grant for a service account
//! (MicrosoftDocs/entra-docs `docs/identity-platform/v2-oauth2-client-creds-grant-flow.md`,
//! `certificate-credentials.md`; developers.google.com/identity/protocols/oauth2/service-account).

use chrono::{Duration, Utc};
use mailroom_model::Secret;
use mailroom_sandbox::TokenCheck;
use mailroom_tokens::OAuthHttp;
use mailroom_tokens::app_only::{
    AppCertificate, AppCredentialProblem, ClientCredential, GRAPH_DEFAULT_SCOPE,
    OUTLOOK_DEFAULT_SCOPE, ServiceAccountKey, client_credentials, service_account_token,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::json;

use crate::support::sandbox;

/// The sandbox's test-only key and certificate (`src/data/`, copies of mailroom-tokens').
const TEST_CERTIFICATE: &str = include_str!("../../src/data/app-only-test-cert.pem");
const TEST_KEY: &str = include_str!("../../src/data/app-only-test-key.pem");
const APP: &str = "9f1c2a44-0b7e-4c35-8f0e-6d0c1f4b2a11";

fn certificate_der() -> Vec<u8> {
    CertificateDer::from_pem_slice(TEST_CERTIFICATE.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec()
}

fn app_certificate() -> AppCertificate {
    AppCertificate::from_pem(&format!("{TEST_CERTIFICATE}{TEST_KEY}")).unwrap()
}

fn problem_of(error: mailroom_tokens::Error) -> AppCredentialProblem {
    match error {
        mailroom_tokens::Error::AppCredentialRejected { problem, .. } => problem,
        other => panic!("not a credential refusal: {other}"),
    }
}

#[tokio::test]
async fn client_credentials_with_a_secret_or_a_certificate_get_an_app_token() {
    let sandbox = sandbox().await;
    let token_url = sandbox.endpoints().microsoft.token.clone();
    sandbox.authority().register_app_secret(APP, "app~secret~1");
    sandbox
        .authority()
        .register_app_certificate(APP, &certificate_der());
    let http = OAuthHttp::new();

    let secret = Secret::new("app~secret~1");
    let token = client_credentials(
        &http,
        &token_url,
        APP,
        GRAPH_DEFAULT_SCOPE,
        ClientCredential::Secret(&secret),
        Utc::now(),
    )
    .await
    .unwrap();
    assert!(matches!(
        sandbox.authority().check_access_token(token.access_token.expose()),
        TokenCheck::Valid(info) if info.address.is_none() && info.client_id == APP
    ));

    let certificate = app_certificate();
    let token = client_credentials(
        &http,
        &token_url,
        APP,
        OUTLOOK_DEFAULT_SCOPE,
        ClientCredential::Certificate(&certificate),
        Utc::now(),
    )
    .await
    .unwrap();
    assert!(matches!(
        sandbox.authority().check_access_token(token.access_token.expose()),
        TokenCheck::Valid(info) if info.address.is_none()
    ));

    // A wrong secret, and an assertion made an hour ago (expired), are refused with
    // Entra's codes.
    let wrong = Secret::new("app~secret~2");
    let error = client_credentials(
        &http,
        &token_url,
        APP,
        GRAPH_DEFAULT_SCOPE,
        ClientCredential::Secret(&wrong),
        Utc::now(),
    )
    .await
    .unwrap_err();
    assert_eq!(problem_of(error), AppCredentialProblem::InvalidSecret);
    let error = client_credentials(
        &http,
        &token_url,
        APP,
        GRAPH_DEFAULT_SCOPE,
        ClientCredential::Certificate(&certificate),
        Utc::now() - Duration::hours(1),
    )
    .await
    .unwrap_err();
    assert_eq!(problem_of(error), AppCredentialProblem::CertificateRejected);
}

#[tokio::test]
async fn an_assertion_the_registered_certificate_does_not_verify_is_refused() {
    let sandbox = sandbox().await;
    let token_url = sandbox.endpoints().microsoft.token.clone();
    // Another certificate is registered: the test key's signature does not verify.
    let other = rcgen::generate_simple_self_signed(vec!["other.example".to_owned()]).unwrap();
    sandbox
        .authority()
        .register_app_certificate(APP, other.cert.der());
    let error = client_credentials(
        &OAuthHttp::new(),
        &token_url,
        APP,
        GRAPH_DEFAULT_SCOPE,
        ClientCredential::Certificate(&app_certificate()),
        Utc::now(),
    )
    .await
    .unwrap_err();
    assert_eq!(problem_of(error), AppCredentialProblem::CertificateRejected);
    // And an assertion whose audience is another tenant's endpoint.
    sandbox
        .authority()
        .register_app_certificate(APP, &certificate_der());
    let mut elsewhere = token_url.clone();
    elsewhere.set_path("/microsoft/another-tenant/oauth2/v2.0/token");
    let assertion = app_certificate()
        .client_assertion(APP, elsewhere.as_str(), Utc::now())
        .unwrap();
    let answer = reqwest::Client::new()
        .post(token_url.clone())
        .form(&[
            ("client_id", APP),
            ("scope", GRAPH_DEFAULT_SCOPE),
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.expose()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error_codes"], json!([700027]));
}

fn service_account_json() -> String {
    json!({
        "type": "service_account",
        "project_id": "mailroom-test",
        "private_key_id": "key-1",
        "private_key": TEST_KEY,
        "client_email": "sender@mailroom-test.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string()
}

#[tokio::test]
async fn a_service_account_gets_a_token_for_one_mailbox() {
    let sandbox = sandbox().await;
    let token_url = sandbox.endpoints().google.token.clone();
    let key = ServiceAccountKey::from_json(&service_account_json()).unwrap();
    let http = OAuthHttp::new();

    // Not registered (no delegation, no known key): refused as a bad grant.
    let error = service_account_token(&http, &key, &token_url, "ann@example.com", Utc::now())
        .await
        .unwrap_err();
    assert_eq!(problem_of(error), AppCredentialProblem::AssertionRejected);

    sandbox
        .authority()
        .register_service_account(key.client_email(), &certificate_der());
    let token = service_account_token(&http, &key, &token_url, "ann@example.com", Utc::now())
        .await
        .unwrap();
    assert!(matches!(
        sandbox.authority().check_access_token(token.access_token.expose()),
        TokenCheck::Valid(info) if info.address.as_deref() == Some("ann@example.com")
    ));
    // A clock two hours behind: the assertion has expired.
    let error = service_account_token(
        &http,
        &key,
        &token_url,
        "ann@example.com",
        Utc::now() - Duration::hours(2),
    )
    .await
    .unwrap_err();
    assert_eq!(problem_of(error), AppCredentialProblem::AssertionRejected);
}
