//! Request bodies: a pool of reused buffers (returned by the sender after
//! delivery) and the hand-over to the send queue, where the oldest
//! requests are pushed out when it is full (counted as dropped, their
//! buffers reused).
//!
//! Whichever thread writes the final bodies owns the [`Bodies`]: the
//! batcher, or with gzip the compressor thread.

use super::queue::{Outgoing, SendQueue};
use super::stats::Counters;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

/// Request bodies kept for reuse (and the capacity of the channel that
/// returns them from the sender).
pub(crate) const POOL: usize = 16;

/// Body buffers made ready whenever bodies grow: the one the sender has in
/// flight and a queue of several behind it reuse buffers, not allocate.
const STOCK: usize = 8;

/// Body buffers up to this capacity are kept for reuse; a larger body's
/// buffer is freed after delivery (its allocation is small next to the
/// work of encoding it, and the pool's memory stays within `POOL` × this).
pub(crate) const POOLED_MAX: usize = 4 << 20;

/// See the module docs.
pub(crate) struct Bodies {
    queue: Arc<SendQueue>,
    counters: Arc<Counters>,
    recycled: Receiver<Vec<u8>>,
    /// Empty body buffers, each with room for `room` bytes.
    pool: Vec<Vec<u8>>,
    /// Room for the largest body so far, and some (up to `POOLED_MAX`):
    /// every pooled buffer is grown to it, so once the sizes are seen no
    /// body grows its buffer again.
    room: usize,
    evicted: Vec<Outgoing>,
}

impl Bodies {
    pub fn new(
        queue: Arc<SendQueue>,
        counters: Arc<Counters>,
        recycled: Receiver<Vec<u8>>,
    ) -> Self {
        Self {
            queue,
            counters,
            recycled,
            pool: Vec::with_capacity(POOL),
            room: 0,
            evicted: Vec::new(),
        }
    }

    /// The room of the pooled buffers (the largest body so far, and some).
    pub fn room(&self) -> usize {
        self.room
    }

    /// An empty body buffer: a pooled one, or a new one with the usual room.
    pub fn take(&mut self) -> Vec<u8> {
        while let Ok(b) = self.recycled.try_recv() {
            self.shelve(b);
        }
        self.pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.room))
    }

    /// Keeps a body buffer for reuse (see `room`).
    pub fn shelve(&mut self, mut b: Vec<u8>) {
        if self.pool.len() < POOL && b.capacity() <= POOLED_MAX {
            b.clear();
            b.reserve(self.room);
            self.pool.push(b);
        }
    }

    /// Notes the room a body needed; returns whether the pooled buffers
    /// grew. When it is more than they have, they grow to it with a
    /// quarter to spare (bodies of a steady stream vary a little: `seq`
    /// grows a byte now and then) and the pool is stocked up.
    pub fn needed(&mut self, room: usize) -> bool {
        if room <= self.room || room > POOLED_MAX {
            return false;
        }
        self.room = room.saturating_add(room / 4).min(POOLED_MAX);
        for b in &mut self.pool {
            b.reserve(self.room);
        }
        while self.pool.len() < STOCK {
            self.pool.push(Vec::with_capacity(self.room));
        }
        true
    }

    /// Queues a request for the sender; requests it pushes out of the
    /// full queue are counted as dropped.
    pub fn enqueue(&mut self, o: Outgoing) {
        self.queue.push(o, &mut self.evicted);
        while let Some(old) = self.evicted.pop() {
            Counters::add(&self.counters.dropped_events, old.events);
            self.shelve(old.body);
        }
    }

    /// No more requests: the sender stops once the queue is empty.
    pub fn close(&self) {
        self.queue.close();
    }
}
