//! The worker side of the event server: encode events into pooled batches.
//!
//! Each worker owns a [`Publisher`] (an [`EventSink`]). Events are encoded
//! once, as `LogEntry` bodies without `seq`, back to back in a [`Batch`]
//! buffer with one [`EntryMeta`] per entry; at the end of a drain batch (or
//! when full) the batch goes to the event loop through a bounded queue and
//! the loop is woken. Batches come from a per-worker pool and return to it
//! once every client has written them. If the pool or the queue is
//! exhausted the worker never waits: the events are dropped and counted.

use rcapture_core::encode;
use rcapture_core::event::{EventFields, EventKind, Module};
use rcapture_core::worker::EventSink;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};

/// What the loop needs to know of an entry without decoding it.
#[derive(Debug, Clone, Copy)]
pub struct EntryMeta {
    /// Byte range of the encoded `LogEntry` body in [`Batch::buf`].
    pub start: u32,
    pub end: u32,
    pub module: Module,
    pub kind: EventKind,
    pub pid: u32,
    pub uid: u32,
    /// Unix-epoch nanoseconds of the event.
    pub timestamp: i64,
    /// `Event.length`.
    pub payload_len: u32,
}

/// Encoded entries of one worker, handed over together.
#[derive(Debug)]
pub struct Batch {
    /// Which worker's pool the batch returns to.
    pub worker: usize,
    pub buf: Vec<u8>,
    pub entries: Vec<EntryMeta>,
}

impl Batch {
    /// The encoded body of entry `i`.
    pub fn body(&self, i: usize) -> &[u8] {
        let m = &self.entries[i];
        &self.buf[m.start as usize..m.end as usize]
    }
}

/// Counters of the publishers (shared by all workers).
#[derive(Debug, Default)]
pub struct PublishStats {
    /// Events encoded and handed to the loop.
    pub published: AtomicU64,
    /// Events dropped because no batch buffer was free or the queue was full.
    pub dropped: AtomicU64,
}

/// Wakes the event loop (a `mio::Waker`).
pub trait Wake: Send + Sync {
    fn wake(&self);
}

impl Wake for mio::Waker {
    fn wake(&self) {
        // A failed wake only delays delivery until the loop's next timeout.
        let _ = mio::Waker::wake(self);
    }
}

/// Wakes the loop at most once per round: a worker that hands over a batch
/// while an earlier wake is still pending (the loop has not yet started the
/// round that takes it) makes no `eventfd` write, and the loop is not woken
/// again for batches it will take anyway.
pub struct CoalescedWake {
    inner: Arc<dyn Wake>,
    pending: std::sync::atomic::AtomicBool,
}

impl CoalescedWake {
    pub fn new(inner: Arc<dyn Wake>) -> Self {
        Self {
            inner,
            pending: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The loop is about to take the batches: the next batch wakes it again.
    /// (A batch handed over before this is taken by the round that follows.)
    pub fn start_round(&self) {
        self.pending
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// A wake is pending: batches wait that no round has taken yet.
    pub fn is_pending(&self) -> bool {
        self.pending.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Wakes the loop whatever is pending (stopping).
    pub fn force(&self) {
        self.pending
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.wake();
    }
}

impl std::fmt::Debug for CoalescedWake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoalescedWake")
            .field("pending", &self.is_pending())
            .finish()
    }
}

impl Wake for CoalescedWake {
    fn wake(&self) {
        // The batch is in the channel before this swap; if the swap sees a
        // wake pending, the loop's `start_round` comes after it and the
        // round that follows takes the batch.
        if !self.pending.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.inner.wake();
        }
    }
}

/// Sizes of the batch pools.
#[derive(Debug, Clone, Copy)]
pub struct BatchPoolConfig {
    /// Batches per worker.
    pub batches: usize,
    /// A batch is handed over once it holds this many bytes.
    pub batch_bytes: usize,
    /// ... or this many entries.
    pub batch_entries: usize,
}

impl Default for BatchPoolConfig {
    fn default() -> Self {
        Self {
            batches: 64,
            batch_bytes: 256 * 1024,
            batch_entries: 1024,
        }
    }
}

/// One worker's sink into the event server.
pub struct Publisher {
    worker: usize,
    tx: SyncSender<Batch>,
    free: Receiver<Batch>,
    current: Option<Batch>,
    waker: Arc<dyn Wake>,
    stats: Arc<PublishStats>,
    /// Packet events are encoded only while an output asks for them.
    packets: Arc<AtomicBool>,
    pool: BatchPoolConfig,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("worker", &self.worker)
            .finish()
    }
}

impl Publisher {
    pub(crate) fn new(
        worker: usize,
        tx: SyncSender<Batch>,
        free: Receiver<Batch>,
        waker: Arc<dyn Wake>,
        stats: Arc<PublishStats>,
        packets: Arc<AtomicBool>,
        pool: BatchPoolConfig,
    ) -> Self {
        Self {
            worker,
            tx,
            free,
            current: None,
            waker,
            stats,
            packets,
            pool,
        }
    }

    fn hand_over(&mut self) {
        let Some(b) = self.current.take() else { return };
        if b.entries.is_empty() {
            self.current = Some(b);
            return;
        }
        let n = b.entries.len() as u64;
        match self.tx.try_send(b) {
            Ok(()) => {
                self.stats.published.fetch_add(n, Relaxed);
                self.waker.wake();
            }
            Err(TrySendError::Full(mut b)) | Err(TrySendError::Disconnected(mut b)) => {
                self.stats.dropped.fetch_add(n, Relaxed);
                b.buf.clear();
                b.entries.clear();
                self.current = Some(b);
            }
        }
    }
}

impl EventSink for Publisher {
    fn event(&mut self, ev: &EventFields<'_>, kind: EventKind) {
        if kind == EventKind::Packet && !self.packets.load(Relaxed) {
            return; // no output asks for packets (see `crate::filter::kind_wanted`)
        }
        if self.current.is_none() {
            match self.free.try_recv() {
                Ok(mut b) => {
                    b.buf.clear();
                    b.entries.clear();
                    self.current = Some(b);
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => {
                    self.stats.dropped.fetch_add(1, Relaxed);
                    return;
                }
            }
        }
        let Some(b) = self.current.as_mut() else {
            return;
        };
        let start = b.buf.len();
        let need = encode::event_entry_len(ev);
        b.buf.reserve(need);
        encode::encode_event_entry(ev, &mut b.buf);
        let Some(module) = Module::from_name(ev.module) else {
            b.buf.truncate(start);
            self.stats.dropped.fetch_add(1, Relaxed);
            return;
        };
        b.entries.push(EntryMeta {
            start: start as u32,
            end: b.buf.len() as u32,
            module,
            kind,
            pid: ev.pid as u32,
            uid: ev.uid,
            timestamp: ev.timestamp,
            payload_len: ev.length(),
        });
        if b.buf.len() >= self.pool.batch_bytes || b.entries.len() >= self.pool.batch_entries {
            self.hand_over();
        }
    }

    fn flush(&mut self) {
        self.hand_over();
    }
}
