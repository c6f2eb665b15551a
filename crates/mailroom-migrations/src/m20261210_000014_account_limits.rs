//! An account's own sending limits, on top of its provider's documented ones.
//!
//! Both account tables gain two nullable text columns, `rate_per_minute` (messages a
//! minute) and `daily_limit` (per rolling 24 hours, in the provider's unit: recipients for
//! Microsoft, messages for Google). Each is null (every existing row: the provider's
//! default), `off` (the default lifted: no limit), or a decimal number of 1 or more. The
//! repository reads anything else as a corrupt row; the schema does not check the form,
//! because a pattern check would be written differently for SQLite and PostgreSQL.
//!
//! The limits are not in the account's settings seal. The seal guards the columns that
//! decide where the account's secret goes and whose credentials a token is issued on; a
//! limit decides neither. Someone who can write the database without the key could lift a
//! limit (the provider then throttles the mailbox) or set a slow one (messages wait in the
//! outbox), but such a writer can already hold or delete queued messages. Leaving them out
//! also keeps every seal made before these columns opening, with nothing to re-seal.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum CompanyAccount {
    Table,
}

#[derive(DeriveIden)]
enum UserAccount {
    Table,
}

#[derive(DeriveIden, Clone, Copy)]
enum Column {
    RatePerMinute,
    DailyLimit,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One statement per column: SQLite's ALTER TABLE adds one column at a time.
        for table in [
            CompanyAccount::Table.into_iden(),
            UserAccount::Table.into_iden(),
        ] {
            for column in [Column::RatePerMinute, Column::DailyLimit] {
                manager
                    .alter_table(
                        Table::alter()
                            .table(table.clone())
                            .add_column(ColumnDef::new(column).string_len(16).null())
                            .to_owned(),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            UserAccount::Table.into_iden(),
            CompanyAccount::Table.into_iden(),
        ] {
            for column in [Column::DailyLimit, Column::RatePerMinute] {
                manager
                    .alter_table(
                        Table::alter()
                            .table(table.clone())
                            .drop_column(column)
                            .to_owned(),
                    )
                    .await?;
            }
        }
        Ok(())
    }
}
