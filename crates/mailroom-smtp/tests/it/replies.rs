//! The reply table: a server that answers each reply at the step where providers send it,
//! and the error kind and remediation mailroom makes of it.

use mailroom_model::{TlsStartup, TransportError, TransportErrorKind as Kind};
use serde_json::{Map, Value, json};

use crate::support::{USER, oauth_settings, outgoing, send, token, transport_with};
use mailroom_testkit::smtp::{ServerOptions, TestServer};

/// Where the server answers a row's reply.
#[derive(Clone, Copy)]
enum At {
    /// To the AUTH command (selected by the token).
    Auth,
    /// To MAIL FROM (selected by the sender).
    MailFrom,
    /// To RCPT TO (selected by the recipient).
    RcptTo,
    /// After the message data (selected by the recipient).
    Data,
}

const ROWS: &[(At, &str, Kind, &str)] = &[
    (
        At::Auth,
        "535 5.7.3 Authentication unsuccessful [SN4PR0201CA0068.namprd02.prod.outlook.com]",
        Kind::AuthenticationRejected,
        "lacks the SMTP.Send scope",
    ),
    (
        At::Auth,
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.",
        Kind::AccountConfiguration,
        "Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false",
    ),
    (
        At::Auth,
        "535 5.7.139 Authentication unsuccessful, basic authentication is disabled.",
        Kind::AccountConfiguration,
        "switch the account to OAuth",
    ),
    (
        At::Auth,
        "535 5.7.8 Error: authentication failed: another reason",
        Kind::AuthenticationRejected,
        "refreshes the token once and retries",
    ),
    (
        At::Auth,
        "501 5.5.124 Invalid XOAUTH2 auth data",
        Kind::SignInRequired,
        "sign in again",
    ),
    (
        At::Auth,
        "504 5.7.4 Unrecognized authentication type",
        Kind::AccountConfiguration,
        "SmtpClientAuthenticationDisabled",
    ),
    (
        At::Auth,
        "454 4.7.0 Temporary authentication failure",
        Kind::Transient,
        "retries later",
    ),
    (
        At::MailFrom,
        "530 5.7.57 Client was not authenticated to send anonymous mail during MAIL FROM",
        Kind::AccountConfiguration,
        "credentials",
    ),
    (
        At::MailFrom,
        "550 5.7.30 Basic authentication is not supported for Client Submission.",
        Kind::AccountConfiguration,
        "switch the account to OAuth",
    ),
    (
        At::MailFrom,
        "550 5.7.60 SMTP; Client does not have permissions to send as this sender",
        Kind::SendAsDenied,
        "-AccessRights SendAs",
    ),
    (
        At::MailFrom,
        "553 5.1.8 Sender address rejected: domain not found",
        Kind::Permanent,
        "check the account's settings",
    ),
    (
        At::MailFrom,
        "421 4.3.2 Service not available, closing transmission channel",
        Kind::Transient,
        "retries later",
    ),
    (
        At::RcptTo,
        "550 5.1.1 User unknown",
        Kind::MessageRejected,
        "recipient's address",
    ),
    (
        At::RcptTo,
        "452 4.2.2 Mailbox full",
        Kind::Transient,
        "retries later",
    ),
    (
        At::Data,
        "554 5.2.252 SendAsDenied; box@example.com not allowed to send as other@example.com; STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied",
        Kind::SendAsDenied,
        "Send As",
    ),
    // Exchange Online's per-mailbox limits on SMTP AUTH submission, in the documented
    // words: MicrosoftDocs/SupportArticles-docs
    // `Exchange/ExchangeOnline/send-emails/smtp-submission-improvements.md` (three
    // connections, 10,000 recipients a day; Exchange adds the aka.ms link and its host) and
    // MicrosoftDocs/OfficeDocs-Exchange
    // `Exchange/ExchangeOnline/mail-flow-best-practices/continuous-error-throttling-smtp-auth-submissions.md`.
    (
        At::Auth,
        "432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending for more information. [Hostname=DM4PR18MB4126.namprd18.prod.outlook.com]",
        Kind::TooManyConnections,
        "fewer connections",
    ),
    (
        At::Data,
        "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
        Kind::TooManyConnections,
        "fewer connections",
    ),
    (
        At::Data,
        "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
        Kind::MailboxThrottled,
        "holds the message",
    ),
    (
        At::MailFrom,
        "550 5.2.251 Sender throttled due to continuous mailbox full errors.",
        Kind::MailboxThrottled,
        "Sent Items",
    ),
    (
        At::MailFrom,
        "550 5.2.252 Sender throttled due to continuous send as denied errors.",
        Kind::MailboxThrottled,
        "Send As",
    ),
    (
        At::MailFrom,
        "550 5.2.253 Sender throttled due to continuous invalid license errors.",
        Kind::MailboxThrottled,
        "license",
    ),
    (
        At::MailFrom,
        "550 5.2.254 Sender throttled due to continuous too many recipients errors.",
        Kind::MailboxThrottled,
        "fewer recipients",
    ),
    (
        At::MailFrom,
        "550 5.2.255 Sender throttled due to continuous invalid recipients errors.",
        Kind::MailboxThrottled,
        "recipients' addresses",
    ),
    (
        At::Data,
        "554 5.2.2 mailbox full; STOREDRV.Submission.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded",
        Kind::AccountConfiguration,
        "retention policy",
    ),
    (
        At::Data,
        "552 5.3.4 Message size exceeds fixed maximum message size",
        Kind::MessageTooLarge,
        "smaller",
    ),
    (
        At::Data,
        "451 4.3.0 Temporary server error. Please try again later",
        Kind::Transient,
        "retries later",
    ),
    (
        At::Data,
        "550 5.7.1 Message rejected as spam",
        Kind::MessageRejected,
        "content",
    ),
];

/// The token, sender and recipient of row `index`: each row selects its own reply.
fn row_keys(index: usize, at: At) -> (String, String, String) {
    let token = match at {
        At::Auth => format!("scripted-token-{index}"),
        _ => "good-token".to_owned(),
    };
    let sender = match at {
        At::MailFrom => format!("sender{index}@example.com"),
        _ => USER.to_owned(),
    };
    let recipient = match at {
        At::RcptTo | At::Data => format!("rcpt{index}@example.com"),
        _ => "to@example.com".to_owned(),
    };
    (token, sender, recipient)
}

fn scripted_replies() -> Value {
    let mut tables: Map<String, Value> = ["AUTH", "MAIL", "RCPT", "DATA"]
        .iter()
        .map(|stage| ((*stage).to_owned(), json!({})))
        .collect();
    for (index, (at, reply, _, _)) in ROWS.iter().enumerate() {
        let (token, sender, recipient) = row_keys(index, *at);
        let (stage, key) = match at {
            At::Auth => ("AUTH", token),
            At::MailFrom => ("MAIL", sender),
            At::RcptTo => ("RCPT", recipient),
            At::Data => ("DATA", recipient),
        };
        tables[stage][key] = Value::String((*reply).to_owned());
    }
    Value::Object(tables)
}

#[track_caller]
fn check(error: &TransportError, reply: &str, kind: Kind, remediation_part: &str) {
    assert_eq!(error.kind(), kind, "{reply}: {error}");
    assert_eq!(error.server_reply(), Some(reply));
    let remediation = error.remediation().unwrap_or_default();
    assert!(
        remediation.contains(remediation_part),
        "{reply}: the remediation {remediation:?} lacks {remediation_part:?}"
    );
    assert!(
        !error.to_string().contains("good-token") && !error.to_string().contains("scripted-token")
    );
    if kind == Kind::MailboxThrottled {
        assert_eq!(
            error.retry_after(),
            Some(mailroom_smtp::MAILBOX_PAUSE),
            "{reply}"
        );
    }
}

#[tokio::test]
async fn replies_map_to_kinds_and_remediations() {
    let server = TestServer::start(ServerOptions {
        tokens: vec![(USER.to_owned(), "good-token".to_owned())],
        scripted: scripted_replies(),
        ..ServerOptions::default()
    });
    for (index, (at, reply, kind, remediation)) in ROWS.iter().enumerate() {
        let (token_text, sender, recipient) = row_keys(index, *at);
        // A transport per row: a failed exchange closes its connection anyway.
        let mut settings = oauth_settings(&server, TlsStartup::StartTls);
        settings.smtp_user = USER.to_owned();
        let transport = transport_with(&server, settings, 1);
        let message = lettre::Message::builder()
            .from(sender.parse().expect("from"))
            .to(recipient.parse().expect("to"))
            .subject("reply table")
            .body(String::from("body\r\n"))
            .expect("message");
        let message = outgoing(&message, &sender, &[&recipient]);
        let error = send(&transport, &message, &token(&token_text, 1))
            .await
            .expect_err(reply);
        check(&error, reply, *kind, remediation);
    }
}

/// `verify` authenticates and QUITs without a message: Exchange says only at AUTH that
/// SMTP AUTH is off (`535 5.7.139`), so this is how a doctor sees it before a send does.
#[tokio::test]
async fn verify_authenticates_without_sending_and_names_a_disabled_smtp_auth() {
    let disabled = "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.";
    let server = TestServer::start(ServerOptions {
        tokens: vec![(USER.to_owned(), "good-token".to_owned())],
        scripted: json!({ "AUTH": { "disabled-token": disabled } }),
        ..ServerOptions::default()
    });
    let transport = transport_with(&server, oauth_settings(&server, TlsStartup::StartTls), 1);
    transport.verify(&token("good-token", 1)).await.unwrap();
    let error = transport
        .verify(&token("disabled-token", 2))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), Kind::AccountConfiguration);
    assert_eq!(error.server_reply(), Some(disabled));
    assert_eq!(
        error.remedy(),
        Some(&mailroom_model::Remedy::EnableSmtpAuthOrUseGraph {
            account: None,
            mailbox: Some(USER.to_owned()),
        })
    );
    assert!(server.messages().is_empty(), "verify sent a message");
    assert_eq!(
        server.events_of("auth").len(),
        2,
        "each verify authenticated once"
    );
}
