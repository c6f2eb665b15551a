//! One sign-in, an access token per resource; Microsoft's national clouds.
//!
//! - `oauth_token` keeps one refresh token per signed-in identity (Entra's refresh token
//!   redeems for any resource the person consented to) and its own access token, now
//!   labelled: `access_resource` names the resource it is for (`NULL`: `mail`, the
//!   provider's mail resource, as for every existing row) and `access_version` the row
//!   version when it was written (`NULL`: the row's `version`).
//! - `oauth_access_token`: the access tokens of the identity's other resources (`graph`:
//!   Microsoft Graph), one per (row, resource), each sealed with the row's identity and
//!   the resource as associated data, with its expiry, granted scopes and the row version
//!   it was written at (`issued_version`); deleted with its row.
//! - `oauth_app.cloud` (`NULL`: `global`; `usgov`, `usgov-dod`, `china`): the Microsoft
//!   national cloud whose login and Graph hosts the registration uses, and
//!   `oauth_app.graph_api_url`, an override of the Graph base URL. Both `NULL` on existing
//!   rows, so their settings seals (which name these columns only when set) still open.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum OauthToken {
    Table,
    Id,
    AccessResource,
    AccessVersion,
}

#[derive(DeriveIden)]
enum OauthAccessToken {
    Table,
    TokenId,
    Resource,
    AccessTokenSealed,
    ExpiresAt,
    Scopes,
    IssuedVersion,
}

#[derive(DeriveIden)]
enum OauthApp {
    Table,
    Cloud,
    GraphApiUrl,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One statement per column: SQLite's ALTER TABLE adds one column at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(OauthToken::Table)
                    .add_column(
                        ColumnDef::new(OauthToken::AccessResource)
                            .string_len(32)
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(OauthToken::Table)
                    .add_column(
                        ColumnDef::new(OauthToken::AccessVersion)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OauthAccessToken::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(OauthAccessToken::TokenId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OauthAccessToken::Resource)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OauthAccessToken::AccessTokenSealed)
                            .binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OauthAccessToken::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(OauthAccessToken::Scopes).text().not_null())
                    .col(
                        ColumnDef::new(OauthAccessToken::IssuedVersion)
                            .big_integer()
                            .not_null()
                            .check(Expr::col(OauthAccessToken::IssuedVersion).gte(0)),
                    )
                    .primary_key(
                        Index::create()
                            .col(OauthAccessToken::TokenId)
                            .col(OauthAccessToken::Resource),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(OauthAccessToken::Table, OauthAccessToken::TokenId)
                            .to(OauthToken::Table, OauthToken::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(OauthApp::Table)
                    .add_column(ColumnDef::new(OauthApp::Cloud).string_len(16).null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(OauthApp::Table)
                    .add_column(ColumnDef::new(OauthApp::GraphApiUrl).text().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [OauthApp::GraphApiUrl, OauthApp::Cloud] {
            manager
                .alter_table(
                    Table::alter()
                        .table(OauthApp::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(OauthAccessToken::Table).to_owned())
            .await?;
        for column in [OauthToken::AccessVersion, OauthToken::AccessResource] {
            manager
                .alter_table(
                    Table::alter()
                        .table(OauthToken::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
