//! Queuing a message: what services call inside the transaction of the change the message
//! reports, so the message commits (or rolls back) with it. The caller [`Outbox::wake`]s the
//! worker after its commit: a wake-up before it could find nothing to send.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;

use super::{store, worker::Wake};
use crate::{
    domain::phone::Phone,
    error::{AppError, AppResult},
    keys::Keys,
};

/// What services hold to queue messages: the key that seals their text, how long they are
/// tried, and the bell of this instance's worker. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    keys: Arc<Keys>,
    give_up_after: Duration,
    wake: Wake,
}

impl Outbox {
    /// Messages sealed with `keys` and given up `give_up_after` (`SMS_DELIVERY_GIVE_UP_SECONDS`)
    /// after they were queued.
    pub fn new(keys: Arc<Keys>, give_up_after: Duration) -> Self {
        Self {
            keys,
            give_up_after,
            wake: Wake::default(),
        }
    }

    /// The bell the worker waits on (the worker is built with it).
    pub(super) fn bell(&self) -> &Wake {
        &self.wake
    }

    /// The keys messages are sealed with (the worker opens them with the same).
    pub(super) fn keys(&self) -> &Arc<Keys> {
        &self.keys
    }

    /// Adds the message for a freshly issued code. Call it inside the transaction that stores
    /// the code, then [`wake`](Self::wake) the worker after the commit. (A message still pending
    /// for the phone's previous code is retired by the worker, not here: the request stays one
    /// statement longer, no more.)
    pub async fn enqueue_code(
        &self,
        conn: &impl ConnectionTrait,
        otp_code_id: i64,
        phone: &Phone,
        issued_at: DateTime<Utc>,
        text: &str,
    ) -> AppResult<()> {
        self.insert(conn, store::kind::CODE, otp_code_id, phone, issued_at, text)
            .await
    }

    /// Adds a message that carries no code (in the transaction of the change it reports), then
    /// [`wake`](Self::wake) the worker after the commit. It is retried until
    /// `SMS_DELIVERY_GIVE_UP_SECONDS` like a code.
    pub async fn enqueue_notice(
        &self,
        conn: &impl ConnectionTrait,
        phone: &Phone,
        now: DateTime<Utc>,
        text: &str,
    ) -> AppResult<()> {
        self.insert(conn, store::kind::NOTICE, 0, phone, now, text)
            .await
    }

    /// Tells this instance's worker that a message is waiting (a no-op cost if it is busy: the
    /// wake-up is kept until it next waits).
    pub fn wake(&self) {
        self.wake.ring();
    }

    async fn insert(
        &self,
        conn: &impl ConnectionTrait,
        kind: &str,
        otp_code_id: i64,
        phone: &Phone,
        issued_at: DateTime<Utc>,
        text: &str,
    ) -> AppResult<()> {
        let context = store::context(phone.as_str(), issued_at);
        let sealed = self
            .keys
            .seal_outbox(&[&context[0], &context[1]], text)
            .map_err(AppError::internal)?;
        let message = store::NewMessage {
            kind,
            otp_code_id,
            phone,
            issued_at,
            give_up_at: issued_at + self.give_up_after,
            sealed,
        };
        store::insert(conn, message).await
    }
}
