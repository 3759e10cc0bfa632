//! The output hub: takes the workers' batches and hands each one to the
//! outputs as peers — the forwarder, the event file and (when the server
//! runs) the WebSocket fan-out — then gives every batch no output holds any
//! more back to its worker's pool.
//!
//! With a listener the hub lives inside the server's loop thread (which
//! wakes on the publishers' `mio::Waker`); without one it runs alone on its
//! own thread, blocking on its channel ([`Hub::run`]).

use crate::eventfile::{EventFile, EventFileConfig};
use crate::forward::{ForwardConfig, Forwarder};
use crate::metrics::ForwardTotals;
use crate::publish::{Batch, BatchPoolConfig, PublishStats, Publisher, Wake};
use rcapture_core::event::EventKind;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::Duration;

/// What the hub feeds besides the WebSocket clients.
#[derive(Debug, Clone, Default)]
pub struct HubConfig {
    pub pool: BatchPoolConfig,
    /// Forwarding to a collector at start (changeable by `POST /config`).
    pub forward: Option<ForwardConfig>,
    /// Every event also written to a file.
    pub event_file: Option<EventFileConfig>,
}

/// Stops a hub running alone ([`Hub::run`]) from another thread.
#[derive(Debug, Clone)]
pub struct HubHandle {
    stop: Arc<AtomicBool>,
}

impl HubHandle {
    /// Asks the hub to deliver what its channel holds and return (within
    /// its wait, at most 100 ms).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Wakes nobody: a hub running alone blocks on its channel, which wakes it.
struct NoWake;

impl Wake for NoWake {
    fn wake(&self) {}
}

/// The workers' batches and the outputs they go to.
pub struct Hub {
    rx: Receiver<Batch>,
    returns: Vec<SyncSender<Batch>>,
    slots: Vec<Arc<Batch>>,
    pub(crate) publish: Arc<PublishStats>,
    /// The forwarder in use (replaced by `POST /config` `event_forward`).
    pub(crate) forwarder: Option<Forwarder>,
    /// The final counts of the forwarders `POST /config` replaced or disabled.
    pub(crate) forward_totals: ForwardTotals,
    /// `intake_batches` of every forwarder the hub or the API starts.
    pub(crate) forward_intake: usize,
    pub(crate) event_file: Option<EventFile>,
    /// Whether an output asks for packet events (the publishers encode
    /// them only then): the forwarder, or (set by the server's loop) a
    /// WebSocket client.
    pub(crate) packets_wanted: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("slots", &self.slots.len())
            .field("forwarding", &self.forwarder.is_some())
            .field("event_file", &self.event_file.is_some())
            .finish()
    }
}

impl Hub {
    /// Starts the forwarder and the event file; returns the hub and one
    /// publisher per worker, which calls `wake` after each batch.
    pub fn start(
        cfg: HubConfig,
        workers: usize,
        wake: Arc<dyn Wake>,
    ) -> io::Result<(Hub, Vec<Publisher>)> {
        let pool = cfg.pool;
        let (tx, rx) = sync_channel(workers.max(1) * pool.batches);
        let publish = Arc::new(PublishStats::default());
        let forward_packets = cfg
            .forward
            .as_ref()
            .is_some_and(|f| f.types.contains(&EventKind::Packet));
        let packets_wanted = Arc::new(AtomicBool::new(forward_packets));
        let mut returns = Vec::with_capacity(workers);
        let mut publishers = Vec::with_capacity(workers);
        for w in 0..workers {
            let (free_tx, free_rx) = sync_channel(pool.batches);
            for _ in 0..pool.batches {
                let _ = free_tx.send(Batch {
                    worker: w,
                    buf: Vec::with_capacity(pool.batch_bytes + 64 * 1024),
                    entries: Vec::with_capacity(pool.batch_entries),
                });
            }
            returns.push(free_tx);
            publishers.push(Publisher::new(
                w,
                tx.clone(),
                free_rx,
                Arc::clone(&wake),
                Arc::clone(&publish),
                Arc::clone(&packets_wanted),
                pool,
            ));
        }
        // Half of every worker's batches at most wait in the forwarder's
        // intake: the rest stay for the clients and the event file.
        let forward_intake =
            (pool.batches * returns.len() / 2).clamp(4, crate::forward::config::INTAKE_BATCHES);
        let forwarder = match cfg.forward {
            Some(mut f) => {
                f.intake_batches = forward_intake;
                Some(
                    Forwarder::start(f)
                        .map_err(|e| io::Error::other(format!("starting the forwarder: {e}")))?,
                )
            }
            None => None,
        };
        let event_file = match cfg.event_file {
            Some(f) => {
                let path = f.path.clone();
                Some(EventFile::start(f).map_err(|e| {
                    io::Error::new(e.kind(), format!("event file {}: {e}", path.display()))
                })?)
            }
            None => None,
        };
        let hub = Hub {
            rx,
            returns,
            // Every batch in flight comes from a worker pool, so this many
            // slots always suffice: the slot table never grows.
            slots: (0..workers.max(1) * pool.batches)
                .map(|_| Arc::new(empty_batch()))
                .collect(),
            publish,
            forwarder,
            forward_totals: ForwardTotals::default(),
            forward_intake,
            event_file,
            packets_wanted,
            stop: Arc::new(AtomicBool::new(false)),
        };
        Ok((hub, publishers))
    }

    /// A hub that runs on its own ([`Hub::run`]): no event loop to wake.
    pub fn standalone(cfg: HubConfig, workers: usize) -> io::Result<(Hub, Vec<Publisher>)> {
        Self::start(cfg, workers, Arc::new(NoWake))
    }

    /// A handle to stop [`Hub::run`].
    pub fn handle(&self) -> HubHandle {
        HubHandle {
            stop: Arc::clone(&self.stop),
        }
    }

    /// Runs alone until stopped or until every publisher is gone: blocks on
    /// the channel, hands each batch to the forwarder and the event file,
    /// and gives batches back as they are released (every 10 ms while an
    /// output holds one). Then shuts the outputs down (see [`Hub::finish`]).
    pub fn run(mut self) -> io::Result<()> {
        loop {
            let wait = Duration::from_millis(if self.holding() { 10 } else { 100 });
            match self.rx.recv_timeout(wait) {
                Ok(b) => {
                    self.deliver(b, &mut |_| {});
                    self.take(|_| {});
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.reclaim();
            if self.stop.load(Ordering::Acquire) {
                self.take(|_| {});
                break;
            }
        }
        self.finish();
        Ok(())
    }

    /// Takes every batch waiting in the channel and hands it to the
    /// forwarder, the event file and `fan_out`.
    pub fn take(&mut self, mut fan_out: impl FnMut(&Arc<Batch>)) {
        while let Ok(batch) = self.rx.try_recv() {
            self.deliver(batch, &mut fan_out);
        }
    }

    fn deliver(&mut self, batch: Batch, fan_out: &mut dyn FnMut(&Arc<Batch>)) {
        let slot = self.store(batch);
        let rc = &self.slots[slot];
        if let Some(f) = &self.forwarder {
            f.offer(rc);
        }
        if let Some(f) = &self.event_file {
            f.offer(rc);
        }
        fan_out(rc);
    }

    /// Slots an output still holds, and all slots.
    pub fn held(&self) -> (usize, usize) {
        let held = self
            .slots
            .iter()
            .filter(|s| Arc::strong_count(s) > 1 || !s.entries.is_empty())
            .count();
        (held, self.slots.len())
    }

    fn holding(&self) -> bool {
        self.slots.iter().any(|s| !s.entries.is_empty())
    }

    /// Puts a batch into a free slot (the slot's own storage is reused).
    fn store(&mut self, batch: Batch) -> usize {
        let free = self
            .slots
            .iter_mut()
            .position(|s| Arc::get_mut(s).is_some_and(|b| b.entries.is_empty()));
        match free {
            Some(i) => {
                if let Some(b) = Arc::get_mut(&mut self.slots[i]) {
                    *b = batch;
                }
                i
            }
            None => {
                self.slots.push(Arc::new(batch));
                self.slots.len() - 1
            }
        }
    }

    /// Returns every batch no output holds any more to its worker.
    pub fn reclaim(&mut self) {
        for s in &mut self.slots {
            if let Some(b) = Arc::get_mut(s)
                && !b.entries.is_empty()
            {
                let done = std::mem::replace(b, empty_batch());
                if let Some(tx) = self.returns.get(done.worker) {
                    // The worker's pool has room for every batch it owns.
                    let _ = tx.try_send(done);
                }
            }
        }
    }

    /// Tells the publishers whether to encode packet events: the
    /// forwarder asks for them, or `clients` does.
    pub(crate) fn want_packets(&self, clients: bool) {
        let forward = self
            .forwarder
            .as_ref()
            .is_some_and(|f| f.config().types.contains(&EventKind::Packet));
        self.packets_wanted
            .store(clients || forward, Ordering::Relaxed);
    }

    /// Events the publishers dropped (no free batch, channel full).
    pub fn publish_dropped(&self) -> u64 {
        self.publish.dropped.load(Ordering::Relaxed)
    }

    /// Waits for the forwarders `POST /config` replaced, shuts the
    /// forwarder (delivering for up to 5 s) and the event file down, and
    /// writes their ledgers to stderr.
    pub fn finish(mut self) {
        self.forward_totals.wait_retiring();
        if let Some(f) = self.forwarder.take() {
            self.forward_totals
                .retire(f.shutdown(Duration::from_secs(5)));
        }
        if let Some(s) = self.forward_totals.with(None) {
            eprintln!(
                "rcapture: forwarded {} events in {} batches; {} failed batches ({} events), {} retries, {} events dropped{}",
                s.sent_events,
                s.sent_batches,
                s.failed_batches,
                s.failed_events,
                s.retries,
                s.dropped_events,
                s.last_error
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            );
        }
        if let Some(f) = self.event_file.take() {
            match f.shutdown() {
                Ok(s) => eprintln!(
                    "rcapture: event file: {} events written ({} bytes, {} rotations), {} dropped",
                    s.written_events, s.bytes, s.files_rotated, s.dropped_events
                ),
                Err(e) => eprintln!("rcapture: event file: closing failed: {e}"),
            }
        }
    }
}

fn empty_batch() -> Batch {
    Batch {
        worker: usize::MAX,
        buf: Vec::new(),
        entries: Vec::new(),
    }
}
