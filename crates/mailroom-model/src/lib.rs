//! mailroom's domain model: providers, server settings and their presets, accounts,
//! features, email-to-fax, validation, and the traits that cross crate boundaries
//! ([`MessageTransport`], [`Clock`]). This crate does no I/O.
//!
//! Everything an administrator types is checked here, and every refusal is a
//! [`ValidationError`] that names the field, says what is wrong and how to fix it, and may
//! carry a [`Remedy`] for a front end to offer. Storage (`mailroom-accounts`,
//! `mailroom-tokens`), transports (`mailroom-smtp`, `mailroom-gmail`) and the facade
//! (`mailroom`) build on these types; this crate needs no database and no network.
//!
//! ```
//! use mailroom_model::{
//!     AUTOMATION_AGENT, AccountPolicy, FaxFormat, FeatureCatalog, Provider, ServerSettings,
//!     ServerSettingsChange,
//! };
//!
//! // The setup guide's presets.
//! let microsoft = ServerSettings::preset(Provider::Microsoft);
//! assert_eq!((microsoft.host.as_str(), microsoft.port), ("smtp.office365.com", 587));
//!
//! // A change is applied to the preset and validated as a whole; what a provider ignores
//! // is reported, not dropped silently.
//! let google = ServerSettingsChange {
//!     provider: Some(Provider::Google),
//!     tls: Some(false),
//!     ..Default::default()
//! }
//! .apply(None)?;
//! assert_eq!(google.ignored[0].setting, "tls");
//!
//! // A refusal names the field, the problem and the fix.
//! let refused = ServerSettingsChange {
//!     provider: Some(Provider::None),
//!     host: Some("smtp.example.com:25".to_owned()),
//!     ..Default::default()
//! }
//! .apply(None)
//! .unwrap_err();
//! assert_eq!(refused.field, "host");
//!
//! // Email-to-fax: the company's format turns a fax number into an address.
//! let fax = FaxFormat::parse("{0}@fax.example.com")?;
//! assert_eq!(fax.address_for("+1 (555) 010-2000")?.to_string(), "+15550102000@fax.example.com");
//! assert!(fax.address_for("555-CALL-NOW").is_err());
//!
//! // The automation agent, with no signed-in user, sends only as the company account.
//! let features = FeatureCatalog::with_defaults();
//! assert_eq!(features.get(AUTOMATION_AGENT)?.policy, AccountPolicy::CompanyOnly);
//! # Ok::<(), mailroom_model::ValidationError>(())
//! ```

mod account;
mod clock;
mod error;
mod fax;
mod feature;
mod pacing;
mod provider;
mod remedy;
mod secret;
mod server;
mod signin;
mod transport;
pub mod validate;

pub use account::{
    AccountId, AccountRef, Binding, CompanyAccount, SYSTEM_USER_OBJECT, USER_NAME_COLUMN,
    UserAccount, binding_key,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use fax::FaxFormat;
pub use feature::{
    AUTOMATION_AGENT, AccountPolicy, Feature, FeatureCatalog, SALES_DOCUMENT, SMART_PRINTING,
};
pub use lettre::Address;
pub use pacing::{DailyUnit, Limit, MailboxLimits, PaceOverrides, Priority, mailbox_key};
pub use provider::{Auth, Provider, Route, TlsStartup};
pub use remedy::Remedy;
pub use secret::Secret;
pub use server::{
    AppliedChange, DEFAULT_TIMEOUT_MS, GMAIL_API_HOST, IgnoredSetting, OFFICE365_SMTP_HOST,
    ServerSettings, ServerSettingsChange,
};
#[cfg(any(test, feature = "mock"))]
pub use signin::MockSignInPrompt;
pub use signin::{SignInPrompt, SignInRequest};
#[cfg(any(test, feature = "mock"))]
pub use transport::MockMessageTransport;
pub use transport::{
    CredentialSecret, Credentials, Delivery, Envelope, MAX_ERROR_MESSAGE, MAX_RETRY_AFTER,
    MAX_SERVER_REPLY, MessageTransport, OutgoingMessage, TransportError, TransportErrorKind,
    TransportKind,
};
pub use validate::ValidationError;

// The README's example runs as a doctest too, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
