//! DataLoaders, built per operation (no cache outlives an operation or crosses users). Each answers
//! one question for many parents with one query.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
};

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use sea_orm::DatabaseConnection;

use crate::{
    db::entities::users, domain::cursor::Position, error::AppError, services::users as user_service,
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
pub struct Loaders {
    db: DatabaseConnection,
    invitees: OnceLock<DataLoader<InviteesLoader, HashMapCache>>,
    invite_counts: OnceLock<DataLoader<InviteCountLoader, HashMapCache>>,
}

impl Loaders {
    pub fn new(db: &DatabaseConnection) -> Self {
        Self {
            db: db.clone(),
            invitees: OnceLock::new(),
            invite_counts: OnceLock::new(),
        }
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
