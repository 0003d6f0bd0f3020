use sea_orm::entity::prelude::*;

/// One SMS of the transactional outbox (`services::outbox`): its sealed text until it is
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
    pub status: String,
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

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
