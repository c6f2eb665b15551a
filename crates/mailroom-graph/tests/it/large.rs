//! Messages over the 4 MB request limit: a draft from the MIME message without its large
//! attachments (`api-reference/v1.0/api/user-post-messages.md`, MIME form), each large
//! attachment through an upload session (`api-reference/v1.0/api/attachment-createuploadsession.md`,
//! `concepts/outlook-large-attachments.md`), then `send` (`api-reference/v1.0/api/message-send.md`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailroom_graph::{GraphConfig, MAX_ATTACHMENT_SIZE, MAX_UPLOAD_CHUNK};
use mailroom_model::{MessageTransport, Remedy, TransportErrorKind};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::{
    TOKEN, assert_no_token, attachment_bytes, credentials, decode_base64, message_with_attachments,
    outgoing, test_config, transport,
};

const DRAFT_ID: &str = "AAMkADI5MAAIT3drCAAA=";
const MESSAGES: &str = "/v1.0/users/sales@contoso.com/messages";

/// One recorded `PUT`: its `Content-Range`, its body, and whether it had an `Authorization`.
type Put = (String, Vec<u8>, bool);

/// The upload URL's host: another server (another origin), as `outlook.office.com` is.
/// Answers each `PUT` from its `Content-Range` as the documentation shows, and records it.
#[derive(Clone, Default)]
struct UploadHost {
    puts: Arc<Mutex<Vec<Put>>>,
    /// The start offset of a `PUT` whose answer is held back once (a dropped answer).
    stall_at: Option<u64>,
    stalled: Arc<Mutex<bool>>,
    /// The bytes the session holds, for `GET` (resume).
    held: Arc<Mutex<u64>>,
    /// `GET` of the upload URL is not supported (405).
    no_get: bool,
}

impl Respond for UploadHost {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if request.method.as_str() == "GET" {
            if self.no_get {
                return ResponseTemplate::new(405);
            }
            let held = *self.held.lock().expect("lock");
            return ResponseTemplate::new(200).set_body_json(json!({
                "expirationDateTime": "2026-12-02T01:09:30.7671707Z",
                "nextExpectedRanges": [format!("{held}-")],
            }));
        }
        let range = request
            .headers
            .get("content-range")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let authorized = request.headers.contains_key("authorization");
        self.puts
            .lock()
            .expect("lock")
            .push((range.clone(), request.body.clone(), authorized));
        let (span, total) = range
            .trim_start_matches("bytes ")
            .split_once('/')
            .expect("Content-Range: bytes first-last/total");
        let (first, last) = span.split_once('-').expect("first-last");
        let (first, last, total): (u64, u64, u64) = (
            first.parse().expect("first"),
            last.parse().expect("last"),
            total.parse().expect("total"),
        );
        assert_eq!(
            request.body.len() as u64,
            last - first + 1,
            "body length matches the range"
        );
        if self.stall_at == Some(first) {
            let mut stalled = self.stalled.lock().expect("lock");
            if !*stalled {
                *stalled = true;
                // The session never got these bytes; the answer does not come in time.
                return ResponseTemplate::new(200).set_delay(Duration::from_secs(10));
            }
        }
        *self.held.lock().expect("lock") = last + 1;
        if last + 1 == total {
            ResponseTemplate::new(201).insert_header(
                "Location",
                "https://outlook.office.com/api/v2.0/Users('x')/Messages('y')/Attachments('z')",
            )
        } else {
            ResponseTemplate::new(200).set_body_json(json!({
                "@odata.context": "https://outlook.office.com/api/v2.0/$metadata#Users('x')/Messages('y')/AttachmentSessions/$entity",
                "ExpirationDateTime": "2026-12-02T01:09:30.7671707Z",
                "nextExpectedRanges": [format!("{}", last + 1)],
            }))
        }
    }
}

/// Mounts Graph's draft, createUploadSession and send answers on `graph`, the upload
/// session on `upload`.
async fn mount(graph: &MockServer, upload: &MockServer, host: UploadHost) {
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('sales%40contoso.com')/messages/$entity",
            "id": DRAFT_ID,
            "isDraft": true,
        })))
        .expect(1)
        .mount(graph)
        .await;
    let upload_url = format!(
        "{}/api/v2.0/Users('a8e8e219')/Messages('{DRAFT_ID}')/AttachmentSessions('AAMkADI5MAAIT3k0tAAA=')?authtoken=eyJhbGciOiJSUzI1NiIsImtpZCI6IktmYUNIUlN6bllHMmNI",
        upload.uri()
    );
    Mock::given(method("POST"))
        .and(path(format!("{MESSAGES}/{DRAFT_ID}/attachments/createUploadSession")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.uploadSession",
            "uploadUrl": upload_url,
            "expirationDateTime": "2026-12-02T01:09:30.7671707Z",
            "nextExpectedRanges": ["0-"],
        })))
        .mount(graph)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{MESSAGES}/{DRAFT_ID}/attachments")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "small"})))
        .mount(graph)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{MESSAGES}/{DRAFT_ID}/send")))
        .respond_with(ResponseTemplate::new(202).insert_header("request-id", "send-request-1"))
        .expect(1)
        .mount(graph)
        .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(host)
        .mount(upload)
        .await;
}

fn ranges(host: &UploadHost) -> Vec<String> {
    host.puts
        .lock()
        .expect("lock")
        .iter()
        .map(|(range, _, _)| range.clone())
        .collect()
}

#[tokio::test]
async fn a_large_message_becomes_a_draft_an_upload_session_in_4_mib_chunks_and_a_send() {
    let graph = MockServer::start().await;
    let upload = MockServer::start().await;
    let host = UploadHost::default();
    mount(&graph, &upload, host.clone()).await;
    let big = attachment_bytes(9 * 1024 * 1024 + 123, 1);
    let small = attachment_bytes(200_000, 2);
    let bytes = message_with_attachments(&[("report.pdf", &big), ("summary.pdf", &small)]);
    assert!(bytes.len() > 4 * 1024 * 1024);

    let delivery = transport(test_config(&graph.uri()))
        .send(&outgoing(bytes.clone()), &credentials())
        .await
        .expect("sent");
    assert_eq!(
        delivery.provider_message_id.as_deref(),
        Some("send-request-1")
    );

    // The chunk sequence: in order, each at most 4 MiB, the documented Content-Range form.
    let total = big.len() as u64;
    let chunk = MAX_UPLOAD_CHUNK;
    assert_eq!(
        ranges(&host),
        [
            format!("bytes 0-{}/{total}", chunk - 1),
            format!("bytes {chunk}-{}/{total}", 2 * chunk - 1),
            format!("bytes {}-{}/{total}", 2 * chunk, total - 1),
        ]
    );
    let puts = host.puts.lock().expect("lock").clone();
    assert!(
        puts.iter().all(|(_, _, authorized)| !authorized),
        "no Authorization header goes to the pre-authenticated upload URL"
    );
    let uploaded: Vec<u8> = puts.iter().flat_map(|(_, body, _)| body.clone()).collect();
    assert!(
        uploaded == big,
        "the uploaded bytes are the attachment's decoded bytes"
    );

    let requests = graph.received_requests().await.expect("recorded");
    let steps: Vec<String> = requests
        .iter()
        .map(|request| format!("{} {}", request.method, request.url.path()))
        .collect();
    assert_eq!(
        steps,
        [
            format!("POST {MESSAGES}"),
            format!("POST {MESSAGES}/{DRAFT_ID}/attachments/createUploadSession"),
            format!("POST {MESSAGES}/{DRAFT_ID}/send"),
        ]
    );
    // The draft: the MIME message without the large attachment, small one and Bcc kept.
    let draft = &requests[0];
    assert_eq!(
        draft
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/plain")
    );
    assert_eq!(
        decode_base64(&draft.body),
        message_with_attachments(&[("summary.pdf", &small)])
    );
    for request in &requests {
        assert_eq!(
            request
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert!(request.headers.contains_key("client-request-id"));
    }
    let session: Value = serde_json::from_slice(&requests[1].body).expect("JSON");
    assert_eq!(
        session,
        json!({"AttachmentItem": {
            "attachmentType": "file",
            "name": "report.pdf",
            "size": big.len(),
            "contentType": "application/pdf",
            "isInline": false,
        }})
    );
}

#[tokio::test]
async fn when_the_draft_alone_is_too_large_smaller_attachments_are_posted_separately() {
    let graph = MockServer::start().await;
    let upload = MockServer::start().await;
    let host = UploadHost::default();
    mount(&graph, &upload, host.clone()).await;
    // Two 2 MB attachments: neither needs a session, but the message is over 4 MB in base64;
    // without one of them (posted as a fileAttachment) the draft fits.
    let a = attachment_bytes(2_000_000, 3);
    let b = attachment_bytes(2_000_000, 4);
    let bytes = message_with_attachments(&[("a.pdf", &a), ("b.pdf", &b)]);
    transport(test_config(&graph.uri()))
        .send(&outgoing(bytes), &credentials())
        .await
        .expect("sent");
    assert!(
        ranges(&host).is_empty(),
        "no upload session for attachments under 3 MB"
    );
    let requests = graph.received_requests().await.expect("recorded");
    let posted: Vec<&wiremock::Request> = requests
        .iter()
        .filter(|request| request.url.path().ends_with("/attachments"))
        .collect();
    assert_eq!(posted.len(), 1);
    let attachment: Value = serde_json::from_slice(&posted[0].body).expect("JSON");
    assert_eq!(attachment["@odata.type"], "#microsoft.graph.fileAttachment");
    let name = attachment["name"].as_str().expect("a name");
    let expected = if name == "a.pdf" { &a } else { &b };
    assert!(
        decode_base64(
            attachment["contentBytes"]
                .as_str()
                .expect("bytes")
                .as_bytes()
        ) == *expected
    );
}

#[tokio::test]
async fn an_upload_resumes_from_next_expected_ranges_after_a_dropped_answer() {
    let graph = MockServer::start().await;
    let upload = MockServer::start().await;
    let host = UploadHost {
        stall_at: Some(MAX_UPLOAD_CHUNK),
        ..UploadHost::default()
    };
    mount(&graph, &upload, host.clone()).await;
    let big = attachment_bytes(9 * 1024 * 1024, 5);
    let bytes = message_with_attachments(&[("report.pdf", &big)]);
    let config = GraphConfig {
        timeout: Duration::from_secs(1),
        ..test_config(&graph.uri())
    };
    transport(config)
        .send(&outgoing(bytes), &credentials())
        .await
        .expect("sent after resuming");
    let total = big.len() as u64;
    let chunk = MAX_UPLOAD_CHUNK;
    assert_eq!(
        ranges(&host),
        [
            format!("bytes 0-{}/{total}", chunk - 1),
            format!("bytes {chunk}-{}/{total}", 2 * chunk - 1),
            // Resumed where the session's nextExpectedRanges said (GET of the upload URL).
            format!("bytes {chunk}-{}/{total}", 2 * chunk - 1),
            format!("bytes {}-{}/{total}", 2 * chunk, total - 1),
        ]
    );
    let gets = upload
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .filter(|request| request.method.as_str() == "GET")
        .count();
    assert_eq!(gets, 1, "the session was asked once where to resume");
    let puts = host.puts.lock().expect("lock").clone();
    let uploaded: Vec<u8> = [&puts[0], &puts[2], &puts[3]]
        .iter()
        .flat_map(|(_, body, _)| body.clone())
        .collect();
    assert!(uploaded == big);
}

#[tokio::test]
async fn a_token_without_mail_readwrite_is_told_to_grant_it() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "error": {
                "code": "ErrorAccessDenied",
                "message": "Access is denied. Check credentials and try again.",
                "innerError": {"date": "2026-12-01T23:00:00", "request-id": "r-403", "client-request-id": "c-403"}
            }
        })))
        .expect(1)
        .mount(&graph)
        .await;
    let big = attachment_bytes(5 * 1024 * 1024, 6);
    let error = transport(test_config(&graph.uri()))
        .send(
            &outgoing(message_with_attachments(&[("big.pdf", &big)])),
            &credentials(),
        )
        .await
        .expect_err("refused");
    assert_eq!(error.kind(), TransportErrorKind::SignInRequired);
    assert!(error.to_string().contains("Mail.ReadWrite"), "{error}");
    assert_eq!(
        error.remedy(),
        Some(&Remedy::GrantScope {
            account: None,
            scope: "https://graph.microsoft.com/Mail.ReadWrite".to_owned()
        })
    );
    assert!(
        error
            .server_reply()
            .is_some_and(|reply| reply.contains("r-403"))
    );
    assert_no_token(&error);
}

#[tokio::test]
async fn a_failed_upload_deletes_the_unsent_draft() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": DRAFT_ID})))
        .mount(&graph)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{MESSAGES}/{DRAFT_ID}/attachments/createUploadSession")))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"code": "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize", "message": "Attachment size must be greater than the minimum size."}
        })))
        .mount(&graph)
        .await;
    Mock::given(method("DELETE"))
        .and(path(format!("{MESSAGES}/{DRAFT_ID}")))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&graph)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{MESSAGES}/{DRAFT_ID}/send")))
        .respond_with(ResponseTemplate::new(202))
        .expect(0)
        .mount(&graph)
        .await;
    let big = attachment_bytes(5 * 1024 * 1024, 7);
    let error = transport(test_config(&graph.uri()))
        .send(
            &outgoing(message_with_attachments(&[("big.pdf", &big)])),
            &credentials(),
        )
        .await
        .expect_err("refused");
    assert_eq!(error.kind(), TransportErrorKind::Permanent);
    assert!(error.to_string().contains("minimum size"), "{error}");
}

/// A message with one attachment of `size` zero bytes, written as its base64 text directly
/// (76-character lines) so a large one is cheap to build.
fn message_with_zeros(size: u64) -> Vec<u8> {
    let mut encoded = "A".repeat(usize::try_from(size / 3 * 4).expect("fits"));
    encoded.push_str(match size % 3 {
        0 => "",
        1 => "AA==",
        _ => "AAA=",
    });
    let mut text = String::from(
        "From: sales@contoso.com\r\nTo: customer@fabrikam.com\r\nSubject: Scans\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nThe scans.\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"scans.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    );
    text.reserve(encoded.len() + encoded.len() / 38 + 16);
    for line in encoded.as_bytes().chunks(76) {
        text.push_str(std::str::from_utf8(line).expect("ascii"));
        text.push_str("\r\n");
    }
    text.push_str("--b--\r\n");
    text.into_bytes()
}

/// Graph takes attachments of up to 150 MB through an upload session
/// (`attachment-createuploadsession`): one of exactly 150 MiB goes on to the draft, one a
/// byte larger is refused before any request.
#[tokio::test]
async fn an_attachment_of_exactly_150_mib_is_sent_and_a_byte_more_is_refused() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "error": {"code": "ErrorAccessDenied", "message": "Access is denied. Check credentials and try again."}
        })))
        .expect(1)
        .mount(&graph)
        .await;
    let transport = transport(GraphConfig {
        max_message_size: 2 * MAX_ATTACHMENT_SIZE,
        ..test_config(&graph.uri())
    });
    let error = transport
        .send(
            &outgoing(message_with_zeros(MAX_ATTACHMENT_SIZE)),
            &credentials(),
        )
        .await
        .expect_err("the draft is refused");
    assert_eq!(error.kind(), TransportErrorKind::SignInRequired, "{error}");
    let error = transport
        .send(
            &outgoing(message_with_zeros(MAX_ATTACHMENT_SIZE + 1)),
            &credentials(),
        )
        .await
        .expect_err("over 150 MB");
    assert_eq!(error.kind(), TransportErrorKind::MessageTooLarge, "{error}");
    assert!(
        error.message().starts_with(&format!(
            "the attachment `scans.bin` is {} bytes, more than Microsoft Graph's limit",
            MAX_ATTACHMENT_SIZE + 1
        )),
        "{error}"
    );
}

/// An upload session that answers each `PUT`, and each `GET`, with the next of its
/// scripted answers (the last one again once they run out), and records what it was sent.
#[derive(Clone)]
struct Scripted {
    puts: Vec<ResponseTemplate>,
    gets: Vec<ResponseTemplate>,
    seen: Arc<Mutex<Vec<(String, std::time::Instant)>>>,
}

impl Scripted {
    fn new(puts: Vec<ResponseTemplate>, gets: Vec<ResponseTemplate>) -> Self {
        Self {
            puts,
            gets,
            seen: Arc::default(),
        }
    }

    fn seen(&self) -> Vec<String> {
        let seen = self.seen.lock().expect("lock");
        seen.iter().map(|(what, _)| what.clone()).collect()
    }

    /// How long after the request before it each request arrived.
    fn gaps(&self) -> Vec<Duration> {
        let seen = self.seen.lock().expect("lock");
        seen.windows(2).map(|pair| pair[1].1 - pair[0].1).collect()
    }
}

impl Respond for Scripted {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut seen = self.seen.lock().expect("lock");
        let (answers, what) = if request.method.as_str() == "PUT" {
            let range = request
                .headers
                .get("content-range")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default();
            (&self.puts, format!("PUT {range}"))
        } else {
            (&self.gets, request.method.to_string())
        };
        let method = what.split(' ').next().unwrap_or_default().to_owned();
        let index = seen
            .iter()
            .filter(|(seen, _)| seen.starts_with(&method))
            .count();
        seen.push((what, std::time::Instant::now()));
        answers[index.min(answers.len() - 1)].clone()
    }
}

/// Sends a message with one 3 MiB + 10 attachment in 1 MiB chunks to `session`; at most 20
/// seconds, so an upload that never ends fails the test.
async fn upload_to(
    session: &Scripted,
    resume_backoff: Duration,
) -> Result<mailroom_model::Delivery, mailroom_model::TransportError> {
    let graph = MockServer::start().await;
    let upload = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": DRAFT_ID})))
        .mount(&graph)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{MESSAGES}/{DRAFT_ID}/attachments/createUploadSession")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "uploadUrl": format!("{}/api/v2.0/AttachmentSessions('s')?authtoken=eyJ0eXAi", upload.uri()),
            "nextExpectedRanges": ["0-"],
        })))
        .mount(&graph)
        .await;
    Mock::given(method("DELETE"))
        .and(path(format!("{MESSAGES}/{DRAFT_ID}")))
        .respond_with(ResponseTemplate::new(204))
        .mount(&graph)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{MESSAGES}/{DRAFT_ID}/send")))
        .respond_with(ResponseTemplate::new(202))
        .mount(&graph)
        .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(session.clone())
        .mount(&upload)
        .await;
    let config = GraphConfig {
        upload_chunk_size: 1024 * 1024,
        resume_attempts: 3,
        resume_backoff,
        ..test_config(&graph.uri())
    };
    let big = attachment_bytes(3 * 1024 * 1024 + 10, 12);
    let transport = transport(config);
    let message = outgoing(message_with_attachments(&[("big.pdf", &big)]));
    let credentials = credentials();
    tokio::time::timeout(
        Duration::from_secs(20),
        transport.send(&message, &credentials),
    )
    .await
    .expect("the upload ends")
}

fn expecting(range: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "expirationDateTime": "2026-12-02T01:09:30.7671707Z",
        "nextExpectedRanges": [range],
    }))
}

/// A session that keeps asking for bytes it was sent is asked where it stands, with waits
/// that double (0.25, 0.5, 1 s), `resume_attempts` times; then the send fails.
#[tokio::test]
async fn a_session_that_makes_no_progress_fails_after_the_resume_attempts() {
    let session = Scripted::new(vec![expecting("0-")], vec![expecting("0-")]);
    let error = upload_to(&session, Duration::from_millis(250))
        .await
        .expect_err("no progress");
    assert_eq!(error.kind(), TransportErrorKind::Permanent, "{error}");
    assert_eq!(
        error.message(),
        "the upload session made no progress (it expects byte 0 after bytes 0-1048575)"
    );
    let put = "PUT bytes 0-1048575/3145738";
    assert_eq!(
        session.seen(),
        [put, "GET", put, "GET", put, "GET", put],
        "three resumes (resume_attempts), each after asking the session"
    );
    // Each GET comes at least the wait after the PUT the session did not progress on.
    let gaps = session.gaps();
    for (at, wait) in [(0, 250), (2, 500), (4, 1000)] {
        assert!(
            gaps[at] >= Duration::from_millis(wait),
            "the waits double: {gaps:?}"
        );
    }
}

/// A session expecting a byte past the end of the attachment cannot be resumed.
#[tokio::test]
async fn a_session_expecting_bytes_past_the_end_fails_at_once() {
    let session = Scripted::new(vec![expecting("3145739-")], vec![expecting("0-")]);
    let error = upload_to(&session, Duration::ZERO)
        .await
        .expect_err("past the end");
    assert_eq!(error.kind(), TransportErrorKind::Permanent, "{error}");
    assert_eq!(
        error.message(),
        "the upload session expects byte 3145739 of a 3145738-byte attachment"
    );
    assert_eq!(session.seen(), ["PUT bytes 0-1048575/3145738"]);
}

/// A session asking to wait longer than 30 s before a resume fails the send as transient
/// with its `Retry-After`, so the caller's retry policy decides when to send again.
#[tokio::test]
async fn a_session_asking_for_a_long_wait_fails_the_send_as_transient() {
    let session = Scripted::new(
        vec![
            expecting("1048576-"),
            ResponseTemplate::new(429).insert_header("Retry-After", "31"),
        ],
        vec![expecting("0-")],
    );
    let error = upload_to(&session, Duration::ZERO)
        .await
        .expect_err("a long wait");
    assert_eq!(error.kind(), TransportErrorKind::Transient, "{error}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(31)));
    assert_eq!(
        session.seen(),
        [
            "PUT bytes 0-1048575/3145738",
            "PUT bytes 1048576-2097151/3145738"
        ]
    );
}

/// A session that answers a 5xx, a 408 or a 429 (with a short `Retry-After`) and then says
/// where it stands is resumed from there; the chunks already confirmed are not sent again.
#[tokio::test]
async fn a_session_that_answers_5xx_408_or_429_is_resumed_where_it_says() {
    for setback in [
        ResponseTemplate::new(503),
        ResponseTemplate::new(500),
        ResponseTemplate::new(408),
        ResponseTemplate::new(429).insert_header("Retry-After", "1"),
    ] {
        let session = Scripted::new(
            vec![
                expecting("1048576-"),
                setback,
                expecting("3145728-"),
                ResponseTemplate::new(201),
            ],
            vec![expecting("2097152-")],
        );
        upload_to(&session, Duration::ZERO)
            .await
            .expect("sent after resuming");
        assert_eq!(
            session.seen(),
            [
                "PUT bytes 0-1048575/3145738",
                "PUT bytes 1048576-2097151/3145738",
                "GET",
                "PUT bytes 2097152-3145727/3145738",
                "PUT bytes 3145728-3145737/3145738",
            ]
        );
    }
}

/// A session that refuses a chunk for good (a 4xx other than 408 and 429) is not resumed.
#[tokio::test]
async fn a_session_that_refuses_a_chunk_is_not_resumed() {
    let session = Scripted::new(
        vec![
            expecting("1048576-"),
            ResponseTemplate::new(400).set_body_json(json!({
                "error": {"code": "InvalidRequest", "message": "The Content-Range header is invalid."}
            })),
        ],
        vec![expecting("2097152-")],
    );
    let error = upload_to(&session, Duration::ZERO)
        .await
        .expect_err("refused");
    assert_eq!(error.kind(), TransportErrorKind::Permanent, "{error}");
    assert!(
        error
            .message()
            .contains("The Content-Range header is invalid."),
        "{error}"
    );
    assert_eq!(
        session.seen(),
        [
            "PUT bytes 0-1048575/3145738",
            "PUT bytes 1048576-2097151/3145738",
        ]
    );
}

/// The log lines written while the guard lives (this thread only).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("not poisoned")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
    }
}

/// A draft that cannot be deleted stays in the mailbox's Drafts: the administrator is
/// warned, with Graph's status; a deleted one is not mentioned.
#[tokio::test]
async fn a_draft_that_cannot_be_deleted_is_warned_about() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    for (delete_status, warned) in [(204, false), (500, true)] {
        let graph = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(MESSAGES))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": DRAFT_ID})))
            .mount(&graph)
            .await;
        Mock::given(method("POST"))
            .and(path(format!(
                "{MESSAGES}/{DRAFT_ID}/attachments/createUploadSession"
            )))
            .respond_with(ResponseTemplate::new(403).set_body_json(json!({
                "error": {"code": "ErrorAccessDenied", "message": "Access is denied."}
            })))
            .mount(&graph)
            .await;
        Mock::given(method("DELETE"))
            .and(path(format!("{MESSAGES}/{DRAFT_ID}")))
            .respond_with(ResponseTemplate::new(delete_status))
            .expect(1)
            .mount(&graph)
            .await;
        let big = attachment_bytes(4 * 1024 * 1024, 11);
        let error = transport(test_config(&graph.uri()))
            .send(
                &outgoing(message_with_attachments(&[("big.pdf", &big)])),
                &credentials(),
            )
            .await
            .expect_err("refused");
        assert_eq!(error.kind(), TransportErrorKind::SignInRequired, "{error}");
        let text = logs.text();
        assert_eq!(
            text.contains("the unsent graph draft could not be deleted; it stays in Drafts"),
            warned,
            "DELETE answered {delete_status}: {text}"
        );
        assert_eq!(text.contains("status=500"), warned, "{text}");
        assert!(!text.contains(TOKEN), "{text}");
    }
}

#[tokio::test]
async fn an_upload_url_in_plain_http_off_loopback_is_refused() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": DRAFT_ID})))
        .mount(&graph)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{MESSAGES}/{DRAFT_ID}/attachments/createUploadSession")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "uploadUrl": "http://outlook.office.com/api/v2.0/AttachmentSessions('x')?authtoken=SECRET-UPLOAD-TOKEN",
            "nextExpectedRanges": ["0-"],
        })))
        .mount(&graph)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&graph)
        .await;
    let big = attachment_bytes(4 * 1024 * 1024, 8);
    let error = transport(test_config(&graph.uri()))
        .send(
            &outgoing(message_with_attachments(&[("big.pdf", &big)])),
            &credentials(),
        )
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("not https"), "{error}");
    assert!(!format!("{error} {error:?}").contains("SECRET-UPLOAD-TOKEN"));
}

#[tokio::test]
async fn without_an_answer_to_get_the_upload_resends_from_the_last_confirmed_range() {
    let graph = MockServer::start().await;
    let upload = MockServer::start().await;
    let host = UploadHost {
        stall_at: Some(MAX_UPLOAD_CHUNK),
        no_get: true,
        ..UploadHost::default()
    };
    mount(&graph, &upload, host.clone()).await;
    let big = attachment_bytes(5 * 1024 * 1024, 9);
    let bytes = message_with_attachments(&[("report.pdf", &big)]);
    let config = GraphConfig {
        timeout: Duration::from_secs(1),
        ..test_config(&graph.uri())
    };
    transport(config)
        .send(&outgoing(bytes), &credentials())
        .await
        .expect("sent after resending");
    let total = big.len() as u64;
    let chunk = MAX_UPLOAD_CHUNK;
    assert_eq!(
        ranges(&host),
        [
            format!("bytes 0-{}/{total}", chunk - 1),
            format!("bytes {chunk}-{}/{total}", total - 1),
            format!("bytes {chunk}-{}/{total}", total - 1),
        ]
    );
}

#[tokio::test]
async fn a_message_built_with_lettre_keeps_its_attachment_name_and_bytes() {
    use lettre::message::header::ContentType;
    use lettre::message::{Attachment, MultiPart, SinglePart};

    let graph = MockServer::start().await;
    let upload = MockServer::start().await;
    let host = UploadHost::default();
    mount(&graph, &upload, host.clone()).await;
    let big = attachment_bytes(3 * 1024 * 1024 + 1, 10);
    let name = "Bericht Q3 – Übersicht.pdf";
    let message = lettre::Message::builder()
        .from("sales@contoso.com".parse().expect("mailbox"))
        .to("customer@fabrikam.com".parse().expect("mailbox"))
        .subject("Bericht")
        .multipart(
            MultiPart::mixed()
                .singlepart(SinglePart::plain("Anbei der Bericht.".to_owned()))
                .singlepart(Attachment::new(name.to_owned()).body(
                    big.clone(),
                    ContentType::parse("application/pdf").expect("type"),
                )),
        )
        .expect("builds");
    let bytes = message.formatted();
    // Over the request limit once base64-encoded for sendMail.
    assert!(bytes.len() as u64 * 4 / 3 > 4 * 1024 * 1024);
    transport(test_config(&graph.uri()))
        .send(&outgoing(bytes), &credentials())
        .await
        .expect("sent");
    let requests = graph.received_requests().await.expect("recorded");
    let session: Value = serde_json::from_slice(&requests[1].body).expect("JSON");
    assert_eq!(session["AttachmentItem"]["name"], name);
    assert_eq!(session["AttachmentItem"]["size"], big.len());
    let uploaded: Vec<u8> = host
        .puts
        .lock()
        .expect("lock")
        .iter()
        .flat_map(|(_, body, _)| body.clone())
        .collect();
    assert!(uploaded == big, "the uploaded bytes are the attachment's");
    let draft = String::from_utf8(decode_base64(&requests[0].body)).expect("ASCII MIME");
    assert!(draft.contains("Anbei der Bericht."), "{draft}");
    assert!(!draft.contains("application/pdf"), "{draft}");
}

#[tokio::test]
async fn an_upload_url_credential_echoed_in_an_error_is_not_shown() {
    let graph = MockServer::start().await;
    let upload = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": DRAFT_ID})))
        .mount(&graph)
        .await;
    let upload_url = format!(
        "{}/api/v2.0/AttachmentSessions('x')?authtoken=UPLOAD-SECRET-42",
        upload.uri()
    );
    Mock::given(method("POST"))
        .and(path(format!(
            "{MESSAGES}/{DRAFT_ID}/attachments/createUploadSession"
        )))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "uploadUrl": upload_url,
            "nextExpectedRanges": ["0-"],
        })))
        .mount(&graph)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&graph)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"code": "invalidRequest", "message": "bad session UPLOAD-SECRET-42"}
        })))
        .expect(1)
        .mount(&upload)
        .await;
    let big = attachment_bytes(4 * 1024 * 1024, 11);
    let error = transport(test_config(&graph.uri()))
        .send(
            &outgoing(message_with_attachments(&[("big.pdf", &big)])),
            &credentials(),
        )
        .await
        .expect_err("refused");
    assert_eq!(error.kind(), TransportErrorKind::Permanent);
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("UPLOAD-SECRET-42"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
    assert_no_token(&error);
}
