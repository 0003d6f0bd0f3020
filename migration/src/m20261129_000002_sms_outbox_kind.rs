use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The outbox carries notices too (the SMS telling an old number that its account moved):
/// `kind` says whether a row's text holds a code (`code`, tied to its `otp_codes` row, which
/// decides whether it is still worth sending) or is a `notice` (always sent; its
/// `otp_code_id` is 0 and `code_issued_at` is when it was queued).
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SmsOutbox::Table)
                    .add_column(
                        ColumnDef::new(SmsOutbox::Kind)
                            .string_len(16)
                            .not_null()
                            .default("code"),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SmsOutbox::Table)
                    .drop_column(SmsOutbox::Kind)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum SmsOutbox {
    Table,
    Kind,
}
