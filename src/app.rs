//! Building the application from a configuration and serving it.

use std::{net::SocketAddr, sync::Arc};

use axum::Router;
use tokio::net::TcpListener;

use crate::{
    clock::{Clock, SystemClock},
    config::{Config, SmsProviderKind, redact_url},
    db, outbox,
    sms::{ConsoleSender, SmsSender, TwilioSender, WebhookSender},
    state::AppState,
};

/// Connects to the database, applies pending migrations, builds the shared state and
/// [`start`]s its feeds.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    let db = db::connect_with(
        &config.database_url,
        config.database_max_connections,
        config.database_acquire_timeout(),
    )
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
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sms = sms_sender(&config, clock.clone())?;
    let state = AppState::new(config, db, clock, sms);
    start(&state);
    // Until then every access token is refused (fail closed); normally a few milliseconds.
    if !state
        .revocations
        .wait_live(std::time::Duration::from_secs(10))
        .await
    {
        tracing::warn!(
            "the revocation feed is not live yet: access tokens are refused until it is"
        );
    }
    Ok(state)
}

/// The provider `SMS_PROVIDER` names, built from its settings.
pub fn sms_sender(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<dyn SmsSender>> {
    let timeout = config.sms.send_timeout;
    Ok(match &config.sms.provider {
        SmsProviderKind::Console => Arc::new(ConsoleSender::new(config.sms.delay)),
        SmsProviderKind::Webhook(settings) => Arc::new(
            WebhookSender::new(settings, timeout, clock)
                .map_err(|e| anyhow::anyhow!("SMS_PROVIDER=webhook: {e}"))?,
        ),
        SmsProviderKind::Twilio(settings) => Arc::new(
            TwilioSender::new(settings, timeout)
                .map_err(|e| anyhow::anyhow!("SMS_PROVIDER=twilio: {e}"))?,
        ),
    })
}

/// Starts what a built state needs running before it serves: the metrics recorder (it must
/// exist before the first metric is recorded), the invite-event listener and the revocation
/// feed (access tokens are refused until it is live). The outbox worker and the hourly pruning
/// are started by [`run`] (tests start a worker when they want one).
pub fn start(state: &AppState) {
    crate::metrics::handle();
    state.invite_events.start(&state.db);
    state.revocations.start(&state.db);
}

/// The outbox worker for `state`: its database, sender, clock, keys and outbox settings.
pub fn outbox_worker(state: &AppState) -> outbox::Worker {
    outbox::Worker::new(
        state.db.clone(),
        state.sms.clone(),
        state.clock.clone(),
        &state.outbox,
        outbox::Settings::from_config(&state.config),
    )
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

/// Serves `router` on `listener` until `stop` resolves, then stops accepting and gives
/// in-flight requests `timeout` to finish (an HTTP request longer than that, or a keep-alive
/// connection a client never closes, does not hold the process).
pub async fn serve_until(
    listener: TcpListener,
    router: Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    timeout: std::time::Duration,
) -> std::io::Result<()> {
    let (stopped, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        stop.await;
        tracing::info!("no longer accepting connections: finishing in-flight requests");
        let _ = stopped.send(());
    });
    let deadline = async move {
        match stopped_rx.await {
            Ok(()) => tokio::time::sleep(timeout).await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        served = server.into_future() => served,
        () = deadline => {
            tracing::warn!(?timeout, "in-flight requests did not finish in time (SHUTDOWN_TIMEOUT_SECONDS): stopping anyway");
            Ok(())
        }
    }
}

/// `/readyz` answers 503 for `drain` (still serving), so balancers stop sending new requests
/// before the listener closes.
async fn drain(gate: &crate::gate::Gate, drain: std::time::Duration) {
    gate.start_draining();
    if !drain.is_zero() {
        tracing::info!(
            ?drain,
            "draining: /readyz answers 503 while requests are still served (SHUTDOWN_DRAIN_SECONDS)"
        );
        tokio::time::sleep(drain).await;
    }
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    if config.jwt_secret_generated {
        tracing::warn!(
            "JWT_SECRET is not set: using a random secret; tokens will not survive a restart"
        );
    }
    if config.otp.expose {
        tracing::warn!(
            "OTP_EXPOSE is on: codes are returned in requestCode responses (development only)"
        );
    }
    if let SmsProviderKind::Webhook(webhook) = &config.sms.provider
        && config.is_production()
        && webhook.url.scheme() == "http"
    {
        tracing::warn!(
            "SMS_WEBHOOK_URL is plain http: messages (which hold codes) cross the network unencrypted"
        );
    }
    let risky: Vec<&str> = config
        .sms_guard
        .allowed_number_types
        .iter()
        .filter(|t| t.is_pumping_risk())
        .map(|t| t.name())
        .collect();
    if !risky.is_empty() {
        tracing::warn!(
            types = ?risky,
            "SMS_ALLOWED_NUMBER_TYPES lets codes go to kinds of number used for SMS pumping"
        );
    }
    if config.limits.sms_global_per_day == 0 {
        tracing::warn!("SMS_GLOBAL_PER_DAY is off: nothing caps the daily SMS spend");
    }
    if !config.test_phone_numbers.is_empty() {
        let count = config.test_phone_numbers.len();
        // Fixed codes are a way in for whoever learns them: production says so at every start.
        if config.is_production() {
            tracing::warn!(
                count,
                "TEST_PHONE_NUMBERS is set: these numbers sign in with fixed codes and get no SMS"
            );
        } else {
            tracing::info!(count, "TEST_PHONE_NUMBERS: review numbers with fixed codes");
        }
    }
    tracing::info!(provider = config.sms.provider.name(), "SMS provider");
    let addr = config.listen_addr;
    let state = build_state(config).await?;
    spawn_pruning(state.clone());
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let worker = outbox_worker(&state).spawn();
    tracing::info!("{}", crate::http::graphiql_page());
    tracing::info!("phone-auth listening on http://{addr}/ (GraphiQL) and http://{addr}/graphql");
    let lifecycle = state.config.lifecycle.clone();
    let gate = state.gate.clone();
    let served = serve_until(
        listener,
        build_router(state),
        async move {
            shutdown_signal().await;
            drain(&gate, lifecycle.drain).await;
        },
        lifecycle.shutdown_timeout,
    )
    .await;
    // The worker keeps sending while in-flight requests finish, so the codes they issue go
    // out; then it finishes the batch it holds and stops.
    tracing::info!("finishing the SMS outbox batch");
    worker.stop().await;
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// Deletes rate-limit events no window counts any more and revocations older than any access
/// token they could refuse, hourly. (The outbox worker prunes its own finished rows.)
fn spawn_pruning(state: AppState) {
    tokio::spawn(async move {
        let mut every_hour = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            every_hour.tick().await;
            match crate::services::limits::prune(&state.db, state.clock.now()).await {
                Ok(deleted) => tracing::debug!(deleted, "pruned old rate-limit events"),
                Err(err) => tracing::warn!(error = ?err, "pruning rate-limit events failed"),
            }
            match state.revocations.prune(&state.db).await {
                Ok(deleted) => tracing::debug!(deleted, "pruned old revoked sign-ins"),
                Err(err) => tracing::warn!(error = ?err, "pruning revoked sign-ins failed"),
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
    tracing::info!("shutting down");
}
