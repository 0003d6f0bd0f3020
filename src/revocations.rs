//! Which sign-ins were revoked, known to every instance in memory, so an access token is
//! checked without a database round trip and still dies within a second of its sign-in.
//!
//! Only revocations younger than the access-token lifetime matter: an older sign-in's access
//! tokens have expired anyway, and its refresh is refused by the `sessions` row. So the set is
//! small. It is loaded from `sessions` at start and kept current by the revocations
//! themselves: on PostgreSQL each revocation `NOTIFY`s inside its transaction (delivered on
//! commit to every instance's `LISTEN`), on SQLite (one process) it is recorded in process.
//!
//! While the feed is down (not yet loaded; the PostgreSQL listener lost its connection) this
//! instance cannot know what it missed, so it fails closed: every access token is refused until
//! the listener is back and the set reloaded.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use sqlx::postgres::PgListener;
use uuid::Uuid;

use crate::{clock::Clock, db};

const CHANNEL: &str = "phone_auth_session_revoked";
/// Ids per `NOTIFY` (PostgreSQL payloads stop at 8000 bytes; an id is 36).
const IDS_PER_NOTIFY: usize = 100;

pub struct Revocations {
    /// Revoked sign-in id → when.
    revoked: RwLock<HashMap<Uuid, DateTime<Utc>>>,
    /// The set is loaded and (on PostgreSQL) the listener is connected.
    live: AtomicBool,
    /// How long a revocation is remembered: the access-token lifetime plus the clock leeway.
    retention: TimeDelta,
    clock: Arc<dyn Clock>,
    postgres: bool,
}

impl Revocations {
    /// Starts loading the set (and, on PostgreSQL, the listener that keeps it current).
    pub fn start(db: &DatabaseConnection, clock: Arc<dyn Clock>, retention: Duration) -> Arc<Self> {
        let postgres = db.get_database_backend() == DbBackend::Postgres;
        let this = Arc::new(Self {
            revoked: RwLock::new(HashMap::new()),
            live: AtomicBool::new(false),
            retention: TimeDelta::from_std(retention).unwrap_or(TimeDelta::MAX),
            clock,
            postgres,
        });
        if postgres {
            tokio::spawn(listen(
                db.get_postgres_connection_pool().clone(),
                db.clone(),
                this.clone(),
            ));
        } else {
            tokio::spawn(load_once(db.clone(), this.clone()));
        }
        this
    }

    /// True when tokens of sign-in `id` must be refused: it was revoked, or this instance
    /// cannot tell (the feed is down).
    pub fn is_revoked(&self, id: &Uuid) -> bool {
        if !self.live.load(Ordering::Acquire) {
            return true;
        }
        self.read().contains_key(id)
    }

    /// Whether the set is loaded and current (`/readyz` and the tests wait for it).
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
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
                conn.execute(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT pg_notify($1, $2)",
                    [CHANNEL.into(), payload.into()],
                ))
                .await?;
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

    /// Replaces the set with what the database says (after a (re)connect), then goes live.
    async fn reload(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        let since = self.clock.now() - self.retention;
        let rows = db
            .query_all(db::raw(
                db.get_database_backend(),
                "SELECT id, revoked_at FROM sessions WHERE revoked_at > ?",
                vec![since.into()],
            ))
            .await?;
        let mut loaded = HashMap::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get("", "id")?;
            let at: DateTime<Utc> = row.try_get("", "revoked_at")?;
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
        self.live.store(true, Ordering::Release);
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
/// connection, go dark (fail closed), reconnect and reload.
async fn listen(pool: sqlx::PgPool, db: DatabaseConnection, revocations: Arc<Revocations>) {
    loop {
        match listen_once(&pool, &db, &revocations).await {
            Ok(()) => {}
            Err(err) => tracing::warn!(error = %err, "revocation feed down; reconnecting"),
        }
        revocations.live.store(false, Ordering::Release);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn listen_once(
    pool: &sqlx::PgPool,
    db: &DatabaseConnection,
    revocations: &Revocations,
) -> anyhow::Result<()> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    revocations.reload(db).await?;
    tracing::debug!("revocation feed live");
    // `try_recv` (not `recv`) so a lost connection is seen rather than silently re-made:
    // notifications sent while it was gone are lost, and only a reload recovers them.
    while let Some(notification) = listener.try_recv().await? {
        let ids = notification
            .payload()
            .split(',')
            .filter_map(|id| Uuid::parse_str(id).ok());
        revocations.record(ids, revocations.clock.now());
    }
    anyhow::bail!("the listener's connection was lost")
}
