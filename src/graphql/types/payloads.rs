use async_graphql::SimpleObject;
use chrono::{DateTime, Utc};

use super::User;
use crate::services::otp::{CodeIssued, SignIn};

#[derive(SimpleObject)]
pub struct RequestCodePayload {
    /// The phone in E.164, as the server stored it (e.g. +79123456789).
    pub phone: String,
    pub expires_at: DateTime<Utc>,
    /// No new code for this phone before this time.
    pub resend_available_at: DateTime<Utc>,
    /// The code itself, ONLY when the server runs with OTP exposure on (development); otherwise null.
    pub dev_code: Option<String>,
}

impl From<CodeIssued> for RequestCodePayload {
    fn from(issued: CodeIssued) -> Self {
        Self {
            phone: issued.phone.as_str().to_owned(),
            expires_at: issued.expires_at,
            resend_available_at: issued.resend_available_at,
            dev_code: issued.dev_code,
        }
    }
}

#[derive(SimpleObject)]
pub struct AuthPayload {
    pub access_token: String,
    pub refresh_token: String,
    /// Always "Bearer".
    pub token_type: String,
    /// Seconds until accessToken expires.
    pub expires_in: i64,
    pub user: User,
    /// True when this verifyCode created the user.
    pub is_new_user: bool,
}

impl From<SignIn> for AuthPayload {
    fn from(sign_in: SignIn) -> Self {
        Self {
            access_token: sign_in.tokens.access_token,
            refresh_token: sign_in.tokens.refresh_token,
            token_type: "Bearer".to_owned(),
            expires_in: sign_in.tokens.expires_in,
            user: User(sign_in.user),
            is_new_user: sign_in.is_new_user,
        }
    }
}
