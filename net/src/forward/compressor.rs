//! The compressor threads (gzip only): each takes a job — one request's
//! entries, in order and numbered — from the batcher, encodes the body,
//! compresses it into a gzip member and queues it for the sender.
//!
//! Compressing is most of a gzip'd batch's cost (deflate at level 1 costs
//! several times ordering and encoding the entries), so it runs beside the
//! batcher, on up to [`MAX_THREADS`] threads that each take the next job:
//! while one body is compressed the batcher orders the next, and a second
//! thread compresses another body. A job carries references to the loop
//! batches its entries are in, not copies: the compressor encodes the body
//! straight from them into its own buffer (so the uncompressed body is
//! written and compressed by the same CPU, in its cache) and lets the loop
//! batches go before it compresses. Bodies are queued in the order the
//! batcher made the jobs (a thread that finishes a body before the one
//! ahead of it waits for it), so the collector gets them in `seq` order.
//!
//! [`JOBS_PER_THREAD`] jobs per thread go round between the batcher and
//! the compressors, so when compression falls behind the batcher waits
//! (and the forwarder's intake fills, then drops with a count) rather than
//! buffering without bound.

use super::batcher::encode_entry;
use super::bodies::Bodies;
use super::config::ForwardFormat;
use super::gzip::GzipEncoder;
use super::queue::Outgoing;
use super::stats::Counters;
use crate::publish::Batch;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// Reads `buf` front to back, one byte a cache line. Entries are copied
/// in timestamp order, and entries of several CPUs interleave: jumping
/// around a batch that is not in this CPU's cache defeats the hardware
/// prefetcher, a front-to-back pass does not (in the `forward_pipeline`
/// bench, with batches out of the cache, the copy cost 18 µs a body
/// without this pass and 5 µs + 3 µs with it).
pub(crate) fn warm(buf: &[u8]) {
    let mut acc = 0u8;
    for x in buf.iter().step_by(64) {
        acc ^= *x;
    }
    std::hint::black_box(acc);
}

/// Compressor threads at most: two keep up with well over a gigabyte a
/// second of bodies while leaving the capture host's other CPUs to the
/// traffic it captures.
pub(crate) const MAX_THREADS: usize = 2;

/// Jobs in circulation per compressor thread: one being compressed, one
/// being filled by the batcher or waiting.
pub(crate) const JOBS_PER_THREAD: usize = 2;

/// How many compressor threads this host gets: one per CPU, at most
/// [`MAX_THREADS`]. On this project's 2-vCPU machine two threads carry
/// 1000-event bodies at 82 % of one raw deflate against 68 % for one
/// thread, and 100-event bodies at the same ~50 % (measured side by side
/// with `forward_pipeline`; there the requests' own cost — sender and
/// collector — is as large as the deflate). A thread costs nothing while
/// no body waits.
pub(crate) fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
}

/// `JobItem::src` of an entry whose bytes are in `Job::own`.
pub(crate) const OWN: u32 = u32::MAX;

/// Where one entry's bytes are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobItem {
    /// `OWN`, or an index into `Job::batches`.
    pub src: u32,
    pub start: u32,
    pub end: u32,
}

/// One request's entries, in order.
#[derive(Debug, Default)]
pub(crate) struct Job {
    pub items: Vec<JobItem>,
    /// The loop batches the entries are read from.
    pub batches: Vec<Arc<Batch>>,
    /// Entries the batcher had already copied out of their loop batches.
    pub own: Vec<u8>,
    /// The `seq` before the first entry's.
    pub seq: u64,
    /// The job's place in the batcher's order (0, 1, 2, ...).
    pub ticket: u64,
}

impl Job {
    fn entry(&self, it: &JobItem) -> &[u8] {
        let buf = if it.src == OWN {
            &self.own
        } else {
            &self.batches[it.src as usize].buf
        };
        &buf[it.start as usize..it.end as usize]
    }

    /// Brings the loop batches into this CPU's cache before the entries
    /// are copied in timestamp order (see [`warm`]).
    fn warm(&self) {
        for b in &self.batches {
            warm(&b.buf);
        }
    }

    /// Empties the job, letting its loop batches go.
    pub fn clear(&mut self) {
        self.items.clear();
        self.batches.clear();
        self.own.clear();
    }
}

/// The body pool and whose turn it is to queue a body.
struct Ordered {
    bodies: Bodies,
    /// The ticket of the next job to be queued.
    next: u64,
    /// Threads waiting for their turn (passing the turn wakes them only
    /// if there are any).
    waiting: u32,
}

/// What the compressor threads share.
pub(crate) struct Shared {
    jobs: Mutex<Receiver<Job>>,
    ordered: Mutex<Ordered>,
    /// Signalled when `next` moves on.
    turn: Condvar,
    /// Threads still running: the last one closes the queue.
    running: AtomicUsize,
}

impl Shared {
    pub fn new(jobs: Receiver<Job>, bodies: Bodies, threads: usize) -> Arc<Self> {
        Arc::new(Self {
            jobs: Mutex::new(jobs),
            ordered: Mutex::new(Ordered {
                bodies,
                next: 0,
                waiting: 0,
            }),
            turn: Condvar::new(),
            running: AtomicUsize::new(threads),
        })
    }

    fn ordered(&self) -> MutexGuard<'_, Ordered> {
        self.ordered.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for job `ticket`'s turn, lets `f` queue its body, and passes
    /// the turn on.
    fn in_turn(&self, ticket: u64, f: impl FnOnce(&mut Bodies)) {
        let mut g = self.ordered();
        while g.next != ticket {
            g.waiting += 1;
            g = self.turn.wait(g).unwrap_or_else(PoisonError::into_inner);
            g.waiting -= 1;
        }
        f(&mut g.bodies);
        g.next += 1;
        let wake = g.waiting > 0;
        drop(g);
        if wake {
            self.turn.notify_all();
        }
    }

    /// The next job; `None` once the batcher is gone and none is left.
    fn next(&self) -> Option<Job> {
        let rx = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        rx.recv().ok()
    }
}

/// One compressor thread (see the module docs).
pub(crate) struct Compressor {
    shared: Arc<Shared>,
    /// Returns emptied jobs to the batcher.
    back: SyncSender<Job>,
    format: ForwardFormat,
    counters: Arc<Counters>,
    gzip: GzipEncoder,
    /// The uncompressed body.
    raw: Vec<u8>,
}

impl Compressor {
    pub fn new(
        shared: Arc<Shared>,
        back: SyncSender<Job>,
        format: ForwardFormat,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            shared,
            back,
            format,
            counters,
            gzip: GzipEncoder::new(),
            raw: Vec::new(),
        }
    }

    /// Runs until the batcher is gone and every job it sent is queued;
    /// the last thread to finish closes the queue.
    pub fn run(mut self) {
        let shared = Arc::clone(&self.shared);
        let _running = Running(&shared);
        while let Some(mut job) = self.shared.next() {
            let mut turn = Turn {
                shared: &shared,
                counters: &self.counters,
                ticket: job.ticket,
                events: job.items.len() as u64,
                passed: false,
            };
            if !job.items.is_sorted_by_key(|it| (it.src, it.start)) {
                job.warm();
            }
            self.raw.clear();
            let mut events = 0u64;
            let mut seq = job.seq;
            for it in &job.items {
                seq += 1;
                if encode_entry(
                    self.format,
                    job.entry(it),
                    seq,
                    &mut self.raw,
                    &self.counters,
                ) {
                    events += 1;
                }
            }
            job.clear();
            // The batcher keeps its jobs; if it is gone, so is the need.
            let _ = self.back.try_send(job);
            if events == 0 {
                turn.pass(|_| {});
                continue;
            }
            let mut body = {
                let mut g = self.shared.ordered();
                g.bodies.needed(GzipEncoder::max_len(self.raw.len()));
                g.bodies.take()
            };
            let r = self.gzip.compress(&self.raw, &mut body);
            let counters = &self.counters;
            turn.pass(|b| match r {
                Ok(()) => b.enqueue(Outgoing::new(body, events)),
                Err(e) => {
                    Counters::add(&counters.dropped_events, events);
                    counters.error(format!("gzip: {e}"));
                    b.shelve(body);
                }
            });
        }
    }
}

/// A job's turn to queue its body. Passed on when dropped without having
/// been (the thread panicked): its events are counted as dropped and the
/// other threads, waiting for their turns, go on.
struct Turn<'a> {
    shared: &'a Shared,
    counters: &'a Counters,
    ticket: u64,
    events: u64,
    passed: bool,
}

impl Turn<'_> {
    fn pass(&mut self, f: impl FnOnce(&mut Bodies)) {
        self.passed = true;
        self.shared.in_turn(self.ticket, f);
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if !self.passed {
            Counters::add(&self.counters.dropped_events, self.events);
            self.counters
                .error("gzip: a compressor thread panicked".to_owned());
            self.shared.in_turn(self.ticket, |_| {});
        }
    }
}

/// Counts a compressor thread out when it ends, however it ends: the last
/// one closes the queue (the sender then stops once it is empty).
struct Running<'a>(&'a Shared);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.ordered().bodies.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::queue::SendQueue;
    use std::sync::mpsc::sync_channel;
    use std::time::{Duration, Instant};

    fn wait_for(mut done: impl FnMut() -> bool, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while !done() {
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// A thread that panics holding job 0's turn does not leave job 1's
    /// thread waiting: the turn passes on, job 0's events are counted as
    /// dropped, job 1's body is queued, and the last thread closes the queue.
    #[test]
    fn a_panicking_thread_passes_its_turn_on() {
        let counters = Arc::new(Counters::default());
        let queue = Arc::new(SendQueue::new(1 << 20, Arc::clone(&counters)));
        let (_jobs_tx, jobs_rx) = sync_channel(1);
        let (_recycle_tx, recycle_rx) = sync_channel(1);
        let bodies = Bodies::new(Arc::clone(&queue), Arc::clone(&counters), recycle_rx);
        let shared = Shared::new(jobs_rx, bodies, 2);
        let turn = |ticket: u64, events: u64, queue_it: bool| {
            let (shared, counters) = (Arc::clone(&shared), Arc::clone(&counters));
            std::thread::spawn(move || {
                let _running = Running(&shared);
                let mut t = Turn {
                    shared: &shared,
                    counters: &counters,
                    ticket,
                    events,
                    passed: false,
                };
                if !queue_it {
                    panic!("job {ticket} fails");
                }
                t.pass(|b| b.enqueue(Outgoing::new(vec![1; 10], events)));
            })
        };
        // Job 1's thread waits for job 0's turn first.
        let second = turn(1, 7, true);
        std::thread::sleep(Duration::from_millis(50));
        let first = turn(0, 5, false);
        assert!(first.join().is_err(), "job 0's thread panicked");
        // Fails (rather than hangs) if job 1's thread is still waiting.
        assert!(
            wait_for(|| second.is_finished(), Duration::from_secs(5)),
            "job 1's thread still waits for job 0's turn"
        );
        second
            .join()
            .expect("job 1 queued after job 0's turn passed");
        assert_eq!(counters.snapshot().dropped_events, 5);
        assert_eq!(
            counters.snapshot().last_error.as_deref(),
            Some("gzip: a compressor thread panicked")
        );
        assert_eq!(queue.pop().map(|o| o.events), Some(7));
        assert!(queue.pop().is_none(), "closed by the last thread");
    }
}
