//! Look-ahead for nested `invitedUsers`. When a page of users is loaded, the query already
//! says what each of those users' `invitedUsers` will ask for; loading it here, for the whole
//! page in one `load_many`, costs one batched query per level.
//!
//! Left to each child resolver, the keys would reach the DataLoader from many futures that
//! async-graphql polls in chunks, and under concurrent load they miss the batching window
//! and split into several small batches (a known upstream behaviour). The loaders cache per
//! request, so the children then find their data already there.

use async_graphql::{Context, Lookahead, SelectionField, Value};

use crate::{
    domain::cursor,
    error::AppError,
    graphql::loaders::{InviteesKey, Loaders, loader_error},
};

/// Whether a connection selection needs its rows (not just `totalCount`).
pub fn selects_rows(connection: &Lookahead<'_>) -> bool {
    ["nodes", "edges", "pageInfo"]
        .iter()
        .any(|name| connection.field(name).exists())
}

/// Loads what the `invitedUsers` fields under `nodes` / `edges.node` of the current connection
/// field will ask for, for every user in `user_ids`.
pub async fn invitees_of_page(ctx: &Context<'_>, user_ids: &[i64]) -> Result<(), AppError> {
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
    let loaders = ctx.data_unchecked::<Loaders>();
    for child in children {
        // Arguments the child would refuse are left to it: it reports them with the right field.
        let Some((first, after)) = page_arguments(&child) else {
            continue;
        };
        let wants = |name: &str| child.selection_set().any(|f| f.name() == name);
        if wants("nodes") || wants("edges") || wants("pageInfo") {
            let keys = user_ids.iter().map(|&inviter_id| InviteesKey {
                inviter_id,
                limit: first + 1,
                after,
            });
            loaders
                .invitees
                .load_many(keys)
                .await
                .map_err(loader_error)?;
        }
        if wants("totalCount") {
            loaders
                .invite_counts
                .load_many(user_ids.iter().copied())
                .await
                .map_err(loader_error)?;
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
