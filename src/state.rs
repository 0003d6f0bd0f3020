//! What every layer shares: configuration, the database, the clock, the SMS sender, the keys
//! derived from the secret, the channel that announces invite activations, the revoked
//! sign-ins and the handle services queue SMS through.
//!
//! [`AppState::new`] only builds: nothing runs until `app::start` starts the feeds (and
//! `app::run` the outbox worker and the pruning), so building a state has no side effects.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::{
    clock::Clock, config::Config, events::InviteEvents, gate::Gate, keys::Keys, outbox::Outbox,
    revocations::Revocations, sms::SmsSender,
};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: DatabaseConnection,
    pub clock: Arc<dyn Clock>,
    pub sms: Arc<dyn SmsSender>,
    pub keys: Arc<Keys>,
    pub invite_events: Arc<InviteEvents>,
    /// Sign-ins revoked recently, on every instance (checked with every access token).
    pub revocations: Arc<Revocations>,
    /// Queues SMS inside a service's transaction and wakes this instance's outbox worker.
    pub outbox: Outbox,
    /// The GraphQL concurrency limit and the drain flag SIGTERM raises.
    pub gate: Arc<Gate>,
}

impl AppState {
    pub fn new(
        config: Config,
        db: DatabaseConnection,
        clock: Arc<dyn Clock>,
        sms: Arc<dyn SmsSender>,
    ) -> Self {
        let keys = Arc::new(Keys::derive(&config.jwt_secret));
        let invite_events = InviteEvents::new(&db);
        // Remembered as long as an access token issued before the revocation could live.
        let revocations = Revocations::new(
            &db,
            clock.clone(),
            config.tokens.access_ttl + std::time::Duration::from_secs(60),
        );
        let gate = Arc::new(Gate::new(config.lifecycle.max_concurrent_requests));
        let outbox = Outbox::new(keys.clone(), config.sms.give_up_after);
        Self {
            gate,
            config: Arc::new(config),
            db,
            clock,
            sms,
            keys,
            invite_events,
            revocations,
            outbox,
        }
    }
}
