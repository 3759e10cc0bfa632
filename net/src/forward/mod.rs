//! Forwarding of events to collectors (WIRE.md §5).
//!
//! The event loop [`offer`](Forwarder::offer)s every batch it receives; the
//! forwarder never makes it wait. A batcher thread orders and numbers the
//! entries, one sender thread per request in flight (`concurrency`, two by
//! default) delivers them, and with gzip one or two compressor threads
//! encode and compress the bodies:
//!
//! ```text
//! loop ──offer (bounded, full = dropped)──► batcher ──SendQueue (bytes-bounded,
//!                                           order, seq,   oldest pushed out,
//!                                           encode    │   shared backoff)──► senders ──► collector
//!                                                     │                    ▲   keep-alive, one
//!                                                     └─► compressors ─────┘   connection each
//!                                                         (gzip: encode + deflate, 1–2 threads)
//! ```
//!
//! Every event is accounted for in [`ForwardStats`].

mod batcher;
mod bodies;
pub mod client;
mod compressor;
pub mod config;
pub mod gzip;
pub mod proxy;
mod queue;
pub mod response;
pub mod retire;
pub mod retry;
mod sender;
mod stats;
pub mod tls;

pub use config::{CollectorUrl, DEFAULT_CONCURRENCY, ForwardConfig, ForwardFormat};
pub use stats::ForwardStats;

use crate::publish::Batch;
use batcher::{Batcher, Jobs, Out, wants};
use bodies::Bodies;
use client::{Canceller, HttpClient};
use compressor::{Compressor, JOBS_PER_THREAD};
use queue::SendQueue;
use sender::Sender;
use stats::Counters;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running forwarder: its batcher and sender threads.
pub struct Forwarder {
    cfg: ForwardConfig,
    intake: Option<SyncSender<Arc<Batch>>>,
    counters: Arc<Counters>,
    queue: Arc<SendQueue>,
    batcher: Option<JoinHandle<()>>,
    /// With gzip (not `http_proxy`).
    compressors: Vec<JoinHandle<()>>,
    /// `concurrency` of them, each with its connection.
    senders: Vec<JoinHandle<()>>,
    cancellers: Vec<Canceller>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("url", &self.cfg.url.raw)
            .field("format", &self.cfg.format)
            .finish()
    }
}

impl Forwarder {
    /// Starts the threads (the connection opens with the first request).
    /// Fails on a TLS setup error (`ca_file`, no system roots) or when a
    /// thread cannot be started.
    pub fn start(cfg: ForwardConfig) -> Result<Forwarder, String> {
        let tls = if cfg.url.tls {
            Some(tls::client_config(cfg.ca_file.as_deref())?)
        } else {
            None
        };
        let counters = Arc::new(Counters::default());
        let queue = Arc::new(SendQueue::new(cfg.queue_bytes, Arc::clone(&counters)));
        let (intake_tx, intake_rx) = sync_channel(cfg.intake_batches.max(1));
        // Bounded (its slots are allocated once): an unbounded channel
        // allocates a block every few dozen sends.
        let (recycle_tx, recycle_rx) = sync_channel(bodies::POOL);
        let bodies = Bodies::new(Arc::clone(&queue), Arc::clone(&counters), recycle_rx);
        let mut senders = Vec::with_capacity(cfg.concurrency);
        let mut cancellers = Vec::with_capacity(cfg.concurrency);
        for i in 0..cfg.concurrency.max(1) {
            let client = HttpClient::new(&cfg.url, tls.clone(), cfg.io_timeout);
            cancellers.push(client.canceller());
            let sender = Sender::new(
                cfg.clone(),
                client,
                Arc::clone(&queue),
                Arc::clone(&counters),
                recycle_tx.clone(),
            );
            match spawn(&format!("rcapture-fwd-send{i}"), move || sender.run()) {
                Ok(t) => senders.push(t),
                Err(e) => {
                    queue.abort();
                    join_all(senders);
                    return Err(e);
                }
            }
        }
        let (out, compressors) = if cfg.gzip && cfg.format != ForwardFormat::HttpProxy {
            let n = compressor::threads();
            let jobs = n * JOBS_PER_THREAD;
            let (job_tx, job_rx) = sync_channel(jobs);
            let (back_tx, back_rx) = sync_channel(jobs);
            let shared = compressor::Shared::new(job_rx, bodies, n);
            let mut threads = Vec::with_capacity(n);
            for i in 0..n {
                let c = Compressor::new(
                    Arc::clone(&shared),
                    back_tx.clone(),
                    cfg.format,
                    Arc::clone(&counters),
                );
                match spawn(&format!("rcapture-gzip-{i}"), move || c.run()) {
                    Ok(t) => threads.push(t),
                    Err(e) => {
                        // Dropping the job sender lets the started ones end.
                        drop(job_tx);
                        join_all(threads);
                        queue.abort();
                        join_all(senders);
                        return Err(e);
                    }
                }
            }
            (
                Out::Gzip(Jobs::new(job_tx, back_rx, jobs, cfg.batch_size)),
                threads,
            )
        } else {
            (Out::Direct(bodies), Vec::new())
        };
        let batcher = Batcher::new(cfg.clone(), intake_rx, Arc::clone(&counters), out);
        let batcher = match spawn("rcapture-fwd-batch", move || batcher.run()) {
            Ok(b) => b,
            Err(e) => {
                // Dropping the batcher let the compressors end.
                queue.abort();
                join_all(compressors);
                join_all(senders);
                return Err(e);
            }
        };
        Ok(Forwarder {
            cfg,
            intake: Some(intake_tx),
            counters,
            queue,
            batcher: Some(batcher),
            compressors,
            senders,
            cancellers,
        })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &ForwardConfig {
        &self.cfg
    }

    /// Hands a batch to the forwarder without waiting: when its intake is
    /// full, the entries it would have taken are counted as dropped.
    pub fn offer(&self, batch: &Arc<Batch>) {
        let n = batch.entries.iter().filter(|m| wants(&self.cfg, m)).count() as u64;
        if n == 0 {
            return;
        }
        let Some(tx) = &self.intake else { return };
        match tx.try_send(Arc::clone(batch)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                Counters::add(&self.counters.dropped_events, n);
            }
        }
    }

    /// The counters now.
    pub fn stats(&self) -> ForwardStats {
        self.counters.snapshot()
    }

    /// Flushes the pending events into a last batch and waits up to `wait`
    /// for the queue to be delivered; what is still queued (or in flight)
    /// then is dropped and counted.
    pub fn shutdown(mut self, wait: Duration) -> ForwardStats {
        self.stop(wait);
        self.counters.snapshot()
    }

    fn stop(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        // Closing the intake makes the batcher flush and close the queue.
        self.intake = None;
        if let Some(b) = self.batcher.take() {
            let _ = b.join();
        }
        // The batcher gone, the compressors queue what they have and end.
        join_all(self.compressors.drain(..));
        while !self.senders.iter().all(JoinHandle::is_finished) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if !self.senders.iter().all(JoinHandle::is_finished) {
            self.abort_queue();
            for c in &self.cancellers {
                c.cancel();
            }
        }
        join_all(self.senders.drain(..));
        self.abort_queue();
    }

    fn abort_queue(&self) {
        for o in self.queue.abort() {
            Counters::add(&self.counters.dropped_events, o.events);
        }
    }
}

/// Waits for threads to end.
fn join_all(threads: impl IntoIterator<Item = JoinHandle<()>>) {
    for t in threads {
        let _ = t.join();
    }
}

/// Starts a named forwarder thread.
fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| format!("cannot start the forwarder's {name} thread: {e}"))
}

impl Drop for Forwarder {
    /// Stops without waiting for delivery (use [`Forwarder::shutdown`] to wait).
    fn drop(&mut self) {
        self.stop(Duration::ZERO);
    }
}
