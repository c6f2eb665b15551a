//! Splits a MIME message that is too large for one Graph request: the message without
//! some of its attachments (for the draft), and those attachments (for upload sessions or
//! `POST .../attachments`).
//!
//! A part is cut out of its parent multipart with the delimiter line before it (RFC 2046
//! 5.1.1: the CRLF before `--boundary` belongs to the delimiter), so the rest of the message
//! keeps its bytes, boundaries and encodings exactly.

use std::ops::Range;

use base64::Engine as _;
use mailparse::{DispositionType, MailHeaderMap, ParsedMail};

use crate::LARGE_ATTACHMENT;

/// An attachment taken out of the message: its metadata and where its part is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attachment {
    pub(crate) name: String,
    pub(crate) content_type: String,
    pub(crate) content_id: Option<String>,
    pub(crate) is_inline: bool,
    /// The decoded size.
    pub(crate) size: u64,
    /// The part (headers and encoded body) in the message's bytes.
    part: Range<usize>,
    /// What is cut from the message to remove it (the part and its delimiter line).
    cut: Range<usize>,
}

/// The message split for the draft path.
#[derive(Debug)]
pub(crate) struct Split {
    /// The message without the attachments of `moved`.
    pub(crate) draft: Vec<u8>,
    /// The attachments cut out, in message order.
    pub(crate) moved: Vec<Attachment>,
}

/// Why a message cannot be split.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SplitError {
    /// Not parseable as MIME.
    Unparseable(String),
    /// Even without every attachment, the rest is larger than `limit` in base64.
    StillTooLarge { rest: u64 },
}

/// The length of `n` bytes in base64 (with padding).
pub(crate) fn base64_len(n: u64) -> u64 {
    n.div_ceil(3) * 4
}

/// Cuts attachments out of `bytes` until the rest, base64-encoded, fits in `limit`: every
/// attachment of [`LARGE_ATTACHMENT`] or more, then smaller ones, largest first.
pub(crate) fn split(bytes: &[u8], limit: u64) -> Result<Split, SplitError> {
    let parsed =
        mailparse::parse_mail(bytes).map_err(|error| SplitError::Unparseable(error.to_string()))?;
    let mut candidates = Vec::new();
    collect(&parsed, bytes, &mut candidates)
        .map_err(|error| SplitError::Unparseable(error.to_string()))?;
    drop(parsed);
    // Largest first; the large ones always move.
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| candidates[b].size.cmp(&candidates[a].size));
    let mut moved = vec![false; candidates.len()];
    let mut rest = bytes.len() as u64;
    for index in order {
        let candidate = &candidates[index];
        if candidate.size < LARGE_ATTACHMENT && base64_len(rest) <= limit {
            break;
        }
        moved[index] = true;
        rest -= candidate.cut.len() as u64;
    }
    if base64_len(rest) > limit {
        return Err(SplitError::StillTooLarge { rest });
    }
    let moved: Vec<Attachment> = candidates
        .into_iter()
        .zip(moved)
        .filter_map(|(candidate, moved)| moved.then_some(candidate))
        .collect();
    let mut draft = Vec::with_capacity(usize::try_from(rest).unwrap_or(0));
    let mut at = 0;
    for attachment in &moved {
        draft.extend_from_slice(&bytes[at..attachment.cut.start]);
        at = attachment.cut.end;
    }
    draft.extend_from_slice(&bytes[at..]);
    Ok(Split { draft, moved })
}

/// The leaf attachment parts below `part`, with what to cut to remove each.
fn collect(
    part: &ParsedMail<'_>,
    message: &[u8],
    out: &mut Vec<Attachment>,
) -> Result<(), mailparse::MailParseError> {
    if part.subparts.is_empty() {
        return Ok(());
    }
    let boundary = part
        .ctype
        .params
        .get("boundary")
        .cloned()
        .unwrap_or_default();
    for sub in &part.subparts {
        if !sub.subparts.is_empty() {
            collect(sub, message, out)?;
            continue;
        }
        if boundary.is_empty() || !is_attachment(sub) {
            continue;
        }
        let start = offset_in(message, sub.raw_bytes);
        let end = start + sub.raw_bytes.len();
        let Some(cut) = cut_range(message, start, end, &boundary) else {
            continue;
        };
        let disposition = sub.get_content_disposition();
        let name = disposition
            .params
            .get("filename")
            .or_else(|| sub.ctype.params.get("name"))
            .cloned()
            .unwrap_or_else(|| "attachment".to_owned());
        let content_id = sub
            .headers
            .get_first_value("Content-ID")
            .map(|id| {
                id.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
            .filter(|id| !id.is_empty());
        out.push(Attachment {
            name,
            content_type: sub.ctype.mimetype.clone(),
            content_id,
            is_inline: disposition.disposition == DispositionType::Inline,
            size: decoded_size(sub)?,
            part: start..end,
            cut,
        });
    }
    Ok(())
}

/// An attachment: `Content-Disposition: attachment`, or a named part.
fn is_attachment(part: &ParsedMail<'_>) -> bool {
    let disposition = part.get_content_disposition();
    match disposition.disposition {
        DispositionType::Attachment => true,
        _ => disposition.params.contains_key("filename") || part.ctype.params.contains_key("name"),
    }
}

/// Where `part` (a sub-slice of `message`, as mailparse returns) starts in `message`.
fn offset_in(message: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).saturating_sub(message.as_ptr() as usize)
}

/// The bytes to cut to remove the part `start..end` whose parent's boundary is `boundary`:
/// from the CRLF before its delimiter line to its end; for a first part with no CRLF before
/// its delimiter, from the delimiter to the line break after the part.
fn cut_range(message: &[u8], start: usize, end: usize, boundary: &str) -> Option<Range<usize>> {
    let delimiter = format!("--{boundary}");
    let before = &message[..start];
    let at = before
        .windows(delimiter.len())
        .rposition(|window| window == delimiter.as_bytes())?;
    if message[at..start]
        .iter()
        .skip(delimiter.len())
        .any(|&byte| !matches!(byte, b' ' | b'\t' | b'\r' | b'\n'))
    {
        // Something other than the delimiter line lies between: not this part's delimiter.
        return None;
    }
    if at >= 2 && &message[at - 2..at] == b"\r\n" {
        Some(at - 2..end)
    } else if at >= 1 && message[at - 1] == b'\n' {
        Some(at - 1..end)
    } else {
        let rest = &message[end..];
        let line_break = if rest.starts_with(b"\r\n") {
            2
        } else if rest.starts_with(b"\n") {
            1
        } else {
            0
        };
        Some(at..end + line_break)
    }
}

/// The decoded size of a part's body, without decoding it into memory.
fn decoded_size(part: &ParsedMail<'_>) -> Result<u64, mailparse::MailParseError> {
    Ok(match part.get_body_encoded() {
        mailparse::body::Body::Base64(body) => {
            let raw = body.get_raw();
            let mut symbols = 0u64;
            let mut padding = 0u64;
            for &byte in raw {
                if byte == b'=' {
                    padding += 1;
                } else if !byte.is_ascii_whitespace() {
                    symbols += 1;
                }
            }
            (symbols + padding) / 4 * 3 - padding.min(2)
        }
        mailparse::body::Body::QuotedPrintable(body) => body.get_decoded()?.len() as u64,
        mailparse::body::Body::SevenBit(body) | mailparse::body::Body::EightBit(body) => {
            body.get_raw().len() as u64
        }
        mailparse::body::Body::Binary(body) => body.get_raw().len() as u64,
    })
}

impl Attachment {
    /// The attachment's decoded bytes, decoded from `message` (the bytes `split` was given)
    /// in blocks so no second copy of the encoded text is made.
    pub(crate) fn decode(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let part = mailparse::parse_mail(&message[self.part.clone()])
            .map_err(|error| error.to_string())?;
        match part.get_body_encoded() {
            mailparse::body::Body::Base64(body) => {
                decode_base64(body.get_raw(), usize::try_from(self.size).unwrap_or(0))
            }
            mailparse::body::Body::QuotedPrintable(body) => {
                body.get_decoded().map_err(|error| error.to_string())
            }
            mailparse::body::Body::SevenBit(body) | mailparse::body::Body::EightBit(body) => {
                Ok(body.get_raw().to_vec())
            }
            mailparse::body::Body::Binary(body) => Ok(body.get_raw().to_vec()),
        }
    }
}

/// Decodes base64 text with line breaks, 64 KiB of symbols at a time.
fn decode_base64(encoded: &[u8], capacity: usize) -> Result<Vec<u8>, String> {
    const BLOCK: usize = 64 * 1024;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::with_capacity(capacity);
    let mut block = Vec::with_capacity(BLOCK);
    for &byte in encoded {
        if byte.is_ascii_whitespace() {
            continue;
        }
        block.push(byte);
        if block.len() == BLOCK {
            engine
                .decode_vec(&block, &mut out)
                .map_err(|error| format!("an attachment's base64 is invalid: {error}"))?;
            block.clear();
        }
    }
    if !block.is_empty() {
        engine
            .decode_vec(&block, &mut out)
            .map_err(|error| format!("an attachment's base64 is invalid: {error}"))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64_lines(data: &[u8]) -> String {
        let text = base64::engine::general_purpose::STANDARD.encode(data);
        text.as_bytes()
            .chunks(76)
            .map(|line| std::str::from_utf8(line).expect("ascii"))
            .collect::<Vec<_>>()
            .join("\r\n")
    }

    fn message(parts: &[(&str, &[u8])]) -> Vec<u8> {
        let mut text = String::from(
            "From: a@example.com\r\nTo: b@example.com\r\nBcc: c@example.com\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n",
        );
        for (name, data) in parts {
            text.push_str(&format!(
                "--XX\r\nContent-Type: application/octet-stream; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
                b64_lines(data)
            ));
        }
        text.push_str("--XX--\r\n");
        text.into_bytes()
    }

    #[test]
    fn large_attachments_are_cut_and_decode_to_their_bytes() {
        let big: Vec<u8> = (0..(LARGE_ATTACHMENT as usize + 10))
            .map(|i| (i * 7) as u8)
            .collect();
        let small = b"small attachment".to_vec();
        let bytes = message(&[("big.bin", &big), ("small.txt", &small)]);
        let split = split(&bytes, 4 * 1024 * 1024).expect("splits");
        assert_eq!(split.moved.len(), 1);
        let moved = &split.moved[0];
        assert_eq!(moved.name, "big.bin");
        assert_eq!(moved.content_type, "application/octet-stream");
        assert_eq!(moved.size, big.len() as u64);
        assert!(!moved.is_inline);
        assert_eq!(moved.decode(&bytes).expect("decodes"), big);
        let draft = String::from_utf8(split.draft).expect("ascii");
        assert_eq!(
            draft,
            String::from_utf8(message(&[("small.txt", &small)])).expect("ascii")
        );
        // The draft is still valid MIME with the body and the small attachment.
        let parsed = mailparse::parse_mail(draft.as_bytes()).expect("parses");
        assert_eq!(parsed.subparts.len(), 2);
    }

    #[test]
    fn smaller_attachments_move_too_when_the_rest_is_still_too_large() {
        let a = vec![1u8; 2_000_000];
        let b = vec![2u8; 1_000_000];
        let c = vec![3u8; 10];
        let bytes = message(&[("a", &a), ("b", &b), ("c", &c)]);
        let split = split(&bytes, 1_000_000).expect("splits");
        let names: Vec<&str> = split.moved.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(base64_len(split.draft.len() as u64) <= 1_000_000);
        assert_eq!(split.moved[1].decode(&bytes).expect("decodes"), b);
    }

    #[test]
    fn a_first_part_without_a_preamble_is_cut_with_its_line_break() {
        let data = vec![9u8; 100];
        let text = format!(
            "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Disposition: attachment; filename=x\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--B\r\nContent-Type: text/plain\r\n\r\nbody\r\n--B--\r\n",
            b64_lines(&data)
        );
        let split = split(text.as_bytes(), 10).expect_err("the rest is over 10 bytes");
        assert!(matches!(split, SplitError::StillTooLarge { .. }));
        let split = super::split(text.as_bytes(), 200).expect("splits");
        assert_eq!(split.moved.len(), 1);
        assert_eq!(
            String::from_utf8(split.draft).expect("ascii"),
            "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nbody\r\n--B--\r\n"
        );
    }

    #[test]
    fn a_single_part_message_cannot_be_split() {
        let text = format!("Subject: x\r\n\r\n{}\r\n", "y".repeat(1000));
        assert!(matches!(
            split(text.as_bytes(), 100),
            Err(SplitError::StillTooLarge { .. })
        ));
    }

    #[test]
    fn base64_lengths() {
        assert_eq!(base64_len(0), 0);
        assert_eq!(base64_len(1), 4);
        assert_eq!(base64_len(3), 4);
        assert_eq!(base64_len(4), 8);
    }
}
