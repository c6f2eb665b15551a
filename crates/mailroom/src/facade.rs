//! [`Mailroom`]: resolve the account, obtain its credentials, pick the transport by
//! provider, send with the retry policy, and say what happened in a [`Receipt`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use mailroom_accounts::{Account, Accounts};
use mailroom_crypto::KeyRing;
use mailroom_gmail::{GmailConfig, GmailTransport};
use mailroom_graph::{GraphConfig, GraphTransport};
use mailroom_model::AccountId;
use mailroom_model::{
    AccountRef, Clock, CredentialSecret, Credentials, Envelope, FaxFormat, FeatureCatalog,
    MessageTransport, Priority, Provider, Route, ServerSettings, SignInPrompt, SystemClock,
    TransportKind,
};
use mailroom_smtp::{SmtpTransport, SmtpTransportConfig};
use mailroom_tokens::{
    AccessToken, BrokerConfig, OAuthHttp, SignInReason, TokenBroker, TokenTarget,
    registration::Apps,
};
use sea_orm::DatabaseConnection;
use serde::Serialize;

use crate::message::MessageDraft;
use crate::outbox::{Claimed, Outbox};
use crate::outbox_clock::OutboxClock;
use crate::{Result, RetryPolicy};

/// How a [`Mailroom`] is set up. [`MailroomOptions::new`] gives the production defaults.
#[derive(Clone)]
pub struct MailroomOptions {
    /// The keys this host has (the CLI finds them in `MAILROOM_KEY`, `MAILROOM_KEY_FILE`
    /// or beside an SQLite file); the database says which one seals.
    pub key: KeyRing,
    /// Extra trusted root certificates (PEM) for both transports: a company CA, a proxy's,
    /// or a test server's. Certificates are always verified.
    pub extra_root_pem: Option<Vec<u8>>,
    /// The host application's sending features.
    pub features: FeatureCatalog,
    /// How transient failures are retried.
    pub retry: RetryPolicy,
    /// The clock token expiry is judged by.
    pub clock: Arc<dyn Clock>,
    /// The clock of the outbox's times (claims, leases, next attempts): the database's by
    /// default, so agents on hosts with skewed clocks agree about when a lease ran out.
    pub outbox_clock: OutboxClock,
    /// Tuning of the token broker.
    pub broker: BrokerConfig,
    /// Connections (and sends in flight) per SMTP account; `None` (the default) takes the
    /// provider's: 3 for Microsoft 365, Exchange Online's limit per mailbox (a fourth
    /// connection is refused with `432 4.3.2`), 4 for password servers.
    pub smtp_pool_size: Option<usize>,
    /// How long SMTP waits for the server's reply after the whole message was sent
    /// (independent of an account's timeout; RFC 5321 says ten minutes). Past it the
    /// outcome is unknown: `DeliveryUnknown`, never retried at once.
    pub smtp_final_reply_timeout: Duration,
    /// Every send goes through this transport instead of SMTP or the Gmail API (dry runs,
    /// benchmarks). `None` in production.
    pub transport_override: Option<Arc<dyn MessageTransport>>,
    /// How long a resolved account is reused without reading the database again (per
    /// feature and user, or per named account). An account changed by another process
    /// takes effect within this time; `Duration::ZERO` reads the database for every send;
    /// [`Mailroom::forget_cached`] clears it.
    pub resolution_cache_ttl: Duration,
    /// How long [`Mailroom::send`] waits for room in its mailbox's per-minute limit before
    /// it refuses with [`Error::MailboxLimit`] (default [`MAX_PACING_WAIT`]).
    pub pacing_wait: Duration,
}

impl MailroomOptions {
    /// The defaults, with the database's key (an [`crate::EncryptionKey`]) or a host's
    /// key ring during a rotation.
    pub fn new(key: impl Into<KeyRing>) -> Self {
        Self {
            key: key.into(),
            extra_root_pem: None,
            features: FeatureCatalog::with_defaults(),
            retry: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
            outbox_clock: OutboxClock::database(),
            broker: BrokerConfig::default(),
            smtp_pool_size: None,
            smtp_final_reply_timeout: mailroom_smtp::DEFAULT_FINAL_REPLY_TIMEOUT,
            transport_override: None,
            resolution_cache_ttl: Duration::from_secs(1),
            pacing_wait: MAX_PACING_WAIT,
        }
    }
}

impl fmt::Debug for MailroomOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailroomOptions")
            .field("key", &self.key)
            .field(
                "extra_root_pem",
                &self.extra_root_pem.as_ref().map(|pem| pem.len()),
            )
            .field("features", &self.features)
            .field("retry", &self.retry)
            .field("outbox_clock", &self.outbox_clock)
            .field("smtp_pool_size", &self.smtp_pool_size)
            .field("smtp_final_reply_timeout", &self.smtp_final_reply_timeout)
            .field("transport_override", &self.transport_override)
            .field("resolution_cache_ttl", &self.resolution_cache_ttl)
            .field("pacing_wait", &self.pacing_wait)
            .finish_non_exhaustive()
    }
}

/// The longest a send waits for room in its mailbox's per-minute limit before it is
/// refused ([`Error::MailboxLimit`]).
pub const MAX_PACING_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// One send: which feature sends, for which system user, what, and whether the caller may
/// run a sign-in.
#[derive(Debug, Clone)]
pub struct SendRequest<'a> {
    /// The sending feature, e.g. [`mailroom_model::SALES_DOCUMENT`].
    pub feature: String,
    /// The system user signed in to the host application, if any.
    pub system_user: Option<String>,
    /// Send with this account instead of resolving one (the CLI's `--company`).
    pub account: Option<AccountRef>,
    /// The message.
    pub message: MessageDraft,
    /// A sign-in prompt when this caller can talk to a person; `None` never prompts (the
    /// `can_sign_in_when_sending` setting applies on top).
    pub sign_in: Option<&'a dyn SignInPrompt>,
    /// Which queued messages go first ([`Mailroom::queue`] only): interactive before
    /// normal before bulk, across mailboxes.
    pub priority: Priority,
}

impl SendRequest<'_> {
    /// A request for `feature` with no user, no prompt, and the account resolved.
    pub fn new(feature: impl Into<String>, message: MessageDraft) -> Self {
        Self {
            feature: feature.into(),
            system_user: None,
            account: None,
            message,
            sign_in: None,
            priority: Priority::Normal,
        }
    }
}

/// What [`Mailroom::remove_account`] did besides removing the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removed {
    /// The queued and held messages moved to another account.
    pub re_resolved: Vec<ReResolved>,
}

/// A queued message moved to another account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReResolved {
    /// The outbox id.
    pub id: i64,
    /// The account it sends with now.
    pub account: AccountRef,
}

/// What a successful send did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// The account that sent.
    pub account: AccountRef,
    /// Its SMTP user (the mailbox that authenticated).
    #[serde(rename = "address")]
    pub account_user: String,
    /// Why that account was used.
    pub reason: String,
    /// The transport that delivered.
    #[serde(serialize_with = "serialize_display")]
    pub transport: TransportKind,
    /// The message's `Message-ID`, the same on every retry.
    pub message_id: String,
    /// The provider's id of the sent message (Gmail), when it gives one.
    pub provider_message_id: Option<String>,
    /// The server's final reply.
    pub reply: String,
    /// How many times the message was handed to the transport.
    pub attempts: u32,
}

fn serialize_display<S: serde::Serializer>(
    value: &TransportKind,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// What a send would do, without doing it: [`Mailroom::prepare_preview`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preview {
    /// The account that would send.
    pub account: AccountRef,
    /// Its sending address (the From address, else the SMTP user).
    pub address: String,
    /// Why that account would be used.
    pub reason: String,
    /// The transport that would deliver.
    #[serde(serialize_with = "serialize_display")]
    pub transport: TransportKind,
    /// The envelope sender.
    #[serde(rename = "envelope_from")]
    pub sender: String,
    /// The envelope recipients, Bcc included.
    pub recipients: Vec<String>,
    /// The formatted message's size in bytes (without Bcc).
    pub size: usize,
    /// The Message-ID the message was given (a real send makes a new one).
    pub message_id: String,
}

/// The transport an account's messages go through: its provider's, or Microsoft Graph
/// for a Microsoft account on the Graph route.
pub fn transport_kind(server: &ServerSettings) -> TransportKind {
    match (server.provider, server.route) {
        (Provider::Google, _) => TransportKind::GmailApi,
        (Provider::Microsoft, Route::Graph) => TransportKind::GraphApi,
        (Provider::Microsoft | Provider::None, _) => TransportKind::Smtp,
    }
}

/// A message formatted and addressed, ready for delivery (now or from the outbox).
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub(crate) account: Account,
    pub(crate) reason: String,
    pub(crate) envelope: Envelope,
    pub(crate) bytes: Bytes,
    pub(crate) message_id: String,
    pub(crate) bcc_header: Option<String>,
}

/// The facade: resolve -> token -> transport. Share one per process (`Send + Sync`); it
/// caches transports (and so their connections) and tokens.
pub struct Mailroom {
    pub(crate) db: DatabaseConnection,
    pub(crate) options: MailroomOptions,
    broker: TokenBroker,
    smtp: Mutex<HashMap<AccountRef, (u64, Arc<SmtpTransport>)>>,
    gmail: Mutex<Option<Arc<GmailTransport>>>,
    graph: Mutex<Option<Arc<GraphTransport>>>,
    resolutions: Mutex<HashMap<ResolutionKey, (Instant, Account, String)>>,
}

/// What a resolution depends on: the named account, or the feature and the user (as the
/// resolution compares them: without case or surrounding spaces).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ResolutionKey {
    Named(AccountRef),
    Resolved {
        feature: String,
        user: Option<String>,
    },
}

impl ResolutionKey {
    fn of(request: &SendRequest<'_>) -> Self {
        match request.account {
            Some(named) => ResolutionKey::Named(named),
            None => ResolutionKey::Resolved {
                feature: request.feature.trim().to_lowercase(),
                user: request
                    .system_user
                    .as_deref()
                    .map(|user| user.trim().to_lowercase())
                    .filter(|user| !user.is_empty()),
            },
        }
    }
}

impl fmt::Debug for Mailroom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailroom")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Changes whenever anything that a connection depends on changes, the password
/// included, so a changed password starts a new pool. SipHash with a key drawn once per
/// process (std's `RandomState`): the value never leaves the process, and without the key
/// nobody can choose settings that collide. Computed for each send, so it is kept cheap (a
/// cryptographic digest of the same fields was a tenth of an agent's CPU per message).
fn settings_fingerprint(server: &ServerSettings) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let mut hash = KEY
        .get_or_init(std::collections::hash_map::RandomState::new)
        .build_hasher();
    server.provider.as_str().hash(&mut hash);
    server.host.hash(&mut hash);
    server.port.hash(&mut hash);
    server.tls.hash(&mut hash);
    server.tls_startup.as_str().hash(&mut hash);
    server.timeout_ms.hash(&mut hash);
    server.smtp_user.hash(&mut hash);
    server.password.as_ref().map(|p| p.expose()).hash(&mut hash);
    server.allow_plaintext_loopback.hash(&mut hash);
    server.allow_plaintext_password.hash(&mut hash);
    hash.finish()
}

/// Refuses with [`Error::OverDailyLimit`](crate::Error::OverDailyLimit) a message that
/// counts more (recipients or messages, as its provider counts) than its mailbox sends in
/// a day: no wait makes it fit. A claim checks again (the limit may have been lowered
/// since the message was queued) and fails such a message with the same text.
fn fits_a_day(prepared: &Prepared) -> Result<()> {
    let limits = prepared.account.server().mailbox_limits();
    let units = limits
        .daily_unit
        .units(prepared.envelope.recipients().len());
    match limits.daily.filter(|daily| units > *daily) {
        Some(daily) => Err(crate::Error::OverDailyLimit {
            account: prepared.account.account_ref(),
            mailbox: mailroom_model::mailbox_key(prepared.envelope.sender().as_ref()),
            units,
            unit: limits.daily_unit,
            daily,
        }),
        None => Ok(()),
    }
}

/// The largest formatted message an account's route takes: the Gmail API's `maxSize`; for
/// SMTP and for Graph with large attachments Exchange Online's default (35 MiB, the same
/// number; a password server's own `SIZE` may be lower, and its refusal is then the
/// server's); for Graph without them what one `sendMail` request carries
/// ([`GRAPH_ONE_REQUEST`]).
pub fn max_message_size(server: &ServerSettings) -> u64 {
    match transport_kind(server) {
        TransportKind::GmailApi => mailroom_gmail::MAX_MESSAGE_SIZE,
        TransportKind::GraphApi if !server.large_attachments => GRAPH_ONE_REQUEST,
        _ => 35 * 1024 * 1024,
    }
}

/// The largest message one Graph `sendMail` request carries: Graph takes requests of at
/// most 4 MB ([`mailroom_graph::REQUEST_LIMIT`]) and the MIME body is base64, 4 bytes for
/// every 3. Larger ones need the draft and upload-session path (large attachments).
pub const GRAPH_ONE_REQUEST: u64 = mailroom_graph::REQUEST_LIMIT / 4 * 3;

pub(crate) fn oauth_credentials(user: &str, token: AccessToken) -> Credentials {
    Credentials {
        user: user.to_owned(),
        secret: CredentialSecret::AccessToken(token.secret),
        version: token.version,
    }
}

impl Mailroom {
    /// Connects to `database_url` (`sqlite://path?mode=rwc` or `postgres://...`), brings
    /// the schema up to date, and checks the key.
    pub async fn open(database_url: &str, options: MailroomOptions) -> Result<Self> {
        let db = mailroom_migrations::open(database_url).await?;
        Self::with_connection(db, options).await
    }

    /// A facade over an open, migrated database; checks the key (and, once, seals the
    /// settings of a database from before settings seals).
    pub async fn with_connection(db: DatabaseConnection, options: MailroomOptions) -> Result<Self> {
        Accounts::new(&db, &options.key).verify_key().await?;
        crate::workflows::seal_settings_once(&db, &options.key).await?;
        let broker = TokenBroker::new(
            db.clone(),
            options.key.clone(),
            OAuthHttp::new(),
            options.clock.clone(),
            options.broker.clone(),
        );
        Ok(Self {
            db,
            options,
            broker,
            smtp: Mutex::new(HashMap::new()),
            gmail: Mutex::new(None),
            graph: Mutex::new(None),
            resolutions: Mutex::new(HashMap::new()),
        })
    }

    /// The database connection.
    pub fn database(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The process's token broker.
    pub(crate) fn broker(&self) -> &TokenBroker {
        &self.broker
    }

    /// The options it was opened with.
    pub fn options(&self) -> &MailroomOptions {
        &self.options
    }

    /// Forgets cached transports, app registrations and tokens (after `app set`, a
    /// sign-in or an account change in this process).
    pub fn forget_cached(&self) {
        self.broker.forget_cached();
        self.smtp.lock().expect("smtp cache lock").clear();
        *self.gmail.lock().expect("gmail cache lock") = None;
        *self.graph.lock().expect("graph cache lock") = None;
        self.resolutions
            .lock()
            .expect("resolution cache lock")
            .clear();
    }

    /// The account for `request` and why: from the resolution cache while it is fresh,
    /// else from the database. An OAuth account still waiting for its first sign-in (no
    /// SMTP user) is never cached, so the sign-in's result is seen at once.
    async fn resolve_cached(
        &self,
        request: &SendRequest<'_>,
        accounts: &Accounts<'_, DatabaseConnection>,
    ) -> Result<(Account, String)> {
        let ttl = self.options.resolution_cache_ttl;
        let key = ResolutionKey::of(request);
        if !ttl.is_zero() {
            let cache = self.resolutions.lock().expect("resolution cache lock");
            if let Some((at, account, reason)) = cache.get(&key) {
                if at.elapsed() < ttl {
                    return Ok((account.clone(), reason.clone()));
                }
            }
        }
        let (account, reason) = match request.account {
            Some(named) => (
                accounts.account(named).await?,
                format!("the {named}, named by the caller"),
            ),
            None => {
                let feature = self.options.features.get(&request.feature)?;
                let resolution = accounts
                    .resolve(feature, request.system_user.as_deref())
                    .await?;
                (resolution.account, resolution.rule.to_string())
            }
        };
        if !ttl.is_zero() && !account.server().smtp_user.is_empty() {
            self.resolutions
                .lock()
                .expect("resolution cache lock")
                .insert(key, (Instant::now(), account.clone(), reason.clone()));
        }
        Ok((account, reason))
    }

    /// Sends now: resolves the account, obtains the token (running a sign-in when the
    /// request has a prompt and the setting allows it), builds the message and sends it
    /// with the retry policy.
    pub async fn send(&self, request: SendRequest<'_>) -> Result<Receipt> {
        let prepared = self.prepare(&request).await?;
        self.pace_send(&prepared).await?;
        self.deliver(&prepared, request.sign_in, false).await
    }

    /// Counts a send now against its mailbox's limits, shared through the database with
    /// every agent and host (`pace`): waits up to [`MailroomOptions::pacing_wait`] for room
    /// in the minute, once; refuses with [`Error::MailboxLimit`] past that, at the daily
    /// limit, or while the provider's pause lasts. Mailboxes without limits (password
    /// SMTP) cost nothing here.
    async fn pace_send(&self, prepared: &Prepared) -> Result<()> {
        let limits = prepared.account.server().mailbox_limits();
        if limits.is_unlimited() {
            return Ok(());
        }
        // No wait makes it fit: refused for what it is, not held until tomorrow.
        fits_a_day(prepared)?;
        let mailbox = mailroom_model::mailbox_key(prepared.envelope.sender().as_ref());
        let units = limits
            .daily_unit
            .units(prepared.envelope.recipients().len());
        let outbox = self.outbox();
        let mut waited = false;
        loop {
            let now = outbox.now().await?;
            let (until, reason) =
                match crate::pace::acquire(&self.db, &mailbox, &limits, units, now).await? {
                    crate::pace::Permit::Go => return Ok(()),
                    crate::pace::Permit::Wait(until) => (
                        until,
                        format!(
                            "it sent its limit of {} messages in the last minute",
                            limits.per_minute.unwrap_or_default()
                        ),
                    ),
                    crate::pace::Permit::Paused { until, reason } => {
                        return Err(crate::Error::MailboxLimit {
                            mailbox,
                            reason,
                            until,
                        });
                    }
                };
            let wait = (until - now).to_std().unwrap_or_default();
            if waited || wait > self.options.pacing_wait {
                return Err(crate::Error::MailboxLimit {
                    mailbox,
                    reason,
                    until,
                });
            }
            tracing::info!(mailbox = %mailbox, wait_ms = wait.as_millis() as u64, "waiting for room in the mailbox's minute");
            tokio::time::sleep(wait).await;
            waited = true;
        }
    }

    /// A dry run: resolves the account and builds the message as [`Mailroom::send`]
    /// would, and says what would be sent, with no network and no token: nothing is sent,
    /// no sign-in runs (the request's prompt is ignored), nothing is stored.
    pub async fn prepare_preview(&self, request: &SendRequest<'_>) -> Result<Preview> {
        let request = SendRequest {
            sign_in: None,
            ..request.clone()
        };
        let prepared = self.prepare(&request).await?;
        Ok(Preview {
            account: prepared.account.account_ref(),
            address: prepared.account.sender().to_owned(),
            reason: prepared.reason,
            transport: transport_kind(prepared.account.server()),
            sender: prepared.envelope.sender().to_string(),
            recipients: prepared
                .envelope
                .recipients()
                .iter()
                .map(ToString::to_string)
                .collect(),
            size: prepared.bytes.len(),
            message_id: prepared.message_id,
        })
    }

    /// Resolves the account and builds the message, without sending.
    pub(crate) async fn prepare(&self, request: &SendRequest<'_>) -> Result<Prepared> {
        self.prepare_with(request, request.message.attachments.clone())
            .await
    }

    /// [`Mailroom::prepare`] with the attachments taken by value (see
    /// [`MessageDraft::build`]'s `build_with`): the queue's path, so a large file's bytes
    /// are not held twice while the message is formatted.
    async fn prepare_with(
        &self,
        request: &SendRequest<'_>,
        attachments: Vec<crate::Attachment>,
    ) -> Result<Prepared> {
        let accounts = Accounts::new(&self.db, &self.options.key);
        let (account, reason) = self.resolve_cached(request, &accounts).await?;
        let account = self
            .learn_smtp_user(account, request.sign_in, &accounts)
            .await?;
        let fax_format: Option<FaxFormat> = if request.message.fax.is_empty() {
            None
        } else {
            match &account {
                Account::Company(company) => company.fax_format.clone(),
                Account::User(_) => accounts.company().await?.and_then(|c| c.fax_format),
            }
        };
        // The account's From address, when it has one, else its SMTP user.
        let built =
            request
                .message
                .build_with(attachments, account.sender(), fax_format.as_ref())?;
        // Refused here, before a transport is reached or an outbox row is written: a
        // message the provider would refuse anyway is neither sent nor stored.
        let limit = max_message_size(account.server());
        let size =
            built.bytes.len() as u64 + built.bcc_header.as_ref().map_or(0, |b| b.len() as u64);
        if size > limit && transport_kind(account.server()) == TransportKind::GraphApi {
            return Err(crate::Error::NeedsLargeAttachments {
                account: account.account_ref(),
                size,
                limit,
            });
        }
        if size > limit {
            return Err(crate::Error::TooLarge { size, limit });
        }
        Ok(Prepared {
            account,
            reason,
            envelope: built.envelope,
            bytes: built.bytes,
            message_id: built.message_id,
            bcc_header: built.bcc_header,
        })
    }

    /// An OAuth account learns its SMTP user at its first sign-in. Until then nothing can
    /// be sent (or queued) with it: run the sign-in now when the caller may prompt, else
    /// fail with "Failed to obtain an access token".
    async fn learn_smtp_user(
        &self,
        account: Account,
        prompt: Option<&dyn SignInPrompt>,
        accounts: &Accounts<'_, DatabaseConnection>,
    ) -> Result<Account> {
        let server = account.server();
        if !server.provider.uses_oauth() || !server.smtp_user.trim().is_empty() {
            return Ok(account);
        }
        let target = TokenTarget {
            account: account.account_ref(),
            provider: server.provider,
            address: String::new(),
            token_identity: None,
            resource: Default::default(),
            auth: server.auth,
        };
        let reason = SignInReason::NoToken;
        let Some(prompt) = self.sign_in_policy(prompt).await?.allowed_prompt() else {
            return Err(mailroom_tokens::Error::sign_in_required(&target, reason).into());
        };
        self.broker.run_sign_in(&target, &reason, prompt).await?;
        let account_ref = target.account;
        Ok(accounts.account(account_ref).await?)
    }

    async fn gmail_transport(&self) -> Result<Arc<GmailTransport>> {
        if let Some(transport) = self.gmail.lock().expect("gmail cache lock").as_ref() {
            return Ok(transport.clone());
        }
        let app = Apps::new(&self.db, &self.options.key)
            .require(Provider::Google)
            .await?;
        let base_url = app.gmail_api_url();
        let config = GmailConfig {
            // The app registration accepts http:// only for a loopback host.
            allow_plaintext_loopback: base_url.scheme() == "http",
            extra_root_pem: self.options.extra_root_pem.clone(),
            ..GmailConfig::with_base_url(base_url)
        };
        let transport = Arc::new(GmailTransport::new(config)?);
        *self.gmail.lock().expect("gmail cache lock") = Some(transport.clone());
        Ok(transport)
    }

    /// The Graph transport on the Microsoft app's Graph base URL (its cloud's, or the one
    /// set), shared by every Graph-route account; rebuilt after `forget_cached`.
    async fn graph_transport(&self) -> Result<Arc<GraphTransport>> {
        if let Some(transport) = self.graph.lock().expect("graph cache lock").as_ref() {
            return Ok(transport.clone());
        }
        let app = Apps::new(&self.db, &self.options.key)
            .require(Provider::Microsoft)
            .await?;
        let base_url = app.graph_api_url();
        let config = GraphConfig {
            // The app registration accepts http:// only for a loopback host.
            allow_plaintext_loopback: base_url.scheme() == "http",
            extra_root_pem: self.options.extra_root_pem.clone(),
            ..GraphConfig::with_base_url(base_url)
        };
        let transport = Arc::new(GraphTransport::new(config)?);
        *self.graph.lock().expect("graph cache lock") = Some(transport.clone());
        Ok(transport)
    }

    pub(crate) fn smtp_transport(&self, account: &Account) -> Result<Arc<SmtpTransport>> {
        let server = account.server();
        let fingerprint = settings_fingerprint(server);
        let mut cache = self.smtp.lock().expect("smtp cache lock");
        if let Some((known, transport)) = cache.get(&account.account_ref()) {
            if *known == fingerprint {
                return Ok(transport.clone());
            }
        }
        let mut config = SmtpTransportConfig::new(server.clone())
            .with_final_reply_timeout(self.options.smtp_final_reply_timeout);
        if let Some(pool_size) = self.options.smtp_pool_size {
            config = config.with_pool_size(pool_size);
        }
        if let Some(pem) = &self.options.extra_root_pem {
            config = config.with_extra_root_pem(pem.clone());
        }
        let transport = Arc::new(SmtpTransport::new(config)?);
        cache.insert(account.account_ref(), (fingerprint, transport.clone()));
        Ok(transport)
    }

    pub(crate) async fn transport_for(
        &self,
        account: &Account,
    ) -> Result<Arc<dyn MessageTransport>> {
        if let Some(transport) = &self.options.transport_override {
            return Ok(transport.clone());
        }
        Ok(match transport_kind(account.server()) {
            TransportKind::GmailApi => self.gmail_transport().await?,
            TransportKind::GraphApi => self.graph_transport().await?,
            _ => self.smtp_transport(account)?,
        })
    }

    pub(crate) async fn credentials(
        &self,
        account: &Account,
        target: &TokenTarget,
        prompt: Option<&dyn SignInPrompt>,
    ) -> Result<Credentials> {
        let server = account.server();
        if !server.provider.uses_oauth() {
            return Ok(Credentials {
                user: server.smtp_user.clone(),
                secret: match &server.password {
                    Some(password) => CredentialSecret::Password(password.clone()),
                    None => CredentialSecret::None,
                },
                version: settings_fingerprint(server),
            });
        }
        let token = match self.broker.access_token(target).await {
            Ok(token) => token,
            Err(error) => {
                // Only now is the policy (and its setting) needed: most sends have a token.
                let allowed = match (&error, prompt) {
                    (mailroom_tokens::Error::SignInRequired { .. }, Some(_)) => {
                        self.sign_in_policy(prompt).await?.allowed_prompt()
                    }
                    _ => None,
                };
                let (Some(prompt), mailroom_tokens::Error::SignInRequired { reason, .. }) =
                    (allowed, &error)
                else {
                    return Err(error.into());
                };
                self.broker.run_sign_in(target, reason, prompt).await?;
                self.broker.access_token(target).await?
            }
        };
        Ok(oauth_credentials(&server.smtp_user, token))
    }
}

/// The outbox and the agent's side of the facade.
impl Mailroom {
    /// Stores the message in the outbox for the agent and returns its id. The account is
    /// resolved and the message formatted now (one Message-ID for every delivery); the
    /// agent sends it without ever prompting.
    pub async fn queue(&self, mut request: SendRequest<'_>) -> Result<i64> {
        // The attachments move into the encoder: their bytes are not held twice while the
        // message is formatted, and are freed before the row is written.
        let attachments = std::mem::take(&mut request.message.attachments);
        let prepared = self.prepare_with(&request, attachments).await?;
        // A message no day's limit lets through is refused now, not queued to fail later.
        fits_a_day(&prepared)?;
        let outbox = self.outbox();
        let now = outbox.now().await?;
        outbox.insert(prepared, &request, now).await
    }

    /// Removes user account `id`, in one transaction. Queued or held messages that send
    /// with it refuse the removal ([`Error::AccountInUse`] names them) unless `force`:
    /// then each is re-resolved first, to the account its feature and system user pick
    /// once this account is gone (the company account, unless another account is bound),
    /// with its envelope sender set to that account's address. Its stored bytes keep
    /// their From header.
    pub async fn remove_account(&self, id: AccountId, force: bool) -> Result<Removed> {
        let transaction = mailroom_migrations::begin_write(&self.db).await?;
        let accounts = Accounts::new(&transaction, &self.options.key);
        accounts.user_account(id).await?;
        let waiting = crate::outbox::waiting_for(&transaction, id).await?;
        if !waiting.is_empty() && !force {
            return Err(crate::Error::AccountInUse {
                account: id,
                messages: waiting
                    .into_iter()
                    .map(|(message, subject, _, _)| (message, subject))
                    .collect(),
            });
        }
        accounts.remove_user_account(id).await?;
        let mut re_resolved = Vec::with_capacity(waiting.len());
        for (message, _, feature, system_user) in waiting {
            let feature = self.options.features.get(&feature)?;
            let resolution = accounts.resolve(feature, system_user.as_deref()).await?;
            let sender = resolution
                .account
                .sender()
                .parse::<mailroom_model::Address>()
                .ok()
                .map(|address| address.to_string());
            let account = resolution.account.account_ref();
            crate::outbox::reassign(&transaction, message, account, sender).await?;
            re_resolved.push(ReResolved {
                id: message,
                account,
            });
        }
        transaction.commit().await?;
        self.forget_cached();
        Ok(Removed { re_resolved })
    }

    /// The outbox of this database.
    pub fn outbox(&self) -> Outbox<'_> {
        Outbox::with_clock(&self.db, self.options.outbox_clock.clone())
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        DateTime::<Utc>::from(self.options.clock.now())
    }

    /// The account a claimed message was queued for, as it is configured now.
    pub(crate) async fn account(&self, account: AccountRef) -> Result<Account> {
        Ok(Accounts::new(&self.db, &self.options.key)
            .account(account)
            .await?)
    }

    /// Several accounts, each read or why not, in one query for the user accounts.
    pub(crate) async fn accounts(
        &self,
        accounts: &[AccountRef],
    ) -> Result<Vec<(AccountRef, mailroom_accounts::Result<Account>)>> {
        Ok(Accounts::new(&self.db, &self.options.key)
            .accounts(accounts)
            .await?)
    }

    /// Sends a claimed message with the account it was queued for (`account`, when the
    /// caller loaded it already); never prompts.
    pub(crate) async fn deliver_claimed(
        &self,
        message: &Claimed,
        account: Option<Account>,
    ) -> Result<Receipt> {
        let account = match account {
            Some(account) => account,
            None => self.account(message.account).await?,
        };
        let prepared = Prepared {
            account,
            reason: format!("the {} the message was queued for", message.account),
            envelope: message.envelope.clone(),
            bytes: message.bytes.clone(),
            message_id: message.message_id.clone(),
            bcc_header: message.bcc_header.clone(),
        };
        self.deliver(&prepared, None, true).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_change_changes_the_fingerprint() {
        let mut settings = ServerSettings::preset(Provider::None);
        settings.host = "smtp.example.net".to_owned();
        settings.password = Some("one".into());
        let before = settings_fingerprint(&settings);
        settings.password = Some("two".into());
        assert_ne!(before, settings_fingerprint(&settings));
        assert_eq!(
            settings_fingerprint(&settings),
            settings_fingerprint(&settings.clone())
        );
    }

    #[test]
    fn a_resolution_is_cached_by_its_named_account_or_its_feature_and_user_as_compared() {
        let mut request = SendRequest::new(" Sales Invoice ", MessageDraft::default());
        let resolved = |user: Option<&str>| ResolutionKey::Resolved {
            feature: "sales invoice".to_owned(),
            user: user.map(str::to_owned),
        };
        assert_eq!(ResolutionKey::of(&request), resolved(None));
        request.system_user = Some(" Alice ".to_owned());
        assert_eq!(ResolutionKey::of(&request), resolved(Some("alice")));
        request.system_user = Some("   ".to_owned());
        assert_eq!(ResolutionKey::of(&request), resolved(None));
        request.account = Some(AccountRef::User(3));
        assert_eq!(
            ResolutionKey::of(&request),
            ResolutionKey::Named(AccountRef::User(3))
        );
    }

    #[test]
    fn the_largest_message_is_what_the_accounts_route_takes() {
        const THIRTY_FIVE_MIB: u64 = 36_700_160;
        let mut microsoft = ServerSettings::preset(Provider::Microsoft);
        assert_eq!(max_message_size(&microsoft), THIRTY_FIVE_MIB);
        microsoft.route = Route::Graph;
        assert_eq!(max_message_size(&microsoft), GRAPH_ONE_REQUEST);
        microsoft.large_attachments = true;
        assert_eq!(max_message_size(&microsoft), THIRTY_FIVE_MIB);
        let google = ServerSettings::preset(Provider::Google);
        assert_eq!(max_message_size(&google), THIRTY_FIVE_MIB);
    }

    #[test]
    fn the_options_debug_shows_the_settings_and_never_the_key() {
        let key = KeyRing::generate();
        let mut options = MailroomOptions::new(key.clone());
        options.extra_root_pem = Some(b"-----BEGIN CERTIFICATE-----".to_vec());
        let shown = format!("{options:?}");
        assert!(shown.starts_with("MailroomOptions { key: "), "{shown}");
        for field in [
            "extra_root_pem: Some(27)",
            "smtp_pool_size: None",
            "resolution_cache_ttl: 1s",
            "pacing_wait: 60s",
        ] {
            assert!(shown.contains(field), "{field} in {shown}");
        }
        for line in key.to_text().lines() {
            assert!(!shown.contains(line), "the key in {shown}");
        }
    }

    #[tokio::test]
    async fn several_accounts_are_read_each_or_why_not() {
        let key = KeyRing::generate();
        let mailroom = Mailroom::open("sqlite::memory:", MailroomOptions::new(key.clone()))
            .await
            .unwrap();
        let company = mailroom_model::ServerSettingsChange {
            provider: Some(Provider::None),
            host: Some("127.0.0.1".to_owned()),
            smtp_user: Some("relay".to_owned()),
            ..Default::default()
        };
        Accounts::new(&mailroom.db, &key)
            .set_company(&company, None)
            .await
            .unwrap();
        let read = mailroom
            .accounts(&[AccountRef::Company, AccountRef::User(99)])
            .await
            .unwrap();
        let read: HashMap<AccountRef, bool> = read
            .into_iter()
            .map(|(account, result)| (account, result.is_ok()))
            .collect();
        assert_eq!(
            read,
            HashMap::from([(AccountRef::Company, true), (AccountRef::User(99), false)])
        );
    }

    #[tokio::test]
    async fn the_facades_debug_is_its_options() {
        let options = MailroomOptions::new(KeyRing::generate());
        let mailroom = Mailroom::open("sqlite::memory:", options).await.unwrap();
        let shown = format!("{mailroom:?}");
        // The outbox clock's offset in the options moves with each reading of the database.
        assert!(
            shown.starts_with("Mailroom { options: MailroomOptions { key: ")
                && shown.contains("pacing_wait: 60s")
                && shown.ends_with(", .. }, .. }"),
            "{shown}"
        );
    }
}
