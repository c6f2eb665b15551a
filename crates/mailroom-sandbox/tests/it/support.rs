//! A sandbox per test, app registrations pointing at it, a test "browser", raw token calls
//! and messages.

use std::collections::HashMap;

use bytes::Bytes;
use mailroom_model::{Address, Envelope, OutgoingMessage, Provider};
use mailroom_sandbox::{Sandbox, SandboxConfig};
use mailroom_testkit::sandbox::endpoint_overrides;
use mailroom_tokens::registration::AppRegistration;
use serde_json::Value;

pub(crate) const MICROSOFT_CLIENT: &str = "11111111-2222-3333-4444-555555555555";
pub(crate) const GOOGLE_CLIENT: &str = "1234-sandbox.apps.googleusercontent.com";
pub(crate) const GOOGLE_SECRET: &str = "GOCSPX-sandbox";
pub(crate) const MICROSOFT_USER: &str = "sa@contoso.example";
pub(crate) const GOOGLE_USER: &str = "orders@example.com";

/// A started sandbox in its own temporary directory.
pub(crate) struct TestSandbox {
    pub(crate) sandbox: Sandbox,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for TestSandbox {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

pub(crate) async fn sandbox_with(configure: impl FnOnce(&mut SandboxConfig)) -> TestSandbox {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut config = SandboxConfig::new(dir.path().join("sandbox"));
    config.auto_approve = true;
    configure(&mut config);
    let sandbox = Sandbox::start(config).await.expect("the sandbox starts");
    TestSandbox { sandbox, _dir: dir }
}

pub(crate) async fn sandbox() -> TestSandbox {
    sandbox_with(|_| {}).await
}

/// mailroom's app registration for one style of the sandbox.
pub(crate) fn app(sandbox: &Sandbox, provider: Provider) -> AppRegistration {
    let (client_id, secret) = match provider {
        Provider::Google => (GOOGLE_CLIENT, Some(GOOGLE_SECRET)),
        _ => (MICROSOFT_CLIENT, None),
    };
    AppRegistration {
        provider,
        client_id: client_id.to_owned(),
        client_secret: secret.map(mailroom_model::Secret::new),
        tenant: None,
        cloud: mailroom_tokens::registration::MicrosoftCloud::Global,
        overrides: endpoint_overrides(sandbox, provider),
        app_credential: None,
    }
}

/// A reqwest client that follows redirects only to 127.0.0.1: the test's browser.
pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if matches!(attempt.url().host_str(), Some("127.0.0.1" | "localhost"))
                && attempt.previous().len() < 5
            {
                attempt.follow()
            } else {
                attempt.stop()
            }
        }))
        .build()
        .expect("a reqwest client")
}

/// A reqwest client that follows no redirect.
pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a reqwest client")
}

/// An `open_url` callback for `sign_in_with_browser` that plays the browser.
pub(crate) fn play_browser(url: &url::Url) {
    let url = url.clone();
    tokio::spawn(async move {
        let response = browser()
            .get(url)
            .send()
            .await
            .expect("the browser's request");
        assert!(response.status().is_success(), "{response:?}");
    });
}

pub(crate) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub(crate) const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
pub(crate) const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// Runs an (auto-approved) authorize request and returns the code from the redirect.
pub(crate) async fn code(
    sandbox: &Sandbox,
    provider: Provider,
    address: &str,
    scope: &str,
) -> String {
    let endpoints = sandbox.endpoints();
    let (authorize, client) = match provider {
        Provider::Google => (&endpoints.google.authorize, GOOGLE_CLIENT),
        _ => (&endpoints.microsoft.authorize, MICROSOFT_CLIENT),
    };
    let response = http()
        .get(authorize.clone())
        .query(&[
            ("response_type", "code"),
            ("client_id", client),
            ("redirect_uri", REDIRECT),
            ("scope", scope),
            ("state", "the-state"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("login_hint", address),
            ("access_type", "offline"),
            ("prompt", "consent"),
        ])
        .send()
        .await
        .expect("authorize");
    assert_eq!(response.status(), 302, "{response:?}");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let location = url::Url::parse(&location).unwrap();
    let query: HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(query["state"], "the-state");
    query["code"].clone()
}

/// A token endpoint call: (status, JSON body).
pub(crate) async fn token_call(
    sandbox: &Sandbox,
    provider: Provider,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let endpoints = sandbox.endpoints();
    let url = match provider {
        Provider::Google => &endpoints.google.token,
        _ => &endpoints.microsoft.token,
    };
    let response = http().post(url.clone()).form(form).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

pub(crate) const MICROSOFT_SCOPE: &str =
    "https://outlook.office.com/SMTP.Send offline_access openid profile email";
pub(crate) const GOOGLE_SCOPE: &str = "https://www.googleapis.com/auth/gmail.send openid email";

/// Signs `address` in (raw code flow) and returns the token response.
pub(crate) async fn tokens(sandbox: &Sandbox, provider: Provider, address: &str) -> Value {
    let scope = match provider {
        Provider::Google => GOOGLE_SCOPE,
        _ => MICROSOFT_SCOPE,
    };
    tokens_with_scope(sandbox, provider, address, scope).await
}

pub(crate) async fn tokens_with_scope(
    sandbox: &Sandbox,
    provider: Provider,
    address: &str,
    scope: &str,
) -> Value {
    let code = code(sandbox, provider, address, scope).await;
    let (client, secret) = match provider {
        Provider::Google => (GOOGLE_CLIENT, GOOGLE_SECRET),
        _ => (MICROSOFT_CLIENT, ""),
    };
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", client),
    ];
    if !secret.is_empty() {
        form.push(("client_secret", secret));
    }
    let (status, body) = token_call(sandbox, provider, &form).await;
    assert_eq!(status, 200, "{body}");
    body
}

pub(crate) fn address(text: &str) -> Address {
    text.parse().expect("an address")
}

/// A message with a dot-leading line and an attachment, formatted by lettre.
pub(crate) fn message(from: &str, to: &str, attachment: Vec<u8>) -> OutgoingMessage {
    use lettre::message::header::ContentType;
    use lettre::message::{Attachment, MultiPart, SinglePart};
    let message = lettre::Message::builder()
        .from(from.parse().unwrap())
        .to(to.parse().unwrap())
        .subject("Order confirmation 10234")
        .message_id(None)
        .multipart(
            MultiPart::mixed()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(String::from("Thank you.\r\n.a line with a leading dot\r\n")),
                )
                .singlepart(
                    Attachment::new("SO-10234.pdf".to_owned())
                        .body(attachment, ContentType::parse("application/pdf").unwrap()),
                ),
        )
        .unwrap();
    OutgoingMessage {
        envelope: Envelope::new(address(from), vec![address(to)]).unwrap(),
        bytes: Bytes::from(message.formatted()),
        message_id: None,
    }
}

/// Deterministic bytes that are not text.
pub(crate) fn binary(length: usize) -> Vec<u8> {
    (0..length as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// A JWT signed with the RSA key (PKCS#8 PEM) in `key_pem`: `PS256` when `pss`, else
/// `RS256` — made by hand, as a provider's client library would.
pub(crate) fn signed_jwt(key_pem: &str, header: &Value, claims: &Value) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use rustls::pki_types::PrivatePkcs8KeyDer;
    use rustls::pki_types::pem::PemObject;
    let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes()).expect("a PKCS#8 key");
    let key = ring::signature::RsaKeyPair::from_pkcs8(key.secret_pkcs8_der()).expect("RSA");
    let algorithm: &'static dyn ring::signature::RsaEncoding = match header["alg"].as_str() {
        Some("PS256") => &ring::signature::RSA_PSS_SHA256,
        _ => &ring::signature::RSA_PKCS1_SHA256,
    };
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        algorithm,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .expect("the key signs");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Seconds since the Unix epoch, now.
pub(crate) fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}
