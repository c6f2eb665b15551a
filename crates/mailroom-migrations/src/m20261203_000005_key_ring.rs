//! Key rotation in two steps: the key a prepared rotation will seal with, beside the
//! database's current key in `key_check`; and the settings seal of every account and app
//! registration (a seal, made with the key, over the columns that decide where a secret
//! is sent).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum KeyCheck {
    Table,
    PreparedKeyId,
    PreparedSealed,
}

#[derive(DeriveIden)]
enum CompanyAccount {
    Table,
}

#[derive(DeriveIden)]
enum UserAccount {
    Table,
}

#[derive(DeriveIden)]
enum OauthApp {
    Table,
}

#[derive(DeriveIden)]
enum Seal {
    SettingsSeal,
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
            .await?;
        for table in [
            CompanyAccount::Table.into_iden(),
            UserAccount::Table.into_iden(),
            OauthApp::Table.into_iden(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .add_column(ColumnDef::new(Seal::SettingsSeal).binary().null())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            CompanyAccount::Table.into_iden(),
            UserAccount::Table.into_iden(),
            OauthApp::Table.into_iden(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .drop_column(Seal::SettingsSeal)
                        .to_owned(),
                )
                .await?;
        }
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
