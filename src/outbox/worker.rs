//! The worker: one per instance, it delivers due messages until told to stop.
//!
//! It owns exactly what delivery needs (the database, the SMS sender, the keys that open the
//! stored text, the clock, the settings it reads and its wake-up bell), not the whole
//! application state, so what it can touch is visible here. It wakes when a service rings
//! [`Wake`] after committing a message, or every [`POLL_INTERVAL`] (another instance's
//! messages, retries coming due), and prunes finished rows every [`PRUNE_EVERY`].

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::future::join_all;
use sea_orm::{DatabaseConnection, TransactionTrait};
use tokio::{
    sync::{Notify, watch},
    task::JoinHandle,
};

use super::{
    Outbox, Status,
    store::{self, Claimed},
};
use crate::{
    clock::Clock,
    config::{Config, Limits},
    error::{AppError, AppResult},
    keys::Keys,
    services::limits,
    sms::{SmsError, SmsSender},
};

/// Rows one claim takes. They are sent concurrently, so a batch takes about one send timeout
/// at worst, which bounds how long a graceful shutdown waits for it.
pub const BATCH_SIZE: i64 = 16;
/// The safety net when no wake-up comes (another instance's codes, retries coming due).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
pub const MAX_BACKOFF_SECS: i64 = 60;
/// How often finished rows older than [`store::RETENTION`] are deleted (first at start).
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// A lease outlives the send timeout by this much, so a slow but live worker keeps its rows.
const LEASE_MARGIN: TimeDelta = TimeDelta::seconds(30);

/// Rung after a message's transaction commits, so this instance's worker sends at once instead
/// of at its next poll. Cheap to clone; every clone rings the same bell.
#[derive(Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    /// Wakes the worker; kept until it next waits if it is busy now.
    pub fn ring(&self) {
        self.0.notify_one();
    }

    async fn rung(&self) {
        self.0.notified().await;
    }
}

/// The settings delivery reads.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `SMS_SEND_TIMEOUT_MS`: how long one send may take.
    pub send_timeout: Duration,
    /// The send budgets a retry spends again (`limits::delivery_windows`).
    pub limits: Limits,
}

impl Settings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            send_timeout: config.sms.send_timeout,
            limits: config.limits.clone(),
        }
    }
}

/// Delivers the outbox. Cheap to clone (tests run passes beside the running worker).
#[derive(Clone)]
pub struct Worker {
    db: DatabaseConnection,
    sms: Arc<dyn SmsSender>,
    keys: Arc<Keys>,
    clock: Arc<dyn Clock>,
    settings: Arc<Settings>,
    wake: Wake,
}

impl Worker {
    /// A worker for the messages `outbox` queues (it opens them with its keys and answers its
    /// bell), delivering through `sms`.
    pub fn new(
        db: DatabaseConnection,
        sms: Arc<dyn SmsSender>,
        clock: Arc<dyn Clock>,
        outbox: &Outbox,
        settings: Settings,
    ) -> Self {
        Self {
            db,
            sms,
            keys: outbox.keys().clone(),
            clock,
            settings: Arc::new(settings),
            wake: outbox.bell().clone(),
        }
    }

    /// Starts the worker on the runtime; it runs until [`RunningWorker::stop`] or until the
    /// handle is dropped.
    pub fn spawn(self) -> RunningWorker {
        let (stop, stopped) = watch::channel(false);
        let handle = tokio::spawn(self.run(stopped));
        RunningWorker { stop, handle }
    }

    /// Delivers due messages until `stop` turns true (or its sender is gone), waking on
    /// [`Wake`] or every [`POLL_INTERVAL`]. A batch in hand is always finished, and one last
    /// pass runs after the stop signal, so codes issued by the final in-flight requests still go
    /// out; anything left is picked up by another instance or the next start.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        tracing::debug!("SMS outbox worker started");
        let mut pruned_at: Option<Instant> = None;
        loop {
            if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                self.prune().await;
                pruned_at = Some(Instant::now());
            }
            let handled = match self.deliver_due().await {
                Ok(handled) => handled,
                Err(err) => {
                    // The database is away; the next poll tries again.
                    tracing::warn!(error = ?err, "SMS outbox: cannot deliver due messages");
                    0
                }
            };
            if *stop.borrow() {
                break;
            }
            if handled > 0 {
                // More may be due right now.
                continue;
            }
            tokio::select! {
                () = self.wake.rung() => {}
                () = tokio::time::sleep(POLL_INTERVAL) => {}
                changed = stop.changed() => {
                    if changed.is_err() {
                        // Nobody can stop us any more: the owner is gone.
                        break;
                    }
                }
            }
        }
        tracing::debug!("SMS outbox worker stopped");
    }

    /// One pass: retires messages nobody should send any more, claims a batch of due ones and
    /// delivers them. Returns how many messages it settled or attempted (0: nothing was due).
    pub async fn deliver_due(&self) -> AppResult<usize> {
        let now = self.clock.now();
        let retired = self.retire(now).await?;
        let lease_until = now
            // The configuration bounds the timeout to minutes, so the conversion cannot fail.
            + TimeDelta::from_std(self.settings.send_timeout).unwrap_or(LEASE_MARGIN)
            + LEASE_MARGIN;
        let mut claimed = store::claim(&self.db, now, lease_until, BATCH_SIZE).await?;
        let attempted = claimed.len();
        claimed = self.pay_for_retries(claimed, now).await?;
        let results = join_all(claimed.iter().map(|row| self.send(row))).await;
        let mut sent = Vec::with_capacity(attempted);
        for (row, result) in claimed.iter().zip(results) {
            let recorded = match result {
                Ok(()) => {
                    crate::metrics::code_delivered();
                    sent.push(row);
                    Ok(())
                }
                Err(err) => self.record_failure(row, &err).await,
            };
            if let Err(err) = recorded {
                // The send happened (or not) but its outcome could not be stored: the lease
                // runs out and the row is tried again, which is the at-least-once promise.
                tracing::warn!(error = ?err, "SMS outbox: cannot record a delivery outcome");
            }
        }
        if let Err(err) = self.finish_sent(&sent).await {
            tracing::warn!(error = ?err, "SMS outbox: cannot record deliveries");
        }
        Ok(retired + attempted)
    }

    /// Pending messages that are due now (in flight or waiting for a worker).
    pub async fn due(&self) -> AppResult<i64> {
        store::due(&self.db, self.clock.now()).await
    }

    /// Deletes old finished rows; a failure waits for the next round.
    async fn prune(&self) {
        match store::prune(&self.db, self.clock.now()).await {
            Ok(deleted) => tracing::debug!(deleted, "pruned finished SMS outbox rows"),
            Err(err) => tracing::warn!(error = ?err, "pruning the SMS outbox failed"),
        }
    }

    /// Retires what nobody should send any more (see [`store::retire`]) and says so.
    async fn retire(&self, now: DateTime<Utc>) -> AppResult<usize> {
        let retired = store::retire(&self.db, now).await?;
        for row in &retired {
            if row.status == Status::Undeliverable {
                crate::metrics::code_undeliverable();
                tracing::error!(outbox_id = row.id, phone = %row.phone, attempts = row.attempts, "SMS undeliverable: give-up time passed");
            } else {
                tracing::debug!(outbox_id = row.id, phone = %row.phone, "SMS superseded by a newer code");
            }
        }
        Ok(retired.len())
    }

    /// Sends one claimed message.
    async fn send(&self, row: &Claimed) -> Result<(), SmsError> {
        let context = store::context(row.phone.as_str(), row.code_issued_at);
        let text = row
            .payload
            .as_deref()
            .and_then(|sealed| self.keys.open_outbox(&[&context[0], &context[1]], sealed));
        let Some(text) = text else {
            return Err(SmsError::permanent(
                "the stored message cannot be opened (was JWT_SECRET changed?)",
            ));
        };
        // The same on every attempt of this message: the webhook's Idempotency-Key. The
        // providers bound their own requests too; the timeout covers any sender.
        let message_id = format!("{}.{}", row.id, row.code_issued_at.timestamp_micros());
        let send = self.sms.send_message(&message_id, &row.phone, &text);
        match tokio::time::timeout(self.settings.send_timeout, send).await {
            Ok(result) => result,
            Err(_) => Err(SmsError::transient("timed out")),
        }
    }

    /// Records the delivered messages of a pass and logs each.
    async fn finish_sent(&self, rows: &[&Claimed]) -> AppResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let recorded = store::mark_sent(&self.db, rows, self.clock.now()).await?;
        for row in rows {
            if recorded.contains(&row.id) {
                tracing::info!(outbox_id = row.id, phone = %row.phone, attempt = row.attempts, "SMS delivered");
            } else {
                // Superseded by a newer code, or our lease ran out and another claim owns it.
                tracing::info!(outbox_id = row.id, phone = %row.phone, "SMS delivered, but the row had moved on");
            }
        }
        Ok(())
    }

    /// Every attempt after a message's first spends the send budgets again (per phone and
    /// global: `limits::delivery_windows`; the first was paid by its requestCode). A provider
    /// that times out after delivering would otherwise turn one code into as many SMS as there
    /// are retries. Returns the rows that may be sent now; the others wait until the budget has
    /// room (or are given up when that is past their give-up time).
    async fn pay_for_retries(
        &self,
        claimed: Vec<Claimed>,
        now: DateTime<Utc>,
    ) -> AppResult<Vec<Claimed>> {
        let mut ready = Vec::with_capacity(claimed.len());
        for row in claimed {
            if row.attempts <= 1 {
                ready.push(row);
                continue;
            }
            let windows = limits::delivery_windows(&self.settings.limits, &row.phone);
            let txn = self.db.begin().await?;
            match limits::check_and_record(&txn, &windows, now).await {
                Ok(()) => {
                    txn.commit().await?;
                    ready.push(row);
                }
                Err(AppError::RateLimited { retry_after }) => {
                    txn.rollback().await?;
                    // Windows are at most a month long, so the wait fits easily.
                    let until =
                        now + TimeDelta::seconds(retry_after.min(u64::from(u32::MAX)) as i64);
                    self.defer(&row, until, now).await?;
                }
                Err(err) => {
                    txn.rollback().await?;
                    return Err(err);
                }
            }
        }
        Ok(ready)
    }

    /// Puts back a claimed row whose retry the send budget has no room for: not an attempt (it
    /// was not sent), tried again at `until`, or given up when that is too late.
    async fn defer(
        &self,
        row: &Claimed,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        const FULL: &str = "the send budget (per phone or global) is full";
        if until >= row.give_up_at {
            if store::finish(&self.db, row, Status::Undeliverable, Some(FULL), now).await? {
                crate::metrics::code_undeliverable();
                tracing::error!(outbox_id = row.id, phone = %row.phone, "SMS undeliverable: {FULL}");
            }
            return Ok(());
        }
        store::put_back(&self.db, row, until, FULL).await?;
        tracing::warn!(outbox_id = row.id, phone = %row.phone, "SMS retry deferred: {FULL}");
        Ok(())
    }

    /// A failed send: retried later with backoff, or given up for good when the error is
    /// permanent or the next try would fall after the give-up time.
    async fn record_failure(&self, row: &Claimed, err: &SmsError) -> AppResult<()> {
        crate::metrics::code_delivery_failed();
        let now = self.clock.now();
        let retry_at = now + backoff(row.attempts);
        if err.is_permanent() || retry_at >= row.give_up_at {
            let error = Some(err.message());
            if store::finish(&self.db, row, Status::Undeliverable, error, now).await? {
                crate::metrics::code_undeliverable();
                tracing::error!(
                    outbox_id = row.id,
                    phone = %row.phone,
                    attempt = row.attempts,
                    error = %err,
                    "SMS undeliverable: giving up"
                );
            }
        } else {
            store::retry_later(&self.db, row, retry_at, err.message()).await?;
            tracing::warn!(
                outbox_id = row.id,
                phone = %row.phone,
                attempt = row.attempts,
                retry_in_secs = (retry_at - now).num_seconds(),
                error = %err,
                "SMS delivery failed; will retry"
            );
        }
        Ok(())
    }
}

/// 1 s after the first attempt, then 2, 4, 8 … up to [`MAX_BACKOFF_SECS`].
pub fn backoff(attempts: i32) -> TimeDelta {
    let doublings = attempts.saturating_sub(1).clamp(0, 16) as u32;
    TimeDelta::seconds((1i64 << doublings).min(MAX_BACKOFF_SECS))
}

/// A started [`Worker`].
pub struct RunningWorker {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl RunningWorker {
    /// Lets the worker finish the batch it holds (and one last pass), then waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(err) = self.handle.await {
            tracing::error!(error = %err, "the SMS outbox worker panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_up_to_the_cap() {
        let secs: Vec<i64> = (1..=9).map(|a| backoff(a).num_seconds()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(0).num_seconds(), 1);
        assert_eq!(backoff(i32::MAX).num_seconds(), MAX_BACKOFF_SECS);
    }
}
