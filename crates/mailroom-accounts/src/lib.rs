//! Account configuration and resolution: the company account, user accounts and their
//! bindings, settings, and which account sends for a feature and user.
//!
//! [`Accounts`] works over any sea-orm connection or transaction; secrets are sealed with
//! the database key (`mailroom-crypto`) before they reach a column.

mod entity;
mod error;
mod repository;
mod resolve;

pub use error::{Error, Result};
pub use repository::{Account, Accounts, BindingChange, Saved, Settings};
pub use resolve::{Resolution, ResolutionRule};
