//! sea-orm entities of the token tables (created by `mailroom-migrations`).

// The sea-orm derives generate `pub` items inside these private modules.
#![allow(unreachable_pub)]

pub(crate) mod oauth_access_token;
pub(crate) mod oauth_app;
pub(crate) mod oauth_token;
