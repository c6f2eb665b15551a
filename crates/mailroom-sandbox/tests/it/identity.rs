//! Who signed in, as the providers document it: Entra's `preferred_username` is not the
//! person (`oid` + `tid` are), a shared mailbox is signed in by a person with rights on it
//! and named in XOAUTH2 `user=`, and Google's consent screen lets the person untick the
//! send scope.
//!
//! Sources: MicrosoftDocs/entra-docs `docs/identity-platform/id-token-claims-reference.md`
//! (`preferred_username` "is mutable and might change over time", "the `oid` and `tid`
//! claims together identify a user"); Exchange's "Authenticate an IMAP, POP or SMTP
//! connection using OAuth" (shared mailbox access: the shared mailbox's address in
//! `user=`, the signed-in user's token); Google's "How to handle granular permissions"
//! (users may grant only some of the requested scopes; the token response's `scope` lists
//! the granted ones).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use mailroom_model::{
    CredentialSecret, Credentials, MessageTransport, Provider, Secret, ServerSettings, TlsStartup,
};
use mailroom_smtp::{SmtpTransport, SmtpTransportConfig};
use mailroom_tokens::interactive::{SignInOptions, sign_in_with_browser};
use mailroom_tokens::{Error, OAuthHttp};

use crate::support::*;

const SHARED: &str = "orders@contoso.example";

fn options(expected: &str, shared_mailbox: bool, known: Option<String>) -> SignInOptions {
    SignInOptions {
        expected_address: Some(expected.to_owned()),
        shared_mailbox,
        known_identity: known,
        timeout: Duration::from_secs(30),
        resource: Default::default(),
    }
}

fn smtp_to(sandbox: &TestSandbox, user: &str) -> SmtpTransport {
    let mut settings = ServerSettings::preset(Provider::Microsoft);
    settings.host = "127.0.0.1".to_owned();
    settings.port = sandbox.endpoints().smtp_starttls_port;
    settings.tls_startup = TlsStartup::StartTls;
    settings.timeout_ms = 20_000;
    settings.smtp_user = user.to_owned();
    SmtpTransport::new(
        SmtpTransportConfig::new(settings)
            .with_extra_root_pem(sandbox.ca_pem().as_bytes().to_vec()),
    )
    .expect("the transport builds")
}

#[tokio::test]
async fn a_delegate_signs_in_for_a_shared_mailbox_and_sends_as_it() {
    let sandbox = sandbox_with(|config| config.default_address = Some(MICROSOFT_USER.into())).await;
    let app = app(&sandbox, Provider::Microsoft);
    // Shared: no login_hint names the mailbox, the delegate signs in (the sandbox's
    // default address plays sa choosing their account), and it is accepted. (A refusal when
    // the account is not shared: the facade's `shared` tests.)
    let signed_in = sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &options(SHARED, true, None),
        SystemTime::now,
        play_browser,
    )
    .await
    .expect("a delegate's sign-in for a shared mailbox");
    assert_eq!(signed_in.identity.address, MICROSOFT_USER);
    assert!(signed_in.token_key().identity_key.starts_with("oid:"));

    // SMTP: sa's token with `user=` the mailbox works once sa has rights on it.
    let token = tokens(&sandbox, Provider::Microsoft, MICROSOFT_USER).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let credentials = Credentials {
        user: SHARED.to_owned(),
        secret: CredentialSecret::AccessToken(Secret::new(token)),
        version: 1,
    };
    let message = message(SHARED, "buyer@example.com", Vec::new());
    let without_rights = smtp_to(&sandbox, SHARED).send(&message, &credentials).await;
    assert!(without_rights.is_err(), "{without_rights:?}");
    sandbox.authority().grant_send_as(SHARED, MICROSOFT_USER);
    let delivery = smtp_to(&sandbox, SHARED)
        .send(&message, &credentials)
        .await
        .expect("the delegate's token with user= the shared mailbox");
    assert!(delivery.reply.starts_with("250"), "{}", delivery.reply);
    let stored = &sandbox.mailbox().messages()[0];
    assert_eq!(stored.authenticated_as, SHARED);
    assert_eq!(stored.envelope_from.as_deref(), Some(SHARED));
}

#[tokio::test]
async fn a_username_that_changed_does_not_change_who_signed_in() {
    let sandbox = sandbox().await;
    let app = app(&sandbox, Provider::Microsoft);
    let sign_in = |options: SignInOptions| {
        let app = app.clone();
        async move {
            sign_in_with_browser(
                &OAuthHttp::new(),
                &app,
                &options,
                SystemTime::now,
                play_browser,
            )
            .await
        }
    };
    let first = sign_in(options(MICROSOFT_USER, false, None)).await.unwrap();
    // A phone number as the username: the address comes from `email`.
    sandbox
        .authority()
        .set_username(MICROSOFT_USER, "+1 555 0100");
    let phone = sign_in(options(MICROSOFT_USER, false, None)).await.unwrap();
    assert_eq!(phone.identity.address, MICROSOFT_USER);
    assert_eq!(phone.token_key(), first.token_key());
    // Renamed: the new name is not the mailbox, but the person is the one who signed in.
    sandbox
        .authority()
        .set_username(MICROSOFT_USER, "sa.smith@contoso.example");
    let refused = sign_in(options(MICROSOFT_USER, false, None))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, Error::IdentityMismatch { .. }),
        "{refused}"
    );
    let renamed = sign_in(options(
        MICROSOFT_USER,
        false,
        Some(first.token_key().identity_key),
    ))
    .await
    .expect("the same person, known by oid + tid");
    assert_eq!(renamed.identity.address, "sa.smith@contoso.example");
    assert_eq!(renamed.token_key(), first.token_key());
}

#[tokio::test]
async fn unticking_the_send_scope_on_googles_consent_screen_refuses_the_sign_in() {
    let sandbox = sandbox().await;
    sandbox
        .authority()
        .untick_google_scopes(&["https://www.googleapis.com/auth/gmail.send"]);
    let refused = sign_in_with_browser(
        &OAuthHttp::new(),
        &app(&sandbox, Provider::Google),
        &options(GOOGLE_USER, false, None),
        SystemTime::now,
        play_browser,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&refused, Error::ScopeNotGranted { scope } if scope == "https://www.googleapis.com/auth/gmail.send"),
        "{refused}"
    );
    assert!(refused.to_string().contains("left unticked"), "{refused}");
}

#[tokio::test]
async fn googles_consent_page_has_a_box_per_scope_and_grants_only_the_ticked_ones() {
    let sandbox = sandbox_with(|config| config.auto_approve = false).await;
    let authorize = sandbox.endpoints().google.authorize.clone();
    let params = [
        ("response_type", "code"),
        ("client_id", GOOGLE_CLIENT),
        ("redirect_uri", REDIRECT),
        ("scope", GOOGLE_SCOPE),
        ("state", "s1"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("login_hint", GOOGLE_USER),
    ];
    let html = http()
        .get(authorize.clone())
        .query(&params)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("name=\"grant:https://www.googleapis.com/auth/gmail.send\" checked"),
        "{html}"
    );
    assert!(!html.contains("name=\"grant:openid\""), "{html}");
    let mut form: Vec<(&str, &str)> = params.to_vec();
    form.extend([
        ("address", GOOGLE_USER),
        ("decision", "approve"),
        ("granular", "1"),
    ]);
    // The box left unticked: no `grant:` field for gmail.send.
    let response = http().post(authorize).form(&form).send().await.unwrap();
    assert_eq!(response.status(), 302);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let query: HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(query["scope"], "openid email");
    let (status, body) = token_call(
        &sandbox,
        Provider::Google,
        &[
            ("grant_type", "authorization_code"),
            ("code", query["code"].as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", GOOGLE_CLIENT),
            ("client_secret", GOOGLE_SECRET),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "openid email");
}

/// Google ends the sign-ins of a "Testing" app after 7 days ("Using OAuth 2.0 to Access
/// Google APIs", refresh token expiration). The sandbox refuses the refresh as Google does
/// (`invalid_grant`, "Token has been expired or revoked."), here on the eighth day of the
/// broker's clock; the error names the Testing status and what to do.
#[tokio::test]
async fn a_google_refresh_refused_on_the_eighth_day_names_the_testing_status() {
    use std::sync::Arc;

    use mailroom_crypto::KeyRing;
    use mailroom_model::{AccountRef, ManualClock};
    use mailroom_testkit::{Backend, TestDatabase};
    use mailroom_tokens::registration::{AppChange, Apps};
    use mailroom_tokens::storage::TokenStore;
    use mailroom_tokens::{BrokerConfig, TokenBroker, TokenTarget};

    let sandbox = sandbox().await;
    // The refresh token the sign-in gets has run out by its first use: the eighth day.
    sandbox
        .authority()
        .set_refresh_token_lifetime(Some(Duration::ZERO));
    let app = app(&sandbox, Provider::Google);
    let signed_in = sign_in_with_browser(
        &OAuthHttp::new(),
        &app,
        &options(GOOGLE_USER, false, None),
        SystemTime::now,
        play_browser,
    )
    .await
    .unwrap();
    let db = TestDatabase::new(Backend::Sqlite).await;
    let key = KeyRing::generate();
    Apps::new(&db.db, &key)
        .set(
            Provider::Google,
            AppChange {
                client_id: Some(app.client_id.clone()),
                client_secret: Some(app.client_secret.clone()),
                tenant: None,
                overrides: app.overrides.clone(),
                reset_endpoints: false,
                reset_redirect_uri: false,
                cloud: None,
                app_credential: None,
            },
        )
        .await
        .unwrap();
    let stored = TokenStore::new(&db.db, &key)
        .save_sign_in(&signed_in, chrono::Utc::now())
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    clock.advance(Duration::from_secs(8 * 24 * 3600));
    let broker = TokenBroker::new(
        db.db.clone(),
        key.clone(),
        OAuthHttp::new(),
        clock,
        BrokerConfig::default(),
    );
    let error = broker
        .access_token(&TokenTarget {
            account: AccountRef::Company,
            provider: Provider::Google,
            address: GOOGLE_USER.to_owned(),
            token_identity: Some(stored.key.identity_key.clone()),
            resource: Default::default(),
            auth: Default::default(),
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("Token has been expired or revoked.")
            && error.contains(
                "the sign-in was 8 days ago: if the Google app's publishing status is Testing"
            ),
        "{error}"
    );
    db.finish().await;
}
