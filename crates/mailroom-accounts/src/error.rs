//! The accounts crate's error: what went wrong and what to do next.

use mailroom_model::{AccountId, AccountRef, Binding, Remedy, ValidationError};

/// An accounts operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value was refused.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// No user account has that id.
    #[error("there is no account {id}; list the accounts to find the right id")]
    AccountNotFound {
        /// The id asked for.
        id: AccountId,
    },
    /// The company account is not configured.
    #[error(
        "no company account is configured; configure it with a provider (microsoft, google or none) and its SMTP user"
    )]
    NoCompanyAccount,
    /// Neither a bound user account nor the company account exists.
    #[error(
        "no account can send for feature `{feature}`{}: configure the company account{}",
        binding.as_ref().map(|b| format!(" for {b}")).unwrap_or_default(),
        binding.as_ref().map(|b| format!(", or add a user account bound to {b}")).unwrap_or_default()
    )]
    NoAccount {
        /// The feature that asked.
        feature: String,
        /// The user's binding, when the feature prefers the user's own account.
        binding: Option<Binding>,
    },
    /// Another user account already has this binding.
    #[error(
        "account {existing} is already bound to {binding}; remove that account's binding first or choose another value"
    )]
    DuplicateBinding {
        /// The binding.
        binding: Binding,
        /// The account that has it.
        existing: AccountId,
    },
    /// The encryption key is wrong or unusable, or a stored secret is damaged.
    #[error(transparent)]
    Key(#[from] mailroom_crypto::Error),
    /// An account's server settings do not match their seal: they were changed outside
    /// mailroom (in the database, without the key). No secret is sent to them.
    #[error(
        "the server settings of the {account} were changed outside mailroom (they do not match their seal), so no password or token is sent to them; check the host, port, TLS and user, and set them again"
    )]
    SettingsAltered {
        /// The account.
        account: AccountRef,
    },
    /// A stored row holds a value this version cannot read.
    #[error("the database holds an unreadable {what}: {problem}; correct or remove the account")]
    CorruptRow {
        /// Which row and column.
        what: String,
        /// The account the row belongs to, when it is one.
        account: Option<AccountRef>,
        /// What is wrong with it.
        problem: String,
    },
    /// The database failed.
    #[error("the database failed; check that it is reachable and migrated")]
    Database(#[source] Box<sea_orm::DbErr>),
}

impl Error {
    /// The action that fixes it, when there is one.
    pub fn remedy(&self) -> Option<Remedy> {
        match self {
            Error::Invalid(error) => error.remedy().cloned(),
            Error::AccountNotFound { .. } => Some(Remedy::ListAccounts),
            Error::NoCompanyAccount => Some(Remedy::ConfigureCompany),
            Error::NoAccount { .. } => Some(Remedy::ConfigureCompany),
            Error::DuplicateBinding { existing, .. } => Some(Remedy::Unbind { account: *existing }),
            Error::Key(error) => error.missing_key().map(|id| Remedy::RestoreKey {
                key_id: id.to_owned(),
            }),
            Error::CorruptRow { account, .. } => Some(Remedy::EditAccount { account: *account }),
            Error::SettingsAltered { account } => Some(Remedy::EditAccount {
                account: Some(*account),
            }),
            Error::Database(_) => Some(Remedy::CheckDatabase),
        }
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(error: sea_orm::DbErr) -> Self {
        Error::Database(Box::new(error))
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
