//! App-only accounts (issue 17): they send with the app's own credentials, so every
//! sign-in workflow refuses them with `SignInNotNeeded` (not a failure to fix: no
//! remedy), and a person's sign-in is never counted as theirs.

use std::time::Duration;

use mailroom::{
    AccountRef, Error, KeyRing, Mailroom, MailroomOptions, Provider, SignInMode, SignInState,
};
use mailroom_accounts::Accounts;
use mailroom_model::{Auth, ServerSettingsChange};
use mailroom_testkit::{TestDatabase, on_both_backends};
use mailroom_tokens::interactive::{Identity, SignedIn};
use mailroom_tokens::registration::{AppChange, Apps};
use mailroom_tokens::storage::TokenStore;

use crate::support::signed_in;

on_both_backends!(
    a_dropped_sign_in_stops_listening,
    each_list_shows_a_sign_in_only_for_its_own_account,
    every_sign_in_workflow_refuses_an_app_only_account,
    signing_out_a_person_is_not_held_back_by_an_app_only_account,
);

const MAILBOX: &str = "orders@contoso.example";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

async fn setup(db: &TestDatabase) -> (Mailroom, KeyRing) {
    let key = KeyRing::generate();
    let mailroom = Mailroom::with_connection(db.db.clone(), MailroomOptions::new(key.clone()))
        .await
        .unwrap();
    Apps::new(&db.db, &key)
        .set(
            Provider::Microsoft,
            AppChange {
                client_id: Some("client".to_owned()),
                tenant: Some(TENANT.to_owned()),
                ..AppChange::default()
            },
        )
        .await
        .unwrap();
    (mailroom, key)
}

fn microsoft(auth: Auth) -> ServerSettingsChange {
    ServerSettingsChange {
        provider: Some(Provider::Microsoft),
        smtp_user: Some(MAILBOX.to_owned()),
        auth: Some(auth),
        ..Default::default()
    }
}

fn sign_in_of(address: &str) -> SignedIn {
    SignedIn::from_tokens(
        Identity {
            address: address.to_owned(),
            tenant_id: Some(TENANT.to_owned()),
            subject: Some("00000000-0000-0000-66f3-3332eca7ea81".to_owned()),
        },
        Provider::Microsoft,
        TENANT,
        "access".into(),
        Some("refresh".into()),
        Duration::from_secs(3600),
        Vec::new(),
    )
}

#[track_caller]
fn check_not_needed(error: Error, account: Option<AccountRef>) {
    let text = error.to_string();
    assert!(
        matches!(
            error,
            Error::SignInNotNeeded { account: a, provider: Provider::Microsoft } if a == account
        ),
        "{error:?}"
    );
    assert_eq!(error.remedy(), None, "nothing to fix");
    let name = account.map_or_else(|| "new account".to_owned(), |a| a.to_string());
    assert_eq!(
        text,
        format!(
            "the {name} uses the microsoft app's own credentials (app-only) and never needs a sign-in: there is no sign-in to start, store or remove; the app's credentials are changed with its microsoft app registration"
        )
    );
}

async fn every_sign_in_workflow_refuses_an_app_only_account(db: &TestDatabase) {
    let (mailroom, key) = setup(db).await;
    let accounts = Accounts::new(&db.db, &key);
    accounts
        .set_company(&microsoft(Auth::AppOnly), None)
        .await
        .unwrap();
    let user = accounts
        .add_user_account(&microsoft(Auth::AppOnly), None)
        .await
        .unwrap()
        .account
        .id;
    for account in [AccountRef::Company, AccountRef::User(user)] {
        for mode in [SignInMode::Browser, SignInMode::DeviceCode] {
            let refused = mailroom
                .begin_sign_in(account, mode, Duration::from_secs(5))
                .await
                .unwrap_err();
            check_not_needed(refused, Some(account));
        }
        let refused = mailroom
            .complete_sign_in(account, &sign_in_of(MAILBOX))
            .await
            .unwrap_err();
        check_not_needed(refused, Some(account));
        let refused = mailroom.sign_out(account).await.unwrap_err();
        check_not_needed(refused, Some(account));
    }
    assert!(
        TokenStore::new(&db.db, &key)
            .list()
            .await
            .unwrap()
            .is_empty(),
        "a refused sign-in stores nothing"
    );
    let refused = mailroom
        .begin_sign_in_for_new_account(
            &microsoft(Auth::AppOnly),
            SignInMode::Browser,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    check_not_needed(refused, None);
    let refused = mailroom
        .add_account_with_sign_in(&microsoft(Auth::AppOnly), None, &sign_in_of(MAILBOX))
        .await
        .unwrap_err();
    check_not_needed(refused, None);
    assert_eq!(accounts.user_accounts().await.unwrap().len(), 1);

    // The same account made delegated signs in as before.
    accounts
        .edit_user_account(
            user,
            &ServerSettingsChange {
                auth: Some(Auth::Delegated),
                ..Default::default()
            },
            mailroom_accounts::BindingChange::Keep,
        )
        .await
        .unwrap();
    assert_eq!(
        mailroom
            .complete_sign_in(AccountRef::User(user), &sign_in_of(MAILBOX))
            .await
            .unwrap(),
        MAILBOX
    );
    let account = accounts.account(AccountRef::User(user)).await.unwrap();
    let tokens = mailroom::stored_tokens(&db.db, &key).await.unwrap();
    assert_eq!(
        mailroom::sign_in_state(&account, &tokens),
        mailroom::SignInState::SignedIn
    );
    // The app-only company account with the same mailbox does not send with it.
    let company = accounts.account(AccountRef::Company).await.unwrap();
    assert_eq!(
        mailroom::sign_in_state(&company, &tokens),
        mailroom::SignInState::NotApplicable
    );
}

async fn signing_out_a_person_is_not_held_back_by_an_app_only_account(db: &TestDatabase) {
    let (mailroom, key) = setup(db).await;
    let accounts = Accounts::new(&db.db, &key);
    let user = accounts
        .add_user_account(&microsoft(Auth::Delegated), None)
        .await
        .unwrap()
        .account
        .id;
    // A sign-in stored under the mailbox's address (as before identities were kept), and
    // an app-only company account sending as the same mailbox.
    store_sign_in(db, &key, Provider::Microsoft, MAILBOX).await;
    accounts
        .set_company(&microsoft(Auth::AppOnly), None)
        .await
        .unwrap();
    let owned = mailroom::owned_tokens(&db.db, &key).await.unwrap();
    assert_eq!(owned.len(), 1);
    assert_eq!(owned[0].accounts, vec![AccountRef::User(user)]);

    let out = mailroom.sign_out(AccountRef::User(user)).await.unwrap();
    assert!(out.still_used_by.is_empty(), "{out:?}");
    assert!(out.deleted, "the person's sign-in is gone: {out:?}");
    assert!(
        TokenStore::new(&db.db, &key)
            .list()
            .await
            .unwrap()
            .is_empty()
    );
}

/// Dropping a sign-in under way abandons it, as `cancel` does: its loopback listener
/// closes (a console that starts a device code sign-in again relies on this to keep one
/// per account).
async fn a_dropped_sign_in_stops_listening(db: &TestDatabase) {
    let (mailroom, key) = setup(db).await;
    let id = Accounts::new(&db.db, &key)
        .add_user_account(&microsoft(Auth::Delegated), None)
        .await
        .unwrap()
        .account
        .id;
    let session = mailroom
        .begin_sign_in(
            AccountRef::User(id),
            SignInMode::Browser,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let mailroom::SignInStep::OpenUrl(url) = session.step().clone() else {
        panic!("a browser sign-in opens an address");
    };
    let redirect: url::Url = url
        .query_pairs()
        .find(|(name, _)| name == "redirect_uri")
        .map(|(_, value)| value.parse().unwrap())
        .unwrap();
    let port = redirect.port().unwrap();
    let listening = || tokio::net::TcpStream::connect(("127.0.0.1", port));
    assert!(listening().await.is_ok(), "listening while under way");
    drop(session);
    // The listener closes once the runtime has dropped the aborted task.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while listening().await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "still listening on {port} after the sign-in was dropped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A sign-in stored under `address` (no tenant or subject: keyed by the address alone),
/// for this file's Microsoft tenant.
async fn store_sign_in(db: &TestDatabase, key: &KeyRing, provider: Provider, address: &str) {
    let mut sign_in = signed_in(provider, address, "access", Some("refresh"));
    if provider == Provider::Microsoft {
        TENANT.clone_into(&mut sign_in.tenant);
    }
    TokenStore::new(&db.db, key)
        .save_sign_in(&sign_in, chrono::Utc::now())
        .await
        .unwrap();
}

/// What the account and token lists show: a stored sign-in belongs to the delegated
/// account of its own provider that sends as its address. Another provider's sign-in for
/// an account's address, and a sign-in for another address, are not the account's; an
/// app-only account needs none.
async fn each_list_shows_a_sign_in_only_for_its_own_account(db: &TestDatabase) {
    const BILLING: &str = "billing@contoso.example";
    let (_mailroom, key) = setup(db).await;
    let accounts = Accounts::new(&db.db, &key);
    let add = |change: ServerSettingsChange| {
        let accounts = &accounts;
        async move {
            accounts
                .add_user_account(&change, None)
                .await
                .unwrap()
                .account
                .id
        }
    };
    let owner = add(microsoft(Auth::Delegated)).await;
    let billing = add(ServerSettingsChange {
        smtp_user: Some(BILLING.to_owned()),
        ..microsoft(Auth::Delegated)
    })
    .await;
    accounts
        .set_company(&microsoft(Auth::AppOnly), None)
        .await
        .unwrap();
    store_sign_in(db, &key, Provider::Microsoft, MAILBOX).await;
    store_sign_in(db, &key, Provider::Google, BILLING).await;

    let owned = mailroom::owned_tokens(&db.db, &key).await.unwrap();
    let owners = |provider: Provider| {
        owned
            .iter()
            .find(|owned| owned.token.provider == provider)
            .map(|owned| owned.accounts.clone())
    };
    assert_eq!(
        owners(Provider::Microsoft),
        Some(vec![AccountRef::User(owner)])
    );
    assert_eq!(owners(Provider::Google), Some(Vec::new()));

    let tokens = mailroom::stored_tokens(&db.db, &key).await.unwrap();
    let state = |account: AccountRef| {
        let accounts = &accounts;
        let tokens = &tokens;
        async move { mailroom::sign_in_state(&accounts.account(account).await.unwrap(), tokens) }
    };
    assert_eq!(state(AccountRef::User(owner)).await, SignInState::SignedIn);
    assert_eq!(
        state(AccountRef::User(billing)).await,
        SignInState::NotSignedIn
    );
    assert_eq!(state(AccountRef::Company).await, SignInState::NotApplicable);

    let listed: Vec<(AccountRef, SignInState, Option<Provider>)> =
        mailroom::account_sign_ins(&db.db, &key)
            .await
            .unwrap()
            .into_iter()
            .map(|listed| {
                (
                    listed.account.account_ref(),
                    listed.state,
                    listed.token.map(|token| token.provider),
                )
            })
            .collect();
    assert_eq!(
        listed,
        vec![
            (AccountRef::Company, SignInState::NotApplicable, None),
            (
                AccountRef::User(owner),
                SignInState::SignedIn,
                Some(Provider::Microsoft)
            ),
            (AccountRef::User(billing), SignInState::NotSignedIn, None),
        ]
    );
}
