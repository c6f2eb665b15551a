//! Property tests (proptest) of the sandbox's request handling, black box over loopback:
//! arbitrary HTTP requests to its OAuth, Gmail, Graph and admin endpoints, and arbitrary SMTP
//! command sequences. Whatever arrives, the sandbox answers (no handler panics and drops
//! the connection), never with a server error, and keeps serving. `PROPTEST_CASES` scales
//! them; `cargo xtask fuzz sandbox-http` / `sandbox-smtp` run them for longer.

use mailroom_model::Provider;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::smtp::Raw;
use crate::support::{
    GOOGLE_USER, MICROSOFT_USER, TestSandbox, http, sandbox_with, tokens, tokens_with_scope,
};

/// One sandbox for all the cases of a property, on a runtime that outlives them.
struct Fixture {
    sandbox: TestSandbox,
    google_token: String,
    graph_token: String,
    runtime: tokio::runtime::Runtime,
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let (sandbox, google_token, graph_token) = runtime.block_on(async {
        let sandbox = sandbox_with(|config| {
            config.password_accounts = vec![("relay".to_owned(), "secret".to_owned())];
            config.max_message_size = 64 * 1024;
        })
        .await;
        let tokens = tokens(&sandbox, Provider::Google, GOOGLE_USER).await;
        let token = tokens["access_token"].as_str().expect("a token").to_owned();
        let graph = tokens_with_scope(
            &sandbox,
            Provider::Microsoft,
            MICROSOFT_USER,
            "https://graph.microsoft.com/Mail.Send https://graph.microsoft.com/Mail.ReadWrite openid",
        )
        .await;
        let graph = graph["access_token"].as_str().expect("a token").to_owned();
        (sandbox, token, graph)
    });
    Fixture {
        runtime,
        sandbox,
        google_token,
        graph_token,
    }
}

/// The paths the sandbox serves (the admin hook that injects failures left out: its point
/// is to make the next call fail), with their parameters filled in arbitrarily, and
/// arbitrary paths.
fn path() -> impl Strategy<Value = String> {
    let segment = "[A-Za-z0-9%._~@-]{0,12}";
    prop_oneof![
        segment.prop_map(|tenant| format!("/microsoft/{tenant}/oauth2/v2.0/authorize")),
        segment.prop_map(|tenant| format!("/microsoft/{tenant}/oauth2/v2.0/token")),
        segment.prop_map(|tenant| format!("/microsoft/{tenant}/oauth2/v2.0/devicecode")),
        Just("/microsoft/devicelogin".to_owned()),
        Just("/google/o/oauth2/v2/auth".to_owned()),
        Just("/google/token".to_owned()),
        Just("/google/device/code".to_owned()),
        Just("/google/device".to_owned()),
        Just("/google/revoke".to_owned()),
        segment.prop_map(|user| format!("/gmail/v1/users/{user}/messages/send")),
        segment.prop_map(|user| format!("/upload/gmail/v1/users/{user}/messages/send")),
        prop_oneof![
            Just("me".to_owned()),
            segment.prop_map(|user| format!("users/{user}"))
        ]
        .prop_flat_map(move |who| {
            prop_oneof![
                Just(format!("/v1.0/{who}/sendMail")),
                Just(format!("/v1.0/{who}/messages")),
                segment.prop_map({
                    let who = who.clone();
                    move |id| format!("/v1.0/{who}/messages/{id}/send")
                }),
                segment.prop_map({
                    let who = who.clone();
                    move |id| format!("/v1.0/{who}/messages/{id}/attachments")
                }),
                segment.prop_map(move |id| format!(
                    "/v1.0/{who}/messages/{id}/attachments/createUploadSession"
                )),
            ]
        }),
        segment.prop_map(|session| format!("/outlook-upload/{session}")),
        Just("/_sandbox/messages".to_owned()),
        Just("/_sandbox/stats".to_owned()),
        Just("/_sandbox/revoke".to_owned()),
        Just("/_sandbox/device/approve".to_owned()),
        Just("/".to_owned()),
        "(/[A-Za-z0-9%._~-]{0,10}){0,4}",
    ]
}

/// Form fields the endpoints read, with near-valid and arbitrary values.
fn form() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        Just("grant_type"),
        Just("client_id"),
        Just("client_secret"),
        Just("code"),
        Just("redirect_uri"),
        Just("code_verifier"),
        Just("refresh_token"),
        Just("scope"),
        Just("device_code"),
        Just("user_code"),
        Just("token"),
        Just("response_type"),
        Just("state"),
        Just("code_challenge"),
        Just("code_challenge_method"),
        Just("login_hint"),
        Just("approve"),
        Just("address"),
        Just("uploadType"),
        Just("upload_id"),
        Just("authtoken"),
    ]
    .prop_map(str::to_owned);
    let value = prop_oneof![
        Just("authorization_code".to_owned()),
        Just("refresh_token".to_owned()),
        Just("client_credentials".to_owned()),
        Just("urn:ietf:params:oauth:grant-type:device_code".to_owned()),
        Just("1234-sandbox.apps.googleusercontent.com".to_owned()),
        Just("11111111-2222-3333-4444-555555555555".to_owned()),
        Just("S256".to_owned()),
        Just("http://127.0.0.1:9/callback".to_owned()),
        any::<String>(),
    ];
    proptest::collection::vec((prop_oneof![name, "[a-z_]{0,10}"], value), 0..8)
}

#[derive(Debug, Clone)]
enum Body {
    Form(Vec<(String, String)>),
    Json(String),
    Bytes(Vec<u8>),
    Text(String),
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        form().prop_map(Body::Form),
        prop_oneof![any::<String>(), "\\{\"raw\": \"[A-Za-z0-9_=-]{0,40}\"\\}",]
            .prop_map(Body::Json),
        proptest::collection::vec(any::<u8>(), 0..400).prop_map(Body::Bytes),
        prop_oneof![
            "[A-Za-z0-9+/=\r\n]{0,200}",
            Just("VG86IGFAYi5leGFtcGxlDQoNCmJvZHkNCg==".to_owned()),
        ]
        .prop_map(Body::Text),
        prop_oneof![
            Just(r#"{"message":{"toRecipients":[{"emailAddress":{"address":"a@b.example"}}],"attachments":[{"name":"x","contentBytes":"QUJD"}]}}"#.to_owned()),
            Just(r#"{"AttachmentItem":{"attachmentType":"file","name":"x","size":3145728}}"#.to_owned()),
            Just(r#"{"name":"x","contentBytes":"QUJD"}"#.to_owned()),
        ]
        .prop_map(Body::Json),
    ]
}

proptest! {
    /// Any request to any endpoint is answered, below 500, and the sandbox still answers
    /// its index page after it.
    #[test]
    fn any_http_request_is_answered(
        post in any::<bool>(),
        path in path(),
        query in form(),
        body in body(),
        bearer in 0..4u8,
        content_range in proptest::option::of("bytes [0-9*]{1,4}-[0-9]{0,4}/[0-9*]{1,6}"),
    ) {
        let fixture = FIXTURE.with(|fixture| fixture.clone());
        fixture.runtime.block_on(async {
            let base = fixture.sandbox.endpoints().http.clone();
            let mut url = base.clone();
            url.set_path(&path);
            url.query_pairs_mut().extend_pairs(&query);
            let client = http();
            let mut request = if post { client.post(url.clone()) } else { client.get(url.clone()) };
            match bearer {
                1 => request = request.bearer_auth(&fixture.google_token),
                2 => request = request.bearer_auth(&fixture.graph_token),
                3 => request = request.bearer_auth("not-a-token"),
                _ => {}
            }
            if let Some(range) = &content_range {
                request = request.header("content-range", range.as_str());
            }
            request = match &body {
                Body::Form(pairs) => request.form(pairs),
                Body::Json(text) => request.header("content-type", "application/json").body(text.clone()),
                Body::Bytes(bytes) => request.header("content-type", "message/rfc822").body(bytes.clone()),
                Body::Text(text) => request.header("content-type", "text/plain").body(text.clone()),
            };
            let response = request.send().await;
            let response = response.map_err(|e| TestCaseError::fail(format!("no answer to {url}: {e}")))?;
            let status = response.status();
            prop_assert!(status.as_u16() < 500, "{} {} answered {}", if post { "POST" } else { "GET" }, url, status);
            let index = client.get(base).send().await.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(index.status().as_u16(), 200);
            Ok(())
        })?;
    }

    /// Any sequence of SMTP commands (near-valid and arbitrary, with DATA bodies) gets a
    /// well-formed reply to each line, the connection stays up until QUIT, and NOOP still
    /// gets 250 at the end.
    #[test]
    fn any_smtp_session_is_answered(lines in proptest::collection::vec(smtp_line(), 1..12)) {
        let fixture = FIXTURE.with(|fixture| fixture.clone());
        fixture.runtime.block_on(async {
            let mut raw = Raw::connect_implicit(&fixture.sandbox).await;
            check_reply(&raw.reply().await)?;
            let mut last = String::new();
            for line in &lines {
                let line = line.replace(['\r', '\n'], " ");
                let reply = raw.command(&line).await;
                check_reply(&reply)?;
                last.clone_from(&reply);
                if reply.starts_with("221") {
                    return Ok(());
                }
                if reply.starts_with("354") {
                    raw.send("Subject: fuzz\r\n\r\n..dot\r\nbody\r\n.\r\n").await;
                    check_reply(&raw.reply().await)?;
                }
            }
            if last.starts_with("334") {
                // An SASL exchange waits for its answer: cancel it (RFC 4954).
                let cancelled = raw.command("*").await;
                prop_assert!(cancelled.starts_with("501") || cancelled.starts_with("535"), "{:?}", cancelled);
            }
            prop_assert!(raw.command("NOOP").await.starts_with("250"));
            Ok(())
        })?;
    }
}

fn check_reply(reply: &str) -> Result<(), TestCaseError> {
    let lines: Vec<&str> = reply.split_inclusive("\r\n").collect();
    prop_assert!(!lines.is_empty());
    for (index, line) in lines.iter().enumerate() {
        let bytes = line.as_bytes();
        prop_assert!(line.ends_with("\r\n"), "{:?}", reply);
        prop_assert!(
            bytes.len() >= 5 && bytes[..3].iter().all(u8::is_ascii_digit),
            "{:?}",
            reply
        );
        prop_assert!(matches!(bytes[0], b'2'..=b'5'), "{:?}", reply);
        let separator = if index + 1 == lines.len() { b' ' } else { b'-' };
        prop_assert_eq!(bytes[3], separator, "{:?}", reply);
    }
    Ok(())
}

fn base64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn smtp_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("EHLO fuzz.example".to_owned()),
        Just("HELO".to_owned()),
        Just("STARTTLS".to_owned()),
        Just("RSET".to_owned()),
        Just("NOOP".to_owned()),
        Just("DATA".to_owned()),
        Just("BDAT 10".to_owned()),
        Just("QUIT".to_owned()),
        Just("*".to_owned()),
        Just("AUTH LOGIN".to_owned()),
        Just(format!("AUTH PLAIN {}", base64("\0relay\0secret"))),
        Just("MAIL FROM:<a@example.com>".to_owned()),
        Just("RCPT TO:<b@example.com>".to_owned()),
        Just("AUTH XOAUTH2".to_owned()),
        "[ -~]{0,10}".prop_map(|user| format!(
            "AUTH XOAUTH2 {}",
            base64(&format!("user={user}\x01auth=Bearer x\x01\x01"))
        )),
        "[ -~]{0,10}".prop_map(|user| format!(
            "AUTH OAUTHBEARER {}",
            base64(&format!("n,a={user},\x01auth=Bearer x\x01\x01"))
        )),
        any::<String>().prop_map(|data| format!("AUTH PLAIN {}", base64(&data))),
        "[ -~]{0,20}".prop_map(|data| format!("AUTH PLAIN {data}")),
        "[ -~]{0,20}".prop_map(|data| base64(&data)),
        "[ -~]{0,30}".prop_map(|from| format!("MAIL FROM:<{from}> SIZE={}", from.len())),
        "[ -~]{0,30}".prop_map(|to| format!("RCPT TO:<{to}>")),
        "(MAIL|RCPT|mail|rcpt) (FROM|TO|from|to):?[ -~]{0,20}",
        any::<String>(),
    ]
}

thread_local! {
    static FIXTURE: std::rc::Rc<Fixture> = std::rc::Rc::new(fixture());
}
