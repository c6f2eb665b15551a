//! The durable outbox: messages queued for the automation agent, stored formatted (the
//! bytes without Bcc, the envelope, the encoded Bcc header line for the Gmail API), with
//! their state, attempts, next attempt, last error and the lease of the agent sending them.
//!
//! Claiming takes due messages (queued or held, next attempt reached) and messages whose
//! lease expired (their agent died) and leases them to one agent: on PostgreSQL with
//! `FOR UPDATE SKIP LOCKED`, so several agents share the work; on SQLite in one
//! `BEGIN IMMEDIATE` transaction, which takes the write lock before reading. A claim
//! counts as an attempt and is recorded before the message is handed to the transport, so
//! after a crash the attempt count shows that a duplicate is possible; the Message-ID is
//! fixed at queue time and identical on every delivery. The agent renews a lease while
//! its send is in flight ([`Outbox::renew`]); every time here comes from the
//! [`OutboxClock`], the database's clock in production.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use mailroom_model::{AccountRef, Address, Envelope};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, Statement,
};
use serde::Serialize;

use crate::entity::outbox_chunk;
use crate::entity::outbox_message::{self, Column, Entity};
use crate::facade::{Prepared, Receipt};
use crate::outbox_clock::OutboxClock;
use crate::{Error, Result, SendRequest};

/// Where a queued message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxStatus {
    /// Waiting for its next attempt.
    Queued,
    /// Leased to an agent that is sending it.
    Sending,
    /// Its account needs a sign-in; retried after an administrator signs in.
    Held,
    /// Delivered.
    Sent,
    /// Given up on (a permanent error, or too many transient ones).
    Failed,
    /// Cancelled by an administrator.
    Cancelled,
}

impl OutboxStatus {
    /// The name stored in the database and shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Queued => "queued",
            OutboxStatus::Sending => "sending",
            OutboxStatus::Held => "held",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Failed => "failed",
            OutboxStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for OutboxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OutboxStatus {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        Ok(match text {
            "queued" => OutboxStatus::Queued,
            "sending" => OutboxStatus::Sending,
            "held" => OutboxStatus::Held,
            "sent" => OutboxStatus::Sent,
            "failed" => OutboxStatus::Failed,
            "cancelled" => OutboxStatus::Cancelled,
            other => return Err(format!("unknown status `{other}`")),
        })
    }
}

/// A queued message as the CLI shows it (never its bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueuedMessage {
    /// The outbox id.
    pub id: i64,
    /// The Message-ID, the same on every delivery.
    pub message_id: String,
    /// The feature that queued it.
    pub feature: String,
    /// The system user it was queued for.
    pub system_user: Option<String>,
    /// The account it sends with (resolved at queue time).
    pub account: AccountRef,
    /// The subject (`None` for messages queued before subjects were stored).
    pub subject: Option<String>,
    /// The envelope sender.
    #[serde(rename = "envelope_from")]
    pub sender: String,
    /// The envelope recipients, Bcc included.
    pub recipients: Vec<String>,
    /// Where it is.
    pub status: OutboxStatus,
    /// How many times an agent claimed it.
    pub attempts: u32,
    /// When it is due next.
    pub next_attempt_at: DateTime<Utc>,
    /// The last failure.
    pub last_error: Option<String>,
    /// The agent holding its lease, while sending.
    pub lease_owner: Option<String>,
    /// Until when that lease holds.
    pub lease_until: Option<DateTime<Utc>>,
    /// The transport that delivered it.
    pub transport: Option<String>,
    /// The provider's message id (Gmail).
    pub provider_message_id: Option<String>,
    /// The server's final reply.
    pub reply: Option<String>,
    /// Its size in bytes.
    pub size: usize,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it was delivered.
    pub sent_at: Option<DateTime<Utc>>,
    /// The mailbox whose limits it counts against (the lower-cased envelope sender).
    pub mailbox: String,
    /// Which queued messages go first.
    pub priority: mailroom_model::Priority,
}

/// A message an agent claimed: what it needs to send it.
#[derive(Debug, Clone)]
pub(crate) struct Claimed {
    pub(crate) id: i64,
    pub(crate) attempts: u32,
    pub(crate) account: AccountRef,
    pub(crate) envelope: Envelope,
    pub(crate) bytes: Bytes,
    pub(crate) message_id: String,
    pub(crate) bcc_header: Option<String>,
    /// The error of the previous attempt, if any.
    pub(crate) last_error: Option<String>,
    /// The mailbox it counts against (the lower-cased envelope sender).
    pub(crate) mailbox: String,
}

fn account_ref_of(id: i64, kind: &str, account_id: Option<i64>) -> Result<AccountRef> {
    match (kind, account_id) {
        ("company", _) => Ok(AccountRef::Company),
        ("user", Some(id)) => Ok(AccountRef::User(id)),
        (kind, _) => Err(Error::CorruptRow {
            id,
            problem: format!("account kind `{kind}` without an id"),
        }),
    }
}

fn recipients_of(id: i64, text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|error| Error::CorruptRow {
        id,
        problem: format!("recipients are not a JSON list ({error})"),
    })
}

/// The columns the queue shows: every one but the bytes (and the Bcc line), with the
/// bytes' length computed by the database, so listing never loads a message body.
#[derive(Debug, sea_orm::FromQueryResult)]
struct Summary {
    id: i64,
    message_id: String,
    feature: String,
    system_user: Option<String>,
    account_kind: String,
    account_id: Option<i64>,
    subject: Option<String>,
    sender: String,
    recipients: String,
    status: String,
    attempts: i32,
    next_attempt_at: DateTime<Utc>,
    last_error: Option<String>,
    lease_owner: Option<String>,
    lease_until: Option<DateTime<Utc>>,
    transport: Option<String>,
    provider_message_id: Option<String>,
    reply: Option<String>,
    size: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
    mailbox: String,
    priority: i16,
}

fn summary_query() -> sea_orm::Select<Entity> {
    Entity::find()
        .select_only()
        .columns([
            Column::Id,
            Column::MessageId,
            Column::Feature,
            Column::SystemUser,
            Column::AccountKind,
            Column::AccountId,
            Column::Subject,
            Column::Sender,
            Column::Recipients,
            Column::Status,
            Column::Attempts,
            Column::NextAttemptAt,
            Column::LastError,
            Column::LeaseOwner,
            Column::LeaseUntil,
            Column::Transport,
            Column::ProviderMessageId,
            Column::Reply,
            Column::CreatedAt,
            Column::UpdatedAt,
            Column::SentAt,
            Column::Mailbox,
            Column::Priority,
        ])
        .column_as(
            Expr::cust(
                "CAST(LENGTH(\"bytes\") + COALESCE((SELECT SUM(LENGTH(c.\"data\")) FROM \"outbox_chunk\" c WHERE c.\"message_id\" = \"outbox_message\".\"id\"), 0) AS BIGINT)",
            ),
            "size",
        )
}

fn view(model: Summary) -> Result<QueuedMessage> {
    Ok(QueuedMessage {
        account: account_ref_of(model.id, &model.account_kind, model.account_id)?,
        recipients: recipients_of(model.id, &model.recipients)?,
        subject: model.subject,
        status: model.status.parse().map_err(|problem| Error::CorruptRow {
            id: model.id,
            problem,
        })?,
        id: model.id,
        message_id: model.message_id,
        feature: model.feature,
        system_user: model.system_user,
        sender: model.sender,
        attempts: model.attempts.max(0) as u32,
        next_attempt_at: model.next_attempt_at,
        last_error: model.last_error,
        lease_owner: model.lease_owner,
        lease_until: model.lease_until,
        transport: model.transport,
        provider_message_id: model.provider_message_id,
        reply: model.reply,
        size: model.size.max(0) as usize,
        created_at: model.created_at,
        updated_at: model.updated_at,
        sent_at: model.sent_at,
        mailbox: model.mailbox,
        priority: mailroom_model::Priority::from_rank(model.priority),
    })
}

/// The columns of a row that a claim leases and its send needs, in [`LeasedRow`]'s order:
/// a claim decodes these and no other (a row's other columns are the queue's, and every
/// column decoded is work per message on the agent's path).
const LEASED_COLUMNS: &str = "id, message_id, account_kind, account_id, sender, recipients, \
     bcc_header, bytes, attempts, last_error, mailbox";

/// A row as a claim leased it ([`LEASED_COLUMNS`]).
#[derive(Debug)]
struct LeasedRow {
    id: i64,
    message_id: String,
    account_kind: String,
    account_id: Option<i64>,
    sender: String,
    recipients: String,
    bcc_header: Option<String>,
    /// The message when the row holds it whole (rows queued before chunks), else empty.
    bytes: Vec<u8>,
    attempts: i32,
    last_error: Option<String>,
    mailbox: String,
}

impl LeasedRow {
    /// Reads a row of [`LEASED_COLUMNS`] by position.
    fn of(row: &sea_orm::QueryResult) -> Result<Self> {
        Ok(Self {
            id: row.try_get_by_index(0)?,
            message_id: row.try_get_by_index(1)?,
            account_kind: row.try_get_by_index(2)?,
            account_id: row.try_get_by_index(3)?,
            sender: row.try_get_by_index(4)?,
            recipients: row.try_get_by_index(5)?,
            bcc_header: row.try_get_by_index(6)?,
            bytes: row.try_get_by_index(7)?,
            attempts: row.try_get_by_index(8)?,
            last_error: row.try_get_by_index(9)?,
            mailbox: row.try_get_by_index(10)?,
        })
    }
}

fn claimed(row: LeasedRow, bytes: Bytes) -> Result<Claimed> {
    let account = account_ref_of(row.id, &row.account_kind, row.account_id)?;
    let parse = |text: &str| {
        text.parse::<Address>().map_err(|error| Error::CorruptRow {
            id: row.id,
            problem: format!("`{text}` is not an address ({error})"),
        })
    };
    let sender = parse(&row.sender)?;
    let recipients = recipients_of(row.id, &row.recipients)?
        .iter()
        .map(|text| parse(text))
        .collect::<Result<Vec<_>>>()?;
    let envelope = Envelope::new(sender, recipients)?;
    Ok(Claimed {
        id: row.id,
        attempts: row.attempts.max(0) as u32,
        account,
        envelope,
        bytes,
        message_id: row.message_id,
        bcc_header: row.bcc_header,
        last_error: row.last_error,
        mailbox: row.mailbox,
    })
}

/// The largest piece of a message's bytes in one `outbox_chunk` row. A whole message in
/// one value would be copied whole by the driver and by the database (binding, then the
/// record), several times its size in memory; pieces keep those copies small.
const CHUNK: usize = 1 << 20;

/// Reads the bytes of message `id`: `inline` when the row holds them (rows queued before
/// chunks), else its chunks in order, into one buffer sized first.
async fn message_bytes<C: ConnectionTrait>(db: &C, id: i64, inline: Vec<u8>) -> Result<Bytes> {
    if !inline.is_empty() {
        return Ok(Bytes::from(inline));
    }
    let size: Option<i64> = outbox_chunk::Entity::find()
        .select_only()
        .column_as(
            Expr::cust("CAST(COALESCE(SUM(LENGTH(\"data\")), 0) AS BIGINT)"),
            "size",
        )
        .filter(outbox_chunk::Column::MessageId.eq(id))
        .into_tuple()
        .one(db)
        .await?;
    let mut bytes = Vec::with_capacity(size.unwrap_or(0).max(0) as usize);
    for seq in 0.. {
        let Some(chunk) = outbox_chunk::Entity::find_by_id((id, seq)).one(db).await? else {
            break;
        };
        bytes.extend_from_slice(&chunk.data);
    }
    Ok(Bytes::from(bytes))
}

fn chrono_duration(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

/// The queued messages of a database.
#[derive(Debug, Clone)]
pub struct Outbox<'a> {
    db: &'a DatabaseConnection,
    clock: OutboxClock,
}

impl<'a> Outbox<'a> {
    /// Stores a prepared message as queued, due at `now`, and returns its id.
    pub(crate) async fn insert(
        &self,
        prepared: Prepared,
        request: &SendRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        let (kind, id) = match prepared.account.account_ref() {
            AccountRef::Company => ("company", None),
            AccountRef::User(id) => ("user", Some(id)),
        };
        let recipients: Vec<String> = prepared
            .envelope
            .recipients()
            .iter()
            .map(ToString::to_string)
            .collect();
        let mailbox = mailroom_model::mailbox_key(prepared.envelope.sender().as_ref());
        let limits = prepared.account.server().mailbox_limits();
        let row = outbox_message::ActiveModel {
            message_id: Set(prepared.message_id.clone()),
            feature: Set(request.feature.clone()),
            system_user: Set(request.system_user.clone()),
            account_kind: Set(kind.to_owned()),
            account_id: Set(id),
            sender: Set(prepared.envelope.sender().to_string()),
            recipients: Set(serde_json::to_string(&recipients).expect("strings serialize")),
            bcc_header: Set(prepared.bcc_header.clone()),
            // The bytes go to `outbox_chunk`, in pieces.
            bytes: Set(Vec::new()),
            subject: Set(Some(request.message.subject.clone())),
            mailbox: Set(mailbox.clone()),
            priority: Set(request.priority.rank()),
            units: Set(i32::try_from(recipients.len().max(1)).unwrap_or(i32::MAX)),
            status: Set(OutboxStatus::Queued.as_str().to_owned()),
            // `attempts` starts at the column's default, 0 (one place says it: the
            // migration's `NOT NULL DEFAULT 0`).
            next_attempt_at: Set(now),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        };
        // The row and its chunks in one transaction: the agent never sees a part.
        let transaction = mailroom_migrations::begin_write(self.db).await?;
        crate::pace::ensure(&transaction, &mailbox, &limits, now).await?;
        // A mailbox paused now (its daily limit, the provider's throttling): the message
        // is held with the pause's reason until it ends, like those queued before it.
        let mut row = row;
        if let Some((until, reason)) = crate::pace::paused(&transaction, &mailbox, now).await? {
            row.status = Set(OutboxStatus::Held.as_str().to_owned());
            row.next_attempt_at = Set(until);
            row.last_error = Set(Some(reason));
        }
        let id = Entity::insert(row).exec(&transaction).await?.last_insert_id;
        for (seq, piece) in prepared.bytes.chunks(CHUNK).enumerate() {
            outbox_chunk::Entity::insert(outbox_chunk::ActiveModel {
                message_id: Set(id),
                seq: Set(seq as i32),
                data: Set(piece.to_vec()),
            })
            .exec_without_returning(&transaction)
            .await?;
        }
        transaction.commit().await?;
        tracing::info!(id, message_id = %prepared.message_id, account = %prepared.account.account_ref(), "message queued");
        Ok(id)
    }

    /// The outbox over `db`, on the database's clock.
    pub fn new(db: &'a DatabaseConnection) -> Self {
        Self::with_clock(db, OutboxClock::database())
    }

    /// The outbox over `db`, its times taken from `clock`.
    pub fn with_clock(db: &'a DatabaseConnection, clock: OutboxClock) -> Self {
        Self { db, clock }
    }

    /// The outbox's clock.
    pub fn clock(&self) -> &OutboxClock {
        &self.clock
    }

    /// Now, on the outbox's clock (for the database's clock, read from the database).
    pub async fn now(&self) -> Result<DateTime<Utc>> {
        self.clock.read(self.db).await
    }

    async fn model(&self, id: i64) -> Result<outbox_message::Model> {
        Entity::find_by_id(id)
            .one(self.db)
            .await?
            .ok_or(Error::NotQueued { id })
    }

    /// The newest `limit` messages, optionally of one status, newest first.
    pub async fn list(
        &self,
        status: Option<OutboxStatus>,
        limit: u64,
    ) -> Result<Vec<QueuedMessage>> {
        self.page(status, None, limit).await
    }

    /// A page of at most `limit` messages, optionally of one status, newest first, with
    /// ids below `before` when given (the last id of the previous page): each page is
    /// one index range, however deep it is. Bodies are not read.
    pub async fn page(
        &self,
        status: Option<OutboxStatus>,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Vec<QueuedMessage>> {
        let mut query = summary_query().order_by_desc(Column::Id).limit(limit);
        if let Some(status) = status {
            query = query.filter(Column::Status.eq(status.as_str()));
        }
        if let Some(before) = before {
            query = query.filter(Column::Id.lt(before));
        }
        query
            .into_model::<Summary>()
            .all(self.db)
            .await?
            .into_iter()
            .map(view)
            .collect()
    }

    /// One message.
    pub async fn get(&self, id: i64) -> Result<QueuedMessage> {
        let summary = summary_query()
            .filter(Column::Id.eq(id))
            .into_model::<Summary>()
            .one(self.db)
            .await?
            .ok_or(Error::NotQueued { id })?;
        view(summary)
    }

    /// Deletes finished messages (`statuses`: sent, cancelled or failed; any other is
    /// refused) last changed before `older_than`, at most `limit` of them when given.
    /// Returns how many were removed.
    pub async fn purge(
        &self,
        statuses: &[OutboxStatus],
        older_than: DateTime<Utc>,
        limit: Option<u64>,
    ) -> Result<u64> {
        purge(self.db, statuses, older_than, limit).await
    }

    /// The stored bytes of a message (without a Bcc header).
    pub async fn bytes(&self, id: i64) -> Result<Bytes> {
        let model = self.model(id).await?;
        message_bytes(self.db, id, model.bytes).await
    }

    /// How many messages are in each status.
    pub async fn counts(&self) -> Result<BTreeMap<OutboxStatus, u64>> {
        self.counts_where(None).await
    }

    /// How many messages are in each of `statuses` (absent: none), through the index on
    /// status: the open ones (queued, sending, held, failed) are counted quickly however
    /// long the history of sent messages is.
    pub async fn counts_of(
        &self,
        statuses: &[OutboxStatus],
    ) -> Result<BTreeMap<OutboxStatus, u64>> {
        self.counts_where(Some(statuses)).await
    }

    async fn counts_where(
        &self,
        statuses: Option<&[OutboxStatus]>,
    ) -> Result<BTreeMap<OutboxStatus, u64>> {
        let mut query = Entity::find();
        if let Some(statuses) = statuses {
            query = query.filter(Column::Status.is_in(statuses.iter().map(|s| s.as_str())));
        }
        let rows: Vec<(String, i64)> = query
            .select_only()
            .column(Column::Status)
            .column_as(Column::Id.count(), "count")
            .group_by(Column::Status)
            .into_tuple()
            .all(self.db)
            .await?;
        let mut counts = BTreeMap::new();
        for (status, count) in rows {
            if let Ok(status) = status.parse() {
                counts.insert(status, count.max(0) as u64);
            }
        }
        Ok(counts)
    }

    /// How many messages an agent could claim at `now`.
    pub async fn due(&self, now: DateTime<Utc>) -> Result<u64> {
        let count: Option<i64> = Entity::find()
            .select_only()
            .column_as(Column::Id.count(), "count")
            .filter(
                Column::Status
                    .is_in(["queued", "held"])
                    .and(Column::NextAttemptAt.lte(now))
                    .or(Column::Status.eq("sending").and(Column::LeaseUntil.lt(now))),
            )
            .into_tuple()
            .one(self.db)
            .await?;
        Ok(count.unwrap_or(0).max(0) as u64)
    }

    /// Makes a failed, held or queued message due now. A failed message starts its
    /// attempts afresh, so the retry policy gives it its full number again.
    pub async fn retry(&self, id: i64) -> Result<QueuedMessage> {
        let model = self.model(id).await?;
        match model.status.as_str() {
            "failed" | "held" | "queued" => {}
            status => {
                return Err(Error::WrongState {
                    id,
                    status: status.to_owned(),
                    what: "only queued, held or failed messages can be retried",
                });
            }
        }
        let now = self.now().await?;
        let attempts = if model.status == "failed" {
            0
        } else {
            model.attempts
        };
        let changed = Entity::update_many()
            .col_expr(Column::Status, Expr::value("queued"))
            .col_expr(Column::NextAttemptAt, Expr::value(now))
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .col_expr(Column::Attempts, Expr::value(attempts))
            .filter(Column::Id.eq(id))
            .filter(Column::Status.eq(model.status.clone()))
            .exec(self.db)
            .await?;
        if changed.rows_affected == 0 {
            return Err(Error::WrongState {
                id,
                status: "changing".to_owned(),
                what: "an agent changed it just now; look at it again",
            });
        }
        self.get(id).await
    }

    /// Makes every held message due now: called after an administrator signs in, so the
    /// agent retries at once instead of at the next hold interval. A message whose account
    /// still has no token is simply held again.
    pub async fn release_held(&self) -> Result<u64> {
        let now = self.now().await?;
        let released = Entity::update_many()
            .col_expr(Column::NextAttemptAt, Expr::value(now))
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .filter(Column::Status.eq("held"))
            .exec(self.db)
            .await?;
        Ok(released.rows_affected)
    }

    /// Cancels a message that is not being sent and was not sent.
    pub async fn cancel(&self, id: i64) -> Result<QueuedMessage> {
        let model = self.model(id).await?;
        let now = self.now().await?;
        let changed = Entity::update_many()
            .col_expr(Column::Status, Expr::value("cancelled"))
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .filter(Column::Id.eq(id))
            .filter(Column::Status.is_in(["queued", "held", "failed"]))
            .exec(self.db)
            .await?;
        if changed.rows_affected == 0 {
            let status = self
                .model(id)
                .await
                .map(|m| m.status)
                .unwrap_or(model.status);
            return Err(Error::WrongState {
                id,
                status,
                what: "only queued, held or failed messages can be cancelled",
            });
        }
        self.get(id).await
    }

    /// Leases up to `limit` messages due by `due_by` (`None`: now), or whose lease ran
    /// out, to `owner` for `lease`, counting an attempt for each. Now is read from the
    /// outbox's clock once, on the claim's own connection, and everything the sends need
    /// (the rows and their bytes) is read in the claim's transaction: one connection from
    /// the pool per claim.
    pub(crate) async fn claim(
        &self,
        owner: &str,
        limit: u64,
        lease: Duration,
        due_by: Option<DateTime<Utc>>,
    ) -> Result<Claim> {
        if limit == 0 {
            return Ok(Claim::default());
        }
        if self.db.get_database_backend() == DatabaseBackend::MySql {
            return Err(Error::Database(Box::new(sea_orm::DbErr::Custom(
                "MySQL is not supported; use SQLite or PostgreSQL".to_owned(),
            ))));
        }
        let transaction = mailroom_migrations::begin_write(self.db).await?;
        if self.db.get_database_backend() == DatabaseBackend::Postgres {
            // Planned for each claim's own values: a plan cached for any mailbox (what
            // PostgreSQL does for a prepared statement after five runs) reads a whole
            // backlog when one mailbox holds most of the outbox (a month end's 100,000
            // rows: 10 ms a claim instead of 3, `cargo xtask bench claim`).
            transaction
                .execute_unprepared("SET LOCAL plan_cache_mode = force_custom_plan")
                .await?;
        }
        let now = self.clock.read(&transaction).await?;
        let until = now + chrono_duration(lease);
        let due_by = due_by.unwrap_or(now);
        let (rows, busy) = claim_rows(&transaction, owner, limit, until, due_by, now).await?;
        if rows.is_empty() {
            transaction.commit().await?;
            return Ok(Claim {
                messages: Vec::new(),
                busy,
            });
        }
        // Every claimed message's pieces in one query, in order.
        let mut pieces: HashMap<i64, Vec<Vec<u8>>> = HashMap::new();
        // Two columns, read by position.
        let chunks: Vec<(i64, Vec<u8>)> = outbox_chunk::Entity::find()
            .select_only()
            .columns([outbox_chunk::Column::MessageId, outbox_chunk::Column::Data])
            .filter(
                outbox_chunk::Column::MessageId
                    .is_in(crate::pace::padded(rows.iter().map(|row| row.id).collect())),
            )
            .order_by_asc(outbox_chunk::Column::MessageId)
            .order_by_asc(outbox_chunk::Column::Seq)
            .into_tuple()
            .all(&transaction)
            .await?;
        for (message_id, data) in chunks {
            pieces.entry(message_id).or_default().push(data);
        }
        transaction.commit().await?;
        let mut messages = Vec::with_capacity(rows.len());
        for mut row in rows {
            let id = row.id;
            let inline = std::mem::take(&mut row.bytes);
            let bytes = if inline.is_empty() {
                let parts = pieces.remove(&id).unwrap_or_default();
                let mut joined = Vec::with_capacity(parts.iter().map(Vec::len).sum());
                for part in parts {
                    joined.extend_from_slice(&part);
                }
                Bytes::from(joined)
            } else {
                Bytes::from(inline)
            };
            match claimed(row, bytes) {
                Ok(message) => messages.push(message),
                Err(error) => {
                    // A row this version cannot send must not block the others.
                    self.finish(id, owner, Finish::Failed(error.to_string()), now)
                        .await?;
                }
            }
        }
        Ok(Claim {
            messages,
            busy: false,
        })
    }

    /// For benchmarks (`cargo xtask bench claim`): one claim of up to `limit` messages as
    /// `owner` at the outbox's clock, bytes loaded as for sending, then every message
    /// `owner` holds put back as it was (queued, the attempt taken back). Returns how many
    /// were claimed.
    #[doc(hidden)]
    pub async fn claim_and_release(&self, owner: &str, limit: u64) -> Result<usize> {
        let claimed = self
            .claim(owner, limit, Duration::from_secs(300), None)
            .await?
            .messages
            .len();
        Entity::update_many()
            .col_expr(Column::Status, Expr::value("queued"))
            .col_expr(Column::Attempts, Expr::col(Column::Attempts).sub(1))
            .col_expr(Column::LeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(
                Column::LeaseUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(Column::LeaseOwner.eq(owner))
            .filter(Column::Status.eq("sending"))
            .exec(self.db)
            .await?;
        Ok(claimed)
    }

    /// For benchmarks: PostgreSQL's plans (`EXPLAIN`) of the claim's two reading
    /// statements, the choice of mailboxes and the waiting messages of one mailbox.
    #[doc(hidden)]
    pub async fn explain_claim(&self) -> Result<String> {
        let backend = self.db.get_database_backend();
        let now = self.now().await?;
        let mailbox: Option<String> = self
            .db
            .query_one(Statement::from_string(
                backend,
                "SELECT mailbox FROM mailbox_pace ORDER BY mailbox LIMIT 1",
            ))
            .await?
            .map(|row| row.try_get_by_index(0))
            .transpose()?;
        let explain = |sql: String, values: Vec<sea_orm::Value>| {
            crate::pace::statement(backend, &format!("EXPLAIN {sql}"), values)
        };
        let mut plans = String::new();
        let statements = [
            (
                "mailboxes to serve",
                explain(
                    serve_sql(backend, 0),
                    vec![
                        now.into(),
                        crate::pace::day_start(now).into(),
                        now.into(),
                        32i64.into(),
                    ],
                ),
            ),
            (
                "waiting messages of a mailbox",
                explain(
                    waiting_sql(1),
                    vec![now.into(), mailbox.unwrap_or_default().into(), 16i64.into()],
                ),
            ),
        ];
        for (what, statement) in statements {
            plans.push_str(&format!("-- {what}\n"));
            for row in self.db.query_all(statement).await? {
                let line: String = row.try_get_by_index(0)?;
                plans.push_str(&line);
                plans.push('\n');
            }
        }
        Ok(plans)
    }

    /// Extends the lease of message `id` to `lease` from now, if `owner` still holds it.
    /// Returns the new expiry, or `None` when the lease was lost (it ran out and another
    /// agent claimed the message, or the message is no longer being sent).
    pub(crate) async fn renew(
        &self,
        id: i64,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<DateTime<Utc>>> {
        let now = self.clock.now_utc();
        let until = now + chrono_duration(lease);
        let renewed = Entity::update_many()
            .col_expr(Column::LeaseUntil, Expr::value(until))
            .filter(Column::Id.eq(id))
            .filter(Column::LeaseOwner.eq(owner))
            .filter(Column::Status.eq("sending"))
            .exec(self.db)
            .await?;
        Ok((renewed.rows_affected == 1).then_some(until))
    }

    /// Records the outcome of a claimed message. A delivery is recorded whoever holds the
    /// lease now (it happened); any other outcome only while `owner` still holds it.
    /// Returns whether anything was recorded (false: the lease was lost).
    pub(crate) async fn finish(
        &self,
        id: i64,
        owner: &str,
        outcome: Finish,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        finish_on(self.db, id, owner, outcome, now).await
    }

    /// Records the outcomes of several claimed messages in one transaction, with the
    /// mailboxes' pauses: a provider's throttling pauses the mailbox, a delivery ends its
    /// run of pauses. Returns, per outcome, whether it was recorded.
    pub(crate) async fn finish_batch(
        &self,
        owner: &str,
        outcomes: &[Outcome],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        // Only deliveries, the common case: each chunk of them is one statement, atomic by
        // itself, and a delivery ends its mailbox's run of pauses; no transaction needed.
        if outcomes
            .iter()
            .all(|outcome| matches!(outcome.finish, Finish::Sent(_)) && outcome.pause.is_none())
        {
            let mut recorded = vec![false; outcomes.len()];
            let sent: Vec<(usize, &Receipt)> = outcomes
                .iter()
                .enumerate()
                .filter_map(|(index, outcome)| match &outcome.finish {
                    Finish::Sent(receipt) => Some((index, receipt)),
                    _ => None,
                })
                .collect();
            record_sent(self.db, outcomes, &sent, now, &mut recorded).await?;
            let mut delivered: Vec<String> = outcomes
                .iter()
                .map(|outcome| outcome.mailbox.clone())
                .collect();
            delivered.sort();
            delivered.dedup();
            crate::pace::delivered(self.db, &delivered).await?;
            return Ok(recorded);
        }
        let transaction = mailroom_migrations::begin_write(self.db).await?;
        let mut recorded = vec![false; outcomes.len()];
        let mut delivered: Vec<String> = Vec::new();
        let mut sent: Vec<(usize, &Receipt)> = Vec::new();
        for (index, outcome) in outcomes.iter().enumerate() {
            if let Some(pause) = &outcome.pause {
                crate::pace::pause(&transaction, &outcome.mailbox, pause.0, &pause.1, now).await?;
            }
            match &outcome.finish {
                Finish::Sent(receipt) => {
                    if !delivered.contains(&outcome.mailbox) {
                        delivered.push(outcome.mailbox.clone());
                    }
                    sent.push((index, receipt));
                }
                finish => {
                    recorded[index] =
                        finish_on(&transaction, outcome.id, owner, finish.clone(), now).await?;
                }
            }
        }
        record_sent(&transaction, outcomes, &sent, now, &mut recorded).await?;
        crate::pace::delivered(&transaction, &delivered).await?;
        transaction.commit().await?;
        Ok(recorded)
    }

    /// Puts back messages `owner` claimed and did not start sending (the agent stops, or
    /// has claimed ahead of what it sends): queued and due now, the claim's attempt taken
    /// back. Returns how many were put back.
    pub(crate) async fn release(&self, owner: &str, ids: &[i64]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let backend = self.db.get_database_backend();
        let now = self.clock.now_utc();
        let ids = crate::pace::padded(ids.to_vec());
        let mut values: Vec<sea_orm::Value> = vec![owner.into(), now.into()];
        values.extend(ids.iter().map(|id| sea_orm::Value::from(*id)));
        let released = self
            .db
            .execute(crate::pace::statement(
                backend,
                &format!(
                    "UPDATE outbox_message
                     SET status = 'queued', attempts = attempts - 1, lease_owner = NULL,
                         lease_until = NULL, next_attempt_at = $2, updated_at = $2
                     WHERE lease_owner = $1 AND status = 'sending' AND id IN ({})",
                    crate::pace::placeholders(3, ids.len())
                ),
                values,
            ))
            .await?;
        Ok(released.rows_affected())
    }

    /// Extends the leases of `ids` to `lease` from now, those `owner` still holds, in one
    /// statement. Returns the new expiry and the ids whose lease was extended to it (the
    /// others were lost).
    pub(crate) async fn renew_many(
        &self,
        ids: &[i64],
        owner: &str,
        lease: Duration,
    ) -> Result<(DateTime<Utc>, Vec<i64>)> {
        let until = self.clock.now_utc() + chrono_duration(lease);
        if ids.is_empty() {
            return Ok((until, Vec::new()));
        }
        let backend = self.db.get_database_backend();
        let ids = crate::pace::padded(ids.to_vec());
        let mut values: Vec<sea_orm::Value> = vec![owner.into(), until.into()];
        values.extend(ids.iter().map(|id| sea_orm::Value::from(*id)));
        let rows = self
            .db
            .query_all(crate::pace::statement(
                backend,
                &format!(
                    "UPDATE outbox_message SET lease_until = $2
                     WHERE lease_owner = $1 AND status = 'sending' AND id IN ({})
                     RETURNING id",
                    crate::pace::placeholders(3, ids.len())
                ),
                values,
            ))
            .await?;
        let kept = rows
            .iter()
            .map(|row| row.try_get_by_index::<i64>(0).map_err(Into::into))
            .collect::<Result<_>>()?;
        Ok((until, kept))
    }
}

/// At most this many deliveries are recorded by one statement (four values each, well
/// inside SQLite's limit on a statement's values).
const SENT_PER_STATEMENT: usize = 200;

/// Records the deliveries `sent` (indexes into `outcomes`, with their receipts), one
/// statement per [`SENT_PER_STATEMENT`] of them, and marks in `recorded` those recorded.
/// A delivery is recorded whoever holds the lease now (it happened).
async fn record_sent<C: ConnectionTrait>(
    db: &C,
    outcomes: &[Outcome],
    sent: &[(usize, &Receipt)],
    now: DateTime<Utc>,
    recorded: &mut [bool],
) -> Result<()> {
    for chunk in sent.chunks(SENT_PER_STATEMENT) {
        let ids = record_sent_chunk(db, outcomes, chunk, now).await?;
        for (index, _) in chunk {
            recorded[*index] = ids.contains(&outcomes[*index].id);
        }
    }
    Ok(())
}

/// One statement of [`record_sent`]: each row's transport, provider id and reply picked by
/// its id. Returns the ids recorded.
async fn record_sent_chunk<C: ConnectionTrait>(
    db: &C,
    outcomes: &[Outcome],
    sent: &[(usize, &Receipt)],
    now: DateTime<Utc>,
) -> Result<Vec<i64>> {
    use std::fmt::Write as _;

    let backend = db.get_database_backend();
    let sent = crate::pace::padded(sent.to_vec());
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(1 + sent.len() * 4);
    values.push(now.into());
    let (mut transport, mut provider, mut reply, mut ids) =
        (String::new(), String::new(), String::new(), String::new());
    for (index, receipt) in &sent {
        let id = values.len() + 1;
        values.push(outcomes[*index].id.into());
        values.push(receipt.transport.to_string().into());
        values.push(receipt.provider_message_id.clone().into());
        values.push(receipt.reply.clone().into());
        let _ = write!(transport, " WHEN ${id} THEN ${}", id + 1);
        let _ = write!(provider, " WHEN ${id} THEN ${}", id + 2);
        let _ = write!(reply, " WHEN ${id} THEN ${}", id + 3);
        let _ = write!(ids, "{}${id}", if ids.is_empty() { "" } else { ", " });
    }
    let text = format!(
        "UPDATE outbox_message
         SET status = 'sent', sent_at = $1, updated_at = $1, last_error = NULL,
             lease_owner = NULL, lease_until = NULL,
             transport = CASE id{transport} END,
             provider_message_id = CASE id{provider} END,
             reply = CASE id{reply} END
         WHERE id IN ({ids})
         RETURNING id"
    );
    db.query_all(crate::pace::statement(backend, &text, values))
        .await?
        .iter()
        .map(|row| row.try_get_by_index::<i64>(0).map_err(Into::into))
        .collect()
}

/// One claimed message's outcome, for [`Outbox::finish_batch`].
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) id: i64,
    pub(crate) mailbox: String,
    pub(crate) finish: Finish,
    /// The provider throttled the mailbox: paused until then, for this reason.
    pub(crate) pause: Option<(DateTime<Utc>, String)>,
}

/// [`Outbox::finish`] over any connection or transaction.
async fn finish_on<C: ConnectionTrait>(
    db: &C,
    id: i64,
    owner: &str,
    outcome: Finish,
    now: DateTime<Utc>,
) -> Result<bool> {
    let mut update = Entity::update_many()
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .col_expr(Column::LeaseOwner, Expr::value(Option::<String>::None))
        .col_expr(
            Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(Column::Id.eq(id));
    match outcome {
        Finish::Sent(receipt) => {
            // Recorded whoever holds the lease now: the message was delivered.
            update = update
                .col_expr(Column::Status, Expr::value("sent"))
                .col_expr(Column::SentAt, Expr::value(now))
                .col_expr(Column::LastError, Expr::value(Option::<String>::None))
                .col_expr(
                    Column::Transport,
                    Expr::value(receipt.transport.to_string()),
                )
                .col_expr(
                    Column::ProviderMessageId,
                    Expr::value(receipt.provider_message_id),
                )
                .col_expr(Column::Reply, Expr::value(receipt.reply));
        }
        Finish::Retry { error, at } => {
            update = update
                .col_expr(Column::Status, Expr::value("queued"))
                .col_expr(Column::NextAttemptAt, Expr::value(at))
                .col_expr(Column::LastError, Expr::value(error))
                .filter(Column::LeaseOwner.eq(owner))
                .filter(Column::Status.eq("sending"));
        }
        Finish::Held { error, at } => {
            // A hold is not a delivery attempt (no message reached a transport): the
            // claim's count is taken back, so time held never uses up the retry budget.
            update = update
                .col_expr(Column::Attempts, Expr::col(Column::Attempts).sub(1))
                .col_expr(Column::Status, Expr::value("held"))
                .col_expr(Column::NextAttemptAt, Expr::value(at))
                .col_expr(Column::LastError, Expr::value(error))
                .filter(Column::LeaseOwner.eq(owner))
                .filter(Column::Status.eq("sending"));
        }
        Finish::Failed(error) => {
            // Only while this agent holds the lease: an agent that lost it (another
            // claimed the message after it ran out) must not overwrite that agent's
            // send with its own failure.
            update = update
                .col_expr(Column::Status, Expr::value("failed"))
                .col_expr(Column::LastError, Expr::value(error))
                .filter(Column::LeaseOwner.eq(owner))
                .filter(Column::Status.eq("sending"));
        }
    }
    Ok(update.exec(db).await?.rows_affected > 0)
}

/// What a claim leased.
#[derive(Debug, Default)]
pub(crate) struct Claim {
    /// The messages, in sending order.
    pub(crate) messages: Vec<Claimed>,
    /// Nothing was leased because other agents' claims held every mailbox with due
    /// messages (PostgreSQL's skipped row locks): claiming again soon finds work.
    pub(crate) busy: bool,
}

/// A message the claim may take: waiting (queued or held, due), or leased by an agent
/// whose lease ran out.
#[derive(Debug, Clone)]
struct Waiting {
    id: i64,
    mailbox: String,
    units: u32,
    priority: i32,
    next_attempt_at: DateTime<Utc>,
}

fn waiting_of(row: &sea_orm::QueryResult) -> Result<Waiting> {
    Ok(Waiting {
        id: row.try_get_by_index(0)?,
        mailbox: row.try_get_by_index(1)?,
        units: row.try_get_by_index::<i32>(2)?.max(1) as u32,
        priority: row.try_get_by_index(3)?,
        next_attempt_at: row.try_get_by_index(4)?,
    })
}

const WAITING_COLUMNS: &str =
    "id, mailbox, units, CAST(priority AS INTEGER) AS priority, next_attempt_at";

/// The claim's choice of mailboxes: free now (not paused, room in the minute), with due
/// messages (`$3`) or with `expired` run-out leases (`$5`...), interactive heads first,
/// then the least recently served; at most `$4`, locked (rows another claim holds are
/// skipped). With each: its limits, its per-minute window, its units in the rolling day
/// (minutes after `$2`) and its messages leased now (`$1`).
fn serve_sql(backend: DatabaseBackend, expired: usize) -> String {
    let due_of_p =
        "o.mailbox = p.mailbox AND o.status IN ('queued', 'held') AND o.next_attempt_at <= $3";
    let or_expired = if expired == 0 {
        String::new()
    } else {
        format!(
            " OR p.mailbox IN ({})",
            crate::pace::placeholders(5, expired)
        )
    };
    format!(
        "SELECT p.mailbox, p.per_minute, p.daily, p.daily_unit, p.concurrent, p.recent_sends,
            (SELECT CAST(COALESCE(SUM(u.units), 0) AS BIGINT) FROM mailbox_usage u
             WHERE u.mailbox = p.mailbox AND u.minute > $2),
            (SELECT CAST(COUNT(*) AS BIGINT) FROM outbox_message o
             WHERE o.mailbox = p.mailbox AND o.status = 'sending' AND o.lease_until >= $1)
         FROM mailbox_pace p
         WHERE p.next_send_at <= $1 AND (p.paused_until IS NULL OR p.paused_until <= $1)
           AND (EXISTS (SELECT 1 FROM outbox_message o WHERE {due_of_p}){or_expired})
         ORDER BY COALESCE((SELECT MIN(o.priority) FROM outbox_message o WHERE {due_of_p}), -1),
            p.last_claim_at, p.mailbox
         LIMIT $4 {}",
        crate::pace::lock_clause(backend, "FOR UPDATE OF p SKIP LOCKED")
    )
}

/// The waiting messages of `mailboxes` mailboxes due by `$1`, each (`$2k`) at most
/// `$2k+1` of them in claiming order: one statement, one index range per mailbox
/// (`outbox_message_mailbox_due`). The order names the table's `priority`, not the
/// selected cast of it, so the index gives the order and no row past the limit is read.
fn waiting_sql(mailboxes: usize) -> String {
    (0..mailboxes)
        .map(|k| {
            format!(
                "SELECT * FROM (SELECT {WAITING_COLUMNS} FROM outbox_message
                 WHERE mailbox = ${} AND status IN ('queued', 'held') AND next_attempt_at <= $1
                 ORDER BY outbox_message.priority, next_attempt_at, id LIMIT ${}) AS q{k}",
                2 * k + 2,
                2 * k + 3
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// Picks and leases the messages of one claim, in `transaction` (a write transaction):
/// mailboxes least recently served first (interactive heads before normal before bulk),
/// at most what each mailbox's limits allow now, round robin across them; records what
/// each mailbox used; holds the messages of a mailbox whose daily limit is reached, and
/// fails a message that could never fit in it. Returns the leased ids.
async fn claim_rows(
    transaction: &sea_orm::DatabaseTransaction,
    owner: &str,
    limit: u64,
    until: DateTime<Utc>,
    due_by: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(Vec<LeasedRow>, bool)> {
    use std::collections::{BTreeSet, HashMap};

    use sea_orm::Value;

    use crate::pace::{self, PaceRow, Window, lock_clause, placeholders, statement};

    let backend = transaction.get_database_backend();
    let limit = limit.min(10_000);
    // Leases that ran out (their agent died): taken again within their mailbox's limits.
    let expired: Vec<Waiting> = transaction
        .query_all(statement(
            backend,
            &format!(
                "SELECT {WAITING_COLUMNS} FROM outbox_message
                 WHERE status = 'sending' AND lease_until < $1
                 ORDER BY lease_until, id LIMIT $2 {}",
                lock_clause(backend, "FOR UPDATE SKIP LOCKED")
            ),
            [now.into(), (limit as i64).into()],
        ))
        .await?
        .iter()
        .map(waiting_of)
        .collect::<Result<_>>()?;
    let expired_mailboxes: BTreeSet<&str> = expired
        .iter()
        .map(|waiting| waiting.mailbox.as_str())
        .collect();

    // The mailboxes to serve: free now (not paused, room in the minute), with due
    // messages; the least recently served first. Rows another claim holds are skipped.
    let mut values: Vec<Value> = vec![
        now.into(),
        pace::day_start(now).into(),
        due_by.into(),
        (mailboxes_per_claim(limit) as i64).into(),
    ];
    values.extend(
        expired_mailboxes
            .iter()
            .map(|mailbox| Value::from(*mailbox)),
    );
    let rows = transaction
        .query_all(statement(
            backend,
            &serve_sql(backend, expired_mailboxes.len()),
            values.clone(),
        ))
        .await?;
    if rows.is_empty() && expired.is_empty() {
        // Nothing free: either nothing is due, or other claims hold every mailbox that
        // has due messages (their rows were skipped, not waited for).
        let busy = backend == DatabaseBackend::Postgres
            && !transaction
                .query_all(statement(
                    backend,
                    &serve_sql(DatabaseBackend::Sqlite, 0),
                    values,
                ))
                .await?
                .is_empty();
        return Ok((Vec::new(), busy));
    }
    let second = pace::unix_second(now);
    let mut paces = Vec::with_capacity(rows.len());
    for row in &rows {
        let recent: Option<String> = row.try_get_by_index(5)?;
        let mut window = Window::parse(recent.as_deref());
        window.prune(second);
        paces.push(PaceRow {
            mailbox: row.try_get_by_index(0)?,
            limits: mailroom_model::MailboxLimits {
                per_minute: pace::read_limit(row, 1)?,
                daily: pace::read_limit(row, 2)?,
                daily_unit: pace::read_unit(&row.try_get_by_index::<String>(3)?),
                concurrent: pace::read_limit(row, 4)?,
            },
            window,
            used: row.try_get_by_index::<i64>(6)?.max(0) as u64,
            in_flight: row.try_get_by_index::<i64>(7)?.max(0) as u64,
        });
    }

    // Each mailbox's candidates: its run-out leases, then its waiting messages in
    // claiming order, as many as its allowance (and the claim) can take.
    let mut candidates: HashMap<String, Vec<Waiting>> = HashMap::new();
    for waiting in expired {
        candidates
            .entry(waiting.mailbox.clone())
            .or_default()
            .push(waiting);
    }
    // Round robin gives no mailbox more than its share of the claim when every mailbox
    // has that many: each is asked for no more, so a deep claim over many backlogs reads
    // about as many rows as it leases, not the claim's size from every mailbox. With
    // uneven backlogs the claim takes less than it could (the share of a mailbox with
    // fewer is not given to the others); the agent claims again sooner.
    let share = limit.div_ceil(paces.len().max(1) as u64).max(1);
    let mut wanted: Vec<(&str, u64)> = Vec::new();
    for row in &paces {
        let have = candidates.get(&row.mailbox).map_or(0, Vec::len) as u64;
        // Asked for what its run-out leases do not already give (asking for more would
        // only read rows the allowance then leaves).
        let more = row.allowance().min(limit).min(share).saturating_sub(have);
        if more != 0 {
            wanted.push((row.mailbox.as_str(), more));
        }
    }
    if !wanted.is_empty() {
        // Padded with a mailbox asked for none, so the statement takes one of a few shapes.
        if let Some(&(last, _)) = wanted.last() {
            wanted.resize(wanted.len().next_power_of_two(), (last, 0));
        }
        let mut values: Vec<Value> = vec![due_by.into()];
        for (mailbox, count) in &wanted {
            values.push((*mailbox).into());
            values.push((*count as i64).into());
        }
        let rows = transaction
            .query_all(statement(backend, &waiting_sql(wanted.len()), values))
            .await?;
        let mut waiting: Vec<Waiting> = rows.iter().map(waiting_of).collect::<Result<_>>()?;
        waiting.sort_by(|a, b| {
            (a.priority, a.next_attempt_at, a.id).cmp(&(b.priority, b.next_attempt_at, b.id))
        });
        for message in waiting {
            candidates
                .entry(message.mailbox.clone())
                .or_default()
                .push(message);
        }
    }

    // What each mailbox may take now: its allowance, then its daily limit.
    let mut granted: Vec<(usize, Vec<Waiting>)> = Vec::new();
    let mut held: Vec<(String, DateTime<Utc>, String)> = Vec::new();
    let mut never: Vec<(i64, String)> = Vec::new();
    for (index, row) in paces.iter().enumerate() {
        let Some(list) = candidates.remove(&row.mailbox) else {
            continue;
        };
        let allowance = row.allowance().min(limit);
        let mut taken = Vec::new();
        let mut used = row.used;
        for message in list {
            if taken.len() as u64 >= allowance {
                break;
            }
            let units = row.limits.daily_unit.units(message.units as usize);
            if let Some(daily) = row.limits.daily {
                if units > daily {
                    never.push((
                        message.id,
                        pace::over_daily_limit_text(
                            units,
                            row.limits.daily_unit,
                            &row.mailbox,
                            daily,
                        ),
                    ));
                    continue;
                }
                if used + u64::from(units) > u64::from(daily) {
                    if taken.is_empty() {
                        let resumes =
                            pace::daily_resume(transaction, &row.mailbox, daily, used, units, now)
                                .await?;
                        let text = pace::daily_limit_text(
                            daily,
                            row.limits.daily_unit,
                            &row.mailbox,
                            resumes,
                        );
                        held.push((row.mailbox.clone(), resumes, text));
                    }
                    break;
                }
                used += u64::from(units);
            }
            taken.push(message);
        }
        if !taken.is_empty() {
            granted.push((index, taken));
        }
    }

    // Round robin across the mailboxes, up to the claim's limit.
    let mut picked: Vec<i64> = Vec::new();
    let mut per_mailbox: Vec<(usize, Vec<&Waiting>)> = granted
        .iter()
        .map(|(index, _)| (*index, Vec::new()))
        .collect();
    let mut round = 0;
    while (picked.len() as u64) < limit {
        let mut any = false;
        for (slot, (_, list)) in granted.iter().enumerate() {
            if (picked.len() as u64) >= limit {
                break;
            }
            if let Some(message) = list.get(round) {
                picked.push(message.id);
                per_mailbox[slot].1.push(message);
                any = true;
            }
        }
        if !any {
            break;
        }
        round += 1;
    }

    let mut leased: Vec<LeasedRow> = Vec::new();
    if !picked.is_empty() {
        let ids = pace::padded(picked.clone());
        let mut values: Vec<Value> = vec![owner.into(), until.into(), now.into()];
        values.extend(ids.iter().map(|id| Value::from(*id)));
        leased = transaction
            .query_all(statement(
                backend,
                &format!(
                    "UPDATE outbox_message
                     SET status = 'sending', lease_owner = $1, lease_until = $2,
                         attempts = attempts + 1, updated_at = $3
                     WHERE id IN ({}) AND (status IN ('queued', 'held')
                        OR (status = 'sending' AND lease_until < $3))
                     RETURNING {LEASED_COLUMNS}",
                    placeholders(4, ids.len())
                ),
                values,
            ))
            .await?
            .iter()
            .map(LeasedRow::of)
            .collect::<Result<_>>()?;
        // In the claim's order: priority, then round robin across the mailboxes.
        let order: HashMap<i64, usize> = picked
            .iter()
            .enumerate()
            .map(|(position, id)| (*id, position))
            .collect();
        // Each row's position is looked up once, not at each comparison.
        leased.sort_by_cached_key(|row| order.get(&row.id).copied());
    }

    // Each served mailbox: its minute's window, when it is free again, its turn.
    let mut usage: Vec<(String, u64)> = Vec::new();
    // Mailboxes with no rate: only their turn changes, in one statement.
    let unpaced: Vec<&str> = per_mailbox
        .iter()
        .filter(|(index, messages)| {
            !messages.is_empty() && paces[*index].limits.per_minute.is_none()
        })
        .map(|(index, _)| paces[*index].mailbox.as_str())
        .collect();
    if !unpaced.is_empty() {
        let unpaced = pace::padded(unpaced);
        let mut values: Vec<Value> = vec![now.into()];
        values.extend(unpaced.iter().map(|mailbox| Value::from(*mailbox)));
        transaction
            .execute(statement(
                backend,
                &format!(
                    "UPDATE mailbox_pace SET recent_sends = NULL, next_send_at = $1, last_claim_at = $1, updated_at = $1
                     WHERE mailbox IN ({})",
                    placeholders(2, unpaced.len())
                ),
                values,
            ))
            .await?;
    }
    for (index, messages) in &per_mailbox {
        if messages.is_empty() {
            continue;
        }
        let row = &paces[*index];
        if row.limits.daily.is_some() {
            let units: u64 = messages
                .iter()
                .map(|message| u64::from(row.limits.daily_unit.units(message.units as usize)))
                .sum();
            usage.push((row.mailbox.clone(), units));
        }
        let Some(rate) = row.limits.per_minute else {
            continue;
        };
        let mut window = row.window.clone();
        window.add(pace::counted_second(now), messages.len() as u32);
        let next = chrono::DateTime::<Utc>::from_timestamp(window.next_room(rate, second), 0)
            .unwrap_or(now)
            .max(now);
        transaction
            .execute(statement(
                backend,
                "UPDATE mailbox_pace SET recent_sends = $2, next_send_at = $3, last_claim_at = $4, updated_at = $4
                 WHERE mailbox = $1",
                [
                    row.mailbox.as_str().into(),
                    window.to_json().into(),
                    next.into(),
                    now.into(),
                ],
            ))
            .await?;
    }
    pace::record_usage(transaction, &usage, now).await?;

    // A mailbox at its daily limit: paused, and its waiting messages held with the reason.
    for (mailbox, resumes, text) in held {
        pace::pause(transaction, &mailbox, resumes, &text, now).await?;
        transaction
            .execute(statement(
                backend,
                "UPDATE outbox_message SET status = 'held', last_error = $2, next_attempt_at = $3, updated_at = $4
                 WHERE mailbox = $1 AND status IN ('queued', 'held') AND next_attempt_at < $3",
                [
                    mailbox.as_str().into(),
                    text.as_str().into(),
                    resumes.into(),
                    now.into(),
                ],
            ))
            .await?;
        tracing::warn!(mailbox = %mailbox, resumes = %resumes, "{text}");
    }
    for (id, text) in never {
        transaction
            .execute(statement(
                backend,
                "UPDATE outbox_message SET status = 'failed', last_error = $2, updated_at = $3
                 WHERE id = $1 AND status IN ('queued', 'held', 'sending')",
                [id.into(), text.as_str().into(), now.into()],
            ))
            .await?;
        tracing::error!(id, "{text}");
    }
    Ok((leased, false))
}

/// How many mailboxes a claim of `limit` messages chooses (and locks, on PostgreSQL): twice
/// the claim for a small one, so that mailboxes at their at-once limit do not starve it;
/// half of a large one (two of its messages per mailbox at least), so that the other
/// agents' claims find mailboxes left to serve.
fn mailboxes_per_claim(limit: u64) -> u64 {
    limit.div_ceil(2).max(limit.saturating_mul(2).min(8))
}

/// How a claimed message ended.
#[derive(Debug, Clone)]
pub(crate) enum Finish {
    Sent(Receipt),
    Retry { error: String, at: DateTime<Utc> },
    Held { error: String, at: DateTime<Utc> },
    Failed(String),
}

/// [`Outbox::purge`] over any connection or transaction.
pub(crate) async fn purge<C: ConnectionTrait>(
    db: &C,
    statuses: &[OutboxStatus],
    older_than: DateTime<Utc>,
    limit: Option<u64>,
) -> Result<u64> {
    for status in statuses {
        if !matches!(
            status,
            OutboxStatus::Sent | OutboxStatus::Cancelled | OutboxStatus::Failed
        ) {
            return Err(Error::NotPurgeable {
                status: status.to_string(),
            });
        }
    }
    if statuses.is_empty() {
        return Ok(0);
    }
    let names: Vec<&str> = statuses.iter().map(|status| status.as_str()).collect();
    let condition = Column::Status
        .is_in(names)
        .and(Column::UpdatedAt.lt(older_than));
    let deleted = match limit {
        None => Entity::delete_many().filter(condition).exec(db).await?,
        Some(limit) => {
            // A bounded batch: the oldest ids first, so a large backlog goes in steps.
            let ids: Vec<i64> = Entity::find()
                .select_only()
                .column(Column::Id)
                .filter(condition)
                .order_by_asc(Column::Id)
                .limit(limit)
                .into_tuple()
                .all(db)
                .await?;
            if ids.is_empty() {
                return Ok(0);
            }
            Entity::delete_many()
                .filter(Column::Id.is_in(ids))
                .exec(db)
                .await?
        }
    };
    Ok(deleted.rows_affected)
}

/// The queued and held messages that send with user account `account`: id, subject,
/// feature and system user.
pub(crate) async fn waiting_for<C: ConnectionTrait>(
    db: &C,
    account: i64,
) -> Result<Vec<(i64, Option<String>, String, Option<String>)>> {
    Ok(Entity::find()
        .select_only()
        .columns([
            Column::Id,
            Column::Subject,
            Column::Feature,
            Column::SystemUser,
        ])
        .filter(Column::AccountKind.eq("user"))
        .filter(Column::AccountId.eq(account))
        .filter(Column::Status.is_in(["queued", "held"]))
        .order_by_asc(Column::Id)
        .into_tuple()
        .all(db)
        .await?)
}

/// Points a waiting message at another account (and its envelope sender at that
/// account's address, when it is one).
pub(crate) async fn reassign<C: ConnectionTrait>(
    db: &C,
    id: i64,
    account: AccountRef,
    sender: Option<String>,
) -> Result<()> {
    let (kind, account_id) = match account {
        AccountRef::Company => ("company", None),
        AccountRef::User(id) => ("user", Some(id)),
    };
    let mut update = Entity::update_many()
        .col_expr(Column::AccountKind, Expr::value(kind))
        .col_expr(Column::AccountId, Expr::value(account_id))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.is_in(["queued", "held"]));
    if let Some(sender) = sender {
        update = update.col_expr(Column::Sender, Expr::value(sender));
    }
    update.exec(db).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_chooses_twice_its_size_in_mailboxes_when_small_and_half_when_large() {
        assert_eq!(mailboxes_per_claim(1), 2);
        assert_eq!(mailboxes_per_claim(4), 8);
        assert_eq!(mailboxes_per_claim(8), 8);
        assert_eq!(mailboxes_per_claim(16), 8);
        assert_eq!(mailboxes_per_claim(17), 9);
        assert_eq!(mailboxes_per_claim(32), 16);
        assert_eq!(mailboxes_per_claim(1024), 512);
    }

    /// A database whose company account is a password relay (nothing listens: the tests
    /// claim, they do not send), and its facade.
    async fn relay() -> (mailroom_testkit::TestDatabase, crate::Mailroom) {
        let db = mailroom_testkit::TestDatabase::new(mailroom_testkit::Backend::Sqlite).await;
        let key = crate::KeyRing::generate();
        let relay = mailroom_model::ServerSettingsChange {
            provider: Some(mailroom_model::Provider::None),
            host: Some("127.0.0.1".to_owned()),
            port: Some(9),
            smtp_user: Some("office@example.com".to_owned()),
            ..Default::default()
        };
        mailroom_accounts::Accounts::new(&db.db, &key)
            .set_company(&relay, None)
            .await
            .unwrap();
        let mailroom =
            crate::Mailroom::with_connection(db.db.clone(), crate::MailroomOptions::new(key))
                .await
                .unwrap();
        (db, mailroom)
    }

    /// Queues a message from `from` (its mailbox) and returns its id.
    async fn queue_from(mailroom: &crate::Mailroom, from: &str, subject: &str) -> i64 {
        let draft = crate::MessageDraft {
            from: Some(from.to_owned()),
            to: vec!["buyer@example.com".to_owned()],
            subject: subject.to_owned(),
            text: Some("Body".to_owned()),
            ..crate::MessageDraft::default()
        };
        mailroom
            .queue(SendRequest::new(crate::AUTOMATION_AGENT, draft))
            .await
            .unwrap()
    }

    /// Mailboxes without a rate take turns too: a claim of one serves the mailbox whose
    /// turn it is, and the next claim the other, not the first again.
    #[tokio::test]
    async fn a_mailbox_without_a_rate_waits_its_turn_after_it_was_served() {
        let (db, mailroom) = relay().await;
        for from in ["a@example.com", "b@example.com"] {
            for subject in ["one", "two"] {
                queue_from(&mailroom, from, subject).await;
            }
        }
        let outbox = mailroom.outbox();
        let mut served = Vec::new();
        for _ in 0..3 {
            let claim = outbox
                .claim("agent", 1, Duration::from_secs(60), None)
                .await
                .unwrap();
            assert_eq!(claim.messages.len(), 1);
            served.push(claim.messages[0].mailbox.clone());
        }
        assert_ne!(served[0], served[1], "{served:?}");
        assert_eq!(served[0], served[2], "{served:?}");
        db.finish().await;
    }

    /// An agent keeps the leases of the claimed messages that wait for a connection:
    /// only those it still holds and that are still being sent, each to the new expiry.
    #[tokio::test]
    async fn renewing_extends_only_the_leases_the_owner_still_holds() {
        let (db, mailroom) = relay().await;
        let mut ids = Vec::new();
        for subject in ["one", "two", "three"] {
            ids.push(queue_from(&mailroom, "office@example.com", subject).await);
        }
        let outbox = mailroom.outbox();
        let claim = outbox
            .claim("agent-a", 3, Duration::from_secs(60), None)
            .await
            .unwrap();
        assert_eq!(claim.messages.len(), 3);
        // The third was finished meanwhile: no lease to keep.
        assert!(
            outbox
                .finish(
                    ids[2],
                    "agent-a",
                    Finish::Failed("refused".to_owned()),
                    Utc::now()
                )
                .await
                .unwrap()
        );

        let before = Utc::now();
        let (renewed_until, mut kept) = outbox
            .renew_many(&ids, "agent-a", Duration::from_secs(600))
            .await
            .unwrap();
        kept.sort_unstable();
        assert_eq!(kept, ids[..2]);
        // Ten minutes from the outbox's clock (the database's), far past the claim's one
        // minute.
        assert!(
            renewed_until > before + chrono::Duration::seconds(590),
            "{renewed_until}"
        );
        for id in &ids[..2] {
            let until = outbox.get(*id).await.unwrap().lease_until.unwrap();
            assert_eq!(until, renewed_until);
        }
        assert!(
            outbox
                .renew_many(&ids, "agent-b", Duration::from_secs(600))
                .await
                .unwrap()
                .1
                .is_empty(),
            "another agent holds none of them"
        );
        assert!(
            outbox
                .renew_many(&[], "agent-a", Duration::from_secs(600))
                .await
                .unwrap()
                .1
                .is_empty()
        );
        db.finish().await;
    }
}
