//! Tokens keyed by the provider's stable identity, and shared mailboxes.
//!
//! - `oauth_token.address_key` becomes `identity_key`: a new sign-in is stored under the
//!   provider's stable identity of the person (`oid:{tid}:{oid}` for Microsoft, `sub:{sub}`
//!   for Google), which neither a changed username nor a second mailbox changes. Rows from
//!   before keep their lower-cased address as their key, and still open.
//! - Both account tables gain `shared_mailbox` (a person with rights on the mailbox signs in
//!   for it, as Exchange documents for shared mailboxes) and `token_identity`, the key of
//!   the token the account sends with (`NULL`: the row keyed by its SMTP user, as before).
//! - `oauth_token.signed_in_at`: when the person last signed in (a refresh does not change
//!   it), to name Google's 7-day expiry of Testing apps' refresh tokens when it strikes.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum OauthToken {
    Table,
    AddressKey,
    IdentityKey,
    SignedInAt,
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
enum Column {
    SharedMailbox,
    TokenIdentity,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(OauthToken::Table)
                    .rename_column(OauthToken::AddressKey, OauthToken::IdentityKey)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(OauthToken::Table)
                    .add_column(
                        ColumnDef::new(OauthToken::SignedInAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
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
                            ColumnDef::new(Column::SharedMailbox)
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
                        .table(table)
                        .add_column(ColumnDef::new(Column::TokenIdentity).string_len(320).null())
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
            for column in [Column::TokenIdentity, Column::SharedMailbox] {
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
        manager
            .alter_table(
                Table::alter()
                    .table(OauthToken::Table)
                    .drop_column(OauthToken::SignedInAt)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(OauthToken::Table)
                    .rename_column(OauthToken::IdentityKey, OauthToken::AddressKey)
                    .to_owned(),
            )
            .await
    }
}
