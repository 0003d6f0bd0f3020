//! `schema.graphql` is the SDL of the code; a change to one without the other fails here.
//! `UPDATE_SCHEMA=1 cargo test --test api schema_file` rewrites the file instead.

use serde_json::json;

use crate::helpers::{TestApp, assert_ok};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");

#[test]
fn schema_file_matches_the_code() {
    let sdl = phone_auth::graphql::schema::sdl();
    if std::env::var("UPDATE_SCHEMA").is_ok_and(|v| v == "1") {
        std::fs::write(PATH, &sdl).expect("schema.graphql is writable");
        return;
    }
    let file = std::fs::read_to_string(PATH).unwrap_or_default();
    assert!(
        file == sdl,
        "schema.graphql differs from the code; run `UPDATE_SCHEMA=1 cargo test --test api schema_file`"
    );
}

#[tokio::test]
async fn the_running_server_serves_the_same_schema() {
    let app = TestApp::spawn().await;
    let body = app
        .gql("{ __schema { queryType { name } mutationType { name } subscriptionType { name } types { name } } }", json!({}))
        .await;
    assert_ok(&body);
    let sdl = phone_auth::graphql::schema::sdl();
    let types = body["data"]["__schema"]["types"].as_array().expect("types");
    for t in types {
        let name = t["name"].as_str().expect("name");
        if name.starts_with("__") || ["String", "Int", "Boolean", "ID", "Float"].contains(&name) {
            continue;
        }
        assert!(
            sdl.contains(&format!("type {name} ")) || sdl.contains(&format!("scalar {name}")),
            "{name} is served but not in the SDL"
        );
    }
    assert_eq!(
        body["data"]["__schema"]["subscriptionType"]["name"],
        "Subscription"
    );
}

#[test]
fn schema_has_every_field_of_the_contract() {
    let sdl = phone_auth::graphql::schema::sdl();
    for needle in [
        "me: User!",
        "users(first: Int = 20, after: String): UserConnection!",
        "requestCode(phone: String!): RequestCodePayload!",
        "verifyCode(phone: String!, code: String!): AuthPayload!",
        "refreshToken(refreshToken: String!): AuthPayload!",
        "logout(refreshToken: String!): Boolean!",
        "activateInvite(inviteCode: String!): User!",
        "logoutAll: Int!",
        "invitedUserJoined: User!",
        "devCode: String",
        "resendAvailableAt: DateTime!",
        "expiresIn: Int!",
        "isNewUser: Boolean!",
        "activatedInviteCode: String",
        "invitedUsers(first: Int = 20, after: String): UserConnection!",
        "totalCount: Int!",
        "edges: [UserEdge!]!",
        "nodes: [User!]!",
        "pageInfo: PageInfo!",
        "endCursor: String",
        "hasNextPage: Boolean!",
        "scalar DateTime",
    ] {
        assert!(
            sdl.contains(needle),
            "missing from the schema: {needle}\n{sdl}"
        );
    }
}
