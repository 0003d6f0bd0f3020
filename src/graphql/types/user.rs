use async_graphql::{Context, ID, Object};
use chrono::{DateTime, Utc};

use super::{List, UserConnection, page_cost};
use crate::{
    db::entities::users,
    domain::cursor,
    graphql::{
        loaders::{InviteesKey, Loaders, loader_error},
        prefetch,
    },
    services::users::split_page,
};

pub struct User(pub users::Model);

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// E.164.
    async fn phone(&self) -> &str {
        &self.0.phone
    }

    /// 6 characters, letters and digits, unique, assigned when the user is created, never changes.
    async fn invite_code(&self) -> &str {
        &self.0.invite_code
    }

    /// The invite code this user activated, or null.
    async fn activated_invite_code(&self) -> Option<&str> {
        self.0.activated_invite_code.as_deref()
    }

    /// The users who activated this user's invite code, oldest first (batched through a DataLoader).
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn invited_users(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<UserConnection> {
        let first = cursor::page_size(first.unwrap_or(cursor::DEFAULT_PAGE))?;
        let after = after.as_deref().map(cursor::decode).transpose()?;
        let list = List::InviteesOf(self.0.id);
        let look = ctx.look_ahead();
        if !prefetch::selects_rows(&look) {
            // Only totalCount: no rows to load.
            return Ok(UserConnection::new(Vec::new(), false, list));
        }
        let key = InviteesKey {
            inviter_id: self.0.id,
            limit: first + 1,
            after,
        };
        let rows = ctx
            .data_unchecked::<Loaders>()
            .invitees()
            .load_one(key)
            .await
            .map_err(loader_error)?
            .unwrap_or_default();
        let (rows, has_next_page) = split_page(rows.as_ref().clone(), first);
        let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
        // This list's own totalCount comes with the children's counts.
        let owner = look.field("totalCount").exists().then_some(self.0.id);
        prefetch::invitees_of_page(ctx, &ids, owner).await?;
        Ok(UserConnection::new(rows, has_next_page, list))
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}
