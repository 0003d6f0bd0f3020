//! Revoked sign-ins, kept apart from `sessions`: deleting a user deletes their `sessions` rows
//! (ON DELETE CASCADE), but an instance starting within the access-token lifetime must still
//! know those sign-ins were revoked, or it would accept their access tokens again. Written by
//! every revocation in its transaction; rows older than the access-token lifetime are pruned.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RevokedSessions::Table)
                    .if_not_exists()
                    // No foreign key: the row must outlive its `sessions` row.
                    .col(
                        ColumnDef::new(RevokedSessions::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(RevokedSessions::RevokedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // Start-up loads (and pruning deletes) by age.
        manager
            .create_index(
                Index::create()
                    .name("idx_revoked_sessions_revoked_at")
                    .table(RevokedSessions::Table)
                    .col(RevokedSessions::RevokedAt)
                    .to_owned(),
            )
            .await?;
        // Sign-ins revoked before this table existed (the first pruning drops the old ones).
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO revoked_sessions (id, revoked_at) \
                 SELECT id, revoked_at FROM sessions WHERE revoked_at IS NOT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RevokedSessions::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum RevokedSessions {
    Table,
    Id,
    RevokedAt,
}
