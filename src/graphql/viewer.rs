//! Who is calling: decided once per request from the `Authorization` header (or, for
//! subscriptions, the `connection_init` payload) and put into the request data.

use std::net::IpAddr;

use crate::{error::AppError, services::tokens, state::AppState};

/// The client's address, as the HTTP layer determined it (rate limits per IP).
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub IpAddr);

#[derive(Clone, Copy, Debug)]
pub enum Viewer {
    /// No token was sent.
    Anonymous,
    /// A valid access token for this user id.
    User(i64),
    /// A token was sent but it is malformed, forged or expired.
    Invalid,
}

impl Viewer {
    /// From the value of an `Authorization` header (`Bearer <token>`), if any.
    pub fn from_authorization(state: &AppState, header: Option<&str>) -> Self {
        let Some(header) = header else {
            return Self::Anonymous;
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim);
        match token {
            Some(token) if !token.is_empty() => match tokens::decode_access_token(state, token) {
                Ok(user_id) => Self::User(user_id),
                Err(_) => Self::Invalid,
            },
            _ => Self::Invalid,
        }
    }

    pub fn user_id(&self) -> Result<i64, AppError> {
        match self {
            Self::User(id) => Ok(*id),
            Self::Anonymous => Err(AppError::Unauthenticated(
                "Sign in first: send Authorization: Bearer <accessToken>.",
            )),
            Self::Invalid => Err(AppError::Unauthenticated(
                "The access token is malformed, expired or revoked.",
            )),
        }
    }
}
