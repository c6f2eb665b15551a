//! The facade's sign-in workflows, as a second front end (the console) uses them: a
//! session names its account and shows its step; Google is refused the device flow
//! (Google's "OAuth 2.0 for TV and Limited-Input Device Applications": Gmail scopes are
//! not among the device flow's allowed scopes) while Microsoft shows its code; a first
//! sign-in fills an account's empty SMTP user and releases the messages held for it; an
//! account created from a sign-in sends as the person who signed in, unless it is a
//! shared mailbox.

use std::sync::Arc;
use std::time::Duration;

use mailroom::{
    AUTOMATION_AGENT, AccountRef, Agent, AgentOptions, MessageDraft, OutboxStatus, Provider,
    SendRequest, SignInMode, SignInStep,
};
use mailroom_accounts::Accounts;
use mailroom_model::ServerSettingsChange;
use mailroom_testkit::Backend;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::shared::{SA_OID, sign_in_of};
use crate::support::{SA, World, signed_in};

const SHARED: &str = "orders@contoso.example";
const SA_TOKEN: &str = "access-token-of-sa";

fn statement() -> SendRequest<'static> {
    let mut request = SendRequest::new(
        AUTOMATION_AGENT,
        MessageDraft {
            to: vec!["buyer@example.com".to_owned()],
            subject: "Statement".to_owned(),
            text: Some("Attached.".to_owned()),
            ..MessageDraft::default()
        },
    );
    request.system_user = None;
    request
}

fn once() -> AgentOptions {
    AgentOptions {
        concurrency: 1,
        once: true,
        poll_interval: Duration::from_millis(20),
        ..AgentOptions::default()
    }
}

async fn first_sign_in(backend: Backend) {
    let world = World::new(backend, World::tokens(&[(SA, SA_TOKEN)])).await;
    world.register_app(Provider::Microsoft).await;
    world.company_smtp(Provider::Microsoft, SA).await;
    // sa's own account, waiting for its first sign-in: no SMTP user yet.
    let user = Accounts::new(&world.db.db, &world.key)
        .add_user_account(&world.smtp_change(Provider::Microsoft, ""), None)
        .await
        .unwrap()
        .account
        .id;
    let mailroom = Arc::new(world.mailroom().await);
    let id = mailroom.queue(statement()).await.unwrap();
    let summary = Agent::new(mailroom.clone(), once())
        .run(std::future::pending())
        .await
        .unwrap();
    assert_eq!(summary.held, 1, "no sign-in yet: the message is held");
    assert_eq!(
        mailroom.outbox().due(chrono::Utc::now()).await.unwrap(),
        0,
        "a held message waits for its hold interval"
    );

    // Known by address only (no `oid`), so the company account finds it too.
    let sa = signed_in(
        Provider::Microsoft,
        SA,
        SA_TOKEN,
        Some("refresh-token-of-sa"),
    );
    let address = mailroom
        .complete_sign_in(AccountRef::User(user), &sa)
        .await
        .unwrap();
    assert_eq!(address, SA);
    let account = Accounts::new(&world.db.db, &world.key)
        .user_account(user)
        .await
        .unwrap();
    assert_eq!(
        account.server.smtp_user, SA,
        "the first sign-in names the account's SMTP user"
    );
    // Released by the sign-in itself, with nobody running `release_held`: the company
    // account sends as sa too, with the same person's token.
    assert_eq!(
        mailroom.outbox().due(chrono::Utc::now()).await.unwrap(),
        1,
        "the held message is due at once"
    );
    let summary = Agent::new(mailroom.clone(), once())
        .run(std::future::pending())
        .await
        .unwrap();
    assert_eq!(summary.sent, 1);
    let sent = mailroom.outbox().get(id).await.unwrap();
    assert_eq!(sent.status, OutboxStatus::Sent);
    assert_eq!(world.delivered_message_ids(), [sent.message_id]);
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_sign_in_names_the_account_and_releases_its_held_messages_on_sqlite() {
    first_sign_in(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_sign_in_names_the_account_and_releases_its_held_messages_on_postgres() {
    first_sign_in(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_made_from_a_sign_in_sends_as_the_person_unless_it_is_a_shared_mailbox() {
    let world = World::new(Backend::Sqlite, World::tokens(&[])).await;
    world.register_app(Provider::Microsoft).await;
    let mailroom = world.mailroom().await;
    let sa = sign_in_of(SA, SA_OID, SA_TOKEN);

    // Whatever the change says, a personal account sends as whoever signed in.
    let own = mailroom
        .add_account_with_sign_in(
            &world.smtp_change(Provider::Microsoft, "someone.else@contoso.example"),
            None,
            &sa,
        )
        .await
        .unwrap();
    assert_eq!(own.server.smtp_user, SA);

    // A shared mailbox keeps its address: the delegate who signed in is not the mailbox.
    let shared = mailroom
        .add_account_with_sign_in(
            &ServerSettingsChange {
                shared_mailbox: Some(true),
                ..world.smtp_change(Provider::Microsoft, SHARED)
            },
            None,
            &sa,
        )
        .await
        .unwrap();
    assert_eq!(shared.server.smtp_user, SHARED);
    assert_eq!(
        shared.server.token_identity, own.server.token_identity,
        "both send with sa's one sign-in"
    );
    assert!(shared.server.token_identity.is_some());
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sign_in_session_names_its_account_and_google_has_no_device_flow() {
    let world = World::new(Backend::Sqlite, World::tokens(&[])).await;
    world.register_app(Provider::Microsoft).await;
    world.register_app(Provider::Google).await;
    // Microsoft's device authorization response ("OAuth 2.0 device authorization grant":
    // `device_code`, `user_code`, `verification_uri`, `expires_in`, `interval`, `message`).
    Mock::given(method("POST"))
        .and(path("/devicecode"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "device_code": "GMMhmHCXhWEzkobqIHGG_EnNYYsAkukHspeYUk9E8",
            "user_code": "ABCD-EFGH",
            "verification_uri": "https://microsoft.com/devicelogin",
            "expires_in": 900,
            "interval": 5,
            "message": "To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code ABCD-EFGH to authenticate."
        })))
        .mount(&world.http)
        .await;
    world.company_smtp(Provider::Microsoft, SA).await;
    let accounts = Accounts::new(&world.db.db, &world.key);
    let google = accounts
        .add_user_account(
            &ServerSettingsChange {
                provider: Some(Provider::Google),
                smtp_user: Some("billing@example.com".to_owned()),
                ..ServerSettingsChange::default()
            },
            None,
        )
        .await
        .unwrap()
        .account
        .id;
    let mailroom = world.mailroom().await;
    let timeout = Duration::from_secs(30);

    let session = mailroom
        .begin_sign_in(AccountRef::Company, SignInMode::DeviceCode, timeout)
        .await
        .unwrap();
    assert_eq!(session.account(), Some(AccountRef::Company));
    match session.step() {
        SignInStep::EnterCode {
            verification_uri,
            user_code,
            expires_in,
            ..
        } => {
            assert_eq!(verification_uri, "https://microsoft.com/devicelogin");
            assert_eq!(user_code, "ABCD-EFGH");
            assert_eq!(*expires_in, Duration::from_secs(900));
        }
        other => panic!("a device sign-in shows a code, not {other:?}"),
    }
    session.cancel();

    let refused = mailroom
        .begin_sign_in(AccountRef::User(google), SignInMode::DeviceCode, timeout)
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            mailroom::Error::Tokens(mailroom_tokens::Error::DeviceFlowNotSupported)
        ),
        "{refused:?}"
    );
    let session = mailroom
        .begin_sign_in(AccountRef::User(google), SignInMode::Browser, timeout)
        .await
        .unwrap();
    assert_eq!(session.account(), Some(AccountRef::User(google)));
    let SignInStep::OpenUrl(url) = session.step() else {
        panic!("a browser sign-in opens an address");
    };
    assert!(url.as_str().starts_with(&world.http.uri()), "{url}");
    session.cancel();

    // A sign-in that creates an account has none yet, and cannot store itself.
    let session = mailroom
        .begin_sign_in_for_new_account(
            &world.smtp_change(Provider::Microsoft, ""),
            SignInMode::Browser,
            timeout,
        )
        .await
        .unwrap();
    assert_eq!(session.account(), None);
    let refused = session.finish(&mailroom).await.unwrap_err().to_string();
    assert!(
        refused.contains("this sign-in creates an account"),
        "{refused}"
    );
    assert_eq!(accounts.user_accounts().await.unwrap().len(), 1);
    world.finish().await;
}
