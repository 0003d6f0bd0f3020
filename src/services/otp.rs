//! One-time codes: `request_code` issues and sends one, `verify_code` checks it and signs the
//! user in. Every check-then-write is a single conditional statement, so concurrent requests
//! (aliases, JSON batches, several instances) can never both pass a check.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, FromQueryResult, IdenStatic,
    QueryFilter, TransactionTrait,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
};

use crate::{
    db::entities::otp_codes::{self, Column},
    domain::{otp_code::OtpCode, phone::Phone},
    error::{AppError, AppResult},
    keys::constant_time_eq,
    services::{
        limits,
        pumping::{self, Breakers},
        seconds_until,
        tokens::{self, TokenPair},
        users,
    },
    sms,
    state::AppState,
};

/// What a new code writes into the phone's row (besides the phone): all of it is replaced.
const CODE_COLUMNS: [Column; 6] = [
    Column::CodeHash,
    Column::Attempts,
    Column::CreatedAt,
    Column::ExpiresAt,
    Column::ResendAvailableAt,
    Column::ConsumedAt,
];

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

/// Issues a fresh code for `phone`, replacing any pending one, and queues its SMS in the same
/// transaction (`outbox` delivers it off the request path). Refused, in this order
/// and without touching the code the user already has: a destination no code may go to
/// (country, number type: `services::pumping`), a phone whose failure budget is spent, a
/// resend inside the cooldown, any full send window (per phone, per client, global), and, for
/// a number that never signed in, the SMS pumping breakers (range, country conversion).
///
/// A review number (`TEST_PHONE_NUMBERS`) gets its fixed code and no SMS; every other rule
/// above applies to it as to any phone.
#[tracing::instrument(skip_all, fields(phone = %phone))]
pub async fn request_code(state: &AppState, phone: Phone, ip: IpAddr) -> AppResult<CodeIssued> {
    let config = &state.config;
    pumping::check_destination(config, &phone)?;
    let now = state.clock.now();
    let expires_at = now + config.otp.ttl;
    let resend_available_at = now + config.otp.resend_cooldown;
    let test_code = config.test_code_for(&phone).map(str::to_owned);
    let code = match &test_code {
        Some(fixed) => OtpCode::parse(fixed, config.otp.length)?,
        None => OtpCode::generate(config.otp.length),
    };
    let hash = state
        .keys
        .otp_hash(phone.as_str(), now.timestamp_micros(), code.expose());
    let failure_windows = limits::failure_windows(config, &phone);
    let send_windows = limits::code_windows(config, &phone, ip);
    let breakers = Breakers::new(config, &phone);
    let breaker_windows = breakers.windows();

    // Five statements on success: lock the send buckets (and the range's), count every window
    // (failures, sends, breakers) and whether the phone signed in before, write the code,
    // record the send, queue the message. Known and new numbers take the same path.
    let txn = state.db.begin().await?;
    let locked = [send_windows.as_slice(), &breaker_windows[..1]].concat();
    limits::lock(&txn, &locked).await?;
    let all_windows = [
        failure_windows.as_slice(),
        send_windows.as_slice(),
        breaker_windows.as_slice(),
    ]
    .concat();
    let probe = breakers
        .any_on()
        .then(|| Breakers::known_user_probe(&phone));
    let (counts, known) = limits::counts_and_probe(&txn, &all_windows, now, probe).await?;
    let known_user = known > 0;
    let (failure_counts, rest) = counts.split_at(failure_windows.len());
    let (send_counts, breaker_counts) = rest.split_at(send_windows.len());
    // A phone locked by wrong guesses gets no new code: otherwise waiting out the resend
    // cooldown would reset the attacker's chances.
    if let Err(err) = limits::verdict(&txn, &failure_windows, failure_counts, now).await {
        txn.rollback().await?;
        return Err(err);
    }
    // Insert, or replace the pending row only when its cooldown is over: the cooldown check and
    // the write are one statement.
    let upsert = Query::insert()
        .into_table(otp_codes::Entity)
        .columns(std::iter::once(Column::Phone).chain(CODE_COLUMNS))
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
                .update_columns(CODE_COLUMNS)
                .action_and_where(
                    Expr::col((otp_codes::Entity, Column::ResendAvailableAt)).lte(now),
                )
                .to_owned(),
        )
        .returning_col(Column::Id)
        .to_owned();
    let Some(row) = txn.query_one(&upsert).await? else {
        // The pending code's cooldown is still running (or another request for this phone
        // just won the race): the code the user has stays as it is.
        let pending = pending_code(&txn, &phone).await?;
        txn.rollback().await?;
        let until = pending.map_or(resend_available_at, |p| p.resend_available_at);
        crate::metrics::limit_refused("resend_cooldown");
        return Err(AppError::RateLimited {
            retry_after: seconds_until(now, until),
        });
    };
    // Checked after the cooldown (its answer is the more useful one) and before anything is
    // recorded; refusing rolls the code's write back.
    if let Err(err) = limits::verdict(&txn, &send_windows, send_counts, now).await {
        txn.rollback().await?;
        return Err(err);
    }
    if !known_user && let Err(err) = breakers.verdict(&txn, config, breaker_counts, now).await {
        txn.rollback().await?;
        // The caller pays as if a code had gone out (there was room: the send windows
        // passed), so asking about a number costs the same whatever the answer.
        limits::record(&state.db, &limits::client_code_windows(config, ip), now).await?;
        return Err(err);
    }
    let recorded = [send_windows, breakers.sent_windows(known_user)].concat();
    limits::record(&txn, &recorded, now).await?;
    let code_id: i64 = row.try_get("", Column::Id.as_str())?;
    // The message is committed with the code (the transactional outbox): a provider outage
    // or a crash after the commit loses nothing, and the request never waits for delivery,
    // so its answer gives no timing signal about the phone.
    if test_code.is_none() {
        state
            .outbox
            .enqueue_code(
                &txn,
                code_id,
                &phone,
                now,
                &sms::code_message(&config.sms_text, code.expose()),
            )
            .await?;
    }
    txn.commit().await?;
    if test_code.is_none() {
        state.outbox.wake();
    } else {
        tracing::info!("review number: fixed code, no SMS");
    }

    let dev_code = config.otp.expose.then(|| code.expose().to_owned());
    crate::metrics::code_issued();
    tracing::info!("code issued");
    Ok(CodeIssued {
        phone,
        expires_at,
        resend_available_at,
        dev_code,
    })
}

async fn pending_code(
    conn: &impl ConnectionTrait,
    phone: &Phone,
) -> AppResult<Option<otp_codes::Model>> {
    Ok(otp_codes::Entity::find()
        .filter(Column::Phone.eq(phone.as_str()))
        .one(conn)
        .await?)
}

/// Checks `code` for `phone` and signs the user in (creating them on first success).
///
/// Every call counts, however it arrives (aliases, batches, instances): the per-IP window is
/// recorded first; then the code's row is claimed with an atomic `attempts + 1`, which also
/// locks it, so all verifies of one phone take turns; under that lock the phone's failure
/// budget is read exactly, a wrong guess is recorded against it, and a right one consumes the
/// code, creates or loads the user and issues tokens in the same transaction.
#[tracing::instrument(skip_all, fields(phone = %phone))]
pub async fn verify_code(
    state: &AppState,
    phone: Phone,
    code: OtpCode,
    ip: IpAddr,
    user_agent: Option<&str>,
) -> AppResult<SignIn> {
    let now = state.clock.now();
    let txn = claim_code(state, &phone, &code, ip, now).await?;
    let (user, is_new_user) = users::find_or_create(&txn, &phone, now).await?;
    let tokens = tokens::sign_in(&txn, state, user.id, user_agent, now).await?;
    txn.commit().await?;
    tracing::info!(user_id = user.id, is_new_user, "signed in");
    Ok(SignIn {
        user,
        tokens,
        is_new_user,
    })
}

/// What a claimed attempt returns of its code's row.
#[derive(FromQueryResult)]
struct Attempt {
    id: i64,
    code_hash: String,
    attempts: i32,
    created_at: DateTime<Utc>,
}

/// Checks `code` for `phone` under every attempt rule (see [`verify_code`]) and consumes it.
/// Returns the open transaction that consumed it: the caller adds what the proven phone allows
/// (a sign-in, a phone change) and commits, or rolls back and the code stays unused.
pub async fn claim_code(
    state: &AppState,
    phone: &Phone,
    code: &OtpCode,
    ip: IpAddr,
    now: DateTime<Utc>,
) -> AppResult<DatabaseTransaction> {
    let config = &state.config;
    let max_attempts = config.otp.max_attempts as i32;

    let verify_windows = limits::verify_windows(config, ip);
    if verify_windows.iter().any(|w| w.max > 0) {
        let txn = state.db.begin().await?;
        if let Err(err) = limits::check_and_record(&txn, &verify_windows, now).await {
            txn.rollback().await?;
            return Err(err);
        }
        txn.commit().await?;
    }

    let txn = state.db.begin().await?;
    // UPDATE otp_codes SET attempts = attempts + 1 WHERE phone = ? AND consumed_at IS NULL
    //   AND attempts < ? AND expires_at > ? RETURNING id, code_hash, attempts, created_at
    let claim = Query::update()
        .table(otp_codes::Entity)
        .value(Column::Attempts, Expr::col(Column::Attempts).add(1))
        .and_where(Column::Phone.eq(phone.as_str()))
        .and_where(Column::ConsumedAt.is_null())
        .and_where(Column::Attempts.lt(max_attempts))
        .and_where(Column::ExpiresAt.gt(now))
        .returning(Query::returning().columns([
            Column::Id,
            Column::CodeHash,
            Column::Attempts,
            Column::CreatedAt,
        ]))
        .to_owned();
    let Some(row) = txn.query_one(&claim).await? else {
        txn.rollback().await?;
        return Err(why_no_attempt(state, phone, now).await?);
    };
    if let Err(err) = limits::check(&txn, &limits::failure_windows(config, phone), now).await {
        // The budget is spent: this guess is not looked at, and costs the code nothing.
        txn.rollback().await?;
        return Err(err);
    }
    let Attempt {
        id,
        code_hash: stored_hash,
        attempts,
        created_at: issued_at,
    } = Attempt::from_query_result(&row, "")?;
    let attempts_left = Ord::max(max_attempts - attempts, 0) as u32;

    let presented =
        state
            .keys
            .otp_hash(phone.as_str(), issued_at.timestamp_micros(), code.expose());
    if !constant_time_eq(&presented, &stored_hash) {
        limits::record_failure(&txn, config, phone, now).await?;
        txn.commit().await?;
        crate::metrics::verify_failed();
        tracing::info!(attempts_left, "wrong code");
        return Err(AppError::InvalidCode { attempts_left });
    }

    let consumed = otp_codes::Entity::update_many()
        .col_expr(Column::ConsumedAt, Expr::value(now))
        .filter(Column::Id.eq(id))
        .filter(Column::CodeHash.eq(stored_hash))
        .filter(Column::ConsumedAt.is_null())
        .exec(&txn)
        .await?;
    if consumed.rows_affected != 1 {
        txn.rollback().await?;
        return Err(AppError::InvalidCode { attempts_left });
    }
    // The conversion breaker's numerator (no statement when the breaker is off): a verified
    // code, whether it signs in or moves an account.
    pumping::record_verified(&txn, config, phone, now).await?;
    Ok(txn)
}

/// The error for a verify that found no attempt to spend: no code, a used one, an expired one,
/// or one whose attempts are all spent.
async fn why_no_attempt(
    state: &AppState,
    phone: &Phone,
    now: DateTime<Utc>,
) -> AppResult<AppError> {
    // A spent failure budget outranks everything else: a new code would not help either.
    limits::check(
        &state.db,
        &limits::failure_windows(&state.config, phone),
        now,
    )
    .await?;
    let Some(row) = pending_code(&state.db, phone).await? else {
        return Ok(AppError::InvalidCode { attempts_left: 0 });
    };
    Ok(if row.consumed_at.is_some() {
        AppError::InvalidCode { attempts_left: 0 }
    } else if row.attempts >= state.config.otp.max_attempts as i32 {
        // The code is burned: only a new one helps, and that is possible after the cooldown.
        crate::metrics::limit_refused("code_attempts_spent");
        AppError::RateLimited {
            retry_after: seconds_until(now, row.resend_available_at),
        }
    } else {
        AppError::CodeExpired
    })
}
