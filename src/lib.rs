//! phone-auth: a GraphQL API for signing in with a phone number and a one-time code, with
//! invite codes between users. `main.rs` is a thin shim over `app::run`.

pub mod app;
pub mod clock;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod events;
pub mod gate;
pub mod graphql;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod otel;
pub mod outbox;
pub mod revocations;
pub mod services;
pub mod sms;
pub mod state;
pub mod telemetry;
