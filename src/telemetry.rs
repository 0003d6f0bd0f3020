//! Logging setup: `RUST_LOG` filters (default `info`), `LOG_FORMAT=json` for structured logs.
//! Text logs are coloured only when stderr is a terminal: in a file, journald or `docker logs`
//! the ANSI escape codes would be noise.
//!
//! The database layers are capped at `info` whatever `RUST_LOG` says: SeaORM's debug spans
//! record every statement with its bound values, which include full phone numbers. Set
//! `LOG_SQL=true` to lift the cap while debugging a development database.
//!
//! With OpenTelemetry on (`crate::otel`), a second layer exports the spans of `otel::TARGET`
//! and nothing else, whatever `RUST_LOG` says; the log filter then applies to the log layer
//! alone.

use std::io::IsTerminal;

use opentelemetry_sdk::trace::SdkTracer;
use tracing::Subscriber;
use tracing_subscriber::{EnvFilter, filter::filter_fn, fmt::MakeWriter, prelude::*};

use crate::config::Logging;

const SQL_CAPS: &[&str] = &["sea_orm=info", "sea_orm_migration=info", "sqlx=info"];

/// PostgreSQL notices are logged by sqlx at `info`; the only ones this server causes are the
/// migrator's `relation "seaql_migrations" already exists, skipping`, which read like errors.
/// Warnings still come through.
const QUIET_NOTICES: &str = "sqlx::postgres::notice=warn";

/// The filter for `rust_log` (a `RUST_LOG` value; `info` when absent or invalid).
pub fn filter(rust_log: Option<&str>, log_sql: bool) -> EnvFilter {
    let mut filter = rust_log
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    if !log_sql {
        for cap in SQL_CAPS.iter().chain([&QUIET_NOTICES]) {
            if let Ok(directive) = cap.parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    filter
}

/// A subscriber writing to `writer`, as text or JSON lines; `colour` puts ANSI colours in text
/// lines (only for a terminal).
pub fn subscriber<W>(
    filter: EnvFilter,
    json: bool,
    colour: bool,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_writer(writer),
            ),
        )
    } else {
        Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(colour)
                    .with_writer(writer),
            ),
        )
    }
}

/// [`subscriber`] plus the OpenTelemetry layer writing to `tracer`. It sees only the spans of
/// `otel::TARGET`: no events, no other span (the services' spans carry masked phones).
pub fn subscriber_with_otel<W>(
    filter: EnvFilter,
    json: bool,
    colour: bool,
    writer: W,
    tracer: SdkTracer,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_filter(filter_fn(|meta| {
            meta.is_span() && meta.target() == crate::otel::TARGET
        }));
    let registry = tracing_subscriber::registry().with(otel);
    // The log layer skips the exported spans (it would only store their fields): log lines
    // show the request's log span, as without traces.
    let mut filter = filter;
    if let Ok(hide) = format!("{}=off", crate::otel::TARGET).parse() {
        filter = filter.add_directive(hide);
    }
    if json {
        Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_writer(writer)
                    .with_filter(filter),
            ),
        )
    } else {
        Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(colour)
                    .with_writer(writer)
                    .with_filter(filter),
            ),
        )
    }
}

/// Installs the process-wide subscriber (stderr), as the configuration's `logging` says, with
/// the OpenTelemetry layer when `exporter` runs.
pub fn init(logging: &Logging, exporter: Option<&crate::otel::Exporter>) {
    let json = logging.json;
    let colour = std::io::stderr().is_terminal();
    let filter = filter(logging.filter.as_deref(), logging.sql);
    let subscriber = match exporter {
        Some(exporter) => {
            subscriber_with_otel(filter, json, colour, std::io::stderr, exporter.tracer())
        }
        None => subscriber(filter, json, colour, std::io::stderr),
    };
    // A second init is harmless: the first subscriber stays.
    let _ = tracing::subscriber::set_global_default(subscriber);
}
