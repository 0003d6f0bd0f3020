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
    };
    let header = Header {
        typ: Some(ACCESS_TOKEN_TYP.to_owned()),
        ..Header::new(Algorithm::HS256)
    };
    jsonwebtoken::encode(&header, &claims, &state.keys.jwt_encoding).map_err(AppError::internal)
}

/// Checks an access token and returns the user id it names. The algorithm list is fixed to
/// HS256, so `alg: none` and algorithm substitution fail; `exp` is checked against the
/// service clock (the library's check would use the system clock, which tests cannot move).
pub fn decode_access_token(state: &AppState, token: &str) -> AppResult<i64> {
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
    data.claims.sub.parse().map_err(|_| unauthenticated())
}

fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Issues an access token and a refresh token for `user_id`, in `family_id` (a new sign-in
/// when `None`). The refresh token row is written through `conn`, so callers put it in the
/// transaction that signed the user in.
pub async fn issue_pair(
    conn: &impl ConnectionTrait,
    state: &AppState,
    user_id: i64,
    family_id: Option<String>,
    now: DateTime<Utc>,
) -> AppResult<TokenPair> {
    let family_id = family_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
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
        access_token: encode_access_token(state, user_id, &family_id, now)?,
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
        Some((user_id, family_id)) => {
            let pair = issue_pair(&txn, state, user_id, Some(family_id), now).await?;
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

async fn revoke_if_active(
    txn: &DatabaseTransaction,
    hash: &str,
    now: DateTime<Utc>,
) -> AppResult<Option<(i64, String)>> {
    let stmt = db::raw(
        txn.get_database_backend(),
        "UPDATE refresh_tokens SET revoked_at = ? \
         WHERE token_hash = ? AND revoked_at IS NULL AND expires_at > ? \
         RETURNING user_id, family_id",
        vec![now.into(), hash.into(), now.into()],
    );
    let Some(row) = txn.query_one(stmt).await? else {
        return Ok(None);
    };
    Ok(Some((
        row.try_get("", "user_id")?,
        row.try_get("", "family_id")?,
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

/// Revokes every sign-in of `user_id`; returns how many sign-ins (families) were still live.
pub async fn logout_all(state: &AppState, user_id: i64) -> AppResult<i32> {
    let now = state.clock.now();
    let stmt = db::raw(
        state.db.get_database_backend(),
        "UPDATE refresh_tokens SET revoked_at = ? \
         WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ? RETURNING family_id",
        vec![now.into(), user_id.into(), now.into()],
    );
    let rows = state.db.query_all(stmt).await?;
    let mut families = std::collections::HashSet::new();
    for row in rows {
        families.insert(row.try_get::<String>("", "family_id")?);
    }
    Ok(families.len() as i32)
}
