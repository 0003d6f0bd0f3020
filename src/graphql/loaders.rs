//! DataLoaders, built per operation (no cache outlives an operation or crosses users). Each answers
//! one question for many parents with one query.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use sea_orm::DatabaseConnection;
use tokio::sync::OnceCell;

use crate::{
    db::entities::users,
    domain::cursor::Position,
    error::AppError,
    services::{
        sessions::{self, SessionInfo},
        users as user_service,
    },
    state::AppState,
};

/// A page of one inviter's invitees: `limit` rows after the cursor (the resolver asks for one
/// more than it shows, to learn `hasNextPage`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InviteesKey {
    pub inviter_id: i64,
    pub limit: u64,
    pub after: Option<Position>,
}

pub struct InviteesLoader {
    db: DatabaseConnection,
}

impl Loader<InviteesKey> for InviteesLoader {
    type Value = Arc<Vec<users::Model>>;
    type Error = Arc<AppError>;

    async fn load(
        &self,
        keys: &[InviteesKey],
    ) -> Result<HashMap<InviteesKey, Self::Value>, Self::Error> {
        // Keys asking for the same page shape share one query.
        let mut groups: HashMap<(u64, Option<Position>), Vec<i64>> = HashMap::new();
        for key in keys {
            groups
                .entry((key.limit, key.after))
                .or_default()
                .push(key.inviter_id);
        }
        let mut out = HashMap::with_capacity(keys.len());
        for ((limit, after), inviter_ids) in groups {
            let mut pages = user_service::invitees_of(&self.db, &inviter_ids, limit, after)
                .await
                .map_err(Arc::new)?;
            for inviter_id in inviter_ids {
                let rows = pages.remove(&inviter_id).unwrap_or_default();
                out.insert(
                    InviteesKey {
                        inviter_id,
                        limit,
                        after,
                    },
                    Arc::new(rows),
                );
            }
        }
        Ok(out)
    }
}

/// `totalCount` of `invitedUsers`, per inviter.
pub struct InviteCountLoader {
    db: DatabaseConnection,
}

impl Loader<i64> for InviteCountLoader {
    type Value = i64;
    type Error = Arc<AppError>;

    async fn load(&self, keys: &[i64]) -> Result<HashMap<i64, i64>, Self::Error> {
        let counts = user_service::invitee_counts(&self.db, keys)
            .await
            .map_err(Arc::new)?;
        Ok(keys
            .iter()
            .map(|id| (*id, counts.get(id).copied().unwrap_or(0)))
            .collect())
    }
}

/// The loaders of one operation, each made on first use: most operations (`me`, sign-in)
/// never touch one, and a DataLoader is not free to set up.
///
/// Fields the cost count treats as free or cheap (`me`, `totalCount`, `sessions`) are read at
/// most once per operation here: async-graphql resolves every alias and every fragment spread of a
/// field again, so without this, `users(first: 1) { ...F }` with `F` spreading `totalCount`
/// 10,000 times would count the whole table 10,000 times at a cost of 1.
pub struct Loaders {
    db: DatabaseConnection,
    invitees: OnceLock<DataLoader<InviteesLoader, HashMapCache>>,
    invite_counts: OnceLock<DataLoader<InviteCountLoader, HashMapCache>>,
    /// One cell per inviter, so that aliases asking at once share one load: a DataLoader
    /// forgets a key once its batch is sent, and a later alias would start another.
    invite_count_cells: Mutex<HashMap<i64, Arc<OnceCell<i64>>>>,
    /// Prefetched counts are loaded one page at a time, so that a page asked for again
    /// (aliases, fragments) finds its counts loaded instead of loading them beside the first.
    prefetching_counts: tokio::sync::Mutex<()>,
    viewer: OnceCell<users::Model>,
    all_users_count: OnceCell<i64>,
    live_sessions: OnceCell<Arc<Vec<SessionInfo>>>,
}

impl Loaders {
    pub fn new(db: &DatabaseConnection) -> Self {
        Self {
            db: db.clone(),
            invitees: OnceLock::new(),
            invite_counts: OnceLock::new(),
            invite_count_cells: Mutex::default(),
            prefetching_counts: tokio::sync::Mutex::new(()),
            viewer: OnceCell::new(),
            all_users_count: OnceCell::new(),
            live_sessions: OnceCell::new(),
        }
    }

    /// `invitedUsers { totalCount }` of one inviter, loaded once per operation (batched with
    /// other inviters' through [`Self::invite_counts`], or found there when prefetched).
    pub async fn invite_count(&self, inviter_id: i64) -> Result<i64, AppError> {
        let cell = self
            .invite_count_cells
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(inviter_id)
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            Ok(self
                .invite_counts()
                .load_one(inviter_id)
                .await
                .map_err(loader_error)?
                .unwrap_or_default())
        })
        .await
        .copied()
    }

    /// Loads the invitee counts of `inviter_ids` not loaded yet in this operation, in one
    /// grouped query, for the page's rows to find ([`prefetch`](super::prefetch)).
    ///
    /// The results are fed into the loader rather than requested through it: the keys are all
    /// known here, so there is nothing to wait for (a load waits out the batching delay).
    pub async fn prefetch_invite_counts(&self, inviter_ids: &[i64]) -> Result<(), AppError> {
        let _one_page_at_a_time = self.prefetching_counts.lock().await;
        let loaded = self.invite_counts().get_cached_values();
        let ids: Vec<i64> = inviter_ids
            .iter()
            .copied()
            .filter(|id| !loaded.contains_key(id))
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let counts = user_service::invitee_counts(&self.db, &ids).await?;
        let entries = ids
            .iter()
            .map(|id| (*id, counts.get(id).copied().unwrap_or(0)));
        self.invite_counts().feed_many(entries).await;
        Ok(())
    }

    /// The signed-in user's row (`me`, and the admin check of `users`), read once per
    /// operation: each alias of `me` would otherwise be a lookup of its own.
    pub async fn viewer(&self, user_id: i64) -> Result<users::Model, AppError> {
        self.viewer
            .get_or_try_init(|| user_service::signed_in(&self.db, user_id))
            .await
            .cloned()
    }

    /// `users { totalCount }`, counted once per operation.
    pub async fn all_users_count(&self) -> Result<i64, AppError> {
        self.all_users_count
            .get_or_try_init(|| user_service::count_all(&self.db))
            .await
            .copied()
    }

    /// The viewer's live sign-ins, read once per operation (only the viewer's are ever asked
    /// for, so one cell is enough).
    pub async fn live_sessions(
        &self,
        state: &AppState,
        user_id: i64,
    ) -> Result<Arc<Vec<SessionInfo>>, AppError> {
        self.live_sessions
            .get_or_try_init(|| async { Ok(Arc::new(sessions::list_live(state, user_id).await?)) })
            .await
            .cloned()
    }

    // Cached for the operation: what a parent resolver prefetched, its children find.
    pub fn invitees(&self) -> &DataLoader<InviteesLoader, HashMapCache> {
        self.invitees.get_or_init(|| {
            let loader = InviteesLoader {
                db: self.db.clone(),
            };
            DataLoader::with_cache(loader, crate::otel::spawn, HashMapCache::default())
        })
    }

    pub fn invite_counts(&self) -> &DataLoader<InviteCountLoader, HashMapCache> {
        self.invite_counts.get_or_init(|| {
            let loader = InviteCountLoader {
                db: self.db.clone(),
            };
            DataLoader::with_cache(loader, crate::otel::spawn, HashMapCache::default())
        })
    }
}

/// A loader error, shared between the keys of a batch, back into one the client may see.
pub fn loader_error(err: Arc<AppError>) -> AppError {
    AppError::internal(anyhow::anyhow!("{err:?}"))
}
