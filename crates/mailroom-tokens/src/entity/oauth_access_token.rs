//! The `oauth_access_token` table: the access tokens of a signed-in identity's other
//! resources (the row's own access token is in `oauth_token`), one per (row, resource).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_access_token")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub token_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub resource: String,
    pub access_token_sealed: Vec<u8>,
    pub expires_at: DateTimeUtc,
    pub scopes: String,
    pub issued_version: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
