//! The outbox's SQL, and nothing else: queue, retire, claim (the lease), mark sent, failed or
//! undeliverable, count what is due, prune. Decisions (what to send, when to give up) and
//! logging are the worker's.
//!
//! A claim takes a lease on a batch of due rows in one statement: `FOR UPDATE SKIP LOCKED` on
//! PostgreSQL, so instances never take the same row; SQLite runs one writer at a time, so the
//! same conditional `UPDATE` is enough there. Every later write to a claimed row checks the
//! claim token and that the row is still pending, so a worker whose lease ran out (another
//! claim owns the row now) or whose row was superseded changes nothing.
//!
//! Every statement is built with the entity or sea-query; the ones that answer rows
//! (`RETURNING`) are built with sea-query and run with `query_all`, as SeaORM's entity
//! executors only use `RETURNING` on SQLite behind a feature flag.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, Order, PaginatorTrait,
    QueryFilter, QueryResult,
    sea_query::{
        Expr, ExprTrait, Func, LockBehavior, LockType, Query, SimpleExpr, UpdateStatement,
    },
};

use super::Status;
use crate::{
    db::entities::{
        otp_codes,
        sms_outbox::{self, Column},
    },
    domain::phone::Phone,
    error::AppResult,
};

/// Finished rows (no text left, only the record) are deleted after this long.
pub const RETENTION: TimeDelta = TimeDelta::days(7);
/// Longest stored error text (the column's width).
const MAX_ERROR_LEN: usize = 200;

/// The values of `sms_outbox.kind`.
pub mod kind {
    /// The text holds a code; the row is tied to its `otp_codes` row.
    pub const CODE: &str = "code";
    /// A message with no code (the phone-change notice); always worth sending.
    pub const NOTICE: &str = "notice";
}

/// The condition "this message is still worth sending": a notice always is; a code only while
/// it is the phone's current code (a phone's `otp_codes` row is reused for each new code, with
/// a new `created_at`).
fn code_is_current() -> Condition {
    let same_code = Query::select()
        .expr(Expr::val(1))
        .from(otp_codes::Entity)
        .and_where(
            Expr::col((otp_codes::Entity, otp_codes::Column::Id))
                .equals((sms_outbox::Entity, Column::OtpCodeId)),
        )
        .and_where(
            Expr::col((otp_codes::Entity, otp_codes::Column::CreatedAt))
                .equals((sms_outbox::Entity, Column::CodeIssuedAt)),
        )
        .to_owned();
    Condition::any()
        .add(Expr::col((sms_outbox::Entity, Column::Kind)).eq(kind::NOTICE))
        .add(Expr::exists(same_code))
}

/// No lease, or one that ran out.
fn not_leased(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(Column::LockedUntil.is_null())
        .add(Column::LockedUntil.lte(now))
}

/// What the sealed text is bound to: its row's phone and code.
pub fn context(phone: &str, issued_at: DateTime<Utc>) -> [Vec<u8>; 2] {
    [
        phone.as_bytes().to_vec(),
        issued_at.timestamp_micros().to_be_bytes().to_vec(),
    ]
}

/// A message to queue, its text already sealed.
pub struct NewMessage<'a> {
    pub kind: &'a str,
    /// The `otp_codes` row of a code; 0 for a notice.
    pub otp_code_id: i64,
    pub phone: &'a Phone,
    pub issued_at: DateTime<Utc>,
    pub give_up_at: DateTime<Utc>,
    pub sealed: Vec<u8>,
}

/// Inserts a pending message, due at once. In the caller's transaction.
pub async fn insert(conn: &impl ConnectionTrait, message: NewMessage<'_>) -> AppResult<()> {
    let row = sms_outbox::ActiveModel {
        kind: Set(message.kind.to_owned()),
        otp_code_id: Set(message.otp_code_id),
        code_issued_at: Set(message.issued_at),
        phone: Set(message.phone.as_str().to_owned()),
        payload: Set(Some(message.sealed)),
        status: Set(Status::Pending),
        attempts: Set(0),
        next_attempt_at: Set(message.issued_at),
        give_up_at: Set(message.give_up_at),
        created_at: Set(message.issued_at),
        ..Default::default()
    };
    sms_outbox::Entity::insert(row)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Deletes the messages still waiting for `phone` (an account being deleted takes its queued
/// SMS with it). In the caller's transaction.
pub async fn delete_pending(conn: &impl ConnectionTrait, phone: &str) -> AppResult<u64> {
    Ok(sms_outbox::Entity::delete_many()
        .filter(Column::Phone.eq(phone))
        .filter(Column::Status.eq(Status::Pending))
        .exec(conn)
        .await?
        .rows_affected)
}

/// A pending row that [`retire`] ended.
pub struct Retired {
    pub id: i64,
    pub phone: Phone,
    pub attempts: i32,
    /// [`Status::Undeliverable`] or [`Status::Superseded`].
    pub status: Status,
}

/// Retires pending messages no live worker holds and nobody should send any more: those whose
/// code was replaced by a newer one (`superseded`: that code no longer works) and those whose
/// give-up time passed (`undeliverable`, e.g. every instance was down).
pub async fn retire(conn: &impl ConnectionTrait, now: DateTime<Utc>) -> AppResult<Vec<Retired>> {
    const NOT_SENT_IN_TIME: &str = "not sent before the give-up time";
    let retire = ending(
        Expr::case(code_is_current(), Status::Undeliverable).finally(Status::Superseded),
        Expr::case(
            code_is_current(),
            Func::coalesce([Expr::col(Column::LastError), Expr::val(NOT_SENT_IN_TIME)]),
        )
        .finally(Expr::col(Column::LastError)),
        now,
    )
    .cond_where(
        Condition::all()
            .add(Column::Status.eq(Status::Pending))
            .add(not_leased(now))
            .add(
                Condition::any()
                    .add(Column::GiveUpAt.lte(now))
                    .add(code_is_current().not()),
            ),
    )
    .returning(Query::returning().columns([
        Column::Id,
        Column::Phone,
        Column::Attempts,
        Column::Status,
    ]))
    .to_owned();
    let rows = conn.query_all(&retire).await?;
    rows.iter()
        .map(|row| {
            Ok(Retired {
                id: row.try_get("", "id")?,
                phone: Phone::from_e164(row.try_get::<String>("", "phone")?),
                attempts: row.try_get("", "attempts")?,
                status: row.try_get("", "status")?,
            })
        })
        .collect::<Result<_, DbErr>>()
        .map_err(Into::into)
}

/// A row this worker holds a lease on.
pub struct Claimed {
    pub id: i64,
    pub phone: Phone,
    pub payload: Option<Vec<u8>>,
    pub code_issued_at: DateTime<Utc>,
    /// Counting this one.
    pub attempts: i32,
    pub give_up_at: DateTime<Utc>,
    /// The claim's token: every write to the row checks it.
    pub token: String,
}

/// Takes a lease until `lease_until` on up to `limit` due rows, in one statement, and counts
/// the attempt.
pub async fn claim(
    conn: &impl ConnectionTrait,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
) -> AppResult<Vec<Claimed>> {
    let token = uuid::Uuid::new_v4().to_string();
    // PostgreSQL: rows another instance is claiming right now are skipped, not waited for; a
    // row whose lease was taken after our snapshot is re-checked by the row lock and dropped.
    // SQLite: one writer at a time, so the subquery and the update see the same rows (its
    // query builder writes no lock clause).
    let due = Query::select()
        .column(Column::Id)
        .from(sms_outbox::Entity)
        .and_where(Column::Status.eq(Status::Pending))
        .and_where(Column::NextAttemptAt.lte(now))
        .and_where(Column::GiveUpAt.gt(now))
        .cond_where(not_leased(now))
        .cond_where(code_is_current())
        .order_by(Column::NextAttemptAt, Order::Asc)
        .order_by(Column::Id, Order::Asc)
        .limit(u64::try_from(limit).unwrap_or(0))
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .to_owned();
    let claim = Query::update()
        .table(sms_outbox::Entity)
        .value(Column::LockedUntil, lease_until)
        .value(Column::ClaimToken, token.as_str())
        .value(Column::Attempts, Expr::col(Column::Attempts).add(1))
        .and_where(Column::Id.in_subquery(due))
        .returning(Query::returning().columns([
            Column::Id,
            Column::Phone,
            Column::Payload,
            Column::CodeIssuedAt,
            Column::Attempts,
            Column::GiveUpAt,
        ]))
        .to_owned();
    let rows = conn.query_all(&claim).await?;
    rows.iter()
        .map(|row| claimed(row, &token))
        .collect::<Result<_, _>>()
        .map_err(Into::into)
}

fn claimed(row: &QueryResult, token: &str) -> Result<Claimed, DbErr> {
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

/// Marks the delivered rows of one claim sent, in one statement (one commit for the batch).
/// Returns the ids it recorded: a row missing from them had moved on (superseded, or our lease
/// ran out and another claim owns it).
pub async fn mark_sent(
    conn: &impl ConnectionTrait,
    rows: &[&Claimed],
    now: DateTime<Utc>,
) -> AppResult<Vec<i64>> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    // A pass claims all its rows under one token.
    let sent = ending(Status::Sent, Option::<String>::None, now)
        .and_where(Column::ClaimToken.eq(first.token.as_str()))
        .and_where(Column::Status.eq(Status::Pending))
        .and_where(Column::Id.is_in(rows.iter().map(|row| row.id)))
        .returning_col(Column::Id)
        .to_owned();
    Ok(conn
        .query_all(&sent)
        .await?
        .iter()
        .map(|row| row.try_get("", "id"))
        .collect::<Result<_, _>>()?)
}

/// The condition "a row we still hold": ours by its claim token, and not finished by anyone
/// (superseded, or finished by another worker after our lease ran out).
fn still_held(row: &Claimed) -> Condition {
    Condition::all()
        .add(Column::Id.eq(row.id))
        .add(Column::ClaimToken.eq(row.token.as_str()))
        .add(Column::Status.eq(Status::Pending))
}

/// Ends a row we still hold as `status` (in practice [`Status::Undeliverable`]): its text is
/// wiped whatever the outcome. False when the row is no longer ours.
pub async fn finish(
    conn: &impl ConnectionTrait,
    row: &Claimed,
    status: Status,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let finished = ending(status, error.map(truncate), now)
        .cond_where(still_held(row))
        .to_owned();
    let result = conn.execute(&finished).await?;
    Ok(result.rows_affected() == 1)
}

/// The update that ends a row (sent, undeliverable, superseded): its status and last error,
/// its text wiped, its lease and claim token cleared (so no late worker's write matches it).
/// The caller adds which rows.
fn ending(
    status: impl Into<SimpleExpr>,
    last_error: impl Into<SimpleExpr>,
    now: DateTime<Utc>,
) -> UpdateStatement {
    Query::update()
        .table(sms_outbox::Entity)
        .value(Column::Status, status)
        .value(Column::LastError, last_error)
        .value(Column::Payload, Option::<Vec<u8>>::None)
        .value(Column::FinishedAt, now)
        .value(Column::LockedUntil, Option::<DateTime<Utc>>::None)
        .value(Column::ClaimToken, Option::<String>::None)
        .to_owned()
}

/// Releases a row we still hold after a failed attempt, due again at `retry_at`.
pub async fn retry_later(
    conn: &impl ConnectionTrait,
    row: &Claimed,
    retry_at: DateTime<Utc>,
    error: &str,
) -> AppResult<()> {
    release(conn, row, retry_at, error, Attempt::Spent).await
}

/// Puts back a row we hold but did not send: the claim's attempt is taken back, and it is due
/// again at `until`.
pub async fn put_back(
    conn: &impl ConnectionTrait,
    row: &Claimed,
    until: DateTime<Utc>,
    reason: &str,
) -> AppResult<()> {
    release(conn, row, until, reason, Attempt::GivenBack).await
}

/// Whether the attempt a claim counted stands when the row is released.
enum Attempt {
    /// It was tried (and failed).
    Spent,
    /// It was never tried (our own reason, such as a full send budget).
    GivenBack,
}

/// Releases a row we still hold: no lease, due again at `at`, `note` as its last error.
async fn release(
    conn: &impl ConnectionTrait,
    row: &Claimed,
    at: DateTime<Utc>,
    note: &str,
    attempt: Attempt,
) -> AppResult<()> {
    let mut update = sms_outbox::Entity::update_many()
        .col_expr(Column::NextAttemptAt, Expr::value(at))
        .col_expr(
            Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(Column::ClaimToken, Expr::value(Option::<String>::None))
        .col_expr(Column::LastError, Expr::value(truncate(note)));
    if let Attempt::GivenBack = attempt {
        update = update.col_expr(Column::Attempts, Expr::col(Column::Attempts).sub(1));
    }
    update.filter(still_held(row)).exec(conn).await?;
    Ok(())
}

fn truncate(error: &str) -> String {
    error.chars().take(MAX_ERROR_LEN).collect()
}

/// Pending messages that are due at `now` (in flight or waiting for a worker).
pub async fn due(conn: &impl ConnectionTrait, now: DateTime<Utc>) -> AppResult<i64> {
    let due = sms_outbox::Entity::find()
        .filter(Column::Status.eq(Status::Pending))
        .filter(Column::NextAttemptAt.lte(now))
        .count(conn)
        .await?;
    Ok(i64::try_from(due).unwrap_or(i64::MAX))
}

/// Deletes finished rows (which hold no text any more) older than [`RETENTION`].
pub async fn prune(conn: &impl ConnectionTrait, now: DateTime<Utc>) -> AppResult<u64> {
    Ok(sms_outbox::Entity::delete_many()
        .filter(Column::Status.ne(Status::Pending))
        .filter(Column::FinishedAt.lt(now - RETENTION))
        .exec(conn)
        .await?
        .rows_affected)
}
