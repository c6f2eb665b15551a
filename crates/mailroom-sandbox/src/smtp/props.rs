//! Property tests (proptest) of the SMTP server's parsers: SASL initial responses, MAIL
//! and RCPT paths, and DATA reading. `PROPTEST_CASES` scales them; `cargo xtask fuzz
//! sandbox-smtp` runs them (with the black-box session property) for longer.

use proptest::prelude::*;
use tokio::io::BufReader;

use super::{
    DataBody, MAX_COMMAND_LINE, decode_base64, parse_oauthbearer, parse_plain, parse_xoauth2,
    read_data,
};

/// Dot-stuffs `body` (every line starting with `.` gets another) and ends it with
/// `CRLF.CRLF`, as a client sends it.
fn stuffed(body: &[u8]) -> Vec<u8> {
    let mut wire = Vec::with_capacity(body.len() + 8);
    let mut at_line_start = true;
    for &byte in body {
        if at_line_start && byte == b'.' {
            wire.push(b'.');
        }
        wire.push(byte);
        at_line_start = byte == b'\n';
    }
    if !body.is_empty() && !body.ends_with(b"\r\n") {
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b".\r\n");
    wire
}

fn read(input: &[u8], max: usize) -> std::io::Result<DataBody> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut reader = BufReader::new(input);
        read_data(&mut reader, max).await
    })
}

/// Message bodies in CRLF lines, some starting with dots, some long.
fn crlf_body() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            "[ -~]{0,20}".prop_map(String::into_bytes),
            "\\.{1,3}[ -~]{0,5}".prop_map(String::into_bytes),
            Just(vec![b'x'; MAX_COMMAND_LINE + 3]),
        ],
        0..8,
    )
    .prop_map(|lines| {
        let mut body = Vec::new();
        for line in lines {
            body.extend_from_slice(&line);
            body.extend_from_slice(b"\r\n");
        }
        body
    })
}

proptest! {
    /// XOAUTH2: what a client builds parses back to its user and token; any bytes parse
    /// or not without a panic.
    #[test]
    fn xoauth2_round_trips(user in "[^\x01]{0,40}", token in "[!-~]{1,60}", bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let data = format!("user={user}\x01auth=Bearer {token}\x01\x01");
        prop_assert_eq!(parse_xoauth2(data.as_bytes()), Some((user, token)));
        let _ = parse_xoauth2(&bytes);
    }

    /// OAUTHBEARER (RFC 7628): a user with `,` and `=` escaped as RFC 5801 says parses back
    /// to itself; any bytes parse or not without a panic.
    #[test]
    fn oauthbearer_round_trips(
        user in "[^\x01]{0,40}",
        token in "[!-~]{1,60}",
        host in "[a-z0-9.]{1,20}",
        port in any::<u16>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let escaped = user.replace('=', "=3D").replace(',', "=2C");
        let data = format!("n,a={escaped},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01");
        prop_assert_eq!(parse_oauthbearer(data.as_bytes()), Some((user, token)));
        let _ = parse_oauthbearer(&bytes);
    }

    /// PLAIN: `authzid\0authcid\0password` parses to (authcid, password); anything else,
    /// and any base64 line, without a panic.
    #[test]
    fn plain_and_base64(
        authzid in "[^\0]{0,20}",
        login in "[^\0]{0,20}",
        password in "[^\0]{0,20}",
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        line in any::<String>(),
    ) {
        let data = format!("{authzid}\0{login}\0{password}");
        prop_assert_eq!(parse_plain(data.as_bytes()), Some((login, password)));
        let _ = parse_plain(&bytes);
        let _ = decode_base64(&line);
    }

    /// DATA: a dot-stuffed CRLF body ending in `CRLF.CRLF` reads back exactly; any bytes
    /// never panic, never keep more than the limit, and end in the body, TooLarge or EOF.
    #[test]
    fn data_round_trips_and_stays_bounded(
        body in crlf_body(),
        noise in proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), any::<u8>()], 0..400),
        max in 0usize..300,
    ) {
        prop_assert_eq!(read(&stuffed(&body), usize::MAX).expect("a complete body"), DataBody::Complete(body.clone()));
        match read(&stuffed(&body), max).expect("a complete body") {
            DataBody::Complete(kept) => prop_assert!(kept.len() <= max && kept == body),
            DataBody::TooLarge => prop_assert!(body.len() > max),
        }
        match read(&noise, max) {
            Ok(DataBody::Complete(kept)) => prop_assert!(kept.len() <= max),
            Ok(DataBody::TooLarge) | Err(_) => {}
        }
    }
}
