//! mailroom's facade: send business mail as the company account or the signed-in user's
//! own account, through Microsoft 365 (SMTP with XOAUTH2), Google (the Gmail API) or any
//! password SMTP server, with one shared, encrypted sign-in per mailbox.
//!
//! [`Mailroom::send`] resolves the account for a feature and a system user
//! (`mailroom-accounts`), obtains a valid access token (`mailroom-tokens`, refreshing it
//! once per expiry across processes, and running a sign-in only when the request has a
//! prompt and the `can_sign_in_when_sending` setting allows it), builds the message once
//! with lettre, and sends it through the account's provider: Microsoft and password
//! accounts over SMTP (`mailroom-smtp`), Google accounts through the Gmail API
//! (`mailroom-gmail`). The [`RetryPolicy`] lives here and only here: an authentication
//! rejection refreshes the token once and retries once, transient failures back off
//! exponentially with jitter and honour `Retry-After`, permanent ones stop at once.
//!
//! [`Mailroom::queue`] stores a message in the durable outbox instead, and [`Agent`] sends
//! queued messages at least once, never prompting: a message whose account needs a
//! sign-in is held with the "Failed to obtain an access token" error until an
//! administrator signs in.
//!
//! The database must carry `mailroom-migrations`' schema: [`Mailroom::open`] runs the
//! migrations itself; [`Mailroom::with_connection`] expects a connection already migrated
//! (e.g. by [`migrations::open`]). The crates underneath are re-exported whole
//! ([`accounts`], [`tokens`], [`model`], [`crypto`], [`smtp`], [`gmail`], [`migrations`])
//! for a host that keeps its own configuration screens.
//!
//! Configuring a password account and queueing a message needs no network:
//!
//! ```
//! use mailroom::accounts::Accounts;
//! use mailroom::model::{Provider, Secret, ServerSettingsChange};
//! use mailroom::{
//!     AUTOMATION_AGENT, KeyRing, Mailroom, MailroomOptions, MessageDraft, OutboxStatus,
//!     SendRequest,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = KeyRing::generate();
//! // `open` migrates the schema first (an SQLite file or PostgreSQL in production).
//! let mailroom = Mailroom::open("sqlite::memory:", MailroomOptions::new(key.clone())).await?;
//! let company = ServerSettingsChange {
//!     provider: Some(Provider::None),
//!     host: Some("smtp.example.com".to_owned()),
//!     smtp_user: Some("office@example.com".to_owned()),
//!     password: Some(Secret::new("correct horse")),
//!     ..Default::default()
//! };
//! Accounts::new(mailroom.database(), &key).set_company(&company, None).await?;
//!
//! let draft = MessageDraft {
//!     to: vec!["buyer@example.com".to_owned()],
//!     subject: "Statement for November".to_owned(),
//!     text: Some("Your statement is attached.".to_owned()),
//!     ..MessageDraft::default()
//! };
//! let id = mailroom.queue(SendRequest::new(AUTOMATION_AGENT, draft)).await?;
//! let queued = mailroom.outbox().list(Some(OutboxStatus::Queued), 10).await?;
//! assert_eq!(queued[0].id, id);
//! assert_eq!(queued[0].sender, "office@example.com");
//! assert_eq!(queued[0].recipients, ["buyer@example.com"]);
//! # Ok(())
//! # }
//! ```
//!
//! Sending now, and draining the outbox with the agent:
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use mailroom::{
//!     Agent, AgentOptions, Attachment, AUTOMATION_AGENT, KeyRing, Mailroom,
//!     MailroomOptions, MessageDraft, SALES_DOCUMENT, SendRequest,
//! };
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! // The key the database's secrets are sealed with (the CLI keeps it beside the
//! // database or in MAILROOM_KEY).
//! let key = KeyRing::from_text(&std::env::var("MAILROOM_KEY")?)?;
//! let mailroom = Mailroom::open(
//!     "sqlite:///var/lib/erp/mailroom.sqlite?mode=rwc",
//!     MailroomOptions::new(key),
//! )
//! .await?;
//!
//! let message = MessageDraft {
//!     to: vec!["Customer <buyer@example.com>".to_owned()],
//!     bcc: vec!["archive@example.com".to_owned()],
//!     fax: vec!["+1 (555) 010-2000".to_owned()],
//!     subject: "Order confirmation 10234".to_owned(),
//!     text: Some("Thank you for your order.".to_owned()),
//!     html: Some("<p>Thank you for your order.</p>".to_owned()),
//!     attachments: vec![Attachment::from_path("SO-10234.pdf").await?],
//!     ..MessageDraft::default()
//! };
//! let mut request = SendRequest::new(SALES_DOCUMENT, message.clone());
//! // The host application's signed-in user: their own bound account sends if they have
//! // one, else the company account.
//! request.system_user = Some("sa".to_owned());
//! let receipt = mailroom.send(request).await?;
//! println!(
//!     "sent {} as {} ({}) via {}",
//!     receipt.message_id, receipt.account_user, receipt.reason, receipt.transport
//! );
//!
//! // Or leave it to the automation agent: queue it, and drain the outbox.
//! let id = mailroom.queue(SendRequest::new(AUTOMATION_AGENT, message)).await?;
//! println!("queued as {id}");
//! let agent = Agent::new(
//!     Arc::new(mailroom),
//!     AgentOptions {
//!         once: true,
//!         ..AgentOptions::default()
//!     },
//! );
//! let summary = agent.run(std::future::pending()).await?;
//! println!("sent {}, held for a sign-in {}", summary.sent, summary.held);
//! # Ok(())
//! # }
//! ```

mod agent;
mod doctor;
mod entity;
mod error;
mod facade;
mod message;
mod outbox;
mod outbox_clock;
mod pace;
mod retry;
mod status;
mod workflows;

pub use agent::{Agent, AgentEvent, AgentEventSink, AgentOptions, AgentSummary, MIN_LEASE};
pub use doctor::{CERTIFICATE_WARNING, CheckStatus, DoctorCheck, DoctorOptions, DoctorReport};
pub use error::{Error, Result};
pub use facade::{
    GRAPH_ONE_REQUEST, MAX_PACING_WAIT, Mailroom, MailroomOptions, Preview, ReResolved, Receipt,
    Removed, SendRequest, max_message_size, transport_kind,
};
pub use mailroom_model::Remedy;
pub use message::{Attachment, BuiltMessage, MAX_ATTACHMENT_SIZE, MessageDraft};
pub use outbox::{Outbox, OutboxStatus, QueuedMessage};
pub use outbox_clock::OutboxClock;
pub use retry::{DELIVERY_UNKNOWN_MARK, RetryPolicy};
pub use status::{
    AccountSignIn, OwnedToken, SignInState, account_sign_ins, owned_tokens, sign_in_state,
    stored_tokens,
};
pub use workflows::{
    Forgotten, Resealed, Revocation, SignInMode, SignInSession, SignInStep, SignOut,
    forget_secrets, key_state, sealed_with,
};

pub use mailroom_accounts::{Account, Accounts, ResolutionRule, Settings};
pub use mailroom_crypto::store::KeyState;
pub use mailroom_crypto::{EncryptionKey, KeyRing};
pub use mailroom_model::{
    AUTOMATION_AGENT, AccountPolicy, AccountRef, Clock, Feature, FeatureCatalog, MailboxLimits,
    ManualClock, Priority, Provider, SALES_DOCUMENT, SMART_PRINTING, SignInPrompt, SignInRequest,
    SystemClock, TransportError, TransportErrorKind, TransportKind,
};
pub use mailroom_tokens::{BrokerConfig, SignInReason};

// The crates underneath, whole, for a host that needs more than the facade (its own
// account screens, app registration, the schema): `mailroom::accounts::Accounts`,
// `mailroom::tokens::registration::Apps`, `mailroom::migrations::open`.
pub use mailroom_accounts as accounts;
pub use mailroom_crypto as crypto;
pub use mailroom_gmail as gmail;
pub use mailroom_migrations as migrations;
pub use mailroom_model as model;
pub use mailroom_smtp as smtp;
pub use mailroom_tokens as tokens;

// The README's example runs as a doctest too, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
