//! OAuth sign-in and the shared, encrypted token store.
//!
//! - [`registration`]: OAuth app registrations per provider (client id, secret, tenant,
//!   endpoint overrides), the client secret sealed.
//! - [`interactive`]: sign-in in the browser or with a device code, ending in a checked
//!   identity; [`storage::TokenStore::save_sign_in`] stores it.
//! - [`storage`]: the shared, sealed token rows.
//! - [`TokenBroker`]: valid access tokens for sends, refreshed once per expiry across tasks
//!   and processes.

mod app;
mod broker;
mod entity;
mod error;
mod identity;
mod loopback;
mod oauth;
mod signin;
mod store;

pub use broker::{AccessToken, BrokerConfig, SignInPolicy, TokenBroker, TokenTarget};
pub use error::{Error, Result, SignInReason};
pub use oauth::OAuthHttp;

/// OAuth app registrations: one per provider, the real endpoints by default, each
/// overridable, the client secret sealed.
pub mod registration {
    pub use crate::app::{
        AppChange, AppRegistration, Apps, DEFAULT_MICROSOFT_TENANT, EndpointOverrides, Endpoints,
        GMAIL_API_URL, GOOGLE_SCOPES, MICROSOFT_SCOPES, parse_endpoint_url,
    };
}

/// Interactive sign-in (the browser through a loopback redirect, or a device code), the
/// checked identity it ends in, and revocation.
pub mod interactive {
    pub use crate::identity::{Identity, identity_from_id_token};
    pub use crate::oauth::{DevicePrompt, IssuedTokens};
    pub use crate::signin::{
        DEFAULT_SIGN_IN_TIMEOUT, SignInOptions, SignedIn, revoke_at_provider, sign_in_with_browser,
        sign_in_with_device_code,
    };
}

/// The shared token store: one sealed row per (provider, tenant, address).
pub mod storage {
    pub use crate::store::{StoredToken, TokenKey, TokenStatus, TokenStore, TokenSummary};
}
