//! mailroom-graph's integration tests: wiremock contract tests built from Microsoft's
//! documentation (microsoftgraph/microsoft-graph-docs-contrib):
//!
//! - `api-reference/v1.0/api/user-sendmail.md`: `POST /users/{id | userPrincipalName}/sendMail`,
//!   "Example 4: Send a new message using MIME format": `Content-type: text/plain`, the
//!   body the base64-encoded MIME message; `202 Accepted`.
//! - `api-reference/v1.0/api/user-post-messages.md`: `POST /users/{id}/messages` creates a
//!   draft, also from base64 MIME with `Content-Type: text/plain`; `201 Created` with the
//!   message (its `id`).
//! - `api-reference/v1.0/api/attachment-createuploadsession.md` and
//!   `concepts/outlook-large-attachments.md`: `POST .../messages/{id}/attachments/createUploadSession`
//!   with `AttachmentItem` → `201` `uploadSession` (`uploadUrl` on `outlook.office.com`,
//!   `nextExpectedRanges: ["0-"]`); `PUT uploadUrl` with `Content-Range`, no `Authorization`,
//!   `200` + `nextExpectedRanges` until the last range, `201 Created`.
//! - `api-reference/v1.0/api/message-send.md`: `POST /users/{id}/messages/{id}/send`, `202`.
//! - `concepts/errors.md` (the error body) and `concepts/throttling-limits.md` (429,
//!   `Retry-After`; Outlook's `ApplicationThrottled` and `MailboxConcurrency`).

mod errors;
mod large;
mod send_mail;

use bytes::Bytes;
use mailroom_graph::{GraphConfig, GraphTransport};
use mailroom_model::{
    Address, CredentialSecret, Credentials, Envelope, OutgoingMessage, Secret, TransportError,
};
use url::Url;

/// The access token every test sends; it must never show in an error.
const TOKEN: &str = "eyJ0eXAiOi-test-token-THAT-MUST-NEVER-LEAK";

/// The mailbox every test sends as.
const MAILBOX: &str = "sales@contoso.com";

fn credentials() -> Credentials {
    Credentials {
        user: MAILBOX.to_owned(),
        secret: CredentialSecret::AccessToken(Secret::new(TOKEN)),
        version: 1,
    }
}

fn outgoing(bytes: Vec<u8>) -> OutgoingMessage {
    let sender: Address = MAILBOX.parse().expect("address");
    let recipient: Address = "customer@fabrikam.com".parse().expect("address");
    OutgoingMessage {
        envelope: Envelope::new(sender, vec![recipient]).expect("envelope"),
        bytes: Bytes::from(bytes),
        message_id: Some("<test@contoso.com>".to_owned()),
    }
}

/// A plain message of about `size` bytes (with its Bcc header, as this route gets it).
fn plain_message(size: usize) -> Vec<u8> {
    let mut bytes = b"From: sales@contoso.com\r\nTo: customer@fabrikam.com\r\nBcc: audit@contoso.com\r\nSubject: Order confirmation\r\nMessage-ID: <test@contoso.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n".to_vec();
    let mut line = 0u32;
    while bytes.len() < size {
        bytes.extend_from_slice(format!("line {line:08} of the order confirmation\r\n").as_bytes());
        line += 1;
    }
    bytes
}

/// Bytes that show a misplaced chunk: no two 4 KiB blocks alike.
fn attachment_bytes(size: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 8) as u8
        })
        .collect()
}

fn base64_lines(data: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = String::with_capacity(text.len() + text.len() / 38);
    for line in text.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).expect("ascii"));
        out.push_str("\r\n");
    }
    out
}

/// A multipart/mixed message: a text body and the given attachments (name, bytes).
fn message_with_attachments(attachments: &[(&str, &[u8])]) -> Vec<u8> {
    let mut text = String::from(
        "From: sales@contoso.com\r\nTo: customer@fabrikam.com\r\nBcc: audit@contoso.com\r\nSubject: Quarterly report\r\nMessage-ID: <test@contoso.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"=_boundary_42\"\r\n\r\n--=_boundary_42\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe report is attached.\r\n",
    );
    for (name, data) in attachments {
        text.push_str(&format!(
            "--=_boundary_42\r\nContent-Type: application/pdf; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
            base64_lines(data)
        ));
    }
    text.push_str("--=_boundary_42--\r\n");
    text.into_bytes()
}

fn test_config(uri: &str) -> GraphConfig {
    GraphConfig {
        allow_plaintext_loopback: true,
        resume_backoff: std::time::Duration::ZERO,
        ..GraphConfig::with_base_url(Url::parse(uri).expect("the server URI parses"))
    }
}

fn transport(config: GraphConfig) -> GraphTransport {
    GraphTransport::new(config).expect("the transport builds")
}

fn decode_base64(body: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("the body is base64")
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
    assert!(
        !shown.contains("THAT-MUST-NEVER-LEAK"),
        "the token leaked: {shown}"
    );
}
