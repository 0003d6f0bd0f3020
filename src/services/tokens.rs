//! Access tokens (short-lived HS256 JWTs, checked without touching the database) and refresh
//! tokens (opaque, random, stored only as keyed hashes, rotated on every use; a rotated token
//! that comes back revokes its whole family — RFC 9700 §4.14.2).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, Header, Validation};
use rand::RngCore;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseTransaction, EntityTrait, TransactionTrait,
};
use serde::{Deserialize, Serialize};

use crate::{
    db::{self, entities::refresh_tokens},
    error::{AppError, AppResult},
    state::AppState,
};

const ISSUER: &str = "phone-auth";
const AUDIENCE: &str = "phone-auth";
/// RFC 9068's media type for access tokens: a refresh token or any other JWT we might sign
/// later can never pass as one (RFC 8725 §3.11).
const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// Clock skew tolerated on `exp`, in seconds.
const LEEWAY_SECS: i64 = 5;
/// Refresh tokens we issue are 43 characters; anything much longer is not one of ours.
const MAX_REFRESH_TOKEN_LEN: usize = 128;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub iss: String,
    pub aud: String,
    /// The sign-in (refresh-token family) this access token belongs to.
    pub sid: String,
    /// When the sign-in's verifyCode happened (OpenID Connect's `auth_time`): refreshes copy
    /// it, so deleteAccount can ask for a recent one. Missing (a token from before this claim):
    /// 0, an old sign-in.
    #[serde(default)]
    pub auth_time: i64,
}

/// What a valid access token says about its bearer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessToken {
    pub user_id: i64,
    /// The sign-in (refresh-token family).
    pub session_id: String,
    /// When the sign-in's verifyCode happened, in Unix seconds.
    pub auth_time: i64,
}

/// What a successful sign-in or refresh hands to the client.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
}

fn unauthenticated() -> AppError {
    AppError::Unauthenticated("The token is missing, malformed, expired or revoked.")
}

pub fn encode_access_token(
    state: &AppState,
    user_id: i64,
    family_id: &str,
    auth_time: DateTime<Utc>,
    now: DateTime<Utc>,
) -> AppResult<String> {
    let claims = Claims {
        sub: user_id.to_string(),
        iat: now.timestamp(),
        exp: now.timestamp() + state.config.access_token_ttl.as_secs() as i64,
        jti: uuid::Uuid::new_v4().to_string(),
        iss: ISSUER.to_owned(),
        aud: AUDIENCE.to_owned(),
        sid: family_id.to_owned(),
        auth_time: auth_time.timestamp(),
    };
    let header = Header {
        typ: Some(ACCESS_TOKEN_TYP.to_owned()),
        ..Header::new(Algorithm::HS256)
    };
    jsonwebtoken::encode(&header, &claims, &state.keys.jwt_encoding).map_err(AppError::internal)
}

/// Checks an access token and returns who it names. The algorithm list is fixed to
/// HS256, so `alg: none` and algorithm substitution fail; `exp` is checked against the
/// service clock (the library's check would use the system clock, which tests cannot move).
pub fn decode_access_token(state: &AppState, token: &str) -> AppResult<AccessToken> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    let data = jsonwebtoken::decode::<Claims>(token, &state.keys.jwt_decoding, &validation)
        .map_err(|_| unauthenticated())?;
    if data.header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
        return Err(unauthenticated());
    }
    if data.claims.exp + LEEWAY_SECS <= state.clock.now().timestamp() {
        return Err(unauthenticated());
    }
    Ok(AccessToken {
        user_id: data.claims.sub.parse().map_err(|_| unauthenticated())?,
        session_id: data.claims.sid,
        auth_time: data.claims.auth_time,
    })
}

fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A sign-in that tokens are issued for: a new one (verifyCode just checked a code), or an
/// existing family being refreshed, with the time of its verifyCode.
pub enum Family {
    New,
    Existing {
        id: String,
        auth_time: DateTime<Utc>,
    },
}

/// Issues an access token and a refresh token for `user_id` in `family`. The refresh token row
/// is written through `conn`, so callers put it in the transaction that signed the user in.
pub async fn issue_pair(
    conn: &impl ConnectionTrait,
    state: &AppState,
    user_id: i64,
    family: Family,
    now: DateTime<Utc>,
) -> AppResult<TokenPair> {
    let (family_id, auth_time) = match family {
        Family::New => (uuid::Uuid::new_v4().to_string(), now),
        Family::Existing { id, auth_time } => (id, auth_time),
    };
    let refresh_token = new_refresh_token();
    // Nothing of the row is needed back: no RETURNING (SQLite would read the row again).
    let row = refresh_tokens::ActiveModel {
        user_id: Set(user_id),
        family_id: Set(family_id.clone()),
        token_hash: Set(state.keys.refresh_hash(&refresh_token)),
        created_at: Set(now),
        expires_at: Set(now + state.config.refresh_token_ttl),
        revoked_at: Set(None),
        ..Default::default()
    };
    refresh_tokens::Entity::insert(row)
        .exec_without_returning(conn)
        .await?;
    Ok(TokenPair {
        access_token: encode_access_token(state, user_id, &family_id, auth_time, now)?,
        refresh_token,
        expires_in: state.config.access_token_ttl.as_secs() as i64,
    })
}

/// Trades a refresh token for a new pair. Returns the user id and the pair.
pub async fn refresh_token(state: &AppState, raw: &str) -> AppResult<(i64, TokenPair)> {
    if raw.is_empty() || raw.len() > MAX_REFRESH_TOKEN_LEN {
        return Err(unauthenticated());
    }
    let now = state.clock.now();
    let hash = state.keys.refresh_hash(raw);
    let txn = state.db.begin().await?;
    // Revoking the presented token is the rotation's "claim": of two concurrent refreshes with
    // one token, exactly one gets the row back.
    let claimed = revoke_if_active(&txn, &hash, now).await?;
    match claimed {
        Some((user_id, family)) => {
            let pair = issue_pair(&txn, state, user_id, family, now).await?;
            txn.commit().await?;
            Ok((user_id, pair))
        }
        None => {
            txn.rollback().await?;
            revoke_family_on_reuse(state, &hash, now).await?;
            Err(unauthenticated())
        }
    }
}

/// Claims the token; returns its user and its family, with the family's verifyCode time (its
/// first token's `created_at`, read in the same statement).
async fn revoke_if_active(
    txn: &DatabaseTransaction,
    hash: &str,
    now: DateTime<Utc>,
) -> AppResult<Option<(i64, Family)>> {
    let stmt = db::raw(
        txn.get_database_backend(),
        "UPDATE refresh_tokens SET revoked_at = ? \
         WHERE token_hash = ? AND revoked_at IS NULL AND expires_at > ? \
         RETURNING user_id, family_id, \
           (SELECT MIN(first.created_at) FROM refresh_tokens first \
            WHERE first.family_id = refresh_tokens.family_id) AS auth_time",
        vec![now.into(), hash.into(), now.into()],
    );
    let Some(row) = txn.query_one(stmt).await? else {
        return Ok(None);
    };
    Ok(Some((
        row.try_get("", "user_id")?,
        Family::Existing {
            id: row.try_get("", "family_id")?,
            auth_time: row.try_get("", "auth_time")?,
        },
    )))
}

/// A token that exists but was already rotated (or revoked) came back: whoever holds it may
/// be an attacker, so the whole sign-in ends.
async fn revoke_family_on_reuse(state: &AppState, hash: &str, now: DateTime<Utc>) -> AppResult<()> {
    let stmt = db::raw(
        state.db.get_database_backend(),
        "UPDATE refresh_tokens SET revoked_at = ? \
         WHERE revoked_at IS NULL AND family_id IN \
           (SELECT family_id FROM refresh_tokens WHERE token_hash = ? AND revoked_at IS NOT NULL)",
        vec![now.into(), hash.into()],
    );
    let revoked = state.db.execute(stmt).await?.rows_affected();
    if revoked > 0 {
        tracing::warn!(
            revoked,
            "a rotated refresh token was presented again; its sign-in was revoked"
        );
    }
    Ok(())
}

/// Revokes the sign-in a refresh token belongs to. True when the token was valid.
pub async fn logout(state: &AppState, raw: &str) -> AppResult<bool> {
    if raw.is_empty() || raw.len() > MAX_REFRESH_TOKEN_LEN {
        return Ok(false);
    }
    let now = state.clock.now();
    let stmt = db::raw(
        state.db.get_database_backend(),
        "UPDATE refresh_tokens SET revoked_at = ? \
         WHERE revoked_at IS NULL AND family_id IN \
           (SELECT family_id FROM refresh_tokens \
            WHERE token_hash = ? AND revoked_at IS NULL AND expires_at > ?)",
        vec![now.into(), state.keys.refresh_hash(raw).into(), now.into()],
    );
    Ok(state.db.execute(stmt).await?.rows_affected() > 0)
}

/// Whether the sign-in `session_id` of `user_id` still has a live refresh token: an access token
/// outlives a logout by up to its TTL, and must not change or delete the account in that time.
pub async fn session_is_live(
    conn: &impl ConnectionTrait,
    user_id: i64,
    session_id: &str,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let stmt = db::raw(
        conn.get_database_backend(),
        "SELECT 1 AS live FROM refresh_tokens \
         WHERE family_id = ? AND user_id = ? AND revoked_at IS NULL AND expires_at > ?",
        vec![session_id.into(), user_id.into(), now.into()],
    );
    Ok(conn.query_one(stmt).await?.is_some())
}

/// The error for an access token whose sign-in has ended.
pub fn session_ended() -> AppError {
    AppError::Unauthenticated("This sign-in has ended; sign in again.")
}

/// Revokes every sign-in of `user_id`; returns how many sign-ins (families) were still live.
pub async fn logout_all(state: &AppState, user_id: i64) -> AppResult<i32> {
    revoke_sessions(&state.db, state, user_id, None).await
}

/// Revokes every sign-in (refresh-token family) of `user_id` but `keep` (the caller's own, for
/// a phone change), through `conn` so it joins the caller's transaction. The one place that
/// ends a user's sign-ins: logoutAll, confirmPhoneChange and deleteAccount all come here.
/// Returns how many sign-ins were still live.
pub async fn revoke_sessions(
    conn: &impl ConnectionTrait,
    state: &AppState,
    user_id: i64,
    keep: Option<&str>,
) -> AppResult<i32> {
    let now = state.clock.now();
    let stmt = db::raw(
        conn.get_database_backend(),
        "UPDATE refresh_tokens SET revoked_at = ? \
         WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ? AND family_id <> ? \
         RETURNING family_id",
        vec![
            now.into(),
            user_id.into(),
            now.into(),
            keep.unwrap_or_default().into(),
        ],
    );
    let rows = conn.query_all(stmt).await?;
    let mut families = std::collections::HashSet::new();
    for row in rows {
        families.insert(row.try_get::<String>("", "family_id")?);
    }
    Ok(families.len() as i32)
}
