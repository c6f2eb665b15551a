//! Account configuration and resolution: the company account, user accounts and their
//! bindings, settings, and which account sends for a feature and user.
//!
//! [`Accounts`] works over any sea-orm connection or transaction; secrets are sealed with
//! the database key (`mailroom-crypto`) before they reach a column.
//!
//! The tables are `mailroom-migrations`' (`company_account`, `user_account`, `setting`,
//! `key_check`): run `mailroom_migrations::open` (or its `Migrator`) on the database
//! first. OAuth tokens and app registrations are `mailroom-tokens`'; this crate stores
//! only an OAuth account's settings, never its token.
//!
//! ```
//! use mailroom_accounts::{Accounts, ResolutionRule};
//! use mailroom_crypto::KeyRing;
//! use mailroom_model::{Binding, FeatureCatalog, Provider, SALES_DOCUMENT, Secret, ServerSettingsChange};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The schema comes from mailroom-migrations, which must run first.
//! let db = mailroom_migrations::open("sqlite::memory:").await?;
//! let key = KeyRing::generate();
//! let accounts = Accounts::new(&db, &key);
//!
//! // A password SMTP server for the company; the password is sealed before it is stored.
//! let company = ServerSettingsChange {
//!     provider: Some(Provider::None),
//!     host: Some("smtp.example.com".to_owned()),
//!     smtp_user: Some("office@example.com".to_owned()),
//!     password: Some(Secret::new("correct horse")),
//!     ..Default::default()
//! };
//! accounts.set_company(&company, None).await?;
//! // The host application's user `sa` has their own Microsoft 365 mailbox.
//! let own = ServerSettingsChange {
//!     provider: Some(Provider::Microsoft),
//!     smtp_user: Some("sa@contoso.example".to_owned()),
//!     ..Default::default()
//! };
//! accounts.add_user_account(&own, Some(Binding::system_user("sa")?)).await?;
//!
//! let features = FeatureCatalog::with_defaults();
//! let sales = features.get(SALES_DOCUMENT)?;
//! let for_sa = accounts.resolve(sales, Some("sa")).await?;
//! assert_eq!(for_sa.account.server().smtp_user, "sa@contoso.example");
//! let for_bob = accounts.resolve(sales, Some("bob")).await?;
//! assert_eq!(for_bob.account.server().smtp_user, "office@example.com");
//! assert!(matches!(for_bob.rule, ResolutionRule::NoBoundUserAccount { .. }));
//! # Ok(())
//! # }
//! ```

mod entity;
mod error;
mod repository;
mod resolve;

pub use error::{Error, Result};
pub use repository::{
    Account, Accounts, BindingChange, DEFAULT_OUTBOX_RETENTION_DAYS, Saved, Settings,
    account_warnings, sealed_with,
};
pub use resolve::{Resolution, ResolutionRule};

// The README's example runs as a doctest too, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
