//! Joins the records of one long call back into one event (WIRE.md §2).
//!
//! The kernel splits a call into records of at most `RC_CHUNK_MAX` bytes with
//! the same `(tid, call_seq)`; they arrive in order in one CPU's ring. A
//! single-record call is passed through without a copy. Multi-record calls
//! are copied into a slot buffer that is reused (capacity kept), so steady
//! state allocates nothing. Every anomaly is counted in [`JoinStats`].

use crate::decode::Record;
use crate::records::{FLAG_FIRST, FLAG_LAST};

/// Counters of the reassembler (per worker).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JoinStats {
    /// Calls emitted whole or cut only by the capture limit.
    pub joined: u64,
    /// Calls emitted with a gap (a record of the call never arrived).
    pub incomplete: u64,
    /// Records that arrived with no open call (their first record was lost): dropped.
    pub orphan_records: u64,
    /// Payload bytes of orphan records.
    pub orphan_bytes: u64,
    /// Open calls emitted early because every slot was busy.
    pub evicted: u64,
}

#[derive(Debug)]
struct Slot {
    open: bool,
    tid: u32,
    call_seq: u32,
    kind: u16,
    /// Next offset expected; `None` once a gap was seen.
    next: Option<u32>,
    last_use: u64,
    /// The first record's fixed part (payload empty).
    head: Option<Record<'static>>,
    buf: Vec<u8>,
}

/// Reassembles multi-record calls.
#[derive(Debug)]
pub struct Reassembler {
    slots: Vec<Slot>,
    max_payload: usize,
    tick: u64,
    stats: JoinStats,
}

impl Reassembler {
    /// `slots` calls can be open at once; payloads are kept up to `max_payload`.
    pub fn new(slots: usize, max_payload: usize) -> Self {
        let slots = (0..slots.max(1))
            .map(|_| Slot {
                open: false,
                tid: 0,
                call_seq: 0,
                kind: 0,
                next: None,
                last_use: 0,
                head: None,
                buf: Vec::new(),
            })
            .collect();
        Self {
            slots,
            max_payload,
            tick: 0,
            stats: JoinStats::default(),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> JoinStats {
        self.stats
    }

    /// Feeds one decoded record; calls `emit(record, truncated)` for every
    /// event it completes (the record itself, or a joined call whose payload
    /// is the whole captured call). `truncated` is the bytes not captured.
    pub fn push(&mut self, rec: Record<'_>, emit: &mut dyn FnMut(&Record<'_>, u32)) {
        let Some(chunk) = rec.chunk().copied() else {
            emit(&rec, 0);
            return;
        };
        let flags = rec.header().flags;
        let first = flags & FLAG_FIRST != 0;
        let last = flags & FLAG_LAST != 0;
        let tid = rec.header().tid;
        let kind = rec.header().kind;
        self.tick += 1;
        if first && last {
            let keep = rec.payload().len().min(self.max_payload);
            let cut = rec.with_payload(&rec.payload()[..keep]);
            self.stats.joined += 1;
            emit(&cut, chunk.total_len - keep as u32);
            return;
        }
        let found = self
            .slots
            .iter()
            .position(|s| s.open && s.tid == tid && s.call_seq == chunk.call_seq && s.kind == kind);
        let idx = match (found, first) {
            (Some(i), false) => i,
            (Some(i), true) => {
                // A new call reuses an id that is still open: the old one lost its tail.
                self.flush(i, false, emit);
                self.open(i, &rec);
                i
            }
            (None, true) => {
                let i = self.free_slot(emit);
                self.open(i, &rec);
                i
            }
            (None, false) => {
                self.stats.orphan_records += 1;
                self.stats.orphan_bytes += rec.payload().len() as u64;
                return;
            }
        };
        let max = self.max_payload;
        let slot = &mut self.slots[idx];
        slot.last_use = self.tick;
        if slot.next == Some(chunk.offset) {
            let room = max.saturating_sub(slot.buf.len());
            let take = rec.payload().len().min(room);
            slot.buf.extend_from_slice(&rec.payload()[..take]);
            slot.next = Some(chunk.offset + chunk.len);
        } else {
            slot.next = None;
        }
        if last {
            self.flush(idx, true, emit);
        }
    }

    /// Emits every open call as it is (e.g. at shutdown).
    pub fn flush_all(&mut self, emit: &mut dyn FnMut(&Record<'_>, u32)) {
        for i in 0..self.slots.len() {
            if self.slots[i].open {
                self.flush(i, false, emit);
            }
        }
    }

    fn open(&mut self, i: usize, rec: &Record<'_>) {
        let s = &mut self.slots[i];
        let chunk = rec.chunk().copied().unwrap_or_default();
        s.open = true;
        s.tid = rec.header().tid;
        s.call_seq = chunk.call_seq;
        s.kind = rec.header().kind;
        s.next = Some(0);
        s.head = Some(rec.with_payload(&[]));
        s.buf.clear();
        let want = (chunk.total_len as usize).min(self.max_payload);
        if s.buf.capacity() < want {
            s.buf.reserve(want);
        }
    }

    fn free_slot(&mut self, emit: &mut dyn FnMut(&Record<'_>, u32)) -> usize {
        if let Some(i) = self.slots.iter().position(|s| !s.open) {
            return i;
        }
        let (i, _) = self
            .slots
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.last_use)
            .unwrap_or((0, &self.slots[0]));
        self.stats.evicted += 1;
        self.flush(i, false, emit);
        i
    }

    fn flush(&mut self, i: usize, saw_last: bool, emit: &mut dyn FnMut(&Record<'_>, u32)) {
        let s = &mut self.slots[i];
        s.open = false;
        let Some(head) = s.head.take() else { return };
        let total = head.chunk().map_or(0, |c| c.total_len);
        let complete = saw_last && s.next.is_some();
        if complete {
            self.stats.joined += 1;
        } else {
            self.stats.incomplete += 1;
        }
        let rec = head.with_payload(&s.buf);
        emit(&rec, total.saturating_sub(s.buf.len() as u32));
    }
}
