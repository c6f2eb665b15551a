//! The accounts crate's error: what went wrong and what to do next.

use mailroom_model::{AccountId, Binding, ValidationError};

/// An accounts operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value was refused.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// No user account has that id.
    #[error("there is no account {id}; list the accounts with `mailroom account list`")]
    AccountNotFound {
        /// The id asked for.
        id: AccountId,
    },
    /// The company account is not configured.
    #[error(
        "no company account is configured; set one with `mailroom company set --provider microsoft|google|none --user ADDRESS`"
    )]
    NoCompanyAccount,
    /// Neither a bound user account nor the company account exists.
    #[error(
        "no account can send for feature `{feature}`{for_binding}: configure the company account with `mailroom company set --provider P --user ADDRESS`{or_bind}"
    )]
    NoAccount {
        /// The feature that asked.
        feature: String,
        /// ` for SystemUser:User_Name:sa`, or empty.
        for_binding: String,
        /// `, or add a user account bound to ... with ...`, or empty.
        or_bind: String,
    },
    /// Another user account already has this binding.
    #[error(
        "account {existing} is already bound to {binding}; remove that binding first (`mailroom account edit {existing} --unbind`) or choose another value"
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
    /// A stored row holds a value this version cannot read.
    #[error(
        "the database holds an unreadable {what}: {problem}; fix or remove it with `mailroom account edit`/`remove`"
    )]
    CorruptRow {
        /// Which row and column.
        what: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The database failed.
    #[error(
        "database error: {0}; check that the database is reachable and migrated (`mailroom info`)"
    )]
    Database(#[source] Box<sea_orm::DbErr>),
}

impl From<sea_orm::DbErr> for Error {
    fn from(error: sea_orm::DbErr) -> Self {
        Error::Database(Box::new(error))
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
