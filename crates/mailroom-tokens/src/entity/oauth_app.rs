//! The `oauth_app` table: one OAuth app registration per provider.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_app")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub provider: String,
    pub client_id: String,
    pub client_secret_sealed: Option<Vec<u8>>,
    pub tenant: Option<String>,
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub device_url: Option<String>,
    pub revoke_url: Option<String>,
    pub issuer: Option<String>,
    pub gmail_api_url: Option<String>,
    pub settings_seal: Option<Vec<u8>>,
    pub redirect_uri: Option<String>,
    pub cloud: Option<String>,
    pub graph_api_url: Option<String>,
    pub app_credential_kind: Option<String>,
    pub app_credential_sealed: Option<Vec<u8>>,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
