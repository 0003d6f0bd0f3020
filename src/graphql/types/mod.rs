//! GraphQL object types, built from entity models (the tables are not the API). Doc comments
//! are the SDL descriptions and follow the contract's wording.

mod connection;
mod payloads;
mod user;

pub use connection::{PageInfo, Total, UserConnection, UserEdge};
pub use payloads::{AuthPayload, RequestCodePayload};
pub use user::User;
