//! SeaORM entities, one module per table (what `sea-orm-cli generate entity` would write).
//! No GraphQL derives here: the API's types live in `graphql::types`.

pub mod otp_codes;
pub mod rate_events;
pub mod rate_limit_locks;
pub mod refresh_tokens;
pub mod revoked_sessions;
pub mod sessions;
pub mod sms_outbox;
pub mod users;
