//! Every table has an entity, and each entity reads its table's rows: a column the entity
//! names but the migrations do not (or of another type) fails here.

use phone_auth::db::entities::{
    otp_codes, rate_events, rate_limit_locks, refresh_tokens, revoked_sessions, sessions,
    sms_outbox, users,
};
use sea_orm::{DatabaseConnection, EntityTrait};
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
