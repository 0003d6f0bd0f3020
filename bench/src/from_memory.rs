//! Baseline (e): the `nested` scenario's query answered from memory. Same schema shape as (d)
//! and the real server (`User { phone invitedUsers(first) }`, `UserConnection { totalCount
//! nodes }`), but every page and count the scenario asks for is read once at start-up, so a
//! request does no database work at all.
//!
//! What it costs per request is async-graphql's own work on this answer with no database
//! behind it: the HTTP stack, parsing and validating the document, resolving ~400 fields of
//! 100 objects and serialising them. It is a reference, not an exact floor for the real
//! server: the server skips the parse (its documents are cached) but also checks the token,
//! its limits and the field order, and goes through its loaders. Beside (d) it shows how much
//! of (d)'s cost is loading rather than GraphQL (see docs/performance.md).

use std::{collections::HashMap, sync::Arc};

use async_graphql::{Context, EmptyMutation, EmptySubscription, Object, Schema};
use phone_auth::{db::entities::users, services::users as user_service};
use sea_orm::{DatabaseConnection, EntityTrait};

/// The first page sizes the scenario asks for: the root's 100 invitees, 5 under each.
const ROOT_FIRST: u64 = 100;
const CHILD_FIRST: u64 = 5;

/// What the scenario reads, held in memory: pages by (inviter, first), counts by inviter.
#[derive(Default)]
pub struct Snapshot {
    root: Option<users::Model>,
    pages: HashMap<(i64, u64), Arc<Vec<users::Model>>>,
    counts: HashMap<i64, i64>,
}

impl Snapshot {
    /// Reads the root user, their first page, and the first page and count of everyone on it,
    /// with the real server's own queries (`services::users`).
    pub async fn load(db: &DatabaseConnection, user_id: i64) -> anyhow::Result<Self> {
        let fail = |e: phone_auth::error::AppError| anyhow::anyhow!("{e}");
        let root = users::Entity::find_by_id(user_id)
            .one(db)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no user {user_id}"))?;
        let mut snapshot = Self::default();
        let mut root_page = user_service::invitees_of(db, &[user_id], ROOT_FIRST, None)
            .await
            .map_err(fail)?;
        let page = root_page.remove(&user_id).unwrap_or_default();
        let ids: Vec<i64> = std::iter::once(user_id)
            .chain(page.iter().map(|u| u.id))
            .collect();
        let children = user_service::invitees_of(db, &ids[1..], CHILD_FIRST, None)
            .await
            .map_err(fail)?;
        for (id, rows) in children {
            snapshot.pages.insert((id, CHILD_FIRST), Arc::new(rows));
        }
        snapshot.pages.insert((user_id, ROOT_FIRST), Arc::new(page));
        snapshot.counts = user_service::invitee_counts(db, &ids).await.map_err(fail)?;
        snapshot.root = Some(root);
        Ok(snapshot)
    }
}

pub struct User(users::Model);

#[Object]
impl User {
    async fn phone(&self) -> &str {
        &self.0.phone
    }

    async fn invited_users(&self, #[graphql(default = 20)] first: i32) -> Connection {
        Connection {
            inviter_id: self.0.id,
            first: crate::per_item::page_size(first),
        }
    }
}

pub struct Connection {
    inviter_id: i64,
    first: u64,
}

#[Object(name = "UserConnection")]
impl Connection {
    async fn total_count(&self, ctx: &Context<'_>) -> i64 {
        let snapshot = ctx.data_unchecked::<Arc<Snapshot>>();
        snapshot.counts.get(&self.inviter_id).copied().unwrap_or(0)
    }

    /// The page's rows, copied into resolvable objects as (d) copies its loader's rows.
    async fn nodes(&self, ctx: &Context<'_>) -> Vec<User> {
        let snapshot = ctx.data_unchecked::<Arc<Snapshot>>();
        snapshot
            .pages
            .get(&(self.inviter_id, self.first))
            .map(|rows| rows.iter().cloned().map(User).collect())
            .unwrap_or_default()
    }
}

pub struct QueryRoot;

#[Object(name = "Query")]
impl QueryRoot {
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        let snapshot = ctx.data_unchecked::<Arc<Snapshot>>();
        snapshot
            .root
            .clone()
            .map(User)
            .ok_or_else(|| async_graphql::Error::new("no such user"))
    }
}

pub type FromMemorySchema = Schema<QueryRoot, EmptyMutation, EmptySubscription>;

/// No complexity limit, as (d): the nested query is what is measured.
pub fn schema(snapshot: Snapshot) -> FromMemorySchema {
    Schema::build(QueryRoot, EmptyMutation, EmptySubscription)
        .data(Arc::new(snapshot))
        .finish()
}
