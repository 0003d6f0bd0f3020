//! Who is calling: decided once per request from the `Authorization` header (or, for
//! subscriptions, the `connection_init` payload) and put into the request data.

use std::net::IpAddr;

use crate::{
    error::AppError,
    services::tokens::{self, AccessToken},
    state::AppState,
};

/// The client's address, as the HTTP layer determined it (rate limits per IP).
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub IpAddr);

/// The request's `User-Agent`, kept with a sign-in that verifyCode starts.
#[derive(Clone, Debug, Default)]
pub struct UserAgent(pub Option<String>);

#[derive(Clone, Copy, Debug)]
pub enum Viewer {
    /// No token was sent.
    Anonymous,
    /// A valid access token (its user, sign-in and expiry).
    User(AccessToken),
    /// A token was sent but it is malformed, forged, expired or revoked.
    Invalid,
    /// A good token this instance cannot check for revocation right now (its revocation feed
    /// is down): refused as the server's fault, not the token's (`tokens::Liveness::Unknown`).
    Unverifiable,
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
        // An empty token needs no case of its own: the decoder refuses it as malformed.
        match token {
            Some(token) => match tokens::decode_access_token(state, token) {
                Ok(access) => Self::User(access),
                Err(AppError::Internal(_)) => Self::Unverifiable,
                Err(_) => Self::Invalid,
            },
            _ => Self::Invalid,
        }
    }

    pub fn user_id(&self) -> Result<i64, AppError> {
        self.access().map(|access| access.user_id)
    }

    /// The caller's access token, or UNAUTHENTICATED.
    pub fn access(&self) -> Result<AccessToken, AppError> {
        match self {
            Self::User(access) => Ok(*access),
            Self::Anonymous => Err(AppError::Unauthenticated(
                "Sign in first: send Authorization: Bearer <accessToken>.",
            )),
            Self::Invalid => Err(AppError::Unauthenticated(
                "The access token is malformed, expired or revoked.",
            )),
            Self::Unverifiable => Err(AppError::internal(anyhow::anyhow!(
                "the revocation feed is down: access tokens are refused until it is back"
            ))),
        }
    }
}
