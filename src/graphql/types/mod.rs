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

/// The fields that return a page of rows (a `UserConnection`), and take `first`.
pub const PAGINATED_FIELDS: [&str; 2] = ["users", "invitedUsers"];

/// Complexity of a paginated field: its rows' fields cost once per row it may return, so
/// `first` multiplies (GraphQL cheat sheet: amount limiting).
pub fn page_cost(first: Option<i32>, child_complexity: usize) -> usize {
    page_rows(first)
        .saturating_mul(child_complexity)
        .saturating_add(1)
}

/// The rows a page of `first` may hold, as the cost counts them. An out-of-range `first`
/// counts as one row, so the resolver, not the cost check, answers it (BAD_USER_INPUT,
/// `first`).
pub fn page_rows(first: Option<i32>) -> usize {
    use crate::domain::cursor::{DEFAULT_PAGE, MAX_PAGE};
    let first = first.unwrap_or(DEFAULT_PAGE);
    if (1..=MAX_PAGE).contains(&first) {
        first as usize
    } else {
        1
    }
}
