//! A queued message's bytes in pieces of at most 1 MiB (`outbox_chunk`), so that neither
//! writing nor reading a large message makes the database or its driver hold whole
//! copies of it. Rows queued before keep their bytes in `outbox_message.bytes`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum OutboxMessage {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum OutboxChunk {
    Table,
    MessageId,
    Seq,
    Data,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OutboxChunk::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(OutboxChunk::MessageId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OutboxChunk::Seq)
                            .integer()
                            .not_null()
                            .check(Expr::col(OutboxChunk::Seq).gte(0)),
                    )
                    .col(ColumnDef::new(OutboxChunk::Data).binary().not_null())
                    .primary_key(
                        Index::create()
                            .col(OutboxChunk::MessageId)
                            .col(OutboxChunk::Seq),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(OutboxChunk::Table, OutboxChunk::MessageId)
                            .to(OutboxMessage::Table, OutboxMessage::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OutboxChunk::Table).to_owned())
            .await
    }
}
