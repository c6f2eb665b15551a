//! sea-orm entities of the accounts tables (created by `mailroom-migrations`).

// The sea-orm derives generate `pub` items inside these private modules.
#![allow(unreachable_pub)]

pub(crate) mod company_account;
pub(crate) mod setting;
pub(crate) mod user_account;
