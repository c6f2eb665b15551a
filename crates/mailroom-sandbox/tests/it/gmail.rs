//! The Gmail endpoint: mailroom's Gmail transport (media and resumable uploads), the JSON
//! `raw` body, and Google's error bodies for bad tokens, missing scopes and delegation.

use base64::Engine as _;
use mailroom_gmail::{GmailConfig, GmailTransport};
use mailroom_model::{CredentialSecret, Credentials, MessageTransport, Provider, Secret};
use mailroom_sandbox::{ReceivedBy, Sandbox};
use serde_json::{Value, json};

use crate::support::*;

fn transport(sandbox: &Sandbox, configure: impl FnOnce(&mut GmailConfig)) -> GmailTransport {
    let mut config = GmailConfig::with_base_url(sandbox.endpoints().gmail_api.clone());
    config.allow_plaintext_loopback = true;
    configure(&mut config);
    GmailTransport::new(config).expect("the transport builds")
}

fn bearer(token: &str) -> Credentials {
    Credentials {
        user: GOOGLE_USER.to_owned(),
        secret: CredentialSecret::AccessToken(Secret::new(token)),
        version: 1,
    }
}

async fn access_token(sandbox: &Sandbox) -> String {
    tokens(sandbox, Provider::Google, GOOGLE_USER).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn mailroom_sends_with_a_media_upload() {
    let sandbox = sandbox().await;
    let token = access_token(&sandbox).await;
    let message = message(GOOGLE_USER, "buyer@example.com", binary(200_000));
    let delivery = transport(&sandbox, |_| {})
        .send(&message, &bearer(&token))
        .await
        .expect("the message is accepted");
    let stored = &sandbox.mailbox().messages()[0];
    assert_eq!(stored.received_by, ReceivedBy::GmailMedia);
    assert_eq!(delivery.provider_message_id, stored.gmail_id);
    assert_eq!(stored.authenticated_as, GOOGLE_USER);
    assert_eq!(std::fs::read(&stored.path).unwrap(), message.bytes.to_vec());
}

#[tokio::test]
async fn mailroom_sends_with_a_resumable_upload_in_chunks() {
    let sandbox = sandbox().await;
    let token = access_token(&sandbox).await;
    let message = message(GOOGLE_USER, "buyer@example.com", binary(700_000));
    let transport = transport(&sandbox, |config| {
        config.resumable_threshold = 256 * 1024;
        config.resumable_chunk_size = 256 * 1024;
    });
    transport
        .send(&message, &bearer(&token))
        .await
        .expect("the message is accepted");
    let stored = &sandbox.mailbox().messages()[0];
    assert_eq!(stored.received_by, ReceivedBy::GmailResumable);
    assert_eq!(std::fs::read(&stored.path).unwrap(), message.bytes.to_vec());
}

#[tokio::test]
async fn the_json_raw_body_is_decoded_and_stored() {
    let sandbox = sandbox().await;
    let token = access_token(&sandbox).await;
    let bytes =
        b"To: buyer@example.com\r\nSubject: raw\r\nMessage-ID: <raw@x>\r\n\r\n\xff\xfe binary?\r\n";
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let url = sandbox
        .endpoints()
        .gmail_api
        .join(&format!("gmail/v1/users/{GOOGLE_USER}/messages/send"))
        .unwrap();
    let response = http()
        .post(url)
        .bearer_auth(&token)
        .json(&json!({ "raw": raw }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["labelIds"], json!(["SENT"]));
    let stored = sandbox.mailbox().find_by_message_id("raw@x").unwrap();
    assert_eq!(stored.received_by, ReceivedBy::GmailRaw);
    assert_eq!(
        Some(body["id"].as_str().unwrap()),
        stored.gmail_id.as_deref()
    );
    assert_eq!(std::fs::read(&stored.path).unwrap(), bytes.to_vec());
}

async fn media_send(
    sandbox: &Sandbox,
    user: &str,
    token: &str,
    body: &'static [u8],
) -> (u16, Value, Option<String>) {
    let url = sandbox
        .endpoints()
        .gmail_api
        .join(&format!(
            "upload/gmail/v1/users/{user}/messages/send?uploadType=media"
        ))
        .unwrap();
    let response = http()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "message/rfc822")
        .body(body)
        .send()
        .await
        .unwrap();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|value| value.to_str().unwrap().to_owned());
    (
        response.status().as_u16(),
        response.json().await.unwrap(),
        challenge,
    )
}

const MESSAGE: &[u8] = b"To: buyer@example.com\r\nSubject: x\r\n\r\nbody\r\n";

#[tokio::test]
async fn bad_tokens_get_googles_401_body() {
    let sandbox = sandbox().await;
    sandbox
        .authority()
        .set_access_token_lifetime(std::time::Duration::ZERO);
    let expired = access_token(&sandbox).await;
    let microsoft = tokens(&sandbox, Provider::Microsoft, MICROSOFT_USER).await;
    for token in [
        expired.as_str(),
        "never-issued",
        microsoft["access_token"].as_str().unwrap(),
    ] {
        let (status, body, challenge) = media_send(&sandbox, "me", token, MESSAGE).await;
        assert_eq!(status, 401);
        assert_eq!(
            body,
            json!({"error": {
                "code": 401,
                "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
                "errors": [{
                    "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
                    "domain": "global",
                    "reason": "authError"
                }],
                "status": "UNAUTHENTICATED"
            }})
        );
        assert_eq!(
            challenge.as_deref(),
            Some("Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"")
        );
    }
    let error = transport(&sandbox, |_| {})
        .send(
            &message(GOOGLE_USER, "buyer@example.com", Vec::new()),
            &bearer(&expired),
        )
        .await
        .unwrap_err();
    assert!(error.is_auth_rejected(), "{error}");
    assert!(sandbox.mailbox().messages().is_empty());
}

#[tokio::test]
async fn missing_scopes_delegation_and_bad_content_are_refused() {
    let sandbox = sandbox().await;
    let no_gmail = tokens_with_scope(&sandbox, Provider::Google, GOOGLE_USER, "openid email").await;
    let (status, body, _) = media_send(
        &sandbox,
        "me",
        no_gmail["access_token"].as_str().unwrap(),
        MESSAGE,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        body["error"]["message"],
        "Request had insufficient authentication scopes."
    );
    assert_eq!(
        body["error"]["errors"][0]["reason"],
        "insufficientPermissions"
    );
    assert_eq!(
        body["error"]["details"][0]["reason"],
        "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
    );
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");

    let token = access_token(&sandbox).await;
    let (status, body, _) = media_send(&sandbox, "alias@example.com", &token, MESSAGE).await;
    assert_eq!(status, 403);
    assert_eq!(
        body["error"]["message"],
        format!("Delegation denied for {GOOGLE_USER}")
    );
    // The account's own address works as the userId, like `me`.
    let (status, _, _) = media_send(&sandbox, GOOGLE_USER, &token, MESSAGE).await;
    assert_eq!(status, 200);

    let (status, body, _) =
        media_send(&sandbox, "me", &token, b"Subject: nobody\r\n\r\nbody\r\n").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["message"], "Recipient address required");

    let url = sandbox
        .endpoints()
        .gmail_api
        .join("upload/gmail/v1/users/me/messages/send?uploadType=media")
        .unwrap();
    let response = http()
        .post(url)
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body(MESSAGE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["errors"][0]["reason"], "badContent");
}

#[tokio::test]
async fn a_resumable_session_answers_status_queries_and_out_of_place_chunks() {
    let sandbox = sandbox().await;
    let token = access_token(&sandbox).await;
    let url = sandbox
        .endpoints()
        .gmail_api
        .join("resumable/upload/gmail/v1/users/me/messages/send?uploadType=resumable")
        .unwrap();
    let total = MESSAGE.len();
    let response = http()
        .post(url)
        .bearer_auth(&token)
        .header("x-upload-content-type", "message/rfc822")
        .header("x-upload-content-length", total)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let session = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        session.starts_with(sandbox.endpoints().gmail_api.as_str()),
        "{session}"
    );
    let put = |range: String, body: &'static [u8]| {
        http()
            .put(session.clone())
            .header("content-range", range)
            .body(body)
            .send()
    };
    let response = put(format!("bytes */{total}"), b"").await.unwrap();
    assert_eq!(response.status(), 308);
    assert!(response.headers().get("range").is_none());
    let response = put(format!("bytes 0-9/{total}"), &MESSAGE[..10])
        .await
        .unwrap();
    assert_eq!(response.status(), 308);
    assert_eq!(response.headers()["range"], "bytes=0-9");
    // A chunk that does not start where the session is: told where it is.
    let response = put(format!("bytes 20-{}/{total}", total - 1), &MESSAGE[20..])
        .await
        .unwrap();
    assert_eq!(response.status(), 308);
    assert_eq!(response.headers()["range"], "bytes=0-9");
    let response = put(format!("bytes 10-{}/{total}", total - 1), &MESSAGE[10..])
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first: Value = response.json().await.unwrap();
    // A status query after completion repeats the answer.
    let response = put(format!("bytes */{total}"), b"").await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), first);
    let stored = sandbox.mailbox().messages();
    assert_eq!(stored.len(), 1);
    assert_eq!(std::fs::read(&stored[0].path).unwrap(), MESSAGE.to_vec());
}
