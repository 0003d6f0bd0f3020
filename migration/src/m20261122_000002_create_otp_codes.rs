use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OtpCodes::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(OtpCodes::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    // One pending code per phone: a new request replaces the row in one upsert.
                    .col(
                        ColumnDef::new(OtpCodes::Phone)
                            .string_len(16)
                            .not_null()
                            .unique_key(),
                    )
                    // HMAC-SHA256(server key; phone, created_at, code), hex: a dump alone reveals nothing.
                    .col(ColumnDef::new(OtpCodes::CodeHash).string_len(64).not_null())
                    .col(
                        ColumnDef::new(OtpCodes::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(OtpCodes::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OtpCodes::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OtpCodes::ResendAvailableAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OtpCodes::ConsumedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OtpCodes::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub enum OtpCodes {
    Table,
    Id,
    Phone,
    CodeHash,
    Attempts,
    CreatedAt,
    ExpiresAt,
    ResendAvailableAt,
    ConsumedAt,
}
