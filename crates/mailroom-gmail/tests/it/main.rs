//! mailroom-gmail's integration tests: wiremock contract tests derived from Google's
//! discovery document, error mapping, resumable uploads, TLS, and the size limit.

mod config;
mod contract;
mod errors;
mod limits;
mod raw_http;
mod resumable;
mod tls;

use std::path::Path;

use bytes::Bytes;
use mailroom_gmail::{GmailConfig, GmailTransport};
use mailroom_model::{
    Address, CredentialSecret, Credentials, Envelope, OutgoingMessage, Secret, TransportError,
};
use serde_json::Value;
use url::Url;

/// The access token every test sends; it must never show in an error.
const TOKEN: &str = "ya29.a0-test-token-THAT-MUST-NEVER-LEAK";

/// Google's discovery document of `users.messages.send` (provenance: `tests/data/README.md`).
const DISCOVERY_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/gmail.v1.send.json");

/// What the discovery document says about the send method's media upload.
#[derive(Debug)]
struct Contract {
    http_method: String,
    /// `mediaUpload.protocols.simple.path` with `userId` set to its default (`me`).
    upload_path: String,
    /// The media types the method accepts (`message/*`).
    accept: Vec<String>,
    max_size: u64,
}

impl Contract {
    fn load() -> Self {
        let text = std::fs::read_to_string(DISCOVERY_PATH).unwrap_or_else(|error| {
            panic!(
                "cannot read the Gmail discovery document at {}: {error}; the contract tests need `crates/mailroom-gmail/tests/data/gmail.v1.send.json` (see the README beside it)",
                Path::new(DISCOVERY_PATH).display()
            )
        });
        let document: Value = serde_json::from_str(&text).expect("the discovery document is JSON");
        let text_at = |pointer: &str| -> String {
            document
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("the discovery document has no string at {pointer}"))
                .to_owned()
        };
        assert_eq!(text_at("/method_id"), "gmail.users.messages.send");
        assert_eq!(
            document.pointer("/supportsMediaUpload"),
            Some(&Value::Bool(true))
        );
        let user_id = text_at("/parameters/userId/default");
        let upload_path =
            text_at("/mediaUpload/protocols/simple/path").replace("{userId}", &user_id);
        // The resumable protocol must be offered; this transport starts it on the simple
        // path with `uploadType=resumable`, as Google's own client libraries do.
        assert!(
            document
                .pointer("/mediaUpload/protocols/resumable/path")
                .is_some(),
            "the discovery document offers no resumable protocol"
        );
        assert!(
            document.pointer("/global_parameters/uploadType").is_some(),
            "the discovery document has no uploadType parameter"
        );
        let accept = document
            .pointer("/mediaUpload/accept")
            .and_then(Value::as_array)
            .expect("mediaUpload.accept is a list")
            .iter()
            .map(|value| value.as_str().expect("media types are strings").to_owned())
            .collect();
        Self {
            http_method: text_at("/httpMethod"),
            upload_path,
            accept,
            max_size: text_at("/mediaUpload/maxSize")
                .parse()
                .expect("maxSize is a number"),
        }
    }

    /// True when `media_type` matches one of the accepted patterns (`type/*` or exact).
    fn accepts(&self, media_type: &str) -> bool {
        let media_type = media_type.split(';').next().unwrap_or_default().trim();
        self.accept
            .iter()
            .any(|pattern| match pattern.strip_suffix("/*") {
                Some(kind) => media_type.split_once('/').is_some_and(|(actual, subtype)| {
                    actual.eq_ignore_ascii_case(kind) && !subtype.is_empty()
                }),
                None => pattern.eq_ignore_ascii_case(media_type),
            })
    }
}

fn credentials() -> Credentials {
    Credentials {
        user: "sales@example.com".to_owned(),
        secret: CredentialSecret::AccessToken(Secret::new(TOKEN)),
        version: 1,
    }
}

/// A formatted message of exactly `size` bytes (headers, then a body of varying bytes so a
/// misplaced chunk shows up).
fn message_of_size(size: usize) -> OutgoingMessage {
    let head = b"From: sales@example.com\r\nTo: customer@example.org\r\nSubject: Order confirmation\r\nMessage-ID: <test@example.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n";
    assert!(
        size >= head.len(),
        "test messages are at least a header long"
    );
    let mut bytes = head.to_vec();
    let mut line = 0u32;
    while bytes.len() < size {
        let text = format!("line {line:08} of the order confirmation\r\n");
        let room = size - bytes.len();
        bytes.extend_from_slice(&text.as_bytes()[..text.len().min(room)]);
        line += 1;
    }
    message(Bytes::from(bytes))
}

fn message(bytes: Bytes) -> OutgoingMessage {
    let sender: Address = "sales@example.com".parse().expect("address");
    let recipient: Address = "customer@example.org".parse().expect("address");
    OutgoingMessage {
        envelope: Envelope::new(sender, vec![recipient]).expect("envelope"),
        bytes,
        message_id: Some("<test@example.com>".to_owned()),
    }
}

/// A configuration for a loopback test server at `uri`.
fn test_config(uri: &str) -> GmailConfig {
    GmailConfig {
        allow_plaintext_loopback: true,
        resume_backoff: std::time::Duration::ZERO,
        ..GmailConfig::with_base_url(Url::parse(uri).expect("the server URI parses"))
    }
}

fn transport(config: GmailConfig) -> GmailTransport {
    GmailTransport::new(config).expect("the transport builds")
}

/// Fails when the token shows anywhere in the error, its `Debug`, or its source chain.
#[track_caller]
fn assert_no_token(error: &TransportError) {
    let mut shown = format!("{error}\n{error:?}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        shown.push_str(&format!("\n{cause}\n{cause:?}"));
        source = cause.source();
    }
    assert!(!shown.contains(TOKEN), "the token leaked: {shown}");
    assert!(
        !shown.contains("THAT-MUST-NEVER-LEAK"),
        "part of the token leaked: {shown}"
    );
}

/// The Gmail `Message` answer of a successful send.
fn sent_message_json() -> String {
    r#"{"id":"18c0ffee12345678","threadId":"18c0ffee12345678","labelIds":["SENT"]}"#.to_owned()
}
