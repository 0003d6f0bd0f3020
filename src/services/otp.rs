//! One-time codes: `request_code` issues and sends one, `verify_code` checks it and signs the
//! user in. Every check-then-write is a single conditional statement, so concurrent requests
//! (aliases, JSON batches, several instances) can never both pass a check.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait,
    sea_query::{Expr, OnConflict, Query},
};

use crate::{
    db::{
        self,
        entities::otp_codes::{self, Column},
    },
    domain::{otp_code::OtpCode, phone::Phone},
    error::{AppError, AppResult},
    services::{
        keys::constant_time_eq,
        seconds_until,
        tokens::{self, TokenPair},
        users,
    },
    sms,
    state::AppState,
};

#[derive(Debug, Clone)]
pub struct CodeIssued {
    pub phone: Phone,
    pub expires_at: DateTime<Utc>,
    pub resend_available_at: DateTime<Utc>,
    /// Only when `OTP_EXPOSE` is on.
    pub dev_code: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SignIn {
    pub user: crate::db::entities::users::Model,
    pub tokens: TokenPair,
    pub is_new_user: bool,
}

/// Issues a fresh code for `phone`, replacing any pending one, and hands it to the SMS sender
/// off the request path. A resend inside the cooldown is refused without touching the code
/// the user already has.
#[tracing::instrument(skip_all, fields(phone = %phone))]
pub async fn request_code(state: &AppState, phone: Phone) -> AppResult<CodeIssued> {
    let config = &state.config;
    let now = state.clock.now();
    let expires_at = now + config.otp_ttl;
    let resend_available_at = now + config.otp_resend_cooldown;
    let code = OtpCode::generate(config.otp_length);
    let hash = state.keys.otp_hash(phone.as_str(), now.timestamp_micros(), code.expose());

    // Insert, or replace the pending row only when its cooldown is over: the cooldown check and
    // the write are one statement.
    let upsert = Query::insert()
        .into_table(otp_codes::Entity)
        .columns([
            Column::Phone,
            Column::CodeHash,
            Column::Attempts,
            Column::CreatedAt,
            Column::ExpiresAt,
            Column::ResendAvailableAt,
            Column::ConsumedAt,
        ])
        .values_panic([
            phone.as_str().into(),
            hash.into(),
            0i32.into(),
            now.into(),
            expires_at.into(),
            resend_available_at.into(),
            Option::<DateTime<Utc>>::None.into(),
        ])
        .on_conflict(
            OnConflict::column(Column::Phone)
                .update_columns([
                    Column::CodeHash,
                    Column::Attempts,
                    Column::CreatedAt,
                    Column::ExpiresAt,
                    Column::ResendAvailableAt,
                    Column::ConsumedAt,
                ])
                .action_and_where(
                    Expr::col((otp_codes::Entity, Column::ResendAvailableAt)).lte(now),
                )
                .to_owned(),
        )
        .returning_col(Column::Id)
        .to_owned();
    let backend = state.db.get_database_backend();
    if state.db.query_one(backend.build(&upsert)).await?.is_none() {
        let pending = pending_code(&state.db, &phone).await?;
        let retry_at = pending.map_or(resend_available_at, |row| row.resend_available_at);
        return Err(AppError::RateLimited { retry_after: seconds_until(now, retry_at) });
    }

    let dev_code = config.otp_expose.then(|| code.expose().to_owned());
    deliver(state, phone.clone(), code);
    tracing::info!("code issued");
    Ok(CodeIssued { phone, expires_at, resend_available_at, dev_code })
}

/// Sends the code in the background: a slow provider never holds the GraphQL request, and the
/// answer does not depend on delivery (no timing signal about the phone).
fn deliver(state: &AppState, phone: Phone, code: OtpCode) {
    let sender = state.sms.clone();
    tokio::spawn(async move {
        if let Err(err) = sender.send(&phone, &sms::code_message(code.expose())).await {
            tracing::error!(phone = %phone, error = %err, "SMS delivery failed");
        }
    });
}

async fn pending_code(
    conn: &impl ConnectionTrait,
    phone: &Phone,
) -> AppResult<Option<otp_codes::Model>> {
    Ok(otp_codes::Entity::find().filter(Column::Phone.eq(phone.as_str())).one(conn).await?)
}

/// Checks `code` for `phone` and signs the user in (creating them on first success).
#[tracing::instrument(skip_all, fields(phone = %phone))]
pub async fn verify_code(state: &AppState, phone: Phone, code: OtpCode) -> AppResult<SignIn> {
    let config = &state.config;
    let now = state.clock.now();
    let max_attempts = config.otp_max_attempts as i32;

    // Count the attempt before comparing, atomically: a guess is spent whether or not it is
    // right, and no two concurrent guesses can both see the last attempt as free.
    let claim = db::raw(
        state.db.get_database_backend(),
        "UPDATE otp_codes SET attempts = attempts + 1 \
         WHERE phone = ? AND consumed_at IS NULL AND attempts < ? AND expires_at > ? \
         RETURNING id, code_hash, attempts, created_at",
        vec![phone.as_str().into(), max_attempts.into(), now.into()],
    );
    let Some(row) = state.db.query_one(claim).await? else {
        return Err(why_no_attempt(state, &phone, now).await?);
    };
    let id: i64 = row.try_get("", "id")?;
    let stored_hash: String = row.try_get("", "code_hash")?;
    let attempts: i32 = row.try_get("", "attempts")?;
    let issued_at: DateTime<Utc> = row.try_get("", "created_at")?;
    let attempts_left = (max_attempts - attempts).max(0) as u32;

    let presented = state.keys.otp_hash(phone.as_str(), issued_at.timestamp_micros(), code.expose());
    if !constant_time_eq(&presented, &stored_hash) {
        tracing::info!(attempts_left, "wrong code");
        return Err(AppError::InvalidCode { attempts_left });
    }

    // Consume the code, create or load the user and issue tokens in one transaction. The
    // consume is conditional on the code still being this one and unused: exactly one of any
    // number of concurrent right guesses gets through.
    let txn = state.db.begin().await?;
    let consume = db::raw(
        txn.get_database_backend(),
        "UPDATE otp_codes SET consumed_at = ? WHERE id = ? AND code_hash = ? AND consumed_at IS NULL",
        vec![now.into(), id.into(), stored_hash.into()],
    );
    if txn.execute(consume).await?.rows_affected() != 1 {
        txn.rollback().await?;
        return Err(AppError::InvalidCode { attempts_left });
    }
    let (user, is_new_user) = users::find_or_create(&txn, &phone, now).await?;
    let tokens = tokens::issue_pair(&txn, state, user.id, None, now).await?;
    txn.commit().await?;
    tracing::info!(user_id = user.id, is_new_user, "signed in");
    Ok(SignIn { user, tokens, is_new_user })
}

/// The error for a verify that found no attempt to spend: no code, a used one, an expired one,
/// or one whose attempts are all spent.
async fn why_no_attempt(state: &AppState, phone: &Phone, now: DateTime<Utc>) -> AppResult<AppError> {
    let Some(row) = pending_code(&state.db, phone).await? else {
        return Ok(AppError::InvalidCode { attempts_left: 0 });
    };
    Ok(if row.consumed_at.is_some() {
        AppError::InvalidCode { attempts_left: 0 }
    } else if row.attempts >= state.config.otp_max_attempts as i32 {
        // The code is burned: only a new one helps, and that is possible after the cooldown.
        AppError::RateLimited { retry_after: seconds_until(now, row.resend_available_at) }
    } else {
        AppError::CodeExpired
    })
}
