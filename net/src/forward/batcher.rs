//! The batcher thread: copies the entries the forwarder wants out of the
//! loop's shared batches (releasing them at once), orders them by
//! timestamp, numbers them with the forwarder's `seq`, and encodes request
//! bodies — `LogBatch` or NDJSON, gzip'd if asked — or, for `http_proxy`,
//! one absolute-form request per captured HTTP request.
//!
//! Every buffer is reused: the pending store, the uncompressed body, and the
//! request bodies (returned by the sender after delivery, kept with room for
//! the largest body seen), so a steady stream of batches allocates nothing.

use super::config::{ForwardConfig, ForwardFormat};
use super::gzip::GzipEncoder;
use super::proxy::{Scheme, looks_like_request, write_absolute_form};
use super::queue::{Outgoing, SendQueue};
use super::stats::Counters;
use crate::entry::event_fields_of;
use crate::publish::{Batch, EntryMeta};
use rcapture_core::encode;
use rcapture_core::event::{EventKind, Module};
use rcapture_core::ndjson::write_ndjson_line;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;

/// Whether a module's captures are TLS plaintext (`https` for `http_proxy`).
pub fn is_tls_module(m: Module) -> bool {
    matches!(
        m,
        Module::Tls | Module::Gnutls | Module::Nss | Module::Gotls
    )
}

/// Whether the forwarder takes an entry: its module is forwarded and, for
/// `http_proxy`, it is a data event of a selected protocol (`https` = a
/// TLS module's capture, `http` = any other).
pub fn wants(cfg: &ForwardConfig, m: &EntryMeta) -> bool {
    if !cfg.modules.is_empty() && !cfg.modules.contains(&m.module) {
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
    start: u32,
    end: u32,
}

/// Entry bodies waiting for their batch.
#[derive(Debug, Default)]
struct Pending {
    buf: Vec<u8>,
    items: Vec<Item>,
    /// Compaction space (swapped with `buf`).
    spare: Vec<u8>,
    next_order: u64,
}

impl Pending {
    fn push(&mut self, body: &[u8], timestamp: i64, arrived: Instant) {
        let start = self.buf.len() as u32;
        self.buf.extend_from_slice(body);
        self.items.push(Item {
            timestamp,
            order: self.next_order,
            arrived,
            start,
            end: self.buf.len() as u32,
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
        &self.buf[it.start as usize..it.end as usize]
    }

    /// Keeps the items from `from` on (moving their bytes to the front).
    fn keep_from(&mut self, from: usize) {
        self.spare.clear();
        for it in &mut self.items[from..] {
            let start = self.spare.len() as u32;
            self.spare
                .extend_from_slice(&self.buf[it.start as usize..it.end as usize]);
            it.end = self.spare.len() as u32;
            it.start = start;
        }
        self.items.drain(..from);
        std::mem::swap(&mut self.buf, &mut self.spare);
    }
}

/// Request bodies kept for reuse (and the capacity of the channel that
/// returns them from the sender).
pub(crate) const POOL: usize = 16;

/// Body buffers made ready whenever bodies grow: the one the sender has in
/// flight and a queue of several behind it reuse buffers, not allocate.
const STOCK: usize = 8;

/// Batches' worth of entries the pending store has room for: loop batches
/// that arrive together (a burst, or while the thread was not running) up
/// to that size are taken without growing it.
const PENDING_BATCHES: usize = 4;

/// Body buffers up to this capacity are kept for reuse; a larger body's
/// buffer is freed after delivery (its allocation is small next to the
/// work of encoding it, and the pool's memory stays within `POOL` × this).
const POOLED_MAX: usize = 4 << 20;

/// See the module docs.
pub(crate) struct Batcher {
    cfg: ForwardConfig,
    rx: Receiver<Arc<Batch>>,
    queue: Arc<SendQueue>,
    counters: Arc<Counters>,
    recycled: Receiver<Vec<u8>>,
    /// Empty body buffers, each with room for `body_room` bytes.
    pool: Vec<Vec<u8>>,
    /// Room for the largest body so far, and some (up to `POOLED_MAX`):
    /// every pooled buffer is grown to it, so once the sizes are seen no
    /// body grows its buffer again.
    body_room: usize,
    pending: Pending,
    seq: u64,
    raw: Vec<u8>,
    gzip: GzipEncoder,
    evicted: Vec<Outgoing>,
}

impl Batcher {
    pub fn new(
        cfg: ForwardConfig,
        rx: Receiver<Arc<Batch>>,
        queue: Arc<SendQueue>,
        counters: Arc<Counters>,
        recycled: Receiver<Vec<u8>>,
    ) -> Self {
        Self {
            cfg,
            rx,
            queue,
            counters,
            recycled,
            pool: Vec::with_capacity(POOL),
            body_room: 0,
            pending: Pending::default(),
            seq: 0,
            raw: Vec::new(),
            gzip: GzipEncoder::new(),
            evicted: Vec::new(),
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
                self.take(&b, now);
                drop(b);
                // Batches that arrived together (from several workers) are
                // ordered together — up to one request's worth: a backlog
                // (the batcher was slow) is taken a request at a time, so
                // the pending store stays about one batch in size instead
                // of copying in the whole intake (up to every pool batch).
                while self.pending.items.len() < self.cfg.batch_size
                    && let Ok(b) = self.rx.try_recv()
                {
                    self.take(&b, now);
                }
            }
            self.flush(false);
        }
        self.flush(true);
        self.queue.close();
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

    fn take(&mut self, b: &Batch, now: Instant) {
        for (i, m) in b.entries.iter().enumerate() {
            if !wants(&self.cfg, m) {
                continue;
            }
            if self.cfg.format == ForwardFormat::HttpProxy {
                self.proxy(b.body(i), m.module);
            } else {
                self.pending.push(b.body(i), m.timestamp, now);
            }
        }
    }

    /// Sends full batches; with `all` (timeout or shutdown) also the rest.
    fn flush(&mut self, all: bool) {
        let n = self.pending.items.len();
        let due = self.deadline().is_some_and(|d| Instant::now() >= d);
        if n == 0 || (n < self.cfg.batch_size && !all && !due) {
            return;
        }
        // One worker's batch usually comes in order: checking is cheaper.
        let key = |it: &Item| (it.timestamp, it.order);
        if !self.pending.items.is_sorted_by_key(key) {
            self.pending.items.sort_unstable_by_key(key);
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

    /// An empty body buffer: a pooled one, or a new one with the usual room.
    fn body_buf(&mut self) -> Vec<u8> {
        while let Ok(b) = self.recycled.try_recv() {
            self.shelve(b);
        }
        self.pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.body_room))
    }

    /// Keeps a body buffer for reuse (see `body_room`).
    fn shelve(&mut self, mut b: Vec<u8>) {
        if self.pool.len() < POOL && b.capacity() <= POOLED_MAX {
            b.clear();
            b.reserve(self.body_room);
            self.pool.push(b);
        }
    }

    /// Notes the room a body needed. When it is more than the pooled
    /// buffers have, they grow to it with a quarter to spare (bodies of a
    /// steady stream vary a little: `seq` grows a byte now and then), the
    /// pool is stocked up, and the pending store grows to match.
    fn needed(&mut self, room: usize) {
        if room <= self.body_room || room > POOLED_MAX {
            return;
        }
        self.body_room = room.saturating_add(room / 4).min(POOLED_MAX);
        for b in &mut self.pool {
            b.reserve(self.body_room);
        }
        while self.pool.len() < STOCK {
            self.pool.push(Vec::with_capacity(self.body_room));
        }
        if self.cfg.format != ForwardFormat::HttpProxy {
            self.pending.reserve(
                PENDING_BATCHES * self.body_room,
                PENDING_BATCHES * self.cfg.batch_size,
            );
        }
    }

    /// Encodes pending items `from..to` as one request body.
    fn emit(&mut self, from: usize, to: usize) {
        let mut body = self.body_buf();
        let mut raw = std::mem::take(&mut self.raw);
        let out = if self.cfg.gzip { &mut raw } else { &mut body };
        out.clear();
        let mut events = 0u64;
        for it in &self.pending.items[from..to] {
            let entry = self.pending.body(it);
            match self.cfg.format {
                ForwardFormat::Json => match event_fields_of(entry) {
                    Ok(f) => write_ndjson_line(&f, self.seq + 1, out),
                    Err(e) => {
                        Counters::add(&self.counters.dropped_events, 1);
                        self.counters.error(format!("event entry unreadable: {e}"));
                        continue;
                    }
                },
                _ => {
                    let (prefix, n) = encode::seq_prefix(self.seq + 1);
                    encode::encode_batch_item_header(n + entry.len(), out);
                    out.extend_from_slice(&prefix[..n]);
                    out.extend_from_slice(entry);
                }
            }
            self.seq += 1;
            events += 1;
        }
        if self.cfg.gzip {
            self.needed(GzipEncoder::max_len(raw.len()));
            if let Err(e) = self.gzip.compress(&raw, &mut body) {
                Counters::add(&self.counters.dropped_events, events);
                self.counters.error(format!("gzip: {e}"));
                events = 0;
            }
        } else {
            self.needed(body.len());
        }
        self.raw = raw;
        if events > 0 {
            self.enqueue(Outgoing { body, events });
        } else {
            self.shelve(body);
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
        let mut rest = f.payload;
        while !rest.is_empty() {
            let mut body = self.body_buf();
            match write_absolute_form(rest, scheme, &self.cfg.headers, &mut body) {
                Ok(n) => {
                    rest = &rest[n..];
                    self.needed(body.len());
                    self.enqueue(Outgoing { body, events: 1 });
                }
                Err(e) => {
                    Counters::add(&self.counters.malformed_requests, 1);
                    self.counters.error(format!(
                        "http_proxy: pid {} {} {}: {e}",
                        f.pid, f.pname, f.uuid
                    ));
                    self.shelve(body);
                    return;
                }
            }
        }
    }

    fn enqueue(&mut self, o: Outgoing) {
        self.queue.push(o, &mut self.evicted);
        while let Some(old) = self.evicted.pop() {
            Counters::add(&self.counters.dropped_events, old.events);
            self.shelve(old.body);
        }
    }
}
