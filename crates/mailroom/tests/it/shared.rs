//! Shared mailboxes and the signed-in identity (issue: "The first real sign-in and send
//! must work as documented", item 2).
//!
//! Rules followed:
//! - Entra's id token reference (MicrosoftDocs/entra-docs,
//!   `docs/identity-platform/id-token-claims-reference.md`): `preferred_username` "is
//!   mutable and might change over time" and must not be used for authorization; "the
//!   `oid` and `tid` claims together identify a user".
//! - Exchange's "Authenticate an IMAP, POP or SMTP connection using OAuth": for a shared
//!   mailbox, a user with rights on it signs in, and the shared mailbox's address goes in
//!   the SASL XOAUTH2 `user=` with that user's access token.
//!
//! The SMTP server here is aiosmtpd (not ours), configured to accept the delegate's token
//! only with `user=` the shared mailbox.

use std::time::Duration;

use mailroom::{AUTOMATION_AGENT, AccountRef, MessageDraft, Provider, SendRequest, TransportKind};
use mailroom_accounts::Accounts;
use mailroom_model::ServerSettingsChange;
use mailroom_testkit::Backend;
use mailroom_tokens::interactive::{Identity, SignedIn};
use mailroom_tokens::storage::TokenStore;

use crate::support::{SA, World, headers_of};

const SHARED: &str = "orders@contoso.example";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub(crate) const SA_OID: &str = "00000000-0000-0000-66f3-3332eca7ea81";
const SA_TOKEN: &str = "access-token-of-sa";

pub(crate) fn sign_in_of(address: &str, oid: &str, access: &str) -> SignedIn {
    SignedIn::from_tokens(
        Identity {
            address: address.to_owned(),
            tenant_id: Some(TENANT.to_owned()),
            subject: Some(oid.to_owned()),
        },
        Provider::Microsoft,
        mailroom_tokens::registration::DEFAULT_MICROSOFT_TENANT,
        access.into(),
        Some("refresh-token-of-sa".into()),
        Duration::from_secs(3600),
        Vec::new(),
    )
}

async fn token_count(world: &World) -> usize {
    TokenStore::new(&world.db.db, &world.key)
        .list()
        .await
        .unwrap()
        .len()
}

async fn shared_mailbox_on(backend: Backend) {
    // aiosmtpd takes sa's token only for the shared mailbox: `user=` must be the mailbox.
    let world = World::new(backend, World::tokens(&[(SHARED, SA_TOKEN)])).await;
    world.register_app(Provider::Microsoft).await;
    world.company_smtp(Provider::Microsoft, SHARED).await;
    let user = world.user_microsoft(SA, "sa").await;
    let mailroom = world.mailroom().await;
    let sa = sign_in_of(SA, SA_OID, SA_TOKEN);

    // Not marked shared: someone else's sign-in is refused, naming both ways out.
    let refused = mailroom
        .complete_sign_in(AccountRef::Company, &sa)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains(&format!(
            "signed in as {SA}, but this account sends as {SHARED}"
        )) && refused.contains("mark the account as a shared mailbox"),
        "{refused}"
    );
    assert_eq!(
        token_count(&world).await,
        0,
        "a refused sign-in stores nothing"
    );

    // Marked shared: the delegate's sign-in is accepted and the mailbox stays the user.
    Accounts::new(&world.db.db, &world.key)
        .set_company(
            &ServerSettingsChange {
                shared_mailbox: Some(true),
                ..ServerSettingsChange::default()
            },
            None,
        )
        .await
        .unwrap();
    let signed_in_as = mailroom
        .complete_sign_in(AccountRef::Company, &sa)
        .await
        .unwrap();
    assert_eq!(signed_in_as, SA);
    // sa signs in for their own account too: the same person, one stored token.
    mailroom
        .complete_sign_in(AccountRef::User(user), &sa)
        .await
        .unwrap();
    assert_eq!(token_count(&world).await, 1, "one person, one token");
    let accounts = Accounts::new(&world.db.db, &world.key);
    let company = accounts.account(AccountRef::Company).await.unwrap();
    assert_eq!(company.server().smtp_user, SHARED);
    assert_eq!(
        company.server().token_identity.as_deref(),
        Some(format!("oid:{TENANT}:{SA_OID}").as_str())
    );

    // doctor says who signed in for the mailbox.
    let report = mailroom
        .doctor(mailroom::DoctorOptions {
            account: Some(AccountRef::Company),
            ..mailroom::DoctorOptions::default()
        })
        .await;
    let token = report
        .checks
        .iter()
        .find(|check| check.name == "company account token")
        .expect("a token check");
    assert_eq!(token.status, mailroom::CheckStatus::Ok, "{token:?}");
    assert!(
        token.detail.starts_with(&format!(
            "signed in by {SA} for the shared mailbox {SHARED}"
        )),
        "{token:?}"
    );

    // The send goes out as the mailbox, with the delegate's token.
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
    let receipt = mailroom.send(request).await.unwrap();
    assert_eq!(receipt.transport, TransportKind::Smtp);
    assert_eq!(receipt.account_user, SHARED);
    let messages = world.smtp.messages();
    assert_eq!(messages.len(), 1);
    let headers = headers_of(&messages[0].1);
    assert!(headers.contains(&format!("From: {SHARED}")), "{headers}");

    // Signing the mailbox out leaves sa's own account signed in.
    let out = mailroom.sign_out(AccountRef::Company).await.unwrap();
    assert!(!out.deleted);
    assert_eq!(out.still_used_by, vec![AccountRef::User(user)]);
    assert_eq!(token_count(&world).await, 1);
    let company = accounts.account(AccountRef::Company).await.unwrap();
    assert_eq!(company.server().token_identity, None);
    let out = mailroom.sign_out(AccountRef::User(user)).await.unwrap();
    assert!(out.deleted);
    assert!(out.still_used_by.is_empty());
    assert_eq!(token_count(&world).await, 0);
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delegate_signs_in_for_a_shared_mailbox_on_sqlite() {
    shared_mailbox_on(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delegate_signs_in_for_a_shared_mailbox_on_postgres() {
    shared_mailbox_on(Backend::Postgres).await;
}

/// The person, not the username, is who signed in: sa may sign in again after their
/// `preferred_username` changed (Entra: it is mutable), and the sign-in replaces the one
/// stored; another person with sa's old address is still refused.
#[tokio::test(flavor = "multi_thread")]
async fn the_same_person_signs_in_again_after_a_username_change() {
    let world = World::new(Backend::Sqlite, World::tokens(&[])).await;
    world.register_app(Provider::Microsoft).await;
    let user = world.user_microsoft(SA, "sa").await;
    let mailroom = world.mailroom().await;
    mailroom
        .complete_sign_in(AccountRef::User(user), &sign_in_of(SA, SA_OID, "first"))
        .await
        .unwrap();
    let renamed = sign_in_of("sa.smith@contoso.example", SA_OID, "second");
    mailroom
        .complete_sign_in(AccountRef::User(user), &renamed)
        .await
        .unwrap();
    let tokens = TokenStore::new(&world.db.db, &world.key)
        .list()
        .await
        .unwrap();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(tokens[0].address, "sa.smith@contoso.example");
    assert_eq!(
        tokens[0].version, 2,
        "the second sign-in replaced the first"
    );
    let someone_else = sign_in_of("mallory@contoso.example", "other-oid", "third");
    let refused = mailroom
        .complete_sign_in(AccountRef::User(user), &someone_else)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("signed in as mallory@contoso.example"),
        "{refused}"
    );
    // Changing the account's SMTP user lets go of the old person's sign-in.
    Accounts::new(&world.db.db, &world.key)
        .edit_user_account(
            user,
            &ServerSettingsChange {
                smtp_user: Some("other@contoso.example".to_owned()),
                ..ServerSettingsChange::default()
            },
            mailroom_accounts::BindingChange::Keep,
        )
        .await
        .unwrap();
    let account = Accounts::new(&world.db.db, &world.key)
        .account(AccountRef::User(user))
        .await
        .unwrap();
    assert_eq!(account.server().token_identity, None);
    world.finish().await;
}
