//! OAuth sign-in and the shared, encrypted token store.
//!
//! - [`Apps`]: OAuth app registrations per provider (client id, secret, tenant, endpoint
//!   overrides), the client secret sealed.
//! - [`sign_in_with_browser`] / [`sign_in_with_device_code`]: interactive sign-in ending in
//!   a checked [`Identity`]; [`TokenStore::save_sign_in`] stores it.
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

pub use app::{
    AppChange, AppRegistration, Apps, DEFAULT_MICROSOFT_TENANT, EndpointOverrides, Endpoints,
    GMAIL_API_URL, GOOGLE_SCOPES, MICROSOFT_SCOPES, parse_endpoint_url,
};
pub use broker::{AccessToken, BrokerConfig, SignInPolicy, TokenBroker, TokenTarget};
pub use error::{Error, Result, SignInReason};
pub use identity::{Identity, identity_from_id_token};
pub use oauth::{DevicePrompt, IssuedTokens, OAuthHttp};
pub use signin::{
    DEFAULT_SIGN_IN_TIMEOUT, SignInOptions, SignedIn, sign_in_with_browser,
    sign_in_with_device_code,
};
pub use store::{StoredToken, TokenKey, TokenStatus, TokenStore, TokenSummary};

/// Revokes `token` at the app's revocation endpoint, where the provider has one (Google).
/// Returns the provider's answer, or `None` when the provider offers no revocation.
pub async fn revoke_at_provider(
    http: &OAuthHttp,
    app: &AppRegistration,
    token: &mailroom_model::Secret,
) -> Option<Result<String>> {
    let url = app.endpoints().revoke?;
    Some(
        oauth::revoke(http, &url, token)
            .await
            .map_err(signin::failure),
    )
}
