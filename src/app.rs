//! Building the application from a configuration and serving it.

use std::{net::SocketAddr, sync::Arc};

use axum::Router;
use tokio::net::TcpListener;

use crate::{
    clock::SystemClock,
    config::{Config, SmsProviderKind, redact_url},
    db,
    sms::{ConsoleSender, SmsSender},
    state::AppState,
};

/// Connects to the database, applies pending migrations and builds the shared state.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    let db = db::connect(&config.database_url, config.database_max_connections)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot open the database {}: {e}",
                redact_url(&config.database_url)
            )
        })?;
    db::migrate(&db)
        .await
        .map_err(|e| anyhow::anyhow!("migrations failed: {e}"))?;
    let sms: Arc<dyn SmsSender> = match config.sms_provider {
        SmsProviderKind::Console => Arc::new(ConsoleSender::new(config.sms_delay)),
    };
    Ok(AppState::new(config, db, Arc::new(SystemClock), sms))
}

pub fn build_router(state: AppState) -> Router {
    crate::http::router(state)
}

/// Serves `router` on `listener` until Ctrl-C / SIGTERM, finishing in-flight requests.
pub async fn serve(listener: TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    if config.jwt_secret_generated {
        tracing::warn!(
            "JWT_SECRET is not set: using a random secret; tokens will not survive a restart"
        );
    }
    if config.otp_expose {
        tracing::warn!(
            "OTP_EXPOSE is on: codes are returned in requestCode responses (development only)"
        );
    }
    let addr = config.listen_addr;
    let state = build_state(config).await?;
    spawn_pruning(state.clone());
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    tracing::info!("phone-auth listening on http://{addr}/ (GraphiQL) and http://{addr}/graphql");
    serve(listener, build_router(state)).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Deletes rate-limit events no window counts any more, hourly.
fn spawn_pruning(state: AppState) {
    tokio::spawn(async move {
        let mut every_hour = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            every_hour.tick().await;
            match crate::services::limits::prune(&state.db, state.clock.now()).await {
                Ok(deleted) => tracing::debug!(deleted, "pruned old rate-limit events"),
                Err(err) => tracing::warn!(error = ?err, "pruning rate-limit events failed"),
            }
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
