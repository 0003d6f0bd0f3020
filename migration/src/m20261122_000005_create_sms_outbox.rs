use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The transactional outbox of SMS messages: `requestCode` writes a row in the same
        // transaction as the code, and a worker delivers it. One row per message; the row stays
        // (without its text) after delivery, as a record of what happened to it.
        manager
            .create_table(
                Table::create()
                    .table(SmsOutbox::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(SmsOutbox::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    // The code this message carries: otp_codes.id plus its created_at, since a
                    // phone's row is reused for each new code.
                    .col(
                        ColumnDef::new(SmsOutbox::OtpCodeId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SmsOutbox::CodeIssuedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(SmsOutbox::Phone).string_len(16).not_null())
                    // XChaCha20-Poly1305(nonce || ciphertext || tag) of the message text, which
                    // holds the code; NULL once the row is finished (sent, given up, replaced).
                    .col(ColumnDef::new(SmsOutbox::Payload).blob().null())
                    // pending | sent | undeliverable | superseded
                    .col(ColumnDef::new(SmsOutbox::Status).string_len(16).not_null())
                    // Claims so far (each claim is one delivery attempt).
                    .col(
                        ColumnDef::new(SmsOutbox::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(SmsOutbox::NextAttemptAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    // A worker's lease: until then no other worker may claim the row.
                    .col(
                        ColumnDef::new(SmsOutbox::LockedUntil)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    // Which claim holds the lease, so a worker whose lease ran out cannot
                    // overwrite the outcome of the claim that followed.
                    .col(ColumnDef::new(SmsOutbox::ClaimToken).string_len(36).null())
                    .col(
                        ColumnDef::new(SmsOutbox::GiveUpAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(SmsOutbox::LastError).string_len(200).null())
                    .col(
                        ColumnDef::new(SmsOutbox::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SmsOutbox::FinishedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        // The claim query: pending rows in due order.
        manager
            .create_index(
                Index::create()
                    .name("idx_sms_outbox_status_next_attempt")
                    .table(SmsOutbox::Table)
                    .col(SmsOutbox::Status)
                    .col(SmsOutbox::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        // A new code for a phone supersedes that phone's pending message.
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

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SmsOutbox::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum SmsOutbox {
    Table,
    Id,
    OtpCodeId,
    CodeIssuedAt,
    Phone,
    Payload,
    Status,
    Attempts,
    NextAttemptAt,
    LockedUntil,
    ClaimToken,
    GiveUpAt,
    LastError,
    CreatedAt,
    FinishedAt,
}
