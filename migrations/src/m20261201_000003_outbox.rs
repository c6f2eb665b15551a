//! The outbox: every message queued for the automation agent, with its formatted bytes,
//! envelope, delivery state and the lease of the agent working on it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum OutboxMessage {
    Table,
    Id,
    MessageId,
    Feature,
    SystemUser,
    AccountKind,
    AccountId,
    Sender,
    Recipients,
    BccHeader,
    Bytes,
    Status,
    Attempts,
    NextAttemptAt,
    LastError,
    LeaseOwner,
    LeaseUntil,
    Transport,
    ProviderMessageId,
    Reply,
    CreatedAt,
    UpdatedAt,
    SentAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OutboxMessage::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(OutboxMessage::Id)
                            .big_integer()
                            .not_null()
                            .primary_key()
                            .auto_increment(),
                    )
                    .col(
                        ColumnDef::new(OutboxMessage::MessageId)
                            .string_len(998)
                            .not_null(),
                    )
                    .col(ColumnDef::new(OutboxMessage::Feature).string_len(64).not_null())
                    .col(ColumnDef::new(OutboxMessage::SystemUser).string_len(254).null())
                    .col(
                        ColumnDef::new(OutboxMessage::AccountKind)
                            .string_len(16)
                            .not_null()
                            .check(Expr::col(OutboxMessage::AccountKind).is_in(["company", "user"])),
                    )
                    .col(ColumnDef::new(OutboxMessage::AccountId).big_integer().null())
                    .col(ColumnDef::new(OutboxMessage::Sender).string_len(254).not_null())
                    // A JSON array of addresses (Bcc recipients included).
                    .col(ColumnDef::new(OutboxMessage::Recipients).text().not_null())
                    // The encoded `Bcc:` header line, re-added only for the Gmail API.
                    .col(ColumnDef::new(OutboxMessage::BccHeader).text().null())
                    .col(ColumnDef::new(OutboxMessage::Bytes).binary().not_null())
                    .col(
                        ColumnDef::new(OutboxMessage::Status)
                            .string_len(16)
                            .not_null()
                            .check(Expr::col(OutboxMessage::Status).is_in([
                                "queued",
                                "sending",
                                "held",
                                "sent",
                                "failed",
                                "cancelled",
                            ])),
                    )
                    .col(
                        ColumnDef::new(OutboxMessage::Attempts)
                            .integer()
                            .not_null()
                            .default(0)
                            .check(Expr::col(OutboxMessage::Attempts).gte(0)),
                    )
                    .col(
                        ColumnDef::new(OutboxMessage::NextAttemptAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(OutboxMessage::LastError).text().null())
                    .col(ColumnDef::new(OutboxMessage::LeaseOwner).string_len(64).null())
                    .col(
                        ColumnDef::new(OutboxMessage::LeaseUntil)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(OutboxMessage::Transport).string_len(16).null())
                    .col(
                        ColumnDef::new(OutboxMessage::ProviderMessageId)
                            .string_len(254)
                            .null(),
                    )
                    .col(ColumnDef::new(OutboxMessage::Reply).text().null())
                    .col(
                        ColumnDef::new(OutboxMessage::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OutboxMessage::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OutboxMessage::SentAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        // What the agent's claim scans: due messages by status and time.
        manager
            .create_index(
                Index::create()
                    .name("outbox_message_due")
                    .table(OutboxMessage::Table)
                    .col(OutboxMessage::Status)
                    .col(OutboxMessage::NextAttemptAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(OutboxMessage::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
