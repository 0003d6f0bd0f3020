//! DataLoaders, built per request (no cache outlives a request or crosses users). Each answers
//! one question for many parents with one query.

use std::collections::HashMap;
use std::sync::Arc;

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

pub struct Loaders {
    pub invitees: DataLoader<InviteesLoader, HashMapCache>,
    pub invite_counts: DataLoader<InviteCountLoader, HashMapCache>,
}

impl Loaders {
    pub fn new(db: &DatabaseConnection) -> Self {
        Self {
            // Cached for the request: what a parent resolver prefetched, its children find.
            invitees: DataLoader::with_cache(
                InviteesLoader { db: db.clone() },
                tokio::spawn,
                HashMapCache::default(),
            ),
            invite_counts: DataLoader::with_cache(
                InviteCountLoader { db: db.clone() },
                tokio::spawn,
                HashMapCache::default(),
            ),
        }
    }
}

/// A loader error, shared between the keys of a batch, back into one the client may see.
pub fn loader_error(err: Arc<AppError>) -> AppError {
    AppError::internal(anyhow::anyhow!("{err:?}"))
}
