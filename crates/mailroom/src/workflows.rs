//! The administrator's workflows, for every front end (the CLI, a console, a host
//! application's own screens): begin a sign-in and drive it from any UI, store a
//! completed sign-in, sign out, re-encrypt every secret with a new key, and hand out an
//! access token under the one sign-in policy.

use std::time::{Duration, SystemTime};

use mailroom_accounts::{Account, Accounts, BindingChange, Saved};
use mailroom_crypto::store::{self, KeyState};
use mailroom_crypto::{EncryptionKey, KeyRing};
use mailroom_model::{
    AccountId, AccountRef, Auth, Binding, CompanyAccount, FaxFormat, Provider, Remedy,
    ServerSettings, ServerSettingsChange, SignInPrompt, UserAccount, ValidationError,
};
use mailroom_tokens::{
    AccessToken, OAuthHttp, Resource, SignInPolicy, TokenTarget,
    interactive::{
        DEFAULT_SIGN_IN_TIMEOUT, DevicePrompt, RedirectSignIn, SignInOptions, SignedIn,
        revoke_at_provider, sign_in_with_browser, sign_in_with_device_code,
    },
    registration::{AppChange, AppRegistration, Apps},
    storage::{TokenKey, TokenStore},
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

use crate::{Error, Mailroom, Outbox, Result};

/// Refuses a sign-in workflow for an app-only account: it never has a sign-in.
fn refuse_app_only(account: Option<AccountRef>, server: &ServerSettings) -> Result<()> {
    if server.auth == Auth::AppOnly {
        return Err(Error::SignInNotNeeded {
            account,
            provider: server.provider,
        });
    }
    Ok(())
}

/// How a person signs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignInMode {
    /// In a browser, redirected back to a listener on this machine's loopback address.
    #[default]
    Browser,
    /// With a code entered on another device (Microsoft only; Google refuses Gmail scopes
    /// in the device flow).
    DeviceCode,
}

/// What the person must do to complete a sign-in; a front end shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignInStep {
    /// Open this address in a browser on this machine.
    OpenUrl(Url),
    /// Open `verification_uri` anywhere and enter `user_code`.
    EnterCode {
        /// Where to enter the code.
        verification_uri: String,
        /// The code.
        user_code: String,
        /// The provider's own instructions, when it sends them.
        message: Option<String>,
        /// How long the code is valid.
        expires_in: Duration,
    },
}

/// A sign-in under way: show [`SignInSession::step`], then [`SignInSession::finish`] to
/// wait for the person and store the result, or [`SignInSession::cancel`]. Dropping it
/// abandons the sign-in as `cancel` does (the listener closes, polling stops).
#[derive(Debug)]
pub struct SignInSession {
    account: Option<AccountRef>,
    step: SignInStep,
    task: JoinHandle<mailroom_tokens::Result<SignedIn>>,
}

impl SignInSession {
    /// The account being signed in (`None` for a sign-in that creates an account).
    pub fn account(&self) -> Option<AccountRef> {
        self.account
    }

    /// What the person must do now.
    pub fn step(&self) -> &SignInStep {
        &self.step
    }

    /// Waits for the person (up to the timeout given to [`Mailroom::begin_sign_in`]),
    /// then stores the sign-in with [`Mailroom::complete_sign_in`]; returns the address
    /// that signed in.
    pub async fn finish(self, mailroom: &Mailroom) -> Result<String> {
        let Some(account) = self.account else {
            return Err(mailroom_tokens::Error::SignInFailed(
                "this sign-in creates an account: wait for it and add the account with it"
                    .to_owned(),
            )
            .into());
        };
        let signed_in = self.wait().await?;
        mailroom.complete_sign_in(account, &signed_in).await
    }

    /// Waits for the person and returns the sign-in without storing it (for
    /// [`Mailroom::add_account_with_sign_in`]).
    pub async fn wait(mut self) -> Result<SignedIn> {
        match (&mut self.task).await {
            Ok(result) => Ok(result?),
            Err(error) => Err(mailroom_tokens::Error::SignInFailed(format!(
                "the sign-in stopped: {error}"
            ))
            .into()),
        }
    }

    /// Abandons the sign-in: the loopback listener closes, polling stops, nothing is
    /// stored.
    pub fn cancel(self) {
        drop(self);
    }
}

impl Drop for SignInSession {
    fn drop(&mut self) {
        // A no-op once the sign-in has ended.
        self.task.abort();
    }
}

/// What [`Mailroom::sign_out`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignOut {
    /// The account's address.
    pub address: String,
    /// Whether a stored token was deleted (false: there was none).
    pub deleted: bool,
    /// What the provider said to the revocation, when one was attempted.
    pub revocation: Revocation,
    /// Other accounts that send with the same person's sign-in: it was kept for them
    /// (`deleted` is false), and signing out of each of them ends it.
    pub still_used_by: Vec<AccountRef>,
}

/// The provider's side of a sign-out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revocation {
    /// Nothing was stored, so nothing was revoked.
    NotAttempted,
    /// The provider accepted the revocation (its words).
    Revoked(String),
    /// The provider has no revocation endpoint for these tokens (Microsoft): sessions end
    /// when an administrator revokes them in the identity provider.
    Unsupported,
    /// The revocation failed; the local deletion stands.
    Failed(String),
}

/// What [`Mailroom::commit_key_rotation`] re-encrypted, and with which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resealed {
    /// The fingerprint of the key everything is sealed with now.
    pub key_id: String,
    /// Account passwords.
    pub passwords: u64,
    /// OAuth client secrets.
    pub client_secrets: u64,
    /// Stored tokens.
    pub tokens: u64,
}

impl Mailroom {
    /// The account, which must sign in with OAuth, and its provider's app registration.
    pub async fn oauth_account(&self, account: AccountRef) -> Result<(Account, AppRegistration)> {
        let loaded = Accounts::new(self.database(), &self.options().key)
            .account(account)
            .await?;
        let provider = loaded.server().provider;
        if !provider.uses_oauth() {
            return Err(ValidationError::new(
                "provider",
                format!("the {account} uses password SMTP and has no sign-in"),
                "set its password instead",
            )
            .with_remedy(Remedy::EditAccount {
                account: Some(account),
            })
            .into());
        }
        let app = Apps::new(self.database(), &self.options().key)
            .require(provider)
            .await?;
        Ok((loaded, app))
    }

    /// The account, which must be one a person signs in for: an app-only account is
    /// refused with [`Error::SignInNotNeeded`] before anything else is read.
    async fn sign_in_account(&self, account: AccountRef) -> Result<(Account, AppRegistration)> {
        let loaded = Accounts::new(self.database(), &self.options().key)
            .account(account)
            .await?;
        refuse_app_only(Some(account), loaded.server())?;
        self.oauth_account(account).await
    }

    /// Starts a sign-in for `account`: returns once the person has something to do (a URL
    /// to open, a code to enter) with a session to finish or cancel. The signed-in
    /// address must be the account's SMTP user when it has one.
    pub async fn begin_sign_in(
        &self,
        account: AccountRef,
        mode: SignInMode,
        timeout: Duration,
    ) -> Result<SignInSession> {
        let (loaded, app) = self.sign_in_account(account).await?;
        let options = sign_in_options(loaded.server(), timeout);
        begin(app, options, mode)
            .await
            .map(|(step, task)| SignInSession {
                account: Some(account),
                step,
                task,
            })
    }

    /// Starts a browser sign-in for `account` whose redirect the caller receives itself,
    /// on `port` (a web console serving the app's registered loopback redirect URI on its
    /// own port): send the browser to [`RedirectSignIn::url`], keep the value bound to the
    /// person's session under [`RedirectSignIn::state`], pass the redirect's query to
    /// [`Mailroom::receive_redirect_sign_in`] and store the sign-in with
    /// [`Mailroom::complete_sign_in`]. The same rules as [`Mailroom::begin_sign_in`].
    pub async fn begin_redirect_sign_in(
        &self,
        account: AccountRef,
        port: u16,
    ) -> Result<RedirectSignIn> {
        let (loaded, app) = self.sign_in_account(account).await?;
        let options = sign_in_options(loaded.server(), DEFAULT_SIGN_IN_TIMEOUT);
        Ok(RedirectSignIn::begin(&app, options, port)?)
    }

    /// Completes a sign-in begun with [`Mailroom::begin_redirect_sign_in`] or
    /// [`Mailroom::begin_redirect_sign_in_for_new_account`] from its redirect's query
    /// parameters without storing it: the code is exchanged and who signed in is checked
    /// (for [`Mailroom::add_account_with_sign_in`] or [`Mailroom::complete_sign_in`]).
    pub async fn receive_redirect_sign_in<'q>(
        &self,
        sign_in: RedirectSignIn,
        query: impl IntoIterator<Item = (&'q str, &'q str)>,
    ) -> Result<SignedIn> {
        Ok(sign_in
            .complete(&OAuthHttp::new(), query, SystemTime::now())
            .await?)
    }

    /// Starts a sign-in that will create the user account `change` describes (see
    /// [`Mailroom::add_account_with_sign_in`]): its provider's app, its SMTP user as the
    /// address that must sign in (or whoever does, when it has none; anyone with rights on
    /// it, for a shared mailbox), and its route's permissions (Graph's `Mail.Send` on the
    /// Graph route). The change is validated first, before anyone signs in.
    pub async fn begin_sign_in_for_new_account(
        &self,
        change: &ServerSettingsChange,
        mode: SignInMode,
        timeout: Duration,
    ) -> Result<SignInSession> {
        let (app, options) = self.new_account_sign_in(change, timeout).await?;
        begin(app, options, mode)
            .await
            .map(|(step, task)| SignInSession {
                account: None,
                step,
                task,
            })
    }

    /// Starts a browser sign-in that will create the user account `change` describes,
    /// whose redirect the caller receives itself on `port` (as
    /// [`Mailroom::begin_redirect_sign_in`]); pass the redirect's query to
    /// [`Mailroom::receive_redirect_sign_in`], then the sign-in to
    /// [`Mailroom::add_account_with_sign_in`]. The same rules as
    /// [`Mailroom::begin_sign_in_for_new_account`].
    pub async fn begin_redirect_sign_in_for_new_account(
        &self,
        change: &ServerSettingsChange,
        port: u16,
    ) -> Result<RedirectSignIn> {
        let (app, options) = self
            .new_account_sign_in(change, DEFAULT_SIGN_IN_TIMEOUT)
            .await?;
        Ok(RedirectSignIn::begin(&app, options, port)?)
    }

    /// The app and the rules of a sign-in for a user account not created yet: the change
    /// is validated first, before anyone signs in.
    async fn new_account_sign_in(
        &self,
        change: &ServerSettingsChange,
        timeout: Duration,
    ) -> Result<(AppRegistration, SignInOptions)> {
        let settings = change.apply(None)?.settings;
        refuse_app_only(None, &settings)?;
        let app = Apps::new(self.database(), &self.options().key)
            .require(settings.provider)
            .await?;
        Ok((app, sign_in_options(&settings, timeout)))
    }

    /// Stores a completed sign-in for `account` and returns the signed-in address: the
    /// token, and the SMTP user when it was empty, in one transaction; refused when the
    /// account sends as someone else. Then held outbox messages are released so the agent
    /// retries them at once, and this process's caches are forgotten.
    pub async fn complete_sign_in(
        &self,
        account: AccountRef,
        signed_in: &SignedIn,
    ) -> Result<String> {
        let key = &self.options().key;
        let transaction = mailroom_migrations::begin_write(self.database()).await?;
        let accounts = Accounts::new(&transaction, key);
        let current = accounts.account(account).await?;
        let server = current.server();
        refuse_app_only(Some(account), server)?;
        let user = server.smtp_user.clone();
        let address = signed_in.identity.address.clone();
        // The rule the sign-in checked, checked again here: a sign-in may come from
        // elsewhere, and the account may have changed while the person signed in.
        SignInOptions {
            expected_address: Some(user.clone()),
            shared_mailbox: server.shared_mailbox,
            known_identity: server.token_identity.clone(),
            ..SignInOptions::default()
        }
        .check(&signed_in.identity)?;
        if user.is_empty() {
            let change = ServerSettingsChange {
                smtp_user: Some(address.clone()),
                ..Default::default()
            };
            match account {
                AccountRef::Company => {
                    accounts.set_company(&change, None).await?;
                }
                AccountRef::User(id) => {
                    accounts
                        .edit_user_account(id, &change, BindingChange::Keep)
                        .await?;
                }
            }
        }
        let stored = TokenStore::new(&transaction, key)
            .save_sign_in(signed_in, chrono::Utc::now())
            .await?;
        accounts
            .set_token_identity(account, Some(&stored.key.identity_key))
            .await?;
        transaction.commit().await?;
        self.after_sign_in().await;
        Ok(address)
    }

    /// Creates a user account from a completed sign-in (its SMTP user is the signed-in
    /// address) and stores the token, in one transaction; then releases held messages.
    pub async fn add_account_with_sign_in(
        &self,
        change: &ServerSettingsChange,
        binding: Option<Binding>,
        signed_in: &SignedIn,
    ) -> Result<UserAccount> {
        refuse_app_only(None, &change.apply(None)?.settings)?;
        let key = &self.options().key;
        let mut change = change.clone();
        // A shared mailbox keeps its address: the person who signed in is not the mailbox.
        if change.shared_mailbox != Some(true) {
            change.smtp_user = Some(signed_in.identity.address.clone());
        }
        let transaction = mailroom_migrations::begin_write(self.database()).await?;
        let accounts = Accounts::new(&transaction, key);
        accounts.verify_key().await?;
        let saved = accounts.add_user_account(&change, binding).await?;
        let stored = TokenStore::new(&transaction, key)
            .save_sign_in(signed_in, chrono::Utc::now())
            .await?;
        let account = accounts
            .set_token_identity(
                AccountRef::User(saved.account.id),
                Some(&stored.key.identity_key),
            )
            .await?;
        transaction.commit().await?;
        self.after_sign_in().await;
        match account {
            Account::User(user) => Ok(user),
            Account::Company(_) => Ok(saved.account),
        }
    }

    /// Creates or changes the company account (and its email-to-fax format when `fax` is
    /// `Some`) in one write transaction; this process's caches are forgotten. What the
    /// provider ignores and what the change did besides come back with the account.
    pub async fn save_company(
        &self,
        change: &ServerSettingsChange,
        fax: Option<Option<FaxFormat>>,
    ) -> Result<Saved<CompanyAccount>> {
        let transaction = mailroom_migrations::begin_write(self.database()).await?;
        let saved = Accounts::new(&transaction, &self.options().key)
            .set_company(change, fax)
            .await?;
        let account = Account::Company(saved.account.clone());
        self.limits_changed(&transaction, &account).await?;
        transaction.commit().await?;
        self.forget_cached();
        Ok(saved)
    }

    /// After `account` was saved in `transaction`: its mailboxes' pace rows take the
    /// limits its settings give now (every process's next claim applies them).
    async fn limits_changed(
        &self,
        transaction: &sea_orm::DatabaseTransaction,
        account: &Account,
    ) -> Result<()> {
        let now = self.outbox().clock().read(transaction).await?;
        crate::pace::account_changed(
            transaction,
            account.account_ref(),
            account.sender(),
            &account.server().mailbox_limits(),
            now,
        )
        .await
    }

    /// Adds a user account, bound to `binding` when given, in one write transaction.
    pub async fn add_account(
        &self,
        change: &ServerSettingsChange,
        binding: Option<Binding>,
    ) -> Result<Saved<UserAccount>> {
        let transaction = mailroom_migrations::begin_write(self.database()).await?;
        let saved = Accounts::new(&transaction, &self.options().key)
            .add_user_account(change, binding)
            .await?;
        let account = Account::User(saved.account.clone());
        self.limits_changed(&transaction, &account).await?;
        transaction.commit().await?;
        self.forget_cached();
        Ok(saved)
    }

    /// Changes a user account's settings and binding in one write transaction.
    pub async fn edit_account(
        &self,
        id: AccountId,
        change: &ServerSettingsChange,
        binding: BindingChange,
    ) -> Result<Saved<UserAccount>> {
        let transaction = mailroom_migrations::begin_write(self.database()).await?;
        let saved = Accounts::new(&transaction, &self.options().key)
            .edit_user_account(id, change, binding)
            .await?;
        let account = Account::User(saved.account.clone());
        self.limits_changed(&transaction, &account).await?;
        transaction.commit().await?;
        self.forget_cached();
        Ok(saved)
    }

    /// Registers or changes `provider`'s OAuth app in one write transaction; this
    /// process's caches are forgotten.
    pub async fn register_app(
        &self,
        provider: Provider,
        change: AppChange,
    ) -> Result<AppRegistration> {
        let transaction = mailroom_migrations::begin_write(self.database()).await?;
        let app = Apps::new(&transaction, &self.options().key)
            .set(provider, change)
            .await?;
        transaction.commit().await?;
        self.forget_cached();
        Ok(app)
    }

    async fn after_sign_in(&self) {
        self.forget_cached();
        // Failing here loses nothing (held messages are retried at the next hold
        // interval), so it is only logged.
        match Outbox::new(self.database()).release_held().await {
            Ok(0) => {}
            Ok(released) => tracing::info!(released, "held messages released after the sign-in"),
            Err(error) => {
                tracing::warn!(%error, "cannot release held messages; the agent retries them later");
            }
        }
    }

    /// Signs `account` out: deletes its stored token, then asks the provider to revoke it
    /// where the provider allows; the deletion stands whatever the provider answers. When
    /// other accounts send with the same person's sign-in (a delegate signed in for a
    /// shared mailbox and for their own), only this account lets go of it: the token
    /// stays, unrevoked, for the others ([`SignOut::still_used_by`]).
    pub async fn sign_out(&self, account: AccountRef) -> Result<SignOut> {
        let (loaded, app) = self.sign_in_account(account).await?;
        let server = loaded.server().clone();
        let address = server.smtp_user.clone();
        let key = TokenKey::of_account(
            app.provider,
            app.tenant(),
            &address,
            server.token_identity.as_deref(),
        );
        let ring = &self.options().key;
        let transaction = mailroom_migrations::begin_write(self.database()).await?;
        let accounts = Accounts::new(&transaction, ring);
        let mut still_used_by = Vec::new();
        for other in accounts.all_accounts().await? {
            let other_server = other.server();
            // An app-only account sends with the app's credentials, never a person's
            // sign-in, whatever its SMTP user.
            if other.account_ref() != account
                && other_server.provider == app.provider
                && other_server.auth == Auth::Delegated
                && TokenKey::of_account(
                    app.provider,
                    app.tenant(),
                    &other_server.smtp_user,
                    other_server.token_identity.as_deref(),
                ) == key
            {
                still_used_by.push(other.account_ref());
            }
        }
        if server.token_identity.is_some() {
            accounts.set_token_identity(account, None).await?;
        }
        let deleted = if still_used_by.is_empty() {
            TokenStore::new(&transaction, ring).delete(&key).await?
        } else {
            None
        };
        transaction.commit().await?;
        self.forget_cached();
        let Some(deleted) = deleted else {
            return Ok(SignOut {
                address,
                deleted: false,
                revocation: Revocation::NotAttempted,
                still_used_by,
            });
        };
        let token = deleted
            .refresh_token
            .as_ref()
            .unwrap_or(&deleted.access_token);
        let revocation = match revoke_at_provider(&OAuthHttp::new(), &app, token).await {
            Some(Ok(answer)) => Revocation::Revoked(answer),
            Some(Err(error)) => Revocation::Failed(error.to_string()),
            None => Revocation::Unsupported,
        };
        Ok(SignOut {
            address,
            deleted: true,
            revocation,
            still_used_by,
        })
    }

    /// The first step of a key rotation: records `next` as the key the rotation will seal
    /// with. Nothing is re-sealed yet and every host keeps working with the current key;
    /// the caller saves `next` where every host finds it (beside the current key, in each
    /// host's key ring) before [`Mailroom::commit_key_rotation`].
    pub async fn prepare_key_rotation(&self, next: &EncryptionKey) -> Result<KeyState> {
        let transaction = mailroom_migrations::begin_write(self.database()).await?;
        let state = store::prepare(&transaction, &self.options().key, next).await?;
        transaction.commit().await?;
        Ok(state)
    }

    /// The second step: re-seals every stored secret (passwords, client secrets, tokens)
    /// with the prepared key and makes it the database's key, in one transaction that
    /// holds the key row's lock, so no write seals with the old key after it and each
    /// re-sealed row counts a new version. This host's ring must hold the prepared key
    /// ([`mailroom_crypto::Error::MissingKey`] otherwise); hosts that lack it afterwards
    /// are refused with the same error, naming it, and write nothing.
    pub async fn commit_key_rotation(&self) -> Result<Resealed> {
        let ring = &self.options().key;
        let transaction = mailroom_migrations::begin_write(self.database()).await?;
        let next = store::commit_with(&transaction, ring).await?;
        let passwords = Accounts::new(&transaction, ring).reseal(next).await?;
        let client_secrets = Apps::new(&transaction, ring).reseal(next).await?;
        let tokens = TokenStore::new(&transaction, ring).reseal(next).await?;
        store::finish_commit(&transaction, next).await?;
        transaction.commit().await?;
        self.forget_cached();
        Ok(Resealed {
            key_id: next.id(),
            passwords: passwords as u64,
            client_secrets: client_secrets as u64,
            tokens: tokens as u64,
        })
    }

    /// Which key the database's secrets are sealed with, and any prepared rotation.
    pub async fn key_state(&self) -> Result<Option<KeyState>> {
        key_state(self.database()).await
    }

    /// A valid access token for `account`, refreshed when needed. When none can be had
    /// without a person, `prompt` runs a sign-in if the caller gave one and the
    /// `can_sign_in_when_sending` setting allows it ([`Mailroom::sign_in_policy`]); else
    /// the error begins "Failed to obtain an access token".
    pub async fn access_token(
        &self,
        account: AccountRef,
        prompt: Option<&dyn SignInPrompt>,
    ) -> Result<AccessToken> {
        let (loaded, _) = self.oauth_account(account).await?;
        let target = TokenTarget::of_account(account, loaded.server());
        let policy = self.sign_in_policy(prompt).await?;
        Ok(self
            .broker()
            .access_token_or_sign_in(&target, policy)
            .await?)
    }

    /// Refreshes `account`'s access token now, whether or not it is near its expiry (an
    /// administrator's "Refresh now"), and returns the new one: one refresh for every
    /// process on the database, never a prompt. A refused refresh is the error, with its
    /// remedy (sign in again).
    pub async fn refresh_token(&self, account: AccountRef) -> Result<AccessToken> {
        let (loaded, _) = self.oauth_account(account).await?;
        let target = TokenTarget::of_account(account, loaded.server());
        Ok(self.broker().force_refresh(&target).await?)
    }

    /// The sign-in policy of a caller with (or without) a prompt: the prompt and the
    /// `can_sign_in_when_sending` setting; [`SignInPolicy::allowed_prompt`] is the rule.
    /// Without a prompt (the agent, scripts) the setting is not read.
    pub async fn sign_in_policy<'p>(
        &self,
        prompt: Option<&'p dyn SignInPrompt>,
    ) -> Result<SignInPolicy<'p>> {
        if prompt.is_none() {
            return Ok(SignInPolicy::NEVER);
        }
        let settings = Accounts::new(self.database(), &self.options().key)
            .settings()
            .await?;
        Ok(SignInPolicy {
            prompt,
            can_sign_in_when_sending: settings.can_sign_in_when_sending,
        })
    }
}

/// What [`forget_secrets`] deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forgotten {
    /// Account passwords (the accounts stay).
    pub passwords: u64,
    /// OAuth client secrets (the registrations stay).
    pub client_secrets: u64,
    /// Stored tokens (every OAuth account signs in again).
    pub tokens: u64,
}

/// The fingerprint of the key `db`'s secrets are sealed with, if any was checked yet;
/// readable without the key (to say which key a host lacks).
pub async fn sealed_with(db: &sea_orm::DatabaseConnection) -> Result<Option<String>> {
    Ok(mailroom_accounts::sealed_with(db).await?)
}

/// Which key `db`'s secrets are sealed with and any prepared rotation, if a key was
/// recorded yet; readable without any key.
pub async fn key_state(db: &sea_orm::DatabaseConnection) -> Result<Option<KeyState>> {
    Ok(store::state(db).await?)
}

/// For a database whose key is lost: deletes every stored secret (passwords, client
/// secrets, tokens) in one transaction and seals with `new_key` from now on. Accounts,
/// registrations and the outbox stay; an administrator sets the passwords and signs in
/// again. The caller saves `new_key` where every host finds it first.
pub async fn forget_secrets(
    db: &sea_orm::DatabaseConnection,
    new_key: &EncryptionKey,
) -> Result<Forgotten> {
    let ring = KeyRing::from(new_key.clone());
    let transaction = mailroom_migrations::begin_write(db).await?;
    let passwords = Accounts::new(&transaction, &ring)
        .forget_passwords(new_key)
        .await?;
    let apps = Apps::new(&transaction, &ring);
    let client_secrets = apps.forget_secrets().await?;
    // The registrations' settings seals were made with the lost key.
    apps.seal_all_settings(new_key).await?;
    let tokens = TokenStore::new(&transaction, &ring).forget_all().await?;
    transaction.commit().await?;
    Ok(Forgotten {
        passwords: passwords as u64,
        client_secrets: client_secrets as u64,
        tokens,
    })
}

/// For a database from before settings seals: seals every account's and app
/// registration's settings as they stand, once, and records (sealed, in the key row) that
/// from now on every row must carry one. Does nothing on any other database.
pub(crate) async fn seal_settings_once(
    db: &sea_orm::DatabaseConnection,
    ring: &KeyRing,
) -> Result<()> {
    if store::settings_sealed(db, ring).await? {
        return Ok(());
    }
    let transaction = mailroom_migrations::begin_write(db).await?;
    let sealing = store::sealing_key(&transaction, ring).await?;
    // Asked again under the lock: another process may have sealed them meanwhile.
    if !store::settings_sealed(&transaction, ring).await? {
        let accounts = Accounts::new(&transaction, ring)
            .seal_all_settings(sealing)
            .await?;
        let apps = Apps::new(&transaction, ring)
            .seal_all_settings(sealing)
            .await?;
        store::mark_settings_sealed(&transaction, sealing).await?;
        tracing::info!(
            passwords = accounts,
            client_secrets = apps,
            "sealed the server settings of every account and app registration"
        );
    }
    transaction.commit().await?;
    Ok(())
}

/// What a sign-in for an account expects: its SMTP user (or whoever signs in, when it
/// has none), the person who signed in for it before, and its route's permissions.
fn sign_in_options(server: &ServerSettings, timeout: Duration) -> SignInOptions {
    SignInOptions {
        expected_address: Some(server.smtp_user.clone()).filter(|e| !e.is_empty()),
        shared_mailbox: server.shared_mailbox,
        known_identity: server.token_identity.clone(),
        resource: Resource::of_server(server),
        timeout,
    }
}

/// Starts the provider's flow in a task and waits until the person has something to do.
async fn begin(
    app: AppRegistration,
    options: SignInOptions,
    mode: SignInMode,
) -> Result<(SignInStep, JoinHandle<mailroom_tokens::Result<SignedIn>>)> {
    if mode == SignInMode::DeviceCode && app.provider == Provider::Google {
        return Err(mailroom_tokens::Error::DeviceFlowNotSupported.into());
    }
    let (step_tx, step_rx) = oneshot::channel::<SignInStep>();
    let task = tokio::spawn(async move {
        let http = OAuthHttp::new();
        match mode {
            SignInMode::Browser => {
                sign_in_with_browser(&http, &app, &options, SystemTime::now, |url| {
                    let _ = step_tx.send(SignInStep::OpenUrl(url.clone()));
                })
                .await
            }
            SignInMode::DeviceCode => {
                sign_in_with_device_code(
                    &http,
                    &app,
                    &options,
                    SystemTime::now,
                    |prompt: &DevicePrompt| {
                        let _ = step_tx.send(SignInStep::EnterCode {
                            verification_uri: prompt.verification_uri.clone(),
                            user_code: prompt.user_code.clone(),
                            message: prompt.message.clone(),
                            expires_in: prompt.expires_in,
                        });
                    },
                    tokio::time::sleep,
                )
                .await
            }
        }
    });
    match step_rx.await {
        Ok(step) => Ok((step, task)),
        // The flow ended before it had anything to show: its error says why.
        Err(_) => match task.await {
            Ok(Err(error)) => Err(error.into()),
            Ok(Ok(_)) => Err(mailroom_tokens::Error::SignInFailed(
                "the sign-in ended before it showed anything".to_owned(),
            )
            .into()),
            Err(error) => Err(mailroom_tokens::Error::SignInFailed(format!(
                "the sign-in stopped: {error}"
            ))
            .into()),
        },
    }
}
