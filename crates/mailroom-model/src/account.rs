//! Accounts: the one company account, the many user accounts, and the binding that ties a
//! user account to a business object.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::validate::{self, ValidationError};
use crate::{FaxFormat, ServerSettings};

/// The business object of the guide's standard binding.
pub const SYSTEM_USER_OBJECT: &str = "SystemUser";
/// The column of the guide's standard binding.
pub const USER_NAME_COLUMN: &str = "User_Name";

/// Ties a user account to a business object's column value, e.g.
/// `SystemUser / User_Name / sa`. Matching ignores case and surrounding spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Binding {
    /// The business object, e.g. `SystemUser` or `Customer`.
    pub business_object: String,
    /// The column of that object, e.g. `User_Name` or `Territory`.
    pub column_name: String,
    /// The value the column must have, e.g. `sa`.
    pub column_value: String,
}

impl Binding {
    /// A validated binding; parts are trimmed. The business object and column may not
    /// contain `:`, the separator of the `OBJECT:COLUMN:VALUE` form (the value may), so a
    /// binding's text always parses back to the same binding.
    pub fn new(
        business_object: &str,
        column_name: &str,
        column_value: &str,
    ) -> Result<Self, ValidationError> {
        validate::check_text("business object", business_object)?;
        validate::check_text("column name", column_name)?;
        validate::check_text("column value", column_value)?;
        for (field, part) in [
            ("business object", business_object),
            ("column name", column_name),
        ] {
            if part.contains(':') {
                return Err(ValidationError::new(
                    field,
                    format!("`{}` contains `:`", part.trim()),
                    "a business object or column name has no `:` (it separates OBJECT:COLUMN:VALUE)",
                ));
            }
        }
        Ok(Self {
            business_object: business_object.trim().to_owned(),
            column_name: column_name.trim().to_owned(),
            column_value: column_value.trim().to_owned(),
        })
    }

    /// The guide's standard binding to a system user: `SystemUser / User_Name / <name>`.
    pub fn system_user(user_name: &str) -> Result<Self, ValidationError> {
        Self::new(SYSTEM_USER_OBJECT, USER_NAME_COLUMN, user_name)
    }

    /// The normalized form two bindings are compared by (lower case, trimmed), unique per
    /// user account in the database.
    pub fn key(&self) -> String {
        binding_key(&self.business_object, &self.column_name, &self.column_value)
    }
}

/// The normalized key of a binding, as stored in the unique `binding_key` column.
pub fn binding_key(business_object: &str, column_name: &str, column_value: &str) -> String {
    // U+001F (unit separator) cannot occur in a part: validation refuses control characters.
    format!(
        "{}\u{1f}{}\u{1f}{}",
        business_object.trim().to_lowercase(),
        column_name.trim().to_lowercase(),
        column_value.trim().to_lowercase()
    )
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.business_object, self.column_name, self.column_value
        )
    }
}

impl FromStr for Binding {
    type Err = ValidationError;

    /// Parses `OBJECT:COLUMN:VALUE`; the value may itself contain colons.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(object), Some(column), Some(value)) => Self::new(object, column, value),
            _ => Err(ValidationError::new(
                "binding",
                format!("`{}` does not have three parts", text.escape_debug()),
                "write OBJECT:COLUMN:VALUE, e.g. SystemUser:User_Name:sa",
            )),
        }
    }
}

/// The id of a user account (the guide's "Email Server ID").
pub type AccountId = i64;

/// Which account something refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "lowercase")]
pub enum AccountRef {
    /// The company account.
    Company,
    /// A user account by id.
    User(AccountId),
}

impl fmt::Display for AccountRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountRef::Company => f.write_str("company account"),
            AccountRef::User(id) => write!(f, "account {id}"),
        }
    }
}

/// The one shared account (the guide's "Sales Email Confirmation").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyAccount {
    /// How it reaches its server.
    pub server: ServerSettings,
    /// Turns a fax number into an address (the guide's "Email To Fax Format String").
    pub fax_format: Option<FaxFormat>,
    /// The From address (and envelope sender) when a send gives none; for password
    /// accounts whose login is not an address. `None`: the SMTP user.
    pub from_address: Option<String>,
}

/// One of the many accounts of the guide's "SMTP Setup".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAccount {
    /// The account's id.
    pub id: AccountId,
    /// How it reaches its server.
    pub server: ServerSettings,
    /// What the account is bound to; an unbound account is only used when named.
    pub binding: Option<Binding>,
    /// The From address (and envelope sender) when a send gives none; for password
    /// accounts whose login is not an address. `None`: the SMTP user.
    pub from_address: Option<String>,
}
