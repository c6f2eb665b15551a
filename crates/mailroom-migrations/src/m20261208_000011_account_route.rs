//! The route of an account's mail: SMTP (the setup guide's) or Microsoft Graph.
//!
//! Both account tables gain `route` (`smtp` for every existing row, `graph` for a
//! Microsoft account that sends through Graph's `sendMail`, where the tenant has SMTP AUTH
//! off) and `large_attachments` (the Graph route may send messages over Graph's 4 MB
//! request limit as a draft with upload sessions, which needs `Mail.ReadWrite`).

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
    Route,
    LargeAttachments,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One statement per column: SQLite's ALTER TABLE adds one column at a time.
        for table in [
            CompanyAccount::Table.into_iden(),
            UserAccount::Table.into_iden(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(table.clone())
                        .add_column(
                            ColumnDef::new(Column::Route)
                                .string_len(16)
                                .not_null()
                                .default("smtp")
                                .check(Expr::col(Column::Route).is_in(["smtp", "graph"])),
                        )
                        .to_owned(),
                )
                .await?;
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .add_column(
                            ColumnDef::new(Column::LargeAttachments)
                                .boolean()
                                .not_null()
                                .default(false),
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
            for column in [Column::LargeAttachments, Column::Route] {
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
