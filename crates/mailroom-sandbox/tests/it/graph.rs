//! The Microsoft Graph look-alike: mailroom's Graph transport (the MIME `sendMail`, the
//! draft with upload sessions, resuming after a dropped chunk, throttling, missing
//! permissions, other mailboxes), and raw requests for Graph's error bodies, the JSON form
//! and the upload session's chunk rules.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use mailroom_graph::{GraphConfig, GraphTransport};
use mailroom_model::{
    CredentialSecret, Credentials, Envelope, MessageTransport, OutgoingMessage, Provider, Secret,
    TransportErrorKind,
};
use mailroom_sandbox::{ReceivedBy, Sandbox};
use serde_json::{Value, json};

use crate::support::*;

const GRAPH_SCOPE: &str = "https://graph.microsoft.com/Mail.Send https://graph.microsoft.com/Mail.ReadWrite offline_access openid profile email";
const SHARED: &str = "orders@contoso.example";

fn transport(sandbox: &Sandbox) -> GraphTransport {
    let mut config = GraphConfig::with_base_url(sandbox.endpoints().graph_api.clone());
    config.allow_plaintext_loopback = true;
    // The transport waits this long before asking a session where to resume.
    config.resume_backoff = Duration::from_millis(1);
    GraphTransport::new(config).expect("the transport builds")
}

fn bearer(mailbox: &str, token: &str) -> Credentials {
    Credentials {
        user: mailbox.to_owned(),
        secret: CredentialSecret::AccessToken(Secret::new(token)),
        version: 1,
    }
}

async fn token_with(sandbox: &Sandbox, scope: &str) -> String {
    tokens_with_scope(sandbox, Provider::Microsoft, MICROSOFT_USER, scope).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn graph_token(sandbox: &Sandbox) -> String {
    token_with(sandbox, GRAPH_SCOPE).await
}

const SMALL: &str = "From: sa@contoso.example\r\nTo: Buyer <buyer@example.com>\r\nCc: \"Doe, Jane\" <jane@example.com>\r\nBcc: audit@example.net\r\nSubject: Order 10234\r\nMessage-ID: <order-10234@contoso.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThank you.\r\n";

fn small_message() -> OutgoingMessage {
    OutgoingMessage {
        envelope: Envelope::new(address(MICROSOFT_USER), vec![address("buyer@example.com")])
            .unwrap(),
        bytes: Bytes::from_static(SMALL.as_bytes()),
        message_id: None,
    }
}

/// The decoded body of the part whose file name is `name`.
fn attachment_of(eml: &[u8], name: &str) -> Option<Vec<u8>> {
    fn find(part: &mailparse::ParsedMail<'_>, name: &str) -> Option<Vec<u8>> {
        let disposition = part.get_content_disposition();
        if disposition.params.get("filename").map(String::as_str) == Some(name) {
            return part.get_body_raw().ok();
        }
        part.subparts.iter().find_map(|sub| find(sub, name))
    }
    find(&mailparse::parse_mail(eml).ok()?, name)
}

#[tokio::test]
async fn mailroom_sends_a_small_message_with_one_mime_send_mail() {
    let sandbox = sandbox().await;
    let token = graph_token(&sandbox).await;
    let message = small_message();
    let delivery = transport(&sandbox)
        .send(&message, &bearer(MICROSOFT_USER, &token))
        .await
        .expect("the message is accepted");
    let stored = &sandbox.mailbox().messages()[0];
    assert_eq!(stored.received_by, ReceivedBy::GraphMime);
    assert!(stored.received_by.is_graph());
    assert_eq!(stored.authenticated_as, MICROSOFT_USER);
    assert_eq!(
        stored.recipients,
        ["buyer@example.com", "jane@example.com", "audit@example.net"]
    );
    assert!(stored.graph_request_id.is_some());
    assert_eq!(delivery.provider_message_id, stored.graph_request_id);
    assert_eq!(
        stored.message_id.as_deref(),
        Some("order-10234@contoso.example")
    );
    assert_eq!(std::fs::read(&stored.path).unwrap(), SMALL.as_bytes());
    assert!(stored.path.to_string_lossy().ends_with("-graph.eml"));
}

#[tokio::test]
async fn a_large_message_goes_through_a_draft_and_an_upload_session_intact() {
    let sandbox = sandbox().await;
    let token = graph_token(&sandbox).await;
    let attachment = binary(6 * 1024 * 1024);
    let message = message(MICROSOFT_USER, "buyer@example.com", attachment.clone());
    assert!(message.bytes.len() > 4_000_000);
    transport(&sandbox)
        .send(&message, &bearer(MICROSOFT_USER, &token))
        .await
        .expect("the message is accepted");
    let stored = &sandbox.mailbox().messages()[0];
    assert_eq!(stored.received_by, ReceivedBy::GraphDraft);
    assert_eq!(stored.authenticated_as, MICROSOFT_USER);
    assert_eq!(stored.recipients, ["buyer@example.com"]);
    let eml = std::fs::read(&stored.path).unwrap();
    assert_eq!(
        attachment_of(&eml, "SO-10234.pdf").expect("the attachment is in the .eml"),
        attachment
    );
    assert!(String::from_utf8_lossy(&eml).contains(".a line with a leading dot"));
    assert_eq!(sandbox.graph().draft_count(), 0, "the sent draft is gone");
    // 6 MiB in chunks of at most 4 MiB.
    assert_eq!(sandbox.graph().upload_chunk_count(), 2);
}

#[tokio::test]
async fn an_upload_resumes_after_a_dropped_chunk() {
    let sandbox = sandbox().await;
    let token = graph_token(&sandbox).await;
    let attachment = binary(9 * 1024 * 1024);
    let message = message(MICROSOFT_USER, "buyer@example.com", attachment.clone());
    sandbox.graph().drop_next_upload_chunk();
    transport(&sandbox)
        .send(&message, &bearer(MICROSOFT_USER, &token))
        .await
        .expect("the message is accepted after the resume");
    assert_eq!(sandbox.graph().dropped_chunk_count(), 1);
    // 9 MiB is three chunks kept; the dropped one is not counted.
    assert_eq!(sandbox.graph().upload_chunk_count(), 3);
    let stored = &sandbox.mailbox().messages()[0];
    let eml = std::fs::read(&stored.path).unwrap();
    assert_eq!(attachment_of(&eml, "SO-10234.pdf").unwrap(), attachment);
}

#[tokio::test]
async fn throttling_and_unavailability_are_transient_and_the_next_send_succeeds() {
    let sandbox = sandbox().await;
    let token = graph_token(&sandbox).await;
    let transport = transport(&sandbox);
    let credentials = bearer(MICROSOFT_USER, &token);

    sandbox.graph().throttle_next_call(7);
    let error = transport
        .send(&small_message(), &credentials)
        .await
        .expect_err("throttled");
    assert_eq!(error.kind(), TransportErrorKind::Transient, "{error}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    assert!(
        error.to_string().contains("ApplicationThrottled"),
        "{error}"
    );

    sandbox.graph().fail_next_call_unavailable();
    let error = transport
        .send(&small_message(), &credentials)
        .await
        .expect_err("unavailable");
    assert_eq!(error.kind(), TransportErrorKind::Transient, "{error}");
    assert!(sandbox.mailbox().messages().is_empty());

    transport
        .send(&small_message(), &credentials)
        .await
        .expect("accepted once the failures are used up");
    assert_eq!(sandbox.mailbox().messages().len(), 1);

    // The same through the admin API of a served sandbox.
    let admin = sandbox
        .endpoints()
        .http
        .join("_sandbox/graph/throttle-next-call")
        .unwrap();
    let response = http()
        .post(admin)
        .form(&[("retry_after", "3")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, body, headers) =
        raw_send_mail(&sandbox, "me", Some(&token), SMALL.as_bytes()).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "ApplicationThrottled");
    assert_eq!(headers["retry-after"], "3");
}

#[tokio::test]
async fn tokens_without_the_permission_or_of_another_kind_are_refused() {
    let sandbox = sandbox().await;
    let transport = transport(&sandbox);

    // The SMTP scope only: Graph denies access, and a new sign-in must grant Mail.Send.
    let smtp_only = token_with(&sandbox, MICROSOFT_SCOPE).await;
    let error = transport
        .send(&small_message(), &bearer(MICROSOFT_USER, &smtp_only))
        .await
        .expect_err("no Mail.Send");
    assert_eq!(error.kind(), TransportErrorKind::SignInRequired, "{error}");
    assert!(format!("{error:?}").contains("Mail.Send"), "{error:?}");

    // Mail.Send without Mail.ReadWrite: the small send works, the draft path does not.
    let send_only = token_with(&sandbox, "https://graph.microsoft.com/Mail.Send openid").await;
    transport
        .send(&small_message(), &bearer(MICROSOFT_USER, &send_only))
        .await
        .expect("Mail.Send is enough for sendMail");
    let large = message(MICROSOFT_USER, "buyer@example.com", binary(5 * 1024 * 1024));
    let error = transport
        .send(&large, &bearer(MICROSOFT_USER, &send_only))
        .await
        .expect_err("no Mail.ReadWrite");
    assert_eq!(error.kind(), TransportErrorKind::SignInRequired, "{error}");
    assert!(format!("{error:?}").contains("Mail.ReadWrite"), "{error:?}");

    // A Google token, an unknown one, an expired one: 401, refresh and retry.
    let google = tokens(&sandbox, Provider::Google, GOOGLE_USER).await;
    for token in [google["access_token"].as_str().unwrap(), "made-up"] {
        let error = transport
            .send(&small_message(), &bearer(MICROSOFT_USER, token))
            .await
            .expect_err("not a Microsoft token");
        assert_eq!(
            error.kind(),
            TransportErrorKind::AuthenticationRejected,
            "{error}"
        );
    }
    sandbox
        .authority()
        .set_access_token_lifetime(Duration::ZERO);
    let expired = graph_token(&sandbox).await;
    let (status, body, _) = raw_send_mail(&sandbox, "me", Some(&expired), SMALL.as_bytes()).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert_eq!(
        body["error"]["message"],
        "Lifetime validation failed, the token is expired."
    );
    assert_eq!(sandbox.mailbox().messages().len(), 1);
}

#[tokio::test]
async fn another_mailbox_needs_send_as_rights() {
    let sandbox = sandbox().await;
    let token = graph_token(&sandbox).await;
    let (status, body, _) = raw_send_mail(&sandbox, SHARED, Some(&token), SMALL.as_bytes()).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "ErrorAccessDenied");
    assert_eq!(
        body["error"]["message"],
        "Access is denied. Check credentials and try again."
    );
    let error = transport(&sandbox)
        .send(&small_message(), &bearer(SHARED, &token))
        .await
        .expect_err("no rights on the shared mailbox");
    assert_eq!(error.kind(), TransportErrorKind::SignInRequired, "{error}");

    sandbox.authority().grant_send_as(SHARED, MICROSOFT_USER);
    // Mail.Send is for the user's own mailbox only (user-sendmail, "Permissions"): with
    // the rights, another mailbox still needs Mail.Send.Shared.
    let (status, body, _) = raw_send_mail(&sandbox, SHARED, Some(&token), SMALL.as_bytes()).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (403, json!("ErrorAccessDenied"))
    );
    let shared = token_with(
        &sandbox,
        "https://graph.microsoft.com/Mail.Send.Shared offline_access openid profile email",
    )
    .await;
    transport(&sandbox)
        .send(&small_message(), &bearer(SHARED, &shared))
        .await
        .expect("accepted once the user may send as the mailbox, with Mail.Send.Shared");
    let stored = &sandbox.mailbox().messages()[0];
    assert_eq!(stored.authenticated_as, SHARED);

    // `/users/{own address}` is the same as `/me`; Mail.Send.Shared covers it too.
    for token in [&token, &shared] {
        let (status, _, _) =
            raw_send_mail(&sandbox, MICROSOFT_USER, Some(token), SMALL.as_bytes()).await;
        assert_eq!(status, 202);
    }
}

/// The draft path of another mailbox needs `Mail.ReadWrite.Shared`; `Mail.ReadWrite` is
/// the user's own mailbox's (permissions-reference: "Mail.ReadWrite.Shared ... mail the
/// user has permissions to, including their own and shared mail").
#[tokio::test]
async fn another_mailboxs_drafts_need_read_write_shared() {
    let sandbox = sandbox().await;
    sandbox.authority().grant_send_as(SHARED, MICROSOFT_USER);
    let large = message(SHARED, "buyer@example.com", binary(5 * 1024 * 1024));
    let own_permissions = token_with(
        &sandbox,
        "https://graph.microsoft.com/Mail.Send.Shared https://graph.microsoft.com/Mail.ReadWrite openid",
    )
    .await;
    let error = transport(&sandbox)
        .send(&large, &bearer(SHARED, &own_permissions))
        .await
        .expect_err("Mail.ReadWrite is the user's own mailbox's");
    assert_eq!(error.kind(), TransportErrorKind::SignInRequired, "{error}");
    assert!(sandbox.mailbox().messages().is_empty());
    let shared_permissions = token_with(
        &sandbox,
        "https://graph.microsoft.com/Mail.Send.Shared https://graph.microsoft.com/Mail.ReadWrite.Shared openid",
    )
    .await;
    transport(&sandbox)
        .send(&large, &bearer(SHARED, &shared_permissions))
        .await
        .expect("the draft path with the shared permissions");
    assert_eq!(sandbox.mailbox().messages()[0].authenticated_as, SHARED);
}

/// A raw MIME `sendMail` to `/me` (`user == "me"`) or `/users/{user}`: status, JSON body
/// (`Null` when empty) and headers.
async fn raw_send_mail(
    sandbox: &Sandbox,
    user: &str,
    token: Option<&str>,
    mime: &[u8],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let body = base64::engine::general_purpose::STANDARD.encode(mime);
    raw(
        sandbox,
        &path_of(user, "sendMail"),
        token,
        "text/plain",
        body.into_bytes(),
    )
    .await
}

fn path_of(user: &str, rest: &str) -> String {
    if user == "me" {
        format!("v1.0/me/{rest}")
    } else {
        format!("v1.0/users/{user}/{rest}")
    }
}

async fn raw(
    sandbox: &Sandbox,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let url = sandbox.endpoints().graph_api.join(path).unwrap();
    let mut request = http()
        .post(url)
        .header("content-type", content_type)
        .header("client-request-id", "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, body, headers)
}

#[tokio::test]
async fn errors_have_graphs_body_and_every_answer_its_request_id() {
    let sandbox = sandbox().await;
    let (status, body, headers) = raw_send_mail(&sandbox, "me", None, SMALL.as_bytes()).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert_eq!(body["error"]["message"], "Access token is empty.");
    let inner = &body["error"]["innerError"];
    assert_eq!(
        inner["client-request-id"],
        "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
    );
    assert_eq!(
        inner["request-id"].as_str(),
        headers["request-id"].to_str().ok()
    );
    assert_eq!(inner["date"].as_str().map(str::len), Some(19), "{inner}");
    assert_eq!(
        headers["client-request-id"],
        "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
    );
    assert!(headers.contains_key("www-authenticate"));

    let token = graph_token(&sandbox).await;
    let (status, body, headers) =
        raw_send_mail(&sandbox, "me", Some(&token), SMALL.as_bytes()).await;
    assert_eq!(status, 202);
    assert_eq!(body, Value::Null);
    assert!(headers.contains_key("request-id"));

    // No recipients; not base64; too large a body; an unsupported content type.
    let (status, body, _) = raw_send_mail(
        &sandbox,
        "me",
        Some(&token),
        b"Subject: nobody\r\n\r\nbody\r\n",
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("ErrorInvalidRecipients"))
    );
    let (status, body, _) = raw(
        &sandbox,
        "v1.0/me/sendMail",
        Some(&token),
        "text/plain",
        b"not base64!".to_vec(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("ErrorMimeContentInvalidBase64String"))
    );
    let (status, body, _) = raw(
        &sandbox,
        "v1.0/me/sendMail",
        Some(&token),
        "text/plain",
        vec![b'A'; 4_000_004],
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("RequestBodyTooLarge"))
    );
    let (status, body, _) = raw(
        &sandbox,
        "v1.0/me/sendMail",
        Some(&token),
        "message/rfc822",
        SMALL.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(status, 415, "{body}");
    assert_eq!(sandbox.mailbox().messages().len(), 1);
}

#[tokio::test]
async fn the_json_form_of_send_mail_builds_the_message() {
    let sandbox = sandbox().await;
    let token = graph_token(&sandbox).await;
    let request = json!({
        "message": {
            "subject": "Lunch \u{e0} midi",
            "body": { "contentType": "Text", "content": "See you.\r\n" },
            "toRecipients": [{ "emailAddress": { "address": "buyer@example.com", "name": "Buyer" } }],
            "ccRecipients": [{ "emailAddress": { "address": "jane@example.com" } }],
            "bccRecipients": [{ "emailAddress": { "address": "audit@example.net" } }],
            "attachments": [{
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": "menu.bin",
                "contentType": "application/octet-stream",
                "contentBytes": base64::engine::general_purpose::STANDARD.encode(binary(10_000)),
            }],
        },
        "saveToSentItems": false,
    });
    let (status, body, _) = raw(
        &sandbox,
        "v1.0/me/sendMail",
        Some(&token),
        "application/json",
        serde_json::to_vec(&request).unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let stored = &sandbox.mailbox().messages()[0];
    assert_eq!(stored.received_by, ReceivedBy::GraphJson);
    assert_eq!(
        stored.recipients,
        ["buyer@example.com", "jane@example.com", "audit@example.net"]
    );
    let eml = std::fs::read(&stored.path).unwrap();
    let parsed = mailparse::parse_mail(&eml).unwrap();
    use mailparse::MailHeaderMap as _;
    assert_eq!(
        parsed.headers.get_first_value("Subject").as_deref(),
        Some("Lunch \u{e0} midi")
    );
    assert_eq!(
        parsed.headers.get_first_value("From").as_deref(),
        Some(MICROSOFT_USER)
    );
    assert_eq!(parsed.headers.get_first_value("Bcc"), None);
    assert_eq!(parsed.subparts[0].get_body().unwrap(), "See you.\r\n");
    assert_eq!(attachment_of(&eml, "menu.bin").unwrap(), binary(10_000));

    let mut bad = request.clone();
    bad["message"]["toRecipients"][0]["emailAddress"]["address"] = json!("not an address");
    let (status, body, _) = raw(
        &sandbox,
        "v1.0/me/sendMail",
        Some(&token),
        "application/json",
        serde_json::to_vec(&bad).unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("ErrorInvalidRecipients"))
    );
}

async fn upload(
    url: &str,
    range: Option<&str>,
    body: Vec<u8>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut request = http()
        .put(url)
        .header("content-type", "application/octet-stream")
        .body(body);
    if let Some(range) = range {
        request = request.header("content-range", range);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn upload_sessions_enforce_the_chunk_rules() {
    let sandbox = sandbox().await;
    let token = graph_token(&sandbox).await;
    let draft = "To: buyer@example.com\r\nSubject: Big\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n";
    let (status, body, _) = raw(
        &sandbox,
        "v1.0/me/messages",
        Some(&token),
        "text/plain",
        base64::engine::general_purpose::STANDARD
            .encode(draft)
            .into_bytes(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();

    // Under 3 MiB is refused; then a 5 MiB session.
    let create = |size: u64| {
        serde_json::to_vec(&json!({ "AttachmentItem": {
            "attachmentType": "file", "name": "big.bin", "size": size,
            "contentType": "application/octet-stream",
        }}))
        .unwrap()
    };
    let path = format!("v1.0/me/messages/{id}/attachments/createUploadSession");
    let (status, body, _) = raw(
        &sandbox,
        &path,
        Some(&token),
        "application/json",
        create(1000),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (
            400,
            Some("ErrorAttachmentSizeShouldNotBeLessThanMinimumSize")
        )
    );
    let total = 5 * 1024 * 1024;
    let data = binary(total);
    let (status, session, _) = raw(
        &sandbox,
        &path,
        Some(&token),
        "application/json",
        create(total as u64),
    )
    .await;
    assert_eq!(status, 201, "{session}");
    assert_eq!(session["nextExpectedRanges"], json!(["0-"]));
    let url = session["uploadUrl"].as_str().unwrap().to_owned();
    assert!(
        url.contains("/outlook-upload/") && url.contains("authtoken="),
        "{url}"
    );
    let mib = 1024 * 1024;

    // The upload URL takes no bearer token, and only its own authtoken.
    let (status, body) = upload(
        &url,
        Some(&format!("bytes 0-9/{total}")),
        data[..10].to_vec(),
        Some(&token),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("InvalidAuthenticationToken"))
    );
    let forged = format!("{}x", url);
    let (status, _) = upload(
        &forged,
        Some(&format!("bytes 0-9/{total}")),
        data[..10].to_vec(),
        None,
    )
    .await;
    assert_eq!(status, 401);

    // No Content-Range, a wrong total, a range that is not the body's length: 400.
    for (range, body) in [
        (None, data[..10].to_vec()),
        (
            Some(format!("bytes 0-9/{}", total + 1)),
            data[..10].to_vec(),
        ),
        (Some(format!("bytes 0-19/{total}")), data[..10].to_vec()),
        (
            Some(format!("bytes 0-{}/{total}", u64::MAX)),
            data[..10].to_vec(),
        ),
    ] {
        let (status, answer) = upload(&url, range.as_deref(), body, None).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some("InvalidContentRange"))
        );
    }
    // More than 4 MiB in one chunk: 413.
    let (status, _) = upload(
        &url,
        Some(&format!("bytes 0-{}/{total}", 4 * mib)),
        data[..4 * mib + 1].to_vec(),
        None,
    )
    .await;
    assert_eq!(status, 413);
    // Not from the start: 416.
    let (status, answer) = upload(
        &url,
        Some(&format!("bytes 10-19/{total}")),
        data[10..20].to_vec(),
        None,
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (416, Some("InvalidRange"))
    );

    // In order: 200 with the next range, a GET says the same, a repeat is 416, the last 201.
    let (status, answer) = upload(
        &url,
        Some(&format!("bytes 0-{}/{total}", 3 * mib - 1)),
        data[..3 * mib].to_vec(),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["nextExpectedRanges"], json!([(3 * mib).to_string()]));
    assert_eq!(answer["ExpirationDateTime"], session["expirationDateTime"]);
    let asked = http().get(&url).send().await.unwrap();
    assert_eq!(asked.status(), 200);
    assert_eq!(
        asked.json::<Value>().await.unwrap()["nextExpectedRanges"],
        json!([(3 * mib).to_string()])
    );
    let (status, _) = upload(
        &url,
        Some(&format!("bytes 0-{}/{total}", 3 * mib - 1)),
        data[..3 * mib].to_vec(),
        None,
    )
    .await;
    assert_eq!(status, 416);
    let (status, _) = upload(
        &url,
        Some(&format!("bytes {}-{}/{total}", 3 * mib, total - 1)),
        data[3 * mib..].to_vec(),
        None,
    )
    .await;
    assert_eq!(status, 201);

    // A small attachment too, then send.
    let (status, _, _) = raw(
        &sandbox,
        &format!("v1.0/me/messages/{id}/attachments"),
        Some(&token),
        "application/json",
        serde_json::to_vec(&json!({
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": "small.txt", "contentType": "text/plain",
            "contentBytes": base64::engine::general_purpose::STANDARD.encode("hello"),
        }))
        .unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _, _) = raw(
        &sandbox,
        &format!("v1.0/me/messages/{id}/send"),
        Some(&token),
        "application/json",
        Vec::new(),
    )
    .await;
    assert_eq!(status, 202);
    let stored = &sandbox.mailbox().messages()[0];
    assert_eq!(stored.received_by, ReceivedBy::GraphDraft);
    let eml = std::fs::read(&stored.path).unwrap();
    assert_eq!(attachment_of(&eml, "big.bin").unwrap(), data);
    assert_eq!(attachment_of(&eml, "small.txt").unwrap(), b"hello");
    assert!(String::from_utf8_lossy(&eml).contains("See attached."));

    // The draft is gone: sending or deleting it again is 404.
    let (status, body, _) = raw(
        &sandbox,
        &format!("v1.0/me/messages/{id}/send"),
        Some(&token),
        "application/json",
        Vec::new(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("ErrorItemNotFound"))
    );
}

#[tokio::test]
async fn a_draft_can_be_deleted() {
    let sandbox = sandbox().await;
    let token = graph_token(&sandbox).await;
    let (status, body, _) = raw(
        &sandbox,
        "v1.0/me/messages",
        Some(&token),
        "text/plain",
        base64::engine::general_purpose::STANDARD
            .encode(SMALL)
            .into_bytes(),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(sandbox.graph().draft_count(), 1);
    let url = sandbox
        .endpoints()
        .graph_api
        .join(&format!(
            "v1.0/me/messages/{}",
            body["id"].as_str().unwrap()
        ))
        .unwrap();
    let response = http()
        .delete(url.clone())
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(sandbox.graph().draft_count(), 0);
    let response = http().delete(url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert!(sandbox.mailbox().messages().is_empty());
}

#[tokio::test]
async fn an_upload_session_can_be_cancelled() {
    let sandbox = sandbox().await;
    let token = graph_token(&sandbox).await;
    let (_, draft, _) = raw(
        &sandbox,
        "v1.0/me/messages",
        Some(&token),
        "text/plain",
        base64::engine::general_purpose::STANDARD
            .encode(SMALL)
            .into_bytes(),
    )
    .await;
    let (status, session, _) = raw(
        &sandbox,
        &format!(
            "v1.0/me/messages/{}/attachments/createUploadSession",
            draft["id"].as_str().unwrap()
        ),
        Some(&token),
        "application/json",
        serde_json::to_vec(&json!({ "AttachmentItem": {
            "attachmentType": "file", "name": "big.bin", "size": 4_000_000,
        }}))
        .unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    let url = session["uploadUrl"].as_str().unwrap();
    let response = http().delete(url).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert!(response.headers().contains_key("request-id"));
    let (status, body) = upload(url, Some("bytes 0-9/4000000"), vec![0; 10], None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("ErrorItemNotFound"))
    );
}

#[tokio::test]
async fn a_message_over_the_mailbox_limit_is_refused_as_too_large() {
    let sandbox = sandbox_with(|config| config.max_message_size = 100_000).await;
    let token = graph_token(&sandbox).await;
    let message = message(MICROSOFT_USER, "buyer@example.com", binary(150_000));
    let error = transport(&sandbox)
        .send(&message, &bearer(MICROSOFT_USER, &token))
        .await
        .expect_err("over the sandbox's limit");
    assert_eq!(error.kind(), TransportErrorKind::MessageTooLarge, "{error}");
    assert!(
        format!("{error:?}").contains("ErrorMessageSizeExceeded"),
        "{error:?}"
    );
    assert!(sandbox.mailbox().messages().is_empty());
}

#[tokio::test]
async fn an_app_only_token_may_use_any_mailbox_but_not_me() {
    let sandbox = sandbox().await;
    let (status, body) = token_call(
        &sandbox,
        Provider::Microsoft,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", MICROSOFT_CLIENT),
            ("client_secret", "a-secret"),
            ("scope", "https://graph.microsoft.com/.default"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let (status, body, _) = raw_send_mail(&sandbox, "me", Some(token), SMALL.as_bytes()).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "/me request is only valid with delegated authentication flow."
    );
    let (status, _, _) = raw_send_mail(&sandbox, SHARED, Some(token), SMALL.as_bytes()).await;
    assert_eq!(status, 202);
    assert_eq!(sandbox.mailbox().messages()[0].authenticated_as, SHARED);

    // An app-only token for Exchange Online (SMTP), not Graph: denied.
    let (_, body) = token_call(
        &sandbox,
        Provider::Microsoft,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", MICROSOFT_CLIENT),
            ("client_secret", "a-secret"),
            ("scope", "https://outlook.office365.com/.default"),
        ],
    )
    .await;
    let (status, body, _) = raw_send_mail(
        &sandbox,
        SHARED,
        body["access_token"].as_str(),
        SMALL.as_bytes(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("ErrorAccessDenied"))
    );
}

#[tokio::test]
async fn a_json_draft_keeps_its_bcc_recipients_until_it_is_sent() {
    let sandbox = sandbox().await;
    let token = graph_token(&sandbox).await;
    let draft = json!({
        "subject": "Draft",
        "body": { "contentType": "HTML", "content": "<p>Hi</p>" },
        "toRecipients": [{ "emailAddress": { "address": "buyer@example.com" } }],
        "bccRecipients": [{ "emailAddress": { "address": "audit@example.net" } }],
    });
    let (status, body, _) = raw(
        &sandbox,
        "v1.0/me/messages",
        Some(&token),
        "application/json",
        serde_json::to_vec(&draft).unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["isDraft"], true);
    let (status, _, _) = raw(
        &sandbox,
        &format!("v1.0/me/messages/{}/send", body["id"].as_str().unwrap()),
        Some(&token),
        "application/json",
        Vec::new(),
    )
    .await;
    assert_eq!(status, 202);
    let stored = &sandbox.mailbox().messages()[0];
    assert_eq!(
        stored.recipients,
        ["buyer@example.com", "audit@example.net"]
    );
    let eml = std::fs::read(&stored.path).unwrap();
    let parsed = mailparse::parse_mail(&eml).unwrap();
    assert_eq!(parsed.ctype.mimetype, "text/html");
    assert_eq!(parsed.get_body().unwrap(), "<p>Hi</p>");

    // A draft without recipients may be created, not sent.
    let (status, body, _) = raw(
        &sandbox,
        "v1.0/me/messages",
        Some(&token),
        "application/json",
        br#"{"subject":"nobody yet"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 201);
    let (status, body, _) = raw(
        &sandbox,
        &format!("v1.0/me/messages/{}/send", body["id"].as_str().unwrap()),
        Some(&token),
        "application/json",
        Vec::new(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("ErrorInvalidRecipients"))
    );
    assert_eq!(sandbox.graph().draft_count(), 1);
}
