//! OAuth sign-in and the shared, encrypted token store.
//!
//! - [`registration`]: OAuth app registrations per provider (client id, secret, tenant,
//!   endpoint overrides), the client secret sealed.
//! - [`interactive`]: sign-in in the browser or with a device code, ending in a checked
//!   identity; [`storage::TokenStore::save_sign_in`] stores it.
//! - [`storage`]: the shared, sealed token rows.
//! - [`TokenBroker`]: valid access tokens for sends, refreshed once per expiry across tasks
//!   and processes.
//!
//! The tables (`oauth_app`, `oauth_token`) are `mailroom-migrations`': run
//! `mailroom_migrations::open` (or its `Migrator`) on the database first. Which account
//! sends is `mailroom-accounts`' business, and sending is the transports'; this crate
//! only obtains, stores and refreshes tokens. Secrets are sealed with the database key
//! (`mailroom-crypto`).
//!
//! ```
//! use mailroom_crypto::KeyRing;
//! use mailroom_model::Provider;
//! use mailroom_tokens::registration::{AppChange, Apps};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The schema comes from mailroom-migrations, which must run first.
//! let db = mailroom_migrations::open("sqlite::memory:").await?;
//! let key = KeyRing::generate();
//! let apps = Apps::new(&db, &key);
//!
//! // Register the Microsoft app of one tenant: the real endpoints unless overridden.
//! let change = AppChange {
//!     client_id: Some("00000000-0000-4000-8000-000000000001".to_owned()),
//!     tenant: Some("contoso.onmicrosoft.com".to_owned()),
//!     ..AppChange::default()
//! };
//! apps.set(Provider::Microsoft, change).await?;
//!
//! let app = apps.require(Provider::Microsoft).await?;
//! assert_eq!(app.tenant(), "contoso.onmicrosoft.com");
//! assert_eq!(
//!     app.endpoints().token.as_str(),
//!     "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
//! );
//! assert!(apps.get(Provider::Google).await?.is_none());
//! # Ok(())
//! # }
//! ```

mod app;
mod broker;
mod entity;
mod error;
mod identity;
mod jwt;
mod loopback;
mod oauth;
mod resource;
mod signin;
mod store;
mod x509;

pub use broker::{AccessToken, BrokerConfig, SignInPolicy, TokenBroker, TokenTarget};
pub use error::{Error, Result, SignInReason};
pub use oauth::OAuthHttp;
pub use resource::Resource;

/// OAuth app registrations: one per provider, the real endpoints by default, each
/// overridable, the client secret sealed.
pub mod registration {
    pub use crate::app::{
        AppChange, AppCredential, AppRegistration, Apps, DEFAULT_GOOGLE_REDIRECT_URI,
        DEFAULT_MICROSOFT_REDIRECT_URI, DEFAULT_MICROSOFT_TENANT, EndpointOverrides, Endpoints,
        GMAIL_API_URL, GOOGLE_SCOPES, MICROSOFT_SCOPES, MicrosoftCloud,
        check_client_secret_allowed, parse_endpoint_url, parse_redirect_uri,
    };
}

/// App-only credentials and their tokens: Microsoft's client credentials grant (a client
/// secret or a certificate's signed assertion) and Google's JWT bearer grant for a
/// service account with domain-wide delegation. App tokens have no refresh token and no
/// user.
pub mod app_only;

/// Interactive sign-in (the browser through a loopback redirect, or a device code), the
/// checked identity it ends in, and revocation.
pub mod interactive {
    pub use crate::identity::{Identity, identity_from_id_token};
    pub use crate::oauth::{DevicePrompt, IssuedTokens};
    pub use crate::signin::{
        DEFAULT_SIGN_IN_TIMEOUT, RedirectSignIn, SignInOptions, SignedIn, revoke_at_provider,
        sign_in_with_browser, sign_in_with_device_code,
    };
}

/// The shared token store: one sealed row per (provider, tenant, identity) with its
/// refresh token, and an access token per resource.
pub mod storage {
    pub use crate::store::{
        ResourceAccessToken, StoredToken, TokenKey, TokenStatus, TokenStore, TokenSummary,
    };
}

// The README's example runs as a doctest too, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
