//! Rolling-window rate limits, kept in the database so every instance shares them.
//!
//! Each counted event is a row in `rate_events` under a bucket (`code:phone:+7…`,
//! `fail:phone:+7…`, `code:ip:1.2.3.4`, …). A check-and-record first locks the buckets' rows in
//! `rate_limit_locks` (one upsert statement), so concurrent requests on any number of instances
//! take turns; then one statement counts every window, and one inserts the new events. Nothing is
//! read and then written without that lock held, so the last free slot is taken exactly once.

use std::{net::IpAddr, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Alias, Expr, ExprTrait, Func, OnConflict, Query, SimpleExpr},
};

use crate::{
    config::{Config, Limits},
    db::entities::{rate_events, rate_limit_locks},
    domain::{
        client_ip::{ClientKey, client_key},
        phone::Phone,
    },
    error::{AppError, AppResult},
    services::seconds_until,
};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
const MONTH: Duration = Duration::from_secs(30 * 24 * 3600);
/// Events older than the longest window are never counted again.
const RETENTION: Duration = Duration::from_secs(31 * 24 * 3600);

/// What counted events are counted under. [`Bucket::key`] is the one place the stored key
/// (`rate_events.bucket`, `rate_limit_locks.bucket`) is spelled, so every service names a
/// bucket the same way and the keys already in the database keep counting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bucket<'a> {
    /// Codes sent to a phone (E.164).
    PhoneCodes(&'a Phone),
    /// Codes asked for by a client (its IP or IPv6 network).
    ClientCodes(&'a ClientKey),
    /// Codes sent to anyone.
    GlobalCodes,
    /// verifyCode calls by a client.
    ClientVerifies(&'a ClientKey),
    /// Wrong guesses for a phone.
    PhoneFailures(&'a Phone),
    /// Codes to never-signed-in numbers of a range (`Phone::range`).
    RangeCodes(&'a str),
    /// Codes to a country's numbers.
    CountryCodes(&'a str),
    /// Sign-ins completed by a country's numbers.
    CountryVerified(&'a str),
}

impl Bucket<'_> {
    pub fn key(&self) -> String {
        match self {
            Self::PhoneCodes(phone) => format!("code:phone:{}", phone.as_str()),
            Self::ClientCodes(client) => format!("code:ip:{client}"),
            Self::GlobalCodes => "code:global".to_owned(),
            Self::ClientVerifies(client) => format!("verify:ip:{client}"),
            Self::PhoneFailures(phone) => format!("fail:phone:{}", phone.as_str()),
            Self::RangeCodes(range) => format!("code:range:{range}"),
            Self::CountryCodes(country) => format!("code:country:{country}"),
            Self::CountryVerified(country) => format!("verified:country:{country}"),
        }
    }
}

/// "At most `max` events in a bucket per rolling `period`"; `max == 0` turns it off.
/// `reason` names the limit in `/metrics` (`rate_limit_refusals_total{reason}`) when it
/// refuses. `bucket` is the bucket's stored key ([`Bucket::key`]).
#[derive(Clone, Debug)]
pub struct Window {
    pub bucket: String,
    pub max: u32,
    pub period: Duration,
    pub reason: &'static str,
}

impl Window {
    pub fn new(bucket: Bucket<'_>, max: u32, period: Duration, reason: &'static str) -> Self {
        Self {
            bucket: bucket.key(),
            max,
            period,
            reason,
        }
    }

    /// A window that only counts (it never refuses); off when `on` is false.
    pub fn counter(bucket: Bucket<'_>, period: Duration, on: bool) -> Self {
        Self::new(bucket, if on { u32::MAX } else { 0 }, period, "counter")
    }
}

/// Codes sent: per phone, per client (IP or IPv6 network), and for everyone together (SMS
/// pumping guard).
pub fn code_windows(config: &Config, phone: &Phone, ip: IpAddr) -> Vec<Window> {
    let mut windows = delivery_windows(&config.limits, phone);
    windows.extend(client_code_windows(config, ip));
    windows
}

/// The client's (IP or IPv6 network) share of [`code_windows`]: what a request refused by an
/// SMS pumping breaker still spends (see `services::pumping`).
pub fn client_code_windows(config: &Config, ip: IpAddr) -> Vec<Window> {
    let l = config.limits.for_client(ip);
    let client = client_key(ip, config.ip_v6_prefix);
    let bucket = Bucket::ClientCodes(&client);
    vec![
        Window::new(bucket.clone(), l.ip_codes_per_hour, HOUR, "ip_hour"),
        Window::new(bucket, l.ip_codes_per_day, DAY, "ip_day"),
    ]
}

/// The budgets one SMS to `phone` spends: per phone and global. A code's first delivery is
/// paid by its requestCode (through [`code_windows`]); every further attempt pays again, so a
/// provider that times out after delivering cannot multiply the messages past these caps.
pub fn delivery_windows(l: &Limits, phone: &Phone) -> Vec<Window> {
    let phone_bucket = Bucket::PhoneCodes(phone);
    let global = Bucket::GlobalCodes;
    vec![
        Window::new(
            phone_bucket.clone(),
            l.phone_codes_per_hour,
            HOUR,
            "phone_hour",
        ),
        Window::new(phone_bucket, l.phone_codes_per_day, DAY, "phone_day"),
        Window::new(
            Bucket::GlobalCodes,
            l.sms_global_per_minute,
            Duration::from_secs(60),
            "global_minute",
        ),
        Window::new(
            Bucket::GlobalCodes,
            l.sms_global_per_hour,
            HOUR,
            "global_hour",
        ),
        Window::new(global, l.sms_global_per_day, DAY, "global_day"),
    ]
}

/// verifyCode calls per client (IP or IPv6 network).
pub fn verify_windows(config: &Config, ip: IpAddr) -> Vec<Window> {
    vec![Window::new(
        Bucket::ClientVerifies(&client_key(ip, config.ip_v6_prefix)),
        config.limits.for_client(ip).ip_verify_per_hour,
        HOUR,
        "verify_ip_hour",
    )]
}

/// Wrong guesses per phone, across codes, spellings and IPs: the budget that bounds a
/// targeted attack (see docs/security.md for the arithmetic).
pub fn failure_windows(config: &Config, phone: &Phone) -> Vec<Window> {
    let bucket = Bucket::PhoneFailures(phone);
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

/// The distinct buckets of the windows that count (a cap of 0 is off), in lock order.
fn active_buckets(windows: &[Window]) -> Vec<&str> {
    distinct_buckets(&active(windows))
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
    let buckets = active_buckets(windows);
    if buckets.is_empty() {
        return Ok(());
    }
    let mut insert = Query::insert();
    insert
        .into_table(rate_limit_locks::Entity)
        .columns([rate_limit_locks::Column::Bucket])
        // The no-op update (`bucket = excluded.bucket`) makes the statement take the row lock
        // when the row already exists.
        .on_conflict(
            OnConflict::column(rate_limit_locks::Column::Bucket)
                .update_column(rate_limit_locks::Column::Bucket)
                .to_owned(),
        );
    for bucket in buckets {
        insert.values_panic([bucket.into()]);
    }
    conn.execute(&insert).await?;
    Ok(())
}

/// Records one event in the bucket of each active window (once per bucket). One statement.
pub async fn record(
    conn: &impl ConnectionTrait,
    windows: &[Window],
    now: DateTime<Utc>,
) -> AppResult<()> {
    let buckets = active_buckets(windows);
    if buckets.is_empty() {
        return Ok(());
    }
    let mut insert = Query::insert();
    insert
        .into_table(rate_events::Entity)
        .columns([rate_events::Column::Bucket, rate_events::Column::At]);
    for bucket in buckets {
        insert.values_panic([bucket.into(), now.into()]);
    }
    conn.execute(&insert).await?;
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
/// no round trip): a scalar expression such as a `(SELECT COUNT(*) …)` subquery.
pub struct Probe(pub SimpleExpr);

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
    let select = Query::select()
        .expr_as(probe.0, Alias::new("probe"))
        .to_owned();
    let row = conn
        .query_one(&select)
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
            retry_after = Some(retry_after.map_or(secs, |r: u64| Ord::max(r, secs)));
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
    use rate_events::Column;
    let mut select = Query::select();
    select.from(rate_events::Entity);
    // Per window: COALESCE(SUM(CASE WHEN bucket = ? AND at > ? THEN 1 ELSE 0 END), 0) AS c{i}
    for (i, window) in windows.iter().enumerate() {
        let inside = Column::Bucket
            .eq(window.bucket.as_str())
            .and(Column::At.gt(now - window.period));
        let sum = Func::sum(Expr::case(inside, Expr::cust("1")).finally(Expr::cust("0")));
        select.expr_as(
            Func::coalesce([sum.into(), Expr::cust("0")]),
            Alias::new(format!("c{i}")),
        );
    }
    let has_probe = probe.is_some();
    if let Some(probe) = probe {
        select.expr_as(probe.0, Alias::new("probe"));
    }
    let buckets = distinct_buckets(windows);
    let oldest = windows.iter().map(|w| now - w.period).min().unwrap_or(now);
    select
        .and_where(Column::Bucket.is_in(buckets))
        .and_where(Column::At.gt(oldest));
    let row = conn
        .query_one(&select)
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
    use rate_events::Column;
    let offset = u64::try_from(n - i64::from(window.max)).unwrap_or(0);
    let at: Option<DateTime<Utc>> = rate_events::Entity::find()
        .select_only()
        .column(Column::At)
        .filter(Column::Bucket.eq(window.bucket.as_str()))
        .filter(Column::At.gt(now - window.period))
        .order_by_asc(Column::At)
        .limit(1)
        .offset(offset)
        .into_tuple()
        .one(conn)
        .await?;
    Ok(at.map_or(now, |at| at + window.period))
}

/// Deletes events no window can count any more, and the lock rows of idle buckets.
pub async fn prune(db: &DatabaseConnection, now: DateTime<Utc>) -> AppResult<u64> {
    let deleted = rate_events::Entity::delete_many()
        .filter(rate_events::Column::At.lt(now - RETENTION))
        .exec(db)
        .await?
        .rows_affected;
    // … WHERE NOT EXISTS (SELECT 1 FROM rate_events WHERE rate_events.bucket = rate_limit_locks.bucket)
    let events_of_bucket = Query::select()
        .expr(Expr::cust("1"))
        .from(rate_events::Entity)
        .and_where(
            Expr::col((rate_events::Entity, rate_events::Column::Bucket))
                .equals((rate_limit_locks::Entity, rate_limit_locks::Column::Bucket)),
        )
        .to_owned();
    rate_limit_locks::Entity::delete_many()
        .filter(Expr::exists(events_of_bucket).not())
        .exec(db)
        .await?;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::*;

    /// The keys are stored: a changed spelling would silently restart every window.
    #[test]
    fn bucket_keys_keep_their_stored_spelling() {
        let phone = Phone::from_e164("+79123456789".to_owned());
        let v4 = client_key(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)), 64);
        let v6 = client_key(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 3, 4, 5, 6)),
            64,
        );
        let keys = [
            Bucket::PhoneCodes(&phone).key(),
            Bucket::ClientCodes(&v4).key(),
            Bucket::ClientCodes(&v6).key(),
            Bucket::GlobalCodes.key(),
            Bucket::ClientVerifies(&v4).key(),
            Bucket::PhoneFailures(&phone).key(),
            Bucket::RangeCodes(phone.range(4)).key(),
            Bucket::CountryCodes("RU").key(),
            Bucket::CountryVerified("RU").key(),
        ];
        assert_eq!(
            keys,
            [
                "code:phone:+79123456789",
                "code:ip:203.0.113.7",
                &format!("code:ip:{v6}"),
                "code:global",
                "verify:ip:203.0.113.7",
                "fail:phone:+79123456789",
                "code:range:+7912345",
                "code:country:RU",
                "verified:country:RU",
            ]
        );
    }
}
