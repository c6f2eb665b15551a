//! Turns Graph's answers and reqwest's failures into `TransportError`s with a kind the
//! facade's retry policy decides on, a remediation in prose and a [`Remedy`] a front end
//! offers.
//!
//! Graph's error body (Microsoft's `concepts/errors.md`):
//! `{"error": {"code": "...", "message": "...", "innerError": {"request-id", "date", ...}}}`.
//! Throttling (`concepts/throttling-limits.md`): 429 with a `Retry-After` in seconds; the
//! Outlook service answers `ApplicationThrottled` or `MailboxConcurrency`.

use std::error::Error as StdError;
use std::time::{Duration, SystemTime};

use mailroom_model::{Remedy, TransportError, TransportErrorKind};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Deserialize;

use crate::{MAIL_READ_WRITE_SCOPE, MAIL_SEND_SCOPE};

/// Which request of a send failed: it decides which permission a refusal lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// `POST /users/{m}/sendMail` (needs `Mail.Send`).
    SendMail,
    /// `POST /users/{m}/messages`, `createUploadSession`, `POST .../attachments` (need
    /// `Mail.ReadWrite`).
    Draft,
    /// `POST /users/{m}/messages/{id}/send` (needs `Mail.Send`).
    SendDraft,
}

impl Step {
    fn permission(self) -> (&'static str, &'static str) {
        match self {
            Step::SendMail | Step::SendDraft => ("Mail.Send", MAIL_SEND_SCOPE),
            Step::Draft => ("Mail.ReadWrite", MAIL_READ_WRITE_SCOPE),
        }
    }
}

/// `error` fixed by a new sign-in that grants `step`'s permission.
pub(crate) fn grant_permission(error: TransportError, step: Step) -> TransportError {
    let (name, scope) = step.permission();
    let why = if step == Step::Draft {
        " (a message over Graph's 4 MB request limit is sent as a draft with upload sessions, which needs Mail.ReadWrite besides Mail.Send)"
    } else {
        ""
    };
    error
        .with_remediation(format!(
            "sign in again for this account and grant the Microsoft Graph permission {name}{why} ({name}.Shared as well to send from a mailbox other than the signed-in user's); for an application token, an administrator must grant the application permission {name}"
        ))
        .with_remedy(Remedy::GrantScope {
            account: None,
            scope: scope.to_owned(),
        })
}

#[derive(Debug, Deserialize)]
struct GraphErrorBody {
    error: GraphError,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    inner_error: Option<InnerError>,
}

#[derive(Debug, Default, Deserialize)]
struct InnerError {
    #[serde(default, rename = "request-id")]
    request_id: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

impl GraphError {
    fn is(&self, wanted: &str) -> bool {
        self.code
            .as_deref()
            .is_some_and(|code| code.eq_ignore_ascii_case(wanted))
            || self
                .inner_error
                .as_ref()
                .and_then(|inner| inner.code.as_deref())
                .is_some_and(|code| code.eq_ignore_ascii_case(wanted))
    }
}

/// Maps an unsuccessful HTTP answer from Graph (or an upload URL) to a `TransportError`.
///
/// `token` is the request's access token: it is removed from anything quoted, in case a
/// server or proxy echoes the request back.
pub(crate) fn from_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    token: &str,
    step: Step,
) -> TransportError {
    let graph = serde_json::from_slice::<GraphErrorBody>(body)
        .ok()
        .map(|body| body.error);
    let server_reply = server_reply(status, graph.as_ref(), headers, body, token);
    let retry_after = retry_after(headers, SystemTime::now());
    let graph = graph.unwrap_or_default();
    let quoted = graph
        .message
        .as_deref()
        .map(|message| redact(message.trim(), token))
        .unwrap_or_else(|| format!("HTTP {status}"));
    let mut error = classify(status, &graph, &quoted, step).with_server_reply(server_reply);
    if let Some(retry_after) = retry_after {
        // `with_retry_after` clamps it to `MAX_RETRY_AFTER`.
        error = error.with_retry_after(retry_after);
    }
    error
}

fn classify(status: StatusCode, graph: &GraphError, quoted: &str, step: Step) -> TransportError {
    use TransportErrorKind as Kind;
    let code = graph.code.as_deref().unwrap_or("");
    if graph.is("ErrorSendAsDenied") {
        return TransportError::new(
            Kind::SendAsDenied,
            "Microsoft Graph refused to send: the From address is not one this mailbox may send as",
        )
        .with_remediation(
            "send from the mailbox's own address, or have an Exchange administrator grant the mailbox Send As permission on the From address",
        );
    }
    if graph.is("ErrorInvalidRecipients") {
        return TransportError::new(
            Kind::MessageRejected,
            format!("Microsoft Graph refused the recipients: {quoted}"),
        )
        .with_remediation("correct the recipients' addresses and send the message again");
    }
    if graph.is("ErrorMessageSizeExceeded")
        || graph.is("RequestBodyTooLarge")
        || status == StatusCode::PAYLOAD_TOO_LARGE
    {
        return TransportError::new(
            Kind::MessageTooLarge,
            format!("Microsoft Graph refused the message as too large: {quoted}"),
        )
        .with_remediation(
            "make the message smaller (the mailbox's limit is 35 MB unless an administrator raised it), for example by sending large attachments as links",
        );
    }
    if graph.is("ErrorQuotaExceeded") {
        return TransportError::new(
            Kind::AccountConfiguration,
            "the mailbox is full: Microsoft Graph cannot store the message (its storage quota is used up)",
        )
        .with_remediation(
            "free space in the mailbox (empty Deleted Items, archive old mail) or have an administrator raise its quota, then send again",
        );
    }
    if graph.is("MailboxNotEnabledForRESTAPI") || graph.is("MailboxNotSupportedForRESTAPI") {
        return TransportError::new(
            Kind::AccountConfiguration,
            "the mailbox cannot be used through Microsoft Graph (it is not an Exchange Online mailbox, or it is inactive or on-premises)",
        )
        .with_remediation(
            "an administrator must give the user an Exchange Online licence, or send this account over SMTP",
        );
    }
    let throttled = graph.is("MailboxConcurrency") || graph.is("ApplicationThrottled");
    match status.as_u16() {
        // Outlook's throttling codes come with 429, and MailboxConcurrency also with 503.
        // Outlook's throttling codes come with 429, and MailboxConcurrency also with 503.
        429 | 503 if throttled || status == StatusCode::TOO_MANY_REQUESTS => {
            let what = if graph.is("MailboxConcurrency") {
                "too many requests are running at once for this mailbox (MailboxConcurrency)"
            } else if graph.is("ApplicationThrottled") {
                "the application is throttled for this mailbox (ApplicationThrottled)"
            } else {
                "Microsoft Graph is throttling requests (HTTP 429)"
            };
            TransportError::new(Kind::Transient, what.to_owned())
                .with_remediation("send again after the wait Graph asked for")
                .throttled()
        }
        401 => TransportError::new(
            Kind::AuthenticationRejected,
            format!("Microsoft Graph rejected the access token ({})", if code.is_empty() { "HTTP 401" } else { code }),
        )
        .with_remediation(
            "refresh the token and send again; if it is still rejected, sign in again for this account",
        )
        .with_remedy(Remedy::SignIn { account: None, browser_only: false }),
        403 => {
            let (name, _) = step.permission();
            grant_permission(
                TransportError::new(
                    Kind::SignInRequired,
                    format!(
                        "Microsoft Graph denied access: the token lacks the {name} permission for this mailbox ({quoted})"
                    ),
                ),
                step,
            )
        }
        408 => TransportError::new(Kind::Transient, "Microsoft Graph timed out waiting for the request")
            .with_remediation("send again later"),
        500..=599 => TransportError::new(
            Kind::Transient,
            format!("Microsoft Graph had a temporary server error (HTTP {})", status.as_u16()),
        )
        .with_remediation("send again later"),
        404 => TransportError::new(
            Kind::Permanent,
            format!("Microsoft Graph found no such mailbox or resource: {quoted}"),
        )
        .with_remediation(
            "check the account's mailbox address (the user principal name) and the Microsoft Graph URL; a proxy must forward requests, not answer them itself",
        ),
        300..=399 => TransportError::new(
            Kind::Permanent,
            format!("Microsoft Graph answered with a redirect (HTTP {}), which is not followed", status.as_u16()),
        )
        .with_remediation("check the Microsoft Graph URL; a proxy must forward requests, not redirect them"),
        _ => TransportError::new(Kind::Permanent, format!("Microsoft Graph refused the request: {quoted}"))
            .with_remediation("sending it again will not help; correct the message or the account setup"),
    }
}

/// Graph's own words for `TransportError::server_reply`: status, code, message and the
/// request id (Microsoft support asks for it), or else the start of whatever the body was.
fn server_reply(
    status: StatusCode,
    graph: Option<&GraphError>,
    headers: &HeaderMap,
    body: &[u8],
    token: &str,
) -> String {
    let request_id = graph
        .and_then(|graph| graph.inner_error.as_ref())
        .and_then(|inner| inner.request_id.clone())
        .or_else(|| {
            headers
                .get("request-id")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        });
    let mut reply = format!("HTTP {}", status.as_u16());
    if let Some(graph) = graph {
        if let Some(code) = &graph.code {
            reply.push(' ');
            reply.push_str(code);
        }
        if let Some(message) = &graph.message {
            reply.push_str(": ");
            reply.push_str(message.trim());
        }
    } else {
        let text = String::from_utf8_lossy(body);
        let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            reply.push_str(" with an empty body");
        } else {
            // Redacted before it is cut: a cut through the token would leave its first part.
            let text = redact(&text, token);
            const LIMIT: usize = 300;
            let shown: String = text.chars().take(LIMIT).collect();
            let ellipsis = if text.chars().count() > LIMIT {
                "..."
            } else {
                ""
            };
            reply.push_str(&format!(" (not a Graph error body): {shown}{ellipsis}"));
        }
    }
    if let Some(request_id) = request_id {
        reply.push_str(&format!(" (request-id {request_id})"));
    }
    redact(&reply, token)
}

fn redact(text: &str, token: &str) -> String {
    if token.is_empty() {
        text.to_owned()
    } else {
        text.replace(token, "<redacted>")
    }
}

/// The wait a `Retry-After` header asks for: delay-seconds or an HTTP-date (RFC 9110 10.2.3).
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Maps a request that got no HTTP answer (TLS, connect, timeout, dropped connection).
/// `delivered_maybe` says the request was a send whose body may have arrived: then the
/// outcome is unknown rather than transient.
pub(crate) fn from_request_error(
    error: reqwest::Error,
    timeout: Duration,
    delivered_maybe: bool,
) -> TransportError {
    use TransportErrorKind as Kind;
    let mapped = if let Some(tls) = tls_error(&error) {
        TransportError::new(Kind::Tls, format!("the TLS connection to Microsoft Graph failed: {tls}"))
            .with_remediation(
                "check the Microsoft Graph URL; behind a TLS-inspecting proxy, trust its root certificate",
            )
    } else if error.is_connect() {
        TransportError::new(Kind::Transient, "cannot connect to Microsoft Graph")
            .with_remediation("send again later; check the network and the Microsoft Graph URL")
    } else if delivered_maybe {
        TransportError::new(
            Kind::DeliveryUnknown,
            "the send request went out but Microsoft Graph's answer never came; the message may or may not have been sent",
        )
        .with_remediation("look in the mailbox's Sent Items before sending it again")
    } else if error.is_timeout() {
        TransportError::new(
            Kind::Transient,
            format!(
                "Microsoft Graph did not answer within {} s",
                timeout.as_secs_f64()
            ),
        )
        .with_remediation("send again later; check the network if this persists")
    } else {
        TransportError::new(
            Kind::Transient,
            "the connection to Microsoft Graph dropped before it answered",
        )
        .with_remediation("send again later")
    };
    // reqwest's error names the URL, never the token (it travels only in a header); an
    // upload URL's query carries its own token, so the URL is removed.
    mapped.with_source(error.without_url())
}

/// The rustls error somewhere in the chain.
fn tls_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current: Option<&'a (dyn StdError + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                let inner: &'a (dyn StdError + 'static) = inner;
                if let Some(tls) = tls_error(inner) {
                    return Some(tls);
                }
            }
        }
        current = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Tue, 01 Dec 2026 08:00:00 GMT").expect("date");
        for (value, expected) in [
            ("120", Some(Duration::from_secs(120))),
            (
                "Tue, 01 Dec 2026 08:01:30 GMT",
                Some(Duration::from_secs(90)),
            ),
            ("Tue, 01 Dec 2026 07:59:00 GMT", Some(Duration::ZERO)),
            ("soon", None),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).expect("valid"));
            assert_eq!(retry_after(&headers, now), expected, "{value}");
        }
    }

    #[test]
    fn an_echoed_token_is_redacted() {
        let body = br#"{"error":{"code":"BadRequest","message":"bad header Bearer eyJ.SECRET"}}"#;
        let error = from_response(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            body,
            "eyJ.SECRET",
            Step::SendMail,
        );
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("eyJ.SECRET"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        let text = format!("{} Bearer eyJ.SECRET tail", "x".repeat(290));
        let error = from_response(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            text.as_bytes(),
            "eyJ.SECRET",
            Step::SendMail,
        );
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("eyJ.SE"), "{shown}");
    }

    /// A Graph error body as `concepts/errors.md` documents it.
    fn graph_body(code: &str, message: &str) -> String {
        serde_json::json!({
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": "2026-12-01T23:00:00",
                    "request-id": "7d6a1c2e-0000-4000-8000-000000000001",
                    "client-request-id": "7d6a1c2e-0000-4000-8000-000000000002"
                }
            }
        })
        .to_string()
    }

    fn answer(status: u16, body: &str, step: Step) -> TransportError {
        from_response(
            StatusCode::from_u16(status).expect("a status"),
            &HeaderMap::new(),
            body.as_bytes(),
            "t0ken",
            step,
        )
    }

    #[test]
    fn each_status_maps_to_its_kind_message_and_remediation() {
        use TransportErrorKind as Kind;
        let cases: [(u16, String, Kind, &str, &str); 17] = [
            (
                404,
                graph_body(
                    "ErrorInvalidUser",
                    "The requested user 'nobody@contoso.com' is invalid.",
                ),
                Kind::Permanent,
                "Microsoft Graph found no such mailbox or resource: The requested user 'nobody@contoso.com' is invalid.",
                "check the account's mailbox address",
            ),
            (
                404,
                graph_body("itemNotFound", "The resource could not be found."),
                Kind::Permanent,
                "Microsoft Graph found no such mailbox or resource: The resource could not be found.",
                "a proxy must forward requests",
            ),
            (
                408,
                String::new(),
                Kind::Transient,
                "Microsoft Graph timed out waiting for the request",
                "send again later",
            ),
            (
                413,
                "<html><body>413 Request Entity Too Large</body></html>".to_owned(),
                Kind::MessageTooLarge,
                "Microsoft Graph refused the message as too large: HTTP 413 Payload Too Large",
                "make the message smaller",
            ),
            (
                429,
                graph_body("activityLimitReached", "The app or user has been throttled."),
                Kind::Transient,
                "Microsoft Graph is throttling requests (HTTP 429)",
                "after the wait",
            ),
            (
                500,
                graph_body("generalException", "An unspecified error has occurred."),
                Kind::Transient,
                "Microsoft Graph had a temporary server error (HTTP 500)",
                "send again later",
            ),
            (
                503,
                graph_body("serviceNotAvailable", "The service is temporarily unavailable."),
                Kind::Transient,
                "Microsoft Graph had a temporary server error (HTTP 503)",
                "send again later",
            ),
            (
                503,
                graph_body(
                    "MailboxConcurrency",
                    "Application is over its MailboxConcurrency limit.",
                ),
                Kind::Transient,
                "too many requests are running at once for this mailbox (MailboxConcurrency)",
                "after the wait",
            ),
            (
                504,
                String::new(),
                Kind::Transient,
                "Microsoft Graph had a temporary server error (HTTP 504)",
                "send again later",
            ),
            (
                401,
                String::new(),
                Kind::AuthenticationRejected,
                "Microsoft Graph rejected the access token (HTTP 401)",
                "refresh the token",
            ),
            (
                401,
                graph_body(
                    "InvalidAuthenticationToken",
                    "Access token has expired or is not yet valid.",
                ),
                Kind::AuthenticationRejected,
                "Microsoft Graph rejected the access token (InvalidAuthenticationToken)",
                "sign in again",
            ),
            (
                307,
                String::new(),
                Kind::Permanent,
                "Microsoft Graph answered with a redirect (HTTP 307), which is not followed",
                "not redirect them",
            ),
            (
                400,
                graph_body("invalidRequest", "The request is malformed or incorrect."),
                Kind::Permanent,
                "Microsoft Graph refused the request: The request is malformed or incorrect.",
                "sending it again will not help",
            ),
            (
                409,
                graph_body("nameAlreadyExists", "The specified item name already exists."),
                Kind::Permanent,
                "Microsoft Graph refused the request: The specified item name already exists.",
                "sending it again will not help",
            ),
            (
                404,
                graph_body(
                    "MailboxNotSupportedForRESTAPI",
                    "REST API is not yet supported for this mailbox.",
                ),
                Kind::AccountConfiguration,
                "the mailbox cannot be used through Microsoft Graph",
                "Exchange Online licence",
            ),
            // Codes are matched whatever their case, and in `innerError` too.
            (
                403,
                r#"{"error":{"code":"ErrorAccessDenied","message":"Access is denied.","innerError":{"code":"errorSendAsDenied"}}}"#
                    .to_owned(),
                Kind::SendAsDenied,
                "Microsoft Graph refused to send: the From address is not one this mailbox may send as",
                "Send As permission",
            ),
            (
                400,
                graph_body("errorInvalidRecipients", "At least one recipient is not valid."),
                Kind::MessageRejected,
                "Microsoft Graph refused the recipients: At least one recipient is not valid.",
                "correct the recipients",
            ),
        ];
        for (status, body, kind, message, remediation) in cases {
            let error = answer(status, &body, Step::SendMail);
            assert_eq!(error.kind(), kind, "{status} {body}: {error}");
            assert!(
                error.message().starts_with(message),
                "{status} {body}: `{}` does not start with `{message}`",
                error.message()
            );
            let shown = error.remediation().expect("a remediation");
            assert!(
                shown.contains(remediation),
                "{status} {body}: `{shown}` lacks `{remediation}`"
            );
        }
    }

    #[test]
    fn a_refusal_names_the_permission_of_the_step_that_was_refused() {
        let body = graph_body(
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.",
        );
        for (step, name, scope, why) in [
            (Step::SendMail, "Mail.Send", MAIL_SEND_SCOPE, false),
            (Step::SendDraft, "Mail.Send", MAIL_SEND_SCOPE, false),
            (Step::Draft, "Mail.ReadWrite", MAIL_READ_WRITE_SCOPE, true),
        ] {
            let error = answer(403, &body, step);
            assert_eq!(error.kind(), TransportErrorKind::SignInRequired);
            assert_eq!(
                error.message(),
                format!(
                    "Microsoft Graph denied access: the token lacks the {name} permission for this mailbox (Access is denied. Check credentials and try again.)"
                )
            );
            let remediation = error.remediation().expect("a remediation");
            assert!(
                remediation.contains(&format!("grant the Microsoft Graph permission {name}")),
                "{remediation}"
            );
            assert!(
                remediation.contains(&format!("the application permission {name}")),
                "{remediation}"
            );
            assert_eq!(
                remediation.contains("Graph's 4 MB request limit"),
                why,
                "{step:?}: {remediation}"
            );
            assert_eq!(
                error.remedy(),
                Some(&Remedy::GrantScope {
                    account: None,
                    scope: scope.to_owned()
                })
            );
        }
    }

    #[test]
    fn a_body_that_is_not_graph_json_is_quoted_up_to_300_characters() {
        let reply = |body: &str| {
            answer(502, body, Step::SendMail)
                .server_reply()
                .expect("a reply")
                .to_owned()
        };
        let exact = "é".repeat(300);
        assert_eq!(
            reply(&exact),
            format!("HTTP 502 (not a Graph error body): {exact}")
        );
        let longer = format!("{exact}x");
        assert_eq!(
            reply(&longer),
            format!("HTTP 502 (not a Graph error body): {exact}...")
        );
        assert_eq!(reply(" \r\n "), "HTTP 502 with an empty body");
        assert_eq!(
            reply("Bad\r\n   Gateway"),
            "HTTP 502 (not a Graph error body): Bad Gateway"
        );
        assert_eq!(
            answer(
                404,
                &graph_body("itemNotFound", " The resource could not be found. "),
                Step::SendMail
            )
            .server_reply(),
            Some(
                "HTTP 404 itemNotFound: The resource could not be found. (request-id 7d6a1c2e-0000-4000-8000-000000000001)"
            )
        );
    }

    #[test]
    fn a_retry_after_from_the_far_future_is_clamped() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("99999999"));
        let error = from_response(
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            br#"{"error":{"code":"ApplicationThrottled","message":"slow down"}}"#,
            "t",
            Step::SendMail,
        );
        assert_eq!(error.retry_after(), Some(mailroom_model::MAX_RETRY_AFTER));
        assert!(error.is_transient());
        assert!(
            error.is_throttled(),
            "a 429 pauses the mailbox in the outbox"
        );
        let failure = from_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &HeaderMap::new(),
            br#"{"error":{"code":"generalException","message":"oops"}}"#,
            "t",
            Step::SendMail,
        );
        assert!(failure.is_transient() && !failure.is_throttled());
    }
}
