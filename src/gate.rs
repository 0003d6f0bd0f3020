//! What lets requests in: the GraphQL concurrency limit (`MAX_CONCURRENT_REQUESTS`, requests
//! beyond it are shed by `http::shed`) and the drain flag SIGTERM raises (`/readyz` answers 503
//! while it is up, so balancers stop sending before the listener closes).

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Gate {
    /// `None` when the limit is off (`MAX_CONCURRENT_REQUESTS=0`).
    permits: Option<Arc<Semaphore>>,
    limit: usize,
    draining: AtomicBool,
}

/// A place among the requests served at once; given back when dropped.
pub struct Admitted(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl Gate {
    pub fn new(max_concurrent_requests: usize) -> Self {
        let permits = (max_concurrent_requests < Semaphore::MAX_PERMITS)
            .then(|| Arc::new(Semaphore::new(max_concurrent_requests)));
        Self {
            permits,
            limit: max_concurrent_requests,
            draining: AtomicBool::new(false),
        }
    }

    /// A place for one more request, or `None` when `MAX_CONCURRENT_REQUESTS` are in already.
    /// Never waits: a full server answers at once instead of queueing.
    pub fn try_admit(&self) -> Option<Admitted> {
        match &self.permits {
            None => Some(Admitted(None)),
            Some(permits) => permits
                .clone()
                .try_acquire_owned()
                .ok()
                .map(|permit| Admitted(Some(permit))),
        }
    }

    /// Requests holding a place now (0 when the limit is off).
    pub fn in_flight(&self) -> usize {
        match &self.permits {
            None => 0,
            Some(permits) => self.limit - permits.available_permits(),
        }
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}
