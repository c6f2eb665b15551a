//! `KeyRing`: the keys a host has, as text (a key file or `MAILROOM_KEY`), and opening a
//! value with the key its id names.

use mailroom_crypto::{EncryptionKey, Error, KeyRing};

#[test]
fn the_ring_as_text_is_one_base64_key_per_line() {
    let a = EncryptionKey::generate();
    let b = EncryptionKey::generate();
    let ring = KeyRing::new([a.clone(), b.clone()]).unwrap();
    assert_eq!(
        ring.to_text().as_str(),
        format!("{}\n{}\n", a.to_text().as_str(), b.to_text().as_str())
    );
    assert_eq!(
        KeyRing::from_text(&ring.to_text()).unwrap().ids(),
        ring.ids()
    );
    // Debug names the keys by fingerprint only.
    let debug = format!("{ring:?}");
    assert!(
        debug.contains(&a.id()) && debug.contains(&b.id()),
        "{debug}"
    );
    assert!(!debug.contains(a.to_text().as_str()), "{debug}");
}

#[test]
fn keys_are_separated_by_lines_commas_or_spaces_and_comments_are_skipped() {
    let a = EncryptionKey::generate();
    let b = EncryptionKey::generate();
    let c = EncryptionKey::generate();
    let (a_text, b_text, c_text) = (a.to_text(), b.to_text(), c.to_text());
    let expected = vec![a.id(), b.id(), c.id()];
    for text in [
        format!(
            "{}\n{}\n{}",
            a_text.as_str(),
            b_text.as_str(),
            c_text.as_str()
        ),
        format!(
            "{},{},{}",
            a_text.as_str(),
            b_text.as_str(),
            c_text.as_str()
        ),
        format!(
            "{} {}\t{}",
            a_text.as_str(),
            b_text.as_str(),
            c_text.as_str()
        ),
        format!(
            "# rotated 2026-12-01\n\n  {} ,\n# the next one\n{}, {}\n",
            a_text.as_str(),
            b_text.as_str(),
            c_text.as_str()
        ),
    ] {
        assert_eq!(
            KeyRing::from_text(&text).unwrap().ids(),
            expected,
            "{text:?}"
        );
    }
    // A commented-out key is not a key.
    let commented = format!("#{}\n{}\n", a_text.as_str(), b_text.as_str());
    assert_eq!(KeyRing::from_text(&commented).unwrap().ids(), vec![b.id()]);
    // A word that is not a key spoils the whole text.
    for bad in ["", "\n\n", "# only a comment", "key"] {
        assert!(
            matches!(KeyRing::from_text(bad), Err(Error::MalformedKey)),
            "{bad:?}"
        );
    }
}

#[test]
fn duplicates_are_dropped_and_the_first_key_is_primary() {
    let a = EncryptionKey::generate();
    let b = EncryptionKey::generate();
    let ring = KeyRing::new([b.clone(), a.clone(), b.clone()]).unwrap();
    assert_eq!(ring.ids(), vec![b.id(), a.id()]);
    assert_eq!(ring.primary().id(), b.id());
    assert!(matches!(KeyRing::new([]), Err(Error::MalformedKey)));
    // `with` adds last, once.
    let c = EncryptionKey::generate();
    let ring = ring.with(c.clone()).with(a.clone());
    assert_eq!(ring.ids(), vec![b.id(), a.id(), c.id()]);
    assert_eq!(ring.primary().id(), b.id());
    let single = KeyRing::from(a.clone());
    assert_eq!(single.ids(), vec![a.id()]);
    let generated = KeyRing::generate();
    assert_eq!(generated.ids().len(), 1);
    assert_eq!(generated.ids()[0], generated.primary().id());
}

#[test]
fn get_and_require_find_a_key_by_fingerprint() {
    let a = EncryptionKey::generate();
    let b = EncryptionKey::generate();
    let ring = KeyRing::new([a.clone(), b.clone()]).unwrap();
    assert_eq!(ring.get(&b.id()).unwrap().id(), b.id());
    assert_eq!(ring.require(&a.id()).unwrap().id(), a.id());
    let stranger = EncryptionKey::generate();
    assert!(ring.get(&stranger.id()).is_none());
    let error = ring.require(&stranger.id()).unwrap_err();
    assert_eq!(error.missing_key(), Some(stranger.id().as_str()));
    match &error {
        Error::MissingKey { id, have } => {
            assert_eq!(id, &stranger.id());
            assert_eq!(have, &vec![a.id(), b.id()]);
        }
        other => panic!("expected MissingKey, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains(&format!("lacks key {}", stranger.id())),
        "{message}"
    );
    assert!(
        message.contains(&format!("this host has {}, {}", a.id(), b.id())),
        "{message}"
    );
}

#[test]
fn the_ring_opens_by_the_key_id_the_value_carries() {
    let a = EncryptionKey::generate();
    let b = EncryptionKey::generate();
    let ring = KeyRing::new([a.clone(), b.clone()]).unwrap();
    let by_b = b.seal(b"client secret", b"oauth_app:1:client_secret");
    assert_eq!(
        ring.open(&by_b, b"oauth_app:1:client_secret")
            .unwrap()
            .as_slice(),
        b"client secret"
    );
    assert_eq!(
        ring.open_string(&by_b, b"oauth_app:1:client_secret")
            .unwrap()
            .as_str(),
        "client secret"
    );
    assert!(matches!(
        ring.open(&by_b, b"oauth_app:2:client_secret"),
        Err(Error::CannotOpen)
    ));
    // Not text: refused as text.
    let binary = a.seal(&[0xc3, 0x28], b"aad");
    assert_eq!(
        ring.open(&binary, b"aad").unwrap().as_slice(),
        &[0xc3, 0x28]
    );
    assert!(matches!(
        ring.open_string(&binary, b"aad"),
        Err(Error::CannotOpen)
    ));
    // A ring without the sealing key names it.
    let without_b = KeyRing::from(a.clone());
    let error = without_b
        .open(&by_b, b"oauth_app:1:client_secret")
        .unwrap_err();
    assert_eq!(error.missing_key(), Some(b.id().as_str()));
    let error = without_b
        .open_string(&by_b, b"oauth_app:1:client_secret")
        .unwrap_err();
    assert_eq!(error.missing_key(), Some(b.id().as_str()));
}

#[test]
fn a_value_in_the_first_format_is_tried_with_every_key() {
    let a = EncryptionKey::generate();
    let b = EncryptionKey::generate();
    let ring = KeyRing::new([a.clone(), b.clone()]).unwrap();
    let sealed = b.seal(b"old secret", b"aad");
    let mut legacy = b"MR1".to_vec();
    legacy.extend_from_slice(&sealed[3 + 8..]);
    assert_eq!(
        ring.open(&legacy, b"aad").unwrap().as_slice(),
        b"old secret"
    );
    assert_eq!(
        ring.open_string(&legacy, b"aad").unwrap().as_str(),
        "old secret"
    );
    // No key of the ring opens it: it cannot name the key, so CannotOpen.
    let error = KeyRing::from(a).open(&legacy, b"aad").unwrap_err();
    assert!(matches!(error, Error::CannotOpen), "{error:?}");
    assert!(matches!(
        ring.open(&legacy, b"other"),
        Err(Error::CannotOpen)
    ));
}
