//! The forwarder's counters, shared by its threads and read by `/status`
//! and `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};

/// A snapshot of the forwarder's counters.
///
/// Ledger: every event offered is eventually sent, dropped, skipped, or in a
/// failed batch (`failed_events`); `queue_bytes` is what waits now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardStats {
    /// Events the collector accepted.
    pub sent_events: u64,
    /// Requests the collector accepted (one per proxied request in `http_proxy`).
    pub sent_batches: u64,
    /// Requests the collector refused for good (4xx other than 408/429, 501).
    pub failed_batches: u64,
    /// Events in those refused requests.
    pub failed_events: u64,
    /// Attempts repeated after a connect error, a timeout, 408, 429 or 5xx.
    pub retries: u64,
    /// Events dropped: offered while the intake was full, pushed out of the
    /// full queue (oldest first), or still queued when shutdown gave up.
    pub dropped_events: u64,
    /// Bytes of encoded requests waiting now.
    pub queue_bytes: u64,
    /// `http_proxy`: data events whose payload is not an HTTP/1.x request.
    pub skipped_events: u64,
    /// `http_proxy`: requests that could not be parsed (not sent; the
    /// parser's message is in `last_error`).
    pub malformed_requests: u64,
    /// The most recent error (kept after later successes).
    pub last_error: Option<String>,
}

/// Live counters behind [`ForwardStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub sent_events: AtomicU64,
    pub sent_batches: AtomicU64,
    pub failed_batches: AtomicU64,
    pub failed_events: AtomicU64,
    pub retries: AtomicU64,
    pub dropped_events: AtomicU64,
    pub queue_bytes: AtomicU64,
    pub skipped_events: AtomicU64,
    pub malformed_requests: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    pub fn error(&self, e: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(e);
    }

    pub fn snapshot(&self) -> ForwardStats {
        ForwardStats {
            sent_events: self.sent_events.load(Relaxed),
            sent_batches: self.sent_batches.load(Relaxed),
            failed_batches: self.failed_batches.load(Relaxed),
            failed_events: self.failed_events.load(Relaxed),
            retries: self.retries.load(Relaxed),
            dropped_events: self.dropped_events.load(Relaxed),
            queue_bytes: self.queue_bytes.load(Relaxed),
            skipped_events: self.skipped_events.load(Relaxed),
            malformed_requests: self.malformed_requests.load(Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}
