//! The business rules. Services know nothing of HTTP or GraphQL: they take parsed domain values,
//! talk to the database through single atomic statements or transactions, and return
//! `AppResult`.

pub mod account;
pub mod invites;
pub mod limits;
pub mod otp;
pub mod phone_change;
pub mod pumping;
pub mod sessions;
pub mod tokens;
pub mod users;

use chrono::{DateTime, Utc};

/// Whole seconds from `now` until `at`, at least 1 (for `retryAfter`).
pub fn seconds_until(now: DateTime<Utc>, at: DateTime<Utc>) -> u64 {
    let millis = (at - now).num_milliseconds().max(0) as u64;
    millis.div_ceil(1000).max(1)
}
