//! Sign-ins (sessions): one row per verifyCode, the refresh-token family it starts. The row is
//! what refresh and revocation serialize on: a refresh updates it (`touch_live`, a row lock on
//! PostgreSQL) before minting, a revocation updates it too, so whichever comes second sees the
//! other's result — a revocation never misses a token minted concurrently, and a refresh never
//! mints for a sign-in already revoked.
//!
//! Every revocation (logout, logoutAll, revokeSession, refresh-token reuse, account deletion)
//! goes through [`revoke`], which also records it in `revoked_sessions` (which outlives the
//! user) and publishes it to every instance ([`crate::revocations`]), so the sign-in's access
//! tokens stop at once, and stay refused by instances started later.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend};
use uuid::Uuid;

use crate::{
    db,
    error::{AppError, AppResult},
    services::{otp::SignIn, tokens, tokens::AccessToken, users},
    state::AppState,
};

/// refreshToken: a new token pair for the sign-in `raw` belongs to (rotation, in
/// [`tokens::refresh_token`]) and its user, as a sign-in that created no one.
pub async fn refresh(state: &AppState, raw: &str) -> AppResult<SignIn> {
    let (user_id, tokens) = tokens::refresh_token(state, raw).await?;
    let user = users::signed_in(&state.db, user_id).await?;
    Ok(SignIn {
        user,
        tokens,
        is_new_user: false,
    })
}

/// The longest `userAgent` kept, in characters.
pub const MAX_USER_AGENT_CHARS: usize = 200;

/// A live sign-in, as the `sessions` query shows it.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub user_agent: Option<String>,
}

/// What tokens minted for a sign-in need to know of it.
#[derive(Clone, Debug)]
pub struct Grant {
    pub id: String,
    /// The sign-in's absolute end: no token of it outlives this.
    pub expires_at: DateTime<Utc>,
    /// Its verifyCode (the row's `created_at`): the access tokens' `auth_time`, which
    /// deleteAccount judges; refreshes keep it.
    pub auth_time: DateTime<Utc>,
}

/// Which sign-ins to revoke.
#[derive(Clone, Copy, Debug)]
pub enum Revoke<'a> {
    /// One sign-in, only if it is `user_id`'s (revokeSession).
    OneOf { user_id: i64, id: &'a str },
    /// One sign-in, whoever's (logout and reuse detection, which found it by a token).
    Family(&'a str),
    /// Every sign-in of a user (logoutAll, account deletion).
    AllOf(i64),
    /// Every sign-in of a user but one, the caller's own (phone change).
    OthersOf { user_id: i64, keep: &'a str },
}

/// A `User-Agent` header as stored: trimmed, control characters dropped, at most
/// [`MAX_USER_AGENT_CHARS`] characters; `None` when nothing is left.
pub fn clean_user_agent(raw: &str) -> Option<String> {
    let cleaned: String = raw
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_USER_AGENT_CHARS)
        .collect();
    (!cleaned.is_empty()).then_some(cleaned)
}

/// Starts a sign-in for `user_id` (in the verifyCode transaction `conn`).
pub async fn create(
    conn: &impl ConnectionTrait,
    state: &AppState,
    user_id: i64,
    user_agent: Option<&str>,
    now: DateTime<Utc>,
) -> AppResult<Grant> {
    let id = Uuid::new_v4().to_string();
    let expires_at = now + state.config.session_max_lifetime;
    conn.execute(db::raw(
        conn.get_database_backend(),
        "INSERT INTO sessions (id, user_id, created_at, last_used_at, user_agent, expires_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
        vec![
            id.clone().into(),
            user_id.into(),
            now.into(),
            now.into(),
            user_agent.and_then(clean_user_agent).into(),
            expires_at.into(),
        ],
    ))
    .await?;
    Ok(Grant {
        id,
        expires_at,
        auth_time: now,
    })
}

/// Marks sign-in `id` used now, if it is live, holding its row (PostgreSQL: until `txn`
/// ends) so a concurrent revocation waits for this refresh and then revokes what it minted.
/// `None`: revoked or past its absolute end.
pub async fn touch_live(
    txn: &impl ConnectionTrait,
    state: &AppState,
    id: &str,
    now: DateTime<Utc>,
) -> AppResult<Option<Grant>> {
    let max_lifetime = state.config.session_max_lifetime;
    let row = txn
        .query_one(db::raw(
            txn.get_database_backend(),
            "UPDATE sessions SET last_used_at = ? \
             WHERE id = ? AND revoked_at IS NULL AND expires_at > ? AND created_at > ? \
             RETURNING expires_at, created_at",
            // `created_at` too: a lowered SESSION_MAX_LIFETIME_SECONDS ends older sign-ins at
            // once, not only those started after the change.
            vec![
                now.into(),
                id.into(),
                now.into(),
                (now - max_lifetime).into(),
            ],
        ))
        .await?;
    Ok(match row {
        Some(row) => {
            let stored: DateTime<Utc> = row.try_get("", "expires_at")?;
            let created_at: DateTime<Utc> = row.try_get("", "created_at")?;
            Some(Grant {
                id: id.to_owned(),
                expires_at: stored.min(created_at + max_lifetime),
                auth_time: created_at,
            })
        }
        None => None,
    })
}

/// Whether sign-in `id` of `user_id` is live in the database (not revoked, before its absolute
/// end), read in `conn`'s transaction: the account-changing mutations ask the database itself
/// rather than this instance's memory of revocations (which another instance's revocation
/// reaches up to a second later).
pub async fn is_live(
    conn: &impl ConnectionTrait,
    user_id: i64,
    id: &str,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    live_row(conn, user_id, id, now, "").await
}

/// [`is_live`], holding the row until `conn`'s transaction ends (PostgreSQL: `FOR UPDATE`;
/// SQLite runs one writer at a time): a revocation of this sign-in that starts meanwhile
/// waits, so a phone change cannot commit after its sign-in's logout.
pub async fn hold_if_live(
    conn: &impl ConnectionTrait,
    user_id: i64,
    id: &str,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let lock = match conn.get_database_backend() {
        DbBackend::Postgres => " FOR UPDATE",
        _ => "",
    };
    live_row(conn, user_id, id, now, lock).await
}

async fn live_row(
    conn: &impl ConnectionTrait,
    user_id: i64,
    id: &str,
    now: DateTime<Utc>,
    lock: &str,
) -> AppResult<bool> {
    let row = conn
        .query_one(db::raw(
            conn.get_database_backend(),
            &format!(
                "SELECT 1 AS live FROM sessions \
                 WHERE id = ? AND user_id = ? AND revoked_at IS NULL AND expires_at > ?{lock}"
            ),
            vec![id.into(), user_id.into(), now.into()],
        ))
        .await?;
    Ok(row.is_some())
}

/// Account-changing mutations (phone change, deletion) need a recent verifyCode: an access
/// token stolen from a sign-in older than `REAUTH_MAX_AGE_SECONDS` cannot move or delete the
/// account. FORBIDDEN with reason REAUTHENTICATION_REQUIRED otherwise.
pub fn require_recent_sign_in(
    state: &AppState,
    caller: &AccessToken,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let age = now.timestamp().saturating_sub(caller.auth_time);
    if age > state.config.reauth_max_age.as_secs() as i64 {
        return Err(AppError::ReauthenticationRequired);
    }
    Ok(())
}

/// The error for an access token whose sign-in has ended.
pub fn ended() -> AppError {
    AppError::Unauthenticated("This sign-in has ended; sign in again.")
}

/// Live sign-ins: not revoked, before their absolute end, and used within the refresh-token
/// lifetime (an idle one has no refresh token left).
const LIVE: &str = "revoked_at IS NULL AND expires_at > ? AND last_used_at > ?";

fn live_values(state: &AppState, now: DateTime<Utc>) -> [sea_orm::Value; 2] {
    [now.into(), (now - state.config.refresh_token_ttl).into()]
}

/// `user_id`'s live sign-ins, newest first.
pub async fn list_live(state: &AppState, user_id: i64) -> AppResult<Vec<SessionInfo>> {
    let now = state.clock.now();
    let mut values = vec![user_id.into()];
    values.extend(live_values(state, now));
    let rows = state
        .db
        .query_all(db::raw(
            state.db.get_database_backend(),
            &format!(
                "SELECT id, created_at, last_used_at, user_agent FROM sessions \
                 WHERE user_id = ? AND {LIVE} ORDER BY created_at DESC, id DESC"
            ),
            values,
        ))
        .await?;
    rows.into_iter()
        .map(|row| {
            Ok(SessionInfo {
                id: row.try_get("", "id")?,
                created_at: row.try_get("", "created_at")?,
                last_used_at: row.try_get("", "last_used_at")?,
                user_agent: row.try_get("", "user_agent")?,
            })
        })
        .collect()
}

/// Revokes the sign-ins `which` names that are not revoked yet, and publishes them (their
/// access tokens and sockets die on every instance within a second). Runs on `conn`, so a
/// caller's transaction (account deletion) commits it with its other writes. Returns how many
/// of them were live.
pub async fn revoke(
    conn: &impl ConnectionTrait,
    state: &AppState,
    which: Revoke<'_>,
) -> AppResult<usize> {
    let now = state.clock.now();
    let (filter, mut values): (&str, Vec<sea_orm::Value>) = match which {
        Revoke::OneOf { user_id, id } => {
            ("id = ? AND user_id = ?", vec![id.into(), user_id.into()])
        }
        Revoke::Family(id) => ("id = ?", vec![id.into()]),
        Revoke::AllOf(user_id) => ("user_id = ?", vec![user_id.into()]),
        Revoke::OthersOf { user_id, keep } => {
            ("user_id = ? AND id <> ?", vec![user_id.into(), keep.into()])
        }
    };
    values.insert(0, now.into());
    let [live_now, live_since] = live_values(state, now);
    values.extend([live_now, live_since]);
    // The CASE reports, for each row revoked, whether it was live (logoutAll's count).
    let rows = conn
        .query_all(db::raw(
            conn.get_database_backend(),
            &format!(
                "UPDATE sessions SET revoked_at = ? WHERE {filter} AND revoked_at IS NULL \
                 RETURNING id, CASE WHEN expires_at > ? AND last_used_at > ? THEN 1 ELSE 0 END AS live"
            ),
            values,
        ))
        .await?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut live = 0;
    for row in rows {
        let id: String = row.try_get("", "id")?;
        let was_live: i32 = row.try_get("", "live")?;
        live += usize::from(was_live == 1);
        if let Ok(id) = Uuid::parse_str(&id) {
            ids.push(id);
        }
    }
    remember(conn, &ids, now).await?;
    state.revocations.publish(conn, &ids).await?;
    if !ids.is_empty() {
        tracing::info!(
            revoked = ids.len(),
            reason = which.reason(),
            "sign-ins revoked"
        );
    }
    Ok(live)
}

/// Records revoked sign-ins in `revoked_sessions`, which outlives their `sessions` rows (a
/// deleted user's go with the user): an instance starting later loads its revocations from
/// there ([`crate::revocations`]).
async fn remember(conn: &impl ConnectionTrait, ids: &[Uuid], now: DateTime<Utc>) -> AppResult<()> {
    // A user's sign-ins are few; chunks keep a pathological count under parameter limits.
    for chunk in ids.chunks(100) {
        let rows = vec!["(?, ?)"; chunk.len()].join(", ");
        let values = chunk
            .iter()
            .flat_map(|id| [id.to_string().into(), now.into()])
            .collect();
        conn.execute(db::raw(
            conn.get_database_backend(),
            &format!(
                "INSERT INTO revoked_sessions (id, revoked_at) VALUES {rows} \
                 ON CONFLICT (id) DO NOTHING"
            ),
            values,
        ))
        .await?;
    }
    Ok(())
}

impl Revoke<'_> {
    fn reason(&self) -> &'static str {
        match self {
            Self::OneOf { .. } => "revokeSession",
            Self::Family(_) => "logout or refresh-token reuse",
            Self::AllOf(_) => "every sign-in of a user",
            Self::OthersOf { .. } => "every other sign-in of a user",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_are_trimmed_cleaned_and_capped() {
        assert_eq!(clean_user_agent("  "), None);
        assert_eq!(clean_user_agent(" curl/8 ").as_deref(), Some("curl/8"));
        assert_eq!(clean_user_agent("a\u{0}b\nc").as_deref(), Some("abc"));
        let long = "é".repeat(300);
        assert_eq!(
            clean_user_agent(&long).map(|s| s.chars().count()),
            Some(MAX_USER_AGENT_CHARS)
        );
    }
}
