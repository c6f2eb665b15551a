//! The `oauth_token` table: one row per (provider, tenant, identity key): the provider's
//! stable identity of the person who signed in, or, for rows from before, the lower-cased
//! address.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_token")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub provider: String,
    pub tenant: String,
    pub identity_key: String,
    pub address: String,
    pub access_token_sealed: Vec<u8>,
    pub refresh_token_sealed: Option<Vec<u8>>,
    pub expires_at: DateTimeUtc,
    pub scopes: String,
    pub version: i64,
    pub status: String,
    pub status_reason: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTimeUtc>,
    pub refreshed_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub signed_in_at: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
    pub access_resource: Option<String>,
    pub access_version: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
