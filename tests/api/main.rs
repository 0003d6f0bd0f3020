//! The API test suite: one binary, every test against the real router and a fresh database
//! (in-memory SQLite, or PostgreSQL when `TEST_DATABASE_URL` is set).

mod account_deletion;
mod auth;
mod contract_config;
mod development_limits;
mod entities;
mod fake_sms;
mod faults;
mod field_order;
mod helpers;
mod invites;
mod limits;
mod outbox;
mod parsers;
mod persisted;
mod phone_change;
mod pumping;
mod query_limits;
mod races;
mod review_numbers;
mod schema_file;
mod sessions;
mod socket_client;
mod sockets;
mod startup;
mod statements;
mod subscriptions;
mod tokens;
mod transport;
mod users;
