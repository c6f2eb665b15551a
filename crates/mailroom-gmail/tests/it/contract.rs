//! The media upload request, checked against the discovery document: method, path,
//! `uploadType`, media type, bearer header, the exact bytes; and the size limit.

use mailroom_gmail::{MAX_MESSAGE_SIZE, MESSAGE_MEDIA_TYPE};
use mailroom_model::{
    CredentialSecret, MessageTransport, Secret, TransportErrorKind, TransportKind,
};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{
    Contract, assert_no_token, credentials, message_of_size, sent_message_json, test_config,
    transport,
};

#[tokio::test]
async fn a_message_is_sent_with_the_media_protocol_as_the_discovery_document_describes() {
    let contract = Contract::load();
    let server = MockServer::start().await;
    Mock::given(method(contract.http_method.as_str()))
        .and(path(contract.upload_path.as_str()))
        .and(query_param("uploadType", "media"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(sent_message_json(), "application/json"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let message = message_of_size(40_000);

    let transport = transport(test_config(&server.uri()));
    assert_eq!(transport.kind(), TransportKind::GmailApi);
    let delivery = transport
        .send(&message, &credentials())
        .await
        .expect("the message is sent");

    assert_eq!(
        delivery.provider_message_id.as_deref(),
        Some("18c0ffee12345678")
    );
    assert_eq!(delivery.thread_id.as_deref(), Some("18c0ffee12345678"));
    assert_eq!(
        delivery.reply,
        "gmail accepted the message: id 18c0ffee12345678, thread 18c0ffee12345678"
    );
    let requests = server
        .received_requests()
        .await
        .expect("requests are recorded");
    let [request] = requests.as_slice() else {
        panic!("expected one request, got {}", requests.len());
    };
    let content_type = request.headers["content-type"].to_str().expect("ASCII");
    assert_eq!(content_type, MESSAGE_MEDIA_TYPE);
    assert!(
        contract.accepts(content_type),
        "{content_type} is not among the accepted {:?}",
        contract.accept
    );
    assert_eq!(
        request.headers["authorization"].to_str().expect("ASCII"),
        format!("Bearer {}", crate::TOKEN)
    );
    assert_eq!(
        request.url.query(),
        Some("uploadType=media"),
        "no other query parameter (and never access_token)"
    );
    // The body is the formatted message, byte for byte: no base64, no JSON wrapper.
    assert!(
        request.body == message.bytes,
        "the body differs from the message bytes"
    );
    assert_eq!(
        request.headers["content-length"].to_str().expect("ASCII"),
        message.bytes.len().to_string()
    );
}

#[test]
fn the_limit_constant_is_the_discovery_documents_max_size() {
    assert_eq!(MAX_MESSAGE_SIZE, Contract::load().max_size);
    assert!(Contract::load().accepts(MESSAGE_MEDIA_TYPE));
}

#[tokio::test]
async fn a_message_one_byte_over_max_size_is_refused_without_any_request() {
    let contract = Contract::load();
    let server = MockServer::start().await;
    let too_large = message_of_size(usize::try_from(contract.max_size).expect("fits") + 1);

    let error = transport(test_config(&server.uri()))
        .send(&too_large, &credentials())
        .await
        .expect_err("refused");

    assert_eq!(error.kind(), TransportErrorKind::MessageTooLarge);
    assert_eq!(
        error.message(),
        "the message is 36700161 bytes, more than gmail's limit of 36700160 bytes (35 MiB)"
    );
    assert!(error.remediation().is_some());
    let requests = server.received_requests().await.expect("recorded");
    assert!(requests.is_empty(), "{} requests were made", requests.len());
}

#[tokio::test]
async fn a_message_of_exactly_max_size_is_not_refused_locally() {
    let contract = Contract::load();
    let server = MockServer::start().await;
    // The session start fails, so no body is uploaded; what matters is that it was tried.
    Mock::given(method("POST"))
        .and(path(contract.upload_path.as_str()))
        .and(query_param("uploadType", "resumable"))
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&server)
        .await;
    let largest = message_of_size(usize::try_from(contract.max_size).expect("fits"));

    let error = transport(test_config(&server.uri()))
        .send(&largest, &credentials())
        .await
        .expect_err("the mock refuses it");

    assert_eq!(error.kind(), TransportErrorKind::Transient, "{error}");
}

#[tokio::test]
async fn a_password_instead_of_a_token_asks_for_sign_in_without_any_request() {
    let server = MockServer::start().await;
    let mut credentials = credentials();
    credentials.secret = CredentialSecret::Password(Secret::new(crate::TOKEN));

    let error = transport(test_config(&server.uri()))
        .send(&message_of_size(1_000), &credentials)
        .await
        .expect_err("refused");

    assert_eq!(error.kind(), TransportErrorKind::SignInRequired);
    assert!(error.needs_sign_in());
    assert_no_token(&error);
    assert!(
        server
            .received_requests()
            .await
            .expect("recorded")
            .is_empty()
    );
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let contract = Contract::load();
    let server = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(contract.upload_path.as_str()))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("location", format!("{}/steal", elsewhere.uri()).as_str()),
        )
        .expect(1)
        .mount(&server)
        .await;

    let error = transport(test_config(&server.uri()))
        .send(&message_of_size(1_000), &credentials())
        .await
        .expect_err("a redirect is an error");

    assert_eq!(error.kind(), TransportErrorKind::Permanent);
    assert!(error.message().contains("redirect"), "{error}");
    assert!(
        elsewhere
            .received_requests()
            .await
            .expect("recorded")
            .is_empty(),
        "the bearer token went to the redirect target"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_transient() {
    // Bind and drop a listener so the port is very likely closed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);

    let error = transport(test_config(&format!("http://{address}")))
        .send(&message_of_size(1_000), &credentials())
        .await
        .expect_err("nobody listens");

    assert_eq!(error.kind(), TransportErrorKind::Transient, "{error}");
    assert_eq!(error.message(), "cannot connect to the gmail API");
    assert_no_token(&error);
}

/// The media upload's connection is closed in the middle of the body: the message may or may
/// not have arrived, so the send is transient (the facade may send it again).
#[tokio::test]
async fn a_connection_dropped_during_a_media_upload_is_transient() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let uri = format!("http://{}", listener.local_addr().expect("address"));
    let server = tokio::spawn(async move {
        let mut stream = tokio::io::BufReader::new(listener.accept().await.expect("accept").0);
        let head = crate::raw_http::read_head(&mut stream).await.expect("head");
        crate::raw_http::read_body(&mut stream, 64 * 1024)
            .await
            .expect("part of the body");
        head
    });

    let error = transport(test_config(&uri))
        .send(&message_of_size(1_000_000), &credentials())
        .await
        .expect_err("the connection dropped");
    let head = server.await.expect("the server finished");

    assert_eq!(head.method, "POST");
    assert_eq!(error.kind(), TransportErrorKind::Transient, "{error}");
    assert_eq!(
        error.message(),
        "the connection to the gmail API dropped before gmail answered"
    );
    assert_no_token(&error);
}

/// A server that reads the request and never answers runs into the configured timeout.
#[tokio::test]
async fn a_server_that_never_answers_times_out_as_transient() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let uri = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let mut stream = tokio::io::BufReader::new(listener.accept().await.expect("accept").0);
        let head = crate::raw_http::read_head(&mut stream).await.expect("head");
        crate::raw_http::read_body(&mut stream, head.content_length())
            .await
            .expect("body");
        // Keep the connection open, unanswered, until the test ends.
        std::future::pending::<()>().await;
        drop(stream);
    });
    let config = mailroom_gmail::GmailConfig {
        timeout: std::time::Duration::from_millis(300),
        ..test_config(&uri)
    };

    let error = transport(config)
        .send(&message_of_size(1_000), &credentials())
        .await
        .expect_err("no answer");

    assert_eq!(error.kind(), TransportErrorKind::Transient, "{error}");
    assert_eq!(error.message(), "the gmail API did not answer within 0.3 s");
    assert_no_token(&error);
}

/// A From header other than the account's address is not checked or changed: Gmail decides
/// (it may rewrite it to the account or keep a verified alias).
#[tokio::test]
async fn a_foreign_from_header_is_sent_as_it_is() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(sent_message_json(), "application/json"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let bytes = bytes::Bytes::from_static(
        b"From: Someone Else <someone@other.example>\r\nTo: customer@example.org\r\nSubject: hi\r\n\r\nhello\r\n",
    );

    transport(test_config(&server.uri()))
        .send(&crate::message(bytes.clone()), &credentials())
        .await
        .expect("sent");

    let requests = server.received_requests().await.expect("recorded");
    assert!(requests[0].body == bytes, "the message was changed");
}
