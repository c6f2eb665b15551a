//! `GmailConfig` as `GmailTransport::new` checks it: every limit at its boundary, URLs with
//! credentials refused without showing the password, and a `Debug` that shows the
//! configuration but no password.

use mailroom_gmail::{
    Error, GmailConfig, GmailTransport, MAX_MESSAGE_SIZE, RESUMABLE_CHUNK_GRANULARITY,
};
use url::Url;

fn config(url: &str) -> GmailConfig {
    GmailConfig::with_base_url(Url::parse(url).expect("test URL parses"))
}

#[test]
fn a_base_url_with_a_user_name_or_password_is_refused_without_showing_the_password() {
    for url in [
        "https://mailroom@gmail.googleapis.com",
        "https://mailroom:hunter2@gmail.googleapis.com",
        "https://:hunter2@gmail.googleapis.com",
    ] {
        match GmailTransport::new(config(url)) {
            Err(Error::InvalidUrl {
                url: shown,
                problem,
            }) => {
                assert_eq!(problem, "it contains a user name or password", "{url}");
                assert!(!shown.contains("hunter2"), "{url}: {shown}");
                assert!(shown.contains("gmail.googleapis.com"), "{url}: {shown}");
            }
            other => panic!("{url}: expected InvalidUrl, got {other:?}"),
        }
    }
    let error =
        GmailTransport::new(config("https://mailroom:hunter2@gmail.googleapis.com")).unwrap_err();
    match &error {
        Error::InvalidUrl { url, .. } => {
            assert_eq!(url, "https://mailroom:redacted@gmail.googleapis.com/");
        }
        other => panic!("expected InvalidUrl, got {other:?}"),
    }
    assert!(!error.to_string().contains("hunter2"), "{error}");
    // A URL without credentials is shown as it is.
    match GmailTransport::new(config("https://gmail.googleapis.com/?x=1")) {
        Err(Error::InvalidUrl { url, problem }) => {
            assert_eq!(url, "https://gmail.googleapis.com/?x=1");
            assert_eq!(problem, "it has a query or fragment");
        }
        other => panic!("expected InvalidUrl, got {other:?}"),
    }
}

#[test]
fn the_resumable_threshold_may_be_the_maximum_message_size_and_no_more() {
    let at_limit = GmailConfig {
        resumable_threshold: MAX_MESSAGE_SIZE,
        ..GmailConfig::default()
    };
    assert!(GmailTransport::new(at_limit).is_ok());
    let over = GmailConfig {
        resumable_threshold: MAX_MESSAGE_SIZE + 1,
        ..GmailConfig::default()
    };
    match GmailTransport::new(over) {
        Err(Error::InvalidThreshold { threshold }) => assert_eq!(threshold, MAX_MESSAGE_SIZE + 1),
        other => panic!("expected InvalidThreshold, got {other:?}"),
    }
}

#[test]
fn the_chunk_size_is_a_non_zero_multiple_of_256_kib() {
    for good in [RESUMABLE_CHUNK_GRANULARITY, 2 * RESUMABLE_CHUNK_GRANULARITY] {
        let config = GmailConfig {
            resumable_chunk_size: good,
            ..GmailConfig::default()
        };
        assert!(GmailTransport::new(config).is_ok(), "{good}");
    }
    for bad in [
        0,
        RESUMABLE_CHUNK_GRANULARITY - 1,
        RESUMABLE_CHUNK_GRANULARITY + 1,
    ] {
        let config = GmailConfig {
            resumable_chunk_size: bad,
            ..GmailConfig::default()
        };
        match GmailTransport::new(config) {
            Err(Error::InvalidChunkSize { chunk_size }) => assert_eq!(chunk_size, bad),
            other => panic!("{bad}: expected InvalidChunkSize, got {other:?}"),
        }
    }
}

#[test]
fn debug_shows_the_configuration_but_no_password() {
    let mut config = GmailConfig {
        extra_root_pem: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
        ..config("https://proxy.example/gmail-api/")
    };
    let shown = format!("{config:?}");
    assert!(shown.starts_with("GmailConfig"), "{shown}");
    assert!(
        shown.contains("https://proxy.example/gmail-api/"),
        "{shown}"
    );
    assert!(shown.contains("<27 bytes of PEM>"), "{shown}");
    assert!(!shown.contains("BEGIN CERTIFICATE"), "{shown}");
    assert!(shown.contains("resumable_threshold"), "{shown}");
    config.base_url = Url::parse("https://mailroom:hunter2@proxy.example/").unwrap();
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("mailroom:redacted@proxy.example"), "{shown}");
}
