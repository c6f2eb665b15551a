//! `sendMail` with a MIME message (`api-reference/v1.0/api/user-sendmail.md`, "Example 4:
//! Send a new message using MIME format"): `POST /v1.0/users/{upn}/sendMail`,
//! `Authorization: Bearer`, `Content-Type: text/plain`, the body the base64 MIME message;
//! `202 Accepted` with no body, the receipt keeping Graph's `request-id`.

use mailroom_graph::GraphConfig;
use mailroom_model::{CredentialSecret, MessageTransport, TransportErrorKind, TransportKind};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{
    MAILBOX, TOKEN, assert_no_token, credentials, decode_base64, outgoing, plain_message,
    test_config, transport,
};

const SEND_PATH: &str = "/v1.0/users/sales@contoso.com/sendMail";

#[tokio::test]
async fn a_small_message_is_one_sendmail_with_the_base64_mime_message() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("content-type", "text/plain"))
        .respond_with(
            ResponseTemplate::new(202)
                .insert_header("request-id", "0b2e2a5b-7b3c-4b3e-9d6f-1b1e0c1a2f3d")
                .insert_header("client-request-id", "echoed"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let bytes = plain_message(50_000);
    let message = outgoing(bytes.clone());

    let transport = transport(test_config(&server.uri()));
    assert_eq!(transport.kind(), TransportKind::GraphApi);
    let delivery = transport
        .send(&message, &credentials())
        .await
        .expect("the message is sent");

    assert_eq!(
        delivery.provider_message_id.as_deref(),
        Some("0b2e2a5b-7b3c-4b3e-9d6f-1b1e0c1a2f3d"),
        "the receipt keeps Graph's request-id"
    );
    assert!(delivery.reply.contains("202"), "{}", delivery.reply);
    let requests = server.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    // The body is the message, base64-encoded, Bcc header included.
    assert_eq!(decode_base64(&request.body), bytes);
    assert!(
        String::from_utf8_lossy(&decode_base64(&request.body)).contains("Bcc: audit@contoso.com")
    );
    let client_request_id = request
        .headers
        .get("client-request-id")
        .expect("a client-request-id is sent")
        .to_str()
        .expect("ascii");
    assert_eq!(client_request_id.len(), 36, "{client_request_id}");
}

#[tokio::test]
async fn the_mailbox_is_one_percent_encoded_path_segment() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1.0/users/o'brien%2Fx@contoso.com/sendMail"))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&server)
        .await;
    let mut credentials = credentials();
    credentials.user = "o'brien/x@contoso.com".to_owned();
    let delivery = transport(test_config(&server.uri()))
        .send(&outgoing(plain_message(1_000)), &credentials)
        .await
        .expect("sent");
    assert_eq!(
        delivery.provider_message_id, None,
        "no request-id, none kept"
    );
}

#[tokio::test]
async fn a_message_over_the_configured_limit_is_refused_before_any_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .expect(0)
        .mount(&server)
        .await;
    let config = GraphConfig {
        max_message_size: 100_000,
        ..test_config(&server.uri())
    };
    let error = transport(config)
        .send(&outgoing(plain_message(100_500)), &credentials())
        .await
        .expect_err("refused");
    assert_eq!(error.kind(), TransportErrorKind::MessageTooLarge);
    let text = error.to_string();
    assert!(text.contains("100000 bytes"), "the limit is named: {text}");
    assert!(
        text.contains(&format!("{} bytes", plain_message(100_500).len())),
        "{text}"
    );
    // The default limit is Exchange Online's default, 35 MB.
    assert_eq!(GraphConfig::default().max_message_size, 36_700_160);
}

#[tokio::test]
async fn a_message_of_exactly_the_configured_limit_is_sent_and_a_byte_more_is_not() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&server)
        .await;
    let message = plain_message(50_000);
    let at = |max_message_size: u64| {
        transport(GraphConfig {
            max_message_size,
            ..test_config(&server.uri())
        })
    };
    let exact = at(message.len() as u64);
    assert_eq!(exact.config().max_message_size, message.len() as u64);
    exact
        .send(&outgoing(message.clone()), &credentials())
        .await
        .expect("a message of exactly the limit is sent");
    let error = at(message.len() as u64 - 1)
        .send(&outgoing(message), &credentials())
        .await
        .expect_err("one byte over the limit");
    assert_eq!(error.kind(), TransportErrorKind::MessageTooLarge);
}

#[tokio::test]
async fn a_password_or_an_empty_mailbox_is_refused_without_a_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .expect(0)
        .mount(&server)
        .await;
    let transport = transport(test_config(&server.uri()));
    let mut password = credentials();
    password.secret = CredentialSecret::Password(mailroom_model::Secret::new("hunter2"));
    let error = transport
        .send(&outgoing(plain_message(100)), &password)
        .await
        .expect_err("refused");
    assert_eq!(error.kind(), TransportErrorKind::SignInRequired);
    assert!(error.to_string().contains("Mail.Send"), "{error}");
    let mut nobody = credentials();
    nobody.user = " ".to_owned();
    let error = transport
        .send(&outgoing(plain_message(100)), &nobody)
        .await
        .expect_err("refused");
    assert_eq!(error.kind(), TransportErrorKind::AccountConfiguration);
    assert_no_token(&error);
    let _ = MAILBOX;
}

#[tokio::test]
async fn no_answer_after_the_send_went_out_is_delivery_unknown() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(ResponseTemplate::new(202).set_delay(std::time::Duration::from_secs(5)))
        .mount(&server)
        .await;
    let config = GraphConfig {
        timeout: std::time::Duration::from_millis(500),
        ..test_config(&server.uri())
    };
    let error = transport(config)
        .send(&outgoing(plain_message(1_000)), &credentials())
        .await
        .expect_err("no answer");
    assert_eq!(error.kind(), TransportErrorKind::DeliveryUnknown);
    assert!(error.to_string().contains("Sent Items"), "{error}");
    assert_no_token(&error);
}

#[tokio::test]
async fn the_4_mb_request_limit_decides_the_route() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&server)
        .await;
    let transport = transport(test_config(&server.uri()));
    // 2,990,000 bytes are 3,986,668 in base64: one sendMail.
    transport
        .send(&outgoing(plain_message(2_990_000)), &credentials())
        .await
        .expect("sent with sendMail");
    // 3,010,000 bytes are over 4,000,000 in base64, and a single-part message has no
    // attachment to upload separately: refused before any further request.
    let error = transport
        .send(&outgoing(plain_message(3_010_000)), &credentials())
        .await
        .expect_err("refused");
    assert_eq!(error.kind(), TransportErrorKind::MessageTooLarge);
    assert!(
        error.to_string().contains("4000000 bytes (4 MB)"),
        "{error}"
    );
}
