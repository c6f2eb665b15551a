//! Which mailboxes an app may use, as Exchange and Gmail decide it, with the ready-made
//! credentials of `Sandbox::app_only_credentials` and requests built by hand: Graph's
//! application permissions reach any mailbox, or only the app's management scope (RBAC
//! for Applications, `403 ErrorAccessDenied` outside it); SMTP takes an app's
//! `SMTP.SendAsApp` token only for a mailbox its service principal has FullAccess on
//! (`535 5.7.3` otherwise, and for a Graph token), and sends as that mailbox only; a service
//! account's token sends through Gmail as its `sub` and no one else.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use mailroom_model::Provider;
use mailroom_sandbox::{AppOnlyCredentials, Sandbox, TokenCheck};
use mailroom_smtp::xoauth2_initial_response;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::smtp::Raw;
use crate::support::*;

const APP: &str = "0d6c1f4b-2a11-4c35-8f0e-9f1c2a440b7e";
const GRAPH_DEFAULT: &str = "https://graph.microsoft.com/.default";
const OUTLOOK_DEFAULT: &str = "https://outlook.office365.com/.default";
const MAILBOX: &str = "noreply@contoso.example";
const OTHER: &str = "ceo@contoso.example";
const MESSAGE: &str = "From: noreply@contoso.example\r\nTo: buyer@example.com\r\nSubject: Invoice\r\n\r\nAttached.\r\n";

/// A client assertion of the credentials' certificate for the sandbox's token endpoint
/// (PS256, `x5t#S256`, `aud` the endpoint, `iss` = `sub` = the app).
fn client_assertion(sandbox: &Sandbox, credentials: &AppOnlyCredentials) -> String {
    let certificate = CertificateDer::from_pem_slice(credentials.certificate_pem.as_bytes())
        .expect("the PEM holds a certificate");
    let now = now_seconds();
    signed_jwt(
        &credentials.certificate_pem,
        &json!({
            "alg": "PS256",
            "typ": "JWT",
            "x5t#S256": URL_SAFE_NO_PAD.encode(Sha256::digest(certificate.as_ref())),
        }),
        &json!({
            "aud": sandbox.endpoints().microsoft.token.as_str(),
            "iss": credentials.client_id,
            "sub": credentials.client_id,
            "jti": format!("{:032x}", rand::random::<u128>()),
            "nbf": now,
            "iat": now,
            "exp": now + 600,
        }),
    )
}

/// Client credentials for `scope`, with the secret or the certificate.
async fn app_token(
    sandbox: &Sandbox,
    credentials: &AppOnlyCredentials,
    scope: &str,
    certificate: bool,
) -> String {
    let assertion;
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", credentials.client_id.as_str()),
        ("scope", scope),
    ];
    if certificate {
        assertion = client_assertion(sandbox, credentials);
        form.push((
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ));
        form.push(("client_assertion", &assertion));
    } else {
        form.push(("client_secret", &credentials.client_secret));
    }
    let (status, body) = token_call(sandbox, Provider::Microsoft, &form).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn graph_send_mail(sandbox: &Sandbox, mailbox: &str, token: &str) -> (u16, Value) {
    let url = sandbox
        .endpoints()
        .graph_api
        .join(&format!("v1.0/users/{mailbox}/sendMail"))
        .unwrap();
    let response = http()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "text/plain")
        .body(STANDARD.encode(MESSAGE))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn app_tokens_carry_their_application_permissions_as_roles() {
    let sandbox = sandbox().await;
    let credentials = sandbox.app_only_credentials(APP);
    let graph = app_token(&sandbox, &credentials, GRAPH_DEFAULT, false).await;
    let TokenCheck::Valid(info) = sandbox.authority().check_access_token(&graph) else {
        panic!("the token is valid");
    };
    assert_eq!(info.address, None);
    assert_eq!(info.roles, ["Mail.Send", "Mail.ReadWrite"]);
    assert!(info.has_role("Mail.Send") && !info.has_role("SMTP.SendAsApp"));
    let outlook = app_token(&sandbox, &credentials, OUTLOOK_DEFAULT, true).await;
    let TokenCheck::Valid(info) = sandbox.authority().check_access_token(&outlook) else {
        panic!("the token is valid");
    };
    assert_eq!(info.roles, ["SMTP.SendAsApp"]);
    // A delegated token has scopes and no roles.
    let delegated = tokens(&sandbox, Provider::Microsoft, MICROSOFT_USER).await;
    let TokenCheck::Valid(info) = sandbox
        .authority()
        .check_access_token(delegated["access_token"].as_str().unwrap())
    else {
        panic!("the token is valid");
    };
    assert!(info.roles.is_empty());
    // Debug never shows the secret or the key.
    let debug = format!("{credentials:?}");
    assert!(!debug.contains(&credentials.client_secret), "{debug}");
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
}

#[tokio::test]
async fn graph_app_tokens_send_as_any_mailbox_until_the_app_is_scoped() {
    let sandbox = sandbox().await;
    let credentials = sandbox.app_only_credentials(APP);
    for certificate in [false, true] {
        let token = app_token(&sandbox, &credentials, GRAPH_DEFAULT, certificate).await;
        // Unscoped: the application permission reaches every mailbox.
        let (status, body) = graph_send_mail(&sandbox, OTHER, &token).await;
        assert_eq!(status, 202, "{body}");
    }
    assert_eq!(sandbox.mailbox().messages()[0].authenticated_as, OTHER);

    sandbox
        .authority()
        .restrict_app_graph_mailboxes(APP, &[MAILBOX]);
    assert!(
        sandbox
            .authority()
            .app_may_use_graph_mailbox(APP, "NoReply@Contoso.example")
    );
    assert!(!sandbox.authority().app_may_use_graph_mailbox(APP, OTHER));
    for certificate in [false, true] {
        let token = app_token(&sandbox, &credentials, GRAPH_DEFAULT, certificate).await;
        let (status, body) = graph_send_mail(&sandbox, MAILBOX, &token).await;
        assert_eq!(status, 202, "{body}");
        let (status, body) = graph_send_mail(&sandbox, OTHER, &token).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"]["code"], "ErrorAccessDenied");
        assert_eq!(
            body["error"]["message"],
            "Access is denied. Check credentials and try again."
        );
    }
    let senders: Vec<String> = sandbox
        .mailbox()
        .messages()
        .iter()
        .map(|message| message.authenticated_as.clone())
        .collect();
    assert_eq!(senders, [OTHER, OTHER, MAILBOX, MAILBOX]);
    // Another app stays unscoped.
    let other_app = sandbox.app_only_credentials("another-app");
    let token = app_token(&sandbox, &other_app, GRAPH_DEFAULT, false).await;
    assert_eq!(graph_send_mail(&sandbox, OTHER, &token).await.0, 202);
}

async fn smtp_auth(sandbox: &Sandbox, user: &str, token: &str) -> (Raw, String) {
    let mut raw = Raw::connect_implicit(sandbox).await;
    raw.reply().await;
    raw.command("EHLO client.example").await;
    let line = format!(
        "AUTH XOAUTH2 {}",
        STANDARD.encode(xoauth2_initial_response(user, token))
    );
    let reply = raw.command(&line).await;
    (raw, reply)
}

#[tokio::test]
async fn smtp_takes_an_app_token_only_for_a_mailbox_with_full_access() {
    let sandbox = sandbox().await;
    let credentials = sandbox.app_only_credentials(APP);
    let token = app_token(&sandbox, &credentials, OUTLOOK_DEFAULT, true).await;

    // No FullAccess yet: Exchange's 535 5.7.3 at once.
    let (_, reply) = smtp_auth(&sandbox, MAILBOX, &token).await;
    assert!(
        reply.starts_with("535 5.7.3 Authentication unsuccessful"),
        "{reply}"
    );

    sandbox.authority().grant_app_smtp_mailbox(APP, MAILBOX);
    assert!(sandbox.authority().app_may_use_smtp_mailbox(APP, MAILBOX));
    assert!(
        !sandbox
            .authority()
            .app_may_use_smtp_mailbox("another-app", MAILBOX)
    );
    // Another mailbox is still refused.
    let (_, reply) = smtp_auth(&sandbox, OTHER, &token).await;
    assert!(
        reply.starts_with("535 5.7.3 Authentication unsuccessful"),
        "{reply}"
    );

    let (mut raw, reply) = smtp_auth(&sandbox, MAILBOX, &token).await;
    assert_eq!(reply, "235 2.7.0 Authentication successful\r\n");
    // The authenticated mailbox is the sender: another MAIL FROM is refused as for a
    // delegated token.
    assert_eq!(
        raw.command(&format!("MAIL FROM:<{OTHER}>")).await,
        "550 5.7.60 SMTP; Client does not have permissions to send as this sender\r\n"
    );
    assert_eq!(
        raw.command(&format!("MAIL FROM:<{MAILBOX}>")).await,
        "250 2.1.0 Sender OK\r\n"
    );
    assert_eq!(
        raw.command("RCPT TO:<buyer@example.com>").await,
        "250 2.1.5 Recipient OK\r\n"
    );
    assert!(raw.command("DATA").await.starts_with("354"));
    let reply = raw.command(&format!("{MESSAGE}.")).await;
    assert!(reply.starts_with("250 2.6.0"), "{reply}");
    let stored = sandbox.mailbox().messages();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].authenticated_as, MAILBOX);
    assert_eq!(stored[0].envelope_from.as_deref(), Some(MAILBOX));
    assert_eq!(std::fs::read(&stored[0].path).unwrap(), MESSAGE.as_bytes());

    // The app's secret gets the same rights.
    let token = app_token(&sandbox, &credentials, OUTLOOK_DEFAULT, false).await;
    assert_eq!(
        smtp_auth(&sandbox, MAILBOX, &token).await.1,
        "235 2.7.0 Authentication successful\r\n"
    );
}

#[tokio::test]
async fn a_graph_app_token_is_refused_by_smtp() {
    let sandbox = sandbox().await;
    let credentials = sandbox.app_only_credentials(APP);
    sandbox.authority().grant_app_smtp_mailbox(APP, MAILBOX);
    let token = app_token(&sandbox, &credentials, GRAPH_DEFAULT, false).await;
    let (_, reply) = smtp_auth(&sandbox, MAILBOX, &token).await;
    assert!(
        reply.starts_with("535 5.7.3 Authentication unsuccessful"),
        "{reply}"
    );
    assert!(sandbox.mailbox().messages().is_empty());
}

/// A service account token for `subject`, with a JWT bearer assertion signed by hand with
/// the key file's key.
async fn service_account_token(key_file: &Value, subject: &str) -> String {
    let now = now_seconds();
    let assertion = signed_jwt(
        key_file["private_key"].as_str().unwrap(),
        &json!({"alg": "RS256", "typ": "JWT", "kid": key_file["private_key_id"]}),
        &json!({
            "iss": key_file["client_email"],
            "scope": "https://www.googleapis.com/auth/gmail.send",
            "aud": key_file["token_uri"],
            "sub": subject,
            "iat": now,
            "exp": now + 3600,
        }),
    );
    let url = key_file["token_uri"].as_str().unwrap();
    let response = http()
        .post(url)
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn gmail_send(sandbox: &Sandbox, user_id: &str, token: &str) -> (u16, Value) {
    let url = sandbox
        .endpoints()
        .gmail_api
        .join(&format!("gmail/v1/users/{user_id}/messages/send"))
        .unwrap();
    let raw = URL_SAFE_NO_PAD.encode(
        "From: orders@example.com\r\nTo: buyer@example.com\r\nSubject: Invoice\r\n\r\nAttached.\r\n",
    );
    let response = http()
        .post(url)
        .bearer_auth(token)
        .json(&json!({ "raw": raw }))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_service_account_token_sends_through_gmail_as_its_subject_only() {
    let sandbox = sandbox().await;
    let credentials = sandbox.app_only_credentials(APP);
    let key_file: Value = serde_json::from_str(&credentials.service_account_json).unwrap();
    assert_eq!(key_file["type"], "service_account");
    assert_eq!(key_file["client_email"], credentials.service_account);
    assert_eq!(
        key_file["token_uri"],
        sandbox.endpoints().google.token.as_str()
    );
    let token = service_account_token(&key_file, GOOGLE_USER).await;

    for user_id in ["me", GOOGLE_USER] {
        let (status, body) = gmail_send(&sandbox, user_id, &token).await;
        assert_eq!(status, 200, "{body}");
    }
    let stored = sandbox.mailbox().messages();
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|m| m.authenticated_as == GOOGLE_USER));

    // Another mailbox's userId: Gmail's delegation refusal, as for a delegated token.
    let (status, body) = gmail_send(&sandbox, "ceo@example.com", &token).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["error"]["message"],
        format!("Delegation denied for {GOOGLE_USER}")
    );
    assert_eq!(sandbox.mailbox().messages().len(), 2);
}
