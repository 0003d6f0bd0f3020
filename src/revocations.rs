//! Which sign-ins were revoked, known to every instance in memory, so an access token is
//! checked without a database round trip and still dies within a second of its sign-in.
//!
//! Only revocations younger than the access-token lifetime matter: an older sign-in's access
//! tokens have expired anyway, and its refresh is refused by the `sessions` row. So the set is
//! small. It is loaded at start from `revoked_sessions` (written by every revocation in its
//! transaction, and kept when the user and their `sessions` rows are deleted) and kept current
//! by the revocations themselves: on PostgreSQL each revocation `NOTIFY`s inside its
//! transaction (delivered on commit to every instance's `LISTEN`), on SQLite (one process) it
//! is recorded in process.
//!
//! While the feed is down (not yet loaded; the PostgreSQL listener lost its connection) this
//! instance cannot know what it missed, so it fails closed: every access token is refused until
//! the listener is back and the set reloaded.
//!
//! A listener can also die silently (a half-open connection behind a NAT or load balancer that
//! dropped it, a failover without a reset): it then just waits. So on PostgreSQL the instance
//! sends itself a heartbeat on the same channel every [`HEARTBEAT_EVERY`], stamped with when
//! it was sent. Notifications are delivered in commit order, so seeing our heartbeat sent at
//! `t` come back proves every revocation committed before `t` has arrived: the set counts as
//! current until `t + `[`FRESH_FOR`] and no longer. Past that, tokens are refused and the
//! listener is replaced and the set reloaded.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter,
};
use sqlx::postgres::{PgListener, PgPoolOptions};
use uuid::Uuid;

use crate::{
    clock::Clock,
    db::entities::revoked_sessions::{self, Column},
};

const CHANNEL: &str = "phone_auth_session_revoked";
/// Ids per `NOTIFY` (PostgreSQL payloads stop at 8000 bytes; an id is 36).
const IDS_PER_NOTIFY: usize = 100;
/// How often an instance sends itself a heartbeat through the feed (PostgreSQL).
pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(250);
/// How long after sending the last heartbeat that came back the set still counts as current:
/// under the contract's 1 s, with room for three heartbeats.
pub const FRESH_FOR: Duration = Duration::from_millis(800);
/// Heartbeat payloads start with this (a revocation's payload is sign-in ids).
const HEARTBEAT_PREFIX: &str = "heartbeat:";
/// `live_until` of an instance whose set cannot go stale (SQLite: one process).
const ALWAYS: u64 = u64::MAX;

pub struct Revocations {
    /// Revoked sign-in id → when.
    revoked: RwLock<HashMap<Uuid, DateTime<Utc>>>,
    /// Until when (milliseconds since `started`) the set is known to be current: 0 while not
    /// loaded or the feed is down, [`ALWAYS`] on SQLite, else a heartbeat's send time plus
    /// [`FRESH_FOR`].
    live_until: AtomicU64,
    /// The zero of `live_until` (monotonic: wall-clock jumps do not matter).
    started: Instant,
    /// Tells this instance's heartbeats from other instances'.
    instance: Uuid,
    /// How long a revocation is remembered: the access-token lifetime plus the clock leeway.
    retention: TimeDelta,
    clock: Arc<dyn Clock>,
    postgres: bool,
    /// Set by the first [`start`](Self::start).
    running: AtomicBool,
}

impl Revocations {
    /// An empty set, not live (every access token is refused) until [`start`](Self::start)
    /// has loaded it.
    pub fn new(db: &DatabaseConnection, clock: Arc<dyn Clock>, retention: Duration) -> Arc<Self> {
        Arc::new(Self {
            revoked: RwLock::new(HashMap::new()),
            live_until: AtomicU64::new(0),
            started: Instant::now(),
            instance: Uuid::new_v4(),
            retention: TimeDelta::from_std(retention).unwrap_or(TimeDelta::MAX),
            clock,
            postgres: db.get_database_backend() == DbBackend::Postgres,
            running: AtomicBool::new(false),
        })
    }

    /// Starts loading the set (and, on PostgreSQL, the listener that keeps it current). A
    /// second call does nothing.
    pub fn start(self: &Arc<Self>, db: &DatabaseConnection) {
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.postgres {
            let pool = db.get_postgres_connection_pool().clone();
            tokio::spawn(send_heartbeats(pool.clone(), Arc::downgrade(self)));
            tokio::spawn(listen(pool, db.clone(), self.clone()));
        } else {
            tokio::spawn(load_once(db.clone(), self.clone()));
        }
    }

    /// Whether sign-in `id` is in the revoked set, whatever the feed's state (callers that
    /// tell "revoked" from "cannot tell" ask [`is_live`](Self::is_live) first, once).
    pub fn is_listed(&self, id: &Uuid) -> bool {
        self.read().contains_key(id)
    }

    /// Whether the set is loaded and current (`/readyz` and the tests wait for it).
    pub fn is_live(&self) -> bool {
        self.elapsed_ms() < self.live_until.load(Ordering::Acquire)
    }

    /// Deletes the `revoked_sessions` rows too old to matter (hourly).
    pub async fn prune(&self, db: &DatabaseConnection) -> Result<u64, DbErr> {
        let oldest = self.clock.now() - self.retention;
        let result = revoked_sessions::Entity::delete_many()
            .filter(Column::RevokedAt.lte(oldest))
            .exec(db)
            .await?;
        Ok(result.rows_affected)
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The set is current as of `as_of` (ms since `started`): live until `FRESH_FOR` later.
    fn current_as_of(&self, as_of: u64) {
        let until = as_of.saturating_add(FRESH_FOR.as_millis() as u64);
        self.live_until.fetch_max(until, Ordering::AcqRel);
    }

    fn go_dark(&self) {
        self.live_until.store(0, Ordering::Release);
    }

    /// Our own heartbeat's send time, if `payload` is one.
    fn own_heartbeat(&self, payload: &str) -> Option<u64> {
        let (instance, sent) = payload.strip_prefix(HEARTBEAT_PREFIX)?.split_once(':')?;
        (Uuid::parse_str(instance).ok()? == self.instance)
            .then(|| sent.parse().ok())
            .flatten()
    }

    /// Waits (at most `timeout`) for the set to be loaded and current.
    pub async fn wait_live(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.is_live() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Announces revoked sign-ins through `conn`: on PostgreSQL a `NOTIFY` that every instance
    /// receives when `conn`'s transaction commits. This instance records them at once either
    /// way (if the transaction then rolls back, they stay refused here until they age out:
    /// closed, not open).
    pub async fn publish(&self, conn: &impl ConnectionTrait, ids: &[Uuid]) -> Result<(), DbErr> {
        if ids.is_empty() {
            return Ok(());
        }
        self.record(ids.iter().copied(), self.clock.now());
        if self.postgres {
            for chunk in ids.chunks(IDS_PER_NOTIFY) {
                let payload = chunk
                    .iter()
                    .map(Uuid::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                crate::db::notify(conn, CHANNEL, payload).await?;
            }
        }
        Ok(())
    }

    fn record(&self, ids: impl IntoIterator<Item = Uuid>, at: DateTime<Utc>) {
        let oldest = self.clock.now() - self.retention;
        let mut revoked = self.write();
        revoked.retain(|_, when| *when > oldest);
        for id in ids {
            revoked.entry(id).or_insert(at);
        }
    }

    /// Replaces the set with what the database says (after a (re)connect), then goes live
    /// (on PostgreSQL until `FRESH_FOR` after the load began, unless heartbeats come back).
    async fn reload(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        let began = self.elapsed_ms();
        let since = self.clock.now() - self.retention;
        // `revoked_sessions`, not `sessions`: a deleted user's sign-ins are gone from the latter.
        let rows = revoked_sessions::Entity::find()
            .filter(Column::RevokedAt.gt(since))
            .all(db)
            .await?;
        let mut loaded = HashMap::with_capacity(rows.len());
        for revoked_sessions::Model { id, revoked_at: at } in rows {
            if let Ok(id) = Uuid::parse_str(&id) {
                loaded.insert(id, at);
            }
        }
        // Revocations recorded here meanwhile stay (they may not be committed yet).
        let mut revoked = self.write();
        for (id, at) in revoked.drain() {
            loaded.entry(id).or_insert(at);
        }
        *revoked = loaded;
        drop(revoked);
        if self.postgres {
            self.current_as_of(began);
        } else {
            self.live_until.store(ALWAYS, Ordering::Release);
        }
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Uuid, DateTime<Utc>>> {
        self.revoked.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Uuid, DateTime<Utc>>> {
        self.revoked.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// SQLite: one process, so loading once is enough; revocations are recorded by `publish`.
async fn load_once(db: DatabaseConnection, revocations: Arc<Revocations>) {
    while let Err(err) = revocations.reload(&db).await {
        tracing::warn!(error = %err, "cannot load revoked sign-ins; retrying");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// PostgreSQL: LISTEN first, then load, so nothing revoked in between is missed; on a lost
/// connection or a heartbeat that does not come back in time, go dark (fail closed),
/// reconnect and reload.
async fn listen(pool: sqlx::PgPool, db: DatabaseConnection, revocations: Arc<Revocations>) {
    loop {
        // The listener's connection comes from a one-connection pool of its own, made afresh
        // each time: a dropped `PgListener` sends `UNLISTEN` before giving its connection
        // back, which on a dead connection hangs, and must not hold a slot of the app's pool.
        let own = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(pool.connect_options().as_ref().clone());
        if let Err(err) = listen_once(&own, &db, &revocations).await {
            tracing::warn!(error = %err, "revocation feed down; reconnecting");
        }
        revocations.go_dark();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn listen_once(
    pool: &sqlx::PgPool,
    db: &DatabaseConnection,
    revocations: &Revocations,
) -> anyhow::Result<()> {
    let mut listener = PgListener::connect_with(pool).await?;
    // A lost connection must surface at once (`Ok(None)`), not after `try_recv` has quietly
    // made a new one: notifications sent meanwhile are lost, and only a reload recovers them.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    revocations.reload(db).await?;
    tracing::debug!("revocation feed live");
    loop {
        let notification = tokio::select! {
            // Notifications already here first: a heartbeat among them may be fresh.
            biased;
            received = listener.try_recv() => received?,
            () = stale(revocations) => {
                anyhow::bail!("no heartbeat came back for {FRESH_FOR:?}")
            }
        };
        let Some(notification) = notification else {
            anyhow::bail!("the listener's connection was lost")
        };
        let payload = notification.payload();
        if payload.starts_with(HEARTBEAT_PREFIX) {
            if let Some(sent) = revocations.own_heartbeat(payload) {
                revocations.current_as_of(sent);
            }
            continue;
        }
        let ids = payload.split(',').filter_map(|id| Uuid::parse_str(id).ok());
        revocations.record(ids, revocations.clock.now());
    }
}

/// Resolves once the set is no longer known to be current.
async fn stale(revocations: &Revocations) {
    loop {
        let until = revocations.live_until.load(Ordering::Acquire);
        let now = revocations.elapsed_ms();
        if now >= until {
            return;
        }
        tokio::time::sleep(Duration::from_millis(until - now)).await;
    }
}

/// Sends this instance's heartbeat through the pool every [`HEARTBEAT_EVERY`], for as long as
/// the instance lives. A send that hangs (a dead pool connection) is given up after
/// [`FRESH_FOR`]: by then the set is stale anyway.
async fn send_heartbeats(pool: sqlx::PgPool, revocations: std::sync::Weak<Revocations>) {
    let mut every = tokio::time::interval(HEARTBEAT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(this) = revocations.upgrade() else {
            return;
        };
        let payload = format!("{HEARTBEAT_PREFIX}{}:{}", this.instance, this.elapsed_ms());
        drop(this);
        // Straight through sqlx, not `db::notify`: four a second for the instance's life, these
        // are not the app's statements and must stay out of `db_statements_total`.
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&pool);
        match tokio::time::timeout(FRESH_FOR, sent).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::debug!(error = %err, "revocation heartbeat not sent"),
            Err(_) => tracing::debug!("revocation heartbeat send timed out"),
        }
    }
}
