//! Moving an account to a new phone number. The proof is the same as for signing in: a code
//! sent to the new number and entered back, so `request_phone_change` issues an ordinary code
//! (`otp::request_code`: every send rule of the new number applies) and
//! `confirm_phone_change` spends it under every attempt rule of `verifyCode`
//! (`otp::claim_code`). Only then is the number checked against other accounts, so nobody
//! learns whether a number has an account without receiving its SMS.

use std::net::IpAddr;

use sea_orm::{
    ColumnTrait, ConnectionTrait, FromQueryResult, SqlErr, TransactionTrait, sea_query::Query,
};

use crate::{
    db::entities::users,
    domain::{otp_code::OtpCode, phone::Phone},
    error::{AppError, AppResult},
    services::{
        otp::{self, CodeIssued},
        sessions::{self, Revoke},
        tokens::AccessToken,
    },
    sms,
    state::AppState,
};

fn same_phone() -> AppError {
    AppError::bad_input("phone", "This is already your phone number.")
}

/// Sends a code to `phone`, the caller's new number.
#[tracing::instrument(skip_all, fields(user_id = caller.user_id, phone = %phone))]
pub async fn request_phone_change(
    state: &AppState,
    caller: &AccessToken,
    phone: Phone,
    ip: IpAddr,
) -> AppResult<CodeIssued> {
    // A stolen access token must not move the account to the thief's phone (and so outlive
    // every logout): a phone change, like a deletion, needs a recent verifyCode.
    sessions::require_recent_sign_in(state, caller, state.clock.now())?;
    let user = crate::services::users::signed_in(&state.db, caller.user_id).await?;
    if user.phone == phone.as_str() {
        return Err(same_phone());
    }
    otp::request_code(state, phone, ip).await
}

/// Moves the caller to `phone` once `code` checks out, in one transaction: the code is
/// consumed, the phone changes (PHONE_TAKEN when another account has it, decided by the
/// unique index, so two users racing for one number cannot both win), the caller's other
/// sign-ins are revoked and the old number's notice is queued. The caller's own sign-in must
/// still be live.
#[tracing::instrument(skip_all, fields(user_id = caller.user_id, phone = %phone))]
pub async fn confirm_phone_change(
    state: &AppState,
    caller: &AccessToken,
    phone: Phone,
    code: OtpCode,
    ip: IpAddr,
) -> AppResult<users::Model> {
    sessions::require_recent_sign_in(state, caller, state.clock.now())?;
    let user = crate::services::users::signed_in(&state.db, caller.user_id).await?;
    if user.phone == phone.as_str() {
        return Err(same_phone());
    }
    let old_phone = Phone::from_e164(user.phone);
    let now = state.clock.now();
    let txn = otp::claim_code(state, &phone, &code, ip, now).await?;
    // Checked after the code (a wrong guess counts either way) and before anything moves: an
    // access token that outlived its logout must not move the account. The row is held, so a
    // logout that starts now waits for this change and then ends the sign-in as usual.
    if !sessions::hold_if_live(&txn, caller.user_id, &caller.session_id.to_string(), now).await? {
        txn.rollback().await?;
        return Err(sessions::ended());
    }

    // A savepoint: a unique violation must not abort the transaction that consumed the code
    // (PostgreSQL refuses every statement after an error until a rollback).
    let savepoint = txn.begin().await?;
    let update = Query::update()
        .table(users::Entity)
        .value(users::Column::Phone, phone.as_str())
        .and_where(users::Column::Id.eq(caller.user_id))
        .and_where(users::Column::Phone.eq(old_phone.as_str()))
        .returning_all()
        .to_owned();
    let moved = match savepoint.query_one(&update).await {
        Ok(Some(row)) => {
            savepoint.commit().await?;
            users::Model::from_query_result(&row, "")?
        }
        Ok(None) => {
            // Deleted, or moved by a concurrent change: nothing to do, and the code stays.
            savepoint.rollback().await?;
            txn.rollback().await?;
            return Err(AppError::user_gone());
        }
        Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            // The code was right, so it is spent: asking again takes a new one.
            savepoint.rollback().await?;
            txn.commit().await?;
            tracing::info!("phone change refused: the number has an account");
            return Err(AppError::PhoneTaken);
        }
        Err(err) => return Err(err.into()),
    };
    sessions::revoke(
        &txn,
        state,
        Revoke::OthersOf {
            user_id: caller.user_id,
            keep: &caller.session_id.to_string(),
        },
    )
    .await?;
    // A review number gets no SMS, this one included.
    let notify = state.config.test_code_for(&old_phone).is_none();
    if notify {
        state
            .outbox
            .enqueue_notice(
                &txn,
                &old_phone,
                now,
                &sms::phone_changed_message(&state.config.sms_text),
            )
            .await?;
    }
    txn.commit().await?;
    if notify {
        state.outbox.wake();
    }
    tracing::info!(old_phone = %old_phone, "phone changed");
    Ok(moved)
}
