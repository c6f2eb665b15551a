//! Where received messages go: one `.eml` file each (the bytes exactly as received, after
//! SMTP dot-unstuffing), and an in-memory list describing them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::{Error, Result};

/// How a message reached the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceivedBy {
    /// SMTP after STARTTLS.
    SmtpStartTls,
    /// SMTP on the implicit-TLS port.
    SmtpImplicitTls,
    /// Gmail `uploadType=media`.
    GmailMedia,
    /// Gmail `uploadType=resumable`.
    GmailResumable,
    /// Gmail JSON `{"raw": ...}`.
    GmailRaw,
    /// Microsoft Graph `sendMail` with a base64 MIME body.
    GraphMime,
    /// Microsoft Graph `sendMail` with a JSON message.
    GraphJson,
    /// Microsoft Graph `send` of a draft (with its attachments and upload sessions).
    GraphDraft,
}

impl ReceivedBy {
    fn file_tag(self) -> &'static str {
        match self {
            ReceivedBy::SmtpStartTls | ReceivedBy::SmtpImplicitTls => "smtp",
            ReceivedBy::GmailMedia | ReceivedBy::GmailResumable | ReceivedBy::GmailRaw => "gmail",
            ReceivedBy::GraphMime | ReceivedBy::GraphJson | ReceivedBy::GraphDraft => "graph",
        }
    }

    /// True for the Gmail API.
    pub fn is_gmail(self) -> bool {
        self.file_tag() == "gmail"
    }

    /// True for Microsoft Graph.
    pub fn is_graph(self) -> bool {
        self.file_tag() == "graph"
    }
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredMessage {
    /// 1, 2, 3, ... in the order received.
    pub sequence: u64,
    /// The protocol it came by.
    pub received_by: ReceivedBy,
    /// The address (or login) that authenticated.
    pub authenticated_as: String,
    /// SMTP `MAIL FROM` (none for Gmail).
    pub envelope_from: Option<String>,
    /// SMTP `RCPT TO` addresses; for Graph, every To, Cc and Bcc recipient (none for
    /// Gmail, which reads the headers).
    pub recipients: Vec<String>,
    /// The `Message-ID` header, without angle brackets.
    pub message_id: Option<String>,
    /// The id the Gmail endpoint answered with.
    pub gmail_id: Option<String>,
    /// The `request-id` header of the Graph answer that accepted the message.
    pub graph_request_id: Option<String>,
    /// The `.eml` file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: usize,
}

/// What a protocol handler knows about a message it accepted.
#[derive(Debug, Clone)]
pub(crate) struct Arrival {
    pub(crate) received_by: ReceivedBy,
    pub(crate) authenticated_as: String,
    pub(crate) envelope_from: Option<String>,
    pub(crate) recipients: Vec<String>,
    pub(crate) gmail_id: Option<String>,
    pub(crate) graph_request_id: Option<String>,
}

/// The received messages; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Mailbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    next_sequence: AtomicU64,
    messages: Mutex<Vec<StoredMessage>>,
}

impl Mailbox {
    pub(crate) fn create(dir: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(|source| Error::Write {
            path: dir.clone(),
            source,
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                next_sequence: AtomicU64::new(1),
                messages: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The folder of `.eml` files.
    pub fn dir(&self) -> &std::path::Path {
        &self.inner.dir
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<StoredMessage> {
        self.inner.messages.lock().expect("mailbox lock").clone()
    }

    /// The message with this `Message-ID` (angle brackets optional).
    pub fn find_by_message_id(&self, message_id: &str) -> Option<StoredMessage> {
        let wanted = strip_brackets(message_id);
        self.inner
            .messages
            .lock()
            .expect("mailbox lock")
            .iter()
            .find(|message| message.message_id.as_deref() == Some(wanted))
            .cloned()
    }

    /// Writes the message's file, then lists it. The protocol answers only after this
    /// returns, so a client that got its reply finds the message here.
    pub(crate) async fn store(
        &self,
        arrival: Arrival,
        bytes: &[u8],
    ) -> std::io::Result<StoredMessage> {
        let sequence = self.inner.next_sequence.fetch_add(1, Ordering::Relaxed);
        let path = self.inner.dir.join(format!(
            "{sequence:05}-{}.eml",
            arrival.received_by.file_tag()
        ));
        tokio::fs::write(&path, bytes).await?;
        let mut messages = self.inner.messages.lock().expect("mailbox lock");
        let stored = StoredMessage {
            sequence,
            received_by: arrival.received_by,
            authenticated_as: arrival.authenticated_as,
            envelope_from: arrival.envelope_from,
            recipients: arrival.recipients,
            message_id: message_id_of(bytes),
            gmail_id: arrival.gmail_id,
            graph_request_id: arrival.graph_request_id,
            path,
            size: bytes.len(),
        };
        messages.push(stored.clone());
        Ok(stored)
    }
}

fn strip_brackets(text: &str) -> &str {
    let text = text.trim();
    text.strip_prefix('<')
        .and_then(|rest| rest.strip_suffix('>'))
        .unwrap_or(text)
}

/// The header section of a message: everything before the first empty line.
fn header_section(bytes: &[u8]) -> &[u8] {
    for (index, window) in bytes.windows(2).enumerate() {
        if window == b"\n\n" {
            return &bytes[..index + 1];
        }
        if window == b"\r\n" && bytes[index + 2..].starts_with(b"\r\n") {
            return &bytes[..index + 2];
        }
    }
    bytes
}

/// The unfolded value of the first header named `name` (case-insensitive).
pub(crate) fn header_value(bytes: &[u8], name: &str) -> Option<String> {
    let headers = String::from_utf8_lossy(header_section(bytes));
    let mut found: Option<String> = None;
    for line in headers.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            if let Some(value) = found.as_mut() {
                if !value.is_empty() {
                    value.push(' ');
                }
                value.push_str(line.trim());
            }
            continue;
        }
        if found.is_some() {
            break;
        }
        if let Some((field, value)) = line.split_once(':') {
            if field.trim().eq_ignore_ascii_case(name) {
                found = Some(value.trim().to_owned());
            }
        }
    }
    found
}

fn message_id_of(bytes: &[u8]) -> Option<String> {
    header_value(bytes, "message-id").map(|id| strip_brackets(&id).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(message: &str, name: &str, expected: Option<&str>) {
        assert_eq!(header_value(message.as_bytes(), name).as_deref(), expected);
    }

    #[test]
    fn headers_are_read_from_the_header_section_only() {
        check(
            "From: a@b\r\nMessage-ID: <x@y>\r\n\r\nbody",
            "message-id",
            Some("<x@y>"),
        );
        check(
            "From: a@b\r\nmessage-id:\r\n <folded@y>\r\n\r\nbody",
            "Message-Id",
            Some("<folded@y>"),
        );
        check(
            "From: a@b\r\n\r\nMessage-ID: <in-body@y>\r\n",
            "message-id",
            None,
        );
        check("From: a@b\nTo: c@d\n\nbody", "to", Some("c@d"));
        check(
            "Subject: one\r\n two\r\nTo: x\r\n\r\n",
            "subject",
            Some("one two"),
        );
        assert_eq!(
            message_id_of(b"Message-ID: <a@b>\r\n\r\n").as_deref(),
            Some("a@b")
        );
        assert_eq!(strip_brackets(" <a@b> "), "a@b");
        assert_eq!(strip_brackets("a@b"), "a@b");
    }
}
