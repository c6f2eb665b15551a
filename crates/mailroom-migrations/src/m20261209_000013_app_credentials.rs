//! App-only credentials on an app registration: a Microsoft app's client secret or
//! certificate for the client credentials grant, or a Google service account's key for
//! the JWT bearer grant. `app_credential_kind` (`client-secret`, `certificate`,
//! `service-account`; null: none) names what `app_credential_sealed` holds, sealed with
//! the database key like every secret. App tokens are cached in `oauth_token` rows whose
//! identity key starts with `app:` (no refresh token), sharing the sign-ins' lease and
//! compare-and-swap.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum OauthApp {
    Table,
    AppCredentialKind,
    AppCredentialSealed,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One statement per column: SQLite's ALTER TABLE adds one column at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(OauthApp::Table)
                    .add_column(
                        ColumnDef::new(OauthApp::AppCredentialKind)
                            .string_len(32)
                            .null()
                            .check(Expr::col(OauthApp::AppCredentialKind).is_in([
                                "client-secret",
                                "certificate",
                                "service-account",
                            ])),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(OauthApp::Table)
                    .add_column(
                        ColumnDef::new(OauthApp::AppCredentialSealed)
                            .binary()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [OauthApp::AppCredentialSealed, OauthApp::AppCredentialKind] {
            manager
                .alter_table(
                    Table::alter()
                        .table(OauthApp::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
