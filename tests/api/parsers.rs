//! Every parser of untrusted input returns a value or a typed error for any input — never a
//! panic (property tests).

use phone_auth::{
    domain::{
        cursor,
        invite_code::InviteCode,
        otp_code::OtpCode,
        phone::{Phone, Region},
    },
    error::AppError,
    graphql::viewer::Viewer,
    services::tokens,
};
use proptest::prelude::*;

use crate::helpers::TestApp;

fn phone_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[+0-9 ()\\-.]{0,24}",
        "\\+?[0-9]{1,18}",
        "8[0-9]{10}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn phone_parse_never_panics_and_normalises(raw in phone_like()) {
        match Phone::parse(&raw, Region::default()) {
            Ok(phone) => {
                let e164 = phone.as_str();
                prop_assert!(e164.starts_with('+'));
                prop_assert!(e164[1..].bytes().all(|b| b.is_ascii_digit()));
                prop_assert!(e164.len() <= 16);
                // Normalising is idempotent.
                let again = Phone::parse(e164, Region::default()).expect("E.164 parses");
                prop_assert_eq!(again.as_str(), e164);
                // Masked: the country prefix and the last four digits, never the whole number.
                let masked = phone.masked();
                prop_assert!(masked.contains("***"));
                prop_assert!(!masked.contains(e164));
            }
            Err(AppError::BadUserInput { field: "phone", .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }

    #[test]
    fn otp_code_parse_never_panics(raw in any::<String>(), len in 4usize..=8) {
        match OtpCode::parse(&raw, len) {
            Ok(code) => {
                prop_assert_eq!(code.expose().len(), len);
                prop_assert!(code.expose().bytes().all(|b| b.is_ascii_digit()));
            }
            Err(AppError::BadUserInput { field: "code", .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }

    #[test]
    fn invite_code_parse_never_panics(raw in any::<String>()) {
        match InviteCode::parse(&raw) {
            Ok(code) => {
                prop_assert_eq!(code.as_str().len(), 6);
                prop_assert!(code.as_str().bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
            }
            Err(AppError::BadUserInput { field: "inviteCode", .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }

    #[test]
    fn cursor_decode_never_panics(raw in any::<String>()) {
        match cursor::decode(&raw) {
            Ok(position) => prop_assert!(position.id > 0),
            Err(AppError::BadUserInput { field: "after", .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }

    #[test]
    fn cursor_round_trips(id in 1i64.., micros in -62_000_000_000_000_000i64..200_000_000_000_000_000) {
        let at = chrono::DateTime::from_timestamp_micros(micros).expect("in chrono's range");
        let position = cursor::Position { at, id };
        prop_assert_eq!(cursor::decode(&cursor::encode(position)).expect("own cursors decode"), position);
    }
}

#[test]
fn jwt_and_authorization_parsing_never_panic() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let app = runtime.block_on(TestApp::spawn());
    let state = app.state.clone();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(512));
    let strategy = prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_\\-]{0,40}\\.[A-Za-z0-9_\\-]{0,80}\\.[A-Za-z0-9_\\-]{0,43}",
        "eyJ[A-Za-z0-9_\\-]{0,40}\\.eyJ[A-Za-z0-9_\\-]{0,80}\\.[A-Za-z0-9_\\-]{0,43}",
    ];
    runner
        .run(&strategy, |token| {
            prop_assert!(matches!(
                tokens::decode_access_token(&state, &token),
                Err(AppError::Unauthenticated(_))
            ));
            let viewer = Viewer::from_authorization(&state, Some(&format!("Bearer {token}")));
            prop_assert!(!matches!(viewer, Viewer::User(_)));
            let raw = Viewer::from_authorization(&state, Some(&token));
            prop_assert!(!matches!(raw, Viewer::User(_)));
            Ok(())
        })
        .expect("no input panics or authenticates");
}
