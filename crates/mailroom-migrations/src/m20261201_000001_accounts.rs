//! The accounts schema: the one company account, user accounts with unique bindings,
//! settings, and the encryption key check.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum CompanyAccount {
    Table,
    Id,
    FaxFormat,
}

#[derive(DeriveIden)]
enum UserAccount {
    Table,
    Id,
    BusinessObject,
    ColumnName,
    ColumnValue,
    BindingKey,
}

/// Server columns shared by both account tables.
#[derive(DeriveIden, Clone, Copy)]
enum Server {
    Provider,
    Host,
    Port,
    Tls,
    TlsStartup,
    TimeoutMs,
    SmtpUser,
    PasswordSealed,
    AllowPlaintextLoopback,
    Version,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Setting {
    Table,
    Key,
    Value,
}

#[derive(DeriveIden)]
enum KeyCheck {
    Table,
    Id,
    KeyId,
    Sealed,
}

fn server_columns(table: &mut TableCreateStatement) {
    table
        .col(
            ColumnDef::new(Server::Provider)
                .string_len(16)
                .not_null()
                .check(Expr::col(Server::Provider).is_in(["none", "microsoft", "google"])),
        )
        .col(ColumnDef::new(Server::Host).string_len(253).not_null())
        .col(
            ColumnDef::new(Server::Port)
                .integer()
                .not_null()
                .check(Expr::col(Server::Port).between(1, 65535)),
        )
        .col(ColumnDef::new(Server::Tls).boolean().not_null())
        .col(
            ColumnDef::new(Server::TlsStartup)
                .string_len(16)
                .not_null()
                .check(Expr::col(Server::TlsStartup).is_in(["auto", "starttls", "implicit"])),
        )
        .col(
            ColumnDef::new(Server::TimeoutMs)
                .integer()
                .not_null()
                .check(Expr::col(Server::TimeoutMs).between(1, 600_000)),
        )
        .col(ColumnDef::new(Server::SmtpUser).string_len(254).not_null())
        .col(ColumnDef::new(Server::PasswordSealed).binary().null())
        .col(
            ColumnDef::new(Server::AllowPlaintextLoopback)
                .boolean()
                .not_null()
                .default(false),
        )
        .col(
            ColumnDef::new(Server::Version)
                .big_integer()
                .not_null()
                .default(1),
        )
        .col(
            ColumnDef::new(Server::UpdatedAt)
                .timestamp_with_time_zone()
                .not_null(),
        )
        // A password belongs to password SMTP only; OAuth accounts sign in instead.
        .check(
            Expr::col(Server::PasswordSealed)
                .is_null()
                .or(Expr::col(Server::Provider).eq("none")),
        );
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut company = Table::create();
        company.table(CompanyAccount::Table).if_not_exists().col(
            // Exactly one company account: its key can only be 1.
            ColumnDef::new(CompanyAccount::Id)
                .integer()
                .not_null()
                .primary_key()
                .check(Expr::col(CompanyAccount::Id).eq(1)),
        );
        server_columns(&mut company);
        company.col(
            ColumnDef::new(CompanyAccount::FaxFormat)
                .string_len(254)
                .null(),
        );
        manager.create_table(company).await?;

        let mut user = Table::create();
        user.table(UserAccount::Table).if_not_exists().col(
            ColumnDef::new(UserAccount::Id)
                .big_integer()
                .not_null()
                .primary_key()
                .auto_increment(),
        );
        server_columns(&mut user);
        user.col(
            ColumnDef::new(UserAccount::BusinessObject)
                .string_len(254)
                .null(),
        )
        .col(
            ColumnDef::new(UserAccount::ColumnName)
                .string_len(254)
                .null(),
        )
        .col(
            ColumnDef::new(UserAccount::ColumnValue)
                .string_len(254)
                .null(),
        )
        .col(
            ColumnDef::new(UserAccount::BindingKey)
                .string_len(800)
                .null(),
        )
        // A binding has all three parts and its normalized key, or none of them.
        .check(
            Expr::col(UserAccount::BindingKey)
                .is_null()
                .and(Expr::col(UserAccount::BusinessObject).is_null())
                .and(Expr::col(UserAccount::ColumnName).is_null())
                .and(Expr::col(UserAccount::ColumnValue).is_null())
                .or(Expr::col(UserAccount::BindingKey)
                    .is_not_null()
                    .and(Expr::col(UserAccount::BusinessObject).is_not_null())
                    .and(Expr::col(UserAccount::ColumnName).is_not_null())
                    .and(Expr::col(UserAccount::ColumnValue).is_not_null())),
        );
        manager.create_table(user).await?;
        manager
            .create_index(
                Index::create()
                    .name("user_account_binding_key_unique")
                    .table(UserAccount::Table)
                    .col(UserAccount::BindingKey)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Setting::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Setting::Key)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Setting::Value).string_len(1024).not_null())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(KeyCheck::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(KeyCheck::Id)
                            .integer()
                            .not_null()
                            .primary_key()
                            .check(Expr::col(KeyCheck::Id).eq(1)),
                    )
                    .col(ColumnDef::new(KeyCheck::KeyId).string_len(64).not_null())
                    .col(ColumnDef::new(KeyCheck::Sealed).binary().not_null())
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            KeyCheck::Table.into_iden(),
            Setting::Table.into_iden(),
            UserAccount::Table.into_iden(),
            CompanyAccount::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
