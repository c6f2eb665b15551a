//! Key rotation in two steps: the key a prepared rotation will seal with, beside the
//! database's current key in `key_check`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum KeyCheck {
    Table,
    PreparedKeyId,
    PreparedSealed,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One statement per column: SQLite's ALTER TABLE adds one column at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(KeyCheck::Table)
                    .add_column(
                        ColumnDef::new(KeyCheck::PreparedKeyId)
                            .string_len(64)
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(KeyCheck::Table)
                    .add_column(ColumnDef::new(KeyCheck::PreparedSealed).binary().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [KeyCheck::PreparedSealed, KeyCheck::PreparedKeyId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(KeyCheck::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
