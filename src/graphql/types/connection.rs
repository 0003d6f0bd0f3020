use async_graphql::{Context, Object, SimpleObject};

use super::User;
use crate::{
    db::entities::users,
    domain::cursor,
    graphql::loaders::{Loaders, loader_error},
    services::users as user_service,
    state::AppState,
};

/// Where `totalCount` comes from; it is only computed when asked for.
#[derive(Clone, Copy, Debug)]
pub enum Total {
    AllUsers,
    InviteesOf(i64),
}

pub struct UserConnection {
    rows: Vec<users::Model>,
    has_next_page: bool,
    total: Total,
}

impl UserConnection {
    pub fn new(rows: Vec<users::Model>, has_next_page: bool, total: Total) -> Self {
        Self {
            rows,
            has_next_page,
            total,
        }
    }
}

#[Object]
impl UserConnection {
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        match self.total {
            Total::AllUsers => {
                Ok(user_service::count_all(&ctx.data_unchecked::<AppState>().db).await?)
            }
            Total::InviteesOf(inviter_id) => Ok(ctx
                .data_unchecked::<Loaders>()
                .invite_counts
                .load_one(inviter_id)
                .await
                .map_err(loader_error)?
                .unwrap_or_default()),
        }
    }

    async fn edges(&self) -> Vec<UserEdge> {
        self.rows
            .iter()
            .map(|row| UserEdge {
                cursor: cursor::encode(row.id),
                node: User(row.clone()),
            })
            .collect()
    }

    async fn nodes(&self) -> Vec<User> {
        self.rows.iter().cloned().map(User).collect()
    }

    async fn page_info(&self) -> PageInfo {
        PageInfo {
            has_next_page: self.has_next_page,
            end_cursor: self.rows.last().map(|row| cursor::encode(row.id)),
        }
    }
}

#[derive(SimpleObject)]
pub struct UserEdge {
    pub cursor: String,
    pub node: User,
}

#[derive(SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}
