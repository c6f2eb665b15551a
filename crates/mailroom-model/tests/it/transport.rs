//! The transport port's values: envelopes, transport kinds and what a failed send says.

use std::error::Error as _;
use std::time::Duration;

use mailroom_model::{
    AccountRef, Address, Envelope, Remedy, TransportError, TransportErrorKind, TransportKind,
};

fn address(text: &str) -> Address {
    text.parse().unwrap()
}

#[test]
fn an_envelope_keeps_its_recipients_once_in_order() {
    let envelope = Envelope::new(
        address("from@example.com"),
        vec![
            address("b@example.com"),
            address("a@example.com"),
            address("b@example.com"),
        ],
    )
    .unwrap();
    assert_eq!(envelope.sender(), &address("from@example.com"));
    assert_eq!(
        envelope.recipients(),
        [address("b@example.com"), address("a@example.com")]
    );
    let error = Envelope::new(address("from@example.com"), Vec::new()).unwrap_err();
    assert_eq!(error.field, "recipients");
}

#[test]
fn transport_kinds_have_stable_names() {
    assert_eq!(TransportKind::Smtp.to_string(), "smtp");
    assert_eq!(TransportKind::GmailApi.to_string(), "gmail-api");
    assert_eq!(TransportKind::GraphApi.to_string(), "graph");
}

#[test]
fn each_kind_answers_exactly_its_own_question() {
    use TransportErrorKind as K;
    let kinds = [
        K::AuthenticationRejected,
        K::SignInRequired,
        K::AccountConfiguration,
        K::SendAsDenied,
        K::MessageRejected,
        K::MessageTooLarge,
        K::Tls,
        K::Insecure,
        K::Transient,
        K::TooManyConnections,
        K::MailboxThrottled,
        K::Permanent,
        K::DeliveryUnknown,
    ];
    for kind in kinds {
        let error = TransportError::new(kind, "failed");
        assert_eq!(error.kind(), kind);
        assert_eq!(
            error.is_transient(),
            matches!(kind, K::Transient | K::TooManyConnections),
            "{kind:?}"
        );
        assert_eq!(
            error.is_too_many_connections(),
            kind == K::TooManyConnections,
            "{kind:?}"
        );
        assert_eq!(
            error.is_mailbox_paused(),
            kind == K::MailboxThrottled,
            "{kind:?}"
        );
        assert_eq!(
            error.is_auth_rejected(),
            kind == K::AuthenticationRejected,
            "{kind:?}"
        );
        assert_eq!(
            error.is_delivery_unknown(),
            kind == K::DeliveryUnknown,
            "{kind:?}"
        );
        assert_eq!(error.needs_sign_in(), kind == K::SignInRequired, "{kind:?}");
    }
}

#[test]
fn a_failed_send_says_what_happened_what_the_server_said_and_what_to_do() {
    let bare = TransportError::new(
        TransportErrorKind::Permanent,
        "the server refused the message",
    );
    assert_eq!(bare.to_string(), "the server refused the message");
    assert_eq!(bare.remediation(), None);
    assert_eq!(bare.remedy(), None);
    assert!(bare.source().is_none());

    let full = TransportError::new(TransportErrorKind::AccountConfiguration, "SMTP AUTH is off")
        .with_server_reply("535 5.7.139 SmtpClientAuthentication is disabled")
        .with_remediation("an administrator enables SMTP AUTH")
        .with_remedy(Remedy::EnableSmtpAuth { mailbox: None })
        .with_source(std::io::Error::other("underlying"))
        .with_retry_after(Duration::from_secs(5));
    assert_eq!(
        full.to_string(),
        "SMTP AUTH is off (server said: 535 5.7.139 SmtpClientAuthentication is disabled); an administrator enables SMTP AUTH"
    );
    assert_eq!(full.message(), "SMTP AUTH is off");
    assert_eq!(
        full.remediation(),
        Some("an administrator enables SMTP AUTH")
    );
    assert_eq!(
        full.remedy(),
        Some(&Remedy::EnableSmtpAuth { mailbox: None })
    );
    assert_eq!(full.source().unwrap().to_string(), "underlying");
    assert_eq!(full.retry_after(), Some(Duration::from_secs(5)));
}

#[test]
fn the_facade_fills_in_the_account_of_a_remedy() {
    let error = TransportError::new(TransportErrorKind::SignInRequired, "sign in")
        .with_remedy(Remedy::SignIn {
            account: None,
            browser_only: true,
        })
        .for_account(AccountRef::User(3));
    assert_eq!(
        error.remedy(),
        Some(&Remedy::SignIn {
            account: Some(AccountRef::User(3)),
            browser_only: true
        })
    );
}
