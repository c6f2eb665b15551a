//! mailroom's domain model: providers, server settings and their presets, accounts,
//! features, email-to-fax, validation, and the traits that cross crate boundaries
//! ([`MessageTransport`], [`Clock`]). This crate does no I/O.

mod account;
mod clock;
mod error;
mod fax;
mod feature;
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
pub use clock::{Clock, SystemClock};
pub use fax::FaxFormat;
pub use feature::{
    AUTOMATION_AGENT, AccountPolicy, Feature, FeatureCatalog, SALES_DOCUMENT, SMART_PRINTING,
};
pub use lettre::Address;
pub use provider::{Provider, TlsStartup};
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
    CredentialSecret, Credentials, Delivery, Envelope, MessageTransport, OutgoingMessage,
    TransportError, TransportErrorKind, TransportKind,
};
pub use validate::ValidationError;
