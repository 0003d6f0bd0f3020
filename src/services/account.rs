//! Deleting an account (App Store guideline 5.1.1(v)): only from a sign-in whose verifyCode is
//! recent, and all at once: sign-ins, pending codes, queued SMS and the user row go in one
//! transaction. Invitees keep their `activated_invite_code` (the foreign key only clears
//! `invited_by_id`), so they still cannot activate another; rate-limit history stays, so a
//! deletion does not reset a phone's limits.

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IdenStatic, QueryFilter, TransactionTrait,
    sea_query::Query,
};

use crate::{
    db::entities::{otp_codes, refresh_tokens, users},
    error::{AppError, AppResult},
    outbox,
    services::{
        sessions::{self, Revoke},
        tokens::AccessToken,
    },
    state::AppState,
};

/// Deletes the caller. FORBIDDEN (REAUTHENTICATION_REQUIRED) when the sign-in's verifyCode is
/// older than `REAUTH_MAX_AGE_SECONDS`; UNAUTHENTICATED when the sign-in is no longer live.
#[tracing::instrument(skip_all, fields(user_id = caller.user_id))]
pub async fn delete_account(state: &AppState, caller: &AccessToken) -> AppResult<bool> {
    let now = state.clock.now();
    sessions::require_recent_sign_in(state, caller, now)?;
    let user_id = caller.user_id;
    let txn = state.db.begin().await?;
    // A logged-out sign-in's access token lives on until it expires; it must not delete.
    if !sessions::writer_if_live(&txn, user_id, &caller.session_id.to_string(), now).await? {
        txn.rollback().await?;
        return Err(sessions::ended());
    }
    // Refresh tokens first, then the sessions: the order a refresh takes its locks in (token
    // row, then session row), so a refresh racing the deletion waits instead of deadlocking.
    refresh_tokens::Entity::delete_many()
        .filter(refresh_tokens::Column::UserId.eq(user_id))
        .exec(&txn)
        .await?;
    sessions::revoke(&txn, state, Revoke::AllOf(user_id)).await?;
    let delete_user = Query::delete()
        .from_table(users::Entity)
        .and_where(users::Column::Id.eq(user_id))
        .returning_col(users::Column::Phone)
        .to_owned();
    let Some(row) = txn.query_one(&delete_user).await? else {
        txn.rollback().await?;
        return Err(AppError::user_gone());
    };
    let phone: String = row.try_get("", users::Column::Phone.as_str())?;
    otp_codes::Entity::delete_many()
        .filter(otp_codes::Column::Phone.eq(phone.as_str()))
        .exec(&txn)
        .await?;
    outbox::delete_pending(&txn, &phone).await?;
    txn.commit().await?;
    tracing::info!("account deleted");
    Ok(true)
}
