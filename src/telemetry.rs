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
use tracing_subscriber::{
    EnvFilter, Layer, filter::filter_fn, fmt::MakeWriter, prelude::*, registry::LookupSpan,
};

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
    Box::new(
        tracing_subscriber::registry()
            .with(filter)
            .with(log_layer(json, colour, writer)),
    )
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
    // The log layer skips the exported spans (it would only store their fields): log lines
    // show the request's log span, as without traces.
    let mut filter = filter;
    if let Ok(hide) = format!("{}=off", crate::otel::TARGET).parse() {
        filter = filter.add_directive(hide);
    }
    Box::new(
        tracing_subscriber::registry()
            .with(otel)
            .with(log_layer(json, colour, writer).with_filter(filter)),
    )
}

/// The log lines' layer: JSON (with the current span) or text (coloured when `colour`).
fn log_layer<S, W>(json: bool, colour: bool, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    if json {
        Box::new(layer.json().with_current_span(true))
    } else {
        Box::new(layer.with_ansi(colour))
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

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::{Arc, Mutex, PoisonError},
    };

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::*;

    /// Log lines written to memory.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner))
                .into_owned()
        }
    }

    /// One event inside a request span and an exported (`otel::TARGET`) span, as a request logs.
    fn log_one_event(subscriber: Box<dyn Subscriber + Send + Sync>) {
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!("request", request_id = "r-1");
            let _request = request.enter();
            let exported = tracing::info_span!(target: crate::otel::TARGET, "exported");
            let _exported = exported.enter();
            tracing::info!(outcome = "ok", "finished");
        });
    }

    #[test]
    fn json_lines_carry_the_event_and_its_span() {
        let lines = Lines::default();
        let writer = lines.clone();
        log_one_event(subscriber(
            filter(Some("info"), false),
            true,
            false,
            move || writer.clone(),
        ));
        let line: serde_json::Value = serde_json::from_str(lines.text().trim()).unwrap();
        assert_eq!(line["fields"]["message"], "finished", "{line}");
        assert_eq!(line["fields"]["outcome"], "ok", "{line}");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["span"]["name"], "exported", "the current span: {line}");
    }

    #[test]
    fn text_lines_are_coloured_only_when_asked() {
        for colour in [false, true] {
            let lines = Lines::default();
            let writer = lines.clone();
            log_one_event(subscriber(
                filter(Some("info"), false),
                false,
                colour,
                move || writer.clone(),
            ));
            let text = lines.text();
            assert!(text.contains("finished") && text.contains("r-1"), "{text}");
            assert_eq!(text.contains('\u{1b}'), colour, "{text:?}");
            assert!(serde_json::from_str::<serde_json::Value>(text.trim()).is_err());
        }
    }

    #[test]
    fn with_traces_the_log_lines_skip_the_exported_spans_only() {
        let provider = SdkTracerProvider::builder().build();
        for json in [false, true] {
            let lines = Lines::default();
            let writer = lines.clone();
            log_one_event(subscriber_with_otel(
                filter(Some("info"), false),
                json,
                false,
                move || writer.clone(),
                provider.tracer("test"),
            ));
            let text = lines.text();
            assert!(text.contains("finished") && text.contains("r-1"), "{text}");
            assert!(!text.contains("exported"), "{text}");
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(text.trim()).is_ok(),
                json,
                "{text}"
            );
        }
    }
}
