//! The redirect URI of an OAuth app registration (`oauth_app.redirect_uri`): the loopback
//! URI registered with the provider. Null, as for every existing row, means the provider's
//! default (`http://localhost` for Microsoft, `http://127.0.0.1` for Google), so existing
//! registrations and their settings seals stay as they are.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum OauthApp {
    Table,
    RedirectUri,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(OauthApp::Table)
                    .add_column(ColumnDef::new(OauthApp::RedirectUri).text().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(OauthApp::Table)
                    .drop_column(OauthApp::RedirectUri)
                    .to_owned(),
            )
            .await
    }
}
