//! The transport's limits at their boundaries: the resumable threshold, the quoted error
//! body's length, how much of an error body is read, and the probe.

use mailroom_model::{MessageTransport, TransportErrorKind as Kind};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{Contract, credentials, message_of_size, sent_message_json, test_config, transport};

#[tokio::test]
async fn a_message_of_exactly_the_threshold_goes_in_one_media_upload() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(Contract::load().upload_path.as_str()))
        .and(query_param("uploadType", "media"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(sent_message_json(), "application/json"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let config = mailroom_gmail::GmailConfig {
        resumable_threshold: 2_000,
        ..test_config(&server.uri())
    };
    let transport = transport(config);
    assert_eq!(transport.config().resumable_threshold, 2_000);
    transport
        .send(&message_of_size(2_000), &credentials())
        .await
        .expect("sent as one media upload");
    // One byte more starts a resumable session (which this server does not offer).
    let error = transport
        .send(&message_of_size(2_001), &credentials())
        .await
        .expect_err("no resumable session here");
    assert_ne!(error.kind(), Kind::MessageTooLarge);
    let requests = server.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1]
            .url
            .query()
            .unwrap_or_default()
            .contains("uploadType=resumable"),
        "{}",
        requests[1].url
    );
}

/// Answers one media upload with `status` and an HTML `body`; returns the error's reply.
async fn reply_to_html(body: String) -> String {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(502).set_body_raw(body, "text/html"))
        .mount(&server)
        .await;
    let error = transport(test_config(&server.uri()))
        .send(&message_of_size(2_000), &credentials())
        .await
        .expect_err("a 502 is an error");
    error.server_reply().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_body_that_is_not_googles_is_quoted_up_to_300_characters() {
    let prefix = "HTTP 502 Bad Gateway (not a Google error body): ";
    let reply = reply_to_html("a".repeat(300)).await;
    assert_eq!(reply, format!("{prefix}{}", "a".repeat(300)));
    let reply = reply_to_html("a".repeat(301)).await;
    assert_eq!(reply, format!("{prefix}{}...", "a".repeat(300)));
}

#[tokio::test]
async fn a_google_error_body_under_64_kib_is_read_whole() {
    // Google's error bodies can carry long `details`; one of 48 KiB (under the 64 KiB read
    // limit, and more than one network read) is read to its end and understood.
    let padding = "x".repeat(48 * 1024);
    let body = format!(
        r#"{{"error":{{"code":400,"message":"Invalid To header","errors":[{{"message":"Invalid To header","domain":"global","reason":"invalidArgument"}}],"status":"INVALID_ARGUMENT","details":[{{"@type":"type.googleapis.com/google.rpc.DebugInfo","detail":"{padding}"}}]}}}}"#
    );
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_raw(body, "application/json"))
        .mount(&server)
        .await;
    let error = transport(test_config(&server.uri()))
        .send(&message_of_size(2_000), &credentials())
        .await
        .expect_err("a 400 is an error");
    assert_eq!(error.kind(), Kind::MessageRejected, "{error}");
    assert_eq!(
        error.message(),
        "gmail rejected the message: Invalid To header"
    );
}

#[tokio::test]
async fn the_probe_returns_the_status_of_a_get_of_the_base_url_without_a_token() {
    for status in [200, 404] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/"))
            .respond_with(ResponseTemplate::new(status))
            .expect(1)
            .mount(&server)
            .await;
        let transport = transport(test_config(&server.uri()));
        assert_eq!(transport.probe().await.expect("reachable"), status);
        let requests = server.received_requests().await.expect("recorded");
        assert!(requests[0].headers.get("authorization").is_none());
    }
}

#[tokio::test]
async fn an_answer_with_an_id_and_no_thread_says_the_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(r#"{"id":"18c0ffee12345678"}"#, "application/json"),
        )
        .mount(&server)
        .await;
    let delivery = transport(test_config(&server.uri()))
        .send(&message_of_size(2_000), &credentials())
        .await
        .expect("sent");
    assert_eq!(
        delivery.reply,
        "gmail accepted the message: id 18c0ffee12345678"
    );
    assert_eq!(
        delivery.provider_message_id.as_deref(),
        Some("18c0ffee12345678")
    );
    assert_eq!(delivery.thread_id, None);
}
