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
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, EntityTrait, FromQueryResult,
    IdenStatic, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, OnConflict, Query},
};
use uuid::Uuid;

use crate::{
    db::entities::{
        revoked_sessions,
        sessions::{self, Column},
    },
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
#[derive(Clone, Debug, FromQueryResult)]
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
    let expires_at = now + state.config.tokens.session_max_lifetime;
    let insert = Query::insert()
        .into_table(sessions::Entity)
        .columns([
            Column::Id,
            Column::UserId,
            Column::CreatedAt,
            Column::LastUsedAt,
            Column::UserAgent,
            Column::ExpiresAt,
        ])
        .values_panic([
            id.clone().into(),
            user_id.into(),
            now.into(),
            now.into(),
            user_agent.and_then(clean_user_agent).into(),
            expires_at.into(),
        ])
        .to_owned();
    conn.execute(&insert).await?;
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
    let max_lifetime = state.config.tokens.session_max_lifetime;
    let touch = Query::update()
        .table(sessions::Entity)
        .value(Column::LastUsedAt, now)
        .and_where(Column::Id.eq(id))
        .and_where(Column::RevokedAt.is_null())
        .and_where(Column::ExpiresAt.gt(now))
        // `created_at` too: a lowered SESSION_MAX_LIFETIME_SECONDS ends older sign-ins at
        // once, not only those started after the change.
        .and_where(Column::CreatedAt.gt(now - max_lifetime))
        .returning(Query::returning().columns([Column::ExpiresAt, Column::CreatedAt]))
        .to_owned();
    let row = txn.query_one(&touch).await?;
    Ok(match row {
        Some(row) => {
            let stored: DateTime<Utc> = row.try_get("", Column::ExpiresAt.as_str())?;
            let created_at: DateTime<Utc> = row.try_get("", Column::CreatedAt.as_str())?;
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
    live_row(conn, user_id, id, now, false).await
}

/// [`is_live`], holding the row until `conn`'s transaction ends (PostgreSQL: `FOR UPDATE`;
/// SQLite: the database's write lock, see [`writer_if_live`]): a revocation of this sign-in
/// that starts meanwhile waits, so a phone change cannot commit after its sign-in's logout.
pub async fn hold_if_live(
    conn: &impl ConnectionTrait,
    user_id: i64,
    id: &str,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    live_row(conn, user_id, id, now, true).await
}

/// [`is_live`] as the first statement of a transaction that goes on to write. On SQLite it
/// takes the write lock (a no-op UPDATE of the row, waiting out other writers through the
/// busy timeout): a WAL transaction that reads first and writes later fails with
/// SQLITE_BUSY_SNAPSHOT, without waiting, when another connection commits in between (the
/// outbox worker, another instance). On PostgreSQL a plain read: account deletion then locks
/// refresh tokens before the session, the order refresh takes them in.
pub async fn writer_if_live(
    conn: &impl ConnectionTrait,
    user_id: i64,
    id: &str,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    if conn.get_database_backend() == DatabaseBackend::Sqlite {
        sqlite_write_lock_if_live(conn, user_id, id, now).await
    } else {
        is_live(conn, user_id, id, now).await
    }
}

async fn sqlite_write_lock_if_live(
    conn: &impl ConnectionTrait,
    user_id: i64,
    id: &str,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let update = Query::update()
        .table(sessions::Entity)
        .value(Column::Id, Expr::col(Column::Id))
        .and_where(Column::Id.eq(id))
        .and_where(Column::UserId.eq(user_id))
        .and_where(Column::RevokedAt.is_null())
        .and_where(Column::ExpiresAt.gt(now))
        .returning_col(Column::Id)
        .to_owned();
    let row = conn.query_one(&update).await?;
    Ok(row.is_some())
}

async fn live_row(
    conn: &impl ConnectionTrait,
    user_id: i64,
    id: &str,
    now: DateTime<Utc>,
    hold: bool,
) -> AppResult<bool> {
    if hold && conn.get_database_backend() == DatabaseBackend::Sqlite {
        return sqlite_write_lock_if_live(conn, user_id, id, now).await;
    }
    let mut select = sessions::Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(Column::Id.eq(id))
        .filter(Column::UserId.eq(user_id))
        .filter(Column::RevokedAt.is_null())
        .filter(Column::ExpiresAt.gt(now));
    if hold {
        // FOR UPDATE on PostgreSQL (SQLite took its write lock above).
        select = select.lock_exclusive();
    }
    Ok(select.into_tuple::<String>().one(conn).await?.is_some())
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
fn live(state: &AppState, now: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(Column::RevokedAt.is_null())
        .add(Column::ExpiresAt.gt(now))
        .add(Column::LastUsedAt.gt(now - state.config.tokens.refresh_ttl))
}

/// How many live sign-ins `sessions` lists at most: the newest. A user has a few; the list is
/// capped so that what one request can make the server resolve is bounded (the cost count
/// pays for this many rows, docs/tools.md), however many sign-ins someone piles up.
pub const MAX_LISTED: u64 = 100;

/// `user_id`'s live sign-ins, newest first, at most [`MAX_LISTED`].
pub async fn list_live(state: &AppState, user_id: i64) -> AppResult<Vec<SessionInfo>> {
    let now = state.clock.now();
    Ok(sessions::Entity::find()
        .select_only()
        .columns([
            Column::Id,
            Column::CreatedAt,
            Column::LastUsedAt,
            Column::UserAgent,
        ])
        .filter(Column::UserId.eq(user_id))
        .filter(live(state, now))
        .order_by_desc(Column::CreatedAt)
        .order_by_desc(Column::Id)
        .limit(MAX_LISTED)
        .into_model::<SessionInfo>()
        .all(&state.db)
        .await?)
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
    let which_rows = match which {
        Revoke::OneOf { user_id, id } => Condition::all()
            .add(Column::Id.eq(id))
            .add(Column::UserId.eq(user_id)),
        Revoke::Family(id) => Condition::all().add(Column::Id.eq(id)),
        Revoke::AllOf(user_id) => Condition::all().add(Column::UserId.eq(user_id)),
        Revoke::OthersOf { user_id, keep } => Condition::all()
            .add(Column::UserId.eq(user_id))
            .add(Column::Id.ne(keep)),
    };
    // RETURNING the times that say whether each revoked row was live (logoutAll's count): the
    // update leaves them as they were.
    let update = Query::update()
        .table(sessions::Entity)
        .value(Column::RevokedAt, now)
        .cond_where(which_rows)
        .and_where(Column::RevokedAt.is_null())
        .returning(Query::returning().columns([Column::Id, Column::ExpiresAt, Column::LastUsedAt]))
        .to_owned();
    let rows = conn.query_all(&update).await?;
    let idle_before = now - state.config.tokens.refresh_ttl;
    let mut ids = Vec::with_capacity(rows.len());
    let mut live = 0;
    for row in rows {
        let id: String = row.try_get("", Column::Id.as_str())?;
        let expires_at: DateTime<Utc> = row.try_get("", Column::ExpiresAt.as_str())?;
        let last_used_at: DateTime<Utc> = row.try_get("", Column::LastUsedAt.as_str())?;
        // The rule of `live`, on the row as it was.
        live += usize::from(expires_at > now && last_used_at > idle_before);
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
        let mut insert = Query::insert();
        insert
            .into_table(revoked_sessions::Entity)
            .columns([
                revoked_sessions::Column::Id,
                revoked_sessions::Column::RevokedAt,
            ])
            .on_conflict(
                OnConflict::column(revoked_sessions::Column::Id)
                    .do_nothing()
                    .to_owned(),
            );
        for id in chunk {
            insert.values_panic([id.to_string().into(), now.into()]);
        }
        conn.execute(&insert).await?;
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
