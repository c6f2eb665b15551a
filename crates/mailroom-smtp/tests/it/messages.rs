//! The bytes the server stores are the bytes sent: UTF-8 subject, 8-bit body, long lines,
//! a large attachment; Bcc recipients only in the envelope.

use mailroom_model::TlsStartup;

use crate::support::{USER, longest_line, oauth_settings, rich_message, send, token, transport};
use mailroom_testkit::smtp::{ServerOptions, TestServer};

#[tokio::test]
async fn stored_bytes_equal_the_bytes_sent() {
    let server = TestServer::start(ServerOptions {
        tokens: vec![(USER.to_owned(), "good-token".to_owned())],
        ..ServerOptions::default()
    });
    let transport = transport(&server, oauth_settings(&server, TlsStartup::StartTls));
    let message = rich_message();
    assert!(
        !message.bytes.is_ascii(),
        "the test message should be 8-bit"
    );
    assert!(message.bytes.len() > 3 * 1024 * 1024);
    send(&transport, &message, &token("good-token", 1))
        .await
        .expect("sent");

    let stored = server.messages();
    assert_eq!(stored.len(), 1);
    let (event, bytes) = &stored[0];
    assert_eq!(event["mail_from"], USER);
    assert_eq!(
        event["rcpt_tos"],
        serde_json::json!(["to@example.com", "hidden@example.com"])
    );
    assert_eq!(event["mail_options"], serde_json::json!(["BODY=8BITMIME"]));
    let expected = message.bytes.as_ref();
    assert!(
        bytes.as_slice() == expected,
        "the stored message differs from the one sent ({} vs {} bytes)",
        bytes.len(),
        expected.len()
    );

    let text = String::from_utf8_lossy(bytes);
    let headers = text.split("\r\n\r\n").next().unwrap_or_default();
    assert!(
        !headers.to_ascii_lowercase().contains("\r\nbcc:"),
        "{headers}"
    );
    assert!(!text.contains("hidden@example.com"));
    assert!(
        text.contains("\r\n.leading dot line\r\n"),
        "dot-stuffing was not undone"
    );
    assert!(
        text.contains(&format!("\r\n{}\r\n", longest_line())),
        "the longest line was changed"
    );
    assert!(text.contains("Subject: =?utf-8?"), "{headers}");
}

#[tokio::test]
async fn a_message_ending_with_crlf_is_stored_unchanged() {
    let server = TestServer::start(ServerOptions {
        tokens: vec![(USER.to_owned(), "good-token".to_owned())],
        ..ServerOptions::default()
    });
    let transport = transport(&server, oauth_settings(&server, TlsStartup::StartTls));
    let message = crate::support::simple_message(USER, "to@example.com");
    assert!(message.bytes.ends_with(b"\r\n"));
    send(&transport, &message, &token("good-token", 1))
        .await
        .expect("sent");
    let stored = server.messages();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        String::from_utf8_lossy(&stored[0].1),
        String::from_utf8_lossy(&message.bytes)
    );
    assert_eq!(stored[0].0["mail_options"], serde_json::json!([]));
}
