//! A replaced forwarder shutting down on a thread of its own, so that the
//! event loop that replaced it does not wait for its bounded flush.

use super::Forwarder;
use super::stats::{Counters, ForwardStats};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A forwarder being shut down in the background: its counters can be read
/// meanwhile (they only grow) and are final once [`Retiring::is_done`].
#[derive(Debug)]
pub struct Retiring {
    counters: Arc<Counters>,
    thread: Option<JoinHandle<ForwardStats>>,
    /// The final counts, if the thread could not be started (shut down inline).
    done: Option<ForwardStats>,
}

impl Retiring {
    /// Starts `f`'s [`Forwarder::shutdown`] (waiting up to `wait` for
    /// delivery) on a new thread; if no thread can be started, shuts down
    /// here.
    pub fn start(f: Forwarder, wait: Duration) -> Self {
        let counters = Arc::clone(&f.counters);
        let slot = Arc::new(std::sync::Mutex::new(Some(f)));
        let theirs = Arc::clone(&slot);
        let spawned = std::thread::Builder::new()
            .name("rcapture-forward-retire".into())
            .spawn(move || {
                let f = theirs.lock().ok().and_then(|mut g| g.take());
                f.map(|f| f.shutdown(wait)).unwrap_or_default()
            });
        match spawned {
            Ok(t) => Self {
                counters,
                thread: Some(t),
                done: None,
            },
            Err(_) => {
                let f = slot.lock().ok().and_then(|mut g| g.take());
                let done = f.map(|f| f.shutdown(wait));
                Self {
                    counters,
                    thread: None,
                    done,
                }
            }
        }
    }

    /// The counters now (final once done).
    pub fn stats(&self) -> ForwardStats {
        match &self.done {
            Some(s) => s.clone(),
            None => self.counters.snapshot(),
        }
    }

    /// Whether the shutdown has ended.
    pub fn is_done(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the shutdown to end; the final counts.
    pub fn wait(mut self) -> ForwardStats {
        if let Some(t) = self.thread.take()
            && let Ok(s) = t.join()
        {
            return s;
        }
        self.stats()
    }
}
