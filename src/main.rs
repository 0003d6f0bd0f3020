use std::process::ExitCode;

use phone_auth::{
    app,
    config::{Config, redact_url},
    otel, telemetry,
};

#[tokio::main]
async fn main() -> ExitCode {
    // A missing .env is fine: the environment alone may configure everything.
    let _ = dotenvy::dotenv();

    if std::env::args().nth(1).as_deref() == Some("print-schema") {
        print!("{}", phone_auth::graphql::schema::sdl());
        return ExitCode::SUCCESS;
    }

    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("phone-auth: configuration error: {err}");
            return ExitCode::from(2);
        }
    };
    // Logging starts once the configuration says whether traces are exported too (a
    // configuration error is printed above, without it).
    let exporter = match config.otel.as_ref().map(otel::Exporter::start).transpose() {
        Ok(exporter) => exporter,
        Err(err) => {
            eprintln!("phone-auth: OpenTelemetry: {err}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&config.logging, exporter.as_ref());
    if let Some(settings) = &config.otel {
        tracing::info!(
            endpoint = %redact_url(settings.traces_endpoint.as_str()),
            "OpenTelemetry: exporting traces over OTLP/HTTP"
        );
    }
    let result = app::run(config).await;
    if let Some(exporter) = exporter {
        exporter.shutdown().await;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("phone-auth: {err:#}");
            ExitCode::FAILURE
        }
    }
}
