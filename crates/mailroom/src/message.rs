//! Message building: a [`MessageDraft`] (what the caller wants to send) becomes RFC 5322
//! bytes with lettre, formatted once, with one Message-ID, after every header value and
//! address has been checked for CR/LF.

use std::path::Path;

use bytes::Bytes;
use lettre::message::header::{self, ContentType, HeaderName, HeaderValue, Headers};
use lettre::message::{Attachment as LettreAttachment, Mailbox, Mailboxes, MultiPart, SinglePart};
use mailroom_model::{Address, Envelope, FaxFormat, ValidationError};

use crate::{Error, Result};

/// A file attached to a message.
#[derive(Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The file name shown to the recipient.
    pub file_name: String,
    /// The MIME type, e.g. `application/pdf`.
    pub content_type: String,
    /// The content.
    pub content: Bytes,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("file_name", &self.file_name)
            .field("content_type", &self.content_type)
            .field("size", &self.content.len())
            .finish()
    }
}

impl Attachment {
    /// An attachment whose content type is guessed from the file name (`mime_guess`),
    /// `application/octet-stream` when the extension is unknown.
    pub fn new(file_name: impl Into<String>, content: impl Into<Bytes>) -> Self {
        let file_name = file_name.into();
        let content_type = mime_guess::from_path(&file_name)
            .first_or_octet_stream()
            .essence_str()
            .to_owned();
        Self {
            file_name,
            content_type,
            content: content.into(),
        }
    }

    /// Reads a file; the attachment is named after the file. Only a regular file of at
    /// most [`MAX_ATTACHMENT_SIZE`] bytes is read (`/dev/zero` or a FIFO would never end),
    /// and never more than that many bytes, even from a file that grows meanwhile.
    pub async fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io_error = |source| Error::Attachment {
            path: path.display().to_string(),
            source,
        };
        let refused = |problem: String| Error::AttachmentRefused {
            path: path.display().to_string(),
            problem,
        };
        let metadata = tokio::fs::metadata(path).await.map_err(io_error)?;
        if !metadata.is_file() {
            return Err(refused("it is not a regular file".to_owned()));
        }
        if metadata.len() > MAX_ATTACHMENT_SIZE {
            return Err(refused(format!(
                "it has {} bytes, more than any provider accepts in one message ({MAX_ATTACHMENT_SIZE})",
                metadata.len()
            )));
        }
        let file = tokio::fs::File::open(path).await.map_err(io_error)?;
        let Some(content) = read_at_most(file, MAX_ATTACHMENT_SIZE, metadata.len())
            .await
            .map_err(io_error)?
        else {
            return Err(refused(format!(
                "it grew past {MAX_ATTACHMENT_SIZE} bytes while it was read"
            )));
        };
        let file_name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "attachment".to_owned());
        Ok(Self::new(file_name, content))
    }
}

/// Reads `reader` to its end when that is at most `limit` bytes (`None` when there is
/// more), never reading more than one byte past `limit`; `expected` sizes the buffer.
async fn read_at_most(
    reader: impl tokio::io::AsyncRead + Unpin,
    limit: u64,
    expected: u64,
) -> std::io::Result<Option<Vec<u8>>> {
    use tokio::io::AsyncReadExt as _;
    let mut content = Vec::with_capacity(expected.min(limit) as usize);
    reader.take(limit + 1).read_to_end(&mut content).await?;
    Ok((content.len() as u64 <= limit).then_some(content))
}

/// The largest attachment read: the largest message any provider accepts (Gmail's
/// 36,700,160 bytes); the formatted message must still fit the account's provider.
pub const MAX_ATTACHMENT_SIZE: u64 = 36_700_160;

/// What a caller wants to send. Addresses are text (`Name <box@example.com>` or
/// `box@example.com`) and are checked when the message is built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageDraft {
    /// The From address; `None` sends as the account's SMTP user. Another address is
    /// "Send As" and needs the provider's permission.
    pub from: Option<String>,
    /// To recipients.
    pub to: Vec<String>,
    /// Cc recipients.
    pub cc: Vec<String>,
    /// Bcc recipients (in the envelope, never in the bytes an SMTP server receives).
    pub bcc: Vec<String>,
    /// Fax numbers; each becomes a To address through the company account's
    /// email-to-fax format string.
    pub fax: Vec<String>,
    /// Reply-To.
    pub reply_to: Option<String>,
    /// The subject (UTF-8).
    pub subject: String,
    /// The plain text body.
    pub text: Option<String>,
    /// The HTML body.
    pub html: Option<String>,
    /// Attached files.
    pub attachments: Vec<Attachment>,
}

/// A built message: the bytes (without a Bcc header), the envelope, the Message-ID, and
/// the encoded Bcc header line that the Gmail API needs re-added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltMessage {
    /// Envelope sender and every recipient, Bcc included.
    pub envelope: Envelope,
    /// The RFC 5322 message with CRLF line endings, without a Bcc header.
    pub bytes: Bytes,
    /// The `Message-ID` header value, with its angle brackets.
    pub message_id: String,
    /// `Bcc: ...\r\n`, when there are Bcc recipients.
    pub bcc_header: Option<String>,
}

fn refuse_line_breaks(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if value.contains(['\r', '\n']) {
        return Err(ValidationError::new(
            field,
            format!(
                "`{}` contains a line break (CR or LF)",
                value.escape_debug()
            ),
            "remove the line break: header values and addresses must be one line",
        ));
    }
    Ok(())
}

/// The longest run of non-blank characters a subject may hold: lettre folds a header at
/// blanks, so a longer run would make a line over RFC 5322's 998 characters.
const MAX_SUBJECT_WORD: usize = 900;

/// A subject with no control character but tab (ESC or VT would reach the reader's
/// screen raw) and no run of non-blank characters that cannot be folded into a line.
fn check_subject(subject: &str) -> Result<(), ValidationError> {
    if let Some(c) = subject.chars().find(|c| c.is_control() && *c != '\t') {
        return Err(ValidationError::new(
            "subject",
            format!("contains the control character {}", c.escape_unicode()),
            "remove it: a subject is plain text",
        ));
    }
    if let Some(word) = subject
        .split([' ', '\t'])
        .find(|word| word.chars().count() > MAX_SUBJECT_WORD)
    {
        return Err(ValidationError::new(
            "subject",
            format!(
                "has a run of {} characters without a blank, longer than a header line may be",
                word.chars().count()
            ),
            format!("break it with spaces (at most {MAX_SUBJECT_WORD} characters between blanks)"),
        ));
    }
    Ok(())
}

/// Text with every line break as CRLF, in one pass (lettre's own normalisation of an
/// LF-only body takes time quadratic in its size).
fn crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\r\n");
            }
            '\n' => out.push_str("\r\n"),
            c => out.push(c),
        }
    }
    out
}

fn mailbox(field: &'static str, text: &str) -> Result<Mailbox, ValidationError> {
    refuse_line_breaks(field, text)?;
    text.trim().parse::<Mailbox>().map_err(|error| {
        ValidationError::new(
            field,
            format!("`{}` is not an address ({error})", text.escape_debug()),
            "write box@example.com or \"Name <box@example.com>\"",
        )
    })
}

fn mailboxes(field: &'static str, texts: &[String]) -> Result<Vec<Mailbox>, ValidationError> {
    texts.iter().map(|text| mailbox(field, text)).collect()
}

/// The body before attachments: one part, or the plain/HTML alternative.
enum Content {
    Single(SinglePart),
    Multi(MultiPart),
}

/// A new Message-ID: 128 random bits at the sender's domain.
fn new_message_id(sender: &Address) -> String {
    format!("<{:032x}@{}>", rand::random::<u128>(), sender.domain())
}

impl MessageDraft {
    /// Checks every header value and address for CR/LF and validity, turns fax numbers into
    /// addresses, and formats the message once.
    ///
    /// `account_user` is the From address when the draft sets none; `fax_format` is the
    /// company account's format string.
    pub fn build(
        &self,
        account_user: &str,
        fax_format: Option<&FaxFormat>,
    ) -> Result<BuiltMessage> {
        self.build_with(self.attachments.clone(), account_user, fax_format)
    }

    /// [`MessageDraft::build`] with `attachments` in place of the draft's own, taken by
    /// value: each attachment's bytes move into the encoder without a copy when nothing
    /// else shares them (the outbox's path for large files).
    pub(crate) fn build_with(
        &self,
        attachments: Vec<Attachment>,
        account_user: &str,
        fax_format: Option<&FaxFormat>,
    ) -> Result<BuiltMessage> {
        // Every header value first, so nothing is half-built from a hostile value.
        refuse_line_breaks("subject", &self.subject)?;
        check_subject(&self.subject)?;
        for attachment in &attachments {
            refuse_line_breaks("attachment file name", &attachment.file_name)?;
            refuse_line_breaks("attachment content type", &attachment.content_type)?;
        }
        let from = match &self.from {
            Some(from) => mailbox("from", from)?,
            None => {
                refuse_line_breaks("smtp user", account_user)?;
                account_user.trim().parse::<Mailbox>().map_err(|_| {
                    ValidationError::new(
                        "from",
                        format!(
                            "the account's SMTP user `{}` is not an address",
                            account_user.escape_debug()
                        ),
                        "give the From address (--from box@example.com)",
                    )
                })?
            }
        };
        let mut to = mailboxes("to", &self.to)?;
        let cc = mailboxes("cc", &self.cc)?;
        let bcc = mailboxes("bcc", &self.bcc)?;
        let reply_to = self
            .reply_to
            .as_deref()
            .map(|text| mailbox("reply-to", text))
            .transpose()?;
        if !self.fax.is_empty() {
            let format = fax_format.ok_or_else(|| {
                ValidationError::new(
                    "fax",
                    "the company account has no email-to-fax format string",
                    "set the company account's fax format string, e.g. {0}@fax.example.com",
                )
                .with_remedy(mailroom_model::Remedy::SetFaxFormat)
            })?;
            for number in &self.fax {
                refuse_line_breaks("fax number", number)?;
                to.push(Mailbox::from(format.address_for(number)?));
            }
        }
        let recipients: Vec<Address> = to
            .iter()
            .chain(&cc)
            .chain(&bcc)
            .map(|mailbox| mailbox.email.clone())
            .collect();
        let envelope = Envelope::new(from.email.clone(), recipients)?;
        let message_id = new_message_id(&from.email);

        let mut builder = lettre::Message::builder()
            .from(from)
            .subject(self.subject.clone())
            .message_id(Some(message_id.clone()));
        // Each header set once with all its mailboxes, folded: lettre's `to`/`cc` add one
        // mailbox by parsing and re-encoding the whole header (quadratic in the
        // recipients), and write the list on one line however long.
        if !to.is_empty() {
            builder = builder.raw_header(folded_mailboxes("To", &to));
        }
        if !cc.is_empty() {
            builder = builder.raw_header(folded_mailboxes("Cc", &cc));
        }
        if let Some(reply_to) = reply_to {
            builder = builder.reply_to(reply_to);
        }
        // The envelope is ours (Bcc included); the bytes never carry Bcc. lettre would
        // derive an envelope from the headers and refuse a message with only Bcc
        // recipients, so give it ours.
        let lettre_envelope = lettre::address::Envelope::new(
            Some(envelope.sender().clone()),
            envelope.recipients().to_vec(),
        )
        .map_err(|error| Error::Build(error.to_string()))?;
        builder = builder.envelope(lettre_envelope);

        let content = match (&self.text, &self.html) {
            (Some(text), Some(html)) => {
                Content::Multi(MultiPart::alternative_plain_html(crlf(text), crlf(html)))
            }
            (Some(text), None) => Content::Single(SinglePart::plain(crlf(text))),
            (None, Some(html)) => Content::Single(SinglePart::html(crlf(html))),
            (None, None) => Content::Single(SinglePart::plain(String::new())),
        };
        let message = if attachments.is_empty() {
            match content {
                Content::Single(part) => builder.singlepart(part),
                Content::Multi(part) => builder.multipart(part),
            }
        } else {
            let mut mixed = match content {
                Content::Single(part) => MultiPart::mixed().singlepart(part),
                Content::Multi(part) => MultiPart::mixed().multipart(part),
            };
            for attachment in attachments {
                let content_type = ContentType::parse(&attachment.content_type).map_err(|_| {
                    ValidationError::new(
                        "attachment content type",
                        format!("`{}` is not a MIME type", attachment.content_type),
                        "use a type such as application/pdf",
                    )
                })?;
                mixed = mixed.singlepart(
                    LettreAttachment::new(attachment.file_name)
                        .body(Vec::from(attachment.content), content_type),
                );
            }
            builder.multipart(mixed)
        }
        .map_err(|error| Error::Build(error.to_string()))?;

        let bcc_header = (!bcc.is_empty()).then(|| {
            let mut headers = Headers::new();
            headers.insert_raw(folded_mailboxes("Bcc", &bcc));
            headers.to_string()
        });
        // Formatted, then the encoded parts are freed before the bytes go anywhere.
        let bytes = Bytes::from(message.formatted());
        drop(message);
        Ok(BuiltMessage {
            envelope,
            bytes,
            message_id,
            bcc_header,
        })
    }
}

/// The header `name` (To, Cc or Bcc) listing `mailboxes`, folded between them so that no
/// line is longer than 78 characters unless one mailbox is (RFC 5322 2.1.1 and 2.2.3;
/// lettre writes an address list on one line, and past 998 characters servers refuse
/// it). Each mailbox is encoded by lettre (RFC 2047 for a display name), one at a time.
fn folded_mailboxes(name: &'static str, mailboxes: &[Mailbox]) -> HeaderValue {
    const FOLD_AT: usize = 78;
    let header_name = HeaderName::new_from_ascii_str(name);
    let mut encoded = String::new();
    let mut line = name.len() + ": ".len();
    for (index, mailbox) in mailboxes.iter().enumerate() {
        let mut one = Headers::new();
        one.set(header::Bcc::from(Mailboxes::from(mailbox.clone())));
        let text = one.to_string();
        let piece = text
            .strip_prefix("Bcc: ")
            .unwrap_or(&text)
            .trim_end_matches("\r\n");
        let first_line = piece.split("\r\n").next().unwrap_or("").len();
        // A one-line mailbox that is not the last ends its line with the next comma.
        let comma = usize::from(index + 1 < mailboxes.len() && !piece.contains("\r\n"));
        if index > 0 {
            encoded.push(',');
            line += 1;
            if line + 1 + first_line + comma > FOLD_AT {
                encoded.push_str("\r\n ");
                line = 1;
            } else {
                encoded.push(' ');
                line += 1;
            }
        }
        encoded.push_str(piece);
        line = match piece.rsplit_once("\r\n") {
            Some((_, last)) => last.len(),
            None => line + piece.len(),
        };
    }
    let raw = Mailboxes::from(mailboxes.to_vec()).to_string();
    HeaderValue::dangerous_new_pre_encoded(header_name, raw, encoded)
}

impl BuiltMessage {
    /// The bytes for a transport that reads recipients from the headers (the Gmail API):
    /// the Bcc header line in front of the message, which Gmail removes before delivery.
    pub fn bytes_with_bcc(&self) -> Bytes {
        with_bcc(&self.bytes, self.bcc_header.as_deref())
    }
}

pub(crate) fn with_bcc(bytes: &Bytes, bcc_header: Option<&str>) -> Bytes {
    match bcc_header {
        Some(header) => {
            let mut joined = Vec::with_capacity(header.len() + bytes.len());
            joined.extend_from_slice(header.as_bytes());
            joined.extend_from_slice(bytes);
            Bytes::from(joined)
        }
        None => bytes.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> MessageDraft {
        MessageDraft {
            to: vec!["to@example.com".to_owned()],
            subject: "Grüße".to_owned(),
            text: Some("hello".to_owned()),
            ..MessageDraft::default()
        }
    }

    #[tokio::test]
    async fn a_read_takes_up_to_its_limit_and_refuses_one_byte_more() {
        let ten = [7u8; 10];
        assert_eq!(
            read_at_most(&ten[..], 10, 10).await.unwrap(),
            Some(ten.to_vec())
        );
        assert_eq!(
            read_at_most(&ten[..9], 10, 0).await.unwrap(),
            Some(vec![7; 9])
        );
        assert_eq!(read_at_most(&ten[..], 9, 9).await.unwrap(), None);
        assert_eq!(read_at_most(&[][..], 0, 0).await.unwrap(), Some(Vec::new()));
    }

    #[test]
    fn an_attachments_debug_shows_its_size_not_its_content() {
        let attachment = Attachment::new("ledger.pdf", &b"%PDF-1.7 secret figures"[..]);
        assert_eq!(
            format!("{attachment:?}"),
            "Attachment { file_name: \"ledger.pdf\", content_type: \"application/pdf\", size: 23 }"
        );
    }

    #[test]
    fn thousands_of_recipients_are_all_in_their_headers_and_the_envelope_once() {
        let to: Vec<String> = (0..3_000).map(|n| format!("to{n}@example.com")).collect();
        let mut cc: Vec<String> = (0..2_000).map(|n| format!("cc{n}@example.com")).collect();
        // A recipient given twice is sent to once.
        cc.push("to7@example.com".to_owned());
        let built = MessageDraft {
            to: to.clone(),
            cc,
            ..draft()
        }
        .build("box@example.com", None)
        .unwrap();
        assert_eq!(built.envelope.recipients().len(), 5_000);
        let text = String::from_utf8_lossy(&built.bytes);
        let (headers, _) = text.split_once("\r\n\r\n").unwrap();
        for n in [0, 1_234, 2_999] {
            assert!(headers.contains(&format!("to{n}@example.com")), "to{n}");
        }
        assert!(headers.contains("cc1999@example.com"));
        // Folded into lines of the RFC's recommended length, each header once.
        let longest = headers.lines().map(str::len).max().unwrap();
        assert!(longest <= 78, "a header line of {longest} characters");
        assert_eq!(headers.matches("\r\nTo: ").count(), 1);
        assert_eq!(headers.matches("\r\nCc: ").count(), 1);
    }

    #[test]
    fn an_address_list_folds_where_the_next_mailbox_and_its_comma_would_pass_78() {
        let folded = |addresses: &[&str]| {
            let mailboxes: Vec<Mailbox> = addresses.iter().map(|a| a.parse().unwrap()).collect();
            let mut headers = Headers::new();
            headers.insert_raw(folded_mailboxes("Bcc", &mailboxes));
            headers.to_string()
        };
        let [b, c, d, e] = ["b", "c", "d", "e"].map(|n| format!("{n}@example.com"));
        // The first line, its comma included, is exactly 78 characters.
        let exact = folded(&["abcdefghijklmno@example.com", &b, &c, &d, &e]);
        assert_eq!(
            exact,
            "Bcc: abcdefghijklmno@example.com, b@example.com, c@example.com, d@example.com,\r\n e@example.com\r\n"
        );
        assert_eq!(exact.lines().next().unwrap().len(), 78);
        // One character more and `d@example.com,` would end at 79: folded before it.
        assert_eq!(
            folded(&["abcdefghijklmnop@example.com", &b, &c, &d, &e]),
            "Bcc: abcdefghijklmnop@example.com, b@example.com, c@example.com,\r\n d@example.com, e@example.com\r\n"
        );
        // The last mailbox (no comma after it) would end at 80: folded.
        assert_eq!(
            folded(&["abcdefghijklmnopqr@example.com", &b, &c, &d]),
            "Bcc: abcdefghijklmnopqr@example.com, b@example.com, c@example.com,\r\n d@example.com\r\n"
        );
    }

    #[test]
    fn folded_address_lists_parse_back_to_the_same_mailboxes() {
        let mailboxes: Vec<Mailbox> = (0..40)
            .map(|n| match n % 4 {
                0 => format!("\"Smith, John {n}\" <john{n}@example.com>"),
                1 => format!("Jürgen Müller-Lüdenscheidt {n} <j{n}@example.com>"),
                2 => format!("plain{n}@example.com"),
                _ => format!("A very long display name that on its own is longer than a line {n} <long{n}@example.com>"),
            })
            .map(|text| text.parse().unwrap())
            .collect();
        for count in [1, 2, 3, 40] {
            let list = &mailboxes[..count];
            let mut ours = Headers::new();
            ours.insert_raw(folded_mailboxes("To", list));
            let ours = ours.to_string();
            // Parsed back by another library (folds joined, encoded words decoded): the
            // same mailboxes.
            let (parsed, _) = mailparse::parse_header(ours.as_bytes()).unwrap();
            let parsed: Vec<(Option<String>, String)> = mailparse::addrparse_header(&parsed)
                .unwrap()
                .iter()
                .map(|address| match address {
                    mailparse::MailAddr::Single(single) => {
                        (single.display_name.clone(), single.addr.clone())
                    }
                    mailparse::MailAddr::Group(group) => panic!("a group: {group:?}"),
                })
                .collect();
            let expected: Vec<(Option<String>, String)> = list
                .iter()
                .map(|mailbox| (mailbox.name.clone(), mailbox.email.to_string()))
                .collect();
            assert_eq!(parsed, expected, "{count} mailboxes: {ours}");
            assert!(ours.is_ascii());
            // Folded between mailboxes: only a line holding one long mailbox is longer.
            for line in ours.lines() {
                assert!(
                    line.len() <= 78 || !line.trim_end_matches(',').contains(">,"),
                    "{line}"
                );
            }
        }
    }

    #[track_caller]
    fn check_refused(draft: MessageDraft, field: &str) {
        let error = draft.build("box@example.com", None).unwrap_err();
        let text = error.to_string();
        assert!(text.contains(field), "{text}");
        assert!(
            text.contains("line break") || text.contains("not an address"),
            "{text}"
        );
    }

    #[test]
    fn line_breaks_in_any_header_value_or_address_are_refused() {
        check_refused(
            MessageDraft {
                subject: "hi\r\nBcc: victim@example.com".to_owned(),
                ..draft()
            },
            "subject",
        );
        check_refused(
            MessageDraft {
                to: vec!["a@example.com\r\nBcc: victim@example.com".to_owned()],
                ..draft()
            },
            "to",
        );
        check_refused(
            MessageDraft {
                cc: vec!["a@example.com\n".to_owned()],
                ..draft()
            },
            "cc",
        );
        check_refused(
            MessageDraft {
                bcc: vec!["\rb@example.com".to_owned()],
                ..draft()
            },
            "bcc",
        );
        check_refused(
            MessageDraft {
                from: Some("Evil\n <e@example.com>".to_owned()),
                ..draft()
            },
            "from",
        );
        check_refused(
            MessageDraft {
                reply_to: Some("r@example.com\r\nX: y".to_owned()),
                ..draft()
            },
            "reply-to",
        );
        let mut with_attachment = draft();
        with_attachment
            .attachments
            .push(Attachment::new("a\r\nb.pdf", b"x".to_vec()));
        check_refused(with_attachment, "attachment file name");
    }

    #[test]
    fn bcc_is_in_the_envelope_not_the_bytes_and_the_gmail_bytes_add_it() {
        let built = MessageDraft {
            bcc: vec!["hidden@example.com".to_owned()],
            ..draft()
        }
        .build("box@example.com", None)
        .unwrap();
        let text = String::from_utf8(built.bytes.to_vec()).unwrap();
        assert!(!text.contains("hidden@example.com"), "{text}");
        assert!(text.contains(&format!("Message-ID: {}", built.message_id)));
        assert_eq!(
            built
                .envelope
                .recipients()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["to@example.com", "hidden@example.com"]
        );
        let gmail = String::from_utf8(built.bytes_with_bcc().to_vec()).unwrap();
        assert!(gmail.starts_with("Bcc: hidden@example.com\r\n"), "{gmail}");
        assert!(gmail.ends_with(&text));
    }

    #[test]
    fn content_types_come_from_file_names() {
        assert_eq!(
            Attachment::new("q.pdf", Vec::new()).content_type,
            "application/pdf"
        );
        assert_eq!(
            Attachment::new("a.PNG", Vec::new()).content_type,
            "image/png"
        );
        assert_eq!(
            Attachment::new("noext", Vec::new()).content_type,
            "application/octet-stream"
        );
    }

    #[test]
    fn a_fax_number_becomes_an_address_and_needs_a_format() {
        let format = FaxFormat::parse("{0}@fax.example.com").unwrap();
        let built = MessageDraft {
            to: Vec::new(),
            fax: vec!["+1 (555) 010-2000".to_owned()],
            ..draft()
        }
        .build("box@example.com", Some(&format))
        .unwrap();
        assert_eq!(
            built.envelope.recipients()[0].to_string(),
            "+15550102000@fax.example.com"
        );
        let error = MessageDraft {
            fax: vec!["555".to_owned()],
            ..draft()
        }
        .build("box@example.com", None)
        .unwrap_err();
        assert!(error.to_string().contains("fax format string"), "{error}");
        let Error::Invalid(invalid) = &error else {
            panic!("not a validation error: {error:?}")
        };
        assert_eq!(
            invalid.remedy(),
            Some(&mailroom_model::Remedy::SetFaxFormat)
        );
    }

    #[test]
    fn a_login_name_as_smtp_user_needs_an_explicit_from() {
        let error = draft().build("relay", None).unwrap_err();
        assert!(error.to_string().contains("--from"), "{error}");
        let built = MessageDraft {
            from: Some("Orders <orders@example.com>".to_owned()),
            ..draft()
        }
        .build("relay", None)
        .unwrap();
        assert_eq!(built.envelope.sender().to_string(), "orders@example.com");
    }

    #[test]
    fn line_breaks_become_crlf_in_one_pass() {
        assert_eq!(crlf("a\nb\r\nc\rd\n\n"), "a\r\nb\r\nc\r\nd\r\n\r\n");
        assert_eq!(crlf(""), "");
        assert_eq!(crlf("no breaks"), "no breaks");
        let built = MessageDraft {
            text: Some("one\ntwo\rthree".to_owned()),
            ..draft()
        }
        .build("box@example.com", None)
        .unwrap();
        let text = String::from_utf8_lossy(&built.bytes);
        assert!(text.contains("one\r\ntwo\r\nthree"), "{text}");
    }

    #[test]
    fn a_subject_is_plain_text_that_folds_into_header_lines() {
        for bad in ["\u{1b}[31mred", "tab\u{b}vertical"] {
            let error = MessageDraft {
                subject: bad.to_owned(),
                ..draft()
            }
            .build("box@example.com", None)
            .unwrap_err();
            assert!(error.to_string().contains("control character"), "{error}");
        }
        let unbreakable = MessageDraft {
            subject: "x".repeat(MAX_SUBJECT_WORD + 1),
            ..draft()
        }
        .build("box@example.com", None)
        .unwrap_err();
        assert!(
            unbreakable.to_string().contains("without a blank"),
            "{unbreakable}"
        );
        // At the limit, and long subjects with blanks, build with every line within 998.
        for subject in [
            "x".repeat(MAX_SUBJECT_WORD),
            "word ".repeat(600),
            "a\tb".to_owned(),
        ] {
            let built = MessageDraft { subject, ..draft() }
                .build("box@example.com", None)
                .unwrap();
            let longest = String::from_utf8_lossy(&built.bytes)
                .split("\r\n")
                .map(str::len)
                .max()
                .unwrap();
            assert!(longest <= 998, "a {longest}-byte line");
        }
    }

    proptest::proptest! {
        /// Whatever the line breaks, the result has only CRLF ones and the same text
        /// between them.
        #[test]
        fn crlf_leaves_no_lone_cr_or_lf(text in "[a\r\n ]{0,64}") {
            let out = crlf(&text);
            let without_crlf = out.replace("\r\n", "");
            proptest::prop_assert!(!without_crlf.contains(['\r', '\n']), "{:?}", out);
            let words = |s: &str| s.split(['\r', '\n']).filter(|w| !w.is_empty()).map(str::to_owned).collect::<Vec<_>>();
            proptest::prop_assert_eq!(words(&out), words(&text));
        }
    }

    #[tokio::test]
    async fn only_regular_files_within_the_limit_are_read_as_attachments() {
        for not_regular in ["/dev/zero", "/"] {
            let error = Attachment::from_path(not_regular).await.unwrap_err();
            assert!(
                matches!(&error, Error::AttachmentRefused { problem, .. } if problem.contains("not a regular file")),
                "{not_regular}: {error}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        // A sparse file one byte over the limit: refused from its size, never read.
        let large = dir.path().join("large.bin");
        std::fs::File::create(&large)
            .unwrap()
            .set_len(MAX_ATTACHMENT_SIZE + 1)
            .unwrap();
        let error = Attachment::from_path(&large).await.unwrap_err();
        assert!(
            matches!(&error, Error::AttachmentRefused { problem, .. } if problem.contains(&(MAX_ATTACHMENT_SIZE + 1).to_string())),
            "{error}"
        );
        // Exactly the limit: read whole.
        let largest = dir.path().join("largest.bin");
        std::fs::File::create(&largest)
            .unwrap()
            .set_len(MAX_ATTACHMENT_SIZE)
            .unwrap();
        let attachment = Attachment::from_path(&largest).await.unwrap();
        assert_eq!(attachment.content.len() as u64, MAX_ATTACHMENT_SIZE);
        drop(attachment);
        let small = dir.path().join("order.pdf");
        std::fs::write(&small, b"%PDF-1.4").unwrap();
        let attachment = Attachment::from_path(&small).await.unwrap();
        assert_eq!(attachment.file_name, "order.pdf");
        assert_eq!(attachment.content.as_ref(), b"%PDF-1.4");
    }
}
