//! Prometheus metrics: one process-wide recorder (the `metrics` facade), rendered at
//! `/metrics`. Names follow Prometheus conventions (`_total` counters, `_seconds` histograms).

use std::{borrow::Cow, sync::OnceLock, time::Duration};

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sea_orm::{DatabaseConnection, DatabaseConnectionType};

use crate::graphql::ROOT_FIELDS;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram samples are folded into their buckets when nothing scrapes `/metrics`.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// The name of the thread that does it (a test looks for it).
pub const UPKEEP_THREAD: &str = "metrics-upkeep";

/// Installs the recorder once per process, with its upkeep thread; later calls return the
/// same handle. `None` when another recorder was installed first (metrics then go there).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
                .ok()?
                .install_recorder()
                .ok()?;
            start_upkeep(handle.clone());
            Some(handle)
        })
        .as_ref()
}

/// The recorder keeps every histogram sample until a render or an upkeep folds it into the
/// buckets, and `install_recorder` runs no upkeep: a server nobody scraped grew by every
/// request's samples (about 300 KiB a minute in the soak, docs/faults.md). A thread rather
/// than a task, because the recorder is per process and outlives any one runtime.
fn start_upkeep(handle: PrometheusHandle) {
    let started = std::thread::Builder::new()
        .name(UPKEEP_THREAD.to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(err) = started {
        tracing::warn!(error = %err, "cannot start the metrics upkeep thread; histogram samples are folded only when /metrics is scraped");
    }
}

/// The text exposition, with the pool gauges refreshed first.
pub fn render(db: &DatabaseConnection) -> String {
    record_pool(db);
    handle().map(PrometheusHandle::render).unwrap_or_default()
}

fn record_pool(db: &DatabaseConnection) {
    let (size, idle, max) = match &db.inner {
        DatabaseConnectionType::SqlxPostgresPoolConnection(_) => {
            let pool = db.get_postgres_connection_pool();
            (
                pool.size(),
                pool.num_idle() as u32,
                pool.options().get_max_connections(),
            )
        }
        DatabaseConnectionType::SqlxSqlitePoolConnection(_) => {
            let pool = db.get_sqlite_connection_pool();
            (
                pool.size(),
                pool.num_idle() as u32,
                pool.options().get_max_connections(),
            )
        }
        _ => return,
    };
    metrics::gauge!("db_pool_connections", "state" => "idle").set(f64::from(idle));
    metrics::gauge!("db_pool_connections", "state" => "in_use")
        .set(f64::from(size.saturating_sub(idle)));
    metrics::gauge!("db_pool_max_connections").set(f64::from(max));
}

/// One GraphQL root field (`requestCode`, `me`, …) finished with `outcome` (`ok` or an error code).
/// Labels are `'static`: no allocation per request, and a bounded label set. A field that
/// answered `ok` (the common case) uses handles resolved on its first use, so it skips hashing
/// its labels and looking them up in the registry. (Resolved after `handle()` installed the
/// recorder: `app::start` does that before any request.)
pub fn field_resolved(field: &'static str, outcome: &'static str, seconds: f64) {
    if outcome == "ok"
        && let Some(index) = ROOT_FIELDS.iter().position(|known| *known == field)
    {
        static OK: [OnceLock<(Counter, Histogram)>; ROOT_FIELDS.len()] =
            [const { OnceLock::new() }; ROOT_FIELDS.len()];
        let (counter, histogram) = OK[index].get_or_init(|| {
            (
                metrics::counter!("graphql_fields_total", "field" => field, "outcome" => "ok"),
                metrics::histogram!("graphql_field_duration_seconds", "field" => field),
            )
        });
        counter.increment(1);
        histogram.record(seconds);
        return;
    }
    metrics::counter!("graphql_fields_total", "field" => field, "outcome" => outcome).increment(1);
    metrics::histogram!("graphql_field_duration_seconds", "field" => field).record(seconds);
    if outcome == crate::error::code::RATE_LIMITED {
        metrics::counter!("rate_limited_total", "field" => field).increment(1);
    }
}

/// One HTTP request finished. `POST /graphql` answered 200, nearly every request, uses handles
/// resolved on first use (as `field_resolved` does).
pub fn http_request(route: Cow<'static, str>, status: u16, seconds: f64) {
    if status == 200 && route == "/graphql" {
        static GRAPHQL_OK: OnceLock<(Counter, Histogram)> = OnceLock::new();
        let (counter, histogram) = GRAPHQL_OK.get_or_init(|| {
            (
                metrics::counter!("http_requests_total", "route" => "/graphql", "status" => "200"),
                metrics::histogram!("http_request_duration_seconds", "route" => "/graphql"),
            )
        });
        counter.increment(1);
        histogram.record(seconds);
        return;
    }
    let status: Cow<'static, str> = match status {
        200 => "200".into(),
        other => other.to_string().into(),
    };
    metrics::counter!("http_requests_total", "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route).record(seconds);
}

/// A code was issued and handed to delivery.
pub fn code_issued() {
    metrics::counter!("sms_codes_issued_total").increment(1);
}

/// The provider accepted a message.
pub fn code_delivered() {
    metrics::counter!("sms_codes_delivered_total").increment(1);
}

/// One delivery attempt failed (it may be retried).
pub fn code_delivery_failed() {
    metrics::counter!("sms_delivery_failures_total").increment(1);
}

/// Delivery was given up for good.
pub fn code_undeliverable() {
    metrics::counter!("sms_codes_undeliverable_total").increment(1);
}

/// A wrong code was entered.
pub fn verify_failed() {
    metrics::counter!("verify_failures_total").increment(1);
}

/// A request was refused by the limit or rule `reason` (`ip_hour`, `global_day`, `sms_range`,
/// `sms_country_conversion`, `number_type`, …; a bounded set of static names).
pub fn limit_refused(reason: &'static str) {
    metrics::counter!("rate_limit_refusals_total", "reason" => reason).increment(1);
}

/// The conversion breaker of a destination country opened (`open`) or closed again. The
/// label set is bounded by the countries of the numbering plan.
pub fn country_breaker(country: &str, open: bool) {
    metrics::gauge!("sms_country_breaker_open", "country" => country.to_owned()).set(if open {
        1.0
    } else {
        0.0
    });
}
