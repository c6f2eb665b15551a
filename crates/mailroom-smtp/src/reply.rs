//! What went wrong in an SMTP exchange ([`Failure`]) and how it becomes a
//! [`TransportError`] with a kind the facade's retry policy reads and a remediation the CLI
//! prints. The table of known Microsoft 365 replies lives in [`map_reply`].

use std::error::Error as StdError;
use std::fmt;

use mailroom_model::{Remedy, TransportError, TransportErrorKind};

use crate::tls::is_tls_failure;

/// The step of the exchange a failure happened in; replies mean different things in
/// different steps (a 550 to `RCPT` is about a recipient, after the data about content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stage {
    Connect,
    Greeting,
    StartTls,
    Authenticate,
    MailFrom,
    RcptTo(String),
    Data,
    /// The message content and its final `.`.
    Message,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Connect => f.write_str("connecting"),
            Stage::Greeting => f.write_str("the greeting and EHLO"),
            Stage::StartTls => f.write_str("STARTTLS"),
            Stage::Authenticate => f.write_str("authentication"),
            Stage::MailFrom => f.write_str("MAIL FROM"),
            Stage::RcptTo(recipient) => write!(f, "RCPT TO <{recipient}>"),
            Stage::Data => f.write_str("DATA"),
            Stage::Message => f.write_str("the message data"),
        }
    }
}

/// An SMTP reply: code and text (lines joined with spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) code: u16,
    pub(crate) text: String,
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} {}", self.code, self.text)
        }
    }
}

impl Reply {
    /// The RFC 3463 enhanced status code at the start of the text, e.g. `5.7.3`.
    fn enhanced_code(&self) -> Option<&str> {
        let first = self.text.split_whitespace().next()?;
        let mut parts = first.split('.');
        let class = parts.next()?;
        let valid = matches!(class, "2" | "4" | "5")
            && parts.clone().count() == 2
            && parts.all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
        valid.then_some(first)
    }

    fn contains(&self, needle: &str) -> bool {
        self.text
            .to_ascii_lowercase()
            .contains(&needle.to_ascii_lowercase())
    }
}

/// Everything that can go wrong between connecting and the final reply. Nothing here holds
/// a credential: replies are the server's words, sources are io or TLS errors.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The server answered a command with a negative reply.
    Reply { stage: Stage, reply: Reply },
    /// The server rejected the token with a `334` challenge; after our answer it said
    /// `reply` (normally a 535).
    TokenChallenge {
        mechanism: &'static str,
        challenge: String,
        reply: Reply,
    },
    /// The step did not finish within the account's timeout.
    Timeout { stage: Stage, timeout_ms: u32 },
    /// Connecting, TLS or the network failed, or the server closed the connection.
    Io {
        stage: Stage,
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The server broke the protocol (a reply past the bounds, bytes behind the `220` to
    /// STARTTLS, bytes that are no reply); the connection was dropped.
    Protocol {
        stage: Stage,
        server: String,
        problem: String,
    },
    /// The whole message was written but the final reply never came (timeout, dropped
    /// connection, or a broken reply): the server may have accepted it.
    DeliveryUnknown { server: String, reason: String },
    /// Recipients were refused; the message was not sent to anyone (no partial delivery).
    Recipients {
        rejected: Vec<(String, Reply)>,
        total: usize,
    },
    /// The connection would not protect a bearer token (or a required STARTTLS is missing).
    Insecure { reason: String, remediation: String },
    /// The account and the server (or the message) do not fit together.
    Unsupported {
        kind: TransportErrorKind,
        message: String,
        remediation: String,
        remedy: Option<Remedy>,
    },
}

impl Failure {
    pub(crate) fn io(stage: Stage, source: impl StdError + Send + Sync + 'static) -> Self {
        Failure::Io {
            stage,
            source: Box::new(source),
        }
    }

    /// A failed read or write at `stage` with the server `server` (`host:port`).
    pub(crate) fn from_wire(stage: Stage, server: &str, error: crate::wire::WireError) -> Self {
        use crate::wire::WireError;
        match error {
            WireError::Io(error) => Failure::io(stage, error),
            WireError::Closed => Failure::io(
                stage,
                std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the server closed the connection",
                ),
            ),
            WireError::Protocol(problem) => Failure::Protocol {
                stage,
                server: server.to_owned(),
                problem,
            },
        }
    }

    /// True when the connection may simply have been closed by the server while it sat
    /// in the pool, before this message was handed over: safe to retry on a new one.
    pub(crate) fn is_stale_connection(&self) -> bool {
        match self {
            Failure::Io { stage, .. } => *stage == Stage::MailFrom,
            Failure::Reply { stage, reply } => *stage == Stage::MailFrom && reply.code == 421,
            _ => false,
        }
    }

    /// True when the server refused one more connection for the mailbox (Exchange's
    /// `432 4.3.2`): the connection is useless, fewer connections will do.
    pub(crate) fn is_too_many_connections(&self) -> bool {
        match self {
            Failure::Reply { stage, reply } => {
                reply.code == 432
                    && map_reply(stage, reply, "").kind() == TransportErrorKind::TooManyConnections
            }
            _ => false,
        }
    }

    /// The error the facade and the CLI see.
    pub(crate) fn into_transport_error(self, user: &str) -> TransportError {
        match self {
            Failure::Reply { stage, reply } => map_reply(&stage, &reply, user),
            Failure::TokenChallenge {
                mechanism,
                challenge,
                reply,
            } => {
                // A final reply the table knows better (SMTP AUTH disabled, a 4xx) wins.
                let mapped = map_reply(&Stage::Authenticate, &reply, user);
                if !matches!(
                    mapped.kind(),
                    TransportErrorKind::AuthenticationRejected | TransportErrorKind::Permanent
                ) {
                    return mapped;
                }
                TransportError::new(
                TransportErrorKind::AuthenticationRejected,
                format!(
                    "the smtp server rejected the access token for {user} ({mechanism}); it said: {challenge}"
                ),
            )
            .with_server_reply(reply.to_string())
            .with_remediation(
                "mailroom refreshes the token once and retries; if it fails again, sign in again",
            )
            .with_remedy(Remedy::SignIn { account: None, browser_only: false })
            }
            Failure::Timeout { stage, timeout_ms } => TransportError::new(
                TransportErrorKind::Transient,
                format!("the smtp server did not answer within {timeout_ms} ms during {stage}"),
            )
            .with_remediation(
                "check that the server is reachable, or raise the account's timeout; the send can be retried",
            ),
            Failure::Io { stage, source } => {
                if is_tls_failure(source.as_ref()) {
                    TransportError::new(
                        TransportErrorKind::Tls,
                        format!("the tls connection to the smtp server failed during {stage}: {source}"),
                    )
                    .with_remediation(
                        "check the host name; if the server uses a company or test certificate authority, give its root certificate (PEM) with MAILROOM_CA_FILE",
                    )
                    .with_source(BoxedSource(source))
                } else {
                    TransportError::new(
                        TransportErrorKind::Transient,
                        format!("the smtp connection failed during {stage}: {source}"),
                    )
                    .with_remediation(
                        "check the host, port and network; the send can be retried",
                    )
                    .with_source(BoxedSource(source))
                }
            }
            Failure::Protocol {
                stage,
                server,
                problem,
            } => TransportError::new(
                TransportErrorKind::Permanent,
                format!(
                    "the smtp server {server} broke the protocol during {stage}: {problem}; mailroom dropped the connection and did not send the message"
                ),
            )
            .with_remediation(
                "check the host and port of the account; if they are right, the server or something on the network path misbehaves: ask its administrator",
            )
            .with_remedy(Remedy::EditAccount { account: None }),
            Failure::DeliveryUnknown { server, reason } => TransportError::new(
                TransportErrorKind::DeliveryUnknown,
                format!(
                    "the smtp server {server} took the whole message but {reason}: it may or may not have accepted it"
                ),
            )
            .with_remediation(
                "mailroom does not send it again at once; a queued message is tried once more later, so the recipients may get it twice (with the same Message-ID)",
            ),
            Failure::Recipients { mut rejected, total } => {
                if rejected.len() == 1 && total == 1 {
                    let (recipient, reply) = rejected.remove(0);
                    return map_reply(&Stage::RcptTo(recipient), &reply, user);
                }
                // The first refusal decides the kind and the advice; the message lists them all.
                let Some((first_recipient, first_reply)) = rejected.first() else {
                    return TransportError::new(
                        TransportErrorKind::Permanent,
                        "the smtp server refused the recipients",
                    );
                };
                let mapped = map_reply(&Stage::RcptTo(first_recipient.clone()), first_reply, user);
                let list = rejected
                    .iter()
                    .map(|(recipient, reply)| format!("<{recipient}>: {reply}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                let mut error = TransportError::new(
                    mapped.kind(),
                    format!(
                        "the smtp server refused {} of the message's {total} recipients ({list}); mailroom does not deliver to only some recipients, so the message was sent to nobody",
                        rejected.len()
                    ),
                )
                .with_server_reply(first_reply.to_string());
                if let Some(wait) = mapped.retry_after() {
                    error = error.with_retry_after(wait);
                }
                if let Some(remediation) = mapped.remediation() {
                    error = error.with_remediation(format!(
                        "{remediation}; or send the message without the refused recipients"
                    ));
                }
                match mapped.remedy() {
                    Some(remedy) => error.with_remedy(remedy.clone()),
                    None => error,
                }
            }
            Failure::Insecure {
                reason,
                remediation,
            } => TransportError::new(TransportErrorKind::Insecure, reason)
                .with_remediation(remediation)
                .with_remedy(Remedy::EditAccount { account: None }),
            Failure::Unsupported {
                kind,
                message,
                remediation,
                remedy,
            } => {
                let error = TransportError::new(kind, message).with_remediation(remediation);
                match remedy {
                    Some(remedy) => error.with_remedy(remedy),
                    None => error,
                }
            }
        }
    }
}

/// A boxed error as an error type, to keep the `source` chain.
#[derive(Debug)]
struct BoxedSource(Box<dyn StdError + Send + Sync>);

impl fmt::Display for BoxedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl StdError for BoxedSource {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

const SMTP_AUTH_ENABLE: &str = "an administrator must enable SMTP AUTH for the mailbox: `Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false` (or for the whole tenant: `Set-TransportConfig -SmtpClientAuthenticationDisabled $false`); see https://aka.ms/smtp_auth_disabled";

/// How long a mailbox Exchange Online paused (a quota, continuous-error throttling) is
/// left alone before mailroom tries again. Microsoft names no time: the recipient quota
/// counts a rolling 24 hours, so some of it frees up every hour, and the throttling period
/// "will be decided by Microsoft"; an hour is also [`mailroom_model::MAX_RETRY_AFTER`].
pub const MAILBOX_PAUSE: std::time::Duration = std::time::Duration::from_secs(3600);

/// What each continuous-error throttling reply (`550 5.2.251`-`5.2.255`) says went wrong
/// before, and what fixes it; `None` for other codes.
fn continuous_error(enhanced: &str, user: &str) -> Option<(&'static str, String)> {
    Some(match enhanced {
        "5.2.251" => (
            "the mailbox was full",
            format!(
                "empty {user}'s mailbox (sent messages are kept in Sent Items: give that folder a retention policy)"
            ),
        ),
        "5.2.252" => (
            "the From address was not one it may send as",
            format!(
                "send from {user}'s own address, or ask an administrator to grant {user} Send As on the From address"
            ),
        ),
        "5.2.253" => (
            "the mailbox has no valid license",
            format!("ask an administrator to assign {user} an Exchange Online license"),
        ),
        "5.2.254" => (
            "messages had too many recipients",
            "send to fewer recipients per message (Exchange Online takes at most 500)".to_owned(),
        ),
        "5.2.255" => (
            "messages had recipients that do not exist",
            "check the recipients' addresses".to_owned(),
        ),
        _ => return None,
    })
}

/// The table: a negative reply at a stage -> kind, message and remediation.
///
/// `535 5.7.3` maps to `AuthenticationRejected`, not `SignInRequired`: Exchange Online
/// sends it for an expired token too, which one refresh fixes, and the facade refreshes
/// only once; the remediation names the other causes for when the retry fails as well.
///
/// Exchange Online's limits on SMTP AUTH submission, per mailbox:
/// - `432 4.3.2 Concurrent connections limit exceeded` (or the older `432 4.3.2
///   STOREDRV.ClientSubmit; sender thread limit exceeded`): more than three connections
///   send at once -> `TooManyConnections`, retried soon on fewer connections. ("Changes in
///   message store and throttling for concurrent connections",
///   MicrosoftDocs/SupportArticles-docs `Exchange/ExchangeOnline/send-emails/smtp-submission-improvements.md`,
///   learn.microsoft.com/exchange/troubleshoot/send-emails/smtp-submission-improvements.)
/// - `554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException`: the
///   recipient rate limit (10,000 recipients a day) is used up -> `MailboxThrottled`,
///   held for [`MAILBOX_PAUSE`] (same page; the 30 messages a minute only delay delivery).
/// - `550 5.2.251`-`5.2.255 Sender throttled due to continuous ... errors`: Exchange stops
///   the mailbox's SMTP AUTH sends "for a period of time" after repeated mailbox-full,
///   Send As, license, too-many-recipients or invalid-recipient errors ->
///   `MailboxThrottled`, with the cause's fix. ("Continuous Error Throttling for SMTP AUTH
///   Submissions", MicrosoftDocs/OfficeDocs-Exchange
///   `Exchange/ExchangeOnline/mail-flow-best-practices/continuous-error-throttling-smtp-auth-submissions.md`.)
///   `554 5.2.252 SendAsDenied` (one refused message, not the throttle) stays `SendAsDenied`.
/// - `554 5.2.2 mailbox full` (the sending mailbox; sent messages count, Sent Items keeps
///   them) -> `AccountConfiguration` (smtp-submission-improvements.md).
pub(crate) fn map_reply(stage: &Stage, reply: &Reply, user: &str) -> TransportError {
    use TransportErrorKind as Kind;
    let enhanced = reply.enhanced_code().unwrap_or("");
    let sign_in = Some(Remedy::SignIn {
        account: None,
        browser_only: false,
    });
    let switch_to_oauth = Some(Remedy::SwitchToOAuth { account: None });
    let enable_smtp_auth = Some(Remedy::EnableSmtpAuth {
        mailbox: Some(user.to_owned()),
    });
    let edit_account = Some(Remedy::EditAccount { account: None });
    let (kind, message, remediation, remedy): (Kind, String, String, Option<Remedy>) = match (reply.code, enhanced) {
        (535, "5.7.139") if reply.contains("SmtpClientAuthentication") => (
            Kind::AccountConfiguration,
            format!("smtp authentication (SMTP AUTH) is disabled for {user} or its tenant"),
            format!("{SMTP_AUTH_ENABLE}; or send through Microsoft Graph instead (route graph), which needs no SMTP AUTH"),
            Some(Remedy::EnableSmtpAuthOrUseGraph {
                account: None,
                mailbox: Some(user.to_owned()),
            }),
        ),
        (535, "5.7.139") if reply.contains("basic authentication is disabled") => (
            Kind::AccountConfiguration,
            "the server no longer accepts passwords (basic authentication is disabled)".to_owned(),
            "switch the account to OAuth (provider microsoft), then sign in".to_owned(),
            switch_to_oauth.clone(),
        ),
        (535, "5.7.139") => (
            Kind::AccountConfiguration,
            format!("the server refused to authenticate {user} by policy"),
            "an administrator must check the tenant's sign-in policies (security defaults, conditional access) and that SMTP AUTH is enabled for the mailbox".to_owned(),
            enable_smtp_auth.clone(),
        ),
        (535, "5.7.3") => (
            Kind::AuthenticationRejected,
            format!("the smtp server rejected the credentials of {user}"),
            format!("mailroom refreshes the token once and retries; if it still fails, the token is for another account or lacks the SMTP.Send scope (sign in again as {user}), or SMTP AUTH is off for the mailbox ({SMTP_AUTH_ENABLE})"),
            sign_in.clone(),
        ),
        (535, _) => (
            Kind::AuthenticationRejected,
            format!("the smtp server rejected the credentials of {user}"),
            "mailroom refreshes the token once and retries; if it still fails, sign in again (or set the right password)".to_owned(),
            sign_in.clone(),
        ),
        (550, "5.7.30") => (
            Kind::AccountConfiguration,
            "the server does not accept basic authentication (passwords) for client submission".to_owned(),
            "switch the account to OAuth (provider microsoft), then sign in".to_owned(),
            switch_to_oauth.clone(),
        ),
        (530, "5.7.57") => (
            Kind::AccountConfiguration,
            "the server requires authentication before it accepts mail".to_owned(),
            "give the account credentials: sign in (OAuth) or set the SMTP user and password".to_owned(),
            sign_in.clone(),
        ),
        (432, "4.3.2")
            if reply.contains("concurrent connection") || reply.contains("sender thread limit") =>
        (
            Kind::TooManyConnections,
            format!("the smtp server refused another connection for {user}: Exchange Online allows three at once per mailbox"),
            "mailroom retries on fewer connections; if it keeps happening, other programs send from the same mailbox at the same time: give them their own mailboxes".to_owned(),
            None,
        ),
        (554, "5.2.0") if reply.contains("SubmissionQuotaExceeded") => (
            Kind::MailboxThrottled,
            format!("{user} has used up its sending quota (Exchange Online: 10,000 recipients in any 24 hours)"),
            format!("mailroom holds the message and tries again in {} minutes; the quota frees up as the day's sends age past 24 hours. To send more, spread the mail over several mailboxes or use a bulk email service", MAILBOX_PAUSE.as_secs() / 60),
            None,
        ),
        (550, code) if continuous_error(code, user).is_some() => {
            let (cause, fix) = continuous_error(code, user).unwrap_or_default();
            (
                Kind::MailboxThrottled,
                format!("Exchange Online paused sending from {user} because earlier sends kept failing: {cause}"),
                format!("{fix}; the pause ends when Microsoft's throttling period is over (Microsoft decides how long, support cannot lift it), and mailroom holds the message and tries again in {} minutes", MAILBOX_PAUSE.as_secs() / 60),
                None,
            )
        }
        (554, "5.2.2") => (
            Kind::AccountConfiguration,
            format!("the mailbox of {user} is full, so it cannot send (sent messages are kept in its Sent Items)"),
            format!("empty {user}'s mailbox, or give its Sent Items folder a retention policy that empties it"),
            None,
        ),
        (554, "5.2.252") | (550, "5.7.60") => (
            Kind::SendAsDenied,
            format!("{user} may not send as the message's From address"),
            format!("send from {user}'s own address, or ask an administrator to grant {user} Send As on the From address (`Add-RecipientPermission -Identity <from address> -Trustee {user} -AccessRights SendAs`)"),
            None,
        ),
        (501, "5.5.124") => (
            Kind::SignInRequired,
            "the server could not read the XOAUTH2 data (invalid XOAUTH2 auth data)".to_owned(),
            format!("check that the account's SMTP user `{user}` is the mailbox address, then sign in again"),
            sign_in.clone(),
        ),
        (504, "5.7.4") => (
            Kind::AccountConfiguration,
            "the server does not accept this authentication mechanism (unrecognized authentication type)".to_owned(),
            format!("check the host is the provider's submission server; for Microsoft 365 {SMTP_AUTH_ENABLE}"),
            edit_account.clone(),
        ),
        (538, _) => (
            Kind::Insecure,
            "the server requires encryption before authentication".to_owned(),
            "enable TLS for the account (STARTTLS or implicit TLS)".to_owned(),
            edit_account.clone(),
        ),
        (552, _) | (_, "5.3.4") => (
            Kind::MessageTooLarge,
            "the server refused the message as too large".to_owned(),
            "make the message or its attachments smaller".to_owned(),
            None,
        ),
        (400..=499, _) => (
            Kind::Transient,
            format!("the smtp server refused {stage} for now"),
            "mailroom retries later; nothing to do unless it keeps failing".to_owned(),
            None,
        ),
        (500..=599, _) => match stage {
            Stage::RcptTo(recipient) => (
                Kind::MessageRejected,
                format!("the smtp server refused the recipient {recipient}"),
                "check the recipient's address".to_owned(),
                None,
            ),
            Stage::Message => (
                Kind::MessageRejected,
                "the smtp server refused the message".to_owned(),
                "read the server's reply; the content or a policy of the server is the cause".to_owned(),
                None,
            ),
            Stage::Authenticate => (
                Kind::Permanent,
                format!("the smtp server refused to authenticate {user}"),
                "read the server's reply and check the account's settings".to_owned(),
                edit_account.clone(),
            ),
            _ => (
                Kind::Permanent,
                format!("the smtp server refused {stage}"),
                "read the server's reply and check the account's settings".to_owned(),
                edit_account.clone(),
            ),
        },
        _ => (
            Kind::Permanent,
            format!("the smtp server answered {stage} with an unexpected reply"),
            "read the server's reply and check the account's settings".to_owned(),
            edit_account,
        ),
    };
    let mut error = TransportError::new(kind, message)
        .with_server_reply(reply.to_string())
        .with_remediation(remediation);
    if kind == Kind::MailboxThrottled {
        error = error.with_retry_after(MAILBOX_PAUSE);
    }
    match remedy {
        Some(remedy) => error.with_remedy(remedy),
        None => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(line: &str) -> Reply {
        let (code, text) = line.split_once(' ').unwrap_or((line, ""));
        Reply {
            code: code.parse().unwrap(),
            text: text.to_owned(),
        }
    }

    #[track_caller]
    fn check(stage: Stage, line: &str, kind: TransportErrorKind, remediation_part: &str) {
        let error = map_reply(&stage, &reply(line), "box@example.com");
        assert_eq!(error.kind(), kind, "{line}");
        assert_eq!(error.server_reply(), Some(line));
        let remediation = error.remediation().unwrap_or_default();
        assert!(
            remediation.contains(remediation_part),
            "{line}: remediation {remediation:?} lacks {remediation_part:?}"
        );
    }

    #[test]
    fn stage_decides_for_generic_replies() {
        use TransportErrorKind as Kind;
        check(
            Stage::RcptTo("x@y".into()),
            "550 5.1.1 User unknown",
            Kind::MessageRejected,
            "recipient",
        );
        check(
            Stage::Message,
            "550 5.7.1 Spam",
            Kind::MessageRejected,
            "content",
        );
        check(
            Stage::MailFrom,
            "553 5.1.8 Bad sender",
            Kind::Permanent,
            "settings",
        );
        check(
            Stage::Message,
            "552 5.3.4 Message size exceeds fixed limit",
            Kind::MessageTooLarge,
            "smaller",
        );
        check(
            Stage::MailFrom,
            "421 4.7.0 Try again later",
            Kind::Transient,
            "retries later",
        );
        check(
            Stage::Authenticate,
            "538 5.7.11 Encryption required",
            Kind::Insecure,
            "enable TLS",
        );
    }

    /// Exchange Online's per-mailbox limits, in the documented words: the concurrent
    /// connection limit (MicrosoftDocs/SupportArticles-docs
    /// `Exchange/ExchangeOnline/send-emails/smtp-submission-improvements.md`; the live page
    /// and Exchange's own replies add the aka.ms link and the host), the recipient rate
    /// limit (same page) and continuous-error throttling (MicrosoftDocs/OfficeDocs-Exchange
    /// `Exchange/ExchangeOnline/mail-flow-best-practices/continuous-error-throttling-smtp-auth-submissions.md`).
    #[test]
    fn exchange_limits_have_their_own_kinds() {
        use TransportErrorKind as Kind;
        for (stage, line) in [
            (
                Stage::Authenticate,
                "432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending for more information. [Hostname=DM4PR18MB4126.namprd18.prod.outlook.com]",
            ),
            (
                Stage::Message,
                "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
            ),
            (
                Stage::MailFrom,
                "432 4.3.2 Concurrent connections limit exceeded.",
            ),
        ] {
            check(stage, line, Kind::TooManyConnections, "fewer connections");
            let error = map_reply(&Stage::MailFrom, &reply(line), "box@example.com");
            assert!(error.is_transient() && !error.is_mailbox_paused(), "{line}");
            assert_eq!(error.retry_after(), None, "{line}: not a pause");
        }
        // The recipient-side thread limit is another 4.3.2: only transient.
        check(
            Stage::Message,
            "432 4.3.2 STOREDRV.Deliver; recipient thread limit exceeded",
            Kind::Transient,
            "retries later",
        );
        let throttled = [
            (
                "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
                "24 hours",
            ),
            (
                "550 5.2.251 Sender throttled due to continuous mailbox full errors.",
                "Sent Items",
            ),
            (
                "550 5.2.252 Sender throttled due to continuous send as denied errors.",
                "Send As",
            ),
            (
                "550 5.2.253 Sender throttled due to continuous invalid license errors.",
                "license",
            ),
            (
                "550 5.2.254 Sender throttled due to continuous too many recipients errors.",
                "fewer recipients",
            ),
            (
                "550 5.2.255 Sender throttled due to continuous invalid recipients errors.",
                "recipients' addresses",
            ),
        ];
        for (line, fix) in throttled {
            for stage in [
                Stage::MailFrom,
                Stage::RcptTo("to@example.com".into()),
                Stage::Message,
            ] {
                check(stage.clone(), line, Kind::MailboxThrottled, fix);
                let error = map_reply(&stage, &reply(line), "box@example.com");
                assert!(error.is_mailbox_paused() && !error.is_transient(), "{line}");
                assert_eq!(error.retry_after(), Some(MAILBOX_PAUSE), "{line}");
                assert!(
                    error
                        .remediation()
                        .unwrap_or_default()
                        .contains("holds the message"),
                    "{line}: {error}"
                );
            }
        }
        // One refused Send As stays what it was; the throttle is the 550.
        check(
            Stage::Message,
            "554 5.2.252 SendAsDenied; box@example.com not allowed to send as other@example.com; STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied",
            Kind::SendAsDenied,
            "Send As",
        );
        check(
            Stage::Message,
            "554 5.2.2 mailbox full; STOREDRV.Submission.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded",
            Kind::AccountConfiguration,
            "retention policy",
        );
    }

    /// Exchange's `535 5.7.139` says three things by its text: SMTP AUTH off, basic
    /// authentication off, or (any other text) a sign-in policy that refused the account;
    /// only the quota's own text makes a `554 5.2.0` a quota.
    #[test]
    fn the_text_of_an_exchange_reply_decides_between_its_causes() {
        use TransportErrorKind as Kind;
        check(
            Stage::Authenticate,
            "535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to be authenticated successfully. Contact your administrator.",
            Kind::AccountConfiguration,
            "sign-in policies",
        );
        let policy = map_reply(
            &Stage::Authenticate,
            &reply(
                "535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to be authenticated successfully. Contact your administrator.",
            ),
            "box@example.com",
        );
        assert!(matches!(
            policy.remedy(),
            Some(Remedy::EnableSmtpAuth { mailbox: Some(mailbox) }) if mailbox == "box@example.com"
        ));
        check(
            Stage::Message,
            "554 5.2.0 STOREDRV.Submission.Exception:OutboundSpamException; Failed to process message due to a permanent exception with message [BeginDiagnosticData]",
            Kind::MessageRejected,
            "content",
        );
        // A refusal at AUTH that the table does not know names the account.
        let unknown = map_reply(
            &Stage::Authenticate,
            &reply("504 5.5.4 Unrecognized authentication type"),
            "box@example.com",
        );
        assert_eq!(unknown.kind(), Kind::Permanent);
        assert_eq!(
            unknown.message(),
            "the smtp server refused to authenticate box@example.com"
        );
    }

    #[test]
    fn a_quota_refusing_every_recipient_keeps_its_pause() {
        let quota =
            reply("554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException");
        let failure = Failure::Recipients {
            rejected: vec![
                ("a@example.com".to_owned(), quota.clone()),
                ("b@example.com".to_owned(), quota),
            ],
            total: 2,
        };
        let error = failure.into_transport_error("box@example.com");
        assert_eq!(error.kind(), TransportErrorKind::MailboxThrottled);
        assert_eq!(error.retry_after(), Some(MAILBOX_PAUSE));
    }

    #[test]
    fn basic_auth_retirement_asks_for_oauth() {
        for stage in [Stage::Authenticate, Stage::MailFrom] {
            let error = map_reply(
                &stage,
                &reply("550 5.7.30 Basic authentication is not supported for Client Submission."),
                "box@example.com",
            );
            assert_eq!(error.kind(), TransportErrorKind::AccountConfiguration);
            assert_eq!(
                error.remedy(),
                Some(&Remedy::SwitchToOAuth { account: None })
            );
        }
    }

    /// The two 5.7.139 replies Exchange Online sends (SupportArticles-docs
    /// `smtp-submission-improvements.md`, OfficeDocs-Exchange `authenticated-client-smtp-submission.md`):
    /// basic authentication switched off asks for OAuth; SMTP AUTH switched off for the
    /// mailbox or tenant asks to enable it, or to leave SMTP for Microsoft Graph.
    #[test]
    fn smtp_auth_disabled_offers_the_graph_route() {
        let error = map_reply(
            &Stage::Authenticate,
            &reply(
                "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.",
            ),
            "box@example.com",
        );
        assert_eq!(error.kind(), TransportErrorKind::AccountConfiguration);
        assert_eq!(
            error.remedy(),
            Some(&Remedy::EnableSmtpAuthOrUseGraph {
                account: None,
                mailbox: Some("box@example.com".to_owned()),
            })
        );
        assert!(
            error
                .remediation()
                .unwrap_or_default()
                .contains("route graph")
        );
        let basic = map_reply(
            &Stage::Authenticate,
            &reply("535 5.7.139 Authentication unsuccessful, basic authentication is disabled."),
            "box@example.com",
        );
        assert_eq!(
            basic.remedy(),
            Some(&Remedy::SwitchToOAuth { account: None })
        );
    }

    #[test]
    fn enhanced_codes() {
        assert_eq!(
            reply("535 5.7.3 Authentication unsuccessful").enhanced_code(),
            Some("5.7.3")
        );
        assert_eq!(reply("250 OK").enhanced_code(), None);
        assert_eq!(reply("550 5.x.1 nope").enhanced_code(), None);
    }

    #[test]
    fn io_failures_are_transient_and_keep_their_source() {
        let failure = Failure::io(
            Stage::Connect,
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        );
        let error = failure.into_transport_error("box@example.com");
        assert_eq!(error.kind(), TransportErrorKind::Transient);
        assert!(
            error
                .message()
                .starts_with("the smtp connection failed during connecting"),
            "{}",
            error.message()
        );
        assert!(StdError::source(&error).is_some());
    }

    #[test]
    fn a_failed_read_keeps_its_text_and_its_cause_in_the_source_chain() {
        #[derive(Debug)]
        struct Cause;
        impl fmt::Display for Cause {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the cable is out")
            }
        }
        impl StdError for Cause {}
        #[derive(Debug)]
        struct Outer(Cause);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the link went down")
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let io_error = std::io::Error::new(std::io::ErrorKind::ConnectionReset, Outer(Cause));
        let error = Failure::io(Stage::MailFrom, io_error).into_transport_error("box@example.com");
        let source = StdError::source(&error).expect("the read's error");
        assert_eq!(source.to_string(), "the link went down");
        let cause = source.source().expect("its cause");
        assert_eq!(cause.to_string(), "the cable is out");
    }

    /// Only what may be a connection the server closed while it sat in the pool, before
    /// this message was handed over, is retried on a new connection: a failed read or
    /// write at `MAIL FROM`, or a `421` there.
    #[test]
    fn only_a_failure_at_mail_from_is_a_stale_connection() {
        let reset = || std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(Failure::io(Stage::MailFrom, reset()).is_stale_connection());
        assert!(!Failure::io(Stage::Data, reset()).is_stale_connection());
        assert!(!Failure::io(Stage::Message, reset()).is_stale_connection());
        let at = |stage: Stage, line: &str| Failure::Reply {
            stage,
            reply: reply(line),
        };
        assert!(at(Stage::MailFrom, "421 4.4.2 Connection timed out").is_stale_connection());
        assert!(
            !at(
                Stage::RcptTo("a@example.com".to_owned()),
                "421 4.4.2 Connection timed out"
            )
            .is_stale_connection()
        );
        assert!(!at(Stage::MailFrom, "451 4.3.0 Try later").is_stale_connection());
        assert!(
            !Failure::Timeout {
                stage: Stage::MailFrom,
                timeout_ms: 1_000
            }
            .is_stale_connection()
        );
    }

    #[test]
    fn only_exchanges_connection_limit_reply_is_too_many_connections() {
        let at = |line: &str| Failure::Reply {
            stage: Stage::MailFrom,
            reply: reply(line),
        };
        assert!(at("432 4.3.2 Concurrent connections limit exceeded.").is_too_many_connections());
        // Another 432: Exchange's recipient-side thread limit, transient only.
        assert!(
            !at("432 4.3.2 STOREDRV.Deliver; recipient thread limit exceeded")
                .is_too_many_connections()
        );
        assert!(!at("451 4.3.2 Concurrent connections limit exceeded.").is_too_many_connections());
    }

    #[test]
    fn one_refused_recipient_of_several_refuses_the_whole_message() {
        let unknown = reply("550 5.1.1 User unknown");
        let one_of_three = Failure::Recipients {
            rejected: vec![("b@example.com".to_owned(), unknown.clone())],
            total: 3,
        }
        .into_transport_error("box@example.com");
        assert_eq!(one_of_three.kind(), TransportErrorKind::MessageRejected);
        assert!(
            one_of_three.message().contains(
                "refused 1 of the message's 3 recipients (<b@example.com>: 550 5.1.1 User unknown)"
            ),
            "{}",
            one_of_three.message()
        );
        // The only recipient refused: the reply's own error, as for a one-recipient send.
        let only = Failure::Recipients {
            rejected: vec![("b@example.com".to_owned(), unknown.clone())],
            total: 1,
        }
        .into_transport_error("box@example.com");
        let direct = map_reply(
            &Stage::RcptTo("b@example.com".to_owned()),
            &unknown,
            "box@example.com",
        );
        assert_eq!(only.message(), direct.message());
        assert!(!only.message().contains("recipients"), "{}", only.message());
    }

    #[test]
    fn rustls_errors_are_tls_failures() {
        let rustls_error =
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io_error = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls_error);
        let error = Failure::io(Stage::StartTls, io_error).into_transport_error("box@example.com");
        assert_eq!(error.kind(), TransportErrorKind::Tls);
        assert!(
            error
                .remediation()
                .unwrap_or_default()
                .contains("MAILROOM_CA_FILE")
        );
    }
}
