use async_graphql::{Context, Object, SimpleObject};

use super::User;
use crate::{
    db::entities::users,
    domain::cursor::{self, Position},
    graphql::loaders::Loaders,
};

/// Which list a connection pages through: it decides the cursor's sort key and where
/// `totalCount` comes from (computed only when asked for).
#[derive(Clone, Copy, Debug)]
pub enum List {
    /// Every user, newest first (by creation time).
    AllUsers,
    /// The users who activated this user's invite code, in activation order.
    InviteesOf(i64),
}

impl List {
    fn position(self, row: &users::Model) -> Position {
        let at = match self {
            Self::AllUsers => row.created_at,
            Self::InviteesOf(_) => row.activated_at.unwrap_or(row.created_at),
        };
        Position { at, id: row.id }
    }
}

pub struct UserConnection {
    rows: Vec<users::Model>,
    has_next_page: bool,
    list: List,
}

impl UserConnection {
    pub fn new(rows: Vec<users::Model>, has_next_page: bool, list: List) -> Self {
        Self {
            rows,
            has_next_page,
            list,
        }
    }
}

#[Object]
impl UserConnection {
    // Costs nothing per row: it is one batched count per list, not per item.
    #[graphql(complexity = 0)]
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        match self.list {
            List::AllUsers => Ok(ctx.data_unchecked::<Loaders>().all_users_count().await?),
            List::InviteesOf(inviter_id) => Ok(ctx
                .data_unchecked::<Loaders>()
                .invite_count(inviter_id)
                .await?),
        }
    }

    async fn edges(&self) -> Vec<UserEdge> {
        self.rows
            .iter()
            .map(|row| UserEdge {
                cursor: cursor::encode(self.list.position(row)),
                node: User(row.clone()),
            })
            .collect()
    }

    async fn nodes(&self) -> Vec<User> {
        self.rows.iter().cloned().map(User).collect()
    }

    // Costs 1 per row, whatever it selects: it needs the page loaded (`first + 1` rows, to know
    // `hasNextPage`), so a page that selects only `pageInfo` still reads every row it is paid
    // for here (docs/tools.md, "How cost is counted").
    #[graphql(complexity = 1)]
    async fn page_info(&self) -> PageInfo {
        PageInfo {
            has_next_page: self.has_next_page,
            end_cursor: self
                .rows
                .last()
                .map(|row| cursor::encode(self.list.position(row))),
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
