//! How an account obtains its tokens: a person's delegated sign-in or the app's own
//! credentials.
//!
//! Both account tables gain a nullable `auth`: null (every existing row) or `delegated`
//! for an account a person signs in for, `app-only` for a Microsoft or Google account that
//! sends with the app's own credentials (Microsoft client credentials with a secret or a
//! certificate, a Google service account with domain-wide delegation) and needs no sign-in.

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

#[derive(DeriveIden)]
enum Column {
    Auth,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            CompanyAccount::Table.into_iden(),
            UserAccount::Table.into_iden(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .add_column(
                            ColumnDef::new(Column::Auth)
                                .string_len(16)
                                .null()
                                .check(Expr::col(Column::Auth).is_in(["delegated", "app-only"])),
                        )
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            UserAccount::Table.into_iden(),
            CompanyAccount::Table.into_iden(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .drop_column(Column::Auth)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
