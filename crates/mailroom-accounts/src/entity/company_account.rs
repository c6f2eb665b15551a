//! The `company_account` table: at most one row, id 1.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "company_account")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    pub provider: String,
    pub host: String,
    pub port: i32,
    pub tls: bool,
    pub tls_startup: String,
    pub timeout_ms: i32,
    pub smtp_user: String,
    pub password_sealed: Option<Vec<u8>>,
    pub allow_plaintext_loopback: bool,
    pub settings_seal: Option<Vec<u8>>,
    pub allow_plaintext_password: bool,
    pub shared_mailbox: bool,
    pub token_identity: Option<String>,
    pub route: String,
    pub large_attachments: bool,
    pub auth: Option<String>,
    pub rate_per_minute: Option<String>,
    pub daily_limit: Option<String>,
    pub version: i64,
    pub updated_at: DateTimeUtc,
    pub fax_format: Option<String>,
    pub from_address: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
