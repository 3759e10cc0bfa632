//! Packets waiting for their hold time: one FIFO per worker (each in the
//! worker's, i.e. its CPU's, timestamp order) of packet entries copied into
//! reused 1 MiB chunks, and the merge that takes the oldest head first.

use super::sink::PacketHead;
use std::collections::VecDeque;

/// Bytes of a chunk (a larger entry gets a chunk of its size).
const CHUNK_BYTES: usize = 1 << 20;
/// Empty chunks kept for reuse.
const FREE_KEPT: usize = 8;

#[derive(Debug)]
struct Chunk {
    buf: Vec<u8>,
    /// Offset of the first entry not yet taken.
    read: usize,
}

/// The held packets.
#[derive(Debug)]
pub(super) struct Held {
    queues: Vec<VecDeque<Chunk>>,
    free: Vec<Vec<u8>>,
    bytes: usize,
}

impl Held {
    pub(super) fn new(workers: usize) -> Self {
        Self {
            queues: (0..workers.max(1)).map(|_| VecDeque::new()).collect(),
            free: Vec::new(),
            bytes: 0,
        }
    }

    /// Bytes held.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends a packet entry of `worker`'s.
    pub(super) fn push(&mut self, worker: usize, entry: &[u8]) {
        let last = self.queues.len() - 1;
        let q = &mut self.queues[worker.min(last)];
        let fits = q
            .back()
            .is_some_and(|c| c.buf.capacity() - c.buf.len() >= entry.len());
        if !fits {
            let mut buf = self.free.pop().unwrap_or_default();
            if buf.capacity() < entry.len() {
                buf = Vec::with_capacity(CHUNK_BYTES.max(entry.len()));
            }
            q.push_back(Chunk { buf, read: 0 });
        }
        if let Some(c) = q.back_mut() {
            c.buf.extend_from_slice(entry);
        }
        self.bytes += entry.len();
    }

    /// The worker whose first packet is the oldest, and that packet's head.
    pub(super) fn oldest(&self) -> Option<(usize, PacketHead)> {
        self.queues
            .iter()
            .enumerate()
            .filter_map(|(w, _)| self.head(w).map(|e| (w, PacketHead::read(e))))
            .min_by_key(|(_, h)| h.ts_ns)
    }

    /// The first packet entry of `worker`.
    pub(super) fn head(&self, worker: usize) -> Option<&[u8]> {
        let c = self.queues.get(worker)?.front()?;
        let rest = &c.buf[c.read..];
        if rest.is_empty() {
            return None;
        }
        Some(&rest[..PacketHead::read(rest).entry_len()])
    }

    /// Drops the first packet of `worker` (after [`Self::head`]).
    pub(super) fn pop(&mut self, worker: usize) {
        let Some(q) = self.queues.get_mut(worker) else {
            return;
        };
        let Some(c) = q.front_mut() else { return };
        let len = PacketHead::read(&c.buf[c.read..]).entry_len();
        c.read += len;
        self.bytes -= len;
        if c.read == c.buf.len()
            && let Some(mut done) = q.pop_front()
            && self.free.len() < FREE_KEPT
        {
            done.buf.clear();
            self.free.push(done.buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcapng::sink::PACKET_HEAD;

    fn entry(ts: i64, caplen: usize) -> Vec<u8> {
        let mut e = vec![0u8; PACKET_HEAD + caplen];
        e[0] = 1;
        e[4..8].copy_from_slice(&(caplen as u32).to_le_bytes());
        e[20..28].copy_from_slice(&ts.to_le_bytes());
        e
    }

    /// Two per-worker FIFOs come out merged by timestamp; chunks are reused.
    #[test]
    fn merges_workers_oldest_first() {
        let mut h = Held::new(2);
        for ts in [1, 4, 5] {
            h.push(0, &entry(ts, 10));
        }
        for ts in [2, 3, 6] {
            h.push(1, &entry(ts, 700_000));
        }
        assert_eq!(
            h.bytes(),
            3 * (PACKET_HEAD + 10) + 3 * (PACKET_HEAD + 700_000)
        );
        let mut order = Vec::new();
        while let Some((w, head)) = h.oldest() {
            assert_eq!(h.head(w).unwrap().len(), head.entry_len());
            order.push(head.ts_ns);
            h.pop(w);
        }
        assert_eq!(order, [1, 2, 3, 4, 5, 6]);
        assert_eq!(h.bytes(), 0);
        assert!(!h.free.is_empty());
    }
}
