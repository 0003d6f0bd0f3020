use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Users::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    // E.164, so one person is one row whatever spelling they typed.
                    .col(
                        ColumnDef::new(Users::Phone)
                            .string_len(16)
                            .not_null()
                            .unique_key(),
                    )
                    // Stored upper-case: case-insensitive matching is a plain equality.
                    .col(
                        ColumnDef::new(Users::InviteCode)
                            .string_len(6)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Users::InvitedById).big_integer().null())
                    .col(
                        ColumnDef::new(Users::ActivatedInviteCode)
                            .string_len(6)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Users::ActivatedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Users::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_users_invited_by")
                            .from(Users::Table, Users::InvitedById)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        // invitedUsers pages and totalCount: `WHERE invited_by_id IN (..)`, in activation order.
        manager
            .create_index(
                Index::create()
                    .name("idx_users_invited_by_activated")
                    .table(Users::Table)
                    .col(Users::InvitedById)
                    .col(Users::ActivatedAt)
                    .col(Users::Id)
                    .to_owned(),
            )
            .await?;
        // The admin list, newest first.
        manager
            .create_index(
                Index::create()
                    .name("idx_users_created_at")
                    .table(Users::Table)
                    .col(Users::CreatedAt)
                    .col(Users::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Users::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub enum Users {
    Table,
    Id,
    Phone,
    InviteCode,
    InvitedById,
    ActivatedInviteCode,
    ActivatedAt,
    CreatedAt,
}
