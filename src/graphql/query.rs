use async_graphql::{Context, Object};

use super::{
    loaders::Loaders,
    prefetch,
    types::{List, Session, User, UserConnection, page_cost},
    viewer::Viewer,
};
use crate::{
    domain::cursor,
    services::{sessions, users},
    state::AppState,
};

pub struct QueryRoot;

/// `sessions` lists at most `MAX_LISTED` rows, and is paid for that many, each at least 1
/// (they resolve even when all they select is free, as `__typename`).
fn sessions_cost(child_complexity: usize) -> usize {
    (sessions::MAX_LISTED as usize)
        .saturating_mul(child_complexity.max(1))
        .saturating_add(1)
}

#[Object(name = "Query")]
impl QueryRoot {
    /// The signed-in user. UNAUTHENTICATED without a valid access token.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        let user_id = ctx.data_unchecked::<Viewer>().user_id()?;
        Ok(User(ctx.data_unchecked::<Loaders>().viewer(user_id).await?))
    }

    /// Every user, newest first. FORBIDDEN unless the caller is an admin (ADMIN_PHONES).
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn users(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<UserConnection> {
        let user_id = ctx.data_unchecked::<Viewer>().user_id()?;
        let state = ctx.data_unchecked::<AppState>();
        users::admin(
            state,
            ctx.data_unchecked::<Loaders>().viewer(user_id).await?,
        )?;
        let first = cursor::page_size(first.unwrap_or(cursor::DEFAULT_PAGE))?;
        let after = after.as_deref().map(cursor::decode).transpose()?;
        if !prefetch::selects_rows(&ctx.look_ahead()) {
            // Only totalCount: no rows to load.
            return Ok(UserConnection::new(Vec::new(), false, List::AllUsers));
        }
        let (rows, has_next_page) = users::page_all(&state.db, first, after).await?;
        let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
        prefetch::invitees_of_page(ctx, &ids, None).await?;
        Ok(UserConnection::new(rows, has_next_page, List::AllUsers))
    }

    /// The caller's live sign-ins, newest first.
    // Not paginated: paid for the most rows it lists (`MAX_LISTED`), like a page that size.
    #[graphql(complexity = "sessions_cost(child_complexity)")]
    async fn sessions(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Session>> {
        let access = ctx.data_unchecked::<Viewer>().access()?;
        let state = ctx.data_unchecked::<AppState>();
        let current = access.session_id.to_string();
        let live = ctx
            .data_unchecked::<Loaders>()
            .live_sessions(state, access.user_id)
            .await?;
        Ok(live
            .iter()
            .map(|info| Session::new(info.clone(), &current))
            .collect())
    }
}
