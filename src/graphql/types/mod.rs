//! GraphQL object types, built from entity models (the tables are not the API). Doc comments
//! are the SDL descriptions and follow the contract's wording.

mod connection;
mod payloads;
mod user;

pub use connection::{PageInfo, Total, UserConnection, UserEdge};
pub use payloads::{AuthPayload, RequestCodePayload};
pub use user::User;

/// Complexity of a paginated field: its children cost once per row it may return, so
/// `first` multiplies (GraphQL cheat sheet: amount limiting).
pub fn page_cost(first: Option<i32>, child_complexity: usize) -> usize {
    let rows = first
        .unwrap_or(crate::domain::cursor::DEFAULT_PAGE)
        .clamp(1, crate::domain::cursor::MAX_PAGE);
    rows as usize * child_complexity + 1
}
