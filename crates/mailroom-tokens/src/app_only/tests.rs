//! Contract tests of the app-only grants against wiremock, from the providers' pages:
//! MicrosoftDocs/entra-docs `docs/identity-platform/v2-oauth2-client-creds-grant-flow.md`
//! (the form, the answer, the error bodies) and `certificate-credentials.md` (the
//! assertion); developers.google.com/identity/protocols/oauth2/service-account (the JWT
//! bearer grant, its claims and its errors).

use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::jwt::tests::{TEST_CERTIFICATE, TEST_KEY, service_account_json, verified};

const CLIENT_ID: &str = "6731de76-14a6-49ae-97bc-6eba6914391e";

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn token_answer() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "token_type": "Bearer",
        "expires_in": 3599,
        "access_token": "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiIsIng1dCI6Ik1uQ19WWmNBVGZNNXBP",
    }))
}

async fn token_server(answer: ResponseTemplate) -> (MockServer, url::Url) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/contoso/oauth2/v2.0/token"))
        .respond_with(answer)
        .mount(&server)
        .await;
    let url = url::Url::parse(&format!("{}/contoso/oauth2/v2.0/token", server.uri())).unwrap();
    (server, url)
}

/// `client_credentials` for the Graph scope with a client secret, from `url`.
async fn secret_grant_at(url: &url::Url, secret: &Secret) -> Result<AppToken> {
    client_credentials(
        &OAuthHttp::new(),
        url,
        CLIENT_ID,
        GRAPH_DEFAULT_SCOPE,
        ClientCredential::Secret(secret),
        now(),
    )
    .await
}

/// The form of the one request the server received.
async fn sent_form(server: &MockServer) -> Vec<(String, String)> {
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].headers.get("content-type").unwrap(),
        "application/x-www-form-urlencoded"
    );
    url::form_urlencoded::parse(&requests[0].body)
        .into_owned()
        .collect()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn certificate() -> AppCertificate {
    AppCertificate::from_pem(&format!("{TEST_CERTIFICATE}{TEST_KEY}")).unwrap()
}

#[tokio::test]
async fn a_client_secret_is_sent_as_the_documented_form() {
    let (server, url) = token_server(token_answer()).await;
    let secret = Secret::new("sampleCredentia1s~secret");
    let token = secret_grant_at(&url, &secret).await.unwrap();
    assert_eq!(
        token.access_token.expose(),
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiIsIng1dCI6Ik1uQ19WWmNBVGZNNXBP"
    );
    assert_eq!(token.expires_in, Duration::from_secs(3599));
    assert!(!format!("{token:?}").contains("eyJ0"));
    let form = sent_form(&server).await;
    let expected: Vec<(String, String)> = [
        ("client_id", CLIENT_ID),
        ("scope", "https://graph.microsoft.com/.default"),
        ("grant_type", "client_credentials"),
        ("client_secret", "sampleCredentia1s~secret"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(form, expected);
}

#[tokio::test]
async fn a_certificate_sends_a_verifiable_ps256_assertion_and_no_secret() {
    let (server, url) = token_server(token_answer()).await;
    let certificate = certificate();
    client_credentials(
        &OAuthHttp::new(),
        &url,
        CLIENT_ID,
        OUTLOOK_DEFAULT_SCOPE,
        ClientCredential::Certificate(&certificate),
        now(),
    )
    .await
    .unwrap();
    let form = sent_form(&server).await;
    let names: Vec<&str> = form.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "client_id",
            "scope",
            "grant_type",
            "client_assertion_type",
            "client_assertion"
        ]
    );
    assert_eq!(
        field(&form, "scope"),
        Some("https://outlook.office365.com/.default")
    );
    assert_eq!(field(&form, "grant_type"), Some("client_credentials"));
    assert_eq!(
        field(&form, "client_assertion_type"),
        Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    );
    let (header, claims) = verified(
        field(&form, "client_assertion").unwrap(),
        &RSA_PSS_2048_8192_SHA256,
    );
    assert_eq!(header["alg"], "PS256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["x5t#S256"], certificate.thumbprint_sha256());
    assert_eq!(claims["aud"], url.as_str());
    assert_eq!(claims["iss"], CLIENT_ID);
    assert_eq!(claims["sub"], CLIENT_ID);
    assert_eq!(claims["nbf"], 1_800_000_000);
    assert_eq!(claims["iat"], 1_800_000_000);
    assert_eq!(claims["exp"], 1_800_000_600);
    assert!(claims["jti"].as_str().is_some_and(|jti| !jti.is_empty()));
}

#[tokio::test]
async fn the_service_account_asks_a_gmail_token_for_one_mailbox() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "1/8xbJqaOZXSUZbHLl5EOtu1pxz3fmmetKx9W8CV4t79M",
            "scope": "https://www.googleapis.com/auth/gmail.send",
            "token_type": "Bearer",
            "expires_in": 3600,
        })))
        .mount(&server)
        .await;
    let url = url::Url::parse(&format!("{}/token", server.uri())).unwrap();
    let key = ServiceAccountKey::from_json(&service_account_json()).unwrap();
    let token = service_account_token(&OAuthHttp::new(), &key, &url, "ann@example.com", now())
        .await
        .unwrap();
    assert_eq!(
        token.access_token.expose(),
        "1/8xbJqaOZXSUZbHLl5EOtu1pxz3fmmetKx9W8CV4t79M"
    );
    assert_eq!(token.expires_in, Duration::from_secs(3600));
    let form = sent_form(&server).await;
    assert_eq!(
        field(&form, "grant_type"),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    assert_eq!(form.len(), 2);
    let (header, claims) = verified(
        field(&form, "assertion").unwrap(),
        &RSA_PKCS1_2048_8192_SHA256,
    );
    assert_eq!(
        header,
        json!({"alg": "RS256", "typ": "JWT", "kid": "key-1"})
    );
    assert_eq!(
        claims["iss"],
        "sender@mailroom-test.iam.gserviceaccount.com"
    );
    assert_eq!(claims["sub"], "ann@example.com");
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/gmail.send"
    );
    assert_eq!(claims["aud"], url.as_str());
    assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 3600);
}

/// Microsoft's documented error body for `code` (the shape of the client credentials
/// page's "Error response example").
fn microsoft_error(error: &str, code: u64, text: &str, secret_echo: &str) -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_json(json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {text} {secret_echo}\r\nTrace ID: 255d1aef-8c98-452f-ac51-23d051240864\r\nCorrelation ID: fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7\r\nTimestamp: 2016-01-09 02:02:12Z"),
        "error_codes": [code],
        "timestamp": "2016-01-09 02:02:12Z",
        "trace_id": "255d1aef-8c98-452f-ac51-23d051240864",
        "correlation_id": "fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7",
    }))
}

#[track_caller]
fn check_problem(result: Result<AppToken>, expected: AppCredentialProblem, secret: &str) {
    let error = result.unwrap_err();
    let text = error.to_string();
    match &error {
        Error::AppCredentialRejected { problem, .. } => assert_eq!(problem, &expected, "{text}"),
        other => panic!("expected {expected:?}, got {other:?}"),
    }
    assert!(!text.contains(secret), "{text}");
    assert!(!format!("{error:?}").contains(secret));
    assert!(!text.contains("Trace ID"), "{text}");
    // Each problem's remedy: the tenant's app is reviewed, delegation is configured for
    // the service account, a refused credential is set again.
    let remedy = error.remedy().unwrap();
    match expected {
        AppCredentialProblem::AppNotInTenant => {
            assert!(matches!(remedy, Remedy::ReviewApp { .. }), "{remedy:?}")
        }
        AppCredentialProblem::DelegationNotConfigured => assert_eq!(
            remedy,
            Remedy::ConfigureDomainWideDelegation {
                client: Some("sender@mailroom-test.iam.gserviceaccount.com".to_owned())
            }
        ),
        _ => assert!(
            matches!(remedy, Remedy::SetAppCredential { .. }),
            "{remedy:?}"
        ),
    }
}

use mailroom_model::Remedy;

#[tokio::test]
async fn microsofts_credential_errors_name_their_remedy() {
    let secret = Secret::new("wrong~secret~value");
    for (error, code, text, expected) in [
        (
            "unauthorized_client",
            700016,
            "Application with identifier '6731de76' was not found in the directory 'contoso'.",
            AppCredentialProblem::AppNotInTenant,
        ),
        (
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
            AppCredentialProblem::InvalidSecret,
        ),
        (
            "invalid_client",
            7000222,
            "The provided client secret keys for app '6731de76' are expired.",
            AppCredentialProblem::ExpiredSecret,
        ),
        (
            "invalid_client",
            700027,
            "Client assertion failed signature validation.",
            AppCredentialProblem::CertificateRejected,
        ),
    ] {
        let (_server, url) =
            token_server(microsoft_error(error, code, text, secret.expose())).await;
        let result = secret_grant_at(&url, &secret).await;
        check_problem(result, expected, secret.expose());
    }
}

#[tokio::test]
async fn an_echoed_assertion_never_reaches_the_error() {
    // A failure body that echoes the request: the assertion is stripped like a secret.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(|request: &wiremock::Request| {
            let body = String::from_utf8_lossy(&request.body).into_owned();
            ResponseTemplate::new(400).set_body_json(json!({
                "error": "invalid_client",
                "error_description": format!("AADSTS700027: Client assertion failed signature validation. {body}"),
                "error_codes": [700027],
            }))
        })
        .mount(&server)
        .await;
    let url = url::Url::parse(&format!("{}/t/oauth2/v2.0/token", server.uri())).unwrap();
    let error = client_credentials(
        &OAuthHttp::new(),
        &url,
        CLIENT_ID,
        GRAPH_DEFAULT_SCOPE,
        ClientCredential::Certificate(&certificate()),
        now(),
    )
    .await
    .unwrap_err();
    let sent = sent_form(&server).await;
    let assertion = field(&sent, "client_assertion").unwrap();
    let signature = assertion.rsplit('.').next().unwrap();
    assert!(!error.to_string().contains(signature), "{error}");
    assert!(error.to_string().contains("[redacted]"), "{error}");
}

#[tokio::test]
async fn googles_errors_name_their_remedy() {
    for (body, expected) in [
        (
            json!({"error": "unauthorized_client", "error_description": "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested."}),
            AppCredentialProblem::DelegationNotConfigured,
        ),
        (
            json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
            AppCredentialProblem::AssertionRejected,
        ),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(400).set_body_json(body))
            .mount(&server)
            .await;
        let url = url::Url::parse(&format!("{}/token", server.uri())).unwrap();
        let key = ServiceAccountKey::from_json(&service_account_json()).unwrap();
        let result =
            service_account_token(&OAuthHttp::new(), &key, &url, "ann@example.com", now()).await;
        check_problem(result, expected, "BEGIN PRIVATE KEY");
    }
}

#[tokio::test]
async fn a_busy_endpoint_is_transient_and_plain_http_elsewhere_is_refused() {
    let (_server, url) = token_server(ResponseTemplate::new(503)).await;
    let secret = Secret::new("sampleCredentia1s~secret");
    let error = secret_grant_at(&url, &secret).await.unwrap_err();
    assert!(error.is_transient(), "{error}");

    let url = url::Url::parse("http://login.example.com/contoso/oauth2/v2.0/token").unwrap();
    let error = secret_grant_at(&url, &secret).await.unwrap_err();
    assert!(
        error.to_string().contains("refusing to send a secret"),
        "{error}"
    );
}

#[test]
fn resources_have_their_scope_and_cache_key() {
    assert_eq!(
        AppResource::Graph.scope(),
        "https://graph.microsoft.com/.default"
    );
    assert_eq!(
        AppResource::Outlook.scope(),
        "https://outlook.office365.com/.default"
    );
    let gmail = AppResource::Gmail {
        mailbox: "Ann@Example.com".to_owned(),
    };
    assert_eq!(gmail.scope(), "https://www.googleapis.com/auth/gmail.send");
    assert_eq!(gmail.key(), "gmail:ann@example.com");
    assert_eq!(AppResource::Graph.key(), "graph");
    assert_eq!(AppResource::Outlook.key(), "outlook");
}

#[tokio::test]
async fn client_credentials_need_a_tenant_not_organizations_or_common() {
    let server = MockServer::start().await;
    let secret = Secret::new("sampleCredentia1s~secret");
    for tenant in ["organizations", "common"] {
        let url = url::Url::parse(&format!("{}/{tenant}/oauth2/v2.0/token", server.uri())).unwrap();
        let error = secret_grant_at(&url, &secret).await.unwrap_err();
        assert!(matches!(error, Error::TenantRequired { .. }), "{error}");
        assert_eq!(error.remedy(), Some(Remedy::SetMicrosoftTenant));
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}

/// `client_credentials` with a client secret against a token endpoint that answers
/// `answer`.
async fn secret_grant(answer: ResponseTemplate) -> Result<AppToken> {
    let (_server, url) = token_server(answer).await;
    secret_grant_at(&url, &Secret::new("sampleCredentia1s~secret")).await
}

#[tokio::test]
async fn a_credential_error_is_known_by_its_code_or_by_its_description_alone() {
    // Entra sends both `error_codes` and an `AADSTS…:` description; either one names the
    // problem when the other is missing or says something else.
    let by_code = secret_grant(ResponseTemplate::new(401).set_body_json(json!({
        "error": "invalid_client",
        "error_description": "Invalid client secret provided.",
        "error_codes": [7000215],
    })))
    .await;
    check_problem(
        by_code,
        AppCredentialProblem::InvalidSecret,
        "sampleCredentia1s",
    );
    let by_description = secret_grant(ResponseTemplate::new(401).set_body_json(json!({
        "error": "invalid_client",
        "error_description": "AADSTS7000222: The provided client secret keys for app '6731de76' are expired.",
    })))
    .await;
    check_problem(
        by_description,
        AppCredentialProblem::ExpiredSecret,
        "sampleCredentia1s",
    );
}

#[tokio::test]
async fn an_error_that_is_not_the_credentials_is_the_providers_own() {
    // `AADSTS70011` (a bad scope) is none of the app's credentials: it is reported as the
    // provider's error, and a code that merely starts like a known one is not that one.
    for (code, error) in [(70011, "invalid_scope"), (7000270, "invalid_request")] {
        let result = secret_grant(ResponseTemplate::new(400).set_body_json(json!({
            "error": error,
            "error_description": format!("AADSTS{code}: The provided value is not valid.\r\nTrace ID: 255d1aef"),
            "error_codes": [code],
        })))
        .await;
        match result.unwrap_err() {
            Error::Provider {
                error: reported,
                description,
            } => {
                assert_eq!(reported, error);
                assert_eq!(
                    description.as_deref(),
                    Some(format!("AADSTS{code}: The provided value is not valid.").as_str())
                );
            }
            other => panic!("AADSTS{code}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_busy_token_service_is_transient_even_as_an_oauth_error() {
    // Entra's documented `temporarily_unavailable`: retry after a small delay.
    let error = secret_grant(ResponseTemplate::new(400).set_body_json(json!({
        "error": "temporarily_unavailable",
        "error_description": "AADSTS90033: A transient error has occurred. Please try again.",
        "error_codes": [90033],
    })))
    .await
    .unwrap_err();
    assert!(error.is_transient(), "{error:?}");
}

#[tokio::test]
async fn a_token_without_expires_in_is_taken_to_live_half_an_hour() {
    let token = secret_grant(ResponseTemplate::new(200).set_body_json(json!({
        "token_type": "Bearer",
        "access_token": "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9",
    })))
    .await
    .unwrap();
    assert_eq!(token.expires_in, Duration::from_secs(1800));
}

#[test]
fn credentials_and_tokens_show_no_secret_in_debug() {
    let secret = Secret::new("sampleCredentia1s~secret");
    assert_eq!(
        format!("{:?}", ClientCredential::Secret(&secret)),
        "Secret(<redacted>)"
    );
    let certificate = certificate();
    let shown = format!("{:?}", ClientCredential::Certificate(&certificate));
    assert!(shown.starts_with("Certificate("), "{shown}");
    assert!(shown.contains(certificate.thumbprint_sha256()), "{shown}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    let token = AppToken {
        access_token: Secret::new("eyJ0eXAiOiJKV1Qi"),
        expires_in: Duration::from_secs(3599),
    };
    assert_eq!(format!("{token:?}"), "AppToken { expires_in: 3599s, .. }");
}
