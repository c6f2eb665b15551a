//! An account's From address (for password accounts whose login is not an address), and
//! the subject of each queued message (shown by the queue without loading the bytes).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum CompanyAccount {
    Table,
    FromAddress,
}

#[derive(DeriveIden)]
enum UserAccount {
    Table,
    FromAddress,
}

#[derive(DeriveIden)]
enum OutboxMessage {
    Table,
    Subject,
    Status,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One statement per column: SQLite's ALTER TABLE adds one column at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(CompanyAccount::Table)
                    .add_column(
                        ColumnDef::new(CompanyAccount::FromAddress)
                            .string_len(254)
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(UserAccount::Table)
                    .add_column(
                        ColumnDef::new(UserAccount::FromAddress)
                            .string_len(254)
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(OutboxMessage::Table)
                    .add_column(ColumnDef::new(OutboxMessage::Subject).text().null())
                    .to_owned(),
            )
            .await?;
        // What a purge scans: finished messages by status and age.
        manager
            .create_index(
                Index::create()
                    .name("outbox_message_finished")
                    .table(OutboxMessage::Table)
                    .col(OutboxMessage::Status)
                    .col(OutboxMessage::UpdatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("outbox_message_finished")
                    .table(OutboxMessage::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(OutboxMessage::Table)
                    .drop_column(OutboxMessage::Subject)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(UserAccount::Table)
                    .drop_column(UserAccount::FromAddress)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(CompanyAccount::Table)
                    .drop_column(CompanyAccount::FromAddress)
                    .to_owned(),
            )
            .await
    }
}
