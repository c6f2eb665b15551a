//! Graph's error bodies (`concepts/errors.md`: `{"error": {"code", "message", "innerError":
//! {"date", "request-id", "client-request-id"}}}`) and throttling (`concepts/throttling-limits.md`:
//! 429 with `Retry-After` in seconds; the Outlook service's `ApplicationThrottled` and
//! `MailboxConcurrency`), as `sendMail` answers them (`api-reference/v1.0/api/user-sendmail.md`).

use std::time::Duration;

use mailroom_model::{MAX_RETRY_AFTER, MessageTransport, Remedy, TransportErrorKind as Kind};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use mailroom_graph::GraphConfig;

use crate::{assert_no_token, credentials, outgoing, plain_message, test_config, transport};

struct Case {
    status: u16,
    code: &'static str,
    message: &'static str,
    retry_after: Option<&'static str>,
    kind: Kind,
    /// Words the error must contain.
    says: &'static str,
    waits: Option<Duration>,
}

fn body(code: &str, message: &str) -> serde_json::Value {
    json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": "2026-12-01T23:00:00",
                "request-id": "9f1c2b3a-0000-4000-8000-000000000001",
                "client-request-id": "9f1c2b3a-0000-4000-8000-000000000002"
            }
        }
    })
}

#[tokio::test]
async fn each_documented_error_maps_to_its_kind_with_a_remedy() {
    let cases = [
        Case {
            status: 401,
            code: "InvalidAuthenticationToken",
            message: "Access token has expired or is not yet valid.",
            retry_after: None,
            kind: Kind::AuthenticationRejected,
            says: "refresh the token",
            waits: None,
        },
        Case {
            status: 403,
            code: "ErrorAccessDenied",
            message: "Access is denied. Check credentials and try again.",
            retry_after: None,
            kind: Kind::SignInRequired,
            says: "Mail.Send",
            waits: None,
        },
        Case {
            status: 403,
            code: "ErrorSendAsDenied",
            message: "The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account.",
            retry_after: None,
            kind: Kind::SendAsDenied,
            says: "Send As",
            waits: None,
        },
        Case {
            status: 400,
            code: "ErrorInvalidRecipients",
            message: "At least one recipient is not valid.",
            retry_after: None,
            kind: Kind::MessageRejected,
            says: "recipient is not valid",
            waits: None,
        },
        Case {
            status: 400,
            code: "ErrorMessageSizeExceeded",
            message: "The message exceeds the maximum supported size.",
            retry_after: None,
            kind: Kind::MessageTooLarge,
            says: "too large",
            waits: None,
        },
        Case {
            status: 403,
            code: "ErrorQuotaExceeded",
            message: "The process failed to get the correct properties.",
            retry_after: None,
            kind: Kind::AccountConfiguration,
            says: "mailbox is full",
            waits: None,
        },
        Case {
            status: 413,
            code: "RequestBodyTooLarge",
            message: "The maximum request length supported is 4MB.",
            retry_after: None,
            kind: Kind::MessageTooLarge,
            says: "too large",
            waits: None,
        },
        Case {
            status: 429,
            code: "ApplicationThrottled",
            message: "Application is over its MailboxConcurrency limit.",
            retry_after: Some("7"),
            kind: Kind::Transient,
            says: "ApplicationThrottled",
            waits: Some(Duration::from_secs(7)),
        },
        Case {
            status: 429,
            code: "MailboxConcurrency",
            message: "Application is over its MailboxConcurrency limit.",
            retry_after: Some("2"),
            kind: Kind::Transient,
            says: "MailboxConcurrency",
            waits: Some(Duration::from_secs(2)),
        },
        Case {
            status: 429,
            code: "TooManyRequests",
            message: "Too many requests.",
            retry_after: Some("999999999"),
            kind: Kind::Transient,
            says: "throttling",
            waits: Some(MAX_RETRY_AFTER),
        },
        // Outlook answers MailboxConcurrency with 503 too.
        Case {
            status: 503,
            code: "MailboxConcurrency",
            message: "Application is over its MailboxConcurrency limit.",
            retry_after: Some("5"),
            kind: Kind::Transient,
            says: "MailboxConcurrency",
            waits: Some(Duration::from_secs(5)),
        },
        Case {
            status: 503,
            code: "ServiceNotAvailable",
            message: "Service unavailable.",
            retry_after: Some("120"),
            kind: Kind::Transient,
            says: "HTTP 503",
            waits: Some(Duration::from_secs(120)),
        },
        Case {
            status: 504,
            code: "GatewayTimeout",
            message: "Gateway timeout.",
            retry_after: Some("30"),
            kind: Kind::Transient,
            says: "HTTP 504",
            waits: Some(Duration::from_secs(30)),
        },
        Case {
            status: 404,
            code: "MailboxNotEnabledForRESTAPI",
            message: "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            retry_after: None,
            kind: Kind::AccountConfiguration,
            says: "Exchange Online",
            waits: None,
        },
        Case {
            status: 400,
            code: "BadRequest",
            message: "Something else.",
            retry_after: None,
            kind: Kind::Permanent,
            says: "Something else",
            waits: None,
        },
    ];
    for case in cases {
        let server = MockServer::start().await;
        let mut response = ResponseTemplate::new(case.status)
            .set_body_json(body(case.code, case.message))
            .insert_header("request-id", "9f1c2b3a-0000-4000-8000-000000000001");
        if let Some(retry_after) = case.retry_after {
            response = response.insert_header("Retry-After", retry_after);
        }
        Mock::given(method("POST"))
            .and(path("/v1.0/users/sales@contoso.com/sendMail"))
            .respond_with(response)
            .expect(1)
            .mount(&server)
            .await;
        let error = transport(test_config(&server.uri()))
            .send(&outgoing(plain_message(2_000)), &credentials())
            .await
            .expect_err("refused");
        let text = error.to_string();
        assert_eq!(error.kind(), case.kind, "{}: {text}", case.code);
        assert!(
            text.contains(case.says),
            "{}: `{text}` lacks `{}`",
            case.code,
            case.says
        );
        assert_eq!(error.retry_after(), case.waits, "{}", case.code);
        assert!(
            error.remediation().is_some(),
            "{}: no remediation",
            case.code
        );
        let reply = error.server_reply().expect("Graph's words are kept");
        assert!(reply.contains(case.code), "{reply}");
        assert!(
            reply.contains("9f1c2b3a-0000-4000-8000-000000000001"),
            "the request-id is kept: {reply}"
        );
        assert_no_token(&error);
        match case.kind {
            Kind::AuthenticationRejected => {
                assert!(matches!(error.remedy(), Some(Remedy::SignIn { .. })))
            }
            Kind::SignInRequired => assert_eq!(
                error.remedy(),
                Some(&Remedy::GrantScope {
                    account: None,
                    scope: "https://graph.microsoft.com/Mail.Send".to_owned()
                })
            ),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_body_that_is_not_graph_json_is_quoted_shortened() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(502)
                .set_body_string(format!("<html>{}</html>", "x".repeat(100_000))),
        )
        .mount(&server)
        .await;
    let error = transport(test_config(&server.uri()))
        .send(&outgoing(plain_message(2_000)), &credentials())
        .await
        .expect_err("refused");
    assert_eq!(error.kind(), Kind::Transient);
    let reply = error.server_reply().expect("quoted");
    assert!(reply.contains("not a Graph error body"), "{reply}");
    assert!(reply.len() < 500, "{reply}");
}

/// Graph names every invalid recipient, so its error body can run to many kilobytes (a
/// message may have 500 recipients): it is read whole and still understood.
#[tokio::test]
async fn a_long_graph_error_body_is_read_whole() {
    let recipients: Vec<String> = (0..500)
        .map(|i| format!("customer.{i:03}@fabrikam.invalid"))
        .collect();
    let message = format!(
        "At least one recipient is not valid., Recipients: {}",
        recipients.join(", ")
    );
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(body("ErrorInvalidRecipients", &message)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let error = transport(test_config(&server.uri()))
        .send(&outgoing(plain_message(2_000)), &credentials())
        .await
        .expect_err("refused");
    assert_eq!(error.kind(), Kind::MessageRejected, "{error}");
    assert!(
        error
            .message()
            .starts_with("Microsoft Graph refused the recipients: At least one recipient is not valid., Recipients: customer.000@fabrikam.invalid"),
        "{}",
        error.message()
    );
    let reply = error.server_reply().expect("Graph's words are kept");
    assert!(
        reply.starts_with("HTTP 400 ErrorInvalidRecipients: At least one recipient"),
        "{reply}"
    );
}

/// A server that answers in plain text where TLS was expected is a TLS failure, not a
/// network outage: retrying will not help, the URL or a proxy is wrong.
#[tokio::test]
async fn a_server_that_does_not_speak_tls_is_a_tls_failure() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let address = listener.local_addr().expect("an address");
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accepts");
        let mut hello = [0u8; 512];
        let _ = stream.read(&mut hello).await;
        let _ = stream
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await;
    });
    let config =
        GraphConfig::with_base_url(url::Url::parse(&format!("https://{address}")).expect("parses"));
    let error = transport(config).probe().await.expect_err("no TLS");
    assert_eq!(error.kind(), Kind::Tls, "{error}");
    assert!(
        error
            .message()
            .starts_with("the TLS connection to Microsoft Graph failed"),
        "{error}"
    );
    assert!(
        error
            .remediation()
            .is_some_and(|remediation| remediation.contains("TLS-inspecting proxy")),
        "{error}"
    );
    server.await.expect("the server ran");
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(307).insert_header("Location", "https://elsewhere.example/steal"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let error = transport(test_config(&server.uri()))
        .send(&outgoing(plain_message(2_000)), &credentials())
        .await
        .expect_err("refused");
    assert_eq!(error.kind(), Kind::Permanent);
    assert!(error.to_string().contains("not followed"), "{error}");
}

/// `probe` (for a doctor): one unauthenticated `GET` of the base URL; any HTTP answer
/// proves Graph is reachable, and no token goes with it.
#[tokio::test]
async fn probe_reaches_graph_without_a_token() {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .respond_with(wiremock::ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;
    let status = transport(test_config(&server.uri())).probe().await.unwrap();
    assert_eq!(status, 401);
    let requests = server.received_requests().await.unwrap();
    assert!(requests[0].headers.get("authorization").is_none());

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let error = transport(test_config(&closed)).probe().await.unwrap_err();
    assert_eq!(error.kind(), mailroom_model::TransportErrorKind::Transient);
}
