//! Every table has an entity, and each entity reads its table's rows: a column the entity
//! names but the migrations do not (or of another type) fails here.

use phone_auth::db::entities::{
    otp_codes, rate_events, rate_limit_locks, refresh_tokens, revoked_sessions, sessions,
    sms_outbox, users,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, Statement};
use serde_json::json;

use crate::helpers::{TestApp, phone};

async fn rows<E: EntityTrait>(db: &DatabaseConnection, entity: E) -> usize {
    E::find()
        .all(db)
        .await
        .unwrap_or_else(|e| panic!("{} reads its rows: {e}", entity.table_name()))
        .len()
}

#[tokio::test]
async fn every_table_reads_through_its_entity() {
    let app = TestApp::spawn().await;
    let session = app.sign_in(&phone(7001)).await;
    app.request_code(&phone(7002)).await;
    let body = app
        .gql(
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({ "t": session.refresh_token }),
        )
        .await;
    assert_eq!(body["data"]["logout"], true, "{body}");
    let db = &app.state.db;
    assert_eq!(rows(db, users::Entity).await, 1);
    assert_eq!(rows(db, otp_codes::Entity).await, 2);
    assert_eq!(rows(db, refresh_tokens::Entity).await, 1);
    assert_eq!(rows(db, sessions::Entity).await, 1);
    assert_eq!(rows(db, revoked_sessions::Entity).await, 1);
    assert_eq!(rows(db, sms_outbox::Entity).await, 2);
    assert!(rows(db, rate_events::Entity).await > 0);
    assert!(rows(db, rate_limit_locks::Entity).await > 0);
}

/// SeaORM 2 makes a new auto-increment key an identity column on PostgreSQL; these migrations
/// have always made `bigserial` (the `postgres-use-serial-pk` feature), and a database created
/// today must match one created before the upgrade. On SQLite every such key is the rowid.
#[tokio::test]
async fn auto_increment_keys_are_what_the_migrations_always_made() {
    let app = TestApp::spawn().await;
    let db = &app.state.db;
    let sql = match db.get_database_backend() {
        DbBackend::Postgres => {
            "SELECT table_name AS name FROM information_schema.columns \
             WHERE table_schema = current_schema() AND column_name = 'id' \
             AND data_type = 'bigint' AND is_identity = 'NO' \
             AND column_default LIKE 'nextval(%' ORDER BY table_name"
        }
        _ => {
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND sql LIKE '%\"id\" integer NOT NULL PRIMARY KEY AUTOINCREMENT%' ORDER BY name"
        }
    };
    let names: Vec<String> = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("the catalogue reads")
        .iter()
        .map(|row| row.try_get("", "name").expect("a table name"))
        .collect();
    assert_eq!(
        names,
        [
            "otp_codes",
            "rate_events",
            "refresh_tokens",
            "sms_outbox",
            "users"
        ]
    );
}
