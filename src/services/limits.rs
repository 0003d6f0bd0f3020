//! Rolling-window rate limits, kept in the database so every instance shares them.
//!
//! Each counted event is a row in `rate_events` under a bucket (`code:phone:+7…`,
//! `fail:phone:+7…`, `code:ip:1.2.3.4`, …). A check-and-record first locks the buckets' rows in
//! `rate_limit_locks` (one upsert statement), so concurrent requests on any number of instances
//! take turns; then one statement counts every window, and one inserts the new events. Nothing is
//! read and then written without that lock held, so the last free slot is taken exactly once.

use std::{net::IpAddr, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, Value};

use crate::{
    config::Config,
    db,
    domain::{client_ip::client_key, phone::Phone},
    error::{AppError, AppResult},
    services::seconds_until,
};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
const MONTH: Duration = Duration::from_secs(30 * 24 * 3600);
/// Events older than the longest window are never counted again.
const RETENTION: Duration = Duration::from_secs(31 * 24 * 3600);

/// "At most `max` events in `bucket` per rolling `period`"; `max == 0` turns it off.
/// `reason` names the limit in `/metrics` (`rate_limit_refusals_total{reason}`) when it
/// refuses.
#[derive(Clone, Debug)]
pub struct Window {
    pub bucket: String,
    pub max: u32,
    pub period: Duration,
    pub reason: &'static str,
}

impl Window {
    pub fn new(bucket: String, max: u32, period: Duration, reason: &'static str) -> Self {
        Self {
            bucket,
            max,
            period,
            reason,
        }
    }

    /// A window that only counts (it never refuses); off when `on` is false.
    pub fn counter(bucket: String, period: Duration, on: bool) -> Self {
        Self::new(bucket, if on { u32::MAX } else { 0 }, period, "counter")
    }
}

/// Codes sent: per phone, per client (IP or IPv6 network), and for everyone together (SMS
/// pumping guard).
pub fn code_windows(config: &Config, phone: &Phone, ip: IpAddr) -> Vec<Window> {
    let mut windows = delivery_windows(config, phone);
    windows.extend(client_code_windows(config, ip));
    windows
}

/// The client's (IP or IPv6 network) share of [`code_windows`]: what a request refused by an
/// SMS pumping breaker still spends (see `services::pumping`).
pub fn client_code_windows(config: &Config, ip: IpAddr) -> Vec<Window> {
    let l = config.limits.for_client(ip);
    let client = client_key(ip, config.ip_v6_prefix);
    let ip_bucket = format!("code:ip:{client}");
    vec![
        Window::new(ip_bucket.clone(), l.ip_codes_per_hour, HOUR, "ip_hour"),
        Window::new(ip_bucket, l.ip_codes_per_day, DAY, "ip_day"),
    ]
}

/// The budgets one SMS to `phone` spends: per phone and global. A code's first delivery is
/// paid by its requestCode (through [`code_windows`]); every further attempt pays again, so a
/// provider that times out after delivering cannot multiply the messages past these caps.
pub fn delivery_windows(config: &Config, phone: &Phone) -> Vec<Window> {
    let l = &config.limits;
    let phone_bucket = format!("code:phone:{}", phone.as_str());
    let global = "code:global".to_owned();
    vec![
        Window::new(
            phone_bucket.clone(),
            l.phone_codes_per_hour,
            HOUR,
            "phone_hour",
        ),
        Window::new(phone_bucket, l.phone_codes_per_day, DAY, "phone_day"),
        Window::new(
            global.clone(),
            l.sms_global_per_minute,
            Duration::from_secs(60),
            "global_minute",
        ),
        Window::new(global.clone(), l.sms_global_per_hour, HOUR, "global_hour"),
        Window::new(global, l.sms_global_per_day, DAY, "global_day"),
    ]
}

/// verifyCode calls per client (IP or IPv6 network).
pub fn verify_windows(config: &Config, ip: IpAddr) -> Vec<Window> {
    vec![Window::new(
        format!("verify:ip:{}", client_key(ip, config.ip_v6_prefix)),
        config.limits.for_client(ip).ip_verify_per_hour,
        HOUR,
        "verify_ip_hour",
    )]
}

/// Wrong guesses per phone, across codes, spellings and IPs: the budget that bounds a
/// targeted attack (see docs/security.md for the arithmetic).
pub fn failure_windows(config: &Config, phone: &Phone) -> Vec<Window> {
    let bucket = format!("fail:phone:{}", phone.as_str());
    vec![
        Window::new(
            bucket.clone(),
            config.limits.phone_failures_per_day,
            DAY,
            "phone_failures_day",
        ),
        Window::new(
            bucket,
            config.limits.phone_failures_per_month,
            MONTH,
            "phone_failures_month",
        ),
    ]
}

fn active(windows: &[Window]) -> Vec<&Window> {
    windows.iter().filter(|w| w.max > 0).collect()
}

fn distinct_buckets<'a>(windows: &[&'a Window]) -> Vec<&'a str> {
    let mut buckets: Vec<&str> = windows.iter().map(|w| w.bucket.as_str()).collect();
    // Sorted: every transaction locks in the same order, so two can never deadlock.
    buckets.sort_unstable();
    buckets.dedup();
    buckets
}

/// Refuses with RATE_LIMITED when any window is full; records nothing. Safe to call without
/// a lock where a little staleness is harmless, or after `lock` for an exact answer.
pub async fn check(
    conn: &impl ConnectionTrait,
    windows: &[Window],
    now: DateTime<Utc>,
) -> AppResult<()> {
    let counts = counts(conn, windows, now).await?;
    verdict(conn, windows, &counts, now).await
}

/// Locks the windows' buckets, checks them, and records one event per bucket if all have
/// room. Call inside a transaction: the locks hold until it ends.
pub async fn check_and_record(
    conn: &impl ConnectionTrait,
    windows: &[Window],
    now: DateTime<Utc>,
) -> AppResult<()> {
    lock(conn, windows).await?;
    check(conn, windows, now).await?;
    record(conn, windows, now).await
}

/// Locks the buckets of the active windows (in a transaction, until it ends), so that counts
/// read after it are exact until this transaction records or ends. One statement.
pub async fn lock(conn: &impl ConnectionTrait, windows: &[Window]) -> AppResult<()> {
    let active_windows = active(windows);
    let buckets = distinct_buckets(&active_windows);
    if buckets.is_empty() {
        return Ok(());
    }
    let rows = vec!["(?)"; buckets.len()].join(", ");
    // The no-op update makes the statement take the row lock when the row already exists.
    let sql = format!(
        "INSERT INTO rate_limit_locks (bucket) VALUES {rows} \
         ON CONFLICT (bucket) DO UPDATE SET bucket = excluded.bucket"
    );
    let values = buckets.iter().map(|b| Value::from(*b)).collect();
    conn.execute(db::raw(conn.get_database_backend(), &sql, values))
        .await?;
    Ok(())
}

/// Records one event in the bucket of each active window (once per bucket). One statement.
pub async fn record(
    conn: &impl ConnectionTrait,
    windows: &[Window],
    now: DateTime<Utc>,
) -> AppResult<()> {
    let active_windows = active(windows);
    let buckets = distinct_buckets(&active_windows);
    if buckets.is_empty() {
        return Ok(());
    }
    let rows = vec!["(?, ?)"; buckets.len()].join(", ");
    let mut values: Vec<Value> = Vec::with_capacity(buckets.len() * 2);
    for bucket in buckets {
        values.push(bucket.into());
        values.push(now.into());
    }
    let sql = format!("INSERT INTO rate_events (bucket, at) VALUES {rows}");
    conn.execute(db::raw(conn.get_database_backend(), &sql, values))
        .await?;
    Ok(())
}

/// Records a wrong guess for `phone` (when the failure budget is on).
pub async fn record_failure(
    conn: &impl ConnectionTrait,
    config: &Config,
    phone: &Phone,
    now: DateTime<Utc>,
) -> AppResult<()> {
    record(conn, &failure_windows(config, phone), now).await
}

/// Events in each window (0 for a window that is off), every window in one statement: a
/// caller with several groups of windows counts them all at once and then judges each group
/// with [`verdict`], in the order its errors should take.
pub async fn counts(
    conn: &impl ConnectionTrait,
    windows: &[Window],
    now: DateTime<Utc>,
) -> AppResult<Vec<i64>> {
    Ok(counts_and_probe(conn, windows, now, None).await?.0)
}

/// One integer a caller needs beside the counts, read in the same statement (so asking costs
/// no round trip): `sql` is a scalar subquery such as `(SELECT COUNT(*) FROM t WHERE c = ?)`.
pub struct Probe {
    pub sql: &'static str,
    pub values: Vec<Value>,
}

/// [`counts`], plus the value of `probe` (0 when there is none).
pub async fn counts_and_probe(
    conn: &impl ConnectionTrait,
    windows: &[Window],
    now: DateTime<Utc>,
    probe: Option<Probe>,
) -> AppResult<(Vec<i64>, i64)> {
    let active_windows = active(windows);
    if active_windows.is_empty() {
        let probed = match probe {
            Some(probe) => probe_alone(conn, probe).await?,
            None => 0,
        };
        return Ok((vec![0; windows.len()], probed));
    }
    let (active_counts, probed) = count(conn, &active_windows, now, probe).await?;
    let mut active_counts = active_counts.into_iter();
    let counts = windows
        .iter()
        .map(|w| {
            if w.max > 0 {
                active_counts.next().unwrap_or(0)
            } else {
                0
            }
        })
        .collect();
    Ok((counts, probed))
}

async fn probe_alone(conn: &impl ConnectionTrait, probe: Probe) -> AppResult<i64> {
    let sql = format!("SELECT {} AS probe", probe.sql);
    let row = conn
        .query_one(db::raw(conn.get_database_backend(), &sql, probe.values))
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("a scalar select returned no row")))?;
    Ok(row.try_get::<i64>("", "probe")?)
}

/// RATE_LIMITED when any window is full (its `counts` as [`counts`] returned them), with the
/// wait until every full window has a free slot.
pub async fn verdict(
    conn: &impl ConnectionTrait,
    windows: &[Window],
    counts: &[i64],
    now: DateTime<Utc>,
) -> AppResult<()> {
    let mut retry_after = None;
    for (window, &n) in windows.iter().zip(counts) {
        if window.max > 0 && n >= i64::from(window.max) {
            crate::metrics::limit_refused(window.reason);
            let at = slot_frees_at(conn, window, n, now).await?;
            let secs = seconds_until(now, at);
            retry_after = Some(retry_after.map_or(secs, |r: u64| r.max(secs)));
        }
    }
    match retry_after {
        Some(retry_after) => Err(AppError::RateLimited { retry_after }),
        None => Ok(()),
    }
}

/// Events per window, all windows (and the probe, if any) in one statement.
async fn count(
    conn: &impl ConnectionTrait,
    windows: &[&Window],
    now: DateTime<Utc>,
    probe: Option<Probe>,
) -> AppResult<(Vec<i64>, i64)> {
    let mut columns = Vec::with_capacity(windows.len() + 1);
    let mut values: Vec<Value> = Vec::new();
    for (i, window) in windows.iter().enumerate() {
        columns.push(format!(
            "COALESCE(SUM(CASE WHEN bucket = ? AND at > ? THEN 1 ELSE 0 END), 0) AS c{i}"
        ));
        values.push(window.bucket.as_str().into());
        values.push((now - window.period).into());
    }
    let has_probe = probe.is_some();
    if let Some(probe) = probe {
        columns.push(format!("{} AS probe", probe.sql));
        values.extend(probe.values);
    }
    let buckets = distinct_buckets(windows);
    let oldest = windows.iter().map(|w| now - w.period).min().unwrap_or(now);
    let sql = format!(
        "SELECT {} FROM rate_events WHERE bucket IN ({}) AND at > ?",
        columns.join(", "),
        db::placeholders(buckets.len())
    );
    values.extend(buckets.iter().map(|b| Value::from(*b)));
    values.push(oldest.into());
    let row = conn
        .query_one(db::raw(conn.get_database_backend(), &sql, values))
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("an aggregate returned no row")))?;
    let counts = (0..windows.len())
        .map(|i| Ok(row.try_get::<i64>("", &format!("c{i}"))?))
        .collect::<AppResult<Vec<i64>>>()?;
    let probed = if has_probe {
        row.try_get::<i64>("", "probe")?
    } else {
        0
    };
    Ok((counts, probed))
}

/// When the oldest event inside `window` leaves it (`now` when there is none).
pub async fn oldest_leaves_at(
    conn: &impl ConnectionTrait,
    window: &Window,
    now: DateTime<Utc>,
) -> AppResult<DateTime<Utc>> {
    slot_frees_at(
        conn,
        &Window {
            max: 1,
            ..window.clone()
        },
        1,
        now,
    )
    .await
}

/// When a full window gets a free slot: the event that must leave is the
/// (`n - max + 1`)-th oldest inside the window.
async fn slot_frees_at(
    conn: &impl ConnectionTrait,
    window: &Window,
    n: i64,
    now: DateTime<Utc>,
) -> AppResult<DateTime<Utc>> {
    let offset = (n - i64::from(window.max)).max(0);
    let stmt = db::raw(
        conn.get_database_backend(),
        "SELECT at FROM rate_events WHERE bucket = ? AND at > ? ORDER BY at LIMIT 1 OFFSET ?",
        vec![
            window.bucket.as_str().into(),
            (now - window.period).into(),
            offset.into(),
        ],
    );
    let at: Option<DateTime<Utc>> = match conn.query_one(stmt).await? {
        Some(row) => Some(row.try_get("", "at")?),
        None => None,
    };
    Ok(at.map_or(now, |at| at + window.period))
}

/// Deletes events no window can count any more, and the lock rows of idle buckets.
pub async fn prune(db: &DatabaseConnection, now: DateTime<Utc>) -> AppResult<u64> {
    let backend = db.get_database_backend();
    let deleted = db
        .execute(db::raw(
            backend,
            "DELETE FROM rate_events WHERE at < ?",
            vec![(now - RETENTION).into()],
        ))
        .await?
        .rows_affected();
    db.execute(db::raw(
        backend,
        "DELETE FROM rate_limit_locks WHERE NOT EXISTS \
         (SELECT 1 FROM rate_events e WHERE e.bucket = rate_limit_locks.bucket)",
        vec![],
    ))
    .await?;
    Ok(deleted)
}
