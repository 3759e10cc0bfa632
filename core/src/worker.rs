//! Per-CPU workers: drain one ring, decode, join, filter, hand events to sinks.
//!
//! One worker thread per ring, pinned to that ring's CPU. The kernel side
//! suppresses per-record wakeups, so a worker polls with a short timeout and
//! drains everything available in one batch. After the probes are detached
//! the owner sets the stop flag; a worker then drains its ring to empty,
//! flushes open calls and its sinks, and returns — nothing captured is lost.

use crate::decode::{Record, decode};
use crate::event::{Clock, EventFields, EventKind, EventScratch, event_fields};
use crate::join::Reassembler;
use crate::ring::RecordRing;
use crossbeam_utils::CachePadded;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

/// Where a worker's events go (text, key log, WebSocket, forwarder...).
pub trait EventSink: Send {
    /// Takes one event; must not keep borrows of it.
    fn event(&mut self, ev: &EventFields<'_>, kind: EventKind);
    /// End of a drain batch: hand over whatever is buffered.
    fn flush(&mut self);
}

/// Filters that change while running (0 / `None` = any).
#[derive(Debug)]
pub struct LiveFilter {
    pid: AtomicU32,
    uid: AtomicU64,
}

impl LiveFilter {
    const ANY_UID: u64 = u64::MAX;

    /// A filter for `pid` and `uid`.
    pub fn new(pid: Option<u32>, uid: Option<u32>) -> Self {
        let f = Self {
            pid: AtomicU32::new(0),
            uid: AtomicU64::new(Self::ANY_UID),
        };
        f.set(pid, uid);
        f
    }

    /// Replaces both filters.
    pub fn set(&self, pid: Option<u32>, uid: Option<u32>) {
        self.pid.store(pid.unwrap_or(0), Relaxed);
        self.uid
            .store(uid.map_or(Self::ANY_UID, u64::from), Relaxed);
    }

    fn passes(&self, pid: u32, uid: u32) -> bool {
        let want_pid = self.pid.load(Relaxed);
        let want_uid = self.uid.load(Relaxed);
        (want_pid == 0 || want_pid == pid)
            && (want_uid == Self::ANY_UID || want_uid == u64::from(uid))
    }
}

/// Counters of one worker, summed by readers.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Raw records drained from the ring.
    pub records: AtomicU64,
    /// Records rejected by the decoder.
    pub decode_errors: AtomicU64,
    /// Events handed to the sinks.
    pub events: AtomicU64,
    /// Events dropped by the live filter.
    pub filtered: AtomicU64,
    /// Events whose call was cut (capture limit or a lost record).
    pub truncated_events: AtomicU64,
    /// Bytes cut from those calls.
    pub truncated_bytes: AtomicU64,
    /// Calls emitted with a gap (a record of the call was lost).
    pub incomplete_calls: AtomicU64,
    /// Records dropped because the first record of their call was lost
    /// (reassembly: no open call to join them to).
    pub orphan_records: AtomicU64,
    /// Payload bytes of those records.
    pub orphan_bytes: AtomicU64,
    /// Calls emitted before their last record because every reassembly
    /// slot was busy (the oldest open call goes out, with a gap if more of
    /// it comes).
    pub evicted_calls: AtomicU64,
}

/// Tuning of a worker.
#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    /// Capture limit per call (bytes).
    pub max_payload: usize,
    /// Calls that can be open at once in the reassembler.
    pub join_slots: usize,
    /// Poll timeout when the ring is empty (ms).
    pub poll_timeout_ms: i32,
    /// Pin the thread to the ring's CPU.
    pub pin: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            max_payload: 1 << 20,
            join_slots: 64,
            poll_timeout_ms: 5,
            pin: true,
        }
    }
}

struct Processor {
    join: Reassembler,
    scratch: EventScratch,
    clock: Clock,
    filter: Arc<LiveFilter>,
    sinks: Vec<Box<dyn EventSink>>,
    stats: Arc<CachePadded<WorkerStats>>,
    errors_shown: u32,
}

impl Processor {
    fn record(&mut self, raw: &[u8]) {
        self.stats.records.fetch_add(1, Relaxed);
        let rec = match decode(raw) {
            Ok(r) => r,
            Err(e) => {
                self.stats.decode_errors.fetch_add(1, Relaxed);
                if self.errors_shown < 10 {
                    self.errors_shown += 1;
                    eprintln!("rcapture: dropped a malformed record: {e}");
                }
                return;
            }
        };
        let Self {
            join,
            scratch,
            clock,
            filter,
            sinks,
            stats,
            ..
        } = self;
        join.push(rec, &mut |r: &Record<'_>, truncated| {
            emit(r, truncated, clock, filter, scratch, sinks, stats);
        });
    }

    fn finish_batch(&mut self) {
        let j = self.join.stats();
        self.stats.incomplete_calls.store(j.incomplete, Relaxed);
        self.stats.orphan_records.store(j.orphan_records, Relaxed);
        self.stats.orphan_bytes.store(j.orphan_bytes, Relaxed);
        self.stats.evicted_calls.store(j.evicted, Relaxed);
        for s in &mut self.sinks {
            s.flush();
        }
    }

    fn finish(&mut self) {
        let Self {
            join,
            scratch,
            clock,
            filter,
            sinks,
            stats,
            ..
        } = self;
        join.flush_all(&mut |r: &Record<'_>, truncated| {
            emit(r, truncated, clock, filter, scratch, sinks, stats);
        });
        self.finish_batch();
    }
}

fn emit(
    r: &Record<'_>,
    truncated: u32,
    clock: &Clock,
    filter: &LiveFilter,
    scratch: &mut EventScratch,
    sinks: &mut [Box<dyn EventSink>],
    stats: &WorkerStats,
) {
    let h = r.header();
    if !filter.passes(h.pid, h.uid) {
        stats.filtered.fetch_add(1, Relaxed);
        return;
    }
    if truncated > 0 {
        stats.truncated_events.fetch_add(1, Relaxed);
        stats
            .truncated_bytes
            .fetch_add(u64::from(truncated), Relaxed);
    }
    let kind = EventKind::of(r.kind());
    let ev = event_fields(r, truncated, clock, scratch);
    stats.events.fetch_add(1, Relaxed);
    for s in sinks.iter_mut() {
        s.event(&ev, kind);
    }
}

/// A worker bound to one ring.
pub struct Worker<R: RecordRing> {
    ring: R,
    proc: Processor,
    config: WorkerConfig,
}

impl<R: RecordRing> std::fmt::Debug for Worker<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("cpu", &self.ring.cpu())
            .finish()
    }
}

impl<R: RecordRing> Worker<R> {
    /// A worker draining `ring` into `sinks`.
    pub fn new(
        ring: R,
        config: WorkerConfig,
        clock: Clock,
        filter: Arc<LiveFilter>,
        sinks: Vec<Box<dyn EventSink>>,
    ) -> Self {
        Self {
            ring,
            proc: Processor {
                join: Reassembler::new(config.join_slots, config.max_payload),
                scratch: EventScratch::new(),
                clock,
                filter,
                sinks,
                stats: Arc::new(CachePadded::new(WorkerStats::default())),
                errors_shown: 0,
            },
            config,
        }
    }

    /// The worker's counters (shared, live).
    pub fn stats(&self) -> Arc<CachePadded<WorkerStats>> {
        Arc::clone(&self.proc.stats)
    }

    /// Drains what is in the ring now; returns the number of records.
    pub fn drain_once(&mut self) -> usize {
        let proc = &mut self.proc;
        let n = self.ring.drain(&mut |raw| proc.record(raw));
        if n > 0 {
            proc.finish_batch();
        }
        n
    }

    /// Runs until `stop` is set, then drains to empty and flushes.
    pub fn run(mut self, stop: &AtomicBool) {
        if self.config.pin
            && let Err(e) = crate::sys::pin_to_cpu(self.ring.cpu())
        {
            eprintln!(
                "rcapture: warning: cannot pin worker to CPU {}: {e}",
                self.ring.cpu()
            );
        }
        loop {
            let stopping = stop.load(std::sync::atomic::Ordering::Acquire);
            if self.drain_once() == 0 {
                if stopping {
                    break;
                }
                crate::sys::wait_readable(self.ring.poll_fd(), self.config.poll_timeout_ms);
            }
        }
        self.proc.finish();
    }
}
