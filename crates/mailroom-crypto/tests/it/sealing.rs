//! `EncryptionKey`: key text, the fingerprint, and `seal`/`open` round trips in the
//! documented format (`MR2` + 8-byte key id + 12-byte nonce + AES-256-GCM ciphertext and
//! its 16-byte tag; the first format `MR1` has no key id).

use mailroom_crypto::{EncryptionKey, Error, sealed_by};

/// 32 bytes 0x00, 0x01, ... 0x1f: a key whose text and fingerprint are known.
const COUNTING_KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const COUNTING_KEY_BASE64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The first 8 bytes of SHA-256 of the counting key, in hex (`sha256sum`).
const COUNTING_KEY_ID: &str = "630dcd2966c43366";
/// The same for 32 zero bytes: SHA-256 66687aadf862bd77...
const ZERO_KEY_ID: &str = "66687aadf862bd77";

const HEADER_LEN: usize = 3 + 8 + 12;
const TAG_LEN: usize = 16;

#[test]
fn the_fingerprint_is_the_first_eight_bytes_of_sha256_in_hex() {
    let key = EncryptionKey::from_text(COUNTING_KEY_BASE64).unwrap();
    assert_eq!(key.id(), COUNTING_KEY_ID);
    let zero = EncryptionKey::from_text(&"00".repeat(32)).unwrap();
    assert_eq!(zero.id(), ZERO_KEY_ID);
    // Debug names the key by its fingerprint, and never shows the key.
    let debug = format!("{key:?}");
    assert!(debug.contains(COUNTING_KEY_ID), "{debug}");
    assert!(!debug.contains(COUNTING_KEY_BASE64), "{debug}");
    assert!(!debug.contains(COUNTING_KEY_HEX), "{debug}");
}

#[test]
fn key_text_is_base64_or_hex_of_exactly_32_bytes() {
    let from_base64 = EncryptionKey::from_text(COUNTING_KEY_BASE64).unwrap();
    // 64 hex digits are also valid base64 (of 48 bytes): read as hex all the same.
    let from_hex = EncryptionKey::from_text(COUNTING_KEY_HEX).unwrap();
    assert_eq!(from_base64.id(), COUNTING_KEY_ID);
    assert_eq!(from_hex.id(), COUNTING_KEY_ID);
    // Surrounding white space, as a key file's line or an environment variable has it.
    let padded = EncryptionKey::from_text(&format!("  {COUNTING_KEY_BASE64}\n")).unwrap();
    assert_eq!(padded.id(), COUNTING_KEY_ID);
    // The text written is standard base64 of the 32 bytes.
    assert_eq!(from_hex.to_text().as_str(), COUNTING_KEY_BASE64);
    let random = EncryptionKey::generate();
    assert_eq!(random.to_text().len(), 44);
    assert_eq!(
        EncryptionKey::from_text(&random.to_text()).unwrap().id(),
        random.id()
    );
    // One byte short or long, in either form, is refused.
    let base64_31 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==";
    let base64_33 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for bad in [
        base64_31,
        base64_33,
        &"00".repeat(31),
        &"00".repeat(33),
        "",
        "not a key",
    ] {
        let error = EncryptionKey::from_text(bad).unwrap_err();
        assert!(matches!(error, Error::MalformedKey), "{bad}: {error:?}");
        assert!(
            error.to_string().contains("not 32 bytes in base64 or hex"),
            "{error}"
        );
    }
}

#[test]
fn generated_keys_differ() {
    assert_ne!(
        EncryptionKey::generate().id(),
        EncryptionKey::generate().id()
    );
}

#[test]
fn a_sealed_value_is_mr2_the_key_id_a_nonce_and_the_ciphertext() {
    let key = EncryptionKey::from_text(COUNTING_KEY_HEX).unwrap();
    let plaintext = b"correct horse battery staple";
    let sealed = key.seal(plaintext, b"user_account:4:password");
    assert_eq!(sealed.len(), HEADER_LEN + plaintext.len() + TAG_LEN);
    assert_eq!(&sealed[..3], b"MR2");
    assert_eq!(hex::encode(&sealed[3..11]), COUNTING_KEY_ID);
    assert_eq!(sealed_by(&sealed).as_deref(), Some(COUNTING_KEY_ID));
    // A fresh nonce each time: the same secret never seals to the same bytes.
    let again = key.seal(plaintext, b"user_account:4:password");
    assert_ne!(sealed[11..HEADER_LEN], again[11..HEADER_LEN]);
    assert_ne!(sealed, again);
    // The empty secret seals and opens too.
    let empty = key.seal(b"", b"aad");
    assert_eq!(empty.len(), HEADER_LEN + TAG_LEN);
    assert_eq!(key.open(&empty, b"aad").unwrap().as_slice(), b"");
}

#[test]
fn seal_and_open_round_trip_bytes_and_text() {
    let key = EncryptionKey::generate();
    let secret = "pässwörd \u{1F511}";
    let sealed = key.seal(secret.as_bytes(), b"oauth_token:7:refresh_token");
    assert_eq!(
        key.open(&sealed, b"oauth_token:7:refresh_token")
            .unwrap()
            .as_slice(),
        secret.as_bytes()
    );
    assert_eq!(
        key.open_string(&sealed, b"oauth_token:7:refresh_token")
            .unwrap()
            .as_str(),
        secret
    );
    // Another column or row of the same table does not open it.
    for other in [
        &b"oauth_token:7:access_token"[..],
        b"oauth_token:8:refresh_token",
        b"",
    ] {
        assert!(matches!(key.open(&sealed, other), Err(Error::CannotOpen)));
        assert!(matches!(
            key.open_string(&sealed, other),
            Err(Error::CannotOpen)
        ));
    }
}

#[test]
fn a_secret_that_is_not_utf8_does_not_open_as_text() {
    let key = EncryptionKey::generate();
    let sealed = key.seal(&[0xff, 0xfe, 0x00], b"aad");
    assert_eq!(
        key.open(&sealed, b"aad").unwrap().as_slice(),
        &[0xff, 0xfe, 0x00]
    );
    assert!(matches!(
        key.open_string(&sealed, b"aad"),
        Err(Error::CannotOpen)
    ));
}

#[test]
fn an_altered_value_does_not_open() {
    let key = EncryptionKey::generate();
    let sealed = key.seal(b"hunter2", b"aad");
    for index in [0, 3, 11, HEADER_LEN, sealed.len() - 1] {
        let mut altered = sealed.clone();
        altered[index] ^= 0x01;
        assert!(
            matches!(key.open(&altered, b"aad"), Err(Error::CannotOpen)),
            "byte {index}"
        );
    }
    // Cut anywhere: refused, never a panic.
    for len in 0..sealed.len() {
        assert!(
            matches!(key.open(&sealed[..len], b"aad"), Err(Error::CannotOpen)),
            "first {len} bytes"
        );
    }
    let error = key.open(&sealed[..5], b"aad").unwrap_err();
    assert!(error.to_string().contains("cannot be decrypted"), "{error}");
    assert_eq!(error.missing_key(), None);
}

#[test]
fn the_first_format_opens_and_names_no_key() {
    let key = EncryptionKey::generate();
    let sealed = key.seal(b"hunter2", b"aad");
    let mut legacy = b"MR1".to_vec();
    legacy.extend_from_slice(&sealed[3 + 8..]);
    assert_eq!(key.open(&legacy, b"aad").unwrap().as_slice(), b"hunter2");
    assert_eq!(
        key.open_string(&legacy, b"aad").unwrap().as_str(),
        "hunter2"
    );
    assert_eq!(sealed_by(&legacy), None);
    assert!(matches!(
        key.open(&legacy, b"other"),
        Err(Error::CannotOpen)
    ));
    // Shorter than a nonce after the tag: refused, not a panic.
    for len in 3..3 + 12 {
        assert!(matches!(
            key.open(&legacy[..len], b"aad"),
            Err(Error::CannotOpen)
        ));
    }
    // Neither tag: refused.
    let mut untagged = legacy.clone();
    untagged[2] = b'9';
    assert!(matches!(
        key.open(&untagged, b"aad"),
        Err(Error::CannotOpen)
    ));
    assert_eq!(sealed_by(&untagged), None);
}

#[test]
fn sealed_by_needs_the_whole_key_id() {
    let key = EncryptionKey::generate();
    let sealed = key.seal(b"x", b"aad");
    assert_eq!(sealed_by(&sealed[..11]), Some(key.id()));
    assert_eq!(sealed_by(&sealed[..10]), None);
    assert_eq!(sealed_by(b"MR2"), None);
    assert_eq!(sealed_by(b""), None);
    // Another key's value is refused by this key, which does not name it.
    let other = EncryptionKey::generate();
    assert!(matches!(
        other.open(&sealed, b"aad"),
        Err(Error::CannotOpen)
    ));
}
