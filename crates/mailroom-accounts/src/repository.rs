//! `Accounts`: reads and writes the company account, user accounts and settings, sealing
//! passwords with the database key.

use chrono::Utc;
use mailroom_crypto::EncryptionKey;
use mailroom_model::{
    AccountId, AccountRef, Binding, CompanyAccount, FaxFormat, IgnoredSetting, Provider, Secret,
    ServerSettings, ServerSettingsChange, TlsStartup, UserAccount,
};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, NotSet,
    QueryFilter, QueryOrder, Set,
};

use crate::entity::{company_account, key_check, setting, user_account};
use crate::{Error, Result};

const COMPANY_ID: i32 = 1;
const KEY_CHECK_PLAINTEXT: &[u8] = b"mailroom key check";
const KEY_CHECK_AAD: &[u8] = b"key_check:1";
const CAN_SIGN_IN_WHEN_SENDING: &str = "can_sign_in_when_sending";
const OUTBOX_RETENTION_DAYS: &str = "outbox_retention_days";

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
    key: &'a EncryptionKey,
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
        $active.updated_at = Set(Utc::now());
    }};
}

fn password_aad(account: AccountRef) -> Vec<u8> {
    match account {
        AccountRef::Company => format!("company_account:{COMPANY_ID}:password").into_bytes(),
        AccountRef::User(id) => format!("user_account:{id}:password").into_bytes(),
    }
}

fn to_row(settings: &ServerSettings, key: &EncryptionKey, account: AccountRef) -> ServerRow {
    ServerRow {
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
    }
}

fn from_row(row: ServerRow, key: &EncryptionKey, account: AccountRef) -> Result<ServerSettings> {
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
    })
}

fn company_from_model(
    model: company_account::Model,
    key: &EncryptionKey,
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
    let server = from_row(server_row!(model), key, AccountRef::Company)?;
    Ok(CompanyAccount {
        server,
        fax_format,
        from_address,
    })
}

fn user_from_model(model: user_account::Model, key: &EncryptionKey) -> Result<UserAccount> {
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
    let server = from_row(server_row!(model), key, account)?;
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
    pub fn new(db: &'a C, key: &'a EncryptionKey) -> Self {
        Self { db, key }
    }

    /// Checks that `key` is the database's key; on a database without one yet, records it.
    ///
    /// A wrong key is refused here with a clear error, before any secret is needed.
    pub async fn verify_key(&self) -> Result<()> {
        match key_check::Entity::find_by_id(1).one(self.db).await? {
            Some(check) if check.key_id != self.key.id() => Err(Error::KeyMismatch {
                database_key_id: check.key_id,
                given_key_id: self.key.id(),
            }),
            Some(check) => {
                let opened = self.key.open(&check.sealed, KEY_CHECK_AAD)?;
                if opened.as_slice() != KEY_CHECK_PLAINTEXT {
                    return Err(mailroom_crypto::Error::CannotOpen.into());
                }
                Ok(())
            }
            None => {
                key_check::ActiveModel {
                    id: Set(1),
                    key_id: Set(self.key.id()),
                    sealed: Set(self.key.seal(KEY_CHECK_PLAINTEXT, KEY_CHECK_AAD)),
                }
                .insert(self.db)
                .await?;
                Ok(())
            }
        }
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
        key_check::Entity::delete_many().exec(self.db).await?;
        key_check::ActiveModel {
            id: Set(1),
            key_id: Set(new_key.id()),
            sealed: Set(new_key.seal(KEY_CHECK_PLAINTEXT, KEY_CHECK_AAD)),
        }
        .insert(self.db)
        .await?;
        Ok(count)
    }

    /// Re-seals every password and the key check with `new_key` (key rotation, inside the
    /// caller's transaction). Returns how many passwords were re-sealed.
    pub async fn reseal(&self, new_key: &EncryptionKey) -> Result<usize> {
        let mut count = 0;
        if let Some(model) = company_account::Entity::find_by_id(COMPANY_ID)
            .one(self.db)
            .await?
        {
            if let Some(sealed) = model.password_sealed.clone() {
                let aad = password_aad(AccountRef::Company);
                let plain = self.key.open(&sealed, &aad)?;
                let mut active = model.into_active_model();
                active.password_sealed = Set(Some(new_key.seal(&plain, &aad)));
                active.update(self.db).await?;
                count += 1;
            }
        }
        for model in user_account::Entity::find().all(self.db).await? {
            if let Some(sealed) = model.password_sealed.clone() {
                let aad = password_aad(AccountRef::User(model.id));
                let plain = self.key.open(&sealed, &aad)?;
                let mut active = model.into_active_model();
                active.password_sealed = Set(Some(new_key.seal(&plain, &aad)));
                active.update(self.db).await?;
                count += 1;
            }
        }
        key_check::Entity::delete_many().exec(self.db).await?;
        key_check::ActiveModel {
            id: Set(1),
            key_id: Set(new_key.id()),
            sealed: Set(new_key.seal(KEY_CHECK_PLAINTEXT, KEY_CHECK_AAD)),
        }
        .insert(self.db)
        .await?;
        Ok(count)
    }

    /// The company account, if configured.
    pub async fn company(&self) -> Result<Option<CompanyAccount>> {
        company_account::Entity::find_by_id(COMPANY_ID)
            .one(self.db)
            .await?
            .map(|model| company_from_model(model, self.key))
            .transpose()
    }

    /// Creates or changes the company account. `fax_format`: `None` keeps it, `Some(None)`
    /// clears it, `Some(Some(f))` sets it.
    pub async fn set_company(
        &self,
        change: &ServerSettingsChange,
        fax_format: Option<Option<FaxFormat>>,
    ) -> Result<Saved<CompanyAccount>> {
        let existing = company_account::Entity::find_by_id(COMPANY_ID)
            .one(self.db)
            .await?;
        let current = existing
            .clone()
            .map(|model| company_from_model(model, self.key))
            .transpose()?;
        let applied = change.apply(current.as_ref().map(|company| &company.server))?;
        let fax_format = match fax_format {
            Some(new) => new,
            None => current.and_then(|company| company.fax_format),
        };
        let row = to_row(&applied.settings, self.key, AccountRef::Company);
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
        user_account::Entity::find()
            .order_by_asc(user_account::Column::Id)
            .all(self.db)
            .await?
            .into_iter()
            .map(|model| user_from_model(model, self.key))
            .collect()
    }

    /// The user account with this id.
    pub async fn user_account(&self, id: AccountId) -> Result<UserAccount> {
        let model = user_account::Entity::find_by_id(id)
            .one(self.db)
            .await?
            .ok_or(Error::AccountNotFound { id })?;
        user_from_model(model, self.key)
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

    /// The user account bound to `binding` (compared without case and surrounding spaces).
    pub async fn find_by_binding(&self, binding: &Binding) -> Result<Option<UserAccount>> {
        user_account::Entity::find()
            .filter(user_account::Column::BindingKey.eq(binding.key()))
            .one(self.db)
            .await?
            .map(|model| user_from_model(model, self.key))
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
            to_row(&settings_without_password, self.key, AccountRef::User(0))
        );
        fill_binding_columns(&mut active, binding.as_ref());
        let inserted = active.insert(self.db).await?;
        if applied.settings.password.is_some() {
            let row = to_row(&applied.settings, self.key, AccountRef::User(inserted.id));
            user_account::Entity::update_many()
                .col_expr(
                    user_account::Column::PasswordSealed,
                    Expr::value(row.password_sealed),
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
        let model = user_account::Entity::find_by_id(id)
            .one(self.db)
            .await?
            .ok_or(Error::AccountNotFound { id })?;
        let current = user_from_model(model.clone(), self.key)?;
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
            to_row(&applied.settings, self.key, AccountRef::User(id))
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
    Ok(key_check::Entity::find_by_id(1)
        .one(db)
        .await?
        .map(|check| check.key_id))
}
