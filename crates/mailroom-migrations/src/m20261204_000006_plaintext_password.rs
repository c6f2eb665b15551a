//! The per-account opt-in to send a password without TLS to a server that is not on this
//! machine (`allow_plaintext_password`, off for every existing account).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum CompanyAccount {
    Table,
    AllowPlaintextPassword,
}

#[derive(DeriveIden)]
enum UserAccount {
    Table,
    AllowPlaintextPassword,
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
                        ColumnDef::new(CompanyAccount::AllowPlaintextPassword)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(UserAccount::Table)
                    .add_column(
                        ColumnDef::new(UserAccount::AllowPlaintextPassword)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(UserAccount::Table)
                    .drop_column(UserAccount::AllowPlaintextPassword)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(CompanyAccount::Table)
                    .drop_column(CompanyAccount::AllowPlaintextPassword)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
