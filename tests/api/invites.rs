//! `activateInvite`: another user's code, once per user, never one's own, matched
//! case-insensitively, safe under concurrent requests, and kept across sign-ins.

use std::sync::Arc;

use phone_auth::db::entities::users;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

use crate::helpers::{Session, TestApp, assert_code, assert_ok, error_code, phone};

const ME: &str = "{ me { id phone inviteCode activatedInviteCode \
                  invitedUsers { totalCount nodes { id phone } } } }";

const ACTIVATE: &str =
    "mutation($c: String!) { activateInvite(inviteCode: $c) { id activatedInviteCode } }";

/// `me` as `session` sees it.
async fn me(app: &TestApp, session: &Session) -> Value {
    let body = app.gql_as(&session.access_token, ME, json!({})).await;
    assert_ok(&body);
    body["data"]["me"].clone()
}

/// The phones listed in `me.invitedUsers.nodes`.
fn invited_phones(me: &Value) -> Vec<String> {
    me["invitedUsers"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("invitedUsers.nodes is a list: {me}"))
        .iter()
        .map(|node| {
            node["phone"]
                .as_str()
                .expect("every node has a phone")
                .to_owned()
        })
        .collect()
}

/// A well-formed invite code that none of `taken` holds.
fn unused_code(taken: &[&str]) -> String {
    ["ZZZZZ9", "YYYYY8", "XXXXX7"]
        .into_iter()
        .find(|candidate| !taken.contains(candidate))
        .expect("three candidates cannot all be taken")
        .to_owned()
}

#[tokio::test]
async fn activating_another_users_code_records_it_and_lists_the_invitee_for_the_inviter() {
    let app = TestApp::spawn().await;
    let inviter = app.sign_in(&phone(1)).await;
    let invitee = app.sign_in(&phone(2)).await;

    let body = app.activate(&invitee, &inviter.invite_code).await;
    assert_ok(&body);
    assert_eq!(
        body["data"]["activateInvite"]["id"],
        invitee.user_id.as_str()
    );
    assert_eq!(
        body["data"]["activateInvite"]["activatedInviteCode"],
        inviter.invite_code.as_str()
    );

    let invitee_me = me(&app, &invitee).await;
    assert_eq!(
        invitee_me["activatedInviteCode"],
        inviter.invite_code.as_str()
    );
    assert_eq!(
        invitee_me["inviteCode"],
        invitee.invite_code.as_str(),
        "own code is untouched"
    );
    assert_eq!(invitee_me["invitedUsers"]["totalCount"], 0);

    let inviter_me = me(&app, &inviter).await;
    assert_eq!(inviter_me["activatedInviteCode"], Value::Null);
    assert_eq!(inviter_me["invitedUsers"]["totalCount"], 1);
    assert_eq!(invited_phones(&inviter_me), vec![invitee.phone.clone()]);
    assert_eq!(
        inviter_me["invitedUsers"]["nodes"][0]["id"],
        invitee.user_id.as_str()
    );
}

#[tokio::test]
async fn activating_a_well_formed_code_nobody_has_is_invite_code_not_found() {
    let app = TestApp::spawn().await;
    let inviter = app.sign_in(&phone(1)).await;
    let user = app.sign_in(&phone(2)).await;

    let unknown = unused_code(&[&inviter.invite_code, &user.invite_code]);
    // Letters and digits outside the generation alphabet are still a well-formed code.
    for code in [unknown.as_str(), "ABC0O1"] {
        let body = app.activate(&user, code).await;
        assert_code(&body, "INVITE_CODE_NOT_FOUND");
        assert_eq!(body["data"], Value::Null, "{body}");
    }

    assert_eq!(me(&app, &user).await["activatedInviteCode"], Value::Null);
    assert_eq!(me(&app, &inviter).await["invitedUsers"]["totalCount"], 0);
}

#[tokio::test]
async fn activating_a_malformed_code_is_bad_user_input_on_invite_code() {
    let app = TestApp::spawn().await;
    let inviter = app.sign_in(&phone(1)).await;
    let user = app.sign_in(&phone(2)).await;

    // The real code with its last character replaced by SQL `LIKE` wildcards must not match it.
    let real = &inviter.invite_code;
    let underscore = format!("{}_", &real[..5]);
    let percent = format!("{}%", &real[..5]);
    let inner_space = format!("{} {}", &real[..3], &real[3..5]);
    let too_long = format!("{real}A");
    for code in [
        underscore.as_str(),
        percent.as_str(),
        inner_space.as_str(),
        too_long.as_str(),
        "ABC12_",
        "AB",
        "",
        "      ",
        "ÄBC123",
    ] {
        let body = app.activate(&user, code).await;
        assert_code(&body, "BAD_USER_INPUT");
        assert_eq!(
            body["errors"][0]["extensions"]["field"], "inviteCode",
            "code {code:?}: {body}"
        );
        assert_eq!(body["data"], Value::Null, "{body}");
    }

    assert_eq!(me(&app, &user).await["activatedInviteCode"], Value::Null);
    assert_eq!(me(&app, &inviter).await["invitedUsers"]["totalCount"], 0);
}

#[tokio::test]
async fn activating_ones_own_code_is_self_invite_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let user = app.sign_in(&phone(1)).await;
    let other = app.sign_in(&phone(2)).await;

    for code in [
        user.invite_code.clone(),
        format!(" {} ", user.invite_code.to_lowercase()),
    ] {
        let body = app.activate(&user, &code).await;
        assert_code(&body, "SELF_INVITE");
        assert_eq!(body["data"], Value::Null, "{body}");
    }
    let mine = me(&app, &user).await;
    assert_eq!(mine["activatedInviteCode"], Value::Null);
    assert_eq!(mine["invitedUsers"]["totalCount"], 0);

    // The refusal used nothing up: another user's code still works.
    assert_ok(&app.activate(&user, &other.invite_code).await);
    assert_eq!(
        me(&app, &user).await["activatedInviteCode"],
        other.invite_code.as_str()
    );
}

#[tokio::test]
async fn a_second_activation_is_refused_and_the_first_one_stays() {
    let app = TestApp::spawn().await;
    let first = app.sign_in(&phone(1)).await;
    let second = app.sign_in(&phone(2)).await;
    let user = app.sign_in(&phone(3)).await;

    assert_ok(&app.activate(&user, &first.invite_code).await);

    for code in [second.invite_code.as_str(), first.invite_code.as_str()] {
        let body = app.activate(&user, code).await;
        assert_code(&body, "INVITE_ALREADY_ACTIVATED");
        assert_eq!(
            body["errors"][0]["extensions"]["activatedInviteCode"],
            first.invite_code.as_str(),
            "{body}"
        );
        assert_eq!(body["data"], Value::Null, "{body}");
    }

    assert_eq!(
        me(&app, &user).await["activatedInviteCode"],
        first.invite_code.as_str()
    );
    let first_me = me(&app, &first).await;
    assert_eq!(first_me["invitedUsers"]["totalCount"], 1);
    assert_eq!(invited_phones(&first_me), vec![user.phone.clone()]);
    let second_me = me(&app, &second).await;
    assert_eq!(second_me["invitedUsers"]["totalCount"], 0);
    assert_eq!(invited_phones(&second_me), Vec::<String>::new());
}

#[tokio::test]
async fn invite_codes_match_case_insensitively_and_ignore_surrounding_spaces() {
    let app = TestApp::spawn().await;
    let inviter = app.sign_in(&phone(1)).await;
    let lower = app.sign_in(&phone(2)).await;
    let spaced = app.sign_in(&phone(3)).await;
    let code = inviter.invite_code.clone();
    assert_eq!(
        code,
        code.to_uppercase(),
        "invite codes are issued upper-case"
    );

    let body = app.activate(&lower, &code.to_lowercase()).await;
    assert_ok(&body);
    assert_eq!(
        body["data"]["activateInvite"]["activatedInviteCode"],
        code.as_str()
    );

    let body = app
        .activate(&spaced, &format!("  {}\t", code.to_lowercase()))
        .await;
    assert_ok(&body);
    assert_eq!(
        body["data"]["activateInvite"]["activatedInviteCode"],
        code.as_str()
    );

    // Stored and shown in the canonical (upper-case) spelling.
    assert_eq!(me(&app, &lower).await["activatedInviteCode"], code.as_str());
    assert_eq!(
        me(&app, &spaced).await["activatedInviteCode"],
        code.as_str()
    );
    let inviter_me = me(&app, &inviter).await;
    assert_eq!(inviter_me["invitedUsers"]["totalCount"], 2);
    assert_eq!(
        invited_phones(&inviter_me),
        vec![lower.phone.clone(), spaced.phone.clone()]
    );
}

#[tokio::test]
async fn activating_without_a_valid_token_is_unauthenticated() {
    let app = TestApp::spawn().await;
    let inviter = app.sign_in(&phone(1)).await;
    let vars = json!({ "c": inviter.invite_code });

    let anonymous = app.gql(ACTIVATE, vars.clone()).await;
    assert_code(&anonymous, "UNAUTHENTICATED");
    assert_eq!(anonymous["data"], Value::Null, "{anonymous}");

    let tampered = format!("{}x", inviter.access_token);
    for token in ["garbage", "a.b.c", tampered.as_str()] {
        let body = app.gql_as(token, ACTIVATE, vars.clone()).await;
        assert_code(&body, "UNAUTHENTICATED");
        assert_eq!(body["data"], Value::Null, "{body}");
    }

    assert_eq!(me(&app, &inviter).await["invitedUsers"]["totalCount"], 0);
}

/// Fires `codes.len()` activations for `user` at once and returns the responses.
async fn activate_concurrently(
    app: &Arc<TestApp>,
    user: &Session,
    codes: Vec<String>,
) -> Vec<Value> {
    let mut tasks = tokio::task::JoinSet::new();
    for code in codes {
        let app = Arc::clone(app);
        let user = user.clone();
        tasks.spawn(async move { app.activate(&user, &code).await });
    }
    let mut bodies = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        bodies.push(joined.expect("an activation task does not panic"));
    }
    bodies
}

/// Exactly one of `bodies` succeeded, with a code from `codes`, and every other one is
/// INVITE_ALREADY_ACTIVATED naming the winner's code. Returns the winning code.
#[track_caller]
fn exactly_one_winner(bodies: &[Value]) -> String {
    let winners: Vec<&Value> = bodies.iter().filter(|b| error_code(b).is_none()).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one activation succeeds: {bodies:#?}"
    );
    let won = winners[0]["data"]["activateInvite"]["activatedInviteCode"]
        .as_str()
        .unwrap_or_else(|| panic!("the winner returns its code: {}", winners[0]))
        .to_owned();
    for body in bodies.iter().filter(|b| error_code(b).is_some()) {
        assert_code(body, "INVITE_ALREADY_ACTIVATED");
        assert_eq!(
            body["errors"][0]["extensions"]["activatedInviteCode"],
            won.as_str(),
            "{body}"
        );
    }
    won
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_activations_of_different_codes_let_exactly_one_win() {
    // A file database with the production pool: the activations really overlap on SQLite.
    let app = Arc::new(TestApp::for_races(&[]).await);
    let user = app.sign_in(&phone(100)).await;
    let mut inviters = Vec::new();
    for n in 1..=20 {
        inviters.push(app.sign_in(&phone(n)).await);
    }
    let codes: Vec<String> = inviters.iter().map(|s| s.invite_code.clone()).collect();

    let bodies = activate_concurrently(&app, &user, codes).await;
    assert_eq!(bodies.len(), 20);
    let won = exactly_one_winner(&bodies);
    let winner = inviters
        .iter()
        .find(|s| s.invite_code == won)
        .expect("the winning code belongs to one of the inviters");

    // The database agrees: one activated user, linked to the winning inviter.
    let activated = users::Entity::find()
        .filter(users::Column::ActivatedInviteCode.is_not_null())
        .all(&app.state.db)
        .await
        .expect("users can be read");
    assert_eq!(activated.len(), 1, "{activated:#?}");
    assert_eq!(activated[0].id.to_string(), user.user_id);
    assert_eq!(
        activated[0].activated_invite_code.as_deref(),
        Some(won.as_str())
    );
    assert_eq!(
        activated[0].invited_by_id.map(|id| id.to_string()),
        Some(winner.user_id.clone())
    );
    let linked = users::Entity::find()
        .filter(users::Column::InvitedById.is_not_null())
        .count(&app.state.db)
        .await
        .expect("users can be counted");
    assert_eq!(linked, 1);

    assert_eq!(me(&app, &user).await["activatedInviteCode"], won.as_str());
    for inviter in &inviters {
        let expected = if inviter.invite_code == won { 1 } else { 0 };
        assert_eq!(
            me(&app, inviter).await["invitedUsers"]["totalCount"],
            expected,
            "{}",
            inviter.phone
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_activations_of_the_same_code_let_exactly_one_win() {
    // A file database with the production pool: the activations really overlap on SQLite.
    let app = Arc::new(TestApp::for_races(&[]).await);
    let inviter = app.sign_in(&phone(1)).await;
    let user = app.sign_in(&phone(2)).await;

    let bodies = activate_concurrently(&app, &user, vec![inviter.invite_code.clone(); 20]).await;
    assert_eq!(bodies.len(), 20);
    assert_eq!(exactly_one_winner(&bodies), inviter.invite_code);

    let linked = users::Entity::find()
        .filter(users::Column::InvitedById.is_not_null())
        .count(&app.state.db)
        .await
        .expect("users can be counted");
    assert_eq!(linked, 1);
    let inviter_me = me(&app, &inviter).await;
    assert_eq!(inviter_me["invitedUsers"]["totalCount"], 1);
    assert_eq!(invited_phones(&inviter_me), vec![user.phone.clone()]);
}

#[tokio::test]
async fn signing_in_again_keeps_the_invite_code_and_the_activation() {
    let app = TestApp::spawn().await;
    let inviter = app.sign_in(&phone(1)).await;
    let invitee = app.sign_in(&phone(2)).await;
    assert_ok(&app.activate(&invitee, &inviter.invite_code).await);

    // Past the resend cooldown, both sign in a second time.
    app.advance(61);
    for (before, expected_activation) in [
        (&invitee, json!(inviter.invite_code)),
        (&inviter, Value::Null),
    ] {
        let code = app.code_for(&before.phone).await;
        let body = app.verify(&before.phone, &code).await;
        assert_ok(&body);
        let payload = &body["data"]["verifyCode"];
        assert_eq!(payload["isNewUser"], false, "{body}");
        assert_eq!(payload["user"]["id"], before.user_id.as_str());
        assert_eq!(payload["user"]["inviteCode"], before.invite_code.as_str());
        assert_eq!(payload["user"]["activatedInviteCode"], expected_activation);

        let again = crate::helpers::session_from(payload).expect("verifyCode returns a session");
        let mine = me(&app, &again).await;
        assert_eq!(mine["inviteCode"], before.invite_code.as_str());
        assert_eq!(mine["activatedInviteCode"], expected_activation);
    }

    let again = me(&app, &inviter).await;
    assert_eq!(again["invitedUsers"]["totalCount"], 1);
    assert_eq!(invited_phones(&again), vec![invitee.phone.clone()]);
    // Still only once: the kept activation still refuses a second one.
    let body = app.activate(&invitee, &inviter.invite_code).await;
    assert_code(&body, "INVITE_ALREADY_ACTIVATED");
}

/// Wildcards never get past the parser (the test above), so the lookup is proved exact with
/// well-formed codes that a loose match (`LIKE` with `_`, a prefix or suffix search, a
/// trimmed or case-folded column compared the wrong way) would find: the real code with one
/// character changed, at every position. They reach the lookup and find nobody; the real
/// code, lower-cased, then works.
#[tokio::test]
async fn near_misses_of_a_real_code_reach_the_lookup_and_find_nobody() {
    let app = TestApp::spawn().await;
    let inviter = app.sign_in(&phone(1)).await;
    let user = app.sign_in(&phone(2)).await;
    let real = inviter.invite_code.clone();

    for position in 0..real.len() {
        let near_miss: String = real
            .chars()
            .enumerate()
            .map(|(i, c)| match (i == position, c) {
                (false, c) => c,
                (true, 'A') => 'B',
                (true, _) => 'A',
            })
            .collect();
        if near_miss == user.invite_code {
            continue;
        }
        let body = app.activate(&user, &near_miss).await;
        assert_code(&body, "INVITE_CODE_NOT_FOUND");
        assert_eq!(body["data"], Value::Null, "{near_miss}: {body}");
    }
    assert_eq!(me(&app, &user).await["activatedInviteCode"], Value::Null);

    let body = app.activate(&user, &real.to_ascii_lowercase()).await;
    assert_ok(&body);
    assert_eq!(
        body["data"]["activateInvite"]["activatedInviteCode"],
        real.as_str()
    );
}
