//! One client connection: HTTP requests, then (after an upgrade) a WebSocket
//! stream with its filter, `seq`, bounded send queue and vectored writes.
//!
//! A queued entry normally points into the worker batch it was encoded in,
//! shared with every other consumer ([`Arc<Batch>`]); the batch goes back
//! to its worker's pool once nobody holds it. So that a client that stops
//! reading cannot keep the pool from the others, a client's queue may point
//! into at most `share` distinct batches (given by the server with each
//! offer): before it would point into one more, the entries of the oldest
//! batch it holds are copied into the client's own bounded buffer (its
//! spill), which releases that batch. Spilled entries are always the oldest
//! of the queue, so the spill is a FIFO of bytes. When the spill has no
//! room left either, the new entry is dropped for this client alone
//! ([`DropReason::Share`]), as when its queue is full. Every client's
//! spill also draws its memory from one server-wide [`SpillBudget`], so
//! many lagging clients together cannot copy more than it holds.

use crate::filter::ClientFilter;
use crate::publish::Batch;
use crate::ws::{self, Deflate};
use mio::net::TcpStream;
use rcapture_core::encode;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Largest per-message header: frame header + `seq` prefix.
const ITEM_HDR: usize = ws::MAX_HEADER + encode::MAX_SEQ_PREFIX;
/// Items written per `writev`.
const IOV_ITEMS: usize = 256;
/// Bytes of small event frames a client's staged buffer may hold: while its
/// queue is empty (it keeps up), an entry is copied there, header, `seq`
/// and body back to back, instead of being queued as a pointer into its
/// batch, so that one plain `write` per loop round carries every frame
/// (no per-entry iovec, reference count or queue slot). Beyond, or once
/// something is queued, entries are queued as before.
pub const COPY_BYTES: usize = 128 * 1024;
/// Copied frames a staged buffer tracks until they are written whole.
const COPY_FRAMES: usize = 2048;
/// Bytes of entries the loop compresses per round for all permessage-deflate
/// clients together: each gets an equal part (at least one entry per round);
/// what it would compress beyond in that round is dropped for it alone
/// ([`DropReason::Deflate`]). Compression is the loop's costliest per-client
/// work; bounded, it cannot keep the loop from taking the workers' batches,
/// so the forwarder, the event file and the other clients get every event.
pub const DEFLATE_ROUND_BYTES: usize = 128 * 1024;
/// Smallest spill allocation.
const SPILL_MIN: usize = 64 * 1024;
/// How long an empty spill keeps its memory after its last use.
pub const SPILL_KEEP: std::time::Duration = std::time::Duration::from_secs(10);
/// Lingering close (as nginx's): once the last response of a connection
/// the server closes is written, its side is shut down and what the client
/// still sends (a body it wrote before reading the 413) is read and
/// discarded, up to this many bytes ...
pub const LINGER_BYTES: usize = 16 << 20;
/// ... or until this long has passed, so that the client reads the
/// response instead of a reset.
pub const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Where the body of a queued entry is.
#[derive(Debug)]
enum Body {
    /// In a batch shared with the other consumers.
    Shared { batch: Arc<Batch>, idx: u32 },
    /// Copied into the client's spill: the next `len` bytes after the
    /// bodies of the spilled items before it.
    Spilled { len: u32 },
}

/// One queued event entry: its body and this client's header.
#[derive(Debug)]
pub struct Item {
    body: Body,
    hdr: [u8; ITEM_HDR],
    hdr_len: u8,
}

impl Item {
    fn body_len(&self) -> usize {
        match &self.body {
            Body::Shared { batch, idx } => batch.body(*idx as usize).len(),
            Body::Spilled { len } => *len as usize,
        }
    }

    fn len(&self) -> usize {
        self.hdr_len as usize + self.body_len()
    }

    /// Whether the body is shared, in `batch`.
    fn in_batch(&self, batch: &Arc<Batch>) -> bool {
        matches!(&self.body, Body::Shared { batch: b, .. } if Arc::ptr_eq(b, batch))
    }
}

/// Bounds of a client's send queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    pub frames: usize,
    pub bytes: usize,
}

/// Why an entry was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueue {
    Queued,
    /// Queue full (slow client).
    Full,
    /// The client holds its share of the batch pool and its spill is full
    /// (a slow client too).
    Share,
    /// Over the client's `max_rate`.
    RateLimited,
    /// Over the client's part of the round's compression work.
    Deflate,
    /// The client does not want it.
    Filtered,
}

/// Why an event entry numbered for a client (it has a `seq`) was not
/// written to it. Each is counted per client and seen as a `seq` gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Its send queue was full (a slow client).
    QueueFull,
    /// It held its share of the workers' batch pool and its spill was full
    /// (a slow client, whose queue's bounds are not reached yet).
    Share,
    /// Over its `max_rate`.
    MaxRate,
    /// Still queued when the connection went: the peer left, the server
    /// closed it (too slow, protocol error), or the server stopped.
    Closed,
    /// A permessage-deflate client whose share of the loop's compression
    /// work for this round ([`DEFLATE_ROUND_BYTES`]) was spent.
    Deflate,
}

impl DropReason {
    /// Every reason, in the order of [`ClientCounts::dropped`].
    pub const ALL: [DropReason; 5] = [
        Self::QueueFull,
        Self::Share,
        Self::MaxRate,
        Self::Closed,
        Self::Deflate,
    ];

    /// The name used as `reason` label and JSON key.
    pub fn name(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::Share => "share",
            Self::MaxRate => "max_rate",
            Self::Closed => "closed",
            Self::Deflate => "deflate",
        }
    }
}

/// The event entries of one client (or summed over clients). Ledger: `seq`
/// = `sent` + queued + dropped (all reasons).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCounts {
    /// Entries numbered for the client: they passed its filter.
    pub seq: u64,
    /// Entries written to its socket (or compressed for it).
    pub sent: u64,
    /// Entries dropped, by reason (indexed as [`DropReason::ALL`]).
    pub dropped: [u64; 5],
    /// Entries copied out of a shared batch into the client's spill.
    pub spilled: u64,
}

impl ClientCounts {
    /// Dropped for one reason.
    pub fn dropped_for(&self, r: DropReason) -> u64 {
        self.dropped[r as usize]
    }

    /// Dropped, all reasons.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    fn drop_for(&mut self, r: DropReason, n: u64) {
        self.dropped[r as usize] += n;
    }

    /// Adds another client's counts.
    pub fn add(&mut self, o: &ClientCounts) {
        self.seq += o.seq;
        self.sent += o.sent;
        for (a, b) in self.dropped.iter_mut().zip(o.dropped) {
            *a += b;
        }
        self.spilled += o.spilled;
    }
}

/// Bytes all clients' spills may hold together: each spill takes its
/// memory from here before it grows and gives it back when it is freed.
#[derive(Debug)]
pub struct SpillBudget {
    limit: usize,
    used: AtomicUsize,
}

impl SpillBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Takes `n` bytes if they fit under the limit.
    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.limit)
            })
            .is_ok()
    }

    /// Takes `n` bytes whatever the limit (an allocation that came out
    /// larger than asked for).
    fn charge(&self, n: usize) {
        self.used.fetch_add(n, Ordering::AcqRel);
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// Bytes the spills hold now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// The WebSocket side of a connection.
#[derive(Debug)]
pub struct WsStream {
    /// The client's name in `/status` and `/metrics` (`PEER#ID`).
    pub name: String,
    pub filter: ClientFilter,
    pub counts: ClientCounts,
    queue: VecDeque<Item>,
    queue_bytes: usize,
    /// Bytes of the front item already written.
    partial: usize,
    /// Bodies of the spilled items, in queue order.
    spill: VecDeque<u8>,
    /// The spilled items: always the front of `queue`.
    spilled_items: usize,
    /// Distinct batches the shared items point into (each batch's items
    /// are consecutive in the queue: batches are offered whole, in order).
    runs: usize,
    /// Most bytes the spill may hold.
    spill_limit: usize,
    /// Where the spill's memory comes from: it holds the spill's capacity.
    budget: Arc<SpillBudget>,
    /// When entries were last copied into the spill: its memory is kept for
    /// [`SPILL_KEEP`] after that, so a client that lags now and then does
    /// not allocate it again each time.
    spill_used_at: Instant,
    limits: QueueLimits,
    pub full_since: Option<Instant>,
    rate_window: Option<Instant>,
    rate_count: u32,
    pub deflate: Option<Deflate>,
    /// Bytes it may still compress this round (see [`DEFLATE_ROUND_BYTES`]).
    deflate_left: usize,
    /// Entries copied into the connection's staged bytes, not yet written
    /// whole (counted as queued; `sent` once written).
    copied: usize,
    zbuf: Vec<u8>,
    pub heartbeats: i64,
    pub next_heartbeat: Instant,
    /// A fragmented client message being assembled.
    pub assembly: crate::ws::message::Assembly,
    /// Why the connection is being closed, once it is.
    pub closing: Option<&'static str>,
}

impl WsStream {
    /// A stream whose spill may hold `spill_bytes` (at most the queue's
    /// bytes), taken from `budget`.
    pub fn new(
        name: String,
        filter: ClientFilter,
        limits: QueueLimits,
        spill_bytes: usize,
        budget: Arc<SpillBudget>,
        deflate: bool,
        now: Instant,
    ) -> Self {
        Self {
            name,
            filter,
            counts: ClientCounts::default(),
            queue: VecDeque::with_capacity(limits.frames),
            queue_bytes: 0,
            partial: 0,
            spill: VecDeque::new(),
            spilled_items: 0,
            runs: 0,
            spill_limit: spill_bytes.min(limits.bytes),
            budget,
            spill_used_at: now,
            limits,
            full_since: None,
            rate_window: None,
            rate_count: 0,
            deflate: deflate.then(Deflate::default),
            deflate_left: DEFLATE_ROUND_BYTES,
            copied: 0,
            zbuf: Vec::new(),
            heartbeats: 0,
            next_heartbeat: now,
            assembly: Default::default(),
            closing: None,
        }
    }

    /// Offers entry `idx` of `batch`; `staged` receives compressed frames.
    /// The queue may then point into at most `share` (at least 1) batches.
    pub fn offer(
        &mut self,
        batch: &Arc<Batch>,
        idx: usize,
        staged: &mut Staged,
        now: Instant,
        share: usize,
    ) -> Enqueue {
        if !self.filter.passes(&batch.entries[idx]) {
            return Enqueue::Filtered;
        }
        self.counts.seq += 1;
        if self.filter.max_rate > 0 {
            match self.rate_window {
                Some(t) if now.duration_since(t).as_secs() < 1 => {}
                _ => {
                    self.rate_window = Some(now);
                    self.rate_count = 0;
                }
            }
            if self.rate_count >= self.filter.max_rate {
                self.counts.drop_for(DropReason::MaxRate, 1);
                return Enqueue::RateLimited;
            }
            self.rate_count += 1;
        }
        let body = batch.body(idx);
        let (prefix, plen) = encode::seq_prefix(self.counts.seq);
        let msg_len = plen + body.len();
        let pending = self.queue_bytes + staged.pending();
        if self.queue.len() >= self.limits.frames || pending + msg_len > self.limits.bytes {
            self.counts.drop_for(DropReason::QueueFull, 1);
            self.full_since.get_or_insert(now);
            return Enqueue::Full;
        }
        if let Some(d) = self.deflate.as_mut() {
            if self.deflate_left == 0 {
                self.counts.drop_for(DropReason::Deflate, 1);
                return Enqueue::Deflate;
            }
            self.deflate_left = self.deflate_left.saturating_sub(msg_len);
            self.zbuf.clear();
            d.compress(&[&prefix[..plen], body], &mut self.zbuf);
            let mut h = [0u8; ws::MAX_HEADER];
            let n = ws::frame_header(ws::OP_BINARY, true, self.zbuf.len(), &mut h);
            staged.buf.extend_from_slice(&h[..n]);
            staged.buf.extend_from_slice(&self.zbuf);
            self.counts.sent += 1;
            self.queued_one();
            return Enqueue::Queued;
        }
        let mut h = [0u8; ws::MAX_HEADER];
        let n = ws::frame_header(ws::OP_BINARY, false, msg_len, &mut h);
        if self.queue.is_empty() && staged.copy_frame(&[&h[..n], &prefix[..plen], body]) {
            self.copied += 1;
            self.queued_one();
            return Enqueue::Queued;
        }
        if !self.queue.back().is_some_and(|b| b.in_batch(batch)) {
            let share = share.max(1);
            if self.runs >= share {
                self.spill_used_at = now;
            }
            while self.runs >= share && self.spill_oldest_run() {}
            if self.runs >= share {
                self.counts.drop_for(DropReason::Share, 1);
                self.full_since.get_or_insert(now);
                return Enqueue::Share;
            }
            self.runs += 1;
        }
        let mut hdr = [0u8; ITEM_HDR];
        hdr[..n].copy_from_slice(&h[..n]);
        hdr[n..n + plen].copy_from_slice(&prefix[..plen]);
        let item = Item {
            body: Body::Shared {
                batch: Arc::clone(batch),
                idx: idx as u32,
            },
            hdr,
            hdr_len: (n + plen) as u8,
        };
        self.queue_bytes += item.len();
        self.queue.push_back(item);
        self.queued_one();
        Enqueue::Queued
    }

    /// Counts the entries of `batch` this client wants as numbered and
    /// dropped for `reason`, without queueing any.
    pub fn drop_batch(&mut self, batch: &Batch, reason: DropReason) {
        for m in &batch.entries {
            if self.filter.passes(m) {
                self.counts.seq += 1;
                self.counts.drop_for(reason, 1);
            }
        }
    }

    /// An entry was queued: a client whose queue is less than half full is
    /// no longer stuck (the slow-client deadline starts again at its next
    /// drop).
    fn queued_one(&mut self) {
        if self.queue.len() < self.limits.frames / 2 {
            self.full_since = None;
        }
    }

    /// Copies the entries of the oldest batch the queue points into (right
    /// after the spilled items) into the spill while they fit. Returns true
    /// if that batch is released (all its entries copied).
    fn spill_oldest_run(&mut self) -> bool {
        let Self {
            queue,
            spill,
            spilled_items,
            runs,
            counts,
            spill_limit,
            budget,
            ..
        } = self;
        let run = match queue.get(*spilled_items).map(|i| &i.body) {
            Some(Body::Shared { batch, .. }) => Arc::as_ptr(batch),
            // No shared item: nothing to release (and no run to count).
            _ => {
                *runs = 0;
                return false;
            }
        };
        while let Some(item) = queue.get_mut(*spilled_items) {
            let Body::Shared { batch, idx } = &item.body else {
                break;
            };
            if !std::ptr::eq(Arc::as_ptr(batch), run) {
                break;
            }
            let body = batch.body(*idx as usize);
            let need = spill.len() + body.len();
            if need > *spill_limit {
                // Its batch stays held; the rest is copied once the client
                // has written some of the spill.
                return false;
            }
            let cap = spill.capacity();
            if need > cap {
                let mut want = (cap * 2).max(SPILL_MIN).min(*spill_limit).max(need);
                // Short of the doubling, the budget may still hold what
                // this entry needs. If not, the server-wide budget is
                // spent: as if this spill were full (the batch stays held;
                // a new entry is dropped with reason `share`).
                if !budget.take(want - cap) {
                    if want > need && budget.take(need - cap) {
                        want = need;
                    } else {
                        return false;
                    }
                }
                spill.reserve_exact(want - spill.len());
                // At least `want`; more if the allocator gave more.
                budget.charge(spill.capacity() - want);
            }
            spill.extend(body);
            let len = body.len() as u32;
            item.body = Body::Spilled { len };
            *spilled_items += 1;
            counts.spilled += 1;
        }
        *runs -= 1;
        true
    }

    /// Bytes the connection's staged buffer may hold with `cap` bytes of
    /// replies unread: a deflate client's compressed event frames (bounded
    /// by its queue) come on top.
    pub fn staged_allowance(&self, cap: usize) -> usize {
        let events = if self.deflate.is_some() {
            self.limits.bytes
        } else {
            0
        };
        cap.saturating_add(events)
    }

    /// Entries waiting (queued, or copied and not yet written whole).
    pub fn queued(&self) -> usize {
        self.queue.len() + self.copied
    }

    /// `n` copied entries were written whole.
    fn copied_written(&mut self, n: usize) {
        self.copied -= n;
        self.counts.sent += n as u64;
    }

    /// Bytes of the spill now held (allocated, taken from the budget).
    pub fn spill_capacity(&self) -> usize {
        self.spill.capacity()
    }

    /// Frees the spill's memory when it holds nothing and has not been used
    /// for [`SPILL_KEEP`] (a client that caught up).
    pub fn release_spill(&mut self, now: Instant) {
        if self.spill.is_empty()
            && self.spill.capacity() > 0
            && now.duration_since(self.spill_used_at) >= SPILL_KEEP
        {
            self.budget.give(self.spill.capacity());
            self.spill = VecDeque::new();
        }
    }

    fn pop_front(&mut self) {
        let Some(item) = self.queue.pop_front() else {
            return;
        };
        self.queue_bytes -= item.len();
        match &item.body {
            Body::Spilled { len } => {
                self.spill.drain(..*len as usize);
                self.spilled_items -= 1;
            }
            Body::Shared { batch, .. } => {
                if !self.queue.front().is_some_and(|f| f.in_batch(batch)) {
                    self.runs -= 1;
                }
            }
        }
    }

    fn pop_back(&mut self) {
        let Some(item) = self.queue.pop_back() else {
            return;
        };
        self.queue_bytes -= item.len();
        match &item.body {
            Body::Spilled { len } => {
                self.spill.truncate(self.spill.len() - *len as usize);
                self.spilled_items -= 1;
            }
            Body::Shared { batch, .. } => {
                if !self.queue.back().is_some_and(|b| b.in_batch(batch)) {
                    self.runs -= 1;
                }
            }
        }
    }

    /// Drops everything queued (closing) except a frame already partly
    /// written, which must be finished before any other frame (a close) can
    /// follow on the wire. The dropped entries are counted; returns how many.
    pub fn clear(&mut self) -> u64 {
        let keep = usize::from(self.partial > 0);
        let mut n = 0;
        while self.queue.len() > keep {
            self.pop_back();
            n += 1;
        }
        self.counts.drop_for(DropReason::Closed, n);
        n
    }

    /// The connection is gone: everything still queued, a partly written
    /// frame too, is dropped and counted.
    pub fn abandon(&mut self) {
        let n = (self.queue.len() + self.copied) as u64;
        self.copied = 0;
        while !self.queue.is_empty() {
            self.pop_back();
        }
        self.partial = 0;
        self.counts.drop_for(DropReason::Closed, n);
    }

    fn write_items<W: Write>(&mut self, sock: &mut W) -> io::Result<usize> {
        let mut iov = [IoSlice::new(&[]); 3 * IOV_ITEMS];
        let mut n = 0;
        let (s1, s2) = self.spill.as_slices();
        // Where the next spilled body starts in the spill.
        let mut at = 0;
        for (i, item) in self.queue.iter().take(IOV_ITEMS).enumerate() {
            let (b1, b2) = match &item.body {
                Body::Shared { batch, idx } => (batch.body(*idx as usize), &[][..]),
                Body::Spilled { len } => {
                    let r = ring_range(s1, s2, at, *len as usize);
                    at += *len as usize;
                    r
                }
            };
            let mut skip = if i == 0 { self.partial } else { 0 };
            for part in [&item.hdr[..item.hdr_len as usize], b1, b2] {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                iov[n] = IoSlice::new(&part[skip..]);
                n += 1;
                skip = 0;
            }
        }
        let mut written = sock.write_vectored(&iov[..n])?;
        let total = written;
        while written > 0 {
            let Some(front) = self.queue.front() else {
                break;
            };
            let rest = front.len() - self.partial;
            if written >= rest {
                written -= rest;
                self.pop_front();
                self.partial = 0;
                self.counts.sent += 1;
            } else {
                self.partial += written;
                written = 0;
            }
        }
        Ok(total)
    }
}

/// Starts a round of batches: every permessage-deflate client may compress
/// its equal part of [`DEFLATE_ROUND_BYTES`] in it (a client with less left
/// than one entry still gets that entry).
pub fn start_deflate_round(conns: &mut [Option<Conn>]) {
    let n = conns
        .iter()
        .flatten()
        .filter(|c| c.ws.as_ref().is_some_and(|w| w.deflate.is_some()))
        .count();
    if n == 0 {
        return;
    }
    let part = (DEFLATE_ROUND_BYTES / n).max(1);
    for w in conns.iter_mut().flatten().filter_map(|c| c.ws.as_mut()) {
        w.deflate_left = part;
    }
}

/// Bytes `at..at + len` of a ring seen as its two slices.
fn ring_range<'a>(s1: &'a [u8], s2: &'a [u8], at: usize, len: usize) -> (&'a [u8], &'a [u8]) {
    let end = at + len;
    if end <= s1.len() {
        (&s1[at..end], &[])
    } else if at >= s1.len() {
        (&s2[at - s1.len()..end - s1.len()], &[])
    } else {
        (&s1[at..], &s2[..end - s1.len()])
    }
}

/// Bytes owned by the connection (responses, control frames, compressed
/// frames), written between queued items.
#[derive(Debug, Default)]
pub struct Staged {
    pub buf: Vec<u8>,
    pos: usize,
    /// Bytes written so far, all told.
    written: u64,
    /// Where each copied entry's frame ends (counted in `written`).
    ends: VecDeque<u64>,
}

impl Staged {
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Copies a small event frame (its `parts` back to back) behind what is
    /// staged, if the buffer stays within [`COPY_BYTES`]: the frame then
    /// goes out in the same write as the others. Returns false (nothing
    /// copied) otherwise. The buffer's room is taken once, whole, so later
    /// copies never allocate.
    pub fn copy_frame(&mut self, parts: &[&[u8]]) -> bool {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if self.buf.len() + len > COPY_BYTES || self.ends.len() >= COPY_FRAMES {
            return false;
        }
        if self.buf.capacity() < COPY_BYTES {
            self.buf.reserve_exact(COPY_BYTES - self.buf.len());
            self.ends.reserve_exact(COPY_FRAMES);
        }
        for p in parts {
            self.buf.extend_from_slice(p);
        }
        self.ends.push_back(self.written + self.pending() as u64);
        true
    }

    /// `n` more bytes were written; returns how many copied entries are now
    /// written whole.
    fn advance(&mut self, n: usize) -> usize {
        self.pos += n;
        self.written += n as u64;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let mut done = 0;
        while self.ends.front().is_some_and(|&e| e <= self.written) {
            self.ends.pop_front();
            done += 1;
        }
        done
    }
}

/// A client connection.
#[derive(Debug)]
pub struct Conn {
    pub sock: TcpStream,
    pub peer: SocketAddr,
    /// Accepted on the `--ecaptureq` address: the stream only.
    pub stream_only: bool,
    pub rbuf: Vec<u8>,
    pub staged: Staged,
    pub ws: Option<WsStream>,
    pub last_activity: Instant,
    /// When the request now being received started.
    pub request_started: Option<Instant>,
    /// Close once everything staged is written.
    pub close_after_flush: bool,
    /// Drop the connection at this instant even if writes are stuck.
    pub hard_deadline: Option<Instant>,
    pub id: u64,
    /// The peer has shut down its side (it may still read).
    pub read_closed: bool,
    /// Lingering: our side is shut down; bytes still to read and discard.
    linger_left: Option<usize>,
    /// `100 Continue` was sent for the request being received.
    pub continue_sent: bool,
    /// Set at accept for a local user who may not use the server: the
    /// message of the 403 every request of this connection gets.
    pub refused: Option<String>,
}

/// What a write pass ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum Flush {
    /// Everything written.
    Idle,
    /// The socket is full; wait for WRITABLE.
    Blocked,
    /// The connection is done (closed after flush, or failed).
    Close,
}

impl Conn {
    pub fn new(
        sock: TcpStream,
        peer: SocketAddr,
        stream_only: bool,
        now: Instant,
        id: u64,
    ) -> Self {
        Self {
            sock,
            peer,
            stream_only,
            rbuf: Vec::with_capacity(4096),
            staged: Staged::default(),
            ws: None,
            last_activity: now,
            request_started: None,
            close_after_flush: false,
            hard_deadline: None,
            id,
            read_closed: false,
            linger_left: None,
            continue_sent: false,
            refused: None,
        }
    }

    /// Whether the connection is lingering (see [`LINGER_BYTES`]).
    pub fn lingering(&self) -> bool {
        self.linger_left.is_some()
    }

    /// Whether replies the client has not read (HTTP responses; pongs and
    /// other WebSocket control replies) exceed `cap` bytes; a deflate
    /// client's compressed event frames, bounded by its queue, count on
    /// top of it.
    pub fn reply_backlog_full(&self, cap: usize) -> bool {
        let cap = self.ws.as_ref().map_or(cap, |w| w.staged_allowance(cap));
        self.staged.pending() > cap
    }

    /// Ends the WebSocket stream with a close frame (`code`, `reason`):
    /// what is queued is dropped (counted), the connection closes once the
    /// frame is written (or after 2 s).
    pub fn close_ws(&mut self, code: u16, reason: &str, why: &'static str) {
        if let Some(w) = self.ws.as_mut() {
            w.clear();
            w.closing = Some(why);
        }
        ws::push_close(&mut self.staged.buf, code, reason);
        self.close_after_flush = true;
        self.rbuf.clear();
        self.hard_deadline = Some(Instant::now() + std::time::Duration::from_secs(2));
    }

    /// The last response is written: shut our side down and read what the
    /// client still sends. Returns false when there is nothing to wait for
    /// (the client has shut down its side too, or the socket failed).
    fn start_linger(&mut self) -> bool {
        if self.read_closed || self.sock.shutdown(std::net::Shutdown::Write).is_err() {
            return false;
        }
        self.linger_left = Some(LINGER_BYTES);
        let until = Instant::now() + LINGER_TIME;
        self.hard_deadline = Some(self.hard_deadline.map_or(until, |d| d.min(until)));
        self.rbuf.clear();
        self.read_available(0)
    }

    /// Reads what is available into `rbuf` (up to `limit` bytes buffered).
    /// Returns false when the peer closed or the read failed.
    /// While lingering, what is read is discarded, and false is returned
    /// too once [`LINGER_BYTES`] are read.
    pub fn read_available(&mut self, limit: usize) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if self.linger_left.is_none() && self.rbuf.len() >= limit {
                return true;
            }
            match self.sock.read(&mut chunk) {
                Ok(0) => {
                    self.read_closed = true;
                    return false;
                }
                Ok(n) => match self.linger_left.as_mut() {
                    Some(left) if *left <= n => return false,
                    Some(left) => *left -= n,
                    None => self.rbuf.extend_from_slice(&chunk[..n]),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }

    /// Writes staged bytes and queued items until done or blocked.
    pub fn flush(&mut self) -> Flush {
        loop {
            let partial_item = self.ws.as_ref().is_some_and(|w| w.partial > 0);
            let res = if !partial_item && self.staged.pending() > 0 {
                let r = self.sock.write(&self.staged.buf[self.staged.pos..]);
                if let Ok(n) = r {
                    let done = self.staged.advance(n);
                    if let Some(w) = self.ws.as_mut() {
                        w.copied_written(done);
                    }
                }
                r
            } else if let Some(ws) = self.ws.as_mut().filter(|w| !w.queue.is_empty()) {
                ws.write_items(&mut self.sock)
            } else if !self.close_after_flush || self.lingering() {
                return Flush::Idle;
            } else {
                return if self.start_linger() {
                    Flush::Idle
                } else {
                    Flush::Close
                };
            };
            match res {
                Ok(0) => return Flush::Close,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flush::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Flush::Close,
            }
        }
    }
}

impl Drop for WsStream {
    /// The spill's memory goes back to the budget with it.
    fn drop(&mut self) {
        self.budget.give(self.spill.capacity());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::EntryMeta;
    use rcapture_core::event::{EventKind, Module};

    /// A batch of entries whose bodies are `len` bytes of `fill`, `fill + 1`, ...
    fn batch(entries: usize, len: usize, fill: u8) -> Arc<Batch> {
        let mut b = Batch {
            worker: 0,
            buf: Vec::new(),
            entries: Vec::new(),
        };
        for i in 0..entries {
            let start = b.buf.len() as u32;
            b.buf
                .extend(std::iter::repeat_n(fill.wrapping_add(i as u8), len));
            b.entries.push(EntryMeta {
                start,
                end: b.buf.len() as u32,
                module: Module::Tls,
                kind: EventKind::Data,
                pid: 1,
                uid: 0,
                timestamp: 0,
                payload_len: len as u32,
            });
        }
        Arc::new(b)
    }

    /// The frame a client must receive for entry `seq` with `body`.
    fn frame(seq: u64, body: &[u8]) -> Vec<u8> {
        let (prefix, plen) = encode::seq_prefix(seq);
        let mut h = [0u8; ws::MAX_HEADER];
        let n = ws::frame_header(ws::OP_BINARY, false, plen + body.len(), &mut h);
        [&h[..n], &prefix[..plen], body].concat()
    }

    /// Takes at most `step` bytes per write.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let n = b.len().min(self.step);
            self.out.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut n = 0;
            for b in bufs {
                let k = b.len().min(self.step - n);
                self.out.extend_from_slice(&b[..k]);
                n += k;
                if n == self.step {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A staged buffer with no room for copies, as for a client that is
    /// behind: entries are queued.
    fn busy_staged() -> Staged {
        Staged {
            buf: vec![0; COPY_BYTES],
            ..Staged::default()
        }
    }

    /// A client that keeps up gets its small entries copied into its staged
    /// bytes, which go out before anything queued after them; past
    /// [`COPY_BYTES`] they are queued; every frame arrives once, in order.
    #[test]
    fn small_entries_of_a_client_that_keeps_up_are_copied_in_order() {
        let now = Instant::now();
        let mut w = stream(usize::MAX, now);
        let mut staged = Staged::default();
        let mut expected = Vec::new();
        let b = batch(200, 1000, 3);
        for i in 0..200 {
            assert_eq!(w.offer(&b, i, &mut staged, now, 4), Enqueue::Queued);
            expected.extend(frame(i as u64 + 1, b.body(i)));
        }
        let copied = w.copied;
        assert!(copied > 100 && copied < 200, "{copied} copied");
        assert!(staged.buf.len() <= COPY_BYTES);
        assert_eq!(w.queue.len(), 200 - copied, "the rest is queued");
        assert_eq!((w.queued(), w.counts.sent), (200, 0), "none written yet");
        assert_eq!(staged.buf[..], expected[..staged.buf.len()]);
        // Staged bytes first (as Conn::flush writes them), then the queue.
        // A copied entry is sent once its frame is written whole.
        let mut out = Trickle {
            out: staged.buf.clone(),
            step: 5000,
        };
        let len = staged.buf.len();
        let first = frame(1, b.body(0)).len();
        assert_eq!(staged.advance(first - 1), 0, "one byte short");
        assert_eq!(staged.advance(1), 1);
        let rest = staged.advance(len - first);
        w.copied_written(1 + rest);
        assert_eq!(w.counts.sent as usize, copied);
        while w.queued() > 0 {
            w.write_items(&mut out).unwrap();
        }
        assert!(out.out == expected, "every frame once, in order");
        assert_eq!(w.counts.sent, 200);
        assert_eq!(w.counts.seq, w.counts.sent);
        check(&w);
    }

    /// A plain (no deflate, no filter) stream whose spill may hold `spill`
    /// bytes, from a budget of its own.
    fn stream(spill: usize, now: Instant) -> WsStream {
        stream_in(spill, SpillBudget::new(usize::MAX), now)
    }

    /// The same, its spill taken from `budget`.
    fn stream_in(spill: usize, budget: Arc<SpillBudget>, now: Instant) -> WsStream {
        WsStream::new(
            String::new(),
            ClientFilter::default(),
            limits(),
            spill,
            budget,
            false,
            now,
        )
    }

    fn limits() -> QueueLimits {
        QueueLimits {
            frames: 100_000,
            bytes: 64 << 20,
        }
    }

    /// The bookkeeping agrees with the queue.
    fn check(w: &WsStream) {
        let spilled = w
            .queue
            .iter()
            .take_while(|i| matches!(i.body, Body::Spilled { .. }))
            .count();
        assert_eq!(spilled, w.spilled_items, "spilled items are the front");
        assert!(
            w.queue
                .iter()
                .skip(spilled)
                .all(|i| matches!(i.body, Body::Shared { .. }))
        );
        let spill_bytes: usize = w.queue.iter().take(spilled).map(Item::body_len).sum();
        assert_eq!(spill_bytes, w.spill.len());
        let mut runs = 0;
        let mut last: Option<*const Batch> = None;
        for i in w.queue.iter().skip(spilled) {
            if let Body::Shared { batch, .. } = &i.body
                && last != Some(Arc::as_ptr(batch))
            {
                runs += 1;
                last = Some(Arc::as_ptr(batch));
            }
        }
        assert_eq!(runs, w.runs);
        assert_eq!(w.queue.iter().map(Item::len).sum::<usize>(), w.queue_bytes);
    }

    #[test]
    fn a_client_holds_at_most_its_share_of_batches_and_gets_every_byte_in_order() {
        let now = Instant::now();
        let mut w = stream(usize::MAX, now);
        let mut staged = busy_staged();
        let mut expected = Vec::new();
        let mut out = Trickle {
            out: Vec::new(),
            step: 3997,
        };
        let mut held = Vec::new();
        let mut seq = 0;
        let mut wrapped = false;
        // Bodies of 1000 bytes: the spill grows past its first 64 KiB and
        // wraps while the front is written in odd-sized pieces.
        for b in 0..60u8 {
            let batch = batch(5, 1000, b.wrapping_mul(7));
            for i in 0..5 {
                assert_eq!(w.offer(&batch, i, &mut staged, now, 3), Enqueue::Queued);
                seq += 1;
                expected.extend(frame(seq, batch.body(i)));
            }
            assert!(w.runs <= 3);
            check(&w);
            held.push(batch);
            w.write_items(&mut out).unwrap();
            check(&w);
            wrapped |= !w.spill.as_slices().1.is_empty();
        }
        assert!(wrapped, "the spill wrapped around");
        // Only the last 3 batches are still pointed into.
        let pointed: Vec<usize> = held.iter().map(Arc::strong_count).collect();
        assert!(pointed[..57].iter().all(|&n| n == 1), "{pointed:?}");
        assert!(pointed[57..].iter().all(|&n| n > 1), "{pointed:?}");
        assert!(w.counts.spilled > 0);
        while w.queued() > 0 {
            w.write_items(&mut out).unwrap();
            check(&w);
        }
        assert!(
            out.out == expected,
            "the bytes written are the frames in order"
        );
        assert_eq!(w.counts.sent, 300);
        assert!(w.spill.is_empty() && w.spill.capacity() <= limits().bytes);
        // Kept while recently used, freed once unused for SPILL_KEEP.
        let cap = w.spill_capacity();
        w.release_spill(now + SPILL_KEEP / 2);
        assert_eq!(w.spill_capacity(), cap);
        w.release_spill(now + SPILL_KEEP);
        assert_eq!(w.spill_capacity(), 0);
    }

    #[test]
    fn drops_are_counted_by_reason() {
        let now = Instant::now();
        let small = QueueLimits {
            frames: 4,
            bytes: 1 << 20,
        };
        let mut w = WsStream::new(
            String::new(),
            ClientFilter {
                max_rate: 6,
                ..ClientFilter::default()
            },
            small,
            usize::MAX,
            SpillBudget::new(usize::MAX),
            false,
            now,
        );
        let mut staged = busy_staged();
        let b = batch(8, 10, 0);
        let got: Vec<Enqueue> = (0..8)
            .map(|i| w.offer(&b, i, &mut staged, now, 1))
            .collect();
        use Enqueue::*;
        assert_eq!(
            got,
            [
                Queued,
                Queued,
                Queued,
                Queued,
                Full,
                Full,
                RateLimited,
                RateLimited
            ]
        );
        // One frame partly written, then the client goes.
        let mut out = Trickle {
            out: Vec::new(),
            step: 3,
        };
        w.write_items(&mut out).unwrap();
        assert_eq!(w.clear(), 3, "the partly written frame stays");
        w.abandon();
        check(&w);
        assert_eq!(w.counts.dropped, [2, 0, 2, 4, 0]);
        assert_eq!(
            w.counts.seq,
            w.counts.sent + w.counts.dropped_total(),
            "{:?}",
            w.counts
        );
    }

    #[test]
    fn with_its_share_held_and_its_spill_full_a_client_drops_for_itself() {
        let now = Instant::now();
        // Room for 3 bodies of 100 bytes in the spill.
        let mut w = stream(350, now);
        let mut staged = busy_staged();
        let batches: Vec<_> = (0..4).map(|b| batch(2, 100, b)).collect();
        let offer = |w: &mut WsStream, b: usize, i: usize, staged: &mut Staged| {
            let r = w.offer(&batches[b], i, staged, now, 1);
            check(w);
            r
        };
        use Enqueue::*;
        assert_eq!(offer(&mut w, 0, 0, &mut staged), Queued);
        assert_eq!(offer(&mut w, 0, 1, &mut staged), Queued);
        // Batch 0 is copied out (200 bytes) to make room for batch 1.
        assert_eq!(offer(&mut w, 1, 0, &mut staged), Queued);
        assert_eq!(offer(&mut w, 1, 1, &mut staged), Queued);
        assert_eq!(Arc::strong_count(&batches[0]), 1);
        // Batch 1 does not fit: one body is copied, the batch stays held.
        assert_eq!(offer(&mut w, 2, 0, &mut staged), Share);
        assert_eq!(offer(&mut w, 2, 1, &mut staged), Share);
        assert_eq!((w.spilled_items, w.runs), (3, 1));
        assert!(Arc::strong_count(&batches[1]) > 1);
        // Stuck since its first drop: later drops do not restart the
        // slow-client deadline.
        let stuck = w.full_since.expect("stuck");
        let later = now + std::time::Duration::from_secs(1);
        assert_eq!(w.offer(&batches[2], 1, &mut staged, later, 1), Share);
        assert_eq!(w.full_since, Some(stuck));
        assert_eq!(w.counts.dropped_for(DropReason::Share), 3);
        // Once the client has read some, the rest of batch 1 is copied.
        let mut out = Trickle {
            out: Vec::new(),
            step: 1 << 20,
        };
        w.write_items(&mut out).unwrap();
        assert_eq!(offer(&mut w, 3, 0, &mut staged), Queued);
        assert_eq!(w.full_since, None, "no longer stuck");
        assert_eq!(w.counts.seq, 8);
        w.write_items(&mut out).unwrap();
        assert_eq!(w.counts.sent, 5);
        let mut expected = Vec::new();
        for (seq, (b, i)) in [(0, 0), (0, 1), (1, 0), (1, 1), (3, 0)]
            .into_iter()
            .enumerate()
        {
            let seq = if b == 3 { 8 } else { seq as u64 + 1 };
            expected.extend(frame(seq, batches[b].body(i)));
        }
        assert!(out.out == expected);
    }

    #[test]
    fn clearing_a_partly_spilled_queue_keeps_the_bookkeeping() {
        let now = Instant::now();
        let mut w = stream(usize::MAX, now);
        let mut staged = busy_staged();
        for b in 0..6 {
            let batch = batch(4, 100, b);
            for i in 0..4 {
                w.offer(&batch, i, &mut staged, now, 2);
            }
        }
        assert_eq!((w.spilled_items, w.runs), (16, 2));
        let mut out = Trickle {
            out: Vec::new(),
            step: 50,
        };
        w.write_items(&mut out).unwrap();
        assert_eq!(w.clear(), 23);
        check(&w);
        assert_eq!((w.queued(), w.spilled_items, w.runs), (1, 1, 0));
        w.write_items(&mut out).unwrap();
        w.write_items(&mut out).unwrap();
        check(&w);
        assert_eq!((w.queued(), w.counts.sent), (0, 1));
    }

    /// Lagging clients together hold at most the server-wide budget in
    /// their spills, each still within its own limit; past it their new
    /// entries are dropped with reason `share` and what was queued is
    /// delivered whole. Freed spills (caught up, or gone) give their memory
    /// back.
    #[test]
    fn spills_together_stay_within_the_budget() {
        let now = Instant::now();
        let budget = SpillBudget::new(200 * 1024);
        let mut clients: Vec<WsStream> = (0..4)
            .map(|_| stream_in(1 << 20, Arc::clone(&budget), now))
            .collect();
        let mut staged = busy_staged();
        let mut expected = vec![Vec::new(); clients.len()];
        let mut shared_drops = [0u64; 4];
        for b in 0..80u8 {
            let batch = batch(10, 1000, b);
            for (k, w) in clients.iter_mut().enumerate() {
                for i in 0..10 {
                    match w.offer(&batch, i, &mut staged, now, 2) {
                        Enqueue::Queued => expected[k].extend(frame(w.counts.seq, batch.body(i))),
                        Enqueue::Share => shared_drops[k] += 1,
                        other => panic!("client {k}: {other:?}"),
                    }
                }
                check(w);
            }
            let held: usize = clients.iter().map(WsStream::spill_capacity).sum();
            assert_eq!(held, budget.used());
            assert!(held <= budget.limit(), "{held} > {}", budget.limit());
        }
        assert!(
            shared_drops.iter().all(|&d| d > 0),
            "every lagging client met the budget: {shared_drops:?}"
        );
        for (k, w) in clients.iter().enumerate() {
            assert_eq!(w.counts.dropped_for(DropReason::Share), shared_drops[k]);
        }
        // The first client catches up: every frame it queued arrives in
        // order, and its spill's memory goes back once unused.
        let mut out = Trickle {
            out: Vec::new(),
            step: 100_000,
        };
        let first = &mut clients[0];
        while first.queued() > 0 {
            first.write_items(&mut out).unwrap();
        }
        assert!(
            out.out == expected[0],
            "the queued frames, whole and in order"
        );
        let before = budget.used();
        let freed = first.spill_capacity();
        assert!(freed > 0);
        first.release_spill(now + SPILL_KEEP);
        assert_eq!(budget.used(), before - freed);
        // The others go: the budget is whole again.
        clients.truncate(1);
        assert_eq!(budget.used(), 0);
    }
}
