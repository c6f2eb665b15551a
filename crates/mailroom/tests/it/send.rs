//! End to end through the facade: wiremock token and Gmail endpoints, the real SMTP test
//! server, and the database.

use mailroom::{
    AUTOMATION_AGENT, AccountPolicy, AccountRef, Attachment, Feature, Mailroom, MessageDraft,
    Provider, SALES_DOCUMENT, SendRequest, TransportErrorKind, TransportKind,
};
use mailroom_model::MockSignInPrompt;
use mailroom_testkit::Backend;
use mailroom_testkit::tls_front::TlsFront;
use mailroom_tokens::registration::{AppChange, Apps, EndpointOverrides};
use serde_json::json;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::support::{
    ORDERS, SA, World, gmail_sent, headers_of, message_id_of, microsoft_invalid_grant,
    microsoft_token_body,
};
use mailroom_testkit::smtp::ServerOptions;

fn draft() -> MessageDraft {
    MessageDraft {
        to: vec!["Buyer <buyer@example.com>".to_owned()],
        cc: vec!["cc@example.com".to_owned()],
        bcc: vec!["archive@example.com".to_owned()],
        subject: "Order confirmation — Grüße".to_owned(),
        text: Some("Thank you for your order.\r\n".to_owned()),
        html: Some("<p>Thank you for your order.</p>".to_owned()),
        attachments: vec![Attachment::new("SO-10234.pdf", b"%PDF-1.4 test".to_vec())],
        ..MessageDraft::default()
    }
}

fn request_for(user: Option<&str>, feature: &str) -> SendRequest<'static> {
    let mut request = SendRequest::new(feature, draft());
    request.system_user = user.map(str::to_owned);
    request
}

async fn token_endpoint_calls(world: &World) -> usize {
    world
        .http
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|request| request.url.path() == "/token")
        .count()
}

#[tokio::test]
async fn a_user_with_their_own_microsoft_account_sends_with_it_over_smtp() {
    let world = World::new(Backend::Sqlite, World::tokens(&[(SA, "at-sa")])).await;
    world.register_app(Provider::Microsoft).await;
    world.register_app(Provider::Google).await;
    world.company_google(ORDERS).await;
    let id = world.user_microsoft(SA, "sa").await;
    world
        .store_token(Provider::Microsoft, SA, "at-sa", false)
        .await;
    let mailroom = world.mailroom().await;

    let receipt = mailroom
        .send(request_for(Some("sa"), SALES_DOCUMENT))
        .await
        .unwrap();
    assert_eq!(receipt.account, AccountRef::User(id));
    assert_eq!(receipt.account_user, SA);
    assert_eq!(receipt.transport, TransportKind::Smtp);
    assert_eq!(
        receipt.reason,
        "the user account bound to SystemUser:User_Name:sa"
    );
    assert_eq!(receipt.attempts, 1);
    assert!(receipt.reply.starts_with("250"), "{}", receipt.reply);

    let messages = world.smtp.messages();
    assert_eq!(messages.len(), 1);
    let (event, bytes) = &messages[0];
    assert_eq!(event["mail_from"], SA);
    assert_eq!(
        event["rcpt_tos"],
        json!(["buyer@example.com", "cc@example.com", "archive@example.com"])
    );
    assert_eq!(message_id_of(bytes), receipt.message_id);
    let headers = headers_of(bytes);
    assert!(headers.contains("From: sa@contoso.example"), "{headers}");
    assert!(
        !headers.contains("Bcc"),
        "SMTP bytes must not carry Bcc: {headers}"
    );
    assert!(!String::from_utf8_lossy(bytes).contains("archive@example.com"));
    let text = String::from_utf8_lossy(bytes);
    assert!(text.contains("SO-10234.pdf") && text.contains("application/pdf"));
    // XOAUTH2 with the stored token, over TLS.
    let auth = &world.smtp.events_of("auth")[0];
    assert_eq!(auth["mechanism"], "XOAUTH2");
    assert_eq!(auth["tls"], true);
    assert_eq!(token_endpoint_calls(&world).await, 0);
    world.finish().await;
}

async fn mount_gmail(world: &World, id: &str) {
    Mock::given(method("POST"))
        .and(path("/upload/gmail/v1/users/me/messages/send"))
        .and(query_param("uploadType", "media"))
        .and(header("authorization", "Bearer at-orders"))
        .and(header("content-type", "message/rfc822"))
        .respond_with(ResponseTemplate::new(200).set_body_json(gmail_sent(id)))
        .expect(1)
        .mount(&world.http)
        .await;
}

async fn gmail_upload(world: &World) -> Vec<u8> {
    world
        .http
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|request| request.url.path().starts_with("/upload/"))
        .expect("a Gmail upload")
        .body
}

#[tokio::test]
async fn a_user_without_an_account_falls_back_to_the_company_google_account() {
    let world = World::new(Backend::Sqlite, ServerOptions::default()).await;
    world.register_app(Provider::Google).await;
    world.company_google(ORDERS).await;
    world
        .store_token(Provider::Google, ORDERS, "at-orders", false)
        .await;
    mount_gmail(&world, "18c0ffee").await;
    let mailroom = world.mailroom().await;

    let mut request = request_for(Some("bob"), SALES_DOCUMENT);
    request.message.fax = vec!["+1 (555) 010-2000".to_owned()];
    let receipt = mailroom.send(request).await.unwrap();
    assert_eq!(receipt.account, AccountRef::Company);
    assert_eq!(receipt.transport, TransportKind::GmailApi);
    assert_eq!(receipt.provider_message_id.as_deref(), Some("18c0ffee"));
    assert_eq!(
        receipt.reason,
        "the company account, because no user account is bound to SystemUser:User_Name:bob"
    );

    let upload = gmail_upload(&world).await;
    assert_eq!(message_id_of(&upload), receipt.message_id);
    let headers = headers_of(&upload);
    // Gmail takes its recipients from the headers: Bcc must be there.
    assert!(
        headers.starts_with("Bcc: archive@example.com\r\n"),
        "{headers}"
    );
    assert!(headers.contains("From: orders@example.com"), "{headers}");
    assert!(
        headers.contains("+15550102000@fax.example.com"),
        "the fax number becomes a To address: {headers}"
    );
    assert!(world.smtp.messages().is_empty());
    world.finish().await;
}

#[tokio::test]
async fn a_company_only_feature_ignores_the_users_own_account() {
    let world = World::new(Backend::Sqlite, World::tokens(&[(SA, "at-sa")])).await;
    world.register_app(Provider::Microsoft).await;
    world.register_app(Provider::Google).await;
    world.company_google(ORDERS).await;
    world.user_microsoft(SA, "sa").await;
    world
        .store_token(Provider::Microsoft, SA, "at-sa", false)
        .await;
    world
        .store_token(Provider::Google, ORDERS, "at-orders", false)
        .await;
    mount_gmail(&world, "18c0ffef").await;
    let mut options = world.options();
    options
        .features
        .register(
            Feature::new(
                "purchase-orders",
                "Purchase orders",
                AccountPolicy::CompanyOnly,
            )
            .unwrap(),
        )
        .unwrap();
    let mailroom = mailroom::Mailroom::with_connection(world.db.db.clone(), options)
        .await
        .unwrap();

    for feature in [AUTOMATION_AGENT, "purchase-orders"] {
        let receipt = mailroom.send(request_for(Some("sa"), feature)).await;
        let receipt = receipt.unwrap();
        assert_eq!(receipt.account, AccountRef::Company);
        assert_eq!(
            receipt.reason,
            format!("the company account, because feature `{feature}` sends only with it")
        );
        if feature == AUTOMATION_AGENT {
            // Each mock expects exactly one upload.
            world.http.reset().await;
            mount_gmail(&world, "18c0fff0").await;
        }
    }
    assert!(
        world.smtp.messages().is_empty(),
        "sa's own account was not used"
    );
    world.finish().await;
}

#[tokio::test]
async fn an_expired_token_is_refreshed_on_the_way() {
    let world = World::new(Backend::Sqlite, World::tokens(&[(SA, "at-fresh")])).await;
    world.register_app(Provider::Microsoft).await;
    world.company_smtp(Provider::Microsoft, SA).await;
    world
        .store_token(Provider::Microsoft, SA, "at-expired", true)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(microsoft_token_body("at-fresh", "rt-2")),
        )
        .expect(1)
        .mount(&world.http)
        .await;
    let mailroom = world.mailroom().await;
    let receipt = mailroom
        .send(request_for(None, SALES_DOCUMENT))
        .await
        .unwrap();
    assert_eq!(receipt.attempts, 1);
    assert_eq!(world.delivered_message_ids(), [receipt.message_id]);
    let auth = world.smtp.events_of("auth");
    assert_eq!(
        auth.len(),
        1,
        "the expired token was never offered: {auth:?}"
    );
    assert!(
        auth[0]["initial"]
            .as_str()
            .unwrap()
            .contains("Bearer at-fresh")
    );
    world.finish().await;
}

#[tokio::test]
async fn a_revoked_token_without_sign_in_fails_with_the_guides_error_and_sends_nothing() {
    let world = World::new(Backend::Sqlite, World::tokens(&[(SA, "at-never")])).await;
    world.register_app(Provider::Microsoft).await;
    world.company_smtp(Provider::Microsoft, SA).await;
    world
        .store_token(Provider::Microsoft, SA, "at-expired", true)
        .await;
    world.forbid_sign_in_when_sending().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(microsoft_invalid_grant()))
        .expect(1)
        .mount(&world.http)
        .await;
    let mailroom = world.mailroom().await;
    // The caller could prompt, but the setting forbids sign-in when sending.
    let mut prompt = MockSignInPrompt::new();
    prompt.expect_sign_in().never();
    let mut request = request_for(None, SALES_DOCUMENT);
    request.sign_in = Some(&prompt);
    let error = mailroom.send(request).await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with("Failed to obtain an access token for sa@contoso.example (microsoft)"),
        "{text}"
    );
    assert!(
        text.ends_with("an administrator must sign in for company account"),
        "{text}"
    );
    assert_eq!(
        error.remedy(),
        Some(mailroom_model::Remedy::SignIn {
            account: Some(mailroom_model::AccountRef::Company),
            browser_only: false
        })
    );
    assert!(error.needs_sign_in());
    assert!(world.smtp.events().is_empty(), "nothing reached the server");
    world.finish().await;
}

#[tokio::test]
async fn a_535_refreshes_the_token_once_and_the_retry_succeeds() {
    let world = World::new(Backend::Sqlite, World::tokens(&[(SA, "at-new")])).await;
    world.register_app(Provider::Microsoft).await;
    world.company_smtp(Provider::Microsoft, SA).await;
    // Valid by its expiry, but the server no longer accepts it.
    world
        .store_token(Provider::Microsoft, SA, "at-old", false)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(microsoft_token_body("at-new", "rt-2")),
        )
        .expect(1)
        .mount(&world.http)
        .await;
    let mailroom = world.mailroom().await;
    let receipt = mailroom
        .send(request_for(None, SALES_DOCUMENT))
        .await
        .unwrap();
    assert_eq!(receipt.attempts, 2);
    assert_eq!(world.delivered_message_ids(), [receipt.message_id]);
    let offered: Vec<String> = world
        .smtp
        .events_of("auth")
        .iter()
        .map(|event| event["initial"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(offered.len(), 2);
    assert!(offered[0].contains("Bearer at-old") && offered[1].contains("Bearer at-new"));
    world.finish().await;
}

#[tokio::test]
async fn a_transient_451_is_retried_and_the_retry_succeeds() {
    let options = ServerOptions {
        scripted: json!({ "RCPT_ONCE": { "buyer@example.com": "451 4.3.0 Temporary server error. Please try again later" } }),
        ..World::tokens(&[(SA, "at-sa")])
    };
    let world = World::new(Backend::Sqlite, options).await;
    world.register_app(Provider::Microsoft).await;
    world.company_smtp(Provider::Microsoft, SA).await;
    world
        .store_token(Provider::Microsoft, SA, "at-sa", false)
        .await;
    let mailroom = world.mailroom().await;
    let receipt = mailroom
        .send(request_for(None, SALES_DOCUMENT))
        .await
        .unwrap();
    assert_eq!(receipt.attempts, 2);
    assert_eq!(world.delivered_message_ids(), [receipt.message_id]);
    world.finish().await;
}

#[tokio::test]
async fn a_permanent_550_is_not_retried() {
    let options = ServerOptions {
        scripted: json!({ "RCPT": { "buyer@example.com": "550 5.1.1 User unknown" } }),
        ..World::tokens(&[(SA, "at-sa")])
    };
    let world = World::new(Backend::Sqlite, options).await;
    world.register_app(Provider::Microsoft).await;
    world.company_smtp(Provider::Microsoft, SA).await;
    world
        .store_token(Provider::Microsoft, SA, "at-sa", false)
        .await;
    let mailroom = world.mailroom().await;
    let error = mailroom
        .send(request_for(None, SALES_DOCUMENT))
        .await
        .unwrap_err();
    let transport = error.transport_error().expect("a transport error");
    assert_eq!(transport.kind(), TransportErrorKind::MessageRejected);
    assert!(
        matches!(error, mailroom::Error::Transport { attempts: 1, .. }),
        "{error:?}"
    );
    assert_eq!(world.smtp.events_of("auth").len(), 1, "one attempt only");
    assert!(world.smtp.messages().is_empty());
    world.finish().await;
}

#[tokio::test]
async fn a_header_injection_is_refused_before_anything_is_sent() {
    let world = World::new(Backend::Sqlite, World::tokens(&[(SA, "at-sa")])).await;
    world.register_app(Provider::Microsoft).await;
    world.company_smtp(Provider::Microsoft, SA).await;
    world
        .store_token(Provider::Microsoft, SA, "at-sa", false)
        .await;
    let mailroom = world.mailroom().await;
    let mut request = request_for(None, SALES_DOCUMENT);
    request.message.subject = "Invoice\r\nBcc: everyone@example.com".to_owned();
    let error = mailroom.send(request).await.unwrap_err();
    assert!(error.to_string().contains("line break"), "{error}");
    assert!(world.smtp.events().is_empty());
    world.finish().await;
}

/// Plays an administrator signing in: stores the token and fills the SMTP user, as the
/// CLI's terminal prompt does.
#[derive(Debug)]
struct SignsInAs<'a> {
    world: &'a World,
    address: &'static str,
    token: &'static str,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl mailroom::SignInPrompt for SignsInAs<'_> {
    async fn sign_in(
        &self,
        request: &mailroom::SignInRequest,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        assert_eq!(request.account, AccountRef::Company);
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.world
            .store_token(Provider::Microsoft, self.address, self.token, false)
            .await;
        let change = mailroom_model::ServerSettingsChange {
            smtp_user: Some(self.address.to_owned()),
            ..Default::default()
        };
        mailroom_accounts::Accounts::new(&self.world.db.db, &self.world.key)
            .set_company(&change, None)
            .await?;
        Ok(())
    }
}

#[tokio::test]
async fn an_account_without_an_smtp_user_signs_in_first_when_the_caller_may_prompt() {
    let world = World::new(Backend::Sqlite, World::tokens(&[(SA, "at-first")])).await;
    world.register_app(Provider::Microsoft).await;
    world.company_smtp(Provider::Microsoft, "").await;
    let mailroom = world.mailroom().await;

    // Without a prompt (the agent, a script): the guide's error, nothing queued.
    let error = mailroom
        .queue(request_for(None, AUTOMATION_AGENT))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("Failed to obtain an access token for (no SMTP user yet) (microsoft)"),
        "{error}"
    );
    assert!(mailroom.outbox().list(None, 10).await.unwrap().is_empty());

    let prompt = SignsInAs {
        world: &world,
        address: SA,
        token: "at-first",
        calls: Default::default(),
    };
    // A dry run never signs in, even with a prompt.
    let mut request = request_for(None, SALES_DOCUMENT);
    request.sign_in = Some(&prompt);
    let error = mailroom.prepare_preview(&request).await.unwrap_err();
    assert!(error.needs_sign_in(), "{error:?}");
    assert_eq!(prompt.calls.load(std::sync::atomic::Ordering::SeqCst), 0);

    let receipt = mailroom.send(request).await.unwrap();
    assert_eq!(prompt.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(receipt.account_user, SA);
    let messages = world.smtp.messages();
    assert_eq!(messages.len(), 1);
    assert!(headers_of(&messages[0].1).contains("From: sa@contoso.example"));
    // The account as it was before its sign-in was never kept in the resolution cache:
    // the agent's queue, with no prompt, sees the SMTP user at once.
    mailroom
        .queue(request_for(None, AUTOMATION_AGENT))
        .await
        .unwrap();
    world.finish().await;
}

/// An account whose sign-in was never stored signs in at the send when the caller may
/// prompt (and the setting allows it), then sends with the new token.
#[tokio::test]
async fn a_missing_token_signs_in_at_the_send_when_the_caller_may_prompt() {
    let world = World::new(Backend::Sqlite, World::tokens(&[(SA, "at-signed-in")])).await;
    world.register_app(Provider::Microsoft).await;
    world.company_smtp(Provider::Microsoft, SA).await;
    let mailroom = world.mailroom().await;
    let prompt = SignsInAs {
        world: &world,
        address: SA,
        token: "at-signed-in",
        calls: Default::default(),
    };
    let mut request = request_for(None, SALES_DOCUMENT);
    request.sign_in = Some(&prompt);
    let receipt = mailroom.send(request).await.unwrap();
    assert_eq!(prompt.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(receipt.account_user, SA);
    assert_eq!(world.smtp.messages().len(), 1);
    world.finish().await;
}

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_token_or_password_appears_in_logs_errors_or_debug_output() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let options = ServerOptions {
        scripted: json!({ "RCPT": { "nobody@example.com": "550 5.1.1 User unknown" } }),
        ..World::tokens(&[(SA, "at-new-SECRET-2")])
    };
    let world = World::new(Backend::Sqlite, options).await;
    world.register_app(Provider::Microsoft).await;
    world.company_smtp(Provider::Microsoft, SA).await;
    world
        .store_token(Provider::Microsoft, SA, "at-old-SECRET-1", false)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(microsoft_token_body("at-new-SECRET-2", "rt-SECRET-3")),
        )
        .mount(&world.http)
        .await;
    let mailroom = world.mailroom().await;
    let receipt = mailroom
        .send(request_for(None, SALES_DOCUMENT))
        .await
        .unwrap();
    let mut rejected = request_for(None, SALES_DOCUMENT);
    rejected.message.to = vec!["nobody@example.com".to_owned()];
    let error = mailroom.send(rejected).await.unwrap_err();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("send attempt failed"),
        "the attempts are logged: {logs}"
    );
    let shown = format!(
        "{logs}\n{receipt:?}\n{error}\n{error:?}\n{mailroom:?}\n{:?}",
        mailroom.options()
    );
    for secret in ["SECRET-1", "SECRET-2", "SECRET-3", "refresh-token-before"] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
    world.finish().await;
}

#[tokio::test]
async fn a_resolution_is_reused_for_the_cache_time_and_read_again_after_it() {
    let world = World::new(
        Backend::Sqlite,
        World::tokens(&[(SA, "at-sa"), (ORDERS, "at-orders")]),
    )
    .await;
    world.register_app(Provider::Microsoft).await;
    world.company_smtp(Provider::Microsoft, ORDERS).await;
    let id = world.user_microsoft(SA, "sa").await;
    world
        .store_token(Provider::Microsoft, SA, "at-sa", false)
        .await;
    world
        .store_token(Provider::Microsoft, ORDERS, "at-orders", false)
        .await;
    let remove_user = || async {
        mailroom::Accounts::new(&world.db.db, &world.key)
            .remove_user_account(id)
            .await
            .unwrap();
    };

    // A long cache: the account removed behind the facade's back is still used ...
    let mut options = world.options();
    options.resolution_cache_ttl = std::time::Duration::from_secs(3600);
    let cached = mailroom::Mailroom::with_connection(world.db.db.clone(), options)
        .await
        .unwrap();
    let first = cached
        .send(request_for(Some("SA "), SALES_DOCUMENT))
        .await
        .unwrap();
    assert_eq!(first.account, AccountRef::User(id));
    remove_user().await;
    let second = cached
        .send(request_for(Some("sa"), SALES_DOCUMENT))
        .await
        .unwrap();
    assert_eq!(
        second.account,
        AccountRef::User(id),
        "the same feature and user hit the cache"
    );
    // ... until the cache is forgotten.
    cached.forget_cached();
    let third = cached
        .send(request_for(Some("sa"), SALES_DOCUMENT))
        .await
        .unwrap();
    assert_eq!(third.account, AccountRef::Company);

    // Without a cache every send reads the database.
    let id = world.user_microsoft(SA, "sa").await;
    let mut options = world.options();
    options.resolution_cache_ttl = std::time::Duration::ZERO;
    let uncached = mailroom::Mailroom::with_connection(world.db.db.clone(), options)
        .await
        .unwrap();
    assert_eq!(
        uncached
            .send(request_for(Some("sa"), SALES_DOCUMENT))
            .await
            .unwrap()
            .account,
        AccountRef::User(id)
    );
    mailroom::Accounts::new(&world.db.db, &world.key)
        .remove_user_account(id)
        .await
        .unwrap();
    assert_eq!(
        uncached
            .send(request_for(Some("sa"), SALES_DOCUMENT))
            .await
            .unwrap()
            .account,
        AccountRef::Company
    );
    world.finish().await;
}

/// The extra root certificate reaches the Gmail API too: behind an HTTPS front with its
/// own CA, a facade given that CA sends, and one without it gets a certificate error and
/// sends nothing.
#[tokio::test]
async fn gmail_trusts_the_extra_root_certificate_and_no_other() {
    let world = World::new(Backend::Sqlite, ServerOptions::default()).await;
    world.register_app(Provider::Google).await;
    let front = TlsFront::start(*world.http.address()).await;
    Apps::new(&world.db.db, &world.key)
        .set(
            Provider::Google,
            AppChange {
                overrides: EndpointOverrides {
                    gmail_api_url: Some(url::Url::parse(&front.url()).unwrap()),
                    ..EndpointOverrides::default()
                },
                ..AppChange::default()
            },
        )
        .await
        .unwrap();
    world.company_google(ORDERS).await;
    world
        .store_token(Provider::Google, ORDERS, "at-orders", false)
        .await;
    mount_gmail(&world, "18c0ffee").await;

    let mut options = world.options();
    options.extra_root_pem = Some(front.ca_pem.clone().into_bytes());
    let trusting = Mailroom::with_connection(world.db.db.clone(), options.clone())
        .await
        .unwrap();
    let receipt = trusting
        .send(request_for(Some("bob"), SALES_DOCUMENT))
        .await
        .unwrap();
    assert_eq!(receipt.transport, TransportKind::GmailApi);
    assert_eq!(receipt.provider_message_id.as_deref(), Some("18c0ffee"));

    options.extra_root_pem = None;
    let distrusting = Mailroom::with_connection(world.db.db.clone(), options)
        .await
        .unwrap();
    let error = distrusting
        .send(request_for(Some("bob"), SALES_DOCUMENT))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, mailroom::Error::Transport { error, .. } if error.kind() == TransportErrorKind::Tls),
        "{error:?}"
    );
    // `mount_gmail` expects exactly one upload: the second never reached the API.
    world.finish().await;
}
