//! The sea-orm entities of the `outbox_message` and `outbox_chunk` tables (created by
//! `mailroom-migrations`).

// The sea-orm derives generate `pub` items inside this private module.
#![allow(unreachable_pub)]

pub(crate) mod outbox_message {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox_message")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub message_id: String,
        pub feature: String,
        pub system_user: Option<String>,
        pub account_kind: String,
        pub account_id: Option<i64>,
        pub sender: String,
        pub recipients: String,
        pub bcc_header: Option<String>,
        pub bytes: Vec<u8>,
        pub status: String,
        pub attempts: i32,
        pub next_attempt_at: DateTimeUtc,
        pub last_error: Option<String>,
        pub lease_owner: Option<String>,
        pub lease_until: Option<DateTimeUtc>,
        pub transport: Option<String>,
        pub provider_message_id: Option<String>,
        pub reply: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub sent_at: Option<DateTimeUtc>,
        pub subject: Option<String>,
        pub mailbox: String,
        pub priority: i16,
        pub units: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod outbox_chunk {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox_chunk")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub message_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i32,
        pub data: Vec<u8>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
