use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One row per counted event (a code sent, a wrong guess, a verify from an IP), keyed by
        // a bucket such as `code:phone:+79123456789`. Rolling windows are counts over `at`.
        manager
            .create_table(
                Table::create()
                    .table(RateEvents::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(RateEvents::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(RateEvents::Bucket).string_len(80).not_null())
                    .col(
                        ColumnDef::new(RateEvents::At)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_rate_events_bucket_at")
                    .table(RateEvents::Table)
                    .col(RateEvents::Bucket)
                    .col(RateEvents::At)
                    .to_owned(),
            )
            .await?;
        // A row per bucket that a check-and-record locks first, so concurrent requests (on any
        // number of instances) count one after another and never both take the last slot.
        manager
            .create_table(
                Table::create()
                    .table(RateLimitLocks::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(RateLimitLocks::Bucket)
                            .string_len(80)
                            .not_null()
                            .primary_key(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RateLimitLocks::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(RateEvents::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum RateEvents {
    Table,
    Id,
    Bucket,
    At,
}

#[derive(DeriveIden)]
enum RateLimitLocks {
    Table,
    Bucket,
}
