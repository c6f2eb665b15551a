//! `TokenBroker`: hands out valid access tokens for sends. A valid token comes from memory
//! without a network call or database read; an expired one is refreshed once per expiry,
//! by one task in the process (single flight) and one process on the database (a lease
//! plus compare-and-swap on the row version). One sign-in (one refresh token) serves
//! several resources (Outlook SMTP, Microsoft Graph), each with its own access token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use mailroom_crypto::KeyRing;
use mailroom_model::{AccountRef, Auth, Clock, Provider, Secret, SignInPrompt, SignInRequest};
use sea_orm::{DatabaseConnection, TransactionTrait};

use crate::app::{AppCredential, AppRegistration, Apps};
use crate::app_only::{self, AppResource, AppToken, ClientCredential};
use crate::error::SignInReason;
use crate::oauth::{self, OAuthFailure, OAuthHttp};
use crate::resource::Resource;
use crate::store::{
    RefreshedTokens, ResourceAccessToken, StoredToken, TokenKey, TokenStatus, TokenStore,
};
use crate::{Error, Result};

/// Tuning of the broker; the defaults suit production.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// A token this close to expiry counts as expired (clock skew, time in flight).
    pub expiry_skew: Duration,
    /// How long a refresh lease lasts at least; the lease used is never shorter than the
    /// longest refresh can take (see [`BrokerConfig::effective_lease`]).
    pub lease: Duration,
    /// Attempts for a refresh that fails transiently (network, 5xx).
    pub transient_attempts: u32,
    /// The first wait between those attempts; doubled each time.
    pub transient_backoff: Duration,
    /// How long to wait for another process's refresh before giving up.
    pub wait_for_other_refresh: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            expiry_skew: Duration::from_secs(5 * 60),
            lease: Duration::from_secs(60),
            transient_attempts: 3,
            transient_backoff: Duration::from_millis(500),
            wait_for_other_refresh: Duration::from_secs(90),
        }
    }
}

impl BrokerConfig {
    /// The longest one refresh can take: every attempt running to the request timeout,
    /// plus the waits between attempts.
    pub fn longest_refresh(&self) -> Duration {
        let attempts = self.transient_attempts.max(1);
        let requests = crate::oauth::REQUEST_TIMEOUT * attempts;
        let waits: Duration = (1..attempts).map(|attempt| self.wait_after(attempt)).sum();
        requests + waits
    }

    /// The wait after the `attempt`th (from 1) transient failure: `transient_backoff`,
    /// doubled after each further one.
    pub fn wait_after(&self, attempt: u32) -> Duration {
        self.transient_backoff * 2u32.saturating_pow(attempt.saturating_sub(1))
    }

    /// The refresh lease taken: `lease`, or the longest refresh plus a margin when that is
    /// longer, so a lease never lapses while its holder is still refreshing (another
    /// process would then refresh too, and Microsoft's rotated refresh token would be lost).
    pub fn effective_lease(&self) -> Duration {
        self.lease.max(self.longest_refresh() + LEASE_MARGIN)
    }

    /// How long a process waits for another's refresh: at least the lease it may hold.
    pub fn effective_wait_for_other_refresh(&self) -> Duration {
        self.wait_for_other_refresh
            .max(self.effective_lease() + LEASE_MARGIN)
    }

    /// True once a process that has `waited` for another's refresh gives up: it waited
    /// longer than [`BrokerConfig::effective_wait_for_other_refresh`].
    fn waited_too_long(&self, waited: chrono::Duration) -> bool {
        waited > chrono_duration(self.effective_wait_for_other_refresh())
    }
}

/// A process waiting for another's refresh looks at the row after `FIRST_POLL`, then
/// after twice as long each time, up to `LAST_POLL` (the database is not hammered, and a
/// refresh that ends is seen within half a second).
const FIRST_POLL: Duration = Duration::from_millis(20);
const LAST_POLL: Duration = Duration::from_millis(500);

/// The wait before the next look at a row another process is refreshing.
fn next_poll(poll: Duration) -> Duration {
    (poll * 2).min(LAST_POLL)
}

/// Time a lease keeps beyond the longest refresh (a database write, clocks).
const LEASE_MARGIN: Duration = Duration::from_secs(10);

/// How an app-only token is obtained for a target: the app's credential, the token it
/// asks for, and the key its cached token is stored under.
struct AppOnlyPlan {
    credential: AppCredential,
    resource: AppResource,
    scope: String,
    key: TokenKey,
    /// What its row shows as the address: the Google mailbox the token acts as, or
    /// `app {client id}` for a Microsoft app's token, which serves every mailbox the app
    /// may send as.
    label: String,
}

impl AppOnlyPlan {
    /// The plan for `target` (which authenticates app-only) with `app`: Microsoft Graph's
    /// or Exchange Online's `/.default` for the app itself, or a Google token acting as
    /// the mailbox.
    fn new(app: &AppRegistration, target: &TokenTarget) -> Result<Self> {
        let credential = app
            .app_credential
            .clone()
            .ok_or_else(|| Error::AppCredentialMissing {
                provider: target.provider,
                address: target.address.clone(),
                needed: match target.provider {
                    Provider::Google => "service account key (domain-wide delegation)",
                    _ => "client secret or certificate (client credentials)",
                },
            })?;
        let resource = AppResource::of(target.provider, target.resource, &target.address);
        let scope = match resource {
            AppResource::Gmail { .. } => app_only::GMAIL_SEND_SCOPE.to_owned(),
            // A national cloud's Graph resource is its own host.
            AppResource::Graph => format!("{}/.default", app.cloud.graph_url()),
            _ => app_only::OUTLOOK_DEFAULT_SCOPE.to_owned(),
        };
        let client = match &credential {
            AppCredential::ServiceAccount(key) => key.client_email().to_lowercase(),
            _ => app.client_id.clone(),
        };
        let key = TokenKey {
            provider: target.provider,
            tenant: app.tenant().to_owned(),
            identity_key: format!(
                "{}{}:{client}:{}",
                crate::store::APP_KEY_PREFIX,
                credential.kind(),
                resource.key()
            ),
        };
        let label = match &resource {
            AppResource::Gmail { mailbox } => mailbox.clone(),
            _ => format!("app {}", app.client_id),
        };
        Ok(Self {
            credential,
            resource,
            scope,
            key,
            label,
        })
    }
}

/// What a send needs a token for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenTarget {
    /// The account (for error messages and sign-in prompts).
    pub account: AccountRef,
    /// Its provider.
    pub provider: Provider,
    /// The address it sends as (its SMTP user); empty before the first sign-in.
    pub address: String,
    /// The identity key of the sign-in it sends with (the account's `token_identity`);
    /// `None`: the sign-in stored under `address` (from before identities were kept).
    pub token_identity: Option<String>,
    /// The resource the token is for (the account's route).
    pub resource: Resource,
    /// A person's sign-in, or the app's own credentials (then `address` is the mailbox the
    /// app sends as, and no sign-in is ever asked for).
    pub auth: Auth,
}

impl TokenTarget {
    /// The target of the account `account` with these server settings.
    pub fn of_account(account: AccountRef, server: &mailroom_model::ServerSettings) -> Self {
        Self {
            account,
            provider: server.provider,
            address: server.smtp_user.clone(),
            token_identity: server.token_identity.clone(),
            resource: Resource::of_server(server),
            auth: server.auth,
        }
    }

    /// The same target, its token being for `resource`.
    pub fn with_resource(mut self, resource: Resource) -> Self {
        self.resource = resource;
        self
    }

    /// The key of the stored sign-in for this target under `tenant`.
    pub fn token_key(&self, tenant: &str) -> TokenKey {
        TokenKey::of_account(
            self.provider,
            tenant,
            &self.address,
            self.token_identity.as_deref(),
        )
    }
}

/// A valid access token. `Debug` shows no token.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The token.
    pub secret: Secret,
    /// The stored row's version when this resource's token was written: changes with every
    /// refresh of this resource (transports pool per version), not with another's.
    pub version: u64,
    /// The resource it is for.
    pub resource: Resource,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// The address it belongs to.
    pub address: String,
}

/// Whether, when a sign-in is needed, this caller may run one.
#[derive(Debug, Clone, Copy)]
pub struct SignInPolicy<'a> {
    /// The prompt, for an interactive caller; `None` for the agent and scripts.
    pub prompt: Option<&'a dyn SignInPrompt>,
    /// The `can_sign_in_when_sending` setting.
    pub can_sign_in_when_sending: bool,
}

impl<'a> SignInPolicy<'a> {
    /// Never prompt (the automation agent).
    pub const NEVER: SignInPolicy<'static> = SignInPolicy {
        prompt: None,
        can_sign_in_when_sending: false,
    };

    /// The rule, the only place it is written: a sign-in may run when the caller has a
    /// prompt and the `can_sign_in_when_sending` setting allows it.
    pub fn allowed_prompt(&self) -> Option<&'a dyn SignInPrompt> {
        self.prompt.filter(|_| self.can_sign_in_when_sending)
    }
}

/// Hands out access tokens for sends; share one per process (it is `Send + Sync`).
#[derive(Debug)]
pub struct TokenBroker {
    db: DatabaseConnection,
    key: KeyRing,
    http: OAuthHttp,
    clock: Arc<dyn Clock>,
    config: BrokerConfig,
    owner: String,
    apps: Mutex<HashMap<Provider, AppRegistration>>,
    cache: Mutex<HashMap<(TokenKey, &'static str), AccessToken>>,
    flights: Mutex<HashMap<TokenKey, Arc<tokio::sync::Mutex<()>>>>,
}

fn to_utc(time: SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(time)
}

fn chrono_duration(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

impl TokenBroker {
    /// A broker over `db`, opening tokens with `key`.
    pub fn new(
        db: DatabaseConnection,
        key: KeyRing,
        http: OAuthHttp,
        clock: Arc<dyn Clock>,
        config: BrokerConfig,
    ) -> Self {
        let owner = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        Self {
            db,
            key,
            http,
            clock,
            config,
            owner,
            apps: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        to_utc(self.clock.now())
    }

    async fn app(&self, provider: Provider) -> Result<AppRegistration> {
        if let Some(app) = self.apps.lock().expect("apps lock").get(&provider) {
            return Ok(app.clone());
        }
        let app = Apps::new(&self.db, &self.key).require(provider).await?;
        self.apps
            .lock()
            .expect("apps lock")
            .insert(provider, app.clone());
        Ok(app)
    }

    /// Forgets cached app registrations and tokens (after `app set` or a sign-in in this
    /// process).
    pub fn forget_cached(&self) {
        self.apps.lock().expect("apps lock").clear();
        self.cache.lock().expect("cache lock").clear();
    }

    fn sign_in_required(target: &TokenTarget, reason: SignInReason) -> Error {
        Error::sign_in_required(target, reason)
    }

    fn fresh(&self, expires_at: DateTime<Utc>) -> bool {
        expires_at - chrono_duration(self.config.expiry_skew) > self.now()
    }

    fn cached(&self, key: &TokenKey, resource: Resource) -> Option<AccessToken> {
        self.cache
            .lock()
            .expect("cache lock")
            .get(&(key.clone(), resource.storage_key()))
            .cloned()
    }

    fn remember(
        &self,
        key: &TokenKey,
        resource: Resource,
        token: &StoredToken,
        access: &ResourceAccessToken,
    ) -> AccessToken {
        let access = AccessToken {
            secret: access.access_token.clone(),
            version: access.version as u64,
            expires_at: access.expires_at,
            address: token.address.clone(),
            resource,
        };
        self.cache
            .lock()
            .expect("cache lock")
            .insert((key.clone(), resource.storage_key()), access.clone());
        access
    }

    fn flight(&self, key: &TokenKey) -> Arc<tokio::sync::Mutex<()>> {
        self.flights
            .lock()
            .expect("flights lock")
            .entry(key.clone())
            .or_default()
            .clone()
    }

    /// A valid access token for `target`, refreshing it if it expired.
    pub async fn access_token(&self, target: &TokenTarget) -> Result<AccessToken> {
        self.obtain(target, None).await
    }

    /// A token newer than `rejected_version`, which the provider refused: another task's
    /// newer token if there is one, else a forced refresh.
    pub async fn refresh_rejected(
        &self,
        target: &TokenTarget,
        rejected_version: u64,
    ) -> Result<AccessToken> {
        self.obtain(target, Some(rejected_version)).await
    }

    /// Refreshes the target's resource now, whatever the expiry (an administrator's
    /// explicit refresh).
    pub async fn force_refresh(&self, target: &TokenTarget) -> Result<AccessToken> {
        let app = self.app(target.provider).await?;
        let key = match target.auth {
            Auth::AppOnly => AppOnlyPlan::new(&app, target)?.key,
            Auth::Delegated => target.token_key(app.tenant()),
        };
        let current = TokenStore::new(&self.db, &self.key).load(&key).await?;
        let version = current.map(|token| token.version as u64).unwrap_or(0);
        self.obtain(target, Some(version)).await
    }

    /// [`TokenBroker::access_token`], running a sign-in when one is needed and `policy`
    /// allows it; otherwise the error begins "Failed to obtain an access token".
    pub async fn access_token_or_sign_in(
        &self,
        target: &TokenTarget,
        policy: SignInPolicy<'_>,
    ) -> Result<AccessToken> {
        let reason = match self.access_token(target).await {
            Err(Error::SignInRequired { reason, .. }) => reason,
            other => return other,
        };
        let Some(prompt) = policy.allowed_prompt() else {
            return Err(Self::sign_in_required(target, reason));
        };
        self.run_sign_in(target, &reason, prompt).await?;
        self.access_token(target).await
    }

    /// Runs `prompt`'s sign-in for `target` (which then stores the tokens) and forgets
    /// cached tokens, so the next request reads what the sign-in stored. For callers that
    /// decide themselves when a sign-in may run; [`TokenBroker::access_token_or_sign_in`]
    /// is the usual way.
    pub async fn run_sign_in(
        &self,
        target: &TokenTarget,
        reason: &SignInReason,
        prompt: &dyn SignInPrompt,
    ) -> Result<()> {
        let request = SignInRequest {
            account: target.account,
            provider: target.provider,
            address: target.address.clone(),
            reason: reason.to_string(),
        };
        prompt
            .sign_in(&request)
            .await
            .map_err(|cause| Error::SignInFailed(cause.to_string()))?;
        self.cache.lock().expect("cache lock").clear();
        Ok(())
    }

    /// The core: cache, single flight, database lease, refresh.
    async fn obtain(&self, target: &TokenTarget, newer_than: Option<u64>) -> Result<AccessToken> {
        if target.address.trim().is_empty() {
            return Err(Self::sign_in_required(target, SignInReason::NoToken));
        }
        let app = self.app(target.provider).await?;
        crate::signin::check_resource(&app, target.resource)?;
        let resource = target.resource;
        let app_only = match target.auth {
            Auth::AppOnly => Some(AppOnlyPlan::new(&app, target)?),
            Auth::Delegated => None,
        };
        let key = match &app_only {
            Some(plan) => plan.key.clone(),
            None => target.token_key(app.tenant()),
        };
        let acceptable = |token: &AccessToken| {
            self.fresh(token.expires_at)
                && newer_than.is_none_or(|rejected| token.version > rejected)
        };
        if let Some(token) = self.cached(&key, resource).filter(|t| acceptable(t)) {
            return Ok(token);
        }
        // One flight per stored sign-in, whatever the resource: the lease is the row's,
        // and this process's tasks share one lease owner.
        let flight = self.flight(&key);
        let _in_flight = flight.lock().await;
        // Whoever held the flight before us may have refreshed already.
        if let Some(token) = self.cached(&key, resource).filter(|t| acceptable(t)) {
            return Ok(token);
        }
        let store = TokenStore::new(&self.db, &self.key);
        let waited_since = self.now();
        let mut poll = FIRST_POLL;
        loop {
            let stored = match (store.load(&key).await?, &app_only) {
                (Some(stored), _) => stored,
                // An app's first token: its row is made (by one process), then leased.
                (None, Some(plan)) => {
                    store
                        .ensure_app_row(&key, &plan.label, resource, self.now())
                        .await?;
                    store.load(&key).await?.ok_or_else(|| {
                        Error::CorruptRow("an app-only token row that was not stored".to_owned())
                    })?
                }
                (None, None) => return Err(Self::sign_in_required(target, SignInReason::NoToken)),
            };
            if let TokenStatus::Revoked { reason } = &stored.status {
                return Err(Self::sign_in_required(
                    target,
                    SignInReason::Revoked {
                        detail: reason.clone(),
                    },
                ));
            }
            if let Some(access) = stored.access_for(resource) {
                let newer = newer_than.is_none_or(|rejected| access.version as u64 > rejected);
                if self.fresh(access.expires_at) && newer {
                    return Ok(self.remember(&key, resource, &stored, &access));
                }
            }
            let now = self.now();
            if store
                .try_acquire_lease(
                    stored.id,
                    stored.version,
                    &self.owner,
                    now,
                    now + chrono_duration(self.config.effective_lease()),
                )
                .await?
            {
                return match &app_only {
                    Some(plan) => {
                        self.issue_app_token_holding_lease(&app, plan, target, &stored)
                            .await
                    }
                    None => {
                        self.refresh_holding_lease(&app, &key, target, &stored)
                            .await
                    }
                };
            }
            // Another process is refreshing: wait for its new version (or its lease to
            // lapse), then use its token instead of refreshing again.
            if self.config.waited_too_long(self.now() - waited_since) {
                return Err(Error::Transient {
                    message: "another process has been refreshing this token for too long"
                        .to_owned(),
                });
            }
            tokio::time::sleep(poll).await;
            poll = next_poll(poll);
        }
    }

    /// Requests the app's own token for `plan` (no refresh token: a new grant each time),
    /// retrying transient failures, and stores it on the leased row.
    async fn request_app_token(
        &self,
        app: &AppRegistration,
        plan: &AppOnlyPlan,
    ) -> Result<AppToken> {
        let now = self.now();
        match &plan.credential {
            AppCredential::ClientSecret(secret) => {
                app_only::client_credentials(
                    &self.http,
                    &app.endpoints().token,
                    &app.client_id,
                    &plan.scope,
                    ClientCredential::Secret(secret),
                    now,
                )
                .await
            }
            AppCredential::Certificate(certificate) => {
                app_only::client_credentials(
                    &self.http,
                    &app.endpoints().token,
                    &app.client_id,
                    &plan.scope,
                    ClientCredential::Certificate(certificate),
                    now,
                )
                .await
            }
            AppCredential::ServiceAccount(key) => {
                let AppResource::Gmail { mailbox } = &plan.resource else {
                    return Err(Error::AppNotConfigured {
                        provider: app.provider,
                    });
                };
                // The registration's token endpoint when it is overridden (a proxy, a
                // test), else the key file's `token_uri`; it is the assertion's `aud` too.
                let token_url = app
                    .overrides
                    .token_url
                    .clone()
                    .unwrap_or_else(|| key.token_uri().clone());
                app_only::service_account_token(&self.http, key, &token_url, mailbox, now).await
            }
        }
    }

    async fn issue_app_token_holding_lease(
        &self,
        app: &AppRegistration,
        plan: &AppOnlyPlan,
        target: &TokenTarget,
        stored: &StoredToken,
    ) -> Result<AccessToken> {
        let store = TokenStore::new(&self.db, &self.key);
        let resource = target.resource;
        let mut attempt = 0;
        let issued = loop {
            attempt += 1;
            tracing::debug!(provider = %plan.key.provider, mailbox = %target.address, resource = %resource, attempt, "requesting an app-only token");
            match self.request_app_token(app, plan).await {
                Ok(issued) => break issued,
                Err(Error::Transient { message }) if attempt < self.config.transient_attempts => {
                    let wait = self.config.wait_after(attempt);
                    tracing::warn!(provider = %plan.key.provider, attempt, error = %message, "app-only token request failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(error) => {
                    tracing::warn!(provider = %plan.key.provider, mailbox = %target.address, error = %error, "app-only token request failed");
                    store.release_lease(stored.id, &self.owner).await?;
                    return Err(error);
                }
            }
        };
        let now = self.now();
        let expires_at = now + chrono_duration(issued.expires_in);
        let new = RefreshedTokens {
            resource,
            access_token: &issued.access_token,
            refresh_token: None,
            expires_at,
            scopes: Some(plan.scope.clone()),
        };
        // Stored with the row's compare-and-swap, as a refresh is. A row re-sealed by a
        // key rotation meanwhile is written over (the token is still good); a row deleted
        // meanwhile (the app's registration changed) is not made again: the token is
        // handed out uncached.
        let mut base = stored.clone();
        for _ in 0..3 {
            let transaction = self.db.begin().await?;
            let in_transaction = TokenStore::new(&transaction, &self.key);
            let written = in_transaction.complete_refresh(&base, &new, now).await?;
            let current = in_transaction.load(&plan.key).await?;
            transaction.commit().await?;
            let Some(current) = current else {
                break;
            };
            if written {
                let access = current.access_for(resource).ok_or_else(|| {
                    Error::CorruptRow("an app-only token that was not stored".to_owned())
                })?;
                tracing::info!(provider = %plan.key.provider, mailbox = %target.address, resource = %resource, version = current.version, "app-only token issued");
                return Ok(self.remember(&plan.key, resource, &current, &access));
            }
            base = current;
        }
        Ok(AccessToken {
            secret: issued.access_token,
            version: 0,
            resource,
            expires_at,
            address: plan.label.clone(),
        })
    }

    async fn refresh_holding_lease(
        &self,
        app: &AppRegistration,
        key: &TokenKey,
        target: &TokenTarget,
        stored: &StoredToken,
    ) -> Result<AccessToken> {
        let store = TokenStore::new(&self.db, &self.key);
        let resource = target.resource;
        let Some(refresh_token) = stored.refresh_token.clone() else {
            store.release_lease(stored.id, &self.owner).await?;
            return Err(Self::sign_in_required(target, SignInReason::NoRefreshToken));
        };
        let scopes = resource.scopes(app);
        let mut attempt = 0;
        loop {
            attempt += 1;
            tracing::debug!(provider = %key.provider, address = %stored.address, resource = %resource, attempt, "refreshing access token");
            match oauth::refresh(&self.http, app, &scopes, &refresh_token).await {
                Ok(issued) => {
                    // A Graph token without the permission the route sends with would be
                    // refused at every send: the grant lacks it, a sign-in must add it.
                    if let Some(permission) = resource.missing_permission(app, &issued.scopes) {
                        store.release_lease(stored.id, &self.owner).await?;
                        return Err(Self::sign_in_required(
                            target,
                            SignInReason::PermissionNotGranted {
                                permission,
                                detail: format!(
                                    "the token was granted: {}",
                                    issued.scopes.join(" ")
                                ),
                            },
                        ));
                    }
                    let now = self.now();
                    let expires_at = now
                        + chrono_duration(issued.expires_in.unwrap_or(Duration::from_secs(3600)));
                    // Microsoft rotates the refresh token on every refresh; Google sends
                    // none, and the old one stays valid.
                    let refresh_token = issued.refresh_token.as_ref().unwrap_or(&refresh_token);
                    let new = RefreshedTokens {
                        resource,
                        access_token: &issued.access_token,
                        refresh_token: Some(refresh_token),
                        expires_at,
                        // Without `scope` the answer granted what was asked (RFC 6749
                        // §5.1); the row's own Outlook token then keeps its scopes, as
                        // before resources.
                        scopes: match (issued.scopes.is_empty(), resource) {
                            (false, _) => Some(issued.scopes.join(" ")),
                            (true, Resource::Mail) => None,
                            (true, _) => Some(scopes.join(" ")),
                        },
                    };
                    // The write asks the database's current key, then compares and swaps
                    // on the version: a rotation committed in between has bumped the
                    // version, so nothing is written under a key the database left. A row
                    // whose version moved but whose refresh token is still the one used
                    // here was only re-sealed by a rotation: store the new tokens over it
                    // (at most a few times). Otherwise another process refreshed: use its
                    // tokens.
                    let mut base = stored.clone();
                    for _ in 0..3 {
                        // The row (rotated refresh token, version) and the resource's
                        // access token land together or not at all.
                        let transaction = self.db.begin().await?;
                        let in_transaction = TokenStore::new(&transaction, &self.key);
                        let written = in_transaction.complete_refresh(&base, &new, now).await?;
                        let current = in_transaction
                            .load(key)
                            .await?
                            .ok_or_else(|| Self::sign_in_required(target, SignInReason::NoToken))?;
                        transaction.commit().await?;
                        let current_access = current.access_for(resource);
                        if written {
                            let access = current_access.ok_or_else(|| {
                                Error::CorruptRow(
                                    "a refreshed access token that was not stored".to_owned(),
                                )
                            })?;
                            tracing::info!(provider = %key.provider, address = %stored.address, resource = %resource, version = current.version, "access token refreshed");
                            return Ok(self.remember(key, resource, &current, &access));
                        }
                        let resealed_only = current.refresh_token.as_ref().map(Secret::expose)
                            == stored.refresh_token.as_ref().map(Secret::expose)
                            && current.status == TokenStatus::Valid;
                        if !resealed_only {
                            // Another process refreshed (its lease lapsed): use its token
                            // of this resource when it has a fresh one; else store ours
                            // over its row, keeping its refresh token.
                            if let Some(access) =
                                current_access.filter(|a| self.fresh(a.expires_at))
                            {
                                return Ok(self.remember(key, resource, &current, &access));
                            }
                            if current.status != TokenStatus::Valid {
                                return Err(Self::sign_in_required(target, SignInReason::NoToken));
                            }
                        }
                        base = current;
                    }
                    return Err(Error::Transient {
                        message: "the stored token kept changing while it was refreshed".to_owned(),
                    });
                }
                Err(OAuthFailure::Transient(message))
                    if attempt < self.config.transient_attempts =>
                {
                    let wait = self.config.wait_after(attempt);
                    tracing::warn!(provider = %key.provider, attempt, error = %message, "token refresh failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(failure) => {
                    let now = self.now();
                    let error = match failure {
                        OAuthFailure::Revoked(detail) => {
                            let detail =
                                match testing_app_hint(key.provider, stored.signed_in_at, now) {
                                    Some(hint) => format!("{detail}; {hint}"),
                                    None => detail,
                                };
                            store.mark_revoked(stored, &detail, now).await?;
                            self.cache
                                .lock()
                                .expect("cache lock")
                                .retain(|(cached, _), _| cached != key);
                            return Err(Self::sign_in_required(
                                target,
                                SignInReason::Revoked { detail },
                            ));
                        }
                        OAuthFailure::InteractionRequired(detail) => Self::sign_in_required(
                            target,
                            SignInReason::MultiFactorRequired { detail },
                        ),
                        // A refresh for Graph scopes the sign-in never consented to
                        // (AADSTS65001): the person signs in again to grant them.
                        OAuthFailure::ConsentRequired(detail) => {
                            match resource.required_permissions().first() {
                                Some(permission) => Self::sign_in_required(
                                    target,
                                    SignInReason::PermissionNotGranted {
                                        permission: (*permission).to_owned(),
                                        detail,
                                    },
                                ),
                                None => Self::sign_in_required(
                                    target,
                                    SignInReason::ConsentMissing { detail },
                                ),
                            }
                        }
                        OAuthFailure::Transient(message) => Error::Transient { message },
                        OAuthFailure::Provider { error, description } => {
                            Error::Provider { error, description }
                        }
                        OAuthFailure::Malformed(detail) => Error::MalformedResponse(detail),
                    };
                    tracing::warn!(provider = %key.provider, address = %stored.address, error = %error, "token refresh failed");
                    store.release_lease(stored.id, &self.owner).await?;
                    return Err(error);
                }
            }
        }
    }
}

/// Google expires the refresh tokens of an app whose publishing status is "Testing" (with
/// an external user type) seven days after the sign-in (Google's "Using OAuth 2.0 to
/// Access Google APIs", refresh token expiration). A Google refresh refused at least that
/// long after the sign-in names this likely cause and its cure; sooner, it cannot be it.
pub(crate) fn testing_app_hint(
    provider: Provider,
    signed_in_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<String> {
    let age = now.signed_duration_since(signed_in_at);
    if provider != Provider::Google || age < chrono::Duration::days(7) - chrono::Duration::hours(1)
    {
        return None;
    }
    Some(format!(
        "the sign-in was {} days ago: if the Google app's publishing status is Testing, Google ends its sign-ins after 7 days; in Google Auth Platform > Audience, make the app Internal (Workspace) or publish it, then sign in again",
        age.num_days().max(7)
    ))
}

#[cfg(test)]
mod lease_tests {
    use super::*;

    #[test]
    fn the_testing_app_hint_is_named_from_an_hour_before_the_seventh_day() {
        let signed_in = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let hint = |provider, age| testing_app_hint(provider, signed_in, signed_in + age);
        let threshold = chrono::Duration::days(7) - chrono::Duration::hours(1);
        assert_eq!(
            hint(Provider::Google, threshold - chrono::Duration::seconds(1)),
            None
        );
        let first = hint(Provider::Google, threshold).unwrap();
        assert!(first.starts_with("the sign-in was 7 days ago:"), "{first}");
        assert!(hint(Provider::Google, chrono::Duration::days(7)).is_some());
        let late = hint(Provider::Google, chrono::Duration::days(30)).unwrap();
        assert!(late.starts_with("the sign-in was 30 days ago:"), "{late}");
        // Microsoft has no such status.
        assert_eq!(hint(Provider::Microsoft, chrono::Duration::days(30)), None);
    }

    #[test]
    fn the_lease_outlives_the_longest_refresh() {
        let default = BrokerConfig::default();
        // Three attempts of 30 s, waits of 0.5 s and 1 s.
        assert_eq!(default.longest_refresh(), Duration::from_millis(91_500));
        assert!(default.effective_lease() > default.longest_refresh());
        assert!(default.effective_lease() >= default.lease);
        assert!(default.effective_wait_for_other_refresh() > default.effective_lease());
        let patient = BrokerConfig {
            transient_attempts: 5,
            transient_backoff: Duration::from_secs(2),
            ..BrokerConfig::default()
        };
        // 5 × 30 s + 2 + 4 + 8 + 16 s.
        assert_eq!(patient.longest_refresh(), Duration::from_secs(180));
        assert_eq!(patient.effective_lease(), Duration::from_secs(190));
        let generous = BrokerConfig {
            lease: Duration::from_secs(600),
            ..BrokerConfig::default()
        };
        assert_eq!(generous.effective_lease(), Duration::from_secs(600));
    }

    #[test]
    fn a_process_waits_for_anothers_refresh_as_long_as_its_patience_and_no_longer() {
        let config = BrokerConfig::default();
        let patience = chrono_duration(config.effective_wait_for_other_refresh());
        assert!(!config.waited_too_long(chrono::Duration::zero()));
        assert!(!config.waited_too_long(patience));
        assert!(config.waited_too_long(patience + chrono::Duration::milliseconds(1)));
        // It looks at the row after 20 ms, then twice as long each time, up to 500 ms.
        let polls: Vec<Duration> =
            std::iter::successors(Some(FIRST_POLL), |&poll| Some(next_poll(poll)))
                .take(7)
                .collect();
        assert_eq!(
            polls,
            [20, 40, 80, 160, 320, 500, 500].map(Duration::from_millis)
        );
    }

    #[test]
    fn the_wait_doubles_after_each_transient_failure() {
        let config = BrokerConfig::default();
        let waits: Vec<Duration> = (1..=4).map(|attempt| config.wait_after(attempt)).collect();
        assert_eq!(
            waits,
            [500, 1_000, 2_000, 4_000].map(Duration::from_millis),
            "from transient_backoff (500 ms)"
        );
    }
}
