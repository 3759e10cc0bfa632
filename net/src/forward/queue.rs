//! The bounded queue of encoded requests between the batcher and the
//! senders: when adding a request would pass the byte limit, the oldest
//! requests are pushed out (and handed back to be counted and recycled).
//!
//! The retry backoff is the queue's, not a sender's: a request to be
//! retried goes back among the oldest and every sender waits out the backoff
//! before taking the next request, so two requests in flight do not retry
//! twice as often (an idle sender would otherwise take the failed request
//! at once).

use super::stats::Counters;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// One encoded request body and the events it carries.
#[derive(Debug)]
pub struct Outgoing {
    pub body: Vec<u8>,
    pub events: u64,
    /// Its place in the order requests were queued (set by `push`): a
    /// request to be retried goes back to its place, among the oldest.
    order: u64,
}

impl Outgoing {
    pub fn new(body: Vec<u8>, events: u64) -> Self {
        Self {
            body,
            events,
            order: 0,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    q: VecDeque<Outgoing>,
    bytes: usize,
    /// No more requests will be pushed: the sender stops once the queue is empty.
    closed: bool,
    /// Stop now (shutdown deadline passed).
    aborted: bool,
    /// Threads waiting on the condition variable (a push wakes them only
    /// if there are any: a busy sender is not sent a wake-up per request).
    waiting: u32,
    /// Rounds of failed attempts in a row (any sender's): the backoff's
    /// exponent. Requests that fail during a pause (they were in flight
    /// when it began) extend it but do not count again.
    failures: u32,
    /// `order` of the next request pushed.
    next_order: u64,
    /// No request is taken before this (a retry's backoff).
    paused_until: Option<Instant>,
}

/// See the module docs.
#[derive(Debug)]
pub struct SendQueue {
    inner: Mutex<Inner>,
    cv: Condvar,
    limit: usize,
    counters: Arc<Counters>,
}

impl SendQueue {
    pub fn new(limit: usize, counters: Arc<Counters>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                // A queue of a few requests never grows it.
                q: VecDeque::with_capacity(16),
                ..Inner::default()
            }),
            cv: Condvar::new(),
            limit,
            counters,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish_bytes(&self, g: &Inner) {
        self.counters.queue_bytes.store(g.bytes as u64, Relaxed);
    }

    /// Appends a request; requests pushed out to make room (oldest first)
    /// are appended to `evicted`. A request larger than the whole limit is
    /// still taken when the queue is empty, so memory stays within the limit
    /// plus one request.
    pub fn push(&self, mut o: Outgoing, evicted: &mut Vec<Outgoing>) {
        let mut g = self.lock();
        o.order = g.next_order;
        g.next_order += 1;
        while g.bytes + o.body.len() > self.limit {
            let Some(old) = g.q.pop_front() else { break };
            g.bytes -= old.body.len();
            evicted.push(old);
        }
        g.bytes += o.body.len();
        g.q.push_back(o);
        self.publish_bytes(&g);
        let wake = g.waiting > 0;
        drop(g);
        if wake {
            self.cv.notify_all();
        }
    }

    /// Puts a request whose attempt failed back in its place among the
    /// oldest (ahead of every request queued after it, so it is also
    /// pushed out before them) and pauses every sender for
    /// `backoff(rounds of failures in a row)`. Returns that count.
    pub fn retry_later(&self, o: Outgoing, backoff: impl FnOnce(u32) -> Duration) -> u32 {
        let mut g = self.lock();
        let now = Instant::now();
        if g.paused_until.is_none_or(|t| t <= now) {
            g.failures = g.failures.saturating_add(1);
        }
        let until = now + backoff(g.failures);
        g.paused_until = Some(g.paused_until.map_or(until, |t| t.max(until)));
        g.bytes += o.body.len();
        let at = g.q.partition_point(|q| q.order < o.order);
        g.q.insert(at, o);
        self.publish_bytes(&g);
        g.failures
    }

    /// A request was answered (delivered, or refused for good): the
    /// failures in a row start again from zero.
    pub fn answered(&self) {
        self.lock().failures = 0;
    }

    /// The oldest request, waiting for one (and for a retry's backoff to
    /// pass); `None` once closed and empty, or aborted.
    pub fn pop(&self) -> Option<Outgoing> {
        let mut g = self.lock();
        loop {
            if g.aborted {
                return None;
            }
            let now = Instant::now();
            let pause = g.paused_until.filter(|&t| t > now);
            if pause.is_none()
                && let Some(o) = g.q.pop_front()
            {
                g.bytes -= o.body.len();
                self.publish_bytes(&g);
                return Some(o);
            }
            if g.closed && g.q.is_empty() {
                return None;
            }
            g.waiting += 1;
            g = match pause {
                Some(t) => {
                    self.cv
                        .wait_timeout(g, t - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self.cv.wait(g).unwrap_or_else(PoisonError::into_inner),
            };
            g.waiting -= 1;
        }
    }

    /// No more pushes; the sender drains what is queued and stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.cv.notify_all();
    }

    pub fn is_aborted(&self) -> bool {
        self.lock().aborted
    }

    /// Stops the sender and hands back everything still queued.
    pub fn abort(&self) -> Vec<Outgoing> {
        let mut g = self.lock();
        g.aborted = true;
        g.bytes = 0;
        let rest = g.q.drain(..).collect();
        self.publish_bytes(&g);
        drop(g);
        self.cv.notify_all();
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_are_pushed_out() {
        let q = SendQueue::new(10, Arc::default());
        let mut ev = Vec::new();
        for (i, n) in [4usize, 4, 4, 20, 1].into_iter().enumerate() {
            q.push(Outgoing::new(vec![0; n], i as u64), &mut ev);
        }
        // 4+4 fit; the third pushes out the first; 20 pushes out all; 1 pushes out 20.
        assert_eq!(
            ev.iter().map(|o| o.events).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        q.close();
        assert_eq!(q.pop().map(|o| o.events), Some(4));
        assert!(q.pop().is_none());
    }

    /// A failed request pauses every sender for the backoff, then is the
    /// first taken again; an answer resets the count of failures.
    #[test]
    fn a_retry_pauses_every_sender() {
        let q = Arc::new(SendQueue::new(1 << 20, Arc::default()));
        let mut ev = Vec::new();
        for events in [1, 2] {
            q.push(Outgoing::new(vec![0; 4], events), &mut ev);
        }
        let first = q.pop().unwrap();
        let t0 = Instant::now();
        let delay = Duration::from_millis(300);
        assert_eq!(q.retry_later(first, |_| delay), 1);
        // Another sender, idle until now: it waits out the backoff too,
        // then takes the failed request before the newer one.
        let other = {
            let q = Arc::clone(&q);
            std::thread::spawn(move || q.pop().map(|o| (o.events, t0.elapsed())))
        };
        let (events, waited) = other.join().unwrap().unwrap();
        assert_eq!(events, 1, "the failed request is retried first");
        assert!(waited >= delay, "taken after {waited:?}, backoff {delay:?}");
        let again = q.pop().unwrap();
        assert_eq!(
            q.retry_later(again, |n| Duration::from_millis(u64::from(n))),
            2
        );
        q.answered();
        let o = q.pop().unwrap();
        assert_eq!(
            q.retry_later(o, |_| Duration::ZERO),
            1,
            "counted from zero again"
        );
        q.close();
        assert_eq!(q.pop().map(|o| o.events), Some(2));
        assert!(q.pop().is_none());
    }

    /// Two requests in flight fail, the older first: they go back in the
    /// order they were queued (the older is retried, and pushed out,
    /// first), and the second failure, inside the pause the first began,
    /// does not lengthen the backoff's exponent.
    #[test]
    fn failures_in_flight_keep_their_order_and_count_once() {
        let q = SendQueue::new(1 << 20, Arc::default());
        let mut ev = Vec::new();
        for events in [1, 2, 3] {
            q.push(Outgoing::new(vec![0; 4], events), &mut ev);
        }
        let (older, newer) = (q.pop().unwrap(), q.pop().unwrap());
        let pause = Duration::from_millis(50);
        assert_eq!(q.retry_later(older, |_| pause), 1);
        assert_eq!(q.retry_later(newer, |_| pause), 1, "the same round");
        let order: Vec<u64> = (0..3).map(|_| q.pop().unwrap().events).collect();
        assert_eq!(order, [1, 2, 3]);
        q.close();
        assert!(q.pop().is_none());
    }
}
