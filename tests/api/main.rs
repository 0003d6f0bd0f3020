//! The API test suite: one binary, every test against the real router and a fresh database
//! (in-memory SQLite, or PostgreSQL when `TEST_DATABASE_URL` is set).

mod auth;
mod fake_sms;
mod helpers;
mod invites;
mod limits;
mod outbox;
mod parsers;
mod persisted;
mod query_limits;
mod schema_file;
mod startup;
mod statements;
mod subscriptions;
mod tokens;
mod transport;
mod users;
