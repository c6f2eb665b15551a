//! The resumable protocol: session start, chunked upload, resuming after a 5xx and after a
//! really dropped connection from the range the session reports, and its refusals.

use std::sync::{Arc, Mutex};

use mailroom_gmail::{GmailConfig, RESUMABLE_CHUNK_GRANULARITY};
use mailroom_model::{MessageTransport, TransportErrorKind};
use tokio::io::BufReader;
use tokio::net::TcpListener;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::raw_http::{read_body, read_head, respond};
use crate::{
    Contract, TOKEN, assert_no_token, credentials, message_of_size, sent_message_json, test_config,
    transport,
};

/// Three chunks of 256 KiB, the last one short.
const MESSAGE_SIZE: usize = 700_001;

fn small_chunks(uri: &str) -> GmailConfig {
    GmailConfig {
        resumable_threshold: RESUMABLE_CHUNK_GRANULARITY,
        resumable_chunk_size: RESUMABLE_CHUNK_GRANULARITY,
        ..test_config(uri)
    }
}

/// What the fake session has seen.
#[derive(Debug, Default)]
struct SessionState {
    /// The bytes the session holds, in order.
    held: Vec<u8>,
    /// Every `Content-Range` it was sent.
    content_ranges: Vec<String>,
    /// Answer the chunk starting at this offset with a 503 (or `fail_once_status`), once.
    fail_once_at: Option<usize>,
    /// The status of the `fail_once_at` answer, when not 503.
    fail_once_status: Option<u16>,
    /// Keep no chunk: answer each with a 308 for what is held (a session making no
    /// progress).
    keep_nothing: bool,
    /// Answer every chunk and query with this status instead.
    always: Option<u16>,
    /// Every request carried the bearer token.
    all_authorized: bool,
}

/// A Google upload session: holds what it is sent, answers 308 with the range it holds, and
/// the sent `Message` once the last byte arrives.
#[derive(Clone)]
struct FakeSession(Arc<Mutex<SessionState>>);

impl FakeSession {
    fn new(state: SessionState) -> Self {
        Self(Arc::new(Mutex::new(SessionState {
            all_authorized: true,
            ..state
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SessionState> {
        self.0.lock().expect("the session state is not poisoned")
    }
}

fn incomplete(held: usize) -> ResponseTemplate {
    let response = ResponseTemplate::new(308);
    if held == 0 {
        response
    } else {
        response.insert_header("range", format!("bytes=0-{}", held - 1).as_str())
    }
}

impl Respond for FakeSession {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.state();
        let authorized = request
            .headers
            .get("authorization")
            .is_some_and(|value| value == format!("Bearer {TOKEN}").as_str());
        state.all_authorized &= authorized;
        let range = request
            .headers
            .get("content-range")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        state.content_ranges.push(range.clone());
        // A transport that never stops asking fails the test instead of hanging it.
        if state.content_ranges.len() > 50 {
            return ResponseTemplate::new(400).set_body_string("the client never stops");
        }
        if let Some(status) = state.always {
            return ResponseTemplate::new(status);
        }
        let (span, total) = range
            .strip_prefix("bytes ")
            .and_then(|rest| rest.split_once('/'))
            .expect("Content-Range: bytes <span>/<total>");
        let total: usize = total.parse().expect("a numeric total");
        if span == "*" {
            return incomplete(state.held.len());
        }
        let (first, last) = span.split_once('-').expect("first-last");
        let first: usize = first.parse().expect("numeric");
        let last: usize = last.parse().expect("numeric");
        if state.fail_once_at == Some(first) {
            state.fail_once_at = None;
            return ResponseTemplate::new(state.fail_once_status.unwrap_or(503));
        }
        if state.keep_nothing {
            return incomplete(state.held.len());
        }
        if first != state.held.len() || last + 1 - first != request.body.len() {
            // Not what a session accepts; makes the test fail with a clear answer.
            return ResponseTemplate::new(400).set_body_string(format!(
                "chunk {span} does not continue the {} bytes held",
                state.held.len()
            ));
        }
        state.held.extend_from_slice(&request.body);
        if state.held.len() == total {
            ResponseTemplate::new(200).set_body_raw(sent_message_json(), "application/json")
        } else {
            incomplete(state.held.len())
        }
    }
}

/// Mounts the session start (answered with a session URI at `session_uri`) and the session.
async fn mount_session(server: &MockServer, session_uri: &str, session: FakeSession) {
    let contract = Contract::load();
    Mock::given(method(contract.http_method.as_str()))
        .and(path(contract.upload_path.as_str()))
        .and(query_param("uploadType", "resumable"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("x-upload-content-type", "message/rfc822"))
        .and(header(
            "x-upload-content-length",
            MESSAGE_SIZE.to_string().as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).insert_header("location", session_uri))
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("PUT"))
        .and(path(contract.upload_path.as_str()))
        .and(query_param("upload_id", "session-1"))
        .respond_with(session)
        .mount(server)
        .await;
}

fn session_uri(server: &MockServer) -> String {
    format!(
        "{}{}?uploadType=resumable&upload_id=session-1",
        server.uri(),
        Contract::load().upload_path
    )
}

#[tokio::test]
async fn a_large_message_is_uploaded_in_chunks_through_a_session() {
    let server = MockServer::start().await;
    let session = FakeSession::new(SessionState::default());
    mount_session(&server, &session_uri(&server), session.clone()).await;
    let message = message_of_size(MESSAGE_SIZE);

    let delivery = transport(small_chunks(&server.uri()))
        .send(&message, &credentials())
        .await
        .expect("sent");

    assert_eq!(
        delivery.provider_message_id.as_deref(),
        Some("18c0ffee12345678")
    );
    assert_eq!(delivery.thread_id.as_deref(), Some("18c0ffee12345678"));
    {
        let state = session.state();
        assert_eq!(
            state.content_ranges,
            [
                "bytes 0-262143/700001",
                "bytes 262144-524287/700001",
                "bytes 524288-700000/700001",
            ]
        );
        assert!(state.held == message.bytes, "the session holds other bytes");
        assert!(state.all_authorized);
    }
    let requests = server.received_requests().await.expect("recorded");
    let start = &requests[0];
    assert!(start.body.is_empty(), "the session start has no body");
}

#[tokio::test]
async fn a_5xx_during_a_chunk_is_resumed_from_the_range_the_session_reports() {
    let server = MockServer::start().await;
    let session = FakeSession::new(SessionState {
        fail_once_at: Some(262_144),
        ..SessionState::default()
    });
    mount_session(&server, &session_uri(&server), session.clone()).await;
    let message = message_of_size(MESSAGE_SIZE);

    transport(small_chunks(&server.uri()))
        .send(&message, &credentials())
        .await
        .expect("sent after resuming");

    let state = session.state();
    assert_eq!(
        state.content_ranges,
        [
            "bytes 0-262143/700001",
            "bytes 262144-524287/700001",
            "bytes */700001",
            "bytes 262144-524287/700001",
            "bytes 524288-700000/700001",
        ]
    );
    assert!(state.held == message.bytes, "the session holds other bytes");
    assert!(state.all_authorized);
}

#[tokio::test]
async fn resuming_gives_up_after_the_configured_attempts() {
    let server = MockServer::start().await;
    let session = FakeSession::new(SessionState {
        always: Some(503),
        ..SessionState::default()
    });
    mount_session(&server, &session_uri(&server), session.clone()).await;

    let error = transport(GmailConfig {
        resume_attempts: 2,
        ..small_chunks(&server.uri())
    })
    .send(&message_of_size(MESSAGE_SIZE), &credentials())
    .await
    .expect_err("the session never recovers");

    assert_eq!(error.kind(), TransportErrorKind::Transient, "{error}");
    assert_eq!(
        session.state().content_ranges,
        ["bytes 0-262143/700001", "bytes */700001", "bytes */700001"]
    );
    assert_no_token(&error);
}

#[tokio::test]
async fn an_expired_session_is_transient_and_says_nothing_was_sent() {
    let server = MockServer::start().await;
    let session = FakeSession::new(SessionState {
        always: Some(404),
        ..SessionState::default()
    });
    mount_session(&server, &session_uri(&server), session.clone()).await;

    let error = transport(small_chunks(&server.uri()))
        .send(&message_of_size(MESSAGE_SIZE), &credentials())
        .await
        .expect_err("the session is gone");

    assert_eq!(error.kind(), TransportErrorKind::Transient, "{error}");
    assert!(error.message().contains("expired"), "{error}");
    assert!(error.message().contains("nothing was sent"), "{error}");
    assert_eq!(session.state().content_ranges.len(), 1);
}

#[tokio::test]
async fn a_session_on_another_origin_is_refused_and_gets_no_token() {
    let server = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    let session = FakeSession::new(SessionState::default());
    mount_session(&server, &session_uri(&elsewhere), session.clone()).await;
    Mock::given(method("PUT"))
        .respond_with(session.clone())
        .mount(&elsewhere)
        .await;

    let error = transport(small_chunks(&server.uri()))
        .send(&message_of_size(MESSAGE_SIZE), &credentials())
        .await
        .expect_err("refused");

    assert_eq!(error.kind(), TransportErrorKind::Permanent, "{error}");
    assert!(
        error.message().contains(&elsewhere.uri()),
        "the message names the other server: {error}"
    );
    assert!(
        elsewhere
            .received_requests()
            .await
            .expect("recorded")
            .is_empty(),
        "a request went to the other origin"
    );
}

#[tokio::test]
async fn a_range_beyond_the_message_is_refused() {
    let server = MockServer::start().await;
    let contract = Contract::load();
    Mock::given(method(contract.http_method.as_str()))
        .and(path(contract.upload_path.as_str()))
        .and(query_param("uploadType", "resumable"))
        .respond_with(
            ResponseTemplate::new(200).insert_header("location", session_uri(&server).as_str()),
        )
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(308).insert_header("range", "bytes=0-999999"))
        .mount(&server)
        .await;

    let error = transport(small_chunks(&server.uri()))
        .send(&message_of_size(MESSAGE_SIZE), &credentials())
        .await
        .expect_err("refused");

    assert_eq!(error.kind(), TransportErrorKind::Permanent, "{error}");
    assert!(
        error
            .message()
            .contains("1000000 bytes of a 700001-byte message"),
        "{error}"
    );
}

#[tokio::test]
async fn a_session_that_holds_everything_but_never_confirms_is_not_worth_retrying() {
    let server = MockServer::start().await;
    let contract = Contract::load();
    Mock::given(method(contract.http_method.as_str()))
        .and(path(contract.upload_path.as_str()))
        .and(query_param("uploadType", "resumable"))
        .respond_with(
            ResponseTemplate::new(200).insert_header("location", session_uri(&server).as_str()),
        )
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(308).insert_header("range", "bytes=0-700000"))
        .expect(1)
        .mount(&server)
        .await;

    let error = transport(small_chunks(&server.uri()))
        .send(&message_of_size(MESSAGE_SIZE), &credentials())
        .await
        .expect_err("never confirmed");

    assert_eq!(error.kind(), TransportErrorKind::Permanent, "{error}");
    assert!(error.message().contains("did not confirm"), "{error}");
    assert!(
        error
            .remediation()
            .is_some_and(|text| text.contains("Sent folder")),
        "{error}"
    );
}

/// The upload's connection is really closed after part of the body; the transport asks the
/// session for its range and sends the rest.
#[tokio::test]
async fn a_dropped_connection_is_resumed_from_the_range_the_session_reports() {
    const SIZE: usize = 1_000_003;
    const RECEIVED_BEFORE_THE_DROP: usize = 2 * 256 * 1024;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let uri = format!("http://{}", listener.local_addr().expect("address"));
    let upload_path = Contract::load().upload_path;
    let session = format!("{uri}{upload_path}?uploadType=resumable&upload_id=dropped");

    let server = tokio::spawn(async move {
        let mut heads = Vec::new();
        let mut held = Vec::new();

        // 1. The session start.
        let mut stream = BufReader::new(listener.accept().await.expect("accept").0);
        let head = read_head(&mut stream).await.expect("head");
        read_body(&mut stream, head.content_length())
            .await
            .expect("body");
        heads.push(head);
        respond(stream.get_mut(), "200 OK", &[("Location", session)], "")
            .await
            .expect("respond");

        // 2. The upload: read part of the body, then close the socket without answering.
        let mut stream = BufReader::new(listener.accept().await.expect("accept").0);
        let head = read_head(&mut stream).await.expect("head");
        held.extend(
            read_body(&mut stream, RECEIVED_BEFORE_THE_DROP)
                .await
                .expect("the first part of the body"),
        );
        heads.push(head);
        drop(stream);

        // 3. The status query.
        let mut stream = BufReader::new(listener.accept().await.expect("accept").0);
        let head = read_head(&mut stream).await.expect("head");
        assert_eq!(head.content_length(), 0, "the status query has no body");
        heads.push(head);
        let range = format!("bytes=0-{}", held.len() - 1);
        respond(
            stream.get_mut(),
            "308 Resume Incomplete",
            &[("Range", range)],
            "",
        )
        .await
        .expect("respond");

        // 4. The rest of the message.
        let mut stream = BufReader::new(listener.accept().await.expect("accept").0);
        let head = read_head(&mut stream).await.expect("head");
        held.extend(
            read_body(&mut stream, head.content_length())
                .await
                .expect("body"),
        );
        heads.push(head);
        respond(
            stream.get_mut(),
            "200 OK",
            &[("Content-Type", "application/json".to_owned())],
            &sent_message_json(),
        )
        .await
        .expect("respond");
        (heads, held)
    });

    let message = message_of_size(SIZE);
    // One request for the whole body, so the drop happens in the middle of it.
    let config = GmailConfig {
        resumable_threshold: RESUMABLE_CHUNK_GRANULARITY,
        ..test_config(&uri)
    };
    let delivery = transport(config)
        .send(&message, &credentials())
        .await
        .expect("sent after resuming");
    let (heads, held) = server.await.expect("the server finished");

    assert_eq!(
        delivery.provider_message_id.as_deref(),
        Some("18c0ffee12345678")
    );
    let summary: Vec<(String, Option<&str>)> = heads
        .iter()
        .map(|head| (head.method.clone(), head.header("content-range")))
        .collect();
    assert_eq!(
        summary,
        [
            ("POST".to_owned(), None),
            ("PUT".to_owned(), Some("bytes 0-1000002/1000003")),
            ("PUT".to_owned(), Some("bytes */1000003")),
            ("PUT".to_owned(), Some("bytes 524288-1000002/1000003")),
        ]
    );
    assert!(held == message.bytes, "the server holds other bytes");
    for head in &heads {
        assert_eq!(
            head.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
    assert!(
        heads[0].target.ends_with("?uploadType=resumable"),
        "{}",
        heads[0].target
    );
    for head in &heads[1..] {
        assert!(
            head.target.ends_with("upload_id=dropped"),
            "{}",
            head.target
        );
    }
}

/// Google's resumable upload guide (developers.google.com/gmail/api/guides/uploads) puts
/// the session on `https://www.googleapis.com`; a session anywhere but the request's host
/// or a googleapis.com host over https is refused before a byte or the token goes there.
#[tokio::test]
async fn a_session_off_the_request_host_and_googleapis_is_refused_before_any_byte() {
    let server = MockServer::start().await;
    let session = FakeSession::new(SessionState::default());
    mount_session(
        &server,
        "https://googleapis.com.upload.example/upload/gmail/v1/users/me/messages/send?uploadType=resumable&upload_id=session-1",
        session.clone(),
    )
    .await;

    let error = transport(small_chunks(&server.uri()))
        .send(&message_of_size(MESSAGE_SIZE), &credentials())
        .await
        .expect_err("refused");

    assert_eq!(error.kind(), TransportErrorKind::Permanent, "{error}");
    assert!(
        error
            .message()
            .contains("https://googleapis.com.upload.example"),
        "{error}"
    );
    assert!(error.message().contains("googleapis.com host"), "{error}");
    assert_no_token(&error);
    assert!(
        session.state().content_ranges.is_empty(),
        "no chunk was sent"
    );
    let requests = server.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 1, "only the session start");
}

/// 408 and 429 interrupt an upload as a 5xx does: the transport asks the session what it
/// holds and resumes from there; a wait of exactly `max_resume_wait` is still waited.
#[tokio::test]
async fn a_408_or_429_during_a_chunk_is_resumed_even_with_no_wait_allowed() {
    for status in [408, 429] {
        let server = MockServer::start().await;
        let session = FakeSession::new(SessionState {
            fail_once_at: Some(262_144),
            fail_once_status: Some(status),
            ..SessionState::default()
        });
        mount_session(&server, &session_uri(&server), session.clone()).await;
        let message = message_of_size(MESSAGE_SIZE);

        transport(GmailConfig {
            max_resume_wait: std::time::Duration::ZERO,
            ..small_chunks(&server.uri())
        })
        .send(&message, &credentials())
        .await
        .unwrap_or_else(|error| panic!("HTTP {status}: not resumed: {error}"));

        let state = session.state();
        assert_eq!(
            state.content_ranges,
            [
                "bytes 0-262143/700001",
                "bytes 262144-524287/700001",
                "bytes */700001",
                "bytes 262144-524287/700001",
                "bytes 524288-700000/700001",
            ],
            "HTTP {status}"
        );
        assert!(state.held == message.bytes, "the session holds other bytes");
    }
}

#[tokio::test]
async fn a_session_that_makes_no_progress_is_given_up_after_the_configured_attempts() {
    let server = MockServer::start().await;
    let session = FakeSession::new(SessionState {
        keep_nothing: true,
        ..SessionState::default()
    });
    mount_session(&server, &session_uri(&server), session.clone()).await;

    let error = transport(GmailConfig {
        resume_attempts: 2,
        ..small_chunks(&server.uri())
    })
    .send(&message_of_size(MESSAGE_SIZE), &credentials())
    .await
    .expect_err("no progress is ever made");

    assert!(
        error
            .message()
            .contains("the upload session made no progress (it holds 0 of 700001 bytes)"),
        "{error}"
    );
    assert_eq!(
        session.state().content_ranges,
        [
            "bytes 0-262143/700001",
            "bytes */700001",
            "bytes 0-262143/700001",
            "bytes */700001",
            "bytes 0-262143/700001",
        ]
    );
    assert_no_token(&error);
}

#[tokio::test]
async fn a_session_uri_with_a_user_name_is_refused_even_on_the_same_origin() {
    let server = MockServer::start().await;
    let session = FakeSession::new(SessionState::default());
    let with_user = session_uri(&server).replacen("://", "://mailroom@", 1);
    mount_session(&server, &with_user, session.clone()).await;

    let error = transport(small_chunks(&server.uri()))
        .send(&message_of_size(MESSAGE_SIZE), &credentials())
        .await
        .expect_err("refused");

    assert_eq!(error.kind(), TransportErrorKind::Permanent, "{error}");
    assert!(
        session.state().content_ranges.is_empty(),
        "no chunk (and no token) went to the session"
    );
    assert_no_token(&error);
}
