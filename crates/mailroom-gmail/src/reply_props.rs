//! Property tests (proptest) of what Gmail (or whatever answers in its place) sends back:
//! error bodies, status codes and `Retry-After`. `PROPTEST_CASES` scales them; `cargo
//! xtask fuzz gmail-error` / `retry-after` run them for longer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailroom_model::{MAX_ERROR_MESSAGE, MAX_RETRY_AFTER, MAX_SERVER_REPLY, TransportErrorKind};
use proptest::prelude::*;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use serde_json::json;

use crate::reply::{from_response, retry_after};

/// The reasons and statuses the classification reads, and some it does not.
fn reason() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("rateLimitExceeded".to_owned()),
        Just("userRateLimitExceeded".to_owned()),
        Just("insufficientPermissions".to_owned()),
        Just("ACCESS_TOKEN_SCOPE_INSUFFICIENT".to_owned()),
        Just("failedPrecondition".to_owned()),
        Just("invalidArgument".to_owned()),
        "[A-Za-z_]{0,20}",
    ]
}

/// A Google error body, near-valid: each field present or not, some of the wrong type.
fn google_body(message: impl Strategy<Value = String>) -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::option::of(message),
        proptest::option::of(prop_oneof![
            Just("FAILED_PRECONDITION".to_owned()),
            Just("INVALID_ARGUMENT".to_owned()),
            "[A-Z_]{0,20}",
        ]),
        proptest::collection::vec(reason(), 0..4),
        proptest::collection::vec(reason(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(message, status, errors, details, wrong_types)| {
            let errors: Vec<_> = errors.iter().map(|r| json!({"reason": r})).collect();
            let details: Vec<_> = details.iter().map(|r| json!({"reason": r, "@type": "type.googleapis.com/google.rpc.ErrorInfo"})).collect();
            let body = if wrong_types {
                json!({"error": {"code": "x", "message": 5, "status": [], "errors": {}, "details": errors}})
            } else {
                json!({"error": {"code": 400, "message": message, "status": status, "errors": errors, "details": details}})
            };
            body.to_string().into_bytes()
        })
}

fn any_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2000),
        any::<String>().prop_map(String::into_bytes),
        google_body(any::<String>()),
        google_body(".{0,3000}"),
    ]
}

fn headers(retry_after_value: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(value) = retry_after_value.and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(RETRY_AFTER, value);
    }
    headers
}

/// The token of the tests: no prefix of it (`TOKEN-`) can come from the filler around it.
fn token() -> impl Strategy<Value = String> {
    "[A-Z0-9]{16,40}".prop_map(|tail| format!("TOKEN-{tail}"))
}

proptest! {
    /// Any status, body, `Retry-After` and token: no panic; the message and the server's
    /// words within their bounds; a wait of at most an hour; the kinds that depend only on
    /// the status (401, 408, 413, 429, 5xx) whatever the body says.
    #[test]
    fn any_answer_is_classified_within_bounds(
        status in 100u16..=599,
        body in any_body(),
        retry_after_value in proptest::option::of(prop_oneof!["[ -~]{0,40}", "[0-9]{1,25}"]),
        token in prop_oneof![Just(String::new()), "[ -~]{1,10}"],
    ) {
        let status = StatusCode::from_u16(status).expect("a status in range");
        let error = from_response(status, &headers(retry_after_value.as_deref()), &body, &token);
        prop_assert!(error.message().len() <= MAX_ERROR_MESSAGE, "{}", error.message().len());
        prop_assert!(error.server_reply().is_some_and(|reply| reply.len() <= MAX_SERVER_REPLY));
        prop_assert!(error.retry_after().is_none_or(|wait| wait <= MAX_RETRY_AFTER));
        let expected = match status.as_u16() {
            401 => Some(TransportErrorKind::AuthenticationRejected),
            408 | 429 | 500..=599 => Some(TransportErrorKind::Transient),
            413 => Some(TransportErrorKind::MessageTooLarge),
            _ => None,
        };
        if let Some(expected) = expected {
            prop_assert_eq!(error.kind(), expected);
        }
    }

    /// A token echoed anywhere in a body (Google's JSON message, or a proxy's page) never
    /// shows in the error, not even in part, wherever the body is cut.
    #[test]
    fn an_echoed_token_never_shows(
        status in prop_oneof![Just(400u16), Just(403), Just(502), 100u16..=599],
        before in "[a-z ]{0,700}",
        after in "[a-z ]{0,700}",
        token in token(),
        json_body in any::<bool>(),
    ) {
        let echoed = format!("{before}Bearer {token}{after}");
        let body = if json_body {
            json!({"error": {"code": status, "message": echoed, "status": "INVALID_ARGUMENT"}}).to_string()
        } else {
            echoed
        };
        let status = StatusCode::from_u16(status).expect("a status in range");
        let error = from_response(status, &HeaderMap::new(), body.as_bytes(), &token);
        let shown = format!("{error} {error:?}");
        prop_assert!(!shown.contains("TOKEN-"), "{}", shown);
    }

    /// `Retry-After` in delay-seconds is read as sent (the clamp is the error's); an
    /// HTTP-date is the wait from now to it, to the second, and zero when it is past;
    /// anything else is no wait or a wait, never a panic.
    #[test]
    fn retry_after_forms(
        seconds in any::<u64>(),
        ahead in 0u64..10_000_000,
        behind in 0u64..10_000_000,
        now_secs in 1_000_000_000u64..4_000_000_000,
        text in "[ -~]{0,40}",
        spaces in "[ \t]{0,2}",
    ) {
        let now = UNIX_EPOCH + Duration::from_secs(now_secs);
        let seconds_text = format!("{spaces}{seconds}{spaces}");
        prop_assert_eq!(retry_after(&headers(Some(&seconds_text)), now), Some(Duration::from_secs(seconds)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(ahead));
        prop_assert_eq!(retry_after(&headers(Some(&later)), now), Some(Duration::from_secs(ahead)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(behind));
        prop_assert_eq!(retry_after(&headers(Some(&earlier)), now), Some(Duration::ZERO));
        let _ = retry_after(&headers(Some(&text)), now);
        let _ = retry_after(&headers(Some(&text)), SystemTime::now());
    }
}
