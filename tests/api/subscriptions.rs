//! `invitedUserJoined` over graphql-transport-ws: delivery, authentication, and delivery
//! across instances (PostgreSQL LISTEN/NOTIFY).

use crate::{
    helpers::{Session, TestApp, assert_ok, phone},
    socket_client::{next_json, serve, subscribe, wait_until_subscribed},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inviter_hears_each_activation_of_their_code() {
    let app = TestApp::spawn().await;
    let addr = serve(&app).await;
    let inviter = app.sign_in(&phone(1)).await;
    let bystander = app.sign_in(&phone(9)).await;
    let mut inviter_socket = subscribe(addr, Some(&inviter.access_token)).await;
    let mut bystander_socket = subscribe(addr, Some(&bystander.access_token)).await;
    wait_until_subscribed(&app, 2).await;

    let invitee: Session = app.sign_in(&phone(2)).await;
    assert_ok(&app.activate(&invitee, &inviter.invite_code).await);

    let event = next_json(&mut inviter_socket).await;
    assert_eq!(event["type"], "next", "{event}");
    assert_eq!(event["id"], "1");
    let user = &event["payload"]["data"]["invitedUserJoined"];
    assert_eq!(user["phone"], phone(2));
    assert_eq!(user["activatedInviteCode"], inviter.invite_code.as_str());

    // Nobody else is told: when the bystander's own code is activated next, that is the first
    // event the bystander hears (events reach a subscriber in order, so an event about the
    // inviter's invitee would have come first).
    let own_invitee = app.sign_in(&phone(3)).await;
    assert_ok(&app.activate(&own_invitee, &bystander.invite_code).await);
    let event = next_json(&mut bystander_socket).await;
    assert_eq!(
        event["payload"]["data"]["invitedUserJoined"]["phone"],
        phone(3),
        "{event}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_needs_a_valid_access_token() {
    let app = TestApp::spawn().await;
    let addr = serve(&app).await;
    for token in [None, Some("not-a-token")] {
        let mut socket = subscribe(addr, token).await;
        // The resolver refuses: a `next` carrying the error, then the operation completes.
        let message = next_json(&mut socket).await;
        assert_eq!(message["type"], "next", "{message}");
        assert!(message["payload"]["data"].is_null(), "{message}");
        assert_eq!(
            message["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activations_on_one_instance_reach_subscribers_on_another() {
    let url = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => crate::helpers::fresh_database_url().await,
        // One SQLite database is one process: cross-instance delivery is a PostgreSQL feature.
        _ => return,
    };
    let a = TestApp::with_database(&url, &[]).await;
    let b = TestApp::with_database(&url, &[]).await;
    let addr_a = serve(&a).await;
    let inviter = a.sign_in(&phone(1)).await;
    let mut socket = subscribe(addr_a, Some(&inviter.access_token)).await;
    wait_until_subscribed(&a, 1).await;

    let invitee = b.sign_in(&phone(2)).await;
    assert_ok(&b.activate(&invitee, &inviter.invite_code).await);
    let event = next_json(&mut socket).await;
    assert_eq!(
        event["payload"]["data"]["invitedUserJoined"]["phone"],
        phone(2),
        "{event}"
    );
}
