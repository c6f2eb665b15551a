//! The SMTP session's bytes: one socket (plain or TLS), bounded reply reads through
//! `smtp-proto`'s I/O-free reply parser, command writes, the STARTTLS upgrade (refused when
//! the server sent anything behind its `220`) and the dot-stuffed message data.
//!
//! Bounds, as enforced here (a reply past one is a protocol error and the connection is
//! dropped):
//! - one reply line: [`MAX_REPLY_LINE`] bytes (code, text and line break);
//! - one whole reply (all its lines, raw): [`MAX_REPLY`] bytes;
//! - the text of one reply: `smtp_proto`'s `MAX_RESPONSE_LENGTH` (4,096 bytes);
//! - the read buffer: [`READ_BUFFER`] bytes, allocated once per connection.
//!
//! So a connection holds at most about 8 + 8 + 4 KiB of reply data whatever the server
//! sends, plus the staging buffer of the message data ([`DATA_CHUNK`]).

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use smtp_proto::response::parser::{MAX_RESPONSE_LENGTH, ResponseReceiver};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::reply::Reply;
use crate::tls::{FirstBytes, TlsMaterial};

/// The longest reply line accepted, in bytes, line break included.
pub(crate) const MAX_REPLY_LINE: usize = 4096;
/// The longest whole reply accepted (every line, raw), in bytes.
pub(crate) const MAX_REPLY: usize = 8192;
/// The read buffer of a connection.
pub(crate) const READ_BUFFER: usize = 8192;
/// Message data is dot-stuffed into a buffer of this size before each write.
pub(crate) const DATA_CHUNK: usize = 64 * 1024;

/// The socket of a session.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<FirstBytes<TcpStream>>>),
    /// Only while the STARTTLS handshake holds the socket (or after it failed).
    Gone,
}

impl Stream {
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the connection is closed")
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}

/// Why reading or writing failed.
#[derive(Debug)]
pub(crate) enum WireError {
    /// The socket failed (including TLS).
    Io(io::Error),
    /// The server closed the connection.
    Closed,
    /// The server broke the protocol (a reply past a bound, bytes that are no reply,
    /// bytes behind the `220` to STARTTLS).
    Protocol(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Io(error) => error.fmt(f),
            WireError::Closed => f.write_str("the server closed the connection"),
            WireError::Protocol(problem) => f.write_str(problem),
        }
    }
}

impl From<io::Error> for WireError {
    fn from(error: io::Error) -> Self {
        WireError::Io(error)
    }
}

/// A reply with its raw bytes (the EHLO capabilities are parsed from them).
#[derive(Debug)]
pub(crate) struct RawReply {
    pub(crate) reply: Reply,
    /// The text lines, without codes and enhanced codes.
    pub(crate) lines: Vec<String>,
    pub(crate) raw: Vec<u8>,
}

/// Reads replies from bytes with the bounds above; the I/O-free half of [`Wire`], so the
/// bounds can be tested with any bytes.
pub(crate) struct ReplyReader {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    receiver: ResponseReceiver,
    raw: Vec<u8>,
    line: usize,
}

impl fmt::Debug for ReplyReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyReader")
            .field("buffered", &(self.end - self.start))
            .finish_non_exhaustive()
    }
}

/// What feeding buffered bytes gave.
pub(crate) enum Fed {
    Reply(Box<RawReply>),
    NeedMore,
}

impl ReplyReader {
    pub(crate) fn new() -> Self {
        Self {
            buf: vec![0u8; READ_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            receiver: ResponseReceiver::default(),
            raw: Vec::new(),
            line: 0,
        }
    }

    /// Bytes received and not yet part of a reply.
    pub(crate) fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The free part of the buffer to read into (the buffer is compacted first).
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    pub(crate) fn filled(&mut self, count: usize) {
        self.end = (self.end + count).min(self.buf.len());
    }

    /// Parses what is buffered: a whole reply, or a need for more bytes.
    pub(crate) fn feed(&mut self) -> Result<Fed, WireError> {
        while self.start < self.end {
            let room = MAX_REPLY - self.raw.len();
            if room == 0 {
                return Err(too_long_reply());
            }
            let available = &self.buf[self.start..self.end];
            let offered = &available[..available.len().min(room)];
            let mut iter = offered.iter();
            let result = self.receiver.parse(&mut iter);
            let consumed = offered.len() - iter.len();
            let used = &offered[..consumed];
            for segment in used.split_inclusive(|byte| *byte == b'\n') {
                self.line += segment.len();
                if self.line > MAX_REPLY_LINE {
                    return Err(WireError::Protocol(format!(
                        "it sent a reply line longer than {MAX_REPLY_LINE} bytes"
                    )));
                }
                if segment.ends_with(b"\n") {
                    self.line = 0;
                }
            }
            self.raw.extend_from_slice(used);
            self.start += consumed;
            match result {
                Ok(response) => {
                    self.receiver.reset();
                    self.line = 0;
                    let raw = std::mem::take(&mut self.raw);
                    return Ok(Fed::Reply(Box::new(to_reply(response, raw))));
                }
                // Everything offered was taken; the loop reads on or asks for more.
                Err(smtp_proto::Error::NeedsMoreData { .. }) => {}
                Err(smtp_proto::Error::ResponseTooLong) => {
                    return Err(WireError::Protocol(format!(
                        "it sent a reply longer than {MAX_RESPONSE_LENGTH} bytes of text"
                    )));
                }
                Err(error) => {
                    return Err(WireError::Protocol(format!(
                        "it sent something that is not an SMTP reply ({error})"
                    )));
                }
            }
        }
        if self.raw.len() >= MAX_REPLY {
            return Err(too_long_reply());
        }
        Ok(Fed::NeedMore)
    }
}

fn too_long_reply() -> WireError {
    WireError::Protocol(format!("it sent a reply longer than {MAX_REPLY} bytes"))
}

fn to_reply(response: smtp_proto::Response<String>, raw: Vec<u8>) -> RawReply {
    let lines: Vec<String> = response
        .message
        .split('\n')
        .map(|line| line.trim_end_matches('\r').to_owned())
        .collect();
    let joined = lines.join(" ");
    let text = if response.esc == [0, 0, 0] {
        joined
    } else {
        let [class, subject, detail] = response.esc;
        if joined.is_empty() {
            format!("{class}.{subject}.{detail}")
        } else {
            format!("{class}.{subject}.{detail} {joined}")
        }
    };
    RawReply {
        reply: Reply {
            code: response.code,
            text,
        },
        lines,
        raw,
    }
}

/// One connection's socket and reply reader.
pub(crate) struct Wire {
    stream: Stream,
    reader: ReplyReader,
}

impl fmt::Debug for Wire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wire")
            .field("tls", &self.stream.is_tls())
            .finish_non_exhaustive()
    }
}

impl Wire {
    pub(crate) fn new(stream: Stream) -> Self {
        Self {
            stream,
            reader: ReplyReader::new(),
        }
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// Reads the next reply (it may already be buffered behind a pipelined one).
    pub(crate) async fn read_reply(&mut self) -> Result<RawReply, WireError> {
        loop {
            if let Fed::Reply(reply) = self.reader.feed()? {
                return Ok(*reply);
            }
            let spare = self.reader.spare();
            let count = self.stream.read(spare).await?;
            if count == 0 {
                return Err(WireError::Closed);
            }
            self.reader.filled(count);
        }
    }

    /// Writes bytes and flushes them.
    pub(crate) async fn send(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Starts TLS after the server's `220` to STARTTLS. Any byte received after that reply
    /// is refused: it arrived before TLS and would be read as if the server sent it inside
    /// (the CVE-2011-0411 class).
    pub(crate) async fn upgrade(&mut self, tls: &TlsMaterial) -> Result<(), WireError> {
        if self.reader.buffered() > 0 {
            return Err(WireError::Protocol(format!(
                "it sent {} bytes behind its answer to STARTTLS, before TLS started (a sign of an injection on the path)",
                self.reader.buffered()
            )));
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(WireError::Protocol(
                "STARTTLS on a connection that is not plain".to_owned(),
            ));
        };
        let stream = tls.connect(tcp).await?;
        self.stream = Stream::Tls(Box::new(stream));
        Ok(())
    }

    /// Writes the message data dot-stuffed (a `.` at the start of a line is doubled) and
    /// ends it with `CRLF . CRLF`; a message that ends with CRLF gets only `. CRLF`, so
    /// the server stores exactly its bytes. `write_timeout` bounds each write of a chunk.
    pub(crate) async fn send_data(
        &mut self,
        body: &[u8],
        write_timeout: std::time::Duration,
    ) -> Result<(), DataError> {
        let mut chunk: Vec<u8> = Vec::with_capacity(DATA_CHUNK + 1);
        // Line by line (a line ends at LF, so a bare LF starts a line too); a long line is
        // copied in pieces so the chunk stays near its size.
        for line in body.split_inclusive(|byte| *byte == b'\n') {
            if line.first() == Some(&b'.') {
                chunk.push(b'.');
            }
            let mut rest = line;
            while !rest.is_empty() {
                let room = DATA_CHUNK.saturating_sub(chunk.len()).max(1);
                let (piece, tail) = rest.split_at(rest.len().min(room));
                chunk.extend_from_slice(piece);
                rest = tail;
                if chunk.len() >= DATA_CHUNK {
                    self.write_bounded(&chunk, write_timeout).await?;
                    chunk.clear();
                }
            }
        }
        if body.is_empty() || body.ends_with(b"\r\n") {
            chunk.extend_from_slice(b".\r\n");
        } else {
            chunk.extend_from_slice(b"\r\n.\r\n");
        }
        self.write_bounded(&chunk, write_timeout).await?;
        match tokio::time::timeout(write_timeout, self.stream.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(DataError::Wire(error.into())),
            Err(_) => Err(DataError::Timeout),
        }
    }

    async fn write_bounded(
        &mut self,
        bytes: &[u8],
        write_timeout: std::time::Duration,
    ) -> Result<(), DataError> {
        match tokio::time::timeout(write_timeout, self.stream.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(DataError::Wire(error.into())),
            Err(_) => Err(DataError::Timeout),
        }
    }
}

/// Why the message data could not be written.
#[derive(Debug)]
pub(crate) enum DataError {
    Wire(WireError),
    Timeout,
}

/// Feeds `bytes` to a reply reader as the session does, in pieces of the sizes given
/// (cycled, each at least 1), and returns how many replies it read and the error that
/// ended it, if any. For the test binary that measures the reader's allocations from
/// outside the crate (`tests/reply_allocations.rs`); not part of the API.
#[doc(hidden)]
pub fn read_replies_in_pieces(bytes: &[u8], pieces: &[usize]) -> (usize, Option<String>) {
    let mut reader = ReplyReader::new();
    let mut replies = 0;
    let mut rest = bytes;
    let mut sizes = pieces.iter().cycle();
    loop {
        loop {
            match reader.feed() {
                Ok(Fed::Reply(_)) => replies += 1,
                Ok(Fed::NeedMore) => break,
                Err(error) => return (replies, Some(error.to_string())),
            }
        }
        if rest.is_empty() {
            return (replies, None);
        }
        let spare = reader.spare();
        let size = sizes.next().copied().unwrap_or(1).max(1);
        let count = spare.len().min(rest.len()).min(size);
        spare[..count].copy_from_slice(&rest[..count]);
        reader.filled(count);
        rest = &rest[count..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(bytes: &[u8]) -> Vec<Result<RawReply, String>> {
        let mut reader = ReplyReader::new();
        let mut out = Vec::new();
        let mut rest = bytes;
        loop {
            match reader.feed() {
                Ok(Fed::Reply(reply)) => {
                    out.push(Ok(*reply));
                    continue;
                }
                Ok(Fed::NeedMore) => {}
                Err(error) => {
                    out.push(Err(error.to_string()));
                    return out;
                }
            }
            if rest.is_empty() {
                return out;
            }
            let spare = reader.spare();
            let count = spare.len().min(rest.len());
            spare[..count].copy_from_slice(&rest[..count]);
            reader.filled(count);
            rest = &rest[count..];
        }
    }

    #[test]
    fn the_readers_debug_shows_what_is_buffered_past_the_last_reply() {
        let mut reader = ReplyReader::new();
        let bytes = b"250 ok\r\n25";
        reader.spare()[..bytes.len()].copy_from_slice(bytes);
        reader.filled(bytes.len());
        assert!(matches!(reader.feed(), Ok(Fed::Reply(_))));
        assert_eq!(reader.buffered(), 2);
        let debug = format!("{reader:?}");
        assert!(debug.starts_with("ReplyReader"), "{debug}");
        assert!(debug.contains("buffered: 2"), "{debug}");
    }

    #[test]
    fn a_reply_split_across_reads_keeps_its_first_part() {
        let mut reader = ReplyReader::new();
        let read = |reader: &mut ReplyReader, bytes: &[u8]| {
            reader.spare()[..bytes.len()].copy_from_slice(bytes);
            reader.filled(bytes.len());
        };
        read(&mut reader, b"250 first\r\n25");
        assert!(matches!(reader.feed(), Ok(Fed::Reply(reply)) if reply.reply.text == "first"));
        assert!(matches!(reader.feed(), Ok(Fed::NeedMore)));
        read(&mut reader, b"0 second\r\n");
        match reader.feed() {
            Ok(Fed::Reply(reply)) => {
                assert_eq!(
                    (reply.reply.code, reply.reply.text.as_str()),
                    (250, "second")
                );
            }
            Ok(Fed::NeedMore) => panic!("the reply was lost"),
            Err(error) => panic!("{error}"),
        }
    }

    #[test]
    fn replies_read_in_pieces_are_counted_and_the_error_that_ended_them_given() {
        let two = b"250 one\r\n250-two\r\n250 two\r\n";
        assert_eq!(read_replies_in_pieces(two, &[1, 3]), (2, None));
        let mut endless = b"250 ok\r\n250-".to_vec();
        endless.extend(std::iter::repeat_n(b'a', 10_000));
        let (replies, error) = read_replies_in_pieces(&endless, &[512]);
        assert_eq!(replies, 1);
        assert!(error.unwrap_or_default().contains("longer than"));
    }

    #[test]
    fn replies_in_one_packet_come_out_in_order() {
        let replies =
            feed_all(b"250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n354 Start mail input\r\n");
        let codes: Vec<_> = replies
            .iter()
            .map(|reply| reply.as_ref().unwrap().reply.to_string())
            .collect();
        assert_eq!(
            codes,
            [
                "250 2.1.0 Sender OK",
                "250 2.1.5 Recipient OK",
                "354 Start mail input"
            ]
        );
    }

    #[test]
    fn multiline_replies_keep_their_lines() {
        let replies =
            feed_all(b"250-smtp.example.com hello\r\n250-PIPELINING\r\n250 AUTH LOGIN XOAUTH2\r\n");
        let reply = replies[0].as_ref().unwrap();
        assert_eq!(reply.reply.code, 250);
        assert_eq!(
            reply.lines,
            ["smtp.example.com hello", "PIPELINING", "AUTH LOGIN XOAUTH2"]
        );
    }

    #[test]
    fn an_endless_line_is_refused_at_the_bound() {
        let mut line = b"250-".to_vec();
        line.extend(std::iter::repeat_n(b'a', 100_000));
        let replies = feed_all(&line);
        let error = replies.last().unwrap().as_ref().unwrap_err();
        assert!(error.contains("longer than"), "{error}");
    }

    #[test]
    fn a_line_of_exactly_the_bound_is_read_and_one_byte_more_is_refused() {
        let line = |length: usize| {
            let mut line = b"250 ".to_vec();
            line.extend(std::iter::repeat_n(b'a', length - 6));
            line.extend_from_slice(b"\r\n");
            line
        };
        let replies = feed_all(&line(MAX_REPLY_LINE));
        let reply = replies[0].as_ref().expect("a line of the bound");
        assert_eq!(reply.raw.len(), MAX_REPLY_LINE);
        let replies = feed_all(&line(MAX_REPLY_LINE + 1));
        let error = replies[0].as_ref().unwrap_err();
        assert!(
            error.contains(&format!("reply line longer than {MAX_REPLY_LINE} bytes")),
            "{error}"
        );
    }

    #[test]
    fn a_reply_past_the_bound_is_refused_even_when_its_end_is_in_the_same_read() {
        // Empty continuation lines (which smtp-proto's text cap does not count) past the
        // bound, then the last line: a first small read, then the rest (the reply's end
        // included) in one read.
        let mut bytes = b"250-\r\n".repeat(MAX_REPLY / 6 + 1);
        bytes.extend_from_slice(b"250 ok\r\n");
        assert!(bytes.len() - 96 < READ_BUFFER);
        let replies = feed_in_pieces(&bytes, &[96, READ_BUFFER]);
        let error = replies.last().unwrap().as_ref().unwrap_err();
        assert!(
            error.contains(&format!("longer than {MAX_REPLY} bytes")),
            "{error}"
        );
    }

    #[test]
    fn many_empty_lines_are_refused_at_the_reply_bound() {
        // smtp-proto's own text cap does not count empty continuation lines.
        let bytes = b"250-\r\n".repeat(10_000);
        let replies = feed_all(&bytes);
        let error = replies.last().unwrap().as_ref().unwrap_err();
        assert!(
            error.contains(&format!("longer than {MAX_REPLY} bytes")),
            "{error}"
        );
    }

    /// Feeds `bytes` in pieces of the given sizes; returns what came out, and checks the
    /// reader's own buffers stay within their bounds after every step.
    fn feed_in_pieces(bytes: &[u8], pieces: &[usize]) -> Vec<Result<RawReply, String>> {
        let mut reader = ReplyReader::new();
        let mut out = Vec::new();
        let mut rest = bytes;
        let mut sizes = pieces.iter().cycle();
        loop {
            loop {
                match reader.feed() {
                    Ok(Fed::Reply(reply)) => {
                        assert!(reply.raw.len() <= MAX_REPLY);
                        assert!(reply.reply.text.len() <= MAX_REPLY);
                        out.push(Ok(*reply));
                    }
                    Ok(Fed::NeedMore) => break,
                    Err(error) => {
                        out.push(Err(error.to_string()));
                        return out;
                    }
                }
            }
            assert!(reader.raw.len() <= MAX_REPLY);
            assert!(reader.raw.capacity() <= 2 * MAX_REPLY);
            assert_eq!(reader.buf.len(), READ_BUFFER);
            if rest.is_empty() {
                return out;
            }
            let spare = reader.spare();
            let count = spare
                .len()
                .min(rest.len())
                .min(*sizes.next().unwrap_or(&1))
                .max(1);
            spare[..count].copy_from_slice(&rest[..count]);
            reader.filled(count);
            rest = &rest[count..];
        }
    }

    proptest::proptest! {
        /// Arbitrary bytes in arbitrary pieces never panic, never yield a reply past the
        /// bounds, and keep the reader's buffers bounded.
        #[test]
        fn arbitrary_bytes_stay_within_the_bounds(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40_000),
            pieces in proptest::collection::vec(1usize..9000, 1..8),
        ) {
            feed_in_pieces(&bytes, &pieces);
        }

        /// Reply-shaped input (digits, separators, line breaks, text) exercises the parser's
        /// paths, in any chunking, with the same guarantees; the same bytes give the same
        /// replies however they are cut.
        #[test]
        fn reply_shaped_bytes_parse_the_same_in_any_pieces(
            lines in proptest::collection::vec(
                (200u16..600, proptest::bool::ANY, "[ -~]{0,300}"),
                0..60,
            ),
            pieces in proptest::collection::vec(1usize..600, 1..8),
        ) {
            let mut bytes = Vec::new();
            for (code, last, text) in &lines {
                let separator = if *last { ' ' } else { '-' };
                bytes.extend_from_slice(format!("{code}{separator}{text}\r\n").as_bytes());
            }
            let whole = feed_in_pieces(&bytes, &[usize::MAX]);
            let cut = feed_in_pieces(&bytes, &pieces);
            let summary = |out: &[Result<RawReply, String>]| {
                out.iter()
                    .map(|item| match item {
                        Ok(reply) => Ok(reply.reply.clone()),
                        Err(error) => Err(error.clone()),
                    })
                    .collect::<Vec<_>>()
            };
            proptest::prop_assert_eq!(summary(&whole), summary(&cut));
        }
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        let replies = feed_all(b"hello there\r\n");
        assert!(replies[0].is_err());
    }
}
