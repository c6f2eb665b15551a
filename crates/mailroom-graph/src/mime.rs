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
    fn a_part_is_an_attachment_when_its_disposition_says_so_or_it_has_a_name() {
        #[track_caller]
        fn attachment(headers: &str) -> bool {
            let text = format!("{headers}\r\n\r\nbody\r\n");
            is_attachment(&mailparse::parse_mail(text.as_bytes()).expect("parses"))
        }
        // `attachment`, with or without a name.
        assert!(attachment(
            "Content-Type: application/pdf\r\nContent-Disposition: attachment"
        ));
        assert!(attachment(
            "Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"r.pdf\""
        ));
        // `inline` (or none) with a file name or a content-type name: an inline image.
        assert!(attachment(
            "Content-Type: image/png\r\nContent-Disposition: inline; filename=\"logo.png\""
        ));
        assert!(attachment(
            "Content-Type: image/png; name=\"logo.png\"\r\nContent-Disposition: inline"
        ));
        assert!(attachment("Content-Type: image/png; name=\"logo.png\""));
        // `inline` or none without a name: the message's own text.
        assert!(!attachment(
            "Content-Type: image/png\r\nContent-Disposition: inline"
        ));
        assert!(!attachment("Content-Type: text/plain; charset=utf-8"));
        assert!(!attachment(
            "Content-Type: text/html; charset=utf-8\r\nContent-Disposition: inline"
        ));
    }

    #[test]
    fn an_attachment_of_exactly_3_mib_always_moves_and_a_byte_less_only_when_needed() {
        let exact = vec![5u8; LARGE_ATTACHMENT as usize];
        let bytes = message(&[("exact.bin", &exact)]);
        let split = split(&bytes, u64::MAX).expect("splits");
        assert_eq!(split.moved.len(), 1);
        assert_eq!(split.moved[0].size, LARGE_ATTACHMENT);
        assert_eq!(split.draft, message(&[]));

        let under = vec![5u8; LARGE_ATTACHMENT as usize - 1];
        let bytes = message(&[("under.bin", &under)]);
        let split = super::split(&bytes, u64::MAX).expect("splits");
        assert!(split.moved.is_empty());
        assert_eq!(split.draft, bytes);
    }

    #[test]
    fn the_limit_is_inclusive_for_the_whole_message_and_for_the_rest() {
        let bytes = message(&[("small.txt", b"a small attachment")]);
        let whole = base64_len(bytes.len() as u64);
        // Exactly at the limit: nothing moves.
        let split = split(&bytes, whole).expect("fits");
        assert!(split.moved.is_empty());
        assert_eq!(split.draft, bytes);
        // One below: the attachment moves, and the rest fits exactly.
        let rest = message(&[]);
        let split = super::split(&bytes, whole - 1).expect("splits");
        assert_eq!(split.moved.len(), 1);
        assert_eq!(split.moved[0].name, "small.txt");
        assert_eq!(split.draft, rest);
        let split = super::split(&bytes, base64_len(rest.len() as u64)).expect("splits");
        assert_eq!(split.draft, rest);
        // Below what the rest needs: refused, saying how large the rest is.
        assert_eq!(
            super::split(&bytes, base64_len(rest.len() as u64) - 1).expect_err("too large"),
            SplitError::StillTooLarge {
                rest: rest.len() as u64
            }
        );
    }

    #[test]
    fn the_message_text_is_never_cut_out() {
        let bytes = message(&[]);
        assert_eq!(
            split(&bytes, 10).expect_err("nothing to move"),
            SplitError::StillTooLarge {
                rest: bytes.len() as u64
            }
        );
    }

    /// A message as mail clients send it, with line ends `eol`: text and HTML alternatives
    /// and an inline image in a multipart/related, a PDF named only by its content type, and
    /// a nameless quoted-printable attachment with an empty Content-ID.
    fn nested_message(eol: &str, logo: &[u8], pdf: &[u8]) -> (String, String) {
        let lines = |data: &[u8]| b64_lines(data).replace("\r\n", eol);
        let head = [
            "From: sales@contoso.com",
            "To: customer@fabrikam.com",
            "Subject: Report",
            "MIME-Version: 1.0",
            "Content-Type: multipart/mixed; boundary=\"mixed\"",
            "",
            "This is a multi-part message in MIME format.",
            "--mixed",
            "Content-Type: multipart/related; boundary=\"related\"",
            "",
            "--related",
            "Content-Type: multipart/alternative; boundary=\"alt\"",
            "",
            "--alt",
            "Content-Type: text/plain; charset=utf-8",
            "",
            "See the logo.",
            "--alt",
            "Content-Type: text/html; charset=utf-8",
            "",
            "<p>See the logo: <img src=\"cid:logo@contoso.com\"></p>",
            "--alt--",
            "",
        ]
        .join(eol);
        let logo_part = [
            "Content-Type: image/png",
            "Content-Disposition: inline; filename=\"logo.png\"",
            "Content-ID: <logo@contoso.com>",
            "Content-Transfer-Encoding: base64",
            "",
            &lines(logo),
        ]
        .join(eol);
        let pdf_part = [
            "Content-Type: application/pdf; name=\"report.pdf\"",
            "Content-Transfer-Encoding: base64",
            "",
            &lines(pdf),
        ]
        .join(eol);
        let csv_part = [
            "Content-Type: text/csv",
            "Content-Disposition: attachment",
            "Content-ID: <>",
            "Content-Transfer-Encoding: quoted-printable",
            "",
            "a,b=3Dc",
        ]
        .join(eol);
        let full = format!(
            "{head}{eol}--related{eol}{logo_part}{eol}--related--{eol}{eol}--mixed{eol}{pdf_part}{eol}--mixed{eol}{csv_part}{eol}--mixed--{eol}"
        );
        let draft = format!("{head}{eol}--related--{eol}{eol}--mixed--{eol}");
        (full, draft)
    }

    #[track_caller]
    fn check_nested(eol: &str) {
        let logo: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let pdf: Vec<u8> = (0..2000u32).map(|i| (i % 241) as u8).collect();
        let (full, draft) = nested_message(eol, &logo, &pdf);
        let bytes = full.as_bytes();

        let parsed = mailparse::parse_mail(bytes).expect("parses");
        let mut found = Vec::new();
        collect(&parsed, bytes, &mut found).expect("collects");
        let summary: Vec<_> = found
            .iter()
            .map(|a| {
                (
                    a.name.as_str(),
                    a.content_type.as_str(),
                    a.content_id.as_deref(),
                    a.size,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("logo.png", "image/png", Some("logo@contoso.com"), 1000),
                ("report.pdf", "application/pdf", None, 2000),
                ("attachment", "text/csv", None, 5),
            ]
        );
        assert!(found[0].is_inline);
        assert!(!found[2].is_inline);
        // Each part is its headers and encoded body, without the line break before the
        // next delimiter; the cut adds the line break before its own delimiter.
        for (attachment, starts) in found.iter().zip([
            "Content-Type: image/png",
            "Content-Type: application/pdf",
            "Content-Type: text/csv",
        ]) {
            let part = &full[attachment.part.clone()];
            assert!(part.starts_with(starts), "{part}");
            assert!(!part.ends_with('\n'), "{part:?}");
            assert_eq!(attachment.cut.end, attachment.part.end);
            let delimiter = &full[attachment.cut.start..attachment.part.start];
            assert!(delimiter.starts_with(eol), "{delimiter:?}");
            assert!(
                delimiter == format!("{eol}--related{eol}")
                    || delimiter == format!("{eol}--mixed{eol}"),
                "{delimiter:?}"
            );
        }
        assert_eq!(found[0].decode(bytes).expect("decodes"), logo);
        assert_eq!(found[1].decode(bytes).expect("decodes"), pdf);
        assert_eq!(found[2].decode(bytes).expect("decodes"), b"a,b=c");
        drop(parsed);

        // Every attachment cut out leaves the text, the HTML and the structure.
        let split = split(bytes, base64_len(draft.len() as u64)).expect("splits");
        assert_eq!(split.moved, found);
        assert_eq!(String::from_utf8(split.draft).expect("ascii"), draft);
        let parsed = mailparse::parse_mail(draft.as_bytes()).expect("the draft parses");
        let related = &parsed.subparts[0];
        assert_eq!(related.ctype.mimetype, "multipart/related");
        assert_eq!(related.subparts.len(), 1);
        assert_eq!(related.subparts[0].subparts.len(), 2);
    }

    #[test]
    fn nested_parts_inline_images_and_named_parts_are_found_and_cut_exactly() {
        check_nested("\r\n");
    }

    #[test]
    fn a_message_with_bare_line_feeds_is_cut_exactly_too() {
        check_nested("\n");
    }

    #[test]
    fn the_decoded_size_counts_base64_padding_and_unencoded_bodies() {
        for size in 0..8usize {
            let data: Vec<u8> = (0..size).map(|i| 0xF0 | i as u8).collect();
            let bytes = message(&[("data.bin", &data)]);
            let parsed = mailparse::parse_mail(&bytes).expect("parses");
            let mut found = Vec::new();
            collect(&parsed, &bytes, &mut found).expect("collects");
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].size, size as u64, "{size} bytes");
            assert_eq!(found[0].decode(&bytes).expect("decodes"), data);
        }
        let text = "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nbody\r\n--B\r\nContent-Type: text/plain; name=notes.txt\r\n\r\nseven bit notes\r\n--B\r\nContent-Type: application/octet-stream; name=raw.bin\r\nContent-Transfer-Encoding: binary\r\n\r\nraw\x01bytes\r\n--B--\r\n";
        let parsed = mailparse::parse_mail(text.as_bytes()).expect("parses");
        let mut found = Vec::new();
        collect(&parsed, text.as_bytes(), &mut found).expect("collects");
        let sizes: Vec<_> = found.iter().map(|a| (a.name.as_str(), a.size)).collect();
        assert_eq!(sizes, [("notes.txt", 15), ("raw.bin", 9)]);
        assert_eq!(
            found[0].decode(text.as_bytes()).expect("decodes"),
            b"seven bit notes"
        );
        assert_eq!(
            found[1].decode(text.as_bytes()).expect("decodes"),
            b"raw\x01bytes"
        );
    }

    #[test]
    fn base64_over_several_blocks_decodes_with_its_line_breaks() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 256) as u8).collect();
        let encoded = b64_lines(&data);
        assert_eq!(
            decode_base64(encoded.as_bytes(), data.len()).expect("decodes"),
            data
        );
        let error = decode_base64(b"QUJD\r\nR*==", 4).expect_err("invalid");
        assert!(
            error.starts_with("an attachment's base64 is invalid"),
            "{error}"
        );
    }

    #[test]
    fn cut_ranges_take_the_line_break_before_the_delimiter_or_else_after_the_part() {
        let cut = |message: &str, part: &str| {
            let start = message.find(part).expect("the part is in the message");
            cut_range(message.as_bytes(), start, start + part.len(), "B")
        };
        let part = "Content-Type: text/plain\r\n\r\nx";
        // The CRLF before the delimiter.
        let message = format!("preamble\r\n--B\r\n{part}\r\n--B--\r\n");
        assert_eq!(cut(&message, part), Some(8..44));
        // A bare LF before the delimiter.
        let message = format!("preamble\n--B\n{part}\n--B--\n");
        assert_eq!(cut(&message, part), Some(8..42));
        // A delimiter at the very start: the line break after the part instead.
        let message = format!("--B\r\n{part}\r\n--B--\r\n");
        assert_eq!(cut(&message, part), Some(0..36));
        let message = format!("--B\n{part}\n--B--\n");
        assert_eq!(cut(&message, part), Some(0..34));
        let message = format!("--B\r\n{part}");
        assert_eq!(cut(&message, part), Some(0..34));
        // Something other than whitespace after the delimiter: not this part's delimiter.
        let message = format!("\r\n--B\r\nX-Other: 1\r\n{part}\r\n--B--\r\n");
        assert_eq!(cut(&message, part), None);
        // No delimiter at all.
        assert_eq!(cut(part, part), None);
    }

    #[test]
    fn base64_lengths() {
        assert_eq!(base64_len(0), 0);
        assert_eq!(base64_len(1), 4);
        assert_eq!(base64_len(3), 4);
        assert_eq!(base64_len(4), 8);
    }
}
