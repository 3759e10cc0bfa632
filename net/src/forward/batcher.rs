//! The batcher thread: takes the entries the forwarder wants from the
//! loop's shared batches (holding them only for the round that takes them,
//! see [`Pending`]), orders them by timestamp, numbers them with the
//! forwarder's `seq`, and encodes request bodies — `LogBatch` or NDJSON,
//! handed to the compressor thread when gzip is on — or, for `http_proxy`,
//! one absolute-form request per captured HTTP request.
//!
//! Every buffer is reused: the pending store, the uncompressed bodies, and
//! the request bodies (returned by the sender after delivery, kept with
//! room for the largest body seen), so a steady stream of batches
//! allocates nothing.

use super::bodies::Bodies;
use super::compressor::{Job, JobItem, OWN, warm};
use super::config::{ForwardConfig, ForwardFormat};
use super::proxy::{Scheme, looks_like_request, write_absolute_form};
use super::queue::Outgoing;
use super::stats::Counters;
use crate::entry::event_fields_of;
use crate::publish::{Batch, EntryMeta};
use rcapture_core::encode;
use rcapture_core::event::{EventKind, Module};
use rcapture_core::ndjson::write_ndjson_line;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::Instant;

/// Whether a module's captures are TLS plaintext (`https` for `http_proxy`).
pub fn is_tls_module(m: Module) -> bool {
    matches!(
        m,
        Module::Tls | Module::Gnutls | Module::Nss | Module::Gotls
    )
}

/// Whether the forwarder takes an entry: its module and kind are forwarded
/// (packets only when `types` names them) and, for
/// `http_proxy`, it is a data event of a selected protocol (`https` = a
/// TLS module's capture, `http` = any other).
pub fn wants(cfg: &ForwardConfig, m: &EntryMeta) -> bool {
    if !cfg.modules.is_empty() && !cfg.modules.contains(&m.module) {
        return false;
    }
    if !crate::filter::kind_wanted(&cfg.types, m.kind) {
        return false;
    }
    if cfg.format != ForwardFormat::HttpProxy {
        return true;
    }
    let proto = if is_tls_module(m.module) {
        "https"
    } else {
        "http"
    };
    m.kind == EventKind::Data
        && (cfg.protocols.is_empty() || cfg.protocols.iter().any(|p| p == proto))
}

#[derive(Debug, Clone, Copy)]
struct Item {
    timestamp: i64,
    /// Arrival order: ties in timestamp keep it.
    order: u64,
    arrived: Instant,
    /// Where the bytes are: `OWN`, or an index into `Pending::held`.
    src: u32,
    start: u32,
    end: u32,
}

/// Entries waiting for their batch.
///
/// Entries are read where the workers encoded them: the loop batches taken
/// in one round are held (`held`) while the round's full requests are
/// encoded straight from them. What a round leaves over is copied into the
/// store's own buffer and the loop batches are let go, so a loop batch is
/// never held past the round that took it (the workers' pools get their
/// batches back at once), and each entry of a busy stream is copied once.
#[derive(Debug, Default)]
struct Pending {
    buf: Vec<u8>,
    items: Vec<Item>,
    /// Compaction space (swapped with `buf`).
    spare: Vec<u8>,
    /// The loop batches taken this round.
    held: Vec<Arc<Batch>>,
    next_order: u64,
}

impl Pending {
    fn push(&mut self, src: u32, start: u32, end: u32, timestamp: i64, arrived: Instant) {
        self.items.push(Item {
            timestamp,
            order: self.next_order,
            arrived,
            src,
            start,
            end,
        });
        self.next_order += 1;
    }

    /// Room for `bytes` of entries in `items` entries without growing
    /// (in both buffers: compaction swaps them).
    fn reserve(&mut self, bytes: usize, items: usize) {
        for b in [&mut self.buf, &mut self.spare] {
            b.reserve(bytes.saturating_sub(b.len()));
        }
        self.items.reserve(items.saturating_sub(self.items.len()));
    }

    fn body(&self, it: &Item) -> &[u8] {
        let buf = if it.src == OWN {
            &self.buf
        } else {
            &self.held[it.src as usize].buf
        };
        &buf[it.start as usize..it.end as usize]
    }

    /// Keeps the items from `from` on, their bytes moved to the front of
    /// the own buffer, and lets the loop batches go.
    fn keep_from(&mut self, from: usize) {
        self.spare.clear();
        for it in &mut self.items[from..] {
            let buf = if it.src == OWN {
                &self.buf
            } else {
                &self.held[it.src as usize].buf
            };
            move_item(it, buf, &mut self.spare);
        }
        self.items.drain(..from);
        std::mem::swap(&mut self.buf, &mut self.spare);
        self.held.clear();
    }

    /// Copies the entries still read from loop batches into the own buffer
    /// (after those already there) and lets the loop batches go.
    fn release(&mut self) {
        if self.held.is_empty() {
            return;
        }
        for it in &mut self.items {
            if it.src == OWN {
                continue;
            }
            move_item(it, &self.held[it.src as usize].buf, &mut self.buf);
        }
        self.held.clear();
    }
}

/// Appends an item's bytes (in `from`) to the own buffer `to` and points
/// the item there.
fn move_item(it: &mut Item, from: &[u8], to: &mut Vec<u8>) {
    let start = to.len() as u32;
    to.extend_from_slice(&from[it.start as usize..it.end as usize]);
    *it = Item {
        src: OWN,
        start,
        end: to.len() as u32,
        ..*it
    };
}

/// Batches' worth of entries the pending store has room for: what a round
/// leaves over, and the entries of a slow stream waiting for the timeout.
const PENDING_BATCHES: usize = 4;

/// Loop batches one round holds at most: a request's worth, one entry
/// each (usually one or two hold them all).
fn held_capacity(batch_size: usize) -> usize {
    batch_size.min(1024)
}

/// Where the batcher's bodies go.
pub(crate) enum Out {
    /// Final bodies, encoded and queued for the sender by the batcher.
    Direct(Bodies),
    /// Jobs for the compressor threads.
    Gzip(Jobs),
}

/// The batcher's side of the compressor jobs (see `compressor`).
pub(crate) struct Jobs {
    tx: SyncSender<Job>,
    back: Receiver<Job>,
    free: Vec<Job>,
    /// Per held loop batch, its index in the job being filled.
    map: Vec<u32>,
    /// Entry bytes of the largest job so far, and some.
    room: usize,
    /// The next job's ticket.
    ticket: u64,
}

impl Jobs {
    /// `jobs` jobs going round: to the compressors over `tx`, back over
    /// `back`, for a forwarder sending `batch_size` events a request.
    pub fn new(tx: SyncSender<Job>, back: Receiver<Job>, jobs: usize, batch_size: usize) -> Self {
        // All made now with room for a request's entries and loop batches
        // (and their bytes as soon as the sizes are seen), not on first use.
        let held = held_capacity(batch_size);
        Self {
            tx,
            back,
            free: (0..jobs)
                .map(|_| Job {
                    items: Vec::with_capacity(batch_size),
                    batches: Vec::with_capacity(held),
                    ..Job::default()
                })
                .collect(),
            map: Vec::with_capacity(held),
            room: 0,
            ticket: 0,
        }
    }

    /// An empty job: a free one, or else the next one a compressor
    /// returns (waiting for it). `None` if the compressors are gone.
    fn take(&mut self) -> Option<Job> {
        while let Ok(j) = self.back.try_recv() {
            self.free.push(j);
        }
        match self.free.pop() {
            Some(j) => Some(j),
            None => self.back.recv().ok(),
        }
    }

    /// Empties `job` and gives it room for the largest job so far (its own
    /// bytes are at most its entries'), `items` entries and `held` loop
    /// batches, so once the sizes are seen no job grows.
    fn make_room(&self, job: &mut Job, items: usize, held: usize) {
        job.clear();
        job.own.reserve(self.room);
        job.items.reserve(items);
        job.batches.reserve(held);
    }
}

/// Appends one entry to a request body in the forwarder's format: a
/// `LogBatch` item with its `seq`, or an NDJSON line. Returns false (the
/// event counted as dropped, the error kept) if the entry cannot be read.
pub(crate) fn encode_entry(
    format: ForwardFormat,
    entry: &[u8],
    seq: u64,
    out: &mut Vec<u8>,
    counters: &Counters,
) -> bool {
    match format {
        ForwardFormat::Json => match event_fields_of(entry) {
            Ok(f) => write_ndjson_line(&f, seq, out),
            Err(e) => {
                Counters::add(&counters.dropped_events, 1);
                counters.error(format!("event entry unreadable: {e}"));
                return false;
            }
        },
        _ => {
            let (prefix, n) = encode::seq_prefix(seq);
            encode::encode_batch_item_header(n + entry.len(), out);
            out.extend_from_slice(&prefix[..n]);
            out.extend_from_slice(entry);
        }
    }
    true
}

/// See the module docs.
pub(crate) struct Batcher {
    cfg: ForwardConfig,
    rx: Receiver<Arc<Batch>>,
    counters: Arc<Counters>,
    out: Out,
    pending: Pending,
    seq: u64,
}

impl Batcher {
    pub fn new(
        cfg: ForwardConfig,
        rx: Receiver<Arc<Batch>>,
        counters: Arc<Counters>,
        out: Out,
    ) -> Self {
        let held = held_capacity(cfg.batch_size);
        Self {
            cfg,
            rx,
            counters,
            out,
            pending: Pending {
                held: Vec::with_capacity(held),
                ..Pending::default()
            },
            seq: 0,
        }
    }

    /// Runs until the intake is closed, then flushes what is pending.
    pub fn run(mut self) {
        loop {
            let first = match self.deadline() {
                Some(d) => match self
                    .rx
                    .recv_timeout(d.saturating_duration_since(Instant::now()))
                {
                    Ok(b) => Some(b),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.rx.recv() {
                    Ok(b) => Some(b),
                    Err(_) => break,
                },
            };
            if let Some(b) = first {
                let now = Instant::now();
                self.take(b, now);
                // Batches that arrived together (from several workers) are
                // ordered together — up to one request's worth: a backlog
                // (the batcher was slow) is taken a request at a time, so
                // the pending store stays about one batch in size instead
                // of holding the whole intake (up to every pool batch).
                while self.pending.items.len() < self.cfg.batch_size
                    && let Ok(b) = self.rx.try_recv()
                {
                    self.take(b, now);
                }
            }
            self.flush(false);
        }
        self.flush(true);
        match self.out {
            Out::Direct(b) => b.close(),
            // The compressor closes the queue once it has queued the last body.
            Out::Gzip(r) => drop(r),
        }
    }

    /// When the oldest pending event's batch is due.
    fn deadline(&self) -> Option<Instant> {
        self.pending
            .items
            .iter()
            .map(|it| it.arrived)
            .min()
            .map(|t| t + self.cfg.batch_timeout)
    }

    fn take(&mut self, b: Arc<Batch>, now: Instant) {
        let proxy = self.cfg.format == ForwardFormat::HttpProxy;
        let src = self.pending.held.len() as u32;
        let mut any = false;
        for (i, m) in b.entries.iter().enumerate() {
            if !wants(&self.cfg, m) {
                continue;
            }
            if proxy {
                self.proxy(b.body(i), m.module);
            } else {
                self.pending.push(src, m.start, m.end, m.timestamp, now);
                any = true;
            }
        }
        if any {
            self.pending.held.push(b);
        }
    }

    /// Sends full batches; with `all` (timeout or shutdown) also the rest.
    /// Lets the round's loop batches go either way.
    fn flush(&mut self, all: bool) {
        let n = self.pending.items.len();
        let due = self.deadline().is_some_and(|d| Instant::now() >= d);
        if n == 0 || (n < self.cfg.batch_size && !all && !due) {
            self.pending.release();
            return;
        }
        // One worker's batch usually comes in order: checking is cheaper.
        let key = |it: &Item| (it.timestamp, it.order);
        if !self.pending.items.is_sorted_by_key(key) {
            self.pending.items.sort_unstable_by_key(key);
            if matches!(self.out, Out::Direct(_)) {
                // Entries are about to be read out of order (compressor
                // threads do this for their own jobs).
                for b in &self.pending.held {
                    warm(&b.buf);
                }
            }
        }
        let size = self.cfg.batch_size;
        let mut from = 0;
        while n - from >= size || (from < n && (all || due)) {
            let to = (from + size).min(n);
            self.emit(from, to);
            from = to;
        }
        self.pending.keep_from(from);
    }

    /// Encodes pending items `from..to` as one request body, or hands
    /// them to a compressor thread. Their `seq`s are numbered in order
    /// (an entry that cannot be encoded leaves a gap, and is counted).
    fn emit(&mut self, from: usize, to: usize) {
        let seq = self.seq;
        self.seq += (to - from) as u64;
        let bodies = match &mut self.out {
            Out::Direct(b) => b,
            Out::Gzip(jobs) => {
                let Some(mut job) = jobs.take() else {
                    // The compressor threads are gone (they panicked).
                    Counters::add(&self.counters.dropped_events, (to - from) as u64);
                    self.counters
                        .error("gzip: the compressor threads stopped".to_owned());
                    return;
                };
                let items = &self.pending.items[from..to];
                let bytes: usize = items.iter().map(|it| (it.end - it.start) as usize).sum();
                if bytes > jobs.room {
                    jobs.room = bytes + bytes / 4;
                    for j in &mut jobs.free {
                        j.own.reserve(jobs.room);
                    }
                    // The pending store grows with the bodies (`PENDING_BATCHES`).
                    self.pending.reserve(
                        PENDING_BATCHES * jobs.room,
                        PENDING_BATCHES * self.cfg.batch_size,
                    );
                }
                let held = self.pending.held.capacity();
                jobs.map.reserve(held);
                jobs.make_room(&mut job, self.cfg.batch_size, held);
                fill_job(&mut job, seq, &self.pending, from, to, &mut jobs.map);
                job.ticket = jobs.ticket;
                if let Err(e) = jobs.tx.send(job) {
                    // Nobody waits for this ticket: the threads are gone.
                    Counters::add(&self.counters.dropped_events, (to - from) as u64);
                    self.counters
                        .error("gzip: the compressor threads stopped".to_owned());
                    let mut job = e.0;
                    job.clear();
                    jobs.free.push(job);
                } else {
                    jobs.ticket += 1;
                }
                return;
            }
        };
        let mut out = bodies.take();
        let mut events = 0u64;
        for (k, it) in self.pending.items[from..to].iter().enumerate() {
            let entry = self.pending.body(it);
            if encode_entry(
                self.cfg.format,
                entry,
                seq + 1 + k as u64,
                &mut out,
                &self.counters,
            ) {
                events += 1;
            }
        }
        if bodies.needed(out.len()) && self.cfg.format != ForwardFormat::HttpProxy {
            // The pending store grows with the bodies (`PENDING_BATCHES`).
            let room = bodies.room();
            self.pending.reserve(
                PENDING_BATCHES * room,
                PENDING_BATCHES * self.cfg.batch_size,
            );
        }
        if events > 0 {
            bodies.enqueue(Outgoing::new(out, events));
        } else {
            bodies.shelve(out);
        }
    }

    /// Rewrites one captured event's HTTP request(s) for the proxy.
    fn proxy(&mut self, entry: &[u8], module: Module) {
        let Ok(f) = event_fields_of(entry) else {
            Counters::add(&self.counters.skipped_events, 1);
            return;
        };
        let scheme = if is_tls_module(module) {
            Scheme::Https
        } else {
            Scheme::Http
        };
        if !looks_like_request(f.payload) {
            Counters::add(&self.counters.skipped_events, 1);
            return;
        }
        // `http_proxy` bodies are the requests as they are (never gzip'd).
        let Out::Direct(bodies) = &mut self.out else {
            return;
        };
        let mut rest = f.payload;
        while !rest.is_empty() {
            let mut body = bodies.take();
            match write_absolute_form(rest, scheme, &self.cfg.headers, &mut body) {
                Ok(n) => {
                    rest = &rest[n..];
                    bodies.needed(body.len());
                    bodies.enqueue(Outgoing::new(body, 1));
                }
                Err(e) => {
                    Counters::add(&self.counters.malformed_requests, 1);
                    self.counters.error(format!(
                        "http_proxy: pid {} {} {}: {e}",
                        f.pid, f.pname, f.uuid
                    ));
                    bodies.shelve(body);
                    return;
                }
            }
        }
    }
}

/// Fills `job` with pending items `from..to`: references to the loop
/// batches they are in (each batch once), the bytes of those already in
/// the pending store's own buffer copied.
fn fill_job(job: &mut Job, seq: u64, p: &Pending, from: usize, to: usize, map: &mut Vec<u32>) {
    job.clear();
    job.seq = seq;
    map.clear();
    map.resize(p.held.len(), OWN);
    for it in &p.items[from..to] {
        if it.src == OWN {
            let start = job.own.len() as u32;
            job.own
                .extend_from_slice(&p.buf[it.start as usize..it.end as usize]);
            job.items.push(JobItem {
                src: OWN,
                start,
                end: job.own.len() as u32,
            });
        } else {
            let m = &mut map[it.src as usize];
            if *m == OWN {
                *m = job.batches.len() as u32;
                job.batches.push(Arc::clone(&p.held[it.src as usize]));
            }
            job.items.push(JobItem {
                src: *m,
                start: it.start,
                end: it.end,
            });
        }
    }
}
