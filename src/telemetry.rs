//! Logging setup: `RUST_LOG` filters (default `info`), `LOG_FORMAT=json` for structured logs.
//!
//! The database layers are capped at `info` whatever `RUST_LOG` says: SeaORM's debug spans
//! record every statement with its bound values, which include full phone numbers. Set
//! `LOG_SQL=true` to lift the cap while debugging a development database.

use tracing::Subscriber;
use tracing_subscriber::{EnvFilter, fmt::MakeWriter, prelude::*};

const SQL_CAPS: &[&str] = &["sea_orm=info", "sea_orm_migration=info", "sqlx=info"];

/// The filter for `rust_log` (a `RUST_LOG` value; `info` when absent or invalid).
pub fn filter(rust_log: Option<&str>, log_sql: bool) -> EnvFilter {
    let mut filter = rust_log
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    if !log_sql {
        for cap in SQL_CAPS {
            if let Ok(directive) = cap.parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    filter
}

/// A subscriber writing to `writer`, as text or JSON lines.
pub fn subscriber<W>(filter: EnvFilter, json: bool, writer: W) -> Box<dyn Subscriber + Send + Sync>
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
        Box::new(registry.with(tracing_subscriber::fmt::layer().with_writer(writer)))
    }
}

/// Installs the process-wide subscriber (stderr), from `RUST_LOG`, `LOG_FORMAT` and `LOG_SQL`.
pub fn init() {
    let rust_log = std::env::var("RUST_LOG").ok();
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let log_sql =
        std::env::var("LOG_SQL").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let subscriber = subscriber(filter(rust_log.as_deref(), log_sql), json, std::io::stderr);
    // A second init is harmless: the first subscriber stays.
    let _ = tracing::subscriber::set_global_default(subscriber);
}
