//! Drops `idx_sms_outbox_phone_status`. It was made for superseding a phone's pending message
//! by phone, but superseding is decided at claim time (the code's `otp_codes` row), so its only
//! reader left is the account deletion's `DELETE … WHERE phone = ? AND status = 'pending'`,
//! which `idx_sms_outbox_status_next_attempt` serves as well (the pending rows are few), while
//! every enqueue and every status change paid for it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_sms_outbox_phone_status")
                    .table(SmsOutbox::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("idx_sms_outbox_phone_status")
                    .table(SmsOutbox::Table)
                    .col(SmsOutbox::Phone)
                    .col(SmsOutbox::Status)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum SmsOutbox {
    Table,
    Phone,
    Status,
}
