//! Database migrations for phone-auth. The server applies pending migrations at start;
//! `cargo run -p migration -- <command>` is the usual sea-orm-migration CLI.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_create_users;
mod m20261122_000002_create_otp_codes;
mod m20261122_000003_create_refresh_tokens;
mod m20261122_000004_create_rate_limits;
mod m20261122_000005_create_sms_outbox;
mod m20261129_000001_create_sessions;
mod m20261129_000002_sms_outbox_kind;
mod m20261129_000003_create_revoked_sessions;
mod m20261205_000001_drop_sms_outbox_phone_status;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_users::Migration),
            Box::new(m20261122_000002_create_otp_codes::Migration),
            Box::new(m20261122_000003_create_refresh_tokens::Migration),
            Box::new(m20261122_000004_create_rate_limits::Migration),
            Box::new(m20261122_000005_create_sms_outbox::Migration),
            Box::new(m20261129_000001_create_sessions::Migration),
            Box::new(m20261129_000002_sms_outbox_kind::Migration),
            Box::new(m20261129_000003_create_revoked_sessions::Migration),
            Box::new(m20261205_000001_drop_sms_outbox_phone_status::Migration),
        ]
    }
}
