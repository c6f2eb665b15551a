//! Turns Gmail's answers and reqwest's failures into `TransportError`s with a kind the
//! facade's retry policy decides on, a remediation in prose and a [`Remedy`] a front end
//! offers.

use std::error::Error as StdError;
use std::time::{Duration, SystemTime};

use mailroom_model::{Remedy, TransportError, TransportErrorKind};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Deserialize;

/// The permission a Gmail send needs.
const GMAIL_SEND_SCOPE: &str = "https://www.googleapis.com/auth/gmail.send";

/// `error` fixed by a new sign-in that grants the Gmail send permission.
pub(crate) fn grant_send_permission(error: TransportError) -> TransportError {
    error
        .with_remediation("sign in again for this account and grant the Gmail send permission")
        .with_remedy(Remedy::GrantScope {
            account: None,
            scope: GMAIL_SEND_SCOPE.to_owned(),
        })
}

/// `error` fixed by pointing the Google app at the right Gmail API URL; `proxy_rule` says
/// what a proxy in between must do.
pub(crate) fn check_api_url(error: TransportError, proxy_rule: &str) -> TransportError {
    error
        .with_remediation(format!(
            "check the Google app's Gmail API URL; {proxy_rule}"
        ))
        .with_remedy(Remedy::SetGmailApiUrl)
}

const PROXY_FORWARDS: &str = "a proxy must forward requests, not redirect or answer them itself";

/// Google's error JSON: `{"error": {"code", "message", "status", "errors": [..], "details": [..]}}`.
#[derive(Debug, Deserialize)]
struct GoogleErrorBody {
    error: GoogleError,
}

#[derive(Debug, Default, Deserialize)]
struct GoogleError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    errors: Vec<GoogleErrorItem>,
    #[serde(default)]
    details: Vec<GoogleErrorDetail>,
}

#[derive(Debug, Deserialize)]
struct GoogleErrorItem {
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct GoogleErrorDetail {
    #[serde(default)]
    reason: Option<String>,
}

impl GoogleError {
    /// Every reason the body gives: `errors[].reason` (legacy) and `details[].reason`
    /// (`google.rpc.ErrorInfo`).
    fn reasons(&self) -> impl Iterator<Item = &str> {
        self.errors
            .iter()
            .filter_map(|item| item.reason.as_deref())
            .chain(
                self.details
                    .iter()
                    .filter_map(|detail| detail.reason.as_deref()),
            )
    }

    fn has_reason(&self, wanted: &[&str]) -> bool {
        self.reasons()
            .any(|reason| wanted.iter().any(|w| reason.eq_ignore_ascii_case(w)))
    }
}

/// Maps an unsuccessful HTTP answer from the Gmail API to a `TransportError`.
///
/// `token` is the access token of the request: it is removed from anything quoted from the
/// server, in case a server or proxy echoes the request back.
pub(crate) fn from_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    token: &str,
) -> TransportError {
    let google = serde_json::from_slice::<GoogleErrorBody>(body)
        .ok()
        .map(|body| body.error);
    let google_message = google
        .as_ref()
        .and_then(|google| google.message.as_deref())
        .map(|message| redact(message.trim(), token));
    let server_reply = server_reply(status, google.as_ref(), body, token);
    let retry_after = retry_after(headers, SystemTime::now());
    let google = google.unwrap_or_default();
    let quoted = google_message
        .clone()
        .unwrap_or_else(|| format!("HTTP {status}"));

    let mut error = classify(status, &google, google_message.as_deref(), &quoted)
        .with_server_reply(server_reply);
    if let Some(retry_after) = retry_after {
        error = error.with_retry_after(retry_after);
    }
    error
}

fn classify(
    status: StatusCode,
    google: &GoogleError,
    google_message: Option<&str>,
    quoted: &str,
) -> TransportError {
    use TransportErrorKind as Kind;
    let rate_limited = google.has_reason(&["rateLimitExceeded", "userRateLimitExceeded"]);
    let delegation_denied =
        google_message.is_some_and(|message| message.starts_with("Delegation denied"));
    match status.as_u16() {
        401 => TransportError::new(Kind::AuthenticationRejected, "gmail rejected the access token")
            .with_remediation(
                "refresh the token and send again; if it is still rejected, sign in again for this account",
            )
            .with_remedy(Remedy::SignIn { account: None, browser_only: false }),
        403 if google.has_reason(&["insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"]) => {
            grant_send_permission(TransportError::new(
                Kind::SignInRequired,
                "the access token does not carry the gmail.send permission",
            ))
        }
        403 | 429 if rate_limited => rate_limit(),
        429 => rate_limit(),
        403 if delegation_denied => TransportError::new(
            Kind::SendAsDenied,
            "gmail refused to send for this user: the From address or user is not the signed-in account",
        )
        .with_remediation(
            "send from the signed-in account's own address or one of its verified aliases, or sign in as the account you want to send from",
        ),
        400 if google.has_reason(&["failedPrecondition"])
            || google.status.as_deref() == Some("FAILED_PRECONDITION") =>
        {
            TransportError::new(Kind::AccountConfiguration, "gmail is not enabled for this account")
                .with_remediation(
                    "a Google Workspace administrator must turn on the Gmail service for this user (Admin console > Apps > Google Workspace > Gmail), or use an account that has Gmail",
                )
        }
        400 if google.has_reason(&["invalidArgument"])
            || google.status.as_deref() == Some("INVALID_ARGUMENT") =>
        {
            TransportError::new(Kind::MessageRejected, format!("gmail rejected the message: {quoted}"))
                .with_remediation("correct the message (its recipients and headers) and send it again")
        }
        413 => TransportError::new(Kind::MessageTooLarge, "gmail refused the message as too large")
            .with_remediation(format!(
                "make the message smaller than {} bytes (35 MiB), for example by sending large attachments as links",
                crate::MAX_MESSAGE_SIZE
            )),
        404 => check_api_url(
            TransportError::new(
                Kind::Permanent,
                "the gmail API send endpoint was not found at the configured URL",
            ),
            PROXY_FORWARDS,
        ),
        408 => TransportError::new(Kind::Transient, "gmail timed out waiting for the request")
            .with_remediation("send again later"),
        500..=599 => TransportError::new(
            Kind::Transient,
            format!("gmail had a temporary server error (HTTP {})", status.as_u16()),
        )
        .with_remediation("send again later"),
        300..=399 => check_api_url(
            TransportError::new(
                Kind::Permanent,
                format!("gmail answered with a redirect (HTTP {}), which is not followed", status.as_u16()),
            ),
            PROXY_FORWARDS,
        ),
        _ => TransportError::new(Kind::Permanent, format!("gmail refused the request: {quoted}"))
            .with_remediation("sending it again will not help; correct the message or the account setup"),
    }
}

fn rate_limit() -> TransportError {
    TransportError::new(
        TransportErrorKind::Transient,
        "gmail's sending rate limit for this account was reached",
    )
    .with_remediation(
        "send again later; gmail allows a limited number of sends per minute and per day",
    )
    .throttled()
}

/// Google's own words, for `TransportError::server_reply`: the JSON error's status, message
/// and reasons, or else the start of whatever the body was.
fn server_reply(
    status: StatusCode,
    google: Option<&GoogleError>,
    body: &[u8],
    token: &str,
) -> String {
    if let Some(google) = google {
        let mut reply = format!("HTTP {}", status.as_u16());
        if let Some(google_status) = &google.status {
            reply.push(' ');
            reply.push_str(google_status);
        }
        if let Some(message) = &google.message {
            reply.push_str(": ");
            reply.push_str(message.trim());
        }
        let reasons: Vec<&str> = google.reasons().collect();
        if !reasons.is_empty() {
            reply.push_str(" (reason: ");
            reply.push_str(&reasons.join(", "));
            reply.push(')');
        }
        return redact(&reply, token);
    }
    let text = String::from_utf8_lossy(body);
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return format!("HTTP {status} with an empty body");
    }
    // Redacted before it is cut: a cut through the token would leave its first part.
    let text = redact(&text, token);
    const LIMIT: usize = 300;
    let shown: String = text.chars().take(LIMIT).collect();
    let ellipsis = if text.chars().count() > LIMIT {
        "..."
    } else {
        ""
    };
    format!("HTTP {status} (not a Google error body): {shown}{ellipsis}")
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
    // A date in the past means "now".
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Maps a request that got no HTTP answer (TLS, connect, timeout, dropped connection).
pub(crate) fn from_request_error(error: reqwest::Error, timeout: Duration) -> TransportError {
    use TransportErrorKind as Kind;
    let mapped = if let Some(tls) = tls_error(&error) {
        TransportError::new(Kind::Tls, format!("the TLS connection to the gmail API failed: {tls}"))
            .with_remediation(
                "check the gmail API URL; behind a TLS-inspecting proxy, trust its root certificate (MAILROOM_CA_FILE)",
            )
    } else if error.is_timeout() {
        TransportError::new(
            Kind::Transient,
            format!(
                "the gmail API did not answer within {} s",
                timeout.as_secs_f64()
            ),
        )
        .with_remediation("send again later; check the network if this persists")
    } else if error.is_connect() {
        TransportError::new(Kind::Transient, "cannot connect to the gmail API")
            .with_remediation("send again later; check the network and the gmail API URL")
    } else {
        TransportError::new(
            Kind::Transient,
            "the connection to the gmail API dropped before gmail answered",
        )
        .with_remediation("send again later")
    };
    // reqwest's error names the URL (never the token: it travels only in a header).
    mapped.with_source(error)
}

/// The rustls error somewhere in the chain. `std::io::Error::source` skips the error it
/// wraps, so io errors are opened with `get_ref`.
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

    #[track_caller]
    fn check_retry_after(value: &str, expected: Option<Duration>) {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(value).expect("valid"));
        let now = httpdate::parse_http_date("Tue, 01 Dec 2026 08:00:00 GMT").expect("date");
        assert_eq!(retry_after(&headers, now), expected, "Retry-After: {value}");
    }

    #[test]
    fn retry_after_forms() {
        check_retry_after("120", Some(Duration::from_secs(120)));
        check_retry_after(" 7 ", Some(Duration::from_secs(7)));
        check_retry_after(
            "Tue, 01 Dec 2026 08:01:30 GMT",
            Some(Duration::from_secs(90)),
        );
        check_retry_after("Tue, 01 Dec 2026 07:59:00 GMT", Some(Duration::ZERO));
        check_retry_after("soon", None);
        check_retry_after("-5", None);
    }

    #[test]
    fn an_echoed_token_is_redacted() {
        let body = br#"{"error":{"code":400,"message":"bad header Bearer ya29.SECRET","status":"INVALID_ARGUMENT"}}"#;
        let error = from_response(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            body,
            "ya29.SECRET",
        );
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("ya29.SECRET"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    /// Found by the `an_echoed_token_never_shows` property: the body was cut to 300
    /// characters before the token was redacted, so a cut through the token showed its
    /// first part.
    #[test]
    fn a_token_across_the_cut_is_not_shown_in_part() {
        let token = "ya29.A0SECRETSECRETSECRET";
        let body = format!("{} Bearer {token} trailing", "x".repeat(280));
        let error = from_response(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            body.as_bytes(),
            token,
        );
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("ya29.A0SE"), "{shown}");
    }

    #[test]
    fn long_non_json_bodies_are_cut() {
        let body = "x".repeat(10_000);
        let error = from_response(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            body.as_bytes(),
            "t",
        );
        let reply = error.server_reply().expect("a reply");
        assert!(reply.len() < 400, "{reply}");
        assert!(reply.ends_with("..."), "{reply}");
    }
}
