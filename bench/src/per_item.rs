//! Baseline (d): the `nested` scenario's query answered the textbook way, with a default
//! DataLoader per item and no look-ahead. Each `invitedUsers` asks its own loader for its page
//! and each `totalCount` for its count; the loaders batch whatever keys reach them within their
//! delay. Same database, same SQL per batch as the real server (`services::users`), so the
//! comparison isolates the loading strategy.

use std::{collections::HashMap, sync::Arc};

use async_graphql::{
    Context, EmptyMutation, EmptySubscription, Object, Schema,
    dataloader::{DataLoader, Loader},
};
use phone_auth::{db::entities::users, domain::cursor::MAX_PAGE, services::users as user_service};
use sea_orm::{DatabaseConnection, EntityTrait};

/// A page request: inviter and `first` (no cursors: the scenario does not page).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageKey {
    inviter_id: i64,
    first: u64,
}

pub struct PageLoader(DatabaseConnection);

impl Loader<PageKey> for PageLoader {
    type Value = Arc<Vec<users::Model>>;
    type Error = Arc<String>;

    async fn load(&self, keys: &[PageKey]) -> Result<HashMap<PageKey, Self::Value>, Self::Error> {
        let mut out = HashMap::with_capacity(keys.len());
        let mut by_first: HashMap<u64, Vec<i64>> = HashMap::new();
        for key in keys {
            by_first.entry(key.first).or_default().push(key.inviter_id);
        }
        for (first, inviters) in by_first {
            let mut pages = user_service::invitees_of(&self.0, &inviters, first, None)
                .await
                .map_err(|e| Arc::new(e.to_string()))?;
            for inviter_id in inviters {
                let rows = pages.remove(&inviter_id).unwrap_or_default();
                out.insert(PageKey { inviter_id, first }, Arc::new(rows));
            }
        }
        Ok(out)
    }
}

pub struct CountLoader(DatabaseConnection);

impl Loader<i64> for CountLoader {
    type Value = i64;
    type Error = Arc<String>;

    async fn load(&self, keys: &[i64]) -> Result<HashMap<i64, i64>, Self::Error> {
        let counts = user_service::invitee_counts(&self.0, keys)
            .await
            .map_err(|e| Arc::new(e.to_string()))?;
        Ok(keys
            .iter()
            .map(|id| (*id, counts.get(id).copied().unwrap_or(0)))
            .collect())
    }
}

/// One request's loaders: `DataLoader::new`, the library's default (no cache, 1 ms delay).
pub struct Loaders {
    pages: DataLoader<PageLoader>,
    counts: DataLoader<CountLoader>,
}

impl Loaders {
    pub fn new(db: &DatabaseConnection) -> Self {
        Self {
            pages: DataLoader::new(PageLoader(db.clone()), tokio::spawn),
            counts: DataLoader::new(CountLoader(db.clone()), tokio::spawn),
        }
    }
}

/// `first` as the real server takes it (1 to `MAX_PAGE`), for the baselines' `invitedUsers`.
pub(crate) fn page_size(first: i32) -> u64 {
    first.clamp(1, MAX_PAGE).unsigned_abs().into()
}

fn error(message: impl std::fmt::Display) -> async_graphql::Error {
    async_graphql::Error::new(message.to_string())
}

pub struct User(users::Model);

#[Object]
impl User {
    async fn phone(&self) -> &str {
        &self.0.phone
    }

    async fn invited_users(
        &self,
        #[graphql(default = 20)] first: i32,
    ) -> async_graphql::Result<Connection> {
        Ok(Connection {
            inviter_id: self.0.id,
            first: page_size(first),
        })
    }
}

pub struct Connection {
    inviter_id: i64,
    first: u64,
}

#[Object(name = "UserConnection")]
impl Connection {
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        let loaders = ctx.data_unchecked::<Loaders>();
        let count = loaders
            .counts
            .load_one(self.inviter_id)
            .await
            .map_err(error)?;
        Ok(count.unwrap_or(0))
    }

    async fn nodes(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<User>> {
        let key = PageKey {
            inviter_id: self.inviter_id,
            first: self.first,
        };
        let rows = ctx
            .data_unchecked::<Loaders>()
            .pages
            .load_one(key)
            .await
            .map_err(error)?;
        Ok(rows
            .map(|rows| rows.iter().cloned().map(User).collect())
            .unwrap_or_default())
    }
}

pub struct QueryRoot {
    db: DatabaseConnection,
    user_id: i64,
}

#[Object(name = "Query")]
impl QueryRoot {
    async fn me(&self) -> async_graphql::Result<User> {
        users::Entity::find_by_id(self.user_id)
            .one(&self.db)
            .await
            .map_err(|e| error(e.to_string()))?
            .map(User)
            .ok_or_else(|| async_graphql::Error::new("no such user"))
    }
}

pub type PerItemSchema = Schema<QueryRoot, EmptyMutation, EmptySubscription>;

/// No complexity limit: the nested query is what is measured.
pub fn schema(db: DatabaseConnection, user_id: i64) -> PerItemSchema {
    Schema::build(QueryRoot { db, user_id }, EmptyMutation, EmptySubscription).finish()
}
