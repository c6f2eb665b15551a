//! [`Mailroom::doctor`]: checks that say whether mailroom can send, each with what it
//! found and, for a problem, the [`Remedy`]. Every front end shows the same checks (the
//! CLI's `doctor` command, a console's health page). It never sends mail, authenticates
//! to a mail server only when asked (`DoctorOptions::authenticate`, then QUITs), and no
//! check's detail holds a secret.

use chrono::{DateTime, Utc};
use mailroom_accounts::{Account, Accounts};
use mailroom_gmail::{GmailConfig, GmailTransport};
use mailroom_graph::{GraphConfig, GraphTransport};
use mailroom_model::{AccountRef, Auth, Provider, Remedy, TransportError, TransportKind};
use mailroom_tokens::TokenTarget;
use mailroom_tokens::registration::Apps;
use mailroom_tokens::storage::{TokenKey, TokenStatus, TokenStore};
use serde::Serialize;

use crate::facade::Mailroom;

/// What [`Mailroom::doctor`] checks.
#[derive(Debug, Clone, Default)]
pub struct DoctorOptions {
    /// Check only this account (the company account or one user account); `None` checks
    /// every account.
    pub account: Option<AccountRef>,
    /// Also refresh each OAuth account's token now, to prove the refresh works.
    pub refresh: bool,
    /// Also authenticate to each SMTP-route account's server with its token or password,
    /// then QUIT without sending: the only way to see that the server refuses them (e.g.
    /// Exchange's `535 5.7.139` when SMTP AUTH is off for the mailbox). Never prompts.
    pub authenticate: bool,
    /// Where the extra root certificate comes from, as the front end names it (e.g. a
    /// file's path), for the check's detail.
    pub root_certificate_source: Option<String>,
    /// The front end could not read the extra root certificate: why.
    pub root_certificate_error: Option<String>,
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// As it should be.
    Ok,
    /// Works now, but will stop unless an administrator acts (an app certificate that
    /// expires within 30 days); the check's remedy says what to do.
    Warning,
    /// Something stops mail from being sent; the check's remedy says what to do.
    Problem,
    /// Not checked (nothing to check, or an earlier problem prevents it).
    Skipped,
}

impl std::fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Warning => "warning",
            CheckStatus::Problem => "problem",
            CheckStatus::Skipped => "skipped",
        })
    }
}

/// One check: its name, how it came out, what it found, and what fixes a problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DoctorCheck {
    /// What was checked, e.g. `database`, `account 4 server`.
    pub name: String,
    /// How it came out.
    pub status: CheckStatus,
    /// What it found, in a sentence (never a secret).
    pub detail: String,
    /// What fixes a problem, when there is an action to name.
    pub remedy: Option<Remedy>,
}

impl DoctorCheck {
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: CheckStatus::Ok,
            detail: detail.into(),
            remedy: None,
        }
    }

    fn skipped(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: CheckStatus::Skipped,
            detail: detail.into(),
            remedy: None,
        }
    }

    /// A warning, with what to do before it becomes a problem.
    pub fn warning(
        name: impl Into<String>,
        detail: impl Into<String>,
        remedy: Option<Remedy>,
    ) -> Self {
        Self {
            name: name.into(),
            status: CheckStatus::Warning,
            detail: detail.into(),
            remedy,
        }
    }

    /// A problem, with what fixes it.
    pub fn problem(
        name: impl Into<String>,
        detail: impl Into<String>,
        remedy: Option<Remedy>,
    ) -> Self {
        Self {
            name: name.into(),
            status: CheckStatus::Problem,
            detail: detail.into(),
            remedy,
        }
    }
}

/// Every check, in the order they ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DoctorReport {
    /// The checks.
    pub checks: Vec<DoctorCheck>,
}

impl DoctorReport {
    /// True when no check found a problem.
    pub fn all_ok(&self) -> bool {
        self.checks
            .iter()
            .all(|check| check.status != CheckStatus::Problem)
    }

    /// The report of a facade that could not be opened: the database or the key failed
    /// before any other check could run.
    pub fn open_failed(error: &crate::Error) -> Self {
        let name = match error {
            error if error.key_problem().is_some() => "key",
            _ => "database",
        };
        Self {
            checks: vec![DoctorCheck::problem(
                name,
                error_text(error),
                Some(error.remedy().unwrap_or(Remedy::CheckDatabase)),
            )],
        }
    }
}

/// An error's message and its causes, each said once.
fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

fn transport_text(error: &TransportError) -> String {
    let mut text = error_text(error);
    if let Some(remediation) = error.remediation() {
        if !text.contains(remediation) {
            text.push_str("; ");
            text.push_str(remediation);
        }
    }
    text
}

fn when(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let minutes = (at - now).num_minutes();
    let stamp = at.format("%Y-%m-%d %H:%M UTC");
    // A time that has come is past: "expired … (0 min ago)", not "(in 0 min)".
    if at > now {
        format!("{stamp} (in {minutes} min)")
    } else {
        format!("{stamp} ({} min ago)", -minutes)
    }
}

impl Mailroom {
    /// Runs the checks: the database and its schema, the key, the extra root certificate,
    /// the app registrations of the providers in use, and for each account (or the one
    /// named) its settings, its token (present, expiry, and with `refresh` a refresh) and
    /// its server (SMTP: connect, TLS, EHLO and the AUTH mechanisms; Gmail: a TLS request
    /// to the API host). Sends no mail and authenticates to no mail server.
    pub async fn doctor(&self, options: DoctorOptions) -> DoctorReport {
        let mut checks = Vec::new();
        let db = self.database();
        let key = &self.options().key;

        match mailroom_migrations::schema_version(db).await {
            Ok(Some(version)) => checks.push(DoctorCheck::ok(
                "database",
                format!("reachable, schema version {version}"),
            )),
            Ok(None) => checks.push(DoctorCheck::problem(
                "database",
                "reachable, but no migration has been applied",
                Some(Remedy::CheckDatabase),
            )),
            Err(error) => {
                checks.push(DoctorCheck::problem(
                    "database",
                    format!("not reachable: {}", error_text(&error)),
                    Some(Remedy::CheckDatabase),
                ));
                return DoctorReport { checks };
            }
        }

        let accounts = Accounts::new(db, key);
        match mailroom_crypto::store::verify(db, key).await {
            Ok(state) => checks.push(match state.prepared {
                Some(next) if key.get(&next).is_none() => DoctorCheck::problem(
                    "key",
                    format!(
                        "the database's secrets open with key {}; a rotation to key {next} is prepared and this host lacks that key, so it will stop working when the rotation commits",
                        state.current
                    ),
                    Some(Remedy::RestoreKey { key_id: next }),
                ),
                Some(next) => DoctorCheck::ok(
                    "key",
                    format!(
                        "the database's secrets open with key {}; a rotation to key {next} is prepared and this host has it",
                        state.current
                    ),
                ),
                None => DoctorCheck::ok(
                    "key",
                    format!("the database's secrets open with key {}", state.current),
                ),
            }),
            Err(error) => {
                let error = crate::Error::Key(error);
                checks.push(DoctorCheck::problem(
                    "key",
                    error_text(&error),
                    error.remedy().or(Some(Remedy::CheckDatabase)),
                ))
            }
        }

        checks.push(self.root_certificate_check(&options));

        let selected = match self.selected_accounts(&accounts, options.account).await {
            Ok(selected) => selected,
            Err(check) => {
                checks.push(check);
                return DoctorReport { checks };
            }
        };

        let apps = Apps::new(db, key);
        for provider in [Provider::Microsoft, Provider::Google] {
            if !selected
                .iter()
                .any(|account| account.server().provider == provider)
            {
                continue;
            }
            let name = format!("app {provider}");
            checks.push(match apps.get(provider).await {
                Ok(Some(app)) => app_check(name, &app, self.now()),
                Ok(None) => DoctorCheck::problem(
                    name,
                    format!(
                        "no {provider} app registration; its accounts cannot sign in or refresh"
                    ),
                    Some(Remedy::RegisterApp { provider }),
                ),
                Err(error) => DoctorCheck::problem(name, error_text(&error), error.remedy()),
            });
        }

        for account in &selected {
            self.account_checks(account, &options, &mut checks).await;
        }
        DoctorReport { checks }
    }

    fn root_certificate_check(&self, options: &DoctorOptions) -> DoctorCheck {
        let name = "root certificate";
        let source = options
            .root_certificate_source
            .as_deref()
            .unwrap_or("the extra root certificate");
        if let Some(error) = &options.root_certificate_error {
            return DoctorCheck::problem(
                name,
                format!("cannot read {source}: {error}"),
                Some(Remedy::CheckRootCertificate),
            );
        }
        match &self.options().extra_root_pem {
            None => DoctorCheck::skipped(name, "no extra root certificate configured"),
            Some(pem) => match mailroom_smtp::count_root_certificates(pem) {
                Ok(count) => DoctorCheck::ok(
                    name,
                    format!("{source}: {count} certificate(s), trusted besides the Mozilla roots"),
                ),
                Err(error) => DoctorCheck::problem(
                    name,
                    format!("{source}: {error}"),
                    Some(Remedy::CheckRootCertificate),
                ),
            },
        }
    }

    async fn selected_accounts(
        &self,
        accounts: &Accounts<'_, sea_orm::DatabaseConnection>,
        named: Option<AccountRef>,
    ) -> Result<Vec<Account>, DoctorCheck> {
        if let Some(named) = named {
            return match accounts.account(named).await {
                Ok(account) => Ok(vec![account]),
                Err(error) => Err(DoctorCheck::problem(
                    named.to_string(),
                    error_text(&error),
                    error.remedy(),
                )),
            };
        }
        let failed = |error: mailroom_accounts::Error| {
            DoctorCheck::problem("accounts", error_text(&error), error.remedy())
        };
        let mut selected = Vec::new();
        if let Some(company) = accounts.company().await.map_err(failed)? {
            selected.push(Account::Company(company));
        }
        selected.extend(
            accounts
                .user_accounts()
                .await
                .map_err(failed)?
                .into_iter()
                .map(Account::User),
        );
        if selected.is_empty() {
            return Err(DoctorCheck::problem(
                "accounts",
                "no account is configured",
                Some(Remedy::ConfigureCompany),
            ));
        }
        Ok(selected)
    }

    async fn account_checks(
        &self,
        account: &Account,
        options: &DoctorOptions,
        checks: &mut Vec<DoctorCheck>,
    ) {
        let account_ref = account.account_ref();
        let server = account.server();
        let edit = Some(Remedy::EditAccount {
            account: Some(account_ref),
        });

        // Settings that cannot work.
        let settings_name = format!("{account_ref} settings");
        let settings_check = match server.validate() {
            Err(error) => DoctorCheck::problem(settings_name, error.to_string(), edit.clone()),
            Ok(())
                if !server.provider.uses_oauth()
                    && !server.smtp_user.is_empty()
                    && !server.smtp_user.contains('@') =>
            {
                DoctorCheck::problem(
                    settings_name,
                    format!(
                        "the SMTP user `{}` is not an email address, so messages have no default From: every send must give its From address",
                        server.smtp_user
                    ),
                    edit.clone(),
                )
            }
            Ok(()) => DoctorCheck::ok(
                settings_name,
                format!(
                    "provider {}, {}:{}, user {}",
                    server.provider,
                    server.host,
                    server.port,
                    if server.smtp_user.is_empty() {
                        "(learned at the first sign-in)"
                    } else {
                        server.smtp_user.as_str()
                    }
                ),
            ),
        };
        checks.push(settings_check);

        if server.provider.uses_oauth() {
            checks.push(self.token_check(account, options.refresh).await);
        }

        match crate::transport_kind(server) {
            TransportKind::GmailApi => checks.push(self.gmail_check(account_ref).await),
            TransportKind::GraphApi => checks.push(self.graph_check(account_ref).await),
            _ => {
                let reachable = self.smtp_checks(account, checks).await;
                if options.authenticate && reachable {
                    checks.push(self.authentication_check(account).await);
                }
            }
        }
    }

    /// Authenticates with the account's credentials and QUITs, sending nothing.
    async fn authentication_check(&self, account: &Account) -> DoctorCheck {
        let account_ref = account.account_ref();
        let server = account.server();
        let name = format!("{account_ref} sign-in to the server");
        let target = TokenTarget::of_account(account_ref, server);
        let credentials = match self.credentials(account, &target, None).await {
            Ok(credentials) => credentials,
            Err(error) => {
                return DoctorCheck::skipped(
                    name,
                    format!("no credentials to try: {}", error_text(&error)),
                );
            }
        };
        let transport = match self.smtp_transport(account) {
            Ok(transport) => transport,
            Err(error) => {
                return DoctorCheck::problem(
                    name,
                    error_text(&error),
                    Some(Remedy::EditAccount {
                        account: Some(account_ref),
                    }),
                );
            }
        };
        match transport.verify(&credentials).await {
            Ok(()) => DoctorCheck::ok(
                name,
                format!(
                    "{}:{} accepted the {} of {} (then QUIT; nothing sent)",
                    server.host,
                    server.port,
                    if server.provider.uses_oauth() {
                        "access token"
                    } else {
                        "password"
                    },
                    credentials.user
                ),
            ),
            Err(error) => DoctorCheck::problem(
                name,
                transport_text(&error),
                Some(error.remedy().cloned().map_or(
                    Remedy::EditAccount {
                        account: Some(account_ref),
                    },
                    |remedy| remedy.for_account(account_ref),
                )),
            ),
        }
    }

    async fn graph_check(&self, account_ref: AccountRef) -> DoctorCheck {
        let name = format!("{account_ref} server");
        let key = &self.options().key;
        let app = match Apps::new(self.database(), key)
            .get(Provider::Microsoft)
            .await
        {
            Ok(Some(app)) => app,
            Ok(None) => {
                return DoctorCheck::skipped(
                    name,
                    "no Microsoft app registration, so no Graph URL",
                );
            }
            Err(error) => return DoctorCheck::problem(name, error_text(&error), error.remedy()),
        };
        let base_url = app.graph_api_url();
        let review = Remedy::ReviewApp {
            provider: Some(Provider::Microsoft),
        };
        let config = GraphConfig {
            allow_plaintext_loopback: base_url.scheme() == "http",
            extra_root_pem: self.options().extra_root_pem.clone(),
            ..GraphConfig::with_base_url(base_url.clone())
        };
        let transport = match GraphTransport::new(config) {
            Ok(transport) => transport,
            Err(error) => return DoctorCheck::problem(name, error_text(&error), Some(review)),
        };
        match transport.probe().await {
            Ok(status) => DoctorCheck::ok(
                name,
                format!(
                    "route graph: Microsoft Graph at {base_url} answers over {} (HTTP {status} without a token)",
                    base_url.scheme()
                ),
            ),
            Err(error) => DoctorCheck::problem(
                name,
                format!("Microsoft Graph at {base_url}: {}", transport_text(&error)),
                Some(
                    error
                        .remedy()
                        .cloned()
                        .unwrap_or(review)
                        .for_account(account_ref),
                ),
            ),
        }
    }

    async fn token_check(&self, account: &Account, refresh: bool) -> DoctorCheck {
        let account_ref = account.account_ref();
        let server = account.server();
        let name = format!("{account_ref} token");
        let sign_in = Some(Remedy::SignIn {
            account: Some(account_ref),
            browser_only: false,
        });
        // No person signs in for an app-only account: its check is the app's credential
        // (asking for a sign-in would send the administrator to one that is refused).
        if server.auth == Auth::AppOnly {
            return self
                .app_token_check(account_ref, server, name, refresh)
                .await;
        }
        if server.smtp_user.trim().is_empty() {
            return DoctorCheck::problem(name, "never signed in", sign_in);
        }
        let key = &self.options().key;
        let app = match Apps::new(self.database(), key).get(server.provider).await {
            Ok(Some(app)) => app,
            Ok(None) => {
                return DoctorCheck::skipped(name, "no app registration, so no token to check");
            }
            Err(error) => return DoctorCheck::problem(name, error_text(&error), error.remedy()),
        };
        let token_key = TokenKey::of_account(
            server.provider,
            app.tenant(),
            &server.smtp_user,
            server.token_identity.as_deref(),
        );
        let stored = match TokenStore::new(self.database(), key).load(&token_key).await {
            Ok(Some(stored)) => stored,
            Ok(None) => {
                return DoctorCheck::problem(
                    name,
                    format!("no token stored for {}", server.smtp_user),
                    sign_in,
                );
            }
            Err(error) => return DoctorCheck::problem(name, error_text(&error), error.remedy()),
        };
        if let TokenStatus::Revoked { reason } = &stored.status {
            return DoctorCheck::problem(
                name,
                format!("the provider refused the refresh token ({reason})"),
                sign_in,
            );
        }
        let now = self.now();
        let has_refresh = stored.refresh_token.is_some();
        if refresh {
            let target = TokenTarget::of_account(account_ref, server);
            return match self.broker().force_refresh(&target).await {
                Ok(token) => DoctorCheck::ok(
                    name,
                    format!(
                        "refreshed for {}; the new access token expires {}",
                        server.smtp_user,
                        when(token.expires_at, now)
                    ),
                ),
                Err(error) => DoctorCheck::problem(
                    name,
                    format!("the refresh failed: {}", error_text(&error)),
                    error.remedy().or(sign_in),
                ),
            };
        }
        // Who the stored sign-in is: the mailbox's own person, or a delegate of a shared
        // mailbox (the person's address then differs from the mailbox's).
        let who = if stored
            .address
            .trim()
            .eq_ignore_ascii_case(server.smtp_user.trim())
        {
            format!("stored for {}", server.smtp_user)
        } else if server.shared_mailbox {
            format!(
                "signed in by {} for the shared mailbox {}",
                stored.address, server.smtp_user
            )
        } else {
            format!(
                "signed in as {} for {} (the same person who signed in for it, by their stable identity; the provider's username changed)",
                stored.address, server.smtp_user
            )
        };
        if stored.expires_at > now {
            DoctorCheck::ok(
                name,
                format!(
                    "{who}, the access token expires {}{}",
                    when(stored.expires_at, now),
                    if has_refresh {
                        "; a refresh token is stored"
                    } else {
                        "; no refresh token: sign in again after it expires"
                    }
                ),
            )
        } else if has_refresh {
            DoctorCheck::ok(
                name,
                format!(
                    "{who}, the access token expired {}; a refresh token renews it at the next send (check with a refresh)",
                    when(stored.expires_at, now)
                ),
            )
        } else {
            DoctorCheck::problem(
                name,
                format!(
                    "the access token for {} expired {} and no refresh token is stored",
                    server.smtp_user,
                    when(stored.expires_at, now)
                ),
                sign_in,
            )
        }
    }

    /// An app-only account's token: no sign-in to look at; with `refresh`, a new token is
    /// requested with the app's own credential (the check that it is accepted).
    async fn app_token_check(
        &self,
        account_ref: AccountRef,
        server: &mailroom_model::ServerSettings,
        name: String,
        refresh: bool,
    ) -> DoctorCheck {
        let target = TokenTarget::of_account(account_ref, server);
        let key = &self.options().key;
        match Apps::new(self.database(), key).get(server.provider).await {
            Ok(Some(app)) if app.app_credential.is_some() => {}
            Ok(_) => {
                return DoctorCheck::problem(
                    name,
                    format!(
                        "app-only: the account sends with the {} app's own credentials, but the app has none",
                        server.provider
                    ),
                    Some(Remedy::SetAppCredential {
                        provider: server.provider,
                    }),
                );
            }
            Err(error) => return DoctorCheck::problem(name, error_text(&error), error.remedy()),
        }
        if !refresh {
            return DoctorCheck::ok(
                name,
                format!(
                    "app-only: the app's own credential gets tokens for {} when a message needs one (no sign-in; check it with a refresh)",
                    server.smtp_user
                ),
            );
        }
        match self.broker().force_refresh(&target).await {
            Ok(token) => DoctorCheck::ok(
                name,
                format!(
                    "app-only: the provider issued a token for {} with the app's own credential; it expires {}",
                    server.smtp_user,
                    when(token.expires_at, self.now())
                ),
            ),
            Err(error) => DoctorCheck::problem(
                name,
                format!("the app-only token request failed: {}", error_text(&error)),
                error.remedy(),
            ),
        }
    }

    async fn gmail_check(&self, account_ref: AccountRef) -> DoctorCheck {
        let name = format!("{account_ref} server");
        let key = &self.options().key;
        let app = match Apps::new(self.database(), key).get(Provider::Google).await {
            Ok(Some(app)) => app,
            Ok(None) => {
                return DoctorCheck::skipped(
                    name,
                    "no Google app registration, so no Gmail API URL",
                );
            }
            Err(error) => return DoctorCheck::problem(name, error_text(&error), error.remedy()),
        };
        let base_url = app.gmail_api_url();
        let config = GmailConfig {
            allow_plaintext_loopback: base_url.scheme() == "http",
            extra_root_pem: self.options().extra_root_pem.clone(),
            ..GmailConfig::with_base_url(base_url.clone())
        };
        let transport = match GmailTransport::new(config) {
            Ok(transport) => transport,
            Err(error) => {
                return DoctorCheck::problem(
                    name,
                    error_text(&error),
                    Some(Remedy::SetGmailApiUrl),
                );
            }
        };
        match transport.probe().await {
            Ok(status) => DoctorCheck::ok(
                name,
                format!(
                    "the Gmail API at {base_url} answers over {} (HTTP {status} without a token)",
                    base_url.scheme()
                ),
            ),
            Err(error) => DoctorCheck::problem(
                name,
                format!("the Gmail API at {base_url}: {}", transport_text(&error)),
                Some(
                    error
                        .remedy()
                        .cloned()
                        .unwrap_or(Remedy::SetGmailApiUrl)
                        .for_account(account_ref),
                ),
            ),
        }
    }

    /// The server checks of an SMTP account; true when the server was reached.
    async fn smtp_checks(&self, account: &Account, checks: &mut Vec<DoctorCheck>) -> bool {
        let account_ref = account.account_ref();
        let server = account.server();
        let name = format!("{account_ref} server");
        let edit = Some(Remedy::EditAccount {
            account: Some(account_ref),
        });
        let probe = mailroom_smtp::probe(server, self.options().extra_root_pem.as_deref()).await;
        let found = match probe {
            Ok(found) => found,
            Err(mailroom_smtp::ProbeError::Connection(error)) => {
                checks.push(DoctorCheck::problem(
                    name,
                    format!(
                        "{}:{}: {}",
                        server.host,
                        server.port,
                        transport_text(&error)
                    ),
                    Some(error.remedy().cloned().map_or_else(
                        || edit.clone().expect("set"),
                        |remedy| remedy.for_account(account_ref),
                    )),
                ));
                return false;
            }
            Err(error) => {
                checks.push(DoctorCheck::problem(name, error_text(&error), edit));
                return false;
            }
        };
        let mechanisms = if found.auth_mechanisms.is_empty() {
            "no AUTH mechanism".to_owned()
        } else {
            format!("AUTH {}", found.auth_mechanisms.join(" "))
        };
        let address = format!("{}:{}", server.host, server.port);
        let peer = found.peer.to_string();
        let connected = if peer == address {
            address
        } else {
            format!("{address} ({peer})")
        };
        checks.push(DoctorCheck::ok(
            name,
            format!(
                "{connected}: {}, EHLO {}, {mechanisms}",
                found.tls, found.server_name
            ),
        ));
        let auth_name = format!("{account_ref} authentication");
        let check = if server.provider.uses_oauth() {
            if found.offers_oauth() {
                DoctorCheck::ok(auth_name, "the server offers a mechanism for access tokens")
            } else {
                DoctorCheck::problem(
                    auth_name,
                    format!(
                        "an OAuth account, but the server offers neither XOAUTH2 nor OAUTHBEARER ({mechanisms}); an access token is never sent with a weaker mechanism"
                    ),
                    edit,
                )
            }
        } else if server.password.is_none() {
            DoctorCheck::skipped(
                auth_name,
                "no password set: the account sends without authenticating",
            )
        } else if found.offers_password() {
            DoctorCheck::ok(
                auth_name,
                "the server offers PLAIN or LOGIN for the password",
            )
        } else {
            DoctorCheck::problem(
                auth_name,
                format!(
                    "a password account, but the server offers neither PLAIN nor LOGIN ({mechanisms})"
                ),
                edit,
            )
        };
        checks.push(check);
        true
    }
}

/// What the doctor says of a stored app registration: its client id, tenant and the
/// redirect URI it must hold, and what mailroom ignores or assumes.
fn app_registration_detail(app: &mailroom_tokens::registration::AppRegistration) -> String {
    let mut detail = format!("registered (client id {}", app.client_id);
    if provider_is_microsoft(app) {
        detail.push_str(&format!(", tenant {}", app.tenant()));
    }
    detail.push_str(&format!(
        ", redirect URI {} with any port)",
        app.redirect_uri_to_register()
    ));
    if provider_is_microsoft(app) && app.tenant.is_none() {
        detail.push_str(&format!(
            "; no tenant is set, so {} is used, which works only for an app registered as multi-tenant",
            app.tenant()
        ));
    }
    if app.client_secret.is_some() && app.client_secret_to_send().is_none() {
        detail.push_str(
            "; the stored client secret is ignored: a Microsoft delegated sign-in is a public client (Entra refuses its secret, AADSTS700025)",
        );
    }
    detail
}

/// How long before an app certificate expires the doctor warns.
pub const CERTIFICATE_WARNING: chrono::Duration = chrono::Duration::days(30);

/// The app registration's check: its detail, and its app-only credential's expiry — a
/// problem once the certificate has expired (Entra refuses its assertions, AADSTS700027),
/// a warning within [`CERTIFICATE_WARNING`] of it.
fn app_check(
    name: String,
    app: &mailroom_tokens::registration::AppRegistration,
    now: chrono::DateTime<chrono::Utc>,
) -> DoctorCheck {
    let mut detail = app_registration_detail(app);
    let Some(credential) = &app.app_credential else {
        return DoctorCheck::ok(name, detail);
    };
    detail.push_str(&format!("; app-only: {}", credential.describe()));
    let renew = Some(Remedy::SetAppCredential {
        provider: app.provider,
    });
    match credential.expires_at() {
        Some(expires) if expires <= now => DoctorCheck::problem(
            name,
            format!(
                "{detail}: the certificate has expired, so app-only accounts cannot get a token"
            ),
            renew,
        ),
        Some(expires) if expires - now <= CERTIFICATE_WARNING => DoctorCheck::warning(
            name,
            format!(
                "{detail}: the certificate expires in {} day(s); upload a new one to the app registration and set it before then",
                (expires - now).num_days()
            ),
            renew,
        ),
        _ => DoctorCheck::ok(name, detail),
    }
}

fn provider_is_microsoft(app: &mailroom_tokens::registration::AppRegistration) -> bool {
    app.provider == Provider::Microsoft
}

#[cfg(test)]
mod registration_tests {
    use mailroom_model::Secret;
    use mailroom_tokens::registration::{AppRegistration, EndpointOverrides};

    use super::*;

    #[test]
    fn the_doctor_names_the_redirect_uri_and_what_is_ignored() {
        let mut app = AppRegistration {
            provider: Provider::Microsoft,
            client_id: "client".to_owned(),
            client_secret: Some(Secret::new("from-an-old-version")),
            tenant: None,
            cloud: Default::default(),
            overrides: EndpointOverrides::default(),
            app_credential: None,
        };
        let detail = app_registration_detail(&app);
        assert!(
            detail.starts_with(
                "registered (client id client, tenant organizations, redirect URI http://localhost with any port)"
            ),
            "{detail}"
        );
        assert!(
            detail.contains("works only for an app registered as multi-tenant"),
            "{detail}"
        );
        assert!(
            detail.contains("stored client secret is ignored"),
            "{detail}"
        );
        assert!(!detail.contains("from-an-old-version"), "{detail}");
        app.provider = Provider::Google;
        let detail = app_registration_detail(&app);
        assert_eq!(
            detail,
            "registered (client id client, redirect URI http://127.0.0.1 with any port)"
        );
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use mailroom_model::TransportErrorKind;

    use super::*;

    #[test]
    fn each_status_reads_as_its_word() {
        let words: Vec<String> = [
            CheckStatus::Ok,
            CheckStatus::Warning,
            CheckStatus::Problem,
            CheckStatus::Skipped,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(words, ["ok", "warning", "problem", "skipped"]);
    }

    #[test]
    fn a_time_says_how_long_until_or_since() {
        let now = Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap();
        let minutes = chrono::Duration::minutes;
        assert_eq!(
            when(now + minutes(90), now),
            "2026-12-03 11:30 UTC (in 90 min)"
        );
        assert_eq!(when(now, now), "2026-12-03 10:00 UTC (0 min ago)");
        let second = chrono::Duration::seconds(1);
        assert_eq!(when(now + second, now), "2026-12-03 10:00 UTC (in 0 min)");
        assert_eq!(when(now - second, now), "2026-12-03 09:59 UTC (0 min ago)");
        assert_eq!(
            when(now - minutes(5), now),
            "2026-12-03 09:55 UTC (5 min ago)"
        );
    }

    #[test]
    fn a_transport_failure_says_its_remediation_once() {
        let error = TransportError::new(TransportErrorKind::AccountConfiguration, "535 5.7.139")
            .with_remediation("enable SMTP AUTH for the mailbox");
        assert_eq!(
            transport_text(&error),
            "535 5.7.139; enable SMTP AUTH for the mailbox"
        );
    }

    #[test]
    fn a_facade_that_cannot_open_names_the_key_or_the_database() {
        let missing = crate::Error::Key(mailroom_crypto::Error::MissingKey {
            id: "k2".to_owned(),
            have: vec!["k1".to_owned()],
        });
        let report = DoctorReport::open_failed(&missing);
        assert_eq!(
            report.checks,
            [DoctorCheck::problem(
                "key",
                missing.to_string(),
                Some(Remedy::RestoreKey {
                    key_id: "k2".to_owned()
                }),
            )]
        );
        assert!(!report.all_ok());

        let gone = crate::Error::from(sea_orm::DbErr::Custom("gone".to_owned()));
        let report = DoctorReport::open_failed(&gone);
        assert_eq!(
            report.checks,
            [DoctorCheck::problem(
                "database",
                error_text(&gone),
                Some(Remedy::CheckDatabase),
            )]
        );
        // A failure without a remedy of its own still points at the database.
        let report = DoctorReport::open_failed(&crate::Error::Build("no From".to_owned()));
        assert_eq!(report.checks[0].remedy, Some(Remedy::CheckDatabase));
    }
}
