//! `Accounts`: reads and writes the company account, user accounts and settings, sealing
//! passwords with the database key.

use chrono::Utc;
use mailroom_crypto::{EncryptionKey, KeyRing, store};
use mailroom_model::{
    AccountId, AccountRef, Auth, Binding, CompanyAccount, FaxFormat, IgnoredSetting, Limit,
    PaceOverrides, Provider, Route, Secret, ServerSettings, ServerSettingsChange, TlsStartup,
    UserAccount,
};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, NotSet,
    QueryFilter, QueryOrder, Set,
};

use crate::entity::{company_account, setting, user_account};
use crate::{Error, Result};

const COMPANY_ID: i32 = 1;
const CAN_SIGN_IN_WHEN_SENDING: &str = "can_sign_in_when_sending";
const OUTBOX_RETENTION_DAYS: &str = "outbox_retention_days";
/// The console's admin password hash (Argon2, PHC string).
const CONSOLE_PASSWORD: &str = "console-password";

/// The default of [`Settings::outbox_retention_days`].
pub const DEFAULT_OUTBOX_RETENTION_DAYS: u32 = 30;

/// Settings that are not part of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Settings {
    /// The guide's "Can Sign In When Sending Email": whether an interactive send may
    /// open a sign-in when the account has no usable token. Default true.
    pub can_sign_in_when_sending: bool,
    /// How many days the agent keeps sent and cancelled messages in the outbox before it
    /// deletes them; 0 keeps them forever. Default 30.
    pub outbox_retention_days: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            can_sign_in_when_sending: true,
            outbox_retention_days: DEFAULT_OUTBOX_RETENTION_DAYS,
        }
    }
}

/// The result of a change to an account: the stored account and what the change reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved<T> {
    /// The account as stored.
    pub account: T,
    /// Settings stored but ignored by the provider.
    pub ignored: Vec<IgnoredSetting>,
    /// Other things the user should know.
    pub notices: Vec<String>,
}

/// How an edit changes a user account's binding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BindingChange {
    /// Leave it as it is.
    #[default]
    Keep,
    /// Bind the account to this.
    Set(Binding),
    /// Remove the binding.
    Clear,
}

/// Either kind of account, as read from the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Account {
    /// The company account.
    Company(CompanyAccount),
    /// A user account.
    User(UserAccount),
}

impl Account {
    /// Which account this is.
    pub fn account_ref(&self) -> AccountRef {
        match self {
            Account::Company(_) => AccountRef::Company,
            Account::User(user) => AccountRef::User(user.id),
        }
    }

    /// Its server settings.
    pub fn server(&self) -> &ServerSettings {
        match self {
            Account::Company(company) => &company.server,
            Account::User(user) => &user.server,
        }
    }

    /// Its From address, when one is set.
    pub fn from_address(&self) -> Option<&str> {
        match self {
            Account::Company(company) => company.from_address.as_deref(),
            Account::User(user) => user.from_address.as_deref(),
        }
    }

    /// The address its messages come from when a send names none: the From address, else
    /// the SMTP user.
    pub fn sender(&self) -> &str {
        self.from_address().unwrap_or(&self.server().smtp_user)
    }
}

/// What the administrator should know about an account's sending identity and secret
/// (notes for `add`/`set`, empty when all is well): a password account whose user is not
/// an address and that has no From address cannot send without the caller naming one,
/// and a password account without a password can only reach a server that needs no login.
pub fn account_warnings(server: &ServerSettings, from_address: Option<&str>) -> Vec<String> {
    let mut warnings = Vec::new();
    if server.provider == Provider::None {
        let user = server.smtp_user.trim();
        if from_address.is_none() && user.parse::<mailroom_model::Address>().is_err() {
            warnings.push(if user.is_empty() {
                "the account has no SMTP user and no From address: every send must give its From address; set the account's From address".to_owned()
            } else {
                format!(
                    "the SMTP user `{}` is not an address and the account has no From address: every send must give its From address; set the account's From address",
                    user.escape_debug()
                )
            });
        }
        if server.password.is_none() {
            warnings.push(
                "the account has no password: it can only send through a server that needs no login".to_owned(),
            );
        }
        if server.allow_plaintext_password {
            warnings.push(format!(
                "the password may be sent without TLS to {}: anyone on the network path can read it; use TLS when the server offers it and turn --allow-plaintext-password off",
                server.host
            ));
        }
    }
    warnings
}

/// The accounts repository over any sea-orm connection or transaction.
///
/// Pass a `DatabaseTransaction` to make several calls one atomic change.
#[derive(Debug)]
pub struct Accounts<'a, C> {
    db: &'a C,
    key: &'a KeyRing,
}

/// The columns both account tables share, as stored.
struct ServerRow {
    provider: String,
    host: String,
    port: i32,
    tls: bool,
    tls_startup: String,
    timeout_ms: i32,
    smtp_user: String,
    password_sealed: Option<Vec<u8>>,
    allow_plaintext_loopback: bool,
    allow_plaintext_password: bool,
    shared_mailbox: bool,
    token_identity: Option<String>,
    route: String,
    large_attachments: bool,
    /// `app-only`, or null for delegated (rows from before the column, and every account
    /// a person signs in for).
    auth: Option<String>,
    /// Messages a minute: null (the provider's default), `off`, or a number. Outside the
    /// settings seal (see the `m20261210_000014_account_limits` migration).
    rate_per_minute: Option<String>,
    /// The daily limit, in the same form.
    daily_limit: Option<String>,
    /// The seal over the columns that decide where the secret goes ([`settings_aad`]).
    settings_seal: Option<Vec<u8>>,
}

/// The shared server columns of a `company_account` or `user_account` model.
macro_rules! server_row {
    ($model:expr) => {
        ServerRow {
            provider: $model.provider,
            host: $model.host,
            port: $model.port,
            tls: $model.tls,
            tls_startup: $model.tls_startup,
            timeout_ms: $model.timeout_ms,
            smtp_user: $model.smtp_user,
            password_sealed: $model.password_sealed,
            allow_plaintext_loopback: $model.allow_plaintext_loopback,
            allow_plaintext_password: $model.allow_plaintext_password,
            shared_mailbox: $model.shared_mailbox,
            token_identity: $model.token_identity,
            route: $model.route,
            large_attachments: $model.large_attachments,
            auth: $model.auth,
            rate_per_minute: $model.rate_per_minute,
            daily_limit: $model.daily_limit,
            settings_seal: $model.settings_seal,
        }
    };
}

/// Sets the shared server columns (and `updated_at`) of either account table's active model.
macro_rules! set_server_columns {
    ($active:expr, $row:expr) => {{
        let row = $row;
        $active.provider = Set(row.provider);
        $active.host = Set(row.host);
        $active.port = Set(row.port);
        $active.tls = Set(row.tls);
        $active.tls_startup = Set(row.tls_startup);
        $active.timeout_ms = Set(row.timeout_ms);
        $active.smtp_user = Set(row.smtp_user);
        $active.password_sealed = Set(row.password_sealed);
        $active.allow_plaintext_loopback = Set(row.allow_plaintext_loopback);
        $active.allow_plaintext_password = Set(row.allow_plaintext_password);
        $active.shared_mailbox = Set(row.shared_mailbox);
        $active.token_identity = Set(row.token_identity);
        $active.route = Set(row.route);
        $active.large_attachments = Set(row.large_attachments);
        $active.auth = Set(row.auth);
        $active.rate_per_minute = Set(row.rate_per_minute);
        $active.daily_limit = Set(row.daily_limit);
        $active.settings_seal = Set(row.settings_seal);
        $active.updated_at = Set(Utc::now());
    }};
}

fn password_aad(account: AccountRef) -> Vec<u8> {
    match account {
        AccountRef::Company => format!("company_account:{COMPANY_ID}:password").into_bytes(),
        AccountRef::User(id) => format!("user_account:{id}:password").into_bytes(),
    }
}

/// What an account's settings seal covers: the row, and every column that decides where
/// its secret (a password, or the token of its SMTP user) is sent and how. Someone who can
/// write the database but lacks the key cannot point an account at another server: the
/// seal no longer opens and mailroom refuses the account before any secret leaves.
fn settings_aad(account: AccountRef, row: &ServerRow) -> Vec<u8> {
    let table = match account {
        AccountRef::Company => format!("company_account:{COMPANY_ID}"),
        AccountRef::User(id) => format!("user_account:{id}"),
    };
    let mut aad = format!(
        "{table}:settings\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        row.provider,
        row.host,
        row.port,
        row.tls,
        row.tls_startup,
        row.allow_plaintext_loopback,
        row.allow_plaintext_password,
        row.smtp_user
    );
    // Who may sign in for the mailbox, and whose sign-in it sends with. Appended only when
    // set, so the seals of rows from before these columns still open.
    if row.shared_mailbox {
        aad.push_str("\nshared_mailbox");
    }
    if let Some(identity) = &row.token_identity {
        aad.push_str("\ntoken_identity\n");
        aad.push_str(identity);
    }
    // Where the token goes: Microsoft Graph instead of the SMTP host. Only when not the
    // default, for the same reason.
    if row.route != Route::Smtp.as_str() {
        aad.push_str("\nroute\n");
        aad.push_str(&row.route);
    }
    // Whose credentials the token is issued on: the app's own, for any mailbox the app may
    // send as, instead of a person's sign-in. Only when app-only, for the same reason.
    if let Some(auth) = row
        .auth
        .as_deref()
        .filter(|auth| *auth != Auth::Delegated.as_str())
    {
        aad.push_str("\nauth\n");
        aad.push_str(auth);
    }
    aad.into_bytes()
}

/// Checks `row`'s settings seal: [`Error::SettingsAltered`] when it does not open (or is
/// missing where seals are `required`). `None`: not checked — a change the administrator
/// makes re-seals whatever it leaves, so an altered account can be set right.
fn check_settings(
    key: &KeyRing,
    account: AccountRef,
    row: &ServerRow,
    required: Option<bool>,
) -> Result<()> {
    let Some(required) = required else {
        return Ok(());
    };
    match &row.settings_seal {
        Some(seal) => match key.open(seal, &settings_aad(account, row)) {
            Ok(_) => Ok(()),
            Err(mailroom_crypto::Error::CannotOpen) => Err(Error::SettingsAltered { account }),
            Err(error) => Err(error.into()),
        },
        None if required => Err(Error::SettingsAltered { account }),
        None => Ok(()),
    }
}

fn to_row(settings: &ServerSettings, key: &EncryptionKey, account: AccountRef) -> ServerRow {
    let mut row = ServerRow {
        provider: settings.provider.as_str().to_owned(),
        host: settings.host.clone(),
        port: i32::from(settings.port),
        tls: settings.tls,
        tls_startup: settings.tls_startup.as_str().to_owned(),
        timeout_ms: settings.timeout_ms as i32,
        smtp_user: settings.smtp_user.clone(),
        password_sealed: settings
            .password
            .as_ref()
            .map(|password| key.seal(password.expose().as_bytes(), &password_aad(account))),
        allow_plaintext_loopback: settings.allow_plaintext_loopback,
        allow_plaintext_password: settings.allow_plaintext_password,
        shared_mailbox: settings.shared_mailbox,
        token_identity: settings.token_identity.clone(),
        route: settings.route.as_str().to_owned(),
        large_attachments: settings.large_attachments,
        auth: match settings.auth {
            Auth::Delegated => None,
            auth => Some(auth.as_str().to_owned()),
        },
        rate_per_minute: settings.pace.per_minute.map(limit_text),
        daily_limit: settings.pace.daily.map(limit_text),
        settings_seal: None,
    };
    row.settings_seal = Some(key.seal(b"", &settings_aad(account, &row)));
    row
}

fn from_row(
    row: ServerRow,
    key: &KeyRing,
    account: AccountRef,
    required: Option<bool>,
) -> Result<ServerSettings> {
    check_settings(key, account, &row, required)?;
    let corrupt = |column: &str, problem: String| Error::CorruptRow {
        what: format!("{column} of the {account}"),
        account: Some(account),
        problem,
    };
    let provider: Provider = row
        .provider
        .parse()
        .map_err(|_| corrupt("provider", format!("`{}` is not a provider", row.provider)))?;
    let tls_startup: TlsStartup = row.tls_startup.parse().map_err(|_| {
        corrupt(
            "tls startup",
            format!("`{}` is not a TLS startup method", row.tls_startup),
        )
    })?;
    let route: Route = row
        .route
        .parse()
        .map_err(|_| corrupt("route", format!("`{}` is not a route", row.route)))?;
    let auth: Auth = match &row.auth {
        None => Auth::Delegated,
        Some(text) => text.parse().map_err(|_| {
            corrupt(
                "auth",
                format!("`{}` is not a kind of authentication", text.escape_debug()),
            )
        })?,
    };
    let rate_per_minute = parse_limit(row.rate_per_minute.as_deref())
        .map_err(|problem| corrupt("rate per minute", problem))?;
    let daily_limit = parse_limit(row.daily_limit.as_deref())
        .map_err(|problem| corrupt("daily limit", problem))?;
    let port = u16::try_from(row.port)
        .map_err(|_| corrupt("port", format!("{} is out of range", row.port)))?;
    let timeout_ms = u32::try_from(row.timeout_ms)
        .map_err(|_| corrupt("timeout", format!("{} is out of range", row.timeout_ms)))?;
    let password = match row.password_sealed {
        Some(sealed) => Some(Secret::new(
            key.open_string(&sealed, &password_aad(account))?.as_str(),
        )),
        None => None,
    };
    Ok(ServerSettings {
        provider,
        host: row.host,
        port,
        tls: row.tls,
        tls_startup,
        timeout_ms,
        smtp_user: row.smtp_user,
        password,
        allow_plaintext_loopback: row.allow_plaintext_loopback,
        allow_plaintext_password: row.allow_plaintext_password,
        shared_mailbox: row.shared_mailbox,
        token_identity: row.token_identity,
        route,
        large_attachments: row.large_attachments,
        auth,
        pace: PaceOverrides {
            per_minute: rate_per_minute,
            daily: daily_limit,
        },
    })
}

/// Drops the stored limits `change` replaces before the row is read, so a change that
/// sets a limit also sets right a corrupt one (limits are outside the seal: nothing else
/// depends on the old value).
fn forget_replaced_limits(
    rate_per_minute: &mut Option<String>,
    daily_limit: &mut Option<String>,
    change: &ServerSettingsChange,
) {
    if change.rate_per_minute.is_some() {
        *rate_per_minute = None;
    }
    if change.daily_limit.is_some() {
        *daily_limit = None;
    }
}

/// How a limit is stored: `off`, or the number in decimal.
fn limit_text(limit: Limit) -> String {
    match limit {
        Limit::Off => "off".to_owned(),
        Limit::At(value) => value.to_string(),
    }
}

/// A stored limit: null is the provider's default; `off` or a number of 1 or more.
fn parse_limit(text: Option<&str>) -> std::result::Result<Option<Limit>, String> {
    match text {
        None => Ok(None),
        Some("off") => Ok(Some(Limit::Off)),
        Some(text) => match text.parse::<u32>() {
            Ok(value) if value > 0 && text.bytes().all(|byte| byte.is_ascii_digit()) => {
                Ok(Some(Limit::At(value)))
            }
            _ => Err(format!(
                "`{}` is not a limit (`off` or a number of 1 or more)",
                text.escape_debug()
            )),
        },
    }
}

fn company_from_model(
    model: company_account::Model,
    key: &KeyRing,
    required: Option<bool>,
) -> Result<CompanyAccount> {
    let fax_format = match model.fax_format {
        Some(text) => Some(FaxFormat::parse(&text).map_err(|error| Error::CorruptRow {
            what: "fax format of the company account".to_owned(),
            account: Some(AccountRef::Company),
            problem: error.to_string(),
        })?),
        None => None,
    };
    let from_address = model.from_address.clone();
    let server = from_row(server_row!(model), key, AccountRef::Company, required)?;
    Ok(CompanyAccount {
        server,
        fax_format,
        from_address,
    })
}

fn user_from_model(
    model: user_account::Model,
    key: &KeyRing,
    required: Option<bool>,
) -> Result<UserAccount> {
    let account = AccountRef::User(model.id);
    let binding = match (model.business_object, model.column_name, model.column_value) {
        (Some(object), Some(column), Some(value)) => Some(
            Binding::new(&object, &column, &value).map_err(|error| Error::CorruptRow {
                what: format!("binding of {account}"),
                account: Some(account),
                problem: error.to_string(),
            })?,
        ),
        _ => None,
    };
    let from_address = model.from_address.clone();
    let server = from_row(server_row!(model), key, account, required)?;
    Ok(UserAccount {
        id: model.id,
        server,
        binding,
        from_address,
    })
}

fn fill_binding_columns(active: &mut user_account::ActiveModel, binding: Option<&Binding>) {
    active.business_object = Set(binding.map(|b| b.business_object.clone()));
    active.column_name = Set(binding.map(|b| b.column_name.clone()));
    active.column_value = Set(binding.map(|b| b.column_value.clone()));
    active.binding_key = Set(binding.map(Binding::key));
}

impl<'a, C: ConnectionTrait> Accounts<'a, C> {
    /// A repository over `db`, sealing and opening secrets with `key`.
    pub fn new(db: &'a C, key: &'a KeyRing) -> Self {
        Self { db, key }
    }

    /// Checks that the ring holds the database's current key (and that it opens the
    /// check value); on a database without a key yet, records the ring's first key.
    ///
    /// A host lacking the key is refused here with a clear error naming it, before any
    /// secret is needed.
    pub async fn verify_key(&self) -> Result<()> {
        store::verify(self.db, self.key).await?;
        Ok(())
    }

    /// Forgets every stored password (the accounts stay, without one) and checks
    /// `new_key` from now on: for a database whose key is lost, inside the caller's
    /// transaction. Returns how many passwords were forgotten.
    pub async fn forget_passwords(&self, new_key: &EncryptionKey) -> Result<usize> {
        let mut count = 0;
        if let Some(model) = company_account::Entity::find_by_id(COMPANY_ID)
            .one(self.db)
            .await?
        {
            if model.password_sealed.is_some() {
                let mut active = model.into_active_model();
                active.password_sealed = Set(None);
                active.update(self.db).await?;
                count += 1;
            }
        }
        for model in user_account::Entity::find().all(self.db).await? {
            if model.password_sealed.is_some() {
                let mut active = model.into_active_model();
                active.password_sealed = Set(None);
                active.update(self.db).await?;
                count += 1;
            }
        }
        store::replace(self.db, new_key).await?;
        // The settings seals were made with the lost key: seal the settings as they stand.
        self.seal_all_settings(new_key).await?;
        Ok(count)
    }

    /// Re-seals every password and settings seal with `new_key` and counts a new version
    /// of each account (a key rotation's commit, inside the caller's transaction, which
    /// then names `new_key` the database's key). A settings seal that does not open is
    /// [`Error::SettingsAltered`]: the rotation stops rather than seal altered settings.
    /// Returns how many passwords were re-sealed.
    pub async fn reseal(&self, new_key: &EncryptionKey) -> Result<usize> {
        self.reseal_rows(new_key, Some(self.seals_required().await?))
            .await
    }

    /// Seals every account's settings with `sealing` as they stand (passwords re-sealed
    /// too): once, for a database from before settings seals, or after a lost key's reset
    /// (when the old seals cannot be checked). Returns how many passwords were re-sealed.
    pub async fn seal_all_settings(&self, sealing: &EncryptionKey) -> Result<usize> {
        self.reseal_rows(sealing, None).await
    }

    async fn reseal_rows(&self, new_key: &EncryptionKey, check: Option<bool>) -> Result<usize> {
        let mut count = 0;
        if let Some(model) = company_account::Entity::find_by_id(COMPANY_ID)
            .one(self.db)
            .await?
        {
            let account = AccountRef::Company;
            let mut row = server_row!(model.clone());
            count += self.reseal_row(account, &mut row, new_key, check)?;
            let version = model.version + 1;
            let mut active = model.into_active_model();
            active.password_sealed = Set(row.password_sealed);
            active.settings_seal = Set(row.settings_seal);
            active.version = Set(version);
            active.update(self.db).await?;
        }
        for model in user_account::Entity::find().all(self.db).await? {
            let account = AccountRef::User(model.id);
            let mut row = server_row!(model.clone());
            count += self.reseal_row(account, &mut row, new_key, check)?;
            let version = model.version + 1;
            let mut active = model.into_active_model();
            active.password_sealed = Set(row.password_sealed);
            active.settings_seal = Set(row.settings_seal);
            active.version = Set(version);
            active.update(self.db).await?;
        }
        Ok(count)
    }

    /// Checks `row`'s settings seal (as `check` says), then re-seals its password and
    /// settings with `new_key`; 1 when it had a password.
    fn reseal_row(
        &self,
        account: AccountRef,
        row: &mut ServerRow,
        new_key: &EncryptionKey,
        check: Option<bool>,
    ) -> Result<usize> {
        check_settings(self.key, account, row, check)?;
        let mut passwords = 0;
        if let Some(sealed) = &row.password_sealed {
            let aad = password_aad(account);
            row.password_sealed = Some(new_key.seal(&self.key.open(sealed, &aad)?, &aad));
            passwords = 1;
        }
        row.settings_seal = Some(new_key.seal(b"", &settings_aad(account, row)));
        Ok(passwords)
    }

    /// Whether every account row must carry a settings seal: false only on a database
    /// from before seals, until the facade seals its rows once.
    async fn seals_required(&self) -> Result<bool> {
        Ok(store::settings_sealed(self.db, self.key).await?)
    }

    /// The company account, if configured.
    pub async fn company(&self) -> Result<Option<CompanyAccount>> {
        let required = Some(self.seals_required().await?);
        company_account::Entity::find_by_id(COMPANY_ID)
            .one(self.db)
            .await?
            .map(|model| company_from_model(model, self.key, required))
            .transpose()
    }

    /// Creates or changes the company account. `fax_format`: `None` keeps it, `Some(None)`
    /// clears it, `Some(Some(f))` sets it.
    pub async fn set_company(
        &self,
        change: &ServerSettingsChange,
        fax_format: Option<Option<FaxFormat>>,
    ) -> Result<Saved<CompanyAccount>> {
        let sealing = store::sealing_key(self.db, self.key).await?;
        let required = None;
        let existing = company_account::Entity::find_by_id(COMPANY_ID)
            .one(self.db)
            .await?;
        let current = existing
            .clone()
            .map(|mut model| {
                forget_replaced_limits(&mut model.rate_per_minute, &mut model.daily_limit, change);
                company_from_model(model, self.key, required)
            })
            .transpose()?;
        let applied = change.apply(current.as_ref().map(|company| &company.server))?;
        let fax_format = match fax_format {
            Some(new) => new,
            None => current.and_then(|company| company.fax_format),
        };
        let row = to_row(&applied.settings, sealing, AccountRef::Company);
        let mut active = match &existing {
            Some(model) => {
                let mut active = model.clone().into_active_model();
                active.version = Set(model.version + 1);
                active
            }
            None => company_account::ActiveModel {
                id: Set(COMPANY_ID),
                version: Set(1),
                ..Default::default()
            },
        };
        set_server_columns!(active, row);
        active.fax_format = Set(fax_format.as_ref().map(|f| f.as_str().to_owned()));
        if existing.is_some() {
            active.update(self.db).await?;
        } else {
            active.insert(self.db).await?;
        }
        Ok(Saved {
            account: CompanyAccount {
                server: applied.settings,
                fax_format,
                from_address: existing.and_then(|model| model.from_address),
            },
            ignored: applied.ignored,
            notices: applied.notices,
        })
    }

    /// Every user account, by id.
    pub async fn user_accounts(&self) -> Result<Vec<UserAccount>> {
        let required = Some(self.seals_required().await?);
        user_account::Entity::find()
            .order_by_asc(user_account::Column::Id)
            .all(self.db)
            .await?
            .into_iter()
            .map(|model| user_from_model(model, self.key, required))
            .collect()
    }

    /// The company account (when there is one) and every user account.
    pub async fn all_accounts(&self) -> Result<Vec<Account>> {
        let mut all: Vec<Account> = self
            .company()
            .await?
            .map(Account::Company)
            .into_iter()
            .collect();
        all.extend(self.user_accounts().await?.into_iter().map(Account::User));
        Ok(all)
    }

    /// The user account with this id.
    pub async fn user_account(&self, id: AccountId) -> Result<UserAccount> {
        let required = Some(self.seals_required().await?);
        let model = user_account::Entity::find_by_id(id)
            .one(self.db)
            .await?
            .ok_or(Error::AccountNotFound { id })?;
        user_from_model(model, self.key, required)
    }

    /// The company account or a user account.
    pub async fn account(&self, account: AccountRef) -> Result<Account> {
        match account {
            AccountRef::Company => self
                .company()
                .await?
                .map(Account::Company)
                .ok_or(Error::NoCompanyAccount),
            AccountRef::User(id) => self.user_account(id).await.map(Account::User),
        }
    }

    /// Several accounts at once, each as [`Accounts::account`] reads it (or why it cannot
    /// be read), with one query for all the user accounts: for a caller that needs many
    /// (the agent, for a claim's messages). An account asked for twice is read once.
    pub async fn accounts(
        &self,
        accounts: &[AccountRef],
    ) -> Result<Vec<(AccountRef, Result<Account>)>> {
        let required = Some(self.seals_required().await?);
        let mut ids: Vec<AccountId> = accounts
            .iter()
            .filter_map(|account| match account {
                AccountRef::User(id) => Some(*id),
                AccountRef::Company => None,
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut users = std::collections::HashMap::new();
        if let Some(&last) = ids.last() {
            // Padded to a power of two by repeating an id, so the statement takes one of a
            // few shapes (a prepared statement each) however many accounts are asked for.
            ids.resize(ids.len().next_power_of_two(), last);
            for model in user_account::Entity::find()
                .filter(user_account::Column::Id.is_in(ids))
                .all(self.db)
                .await?
            {
                users.insert(model.id, model);
            }
        }
        let mut company = None;
        if accounts.contains(&AccountRef::Company) {
            company = Some(
                company_account::Entity::find_by_id(COMPANY_ID)
                    .one(self.db)
                    .await?,
            );
        }
        let mut read = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for &account in accounts {
            if !seen.insert(account) {
                continue;
            }
            let result = match account {
                AccountRef::User(id) => users
                    .remove(&id)
                    .ok_or(Error::AccountNotFound { id })
                    .and_then(|model| user_from_model(model, self.key, required))
                    .map(Account::User),
                AccountRef::Company => company
                    .take()
                    .flatten()
                    .ok_or(Error::NoCompanyAccount)
                    .and_then(|model| company_from_model(model, self.key, required))
                    .map(Account::Company),
            };
            read.push((account, result));
        }
        Ok(read)
    }

    /// The user account bound to `binding` (compared without case and surrounding spaces).
    pub async fn find_by_binding(&self, binding: &Binding) -> Result<Option<UserAccount>> {
        let required = Some(self.seals_required().await?);
        user_account::Entity::find()
            .filter(user_account::Column::BindingKey.eq(binding.key()))
            .one(self.db)
            .await?
            .map(|model| user_from_model(model, self.key, required))
            .transpose()
    }

    async fn refuse_duplicate_binding(
        &self,
        binding: &Binding,
        this: Option<AccountId>,
    ) -> Result<()> {
        if let Some(existing) = self.find_by_binding(binding).await? {
            if Some(existing.id) != this {
                return Err(Error::DuplicateBinding {
                    binding: existing.binding.unwrap_or_else(|| binding.clone()),
                    existing: existing.id,
                });
            }
        }
        Ok(())
    }

    /// Adds a user account; the change must name a provider.
    pub async fn add_user_account(
        &self,
        change: &ServerSettingsChange,
        binding: Option<Binding>,
    ) -> Result<Saved<UserAccount>> {
        let applied = change.apply(None)?;
        let sealing = store::sealing_key(self.db, self.key).await?;
        if let Some(binding) = &binding {
            self.refuse_duplicate_binding(binding, None).await?;
        }
        // The password is sealed with the row's id, known only after the insert: insert
        // without it, then seal and update, inside the caller's transaction.
        let mut settings_without_password = applied.settings.clone();
        settings_without_password.password = None;
        let mut active = user_account::ActiveModel {
            id: NotSet,
            version: Set(1),
            ..Default::default()
        };
        set_server_columns!(
            active,
            to_row(&settings_without_password, sealing, AccountRef::User(0))
        );
        fill_binding_columns(&mut active, binding.as_ref());
        let inserted = active.insert(self.db).await?;
        // The password and the settings seal name the row's id, known only now.
        {
            let row = to_row(&applied.settings, sealing, AccountRef::User(inserted.id));
            user_account::Entity::update_many()
                .col_expr(
                    user_account::Column::PasswordSealed,
                    Expr::value(row.password_sealed),
                )
                .col_expr(
                    user_account::Column::SettingsSeal,
                    Expr::value(row.settings_seal),
                )
                .filter(user_account::Column::Id.eq(inserted.id))
                .exec(self.db)
                .await?;
        }
        Ok(Saved {
            account: UserAccount {
                id: inserted.id,
                server: applied.settings,
                binding,
                from_address: None,
            },
            ignored: applied.ignored,
            notices: applied.notices,
        })
    }

    /// Changes a user account.
    pub async fn edit_user_account(
        &self,
        id: AccountId,
        change: &ServerSettingsChange,
        binding: BindingChange,
    ) -> Result<Saved<UserAccount>> {
        let sealing = store::sealing_key(self.db, self.key).await?;
        let required = None;
        let model = user_account::Entity::find_by_id(id)
            .one(self.db)
            .await?
            .ok_or(Error::AccountNotFound { id })?;
        let mut read = model.clone();
        forget_replaced_limits(&mut read.rate_per_minute, &mut read.daily_limit, change);
        let current = user_from_model(read, self.key, required)?;
        let applied = change.apply(Some(&current.server))?;
        let binding = match binding {
            BindingChange::Keep => current.binding,
            BindingChange::Set(binding) => {
                self.refuse_duplicate_binding(&binding, Some(id)).await?;
                Some(binding)
            }
            BindingChange::Clear => None,
        };
        let version = model.version + 1;
        let from_address = model.from_address.clone();
        let mut active = model.into_active_model();
        set_server_columns!(
            active,
            to_row(&applied.settings, sealing, AccountRef::User(id))
        );
        fill_binding_columns(&mut active, binding.as_ref());
        active.version = Set(version);
        active.update(self.db).await?;
        Ok(Saved {
            account: UserAccount {
                id,
                server: applied.settings,
                binding,
                from_address,
            },
            ignored: applied.ignored,
            notices: applied.notices,
        })
    }

    /// Records whose stored sign-in `account` sends with (`Some`: the sign-in's identity
    /// key) or detaches it (`None`), re-sealing the account's settings; its seal is checked
    /// first, so an altered account is refused, not re-sealed. Returns the account as
    /// stored.
    pub async fn set_token_identity(
        &self,
        account: AccountRef,
        identity: Option<&str>,
    ) -> Result<Account> {
        let sealing = store::sealing_key(self.db, self.key).await?;
        let required = Some(self.seals_required().await?);
        match account {
            AccountRef::Company => {
                let model = company_account::Entity::find_by_id(COMPANY_ID)
                    .one(self.db)
                    .await?
                    .ok_or(Error::NoCompanyAccount)?;
                let mut company = company_from_model(model.clone(), self.key, required)?;
                company.server.token_identity = identity.map(str::to_owned);
                let version = model.version + 1;
                let mut active = model.into_active_model();
                set_server_columns!(active, to_row(&company.server, sealing, account));
                active.version = Set(version);
                active.update(self.db).await?;
                Ok(Account::Company(company))
            }
            AccountRef::User(id) => {
                let model = user_account::Entity::find_by_id(id)
                    .one(self.db)
                    .await?
                    .ok_or(Error::AccountNotFound { id })?;
                let mut user = user_from_model(model.clone(), self.key, required)?;
                user.server.token_identity = identity.map(str::to_owned);
                let version = model.version + 1;
                let mut active = model.into_active_model();
                set_server_columns!(active, to_row(&user.server, sealing, account));
                active.version = Set(version);
                active.update(self.db).await?;
                Ok(Account::User(user))
            }
        }
    }

    /// Sets (`Some`) or clears (`None`) the account's From address: the From header and
    /// envelope sender of a send that names none (for password accounts whose login is
    /// not an address). Returns the account as stored.
    pub async fn set_from_address(
        &self,
        account: AccountRef,
        from_address: Option<&str>,
    ) -> Result<Account> {
        let value = match from_address {
            Some(text) => {
                Some(mailroom_model::validate::parse_address("from", text.trim())?.to_string())
            }
            None => None,
        };
        let changed = match account {
            AccountRef::Company => {
                company_account::Entity::update_many()
                    .col_expr(company_account::Column::FromAddress, Expr::value(value))
                    .col_expr(company_account::Column::UpdatedAt, Expr::value(Utc::now()))
                    .col_expr(
                        company_account::Column::Version,
                        Expr::col(company_account::Column::Version).add(1),
                    )
                    .filter(company_account::Column::Id.eq(COMPANY_ID))
                    .exec(self.db)
                    .await?
            }
            AccountRef::User(id) => {
                user_account::Entity::update_many()
                    .col_expr(user_account::Column::FromAddress, Expr::value(value))
                    .col_expr(user_account::Column::UpdatedAt, Expr::value(Utc::now()))
                    .col_expr(
                        user_account::Column::Version,
                        Expr::col(user_account::Column::Version).add(1),
                    )
                    .filter(user_account::Column::Id.eq(id))
                    .exec(self.db)
                    .await?
            }
        };
        if changed.rows_affected == 0 {
            return Err(match account {
                AccountRef::Company => Error::NoCompanyAccount,
                AccountRef::User(id) => Error::AccountNotFound { id },
            });
        }
        self.account(account).await
    }

    /// Removes a user account.
    pub async fn remove_user_account(&self, id: AccountId) -> Result<()> {
        let result = user_account::Entity::delete_by_id(id).exec(self.db).await?;
        if result.rows_affected == 0 {
            return Err(Error::AccountNotFound { id });
        }
        Ok(())
    }

    /// The settings, with defaults for those never set.
    pub async fn settings(&self) -> Result<Settings> {
        let mut settings = Settings::default();
        if let Some(row) = setting::Entity::find_by_id(CAN_SIGN_IN_WHEN_SENDING.to_owned())
            .one(self.db)
            .await?
        {
            settings.can_sign_in_when_sending = match row.value.as_str() {
                "true" => true,
                "false" => false,
                other => {
                    return Err(Error::CorruptRow {
                        what: "setting can-sign-in-when-sending".to_owned(),
                        account: None,
                        problem: format!("`{other}` is not true or false"),
                    });
                }
            };
        }
        if let Some(row) = setting::Entity::find_by_id(OUTBOX_RETENTION_DAYS.to_owned())
            .one(self.db)
            .await?
        {
            settings.outbox_retention_days = row.value.parse().map_err(|_| Error::CorruptRow {
                what: "setting outbox-retention-days".to_owned(),
                account: None,
                problem: format!("`{}` is not a number of days", row.value),
            })?;
        }
        Ok(settings)
    }

    /// The console's admin password, as its Argon2 hash (PHC string), when one is set.
    pub async fn console_password_hash(&self) -> Result<Option<String>> {
        Ok(setting::Entity::find_by_id(CONSOLE_PASSWORD.to_owned())
            .one(self.db)
            .await?
            .map(|row| row.value))
    }

    /// Stores the console's admin password hash (a PHC string: never the password), or
    /// removes it.
    pub async fn set_console_password_hash(&self, hash: Option<&str>) -> Result<()> {
        match hash {
            Some(hash) => self.set_setting(CONSOLE_PASSWORD, hash.to_owned()).await,
            None => {
                setting::Entity::delete_by_id(CONSOLE_PASSWORD.to_owned())
                    .exec(self.db)
                    .await?;
                Ok(())
            }
        }
    }

    /// Sets how many days the agent keeps sent and cancelled messages (0: forever).
    pub async fn set_outbox_retention_days(&self, days: u32) -> Result<()> {
        self.set_setting(OUTBOX_RETENTION_DAYS, days.to_string())
            .await
    }

    async fn set_setting(&self, key: &str, value: String) -> Result<()> {
        let row = setting::ActiveModel {
            key: Set(key.to_owned()),
            value: Set(value),
        };
        setting::Entity::insert(row)
            .on_conflict(
                sea_orm::sea_query::OnConflict::column(setting::Column::Key)
                    .update_column(setting::Column::Value)
                    .to_owned(),
            )
            .exec(self.db)
            .await?;
        Ok(())
    }

    /// Sets the guide's "Can Sign In When Sending Email".
    pub async fn set_can_sign_in_when_sending(&self, value: bool) -> Result<()> {
        let row = setting::ActiveModel {
            key: Set(CAN_SIGN_IN_WHEN_SENDING.to_owned()),
            value: Set(value.to_string()),
        };
        setting::Entity::insert(row)
            .on_conflict(
                sea_orm::sea_query::OnConflict::column(setting::Column::Key)
                    .update_column(setting::Column::Value)
                    .to_owned(),
            )
            .exec(self.db)
            .await?;
        Ok(())
    }
}

/// The id (fingerprint) of the key `db`'s secrets are sealed with, once any key was
/// checked against it. Needs no key: it says which key a host lacks.
pub async fn sealed_with<C: ConnectionTrait>(db: &C) -> Result<Option<String>> {
    Ok(store::state(db).await?.map(|state| state.current))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(auth: Option<&str>) -> ServerRow {
        ServerRow {
            provider: "microsoft".to_owned(),
            host: "smtp.office365.com".to_owned(),
            port: 587,
            tls: true,
            tls_startup: "auto".to_owned(),
            timeout_ms: 100_000,
            smtp_user: "orders@contoso.example".to_owned(),
            password_sealed: None,
            allow_plaintext_loopback: false,
            allow_plaintext_password: false,
            shared_mailbox: false,
            token_identity: None,
            route: "smtp".to_owned(),
            large_attachments: false,
            auth: auth.map(str::to_owned),
            rate_per_minute: None,
            daily_limit: None,
            settings_seal: None,
        }
    }

    /// The limits are outside the seal: a row with limits is sealed over what the same
    /// row without them is.
    #[test]
    fn limits_stay_out_of_the_settings_seal() {
        let account = AccountRef::User(4);
        let mut limited = row(None);
        limited.rate_per_minute = Some("10".to_owned());
        limited.daily_limit = Some("off".to_owned());
        assert_eq!(
            settings_aad(account, &limited),
            settings_aad(account, &row(None))
        );
    }

    /// A limit is written as `off` or its number and read back as the same limit; null is
    /// the provider's default.
    #[test]
    fn limits_are_written_as_off_or_a_number() {
        for limit in [Limit::Off, Limit::At(1), Limit::At(u32::MAX)] {
            let text = limit_text(limit);
            assert_eq!(parse_limit(Some(&text)), Ok(Some(limit)), "{text}");
        }
        assert_eq!(limit_text(Limit::At(2_000)), "2000");
        assert_eq!(parse_limit(None), Ok(None));
        for corrupt in ["", "0", "00", "-1", "+5", " 5", "Off", "1e3", "4294967296"] {
            assert!(parse_limit(Some(corrupt)).is_err(), "{corrupt:?}");
        }
    }

    /// A row from before the `auth` column (null), or one that says `delegated`, is sealed
    /// over exactly what rows were sealed over before it, so their seals still open;
    /// app-only joins the seal.
    #[test]
    fn app_only_joins_the_settings_seal_only_when_set() {
        let before = "user_account:4:settings\nmicrosoft\nsmtp.office365.com\n587\ntrue\nauto\nfalse\nfalse\norders@contoso.example";
        let account = AccountRef::User(4);
        for delegated in [None, Some("delegated")] {
            assert_eq!(
                String::from_utf8(settings_aad(account, &row(delegated))).unwrap(),
                before,
                "{delegated:?}"
            );
        }
        assert_eq!(
            String::from_utf8(settings_aad(account, &row(Some("app-only")))).unwrap(),
            format!("{before}\nauth\napp-only")
        );
    }

    /// Delegated is written as null, the value of every row from before the column.
    #[test]
    fn delegated_is_written_as_null() {
        let key = EncryptionKey::generate();
        let mut settings = ServerSettings::preset(Provider::Google);
        settings.smtp_user = "orders@example.com".to_owned();
        assert_eq!(to_row(&settings, &key, AccountRef::Company).auth, None);
        settings.auth = Auth::AppOnly;
        assert_eq!(
            to_row(&settings, &key, AccountRef::Company).auth.as_deref(),
            Some("app-only")
        );
    }
}
