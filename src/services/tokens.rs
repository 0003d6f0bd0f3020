//! Access tokens (short-lived HS256 JWTs, checked without touching the database) and refresh
//! tokens (opaque, random, stored only as keyed hashes, rotated on every use; a rotated token
//! that comes back revokes its whole family — RFC 9700 §4.14.2). A family is a sign-in, a row
//! of `sessions` (`services::sessions`): refresh serializes with revocation on that row, and
//! an access token is refused as soon as its sign-in is revoked (`revocations`, in memory).

use std::{
    collections::HashMap,
    sync::{LazyLock, Mutex},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, Header, Validation};
use rand::RngCore;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait,
    QueryFilter, QuerySelect, TransactionTrait, sea_query::Query,
};
use serde::{Deserialize, Serialize};

use crate::{
    db::entities::refresh_tokens::{self, Column},
    error::{AppError, AppResult},
    services::sessions::{self, Grant, Revoke},
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

/// What a successful sign-in or refresh hands to the client.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
}

/// A checked access token: who, which sign-in, until when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessToken {
    pub user_id: i64,
    pub session_id: uuid::Uuid,
    /// `exp`, in seconds since the epoch.
    pub expires_at: i64,
    /// When the sign-in's verifyCode happened (`auth_time`), in seconds since the epoch.
    pub auth_time: i64,
}

impl AccessToken {
    /// Whether the token may be used now. `leeway` is added to `exp`: [`LEEWAY_SECS`] for
    /// requests (other clocks), 0 for a socket this server holds open (it must close within a
    /// second of the token's expiry).
    pub fn liveness(&self, state: &AppState, leeway: i64) -> Liveness {
        if self.expires_at + leeway <= state.clock.now().timestamp() {
            Liveness::Ended
        } else if !state.revocations.is_live() {
            Liveness::Unknown
        } else if state.revocations.is_listed(&self.session_id) {
            Liveness::Ended
        } else {
            Liveness::Live
        }
    }
}

/// What [`AccessToken::liveness`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Live,
    /// Expired, or its sign-in was revoked: UNAUTHENTICATED, the client signs in again.
    Ended,
    /// This instance cannot tell: its revocation feed is down (database unreachable, a stalled
    /// listener). Refused all the same (fail closed), but as the server's fault
    /// (INTERNAL_SERVER_ERROR), so an app retries instead of signing its user out over an
    /// outage of ours.
    Unknown,
}

impl Liveness {
    /// The token, or the refusal a request gets.
    fn admit(self, access: AccessToken) -> AppResult<AccessToken> {
        match self {
            Self::Live => Ok(access),
            Self::Ended => Err(unauthenticated()),
            Self::Unknown => Err(AppError::internal(anyhow::anyhow!(
                "the revocation feed is down: access tokens are refused until it is back"
            ))),
        }
    }
}

/// Access tokens whose signature and claims were checked, by their exact text, with what they
/// name. A client sends the same access token with every request for its whole lifetime, and
/// checking one (base64, HMAC-SHA256, JSON claims) cost about a sixth of a `me` request's CPU;
/// a second request with the same bytes reads the result here instead. Expiry and revocation
/// are not cached: [`AccessToken::liveness`] runs for every request, hit or miss. Only tokens
/// that passed every check are kept (a forged or malformed one is checked in full each time),
/// at most [`VerifiedTokens::MAX_ENTRIES`] of at most [`VerifiedTokens::MAX_TOKEN_BYTES`] each;
/// when full it starts over. The map's hasher is keyed randomly per process.
#[derive(Default)]
pub struct VerifiedTokens {
    tokens: Mutex<HashMap<Box<str>, AccessToken>>,
}

impl VerifiedTokens {
    /// Our access tokens are about 350 bytes; longer ones are checked every time.
    pub const MAX_TOKEN_BYTES: usize = 1024;
    /// About 1.5 MiB at most.
    pub const MAX_ENTRIES: usize = 4096;

    fn get(&self, token: &str) -> Option<AccessToken> {
        self.lock().get(token).copied()
    }

    fn keep(&self, token: &str, access: AccessToken) {
        if token.len() > Self::MAX_TOKEN_BYTES {
            return;
        }
        let mut tokens = self.lock();
        if tokens.len() >= Self::MAX_ENTRIES {
            tokens.clear();
        }
        tokens.insert(Box::from(token), access);
    }

    /// How many tokens are kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, AccessToken>> {
        // Every update is one insert or clear: a poisoned map is still consistent.
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The checks on an access token, built once (they allocate sets of claim names).
static VALIDATION: LazyLock<Validation> = LazyLock::new(|| {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    validation.set_required_spec_claims(&["exp", "sub", "iss", "aud", "sid"]);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation
});

fn unauthenticated() -> AppError {
    AppError::Unauthenticated("The token is missing, malformed, expired or revoked.")
}

/// An access token for `user_id` in sign-in `grant`: it lives `ACCESS_TOKEN_TTL_SECONDS`, or
/// less when the sign-in ends sooner. Returns the token and its lifetime in seconds.
pub fn encode_access_token(
    state: &AppState,
    user_id: i64,
    grant: &Grant,
    now: DateTime<Utc>,
) -> AppResult<(String, i64)> {
    let exp = (now.timestamp() + state.config.tokens.access_ttl.as_secs() as i64)
        .min(grant.expires_at.timestamp());
    let claims = Claims {
        sub: user_id.to_string(),
        iat: now.timestamp(),
        exp,
        jti: uuid::Uuid::new_v4().to_string(),
        iss: ISSUER.to_owned(),
        aud: AUDIENCE.to_owned(),
        sid: grant.id.clone(),
        auth_time: grant.auth_time.timestamp(),
    };
    let header = Header {
        typ: Some(ACCESS_TOKEN_TYP.to_owned()),
        ..Header::new(Algorithm::HS256)
    };
    let token = jsonwebtoken::encode(&header, &claims, &state.keys.jwt_encoding)
        .map_err(AppError::internal)?;
    Ok((token, (exp - now.timestamp()).max(0)))
}

/// Checks an access token and returns what it names. The algorithm list is fixed to HS256, so
/// `alg: none` and algorithm substitution fail; `exp` is checked against the service clock
/// (the library's check would use the system clock, which tests cannot move); a token whose
/// sign-in was revoked is refused (a memory lookup, no database). A token checked before is
/// found in [`VerifiedTokens`]; its expiry and revocation are checked again all the same.
pub fn decode_access_token(state: &AppState, token: &str) -> AppResult<AccessToken> {
    if let Some(access) = state.keys.verified.get(token) {
        return access.liveness(state, LEEWAY_SECS).admit(access);
    }
    let access = verify_access_token(state, token)?;
    let access = access.liveness(state, LEEWAY_SECS).admit(access)?;
    state.keys.verified.keep(token, access);
    Ok(access)
}

/// The signature, header and claims of an access token; not its expiry or revocation.
fn verify_access_token(state: &AppState, token: &str) -> AppResult<AccessToken> {
    let data = jsonwebtoken::decode::<Claims>(token, &state.keys.jwt_decoding, &VALIDATION)
        .map_err(|_| unauthenticated())?;
    if data.header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
        return Err(unauthenticated());
    }
    let access = AccessToken {
        user_id: data.claims.sub.parse().map_err(|_| unauthenticated())?,
        session_id: uuid::Uuid::parse_str(&data.claims.sid).map_err(|_| unauthenticated())?,
        expires_at: data.claims.exp,
        auth_time: data.claims.auth_time,
    };
    Ok(access)
}

fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Starts a sign-in for `user_id` and issues its first pair, in the verifyCode transaction
/// `conn`.
pub async fn sign_in(
    conn: &impl ConnectionTrait,
    state: &AppState,
    user_id: i64,
    user_agent: Option<&str>,
    now: DateTime<Utc>,
) -> AppResult<TokenPair> {
    let grant = sessions::create(conn, state, user_id, user_agent, now).await?;
    issue_pair(conn, state, user_id, &grant, now).await
}

/// Issues an access token and a refresh token for `user_id` in sign-in `grant`. The refresh
/// token row is written through `conn`, so callers put it in the transaction that signed the
/// user in or refreshed.
async fn issue_pair(
    conn: &impl ConnectionTrait,
    state: &AppState,
    user_id: i64,
    grant: &Grant,
    now: DateTime<Utc>,
) -> AppResult<TokenPair> {
    let refresh_token = new_refresh_token();
    // Nothing of the row is needed back: no RETURNING (SQLite would read the row again).
    let row = refresh_tokens::ActiveModel {
        user_id: Set(user_id),
        family_id: Set(grant.id.clone()),
        token_hash: Set(state.keys.refresh_hash(&refresh_token)),
        created_at: Set(now),
        expires_at: Set((now + state.config.tokens.refresh_ttl).min(grant.expires_at)),
        revoked_at: Set(None),
        ..Default::default()
    };
    refresh_tokens::Entity::insert(row)
        .exec_without_returning(conn)
        .await?;
    let (access_token, expires_in) = encode_access_token(state, user_id, grant, now)?;
    Ok(TokenPair {
        access_token,
        refresh_token,
        expires_in,
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
            // The sign-in's row, held until commit: a revocation running now either finished
            // first (then this refresh is refused) or waits and then revokes what it mints.
            let Some(grant) = sessions::touch_live(&txn, state, &family_id, now).await? else {
                txn.rollback().await?;
                return Err(unauthenticated());
            };
            let pair = issue_pair(&txn, state, user_id, &grant, now).await?;
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
    // The check and the rotation in one statement: of two refreshes with one token, one wins.
    let stmt = Query::update()
        .table(refresh_tokens::Entity)
        .value(Column::RevokedAt, now)
        .and_where(Column::TokenHash.eq(hash))
        .and_where(Column::RevokedAt.is_null())
        .and_where(Column::ExpiresAt.gt(now))
        .returning(Query::returning().columns([Column::UserId, Column::FamilyId]))
        .to_owned();
    let Some(row) = txn.query_one(&stmt).await? else {
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
    let Some(family_id) = family_of(state, hash, Token::Rotated, now).await? else {
        return Ok(());
    };
    let txn = state.db.begin().await?;
    let revoked = sessions::revoke(&txn, state, Revoke::Family(&family_id)).await?;
    txn.commit().await?;
    if revoked > 0 {
        tracing::warn!("a rotated refresh token was presented again; its sign-in was revoked");
    }
    Ok(())
}

/// Which refresh tokens [`family_of`] looks for.
enum Token {
    /// Not rotated, not expired (logout).
    Active,
    /// Already rotated or revoked, expired or not (reuse detection).
    Rotated,
}

/// The sign-in of the refresh token with keyed hash `hash`, if the token is `which`.
async fn family_of(
    state: &AppState,
    hash: &str,
    which: Token,
    now: DateTime<Utc>,
) -> AppResult<Option<String>> {
    let which = match which {
        Token::Active => Condition::all()
            .add(Column::RevokedAt.is_null())
            .add(Column::ExpiresAt.gt(now)),
        Token::Rotated => Condition::all().add(Column::RevokedAt.is_not_null()),
    };
    Ok(refresh_tokens::Entity::find()
        .select_only()
        .column(Column::FamilyId)
        .filter(Column::TokenHash.eq(hash))
        .filter(which)
        .into_tuple::<String>()
        .one(&state.db)
        .await?)
}

/// Revokes the sign-in a refresh token belongs to. True when the token was valid (its sign-in
/// live until now). A token that was already rotated is reuse, as in refreshToken: whoever
/// rotated it (a thief who refreshed first) must not keep the sign-in the owner is logging out
/// of, so its family is revoked and the answer is false.
pub async fn logout(state: &AppState, raw: &str) -> AppResult<bool> {
    if raw.is_empty() || raw.len() > MAX_REFRESH_TOKEN_LEN {
        return Ok(false);
    }
    let now = state.clock.now();
    let hash = state.keys.refresh_hash(raw);
    let Some(family_id) = family_of(state, &hash, Token::Active, now).await? else {
        revoke_family_on_reuse(state, &hash, now).await?;
        return Ok(false);
    };
    let txn = state.db.begin().await?;
    let revoked = sessions::revoke(&txn, state, Revoke::Family(&family_id)).await?;
    txn.commit().await?;
    Ok(revoked > 0)
}

/// Revokes every sign-in of `user_id`; returns how many were still live.
pub async fn logout_all(state: &AppState, user_id: i64) -> AppResult<i32> {
    let txn = state.db.begin().await?;
    let revoked = sessions::revoke(&txn, state, Revoke::AllOf(user_id)).await?;
    txn.commit().await?;
    Ok(i32::try_from(revoked).unwrap_or(i32::MAX))
}

/// Revokes one of `user_id`'s sign-ins (revokeSession). False when it was not live or not
/// theirs.
pub async fn revoke_session(state: &AppState, user_id: i64, session_id: &str) -> AppResult<bool> {
    if uuid::Uuid::parse_str(session_id).is_err() {
        return Ok(false);
    }
    let txn = state.db.begin().await?;
    let revoked = sessions::revoke(
        &txn,
        state,
        Revoke::OneOf {
            user_id,
            id: session_id,
        },
    )
    .await?;
    txn.commit().await?;
    Ok(revoked > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(user_id: i64) -> AccessToken {
        AccessToken {
            user_id,
            session_id: uuid::Uuid::nil(),
            expires_at: 0,
            auth_time: 0,
        }
    }

    #[test]
    fn verified_tokens_stay_bounded() {
        let cache = VerifiedTokens::default();
        cache.keep("a", access(1));
        assert_eq!(cache.get("a"), Some(access(1)));
        assert_eq!(cache.get("b"), None);
        cache.keep(&"x".repeat(VerifiedTokens::MAX_TOKEN_BYTES + 1), access(2));
        assert_eq!(cache.len(), 1, "an overlong token is not kept");
        for i in 0..VerifiedTokens::MAX_ENTRIES {
            cache.keep(&format!("t{i}"), access(3));
            assert!(cache.len() <= VerifiedTokens::MAX_ENTRIES);
        }
        assert!(
            cache.len() < VerifiedTokens::MAX_ENTRIES,
            "a full cache started over"
        );
        assert!(!cache.is_empty());
    }
}
