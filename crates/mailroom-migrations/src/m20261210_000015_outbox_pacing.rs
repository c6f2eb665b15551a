//! Pacing per mailbox and fair claiming.
//!
//! - `outbox_message` gains `mailbox` (the lower-cased envelope sender: whose limits the
//!   message counts against), `priority` (0 interactive, 1 normal, 2 bulk; lower goes
//!   first) and `units` (its recipients, what Exchange's daily limit counts). Existing rows
//!   are filled from their sender and recipients. The partial index
//!   `outbox_message_mailbox_due` serves the claim's per-mailbox look-up of waiting
//!   messages in claiming order; `outbox_message_lease` finds leases that ran out.
//! - `mailbox_pace`: one row per mailbox, updated atomically by every process that sends
//!   from it: its limits as last configured, when its next message may start (the
//!   per-minute window is full), the sends of the last minute per second (`recent_sends`,
//!   JSON `[[unix second, count], ...]`, at most 60 pairs: the rolling minute), a pause (a provider's throttling reply, or the daily limit reached) and
//!   its reason, how many pauses in a row (the backoff), and when a claim last served it
//!   (the round-robin order across mailboxes). Rows are made for the mailboxes of waiting
//!   messages.
//! - `mailbox_usage`: what each mailbox sent per minute (units: recipients or messages),
//!   summed over the last 24 hours for the rolling daily limit; minutes older than that
//!   are deleted as new ones are written.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum OutboxMessage {
    Table,
    Mailbox,
    Priority,
    Units,
}

#[derive(DeriveIden)]
enum MailboxPace {
    Table,
    Mailbox,
    PerMinute,
    Daily,
    DailyUnit,
    Concurrent,
    NextSendAt,
    RecentSends,
    PausedUntil,
    PauseReason,
    Pauses,
    LastClaimAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum MailboxUsage {
    Table,
    Mailbox,
    Minute,
    Units,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            ColumnDef::new(OutboxMessage::Mailbox)
                .string_len(320)
                .not_null()
                .default("")
                .to_owned(),
            ColumnDef::new(OutboxMessage::Priority)
                .small_integer()
                .not_null()
                .default(1)
                .to_owned(),
            ColumnDef::new(OutboxMessage::Units)
                .integer()
                .not_null()
                .default(1)
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(OutboxMessage::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(MailboxPace::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(MailboxPace::Mailbox)
                            .string_len(320)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(MailboxPace::PerMinute).integer().null())
                    .col(ColumnDef::new(MailboxPace::Daily).integer().null())
                    .col(
                        ColumnDef::new(MailboxPace::DailyUnit)
                            .string_len(16)
                            .not_null()
                            .default("messages"),
                    )
                    .col(ColumnDef::new(MailboxPace::Concurrent).integer().null())
                    .col(
                        ColumnDef::new(MailboxPace::NextSendAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(MailboxPace::RecentSends).text().null())
                    .col(
                        ColumnDef::new(MailboxPace::PausedUntil)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(MailboxPace::PauseReason).text().null())
                    .col(
                        ColumnDef::new(MailboxPace::Pauses)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(MailboxPace::LastClaimAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MailboxPace::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MailboxUsage::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(MailboxUsage::Mailbox)
                            .string_len(320)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MailboxUsage::Minute)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(MailboxUsage::Units).integer().not_null())
                    .primary_key(
                        Index::create()
                            .col(MailboxUsage::Mailbox)
                            .col(MailboxUsage::Minute),
                    )
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        let recipients = match db.get_database_backend() {
            DatabaseBackend::Postgres => "json_array_length(recipients::json)",
            _ => "json_array_length(recipients)",
        };
        db.execute_unprepared(&format!(
            "UPDATE outbox_message SET mailbox = lower(trim(sender)), units = {recipients}"
        ))
        .await?;
        // Partial indexes: the same SQL on PostgreSQL and SQLite.
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS outbox_message_mailbox_due ON outbox_message \
             (mailbox, priority, next_attempt_at, id) WHERE status IN ('queued', 'held')",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS outbox_message_lease ON outbox_message \
             (lease_until) WHERE status = 'sending'",
        )
        .await?;
        let epoch = match db.get_database_backend() {
            DatabaseBackend::Postgres => "TIMESTAMPTZ '1970-01-01 00:00:00+00'",
            _ => "'1970-01-01T00:00:00+00:00'",
        };
        db.execute_unprepared(&format!(
            "INSERT INTO mailbox_pace (mailbox, daily_unit, next_send_at, pauses, last_claim_at, updated_at) \
             SELECT DISTINCT mailbox, 'messages', {epoch}, 0, {epoch}, {epoch} FROM outbox_message \
             WHERE status IN ('queued', 'held', 'sending')"
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS outbox_message_lease")
            .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS outbox_message_mailbox_due")
            .await?;
        for table in [
            MailboxUsage::Table.into_iden(),
            MailboxPace::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        for column in [
            OutboxMessage::Units.into_iden(),
            OutboxMessage::Priority.into_iden(),
            OutboxMessage::Mailbox.into_iden(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(OutboxMessage::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
