//! The SMS outbox: codes are delivered from the database, not from the request.
//!
//! `request_code` calls [`enqueue`] inside the transaction that stores the code, so a code and
//! its message exist together or not at all, and then [`wake`]s the worker. The worker
//! ([`run_worker`], one per instance) repeatedly [`deliver_due`]s: it claims a batch of due rows
//! by setting a lease on them in one statement (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so
//! instances never take the same row; SQLite runs one writer at a time, so the same conditional
//! `UPDATE` is enough there), sends each with a timeout, and records the outcome:
//!
//! - delivered: `sent`;
//! - failed: retried after 1 s, 2 s, 4 s … (at most [`MAX_BACKOFF_SECS`]) until the row's give-up
//!   time (`SMS_DELIVERY_GIVE_UP_SECONDS` after the code was issued), then `undeliverable`;
//!   a failure the provider calls permanent (a refused number, bad credentials) gives up at once;
//! - a new code for the same phone: the older pending message is `superseded` (its code no
//!   longer works, so sending it would only confuse).
//!
//! A worker that dies mid-send loses nothing: its lease runs out and another claim retries the
//! row. Delivery is therefore at-least-once; the webhook provider passes a stable idempotency
//! key so a gateway can drop a repeat. The message text (it holds the code) is stored sealed
//! with a key derived from `JWT_SECRET` (`Keys::seal_outbox`) and wiped once the row is
//! finished, whatever the outcome.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::future::join_all;
use sea_orm::{ConnectionTrait, DatabaseBackend, QueryResult, TransactionTrait};
use tokio::sync::watch;

use crate::{
    db,
    domain::phone::Phone,
    error::{AppError, AppResult},
    services::limits,
    sms::SmsError,
    state::AppState,
};

/// The values of `sms_outbox.status`.
pub mod status {
    pub const PENDING: &str = "pending";
    pub const SENT: &str = "sent";
    pub const UNDELIVERABLE: &str = "undeliverable";
    pub const SUPERSEDED: &str = "superseded";
}

/// Rows one claim takes. They are sent concurrently, so a batch takes about one send timeout
/// at worst, which bounds how long a graceful shutdown waits for it.
pub const BATCH_SIZE: i64 = 16;
/// The safety net when no wake-up comes (another instance's codes, retries coming due).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
pub const MAX_BACKOFF_SECS: i64 = 60;
/// A lease outlives the send timeout by this much, so a slow but live worker keeps its rows.
const LEASE_MARGIN: TimeDelta = TimeDelta::seconds(30);
/// Finished rows (no text left, only the record) are deleted after this long.
const RETENTION: TimeDelta = TimeDelta::days(7);
/// Longest stored error text (the column's width).
const MAX_ERROR_LEN: usize = 200;

/// The values of `sms_outbox.kind`.
pub mod kind {
    /// The text holds a code; the row is tied to its `otp_codes` row.
    pub const CODE: &str = "code";
    /// A message with no code (the phone-change notice); always worth sending.
    pub const NOTICE: &str = "notice";
}

/// Adds the message for a freshly issued code. Call it inside the transaction that stores the
/// code, then [`wake`] the worker after the commit. (A message still pending for the phone's
/// previous code is retired by the worker, not here: the request stays one statement longer,
/// no more.)
pub async fn enqueue(
    conn: &impl ConnectionTrait,
    state: &AppState,
    otp_code_id: i64,
    phone: &Phone,
    issued_at: DateTime<Utc>,
    text: &str,
) -> AppResult<()> {
    insert(conn, state, kind::CODE, otp_code_id, phone, issued_at, text).await
}

/// Adds a message that carries no code (in the transaction of the change it reports), then
/// [`wake`] the worker after the commit. It is retried until `SMS_DELIVERY_GIVE_UP_SECONDS`
/// like a code.
pub async fn enqueue_notice(
    conn: &impl ConnectionTrait,
    state: &AppState,
    phone: &Phone,
    now: DateTime<Utc>,
    text: &str,
) -> AppResult<()> {
    insert(conn, state, kind::NOTICE, 0, phone, now, text).await
}

async fn insert(
    conn: &impl ConnectionTrait,
    state: &AppState,
    kind: &str,
    otp_code_id: i64,
    phone: &Phone,
    issued_at: DateTime<Utc>,
    text: &str,
) -> AppResult<()> {
    let backend = conn.get_database_backend();
    let context = context(phone.as_str(), issued_at);
    let sealed = state
        .keys
        .seal_outbox(&[&context[0], &context[1]], text)
        .map_err(AppError::internal)?;
    let give_up_at = issued_at + state.config.sms_give_up_after;
    conn.execute(db::raw(
        backend,
        "INSERT INTO sms_outbox (kind, otp_code_id, code_issued_at, phone, payload, status, \
         attempts, next_attempt_at, give_up_at, created_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
        vec![
            kind.into(),
            otp_code_id.into(),
            issued_at.into(),
            phone.as_str().into(),
            sealed.into(),
            status::PENDING.into(),
            issued_at.into(),
            give_up_at.into(),
            issued_at.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Deletes the messages still waiting for `phone` (an account being deleted takes its queued
/// SMS with it). In the caller's transaction.
pub async fn delete_pending(conn: &impl ConnectionTrait, phone: &str) -> AppResult<u64> {
    Ok(conn
        .execute(db::raw(
            conn.get_database_backend(),
            "DELETE FROM sms_outbox WHERE phone = ? AND status = ?",
            vec![phone.into(), status::PENDING.into()],
        ))
        .await?
        .rows_affected())
}

/// Tells this instance's worker that a message is waiting (a no-op cost if it is busy: the
/// wake-up is kept until it next waits).
pub fn wake(state: &AppState) {
    state.outbox_wake.notify_one();
}

/// What the sealed text is bound to: its row's phone and code.
fn context(phone: &str, issued_at: DateTime<Utc>) -> [Vec<u8>; 2] {
    [
        phone.as_bytes().to_vec(),
        issued_at.timestamp_micros().to_be_bytes().to_vec(),
    ]
}

/// The worker: delivers due messages until `stop` turns true (or its sender is gone), waking
/// on [`wake`] or every [`POLL_INTERVAL`]. A batch in hand is always finished, and one last
/// pass runs after the stop signal, so codes issued by the final in-flight requests still go
/// out; anything left is picked up by another instance or the next start.
pub async fn run_worker(state: AppState, mut stop: watch::Receiver<bool>) {
    tracing::debug!("SMS outbox worker started");
    loop {
        let handled = match deliver_due(&state).await {
            Ok(handled) => handled,
            Err(err) => {
                // The database is away; the next poll tries again.
                tracing::warn!(error = ?err, "SMS outbox: cannot deliver due messages");
                0
            }
        };
        if *stop.borrow() {
            break;
        }
        if handled > 0 {
            // More may be due right now.
            continue;
        }
        tokio::select! {
            () = state.outbox_wake.notified() => {}
            () = tokio::time::sleep(POLL_INTERVAL) => {}
            changed = stop.changed() => {
                if changed.is_err() {
                    // Nobody can stop us any more: the owner is gone.
                    break;
                }
            }
        }
    }
    tracing::debug!("SMS outbox worker stopped");
}

/// One pass: retires messages nobody should send any more, claims a batch of due ones and
/// delivers them. Returns how many messages it settled or attempted (0: nothing was due).
pub async fn deliver_due(state: &AppState) -> AppResult<usize> {
    let now = state.clock.now();
    let retired = retire(state, now).await?;
    let mut claimed = claim(state, now).await?;
    let attempted = claimed.len();
    claimed = pay_for_retries(state, claimed, now).await?;
    let results = join_all(claimed.iter().map(|row| send(state, row))).await;
    let mut sent = Vec::with_capacity(attempted);
    for (row, result) in claimed.iter().zip(results) {
        let recorded = match result {
            Ok(()) => {
                crate::metrics::code_delivered();
                sent.push(row);
                Ok(())
            }
            Err(err) => record_failure(state, row, &err).await,
        };
        if let Err(err) = recorded {
            // The send happened (or not) but its outcome could not be stored: the lease runs
            // out and the row is tried again, which is the at-least-once promise.
            tracing::warn!(error = ?err, "SMS outbox: cannot record a delivery outcome");
        }
    }
    if let Err(err) = finish_sent(state, &sent, state.clock.now()).await {
        tracing::warn!(error = ?err, "SMS outbox: cannot record deliveries");
    }
    Ok(retired + attempted)
}

/// The condition "this message is still worth sending": a notice always is; a code only while
/// it is the phone's current code (a phone's `otp_codes` row is reused for each new code, with
/// a new `created_at`).
const CODE_IS_CURRENT: &str = "(sms_outbox.kind = 'notice' OR EXISTS (SELECT 1 FROM otp_codes \
     WHERE otp_codes.id = sms_outbox.otp_code_id AND otp_codes.created_at = sms_outbox.code_issued_at))";

/// Retires pending messages no live worker holds and nobody should send any more: those whose
/// code was replaced by a newer one (`superseded`: that code no longer works) and those whose
/// give-up time passed (`undeliverable`, e.g. every instance was down).
async fn retire(state: &AppState, now: DateTime<Utc>) -> AppResult<usize> {
    let backend = state.db.get_database_backend();
    let sql = format!(
        "UPDATE sms_outbox SET \
           status = CASE WHEN {CODE_IS_CURRENT} THEN ? ELSE ? END, \
           last_error = CASE WHEN {CODE_IS_CURRENT} \
             THEN COALESCE(last_error, 'not sent before the give-up time') ELSE last_error END, \
           payload = NULL, finished_at = ?, locked_until = NULL, claim_token = NULL \
         WHERE status = ? AND (locked_until IS NULL OR locked_until <= ?) \
           AND (give_up_at <= ? OR NOT {CODE_IS_CURRENT}) \
         RETURNING id, phone, attempts, status"
    );
    let rows = state
        .db
        .query_all(db::raw(
            backend,
            &sql,
            vec![
                status::UNDELIVERABLE.into(),
                status::SUPERSEDED.into(),
                now.into(),
                status::PENDING.into(),
                now.into(),
                now.into(),
            ],
        ))
        .await?;
    for row in &rows {
        let id: i64 = row.try_get("", "id")?;
        let phone = Phone::from_e164(row.try_get::<String>("", "phone")?);
        let attempts: i32 = row.try_get("", "attempts")?;
        let new_status: String = row.try_get("", "status")?;
        if new_status == status::UNDELIVERABLE {
            crate::metrics::code_undeliverable();
            tracing::error!(outbox_id = id, phone = %phone, attempts, "SMS undeliverable: give-up time passed");
        } else {
            tracing::debug!(outbox_id = id, phone = %phone, "SMS superseded by a newer code");
        }
    }
    Ok(rows.len())
}

struct Claimed {
    id: i64,
    phone: Phone,
    payload: Option<Vec<u8>>,
    code_issued_at: DateTime<Utc>,
    attempts: i32,
    give_up_at: DateTime<Utc>,
    token: String,
}

/// Takes a lease on up to [`BATCH_SIZE`] due rows, in one statement.
async fn claim(state: &AppState, now: DateTime<Utc>) -> AppResult<Vec<Claimed>> {
    let backend = state.db.get_database_backend();
    let token = uuid::Uuid::new_v4().to_string();
    let lease_until = now
        // The configuration bounds the timeout to minutes, so the conversion cannot fail.
        + TimeDelta::from_std(state.config.sms_send_timeout).unwrap_or(LEASE_MARGIN)
        + LEASE_MARGIN;
    // PostgreSQL: rows another instance is claiming right now are skipped, not waited for; a
    // row whose lease was taken after our snapshot is re-checked by the row lock and dropped.
    // SQLite: one writer at a time, so the subquery and the update see the same rows.
    let lock = match backend {
        DatabaseBackend::Postgres => " FOR UPDATE SKIP LOCKED",
        _ => "",
    };
    let sql = format!(
        "UPDATE sms_outbox SET locked_until = ?, claim_token = ?, attempts = attempts + 1 \
         WHERE id IN (SELECT id FROM sms_outbox \
           WHERE status = ? AND next_attempt_at <= ? AND give_up_at > ? \
             AND (locked_until IS NULL OR locked_until <= ?) AND {CODE_IS_CURRENT} \
           ORDER BY next_attempt_at, id LIMIT ?{lock}) \
         RETURNING id, phone, payload, code_issued_at, attempts, give_up_at"
    );
    let rows = state
        .db
        .query_all(db::raw(
            backend,
            &sql,
            vec![
                lease_until.into(),
                token.clone().into(),
                status::PENDING.into(),
                now.into(),
                now.into(),
                now.into(),
                BATCH_SIZE.into(),
            ],
        ))
        .await?;
    rows.iter()
        .map(|row| claimed(row, &token))
        .collect::<Result<_, _>>()
        .map_err(Into::into)
}

fn claimed(row: &QueryResult, token: &str) -> Result<Claimed, sea_orm::DbErr> {
    Ok(Claimed {
        id: row.try_get("", "id")?,
        phone: Phone::from_e164(row.try_get::<String>("", "phone")?),
        payload: row.try_get("", "payload")?,
        code_issued_at: row.try_get("", "code_issued_at")?,
        attempts: row.try_get("", "attempts")?,
        give_up_at: row.try_get("", "give_up_at")?,
        token: token.to_owned(),
    })
}

/// Sends one claimed message.
async fn send(state: &AppState, row: &Claimed) -> Result<(), SmsError> {
    let context = context(row.phone.as_str(), row.code_issued_at);
    let text = row
        .payload
        .as_deref()
        .and_then(|sealed| state.keys.open_outbox(&[&context[0], &context[1]], sealed));
    let Some(text) = text else {
        return Err(SmsError::permanent(
            "the stored message cannot be opened (was JWT_SECRET changed?)",
        ));
    };
    // The providers bound their own requests too; this covers any sender.
    let message_id = format!("{}.{}", row.id, row.code_issued_at.timestamp_micros());
    let send = state.sms.send_message(&message_id, &row.phone, &text);
    match tokio::time::timeout(state.config.sms_send_timeout, send).await {
        Ok(result) => result,
        Err(_) => Err(SmsError::transient("timed out")),
    }
}

/// Marks the delivered messages of a pass sent, in one statement (one commit for the batch).
async fn finish_sent(state: &AppState, rows: &[&Claimed], now: DateTime<Utc>) -> AppResult<()> {
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let backend = state.db.get_database_backend();
    let sql = format!(
        "UPDATE sms_outbox SET status = ?, payload = NULL, finished_at = ?, \
         locked_until = NULL, claim_token = NULL, last_error = NULL \
         WHERE claim_token = ? AND status = ? AND id IN ({}) RETURNING id",
        db::placeholders(rows.len())
    );
    // A pass claims all its rows under one token.
    let mut values: Vec<sea_orm::Value> = vec![
        status::SENT.into(),
        now.into(),
        first.token.clone().into(),
        status::PENDING.into(),
    ];
    values.extend(rows.iter().map(|row| row.id.into()));
    let recorded: Vec<i64> = state
        .db
        .query_all(db::raw(backend, &sql, values))
        .await?
        .iter()
        .map(|row| row.try_get("", "id"))
        .collect::<Result<_, _>>()?;
    for row in rows {
        if recorded.contains(&row.id) {
            tracing::info!(outbox_id = row.id, phone = %row.phone, attempt = row.attempts, "SMS delivered");
        } else {
            // Superseded by a newer code, or our lease ran out and another claim owns it.
            tracing::info!(outbox_id = row.id, phone = %row.phone, "SMS delivered, but the row had moved on");
        }
    }
    Ok(())
}

/// Every attempt after a message's first spends the send budgets again (per phone and global:
/// `limits::delivery_windows`; the first was paid by its requestCode). A provider that times
/// out after delivering would otherwise turn one code into as many SMS as there are retries.
/// Returns the rows that may be sent now; the others wait until the budget has room (or are
/// given up when that is past their give-up time).
async fn pay_for_retries(
    state: &AppState,
    claimed: Vec<Claimed>,
    now: DateTime<Utc>,
) -> AppResult<Vec<Claimed>> {
    let mut ready = Vec::with_capacity(claimed.len());
    for row in claimed {
        if row.attempts <= 1 {
            ready.push(row);
            continue;
        }
        let windows = limits::delivery_windows(&state.config, &row.phone);
        let txn = state.db.begin().await?;
        match limits::check_and_record(&txn, &windows, now).await {
            Ok(()) => {
                txn.commit().await?;
                ready.push(row);
            }
            Err(AppError::RateLimited { retry_after }) => {
                txn.rollback().await?;
                // Windows are at most a month long, so the wait fits easily.
                let until = now + TimeDelta::seconds(retry_after.min(u64::from(u32::MAX)) as i64);
                defer(state, &row, until, now).await?;
            }
            Err(err) => {
                txn.rollback().await?;
                return Err(err);
            }
        }
    }
    Ok(ready)
}

/// Puts back a claimed row whose retry the send budget has no room for: not an attempt (it
/// was not sent), tried again at `until`, or given up when that is too late.
async fn defer(
    state: &AppState,
    row: &Claimed,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> AppResult<()> {
    const FULL: &str = "the send budget (per phone or global) is full";
    if until >= row.give_up_at {
        if finish(state, row, status::UNDELIVERABLE, Some(FULL), now).await? {
            crate::metrics::code_undeliverable();
            tracing::error!(outbox_id = row.id, phone = %row.phone, "SMS undeliverable: {FULL}");
        }
        return Ok(());
    }
    let backend = state.db.get_database_backend();
    state
        .db
        .execute(db::raw(
            backend,
            "UPDATE sms_outbox SET next_attempt_at = ?, attempts = attempts - 1, \
             locked_until = NULL, claim_token = NULL, last_error = ? \
             WHERE id = ? AND claim_token = ? AND status = ?",
            vec![
                until.into(),
                FULL.into(),
                row.id.into(),
                row.token.clone().into(),
                status::PENDING.into(),
            ],
        ))
        .await?;
    tracing::warn!(outbox_id = row.id, phone = %row.phone, "SMS retry deferred: {FULL}");
    Ok(())
}

/// A failed send: retried later with backoff, or given up for good when the error is
/// permanent or the next try would fall after the give-up time.
async fn record_failure(state: &AppState, row: &Claimed, err: &SmsError) -> AppResult<()> {
    crate::metrics::code_delivery_failed();
    let now = state.clock.now();
    let retry_at = now + backoff(row.attempts);
    if err.is_permanent() || retry_at >= row.give_up_at {
        if finish(state, row, status::UNDELIVERABLE, Some(err.message()), now).await? {
            crate::metrics::code_undeliverable();
            tracing::error!(
                outbox_id = row.id,
                phone = %row.phone,
                attempt = row.attempts,
                error = %err,
                "SMS undeliverable: giving up"
            );
        }
    } else {
        retry_later(state, row, retry_at, err.message()).await?;
        tracing::warn!(
            outbox_id = row.id,
            phone = %row.phone,
            attempt = row.attempts,
            retry_in_secs = (retry_at - now).num_seconds(),
            error = %err,
            "SMS delivery failed; will retry"
        );
    }
    Ok(())
}

/// 1 s after the first attempt, then 2, 4, 8 … up to [`MAX_BACKOFF_SECS`].
pub fn backoff(attempts: i32) -> TimeDelta {
    let doublings = attempts.saturating_sub(1).clamp(0, 16) as u32;
    TimeDelta::seconds((1i64 << doublings).min(MAX_BACKOFF_SECS))
}

/// Ends a row we still hold: its text is wiped whatever the outcome. False when the row is no
/// longer ours (superseded, or re-claimed after our lease ran out).
async fn finish(
    state: &AppState,
    row: &Claimed,
    new_status: &str,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let backend = state.db.get_database_backend();
    let result = state
        .db
        .execute(db::raw(
            backend,
            "UPDATE sms_outbox SET status = ?, payload = NULL, finished_at = ?, \
             locked_until = NULL, claim_token = NULL, last_error = ? \
             WHERE id = ? AND claim_token = ? AND status = ?",
            vec![
                new_status.into(),
                now.into(),
                error.map(truncate).into(),
                row.id.into(),
                row.token.clone().into(),
                status::PENDING.into(),
            ],
        ))
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Releases a row we still hold until `retry_at`.
async fn retry_later(
    state: &AppState,
    row: &Claimed,
    retry_at: DateTime<Utc>,
    error: &str,
) -> AppResult<()> {
    let backend = state.db.get_database_backend();
    state
        .db
        .execute(db::raw(
            backend,
            "UPDATE sms_outbox SET next_attempt_at = ?, locked_until = NULL, claim_token = NULL, \
             last_error = ? WHERE id = ? AND claim_token = ? AND status = ?",
            vec![
                retry_at.into(),
                truncate(error).into(),
                row.id.into(),
                row.token.clone().into(),
                status::PENDING.into(),
            ],
        ))
        .await?;
    Ok(())
}

fn truncate(error: &str) -> String {
    error.chars().take(MAX_ERROR_LEN).collect()
}

/// Pending messages that are due now (in flight or waiting for a worker).
pub async fn due(state: &AppState) -> AppResult<i64> {
    let backend = state.db.get_database_backend();
    let row = state
        .db
        .query_one(db::raw(
            backend,
            "SELECT COUNT(*) AS n FROM sms_outbox WHERE status = ? AND next_attempt_at <= ?",
            vec![status::PENDING.into(), state.clock.now().into()],
        ))
        .await?;
    Ok(match row {
        Some(row) => row.try_get("", "n")?,
        None => 0,
    })
}

/// Deletes finished rows (which hold no text any more) older than the retention time.
pub async fn prune(state: &AppState, now: DateTime<Utc>) -> AppResult<u64> {
    let backend = state.db.get_database_backend();
    let result = state
        .db
        .execute(db::raw(
            backend,
            "DELETE FROM sms_outbox WHERE status <> ? AND finished_at < ?",
            vec![status::PENDING.into(), (now - RETENTION).into()],
        ))
        .await?;
    Ok(result.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_up_to_the_cap() {
        let secs: Vec<i64> = (1..=9).map(|a| backoff(a).num_seconds()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(0).num_seconds(), 1);
        assert_eq!(backoff(i32::MAX).num_seconds(), MAX_BACKOFF_SECS);
    }
}
