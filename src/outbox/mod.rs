//! The SMS outbox: codes (and notices) are delivered from the database, not from the request.
//!
//! This is infrastructure, not a business rule: services decide *that* a message goes out, the
//! outbox makes sure it does. `request_code` queues the message with
//! [`Outbox::enqueue_code`] inside the transaction that stores the code, so a code and its
//! message exist together or not at all, and then [`Outbox::wake`]s this instance's worker.
//! The [`Worker`] (one per instance, started by `app::run`) claims a batch of due rows by
//! setting a lease on them in one statement, sends each with a timeout, and records the
//! outcome ([`Status`]):
//!
//! - delivered: `sent`;
//! - failed: retried after 1 s, 2 s, 4 s … (at most [`MAX_BACKOFF_SECS`]) until the row's give-up
//!   time (`SMS_DELIVERY_GIVE_UP_SECONDS` after the code was issued), then `undeliverable`;
//!   a failure the provider calls permanent (a refused number, bad credentials) gives up at once;
//! - a new code for the same phone: the older pending message is `superseded` (its code no
//!   longer works, so sending it would only confuse).
//!
//! A worker that dies mid-send loses nothing: its lease runs out and another claim retries the
//! row. Delivery is therefore **at-least-once**; every attempt of a message carries the same
//! message id, which the webhook provider sends as its `Idempotency-Key`, so a gateway can drop
//! a repeat. The message text (it holds the code) is stored sealed with a key derived from
//! `JWT_SECRET` (`Keys::seal_outbox`) and wiped once the row is finished, whatever the outcome.
//!
//! - [`enqueue`]: what services call, inside their own transaction;
//! - [`store`]: the SQL (claim and lease, mark sent / failed / undeliverable, prune);
//! - [`worker`]: the loop, its wake-up, batches, shutdown and the hourly pruning.

pub mod enqueue;
pub mod store;
pub mod worker;

pub use crate::db::entities::sms_outbox::Status;
pub use enqueue::Outbox;
pub use store::delete_pending;
pub use worker::{
    BATCH_SIZE, MAX_BACKOFF_SECS, POLL_INTERVAL, PRUNE_EVERY, RunningWorker, Settings, Wake,
    Worker, backoff,
};
