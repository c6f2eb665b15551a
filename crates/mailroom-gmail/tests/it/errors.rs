//! Every Gmail error answer of provider-facts.md (and a few general HTTP ones) maps to its
//! error kind, keeps Google's words and `Retry-After`, and never shows the token.
//!
//! The bodies follow Google's error shape and quote provider-facts.md's texts word for word;
//! where that file abbreviates a message with "...", the rest is Google's well-known
//! wording (the 401) or a plausible address (the delegation error).

use std::time::Duration;

use mailroom_model::{MessageTransport, TransportErrorKind as Kind};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{Contract, assert_no_token, credentials, message_of_size, test_config, transport};

const UNAUTHENTICATED: &str = r#"{"error":{"code":401,"message":"Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.","errors":[{"message":"Invalid Credentials","domain":"global","reason":"authError","location":"Authorization","locationType":"header"}],"status":"UNAUTHENTICATED"}}"#;

const INSUFFICIENT_SCOPE: &str = r#"{"error":{"code":403,"message":"Request had insufficient authentication scopes.","errors":[{"message":"Insufficient Permission","domain":"global","reason":"insufficientPermissions"}],"status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"ACCESS_TOKEN_SCOPE_INSUFFICIENT","domain":"googleapis.com","metadata":{"service":"gmail.googleapis.com","method":"caribou.api.proto.MailboxService.SendMessage"}}]}}"#;

/// The same refusal with only the newer `details[].reason`.
const INSUFFICIENT_SCOPE_DETAILS_ONLY: &str = r#"{"error":{"code":403,"message":"Request had insufficient authentication scopes.","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"ACCESS_TOKEN_SCOPE_INSUFFICIENT","domain":"googleapis.com"}]}}"#;

const RATE_LIMIT_403: &str = r#"{"error":{"code":403,"message":"Rate Limit Exceeded","errors":[{"message":"Rate Limit Exceeded","domain":"usageLimits","reason":"rateLimitExceeded"}],"status":"PERMISSION_DENIED"}}"#;

const USER_RATE_LIMIT_429: &str = r#"{"error":{"code":429,"message":"User-rate limit exceeded.","errors":[{"message":"User-rate limit exceeded.","domain":"usageLimits","reason":"userRateLimitExceeded"}],"status":"RESOURCE_EXHAUSTED"}}"#;

const NOT_ENABLED: &str = r#"{"error":{"code":400,"message":"Mail service not enabled","errors":[{"message":"Mail service not enabled","domain":"global","reason":"failedPrecondition"}],"status":"FAILED_PRECONDITION"}}"#;

const DELEGATION_DENIED: &str = r#"{"error":{"code":403,"message":"Delegation denied for sales@example.com","errors":[{"message":"Delegation denied for sales@example.com","domain":"global","reason":"forbidden"}],"status":"PERMISSION_DENIED"}}"#;

const INVALID_TO: &str = r#"{"error":{"code":400,"message":"Invalid To header","errors":[{"message":"Invalid To header","domain":"global","reason":"invalidArgument"}],"status":"INVALID_ARGUMENT"}}"#;

const OTHER_400: &str = r#"{"error":{"code":400,"message":"Precondition check failed.","errors":[{"message":"Precondition check failed.","domain":"global","reason":"badRequest"}],"status":"BAD_REQUEST"}}"#;

const BACKEND_ERROR: &str = r#"{"error":{"code":500,"message":"Backend Error","errors":[{"message":"Backend Error","domain":"global","reason":"backendError"}],"status":"INTERNAL"}}"#;

const HTML_502: &str = "<!DOCTYPE html>\n<html lang=en>\n  <title>Error 502 (Server Error)!!1</title>\n  <p><b>502.</b> <ins>That's an error.</ins>\n";

/// What one answer must become.
struct Expected {
    kind: Kind,
    /// A fragment of the message.
    message: &'static str,
    /// A fragment of the server reply.
    reply: &'static str,
    retry_after: Option<Duration>,
}

/// Answers one send with `status`, `headers` and `body`, and checks the error.
#[track_caller]
fn check(status: u16, headers: &[(&str, &str)], body: &str, expected: Expected) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let error = runtime.block_on(async {
        let server = MockServer::start().await;
        let mut response = ResponseTemplate::new(status);
        for (name, value) in headers {
            response = response.insert_header(*name, *value);
        }
        if body.starts_with('{') {
            response = response.set_body_raw(body, "application/json; charset=UTF-8");
        } else if !body.is_empty() {
            response = response.set_body_raw(body, "text/html; charset=UTF-8");
        }
        Mock::given(method("POST"))
            .and(path(Contract::load().upload_path.as_str()))
            .respond_with(response)
            .expect(1)
            .mount(&server)
            .await;
        transport(test_config(&server.uri()))
            .send(&message_of_size(2_000), &credentials())
            .await
            .expect_err("the answer is an error")
    });
    assert_eq!(error.kind(), expected.kind, "HTTP {status}: {error}");
    assert!(
        error.message().contains(expected.message),
        "HTTP {status}: message `{}` lacks `{}`",
        error.message(),
        expected.message
    );
    let reply = error.server_reply().unwrap_or_default();
    assert!(
        reply.contains(expected.reply),
        "HTTP {status}: reply `{reply}` lacks `{}`",
        expected.reply
    );
    assert_eq!(error.retry_after(), expected.retry_after, "HTTP {status}");
    // Only the rate limits (a 429, or 403 `rateLimitExceeded`) pause the mailbox in the outbox.
    assert_eq!(
        error.is_throttled(),
        expected.message.contains("rate limit"),
        "HTTP {status}: throttled"
    );
    assert!(
        error.remediation().is_some_and(|text| !text.is_empty()),
        "HTTP {status}: no remediation"
    );
    assert_no_token(&error);
}

#[test]
fn gmail_error_bodies_map_to_their_kinds() {
    check(
        401,
        &[(
            "www-authenticate",
            "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"",
        )],
        UNAUTHENTICATED,
        Expected {
            kind: Kind::AuthenticationRejected,
            message: "gmail rejected the access token",
            reply: "HTTP 401 UNAUTHENTICATED: Request had invalid authentication credentials.",
            retry_after: None,
        },
    );
    check(
        403,
        &[],
        INSUFFICIENT_SCOPE,
        Expected {
            kind: Kind::SignInRequired,
            message: "does not carry the gmail.send permission",
            reply: "Request had insufficient authentication scopes. (reason: insufficientPermissions, ACCESS_TOKEN_SCOPE_INSUFFICIENT)",
            retry_after: None,
        },
    );
    check(
        403,
        &[],
        INSUFFICIENT_SCOPE_DETAILS_ONLY,
        Expected {
            kind: Kind::SignInRequired,
            message: "gmail.send",
            reply: "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
            retry_after: None,
        },
    );
    check(
        403,
        &[("retry-after", "30")],
        RATE_LIMIT_403,
        Expected {
            kind: Kind::Transient,
            message: "rate limit",
            reply: "rateLimitExceeded",
            retry_after: Some(Duration::from_secs(30)),
        },
    );
    check(
        429,
        &[("retry-after", "7")],
        USER_RATE_LIMIT_429,
        Expected {
            kind: Kind::Transient,
            message: "rate limit",
            reply: "userRateLimitExceeded",
            retry_after: Some(Duration::from_secs(7)),
        },
    );
    // A wait from the far future is clamped to the documented hour.
    check(
        429,
        &[("retry-after", "18446744073709551615")],
        USER_RATE_LIMIT_429,
        Expected {
            kind: Kind::Transient,
            message: "rate limit",
            reply: "userRateLimitExceeded",
            retry_after: Some(mailroom_model::MAX_RETRY_AFTER),
        },
    );
    check(
        429,
        &[("retry-after", "Thu, 01 Jan 2026 00:00:00 GMT")],
        USER_RATE_LIMIT_429,
        Expected {
            kind: Kind::Transient,
            message: "rate limit",
            reply: "userRateLimitExceeded",
            // A date already past means "retry now".
            retry_after: Some(Duration::ZERO),
        },
    );
    check(
        400,
        &[],
        NOT_ENABLED,
        Expected {
            kind: Kind::AccountConfiguration,
            message: "gmail is not enabled for this account",
            reply: "Mail service not enabled",
            retry_after: None,
        },
    );
    check(
        403,
        &[],
        DELEGATION_DENIED,
        Expected {
            kind: Kind::SendAsDenied,
            message: "not the signed-in account",
            reply: "Delegation denied for sales@example.com",
            retry_after: None,
        },
    );
}

#[test]
fn other_answers_map_to_their_kinds() {
    check(
        400,
        &[],
        INVALID_TO,
        Expected {
            kind: Kind::MessageRejected,
            message: "gmail rejected the message: Invalid To header",
            reply: "INVALID_ARGUMENT",
            retry_after: None,
        },
    );
    check(
        400,
        &[],
        OTHER_400,
        Expected {
            kind: Kind::Permanent,
            message: "gmail refused the request: Precondition check failed.",
            reply: "badRequest",
            retry_after: None,
        },
    );
    check(
        500,
        &[],
        BACKEND_ERROR,
        Expected {
            kind: Kind::Transient,
            message: "temporary server error (HTTP 500)",
            reply: "Backend Error",
            retry_after: None,
        },
    );
    check(
        503,
        &[("retry-after", "120")],
        "",
        Expected {
            kind: Kind::Transient,
            message: "HTTP 503",
            reply: "with an empty body",
            retry_after: Some(Duration::from_secs(120)),
        },
    );
    check(
        502,
        &[],
        HTML_502,
        Expected {
            kind: Kind::Transient,
            message: "HTTP 502",
            reply: "(not a Google error body): <!DOCTYPE html> <html lang=en> <title>Error 502",
            retry_after: None,
        },
    );
    check(
        403,
        &[],
        "Forbidden",
        Expected {
            kind: Kind::Permanent,
            message: "gmail refused the request: HTTP 403 Forbidden",
            reply: "Forbidden",
            retry_after: None,
        },
    );
    check(
        413,
        &[],
        "",
        Expected {
            kind: Kind::MessageTooLarge,
            message: "too large",
            reply: "413",
            retry_after: None,
        },
    );
    check(
        404,
        &[],
        "Not Found",
        Expected {
            kind: Kind::Permanent,
            message: "not found at the configured URL",
            reply: "Not Found",
            retry_after: None,
        },
    );
    // An OAuth-style body is not Google's API error shape; it is still quoted.
    check(
        401,
        &[],
        r#"{"error":"invalid_token"}"#,
        Expected {
            kind: Kind::AuthenticationRejected,
            message: "rejected the access token",
            reply: "invalid_token",
            retry_after: None,
        },
    );
}

#[test]
fn a_server_echoing_the_token_does_not_leak_it() {
    let echo = format!(
        r#"{{"error":{{"code":400,"message":"Bad header: Authorization: Bearer {}","status":"INVALID_ARGUMENT"}}}}"#,
        crate::TOKEN
    );
    check(
        400,
        &[],
        &echo,
        Expected {
            kind: Kind::MessageRejected,
            message: "Bearer <redacted>",
            reply: "Bearer <redacted>",
            retry_after: None,
        },
    );
}

/// Google's `status` alone (no `errors[].reason`, as newer error bodies have it) decides as
/// the reason does.
const NOT_ENABLED_STATUS_ONLY: &str =
    r#"{"error":{"code":400,"message":"Mail service not enabled","status":"FAILED_PRECONDITION"}}"#;
const INVALID_TO_STATUS_ONLY: &str =
    r#"{"error":{"code":400,"message":"Invalid To header","status":"INVALID_ARGUMENT"}}"#;

#[test]
fn a_status_without_reasons_a_bare_429_and_a_request_timeout_map_to_their_kinds() {
    check(
        400,
        &[],
        NOT_ENABLED_STATUS_ONLY,
        Expected {
            kind: Kind::AccountConfiguration,
            message: "gmail is not enabled for this account",
            reply: "HTTP 400 FAILED_PRECONDITION: Mail service not enabled",
            retry_after: None,
        },
    );
    check(
        400,
        &[],
        INVALID_TO_STATUS_ONLY,
        Expected {
            kind: Kind::MessageRejected,
            message: "gmail rejected the message: Invalid To header",
            reply: "HTTP 400 INVALID_ARGUMENT: Invalid To header",
            retry_after: None,
        },
    );
    // A 429 without Google's body (a proxy's, say) is the rate limit all the same.
    check(
        429,
        &[("retry-after", "7")],
        "",
        Expected {
            kind: Kind::Transient,
            message: "gmail's sending rate limit for this account was reached",
            reply: "HTTP 429 Too Many Requests with an empty body",
            retry_after: Some(Duration::from_secs(7)),
        },
    );
    // 408 Request Timeout: the server gave up waiting; sending again may work.
    check(
        408,
        &[],
        "",
        Expected {
            kind: Kind::Transient,
            message: "gmail timed out waiting for the request",
            reply: "HTTP 408 Request Timeout with an empty body",
            retry_after: None,
        },
    );
}
