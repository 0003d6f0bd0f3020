//! "Someone activated your invite code", delivered to every instance's subscribers.
//!
//! On PostgreSQL the event travels as a `NOTIFY` on one channel, and each instance `LISTEN`s
//! and fans it out to its own subscribers, so a user subscribed on instance A hears about an
//! activation handled by instance B. On SQLite (one process) an in-process channel does.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sea_orm::{DatabaseConnection, DbBackend};
use sqlx::postgres::PgListener;
use tokio::sync::{broadcast, watch};

const CHANNEL: &str = "phone_auth_invite_activated";

/// Someone activated `inviter_id`'s invite code; `invitee_id` is who.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InviteActivated {
    pub inviter_id: i64,
    pub invitee_id: i64,
}

impl InviteActivated {
    fn to_payload(self) -> String {
        format!("{}:{}", self.inviter_id, self.invitee_id)
    }

    fn from_payload(payload: &str) -> Option<Self> {
        let (inviter, invitee) = payload.split_once(':')?;
        Some(Self {
            inviter_id: inviter.parse().ok()?,
            invitee_id: invitee.parse().ok()?,
        })
    }
}

pub struct InviteEvents {
    local: broadcast::Sender<InviteActivated>,
    /// On PostgreSQL: whether this instance's listener is connected and listening.
    listening: Option<watch::Sender<bool>>,
    /// Set by the first [`start`](Self::start), so a second one starts no second listener.
    started: AtomicBool,
}

impl InviteEvents {
    /// The channel for `db`'s backend; nothing runs until [`start`](Self::start).
    pub fn new(db: &DatabaseConnection) -> Arc<Self> {
        let (local, _) = broadcast::channel(1024);
        let listening = match db.get_database_backend() {
            DbBackend::Postgres => Some(watch::Sender::new(false)),
            _ => None,
        };
        Arc::new(Self {
            local,
            listening,
            started: AtomicBool::new(false),
        })
    }

    /// Starts the PostgreSQL listener when `db` is PostgreSQL (it runs until the process ends);
    /// nothing to start on SQLite.
    pub fn start(self: &Arc<Self>, db: &DatabaseConnection) {
        if self.listening.is_none() || self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool = db.get_postgres_connection_pool().clone();
        tokio::spawn(listen(pool, self.clone()));
    }

    /// Announces an activation to every instance.
    pub async fn publish(&self, db: &DatabaseConnection, event: InviteActivated) {
        match self.listening {
            Some(_) => {
                if let Err(err) = crate::db::notify(db, CHANNEL, event.to_payload()).await {
                    tracing::warn!(error = %err, "could not announce an invite activation");
                }
            }
            // Nobody listening is fine: the send only fails when there are no subscribers.
            None => {
                let _ = self.local.send(event);
            }
        }
    }

    /// A receiver of every activation announced from now on. On PostgreSQL it waits (briefly)
    /// for the listener, so nothing announced after this returns can be missed.
    pub async fn subscribe(&self) -> broadcast::Receiver<InviteActivated> {
        let receiver = self.local.subscribe();
        if let Some(listening) = &self.listening {
            let mut listening = listening.subscribe();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), listening.wait_for(|ready| *ready))
                    .await;
        }
        receiver
    }

    /// How many subscribers would get an activation announced now: the local receivers, or
    /// none while this instance's PostgreSQL listener is not listening yet. Tests wait on it
    /// instead of sleeping after a client subscribes.
    pub fn live_subscribers(&self) -> usize {
        match &self.listening {
            Some(listening) if !*listening.borrow() => 0,
            _ => self.local.receiver_count(),
        }
    }
}

async fn listen(pool: sqlx::PgPool, events: Arc<InviteEvents>) {
    let Some(ready) = &events.listening else {
        return;
    };
    let local = &events.local;
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, "invite listener cannot connect; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(err) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %err, "invite listener cannot LISTEN; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        ready.send_replace(true);
        // `recv` reconnects by itself after a lost connection (and re-LISTENs).
        loop {
            match listener.recv().await {
                Ok(notification) => {
                    if let Some(event) = InviteActivated::from_payload(notification.payload()) {
                        let _ = local.send(event);
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "invite listener failed; reconnecting");
                    ready.send_replace(false);
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_refuses_garbage() {
        let event = InviteActivated {
            inviter_id: 7,
            invitee_id: 42,
        };
        assert_eq!(
            InviteActivated::from_payload(&event.to_payload()),
            Some(event)
        );
        for bad in ["", "7", "7:", ":4", "a:b", "1:2:3"] {
            assert_eq!(InviteActivated::from_payload(bad), None, "{bad}");
        }
    }
}
