//! Look-ahead for nested `invitedUsers`. When a page of users is loaded, the query already
//! says what each of those users' `invitedUsers` will ask for; loading it here, for the whole
//! page at once, costs one grouped query per level.
//!
//! Left to each child resolver, the keys would reach the DataLoader from many futures that
//! async-graphql polls in chunks, and under concurrent load they miss the batching window
//! and split into several small batches (a known upstream behaviour). The loaders cache per
//! request, so the children then find their data already there.

use std::sync::Arc;

use async_graphql::{Context, Lookahead, SelectionField, Value};

use crate::{
    domain::cursor,
    error::AppError,
    graphql::loaders::{InviteesKey, Loaders},
    services::users as user_service,
    state::AppState,
};

/// Whether a connection selection needs its rows (not just `totalCount`).
pub fn selects_rows(connection: &Lookahead<'_>) -> bool {
    ["nodes", "edges", "pageInfo"]
        .iter()
        .any(|name| connection.field(name).exists())
}

/// Loads what the `invitedUsers` fields under `nodes` / `edges.node` of the current connection
/// field will ask for, for every user in `user_ids`, and puts it in the request's loaders.
///
/// `owner` is the user whose list this page is, when the page's own `totalCount` is selected:
/// that count then comes in the same grouped query as the children's.
///
/// The results are fed into the loaders rather than requested through them: the keys are all
/// known here, so there is nothing to wait for (a load waits out the loader's batching delay).
pub async fn invitees_of_page(
    ctx: &Context<'_>,
    user_ids: &[i64],
    owner: Option<i64>,
) -> Result<(), AppError> {
    if user_ids.is_empty() {
        return Ok(());
    }
    let look = ctx.look_ahead();
    let mut children = look.field("nodes").field("invitedUsers").selection_fields();
    children.extend(
        look.field("edges")
            .field("node")
            .field("invitedUsers")
            .selection_fields(),
    );
    let db = &ctx.data_unchecked::<AppState>().db;
    let loaders = ctx.data_unchecked::<Loaders>();
    let mut pages_loaded = Vec::new();
    let mut counts_loaded = false;
    for child in children {
        // Arguments the child would refuse are left to it: it reports them with the right field.
        let Some((first, after)) = page_arguments(&child) else {
            continue;
        };
        let wants = |name: &str| child.selection_set().any(|f| f.name() == name);
        // The same page asked for twice (aliases) is loaded once.
        if (wants("nodes") || wants("edges") || wants("pageInfo"))
            && !pages_loaded.contains(&(first, after))
        {
            pages_loaded.push((first, after));
            let limit = first + 1;
            let mut pages = user_service::invitees_of(db, user_ids, limit, after).await?;
            let entries = user_ids.iter().map(|&inviter_id| {
                let rows = pages.remove(&inviter_id).unwrap_or_default();
                let key = InviteesKey {
                    inviter_id,
                    limit,
                    after,
                };
                (key, Arc::new(rows))
            });
            loaders.invitees().feed_many(entries).await;
        }
        if wants("totalCount") && !counts_loaded {
            counts_loaded = true;
            let ids: Vec<i64> = user_ids.iter().copied().chain(owner).collect();
            loaders.prefetch_invite_counts(&ids).await?;
        }
    }
    Ok(())
}

/// `first` and `after` of a child field, as its resolver will read them.
fn page_arguments(field: &SelectionField<'_>) -> Option<(u64, Option<cursor::Position>)> {
    let arguments = field.arguments().ok()?;
    let mut first = cursor::DEFAULT_PAGE;
    let mut after = None;
    for (name, value) in arguments {
        match (name.as_str(), value) {
            ("first", Value::Number(n)) => first = i32::try_from(n.as_i64()?).ok()?,
            ("first", Value::Null) => {}
            ("after", Value::String(s)) => after = Some(cursor::decode(&s).ok()?),
            ("after", Value::Null) => {}
            _ => return None,
        }
    }
    Some((cursor::page_size(first).ok()?, after))
}
