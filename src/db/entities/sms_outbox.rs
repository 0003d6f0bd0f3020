use sea_orm::entity::prelude::*;

/// One SMS of the transactional outbox (`crate::outbox`): its sealed text until it is
/// finished, its status, lease and retry times.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sms_outbox")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub otp_code_id: i64,
    pub code_issued_at: DateTimeUtc,
    pub phone: String,
    pub payload: Option<Vec<u8>>,
    pub status: Status,
    pub attempts: i32,
    pub next_attempt_at: DateTimeUtc,
    pub locked_until: Option<DateTimeUtc>,
    pub claim_token: Option<String>,
    pub give_up_at: DateTimeUtc,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
    /// `code` or `notice`.
    pub kind: String,
}

/// `sms_outbox.status`: a plain `VARCHAR(16)` column (no database enum type), so adding a
/// value needs no migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Status {
    /// Waiting for a worker, held by one, or waiting for its next attempt.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// The provider accepted it.
    #[sea_orm(string_value = "sent")]
    Sent,
    /// Given up: a permanent failure, the give-up time passed or the send budget stayed full.
    #[sea_orm(string_value = "undeliverable")]
    Undeliverable,
    /// Its code was replaced by a newer one before it went out.
    #[sea_orm(string_value = "superseded")]
    Superseded,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
