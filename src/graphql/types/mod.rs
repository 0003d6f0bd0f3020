//! GraphQL object types, built from entity models (the tables are not the API). Doc comments
//! are the SDL descriptions and follow the contract's wording.

mod connection;
mod payloads;
mod session;
mod user;

pub use connection::{List, PageInfo, UserConnection, UserEdge};
pub use payloads::{AuthPayload, RequestCodePayload};
pub use session::Session;
pub use user::User;

/// Complexity of a paginated field: its rows' fields cost once per row it may return, so
/// `first` multiplies (GraphQL cheat sheet: amount limiting). An out-of-range `first` costs
/// like one row, so the resolver, not the cost check, answers it (BAD_USER_INPUT, `first`).
pub fn page_cost(first: Option<i32>, child_complexity: usize) -> usize {
    use crate::domain::cursor::{DEFAULT_PAGE, MAX_PAGE};
    let first = first.unwrap_or(DEFAULT_PAGE);
    let rows = if (1..=MAX_PAGE).contains(&first) {
        first as usize
    } else {
        1
    };
    rows.saturating_mul(child_complexity).saturating_add(1)
}
