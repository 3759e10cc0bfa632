//! When the loop takes the workers' batches. After a round that took any,
//! the next waits [`FANOUT_GAP`]: under load every round then carries what
//! the workers handed over in that time, and each client gets it in one
//! write (one wakeup of the client, one of the loop) instead of one per
//! worker batch. The first batch after a quiet spell is taken at once, so an
//! idle stream's latency is unchanged; under load an event waits at most
//! the gap more.

use std::time::{Duration, Instant};

/// Least time between two rounds that take batches.
pub const FANOUT_GAP: Duration = Duration::from_millis(1);

/// The pacing of batch rounds.
#[derive(Debug, Clone, Copy)]
pub struct FanoutPace {
    next: Instant,
}

impl FanoutPace {
    pub fn new(now: Instant) -> Self {
        Self { next: now }
    }

    /// Whether a round may take batches now.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// A round ended; `took` if it took any batch.
    pub fn took(&mut self, now: Instant, took: bool) {
        if took {
            self.next = now + FANOUT_GAP;
        }
    }

    /// How long the loop may wait for sockets: `idle` when no batch waits
    /// (`pending` false: a worker's wake ends the wait), else until the
    /// next round is due.
    pub fn timeout(&self, now: Instant, idle: Duration, pending: bool) -> Duration {
        if pending {
            self.next.saturating_duration_since(now).min(idle)
        } else {
            idle
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_after_one_that_took_batches_waits_the_gap() {
        let t0 = Instant::now();
        let idle = Duration::from_millis(100);
        let mut p = FanoutPace::new(t0);
        assert!(p.due(t0), "the first batch is taken at once");
        p.took(t0, true);
        assert!(!p.due(t0 + FANOUT_GAP / 2));
        assert_eq!(p.timeout(t0, idle, true), FANOUT_GAP);
        assert_eq!(p.timeout(t0, idle, false), idle, "nothing waits");
        assert!(p.due(t0 + FANOUT_GAP));
        assert_eq!(p.timeout(t0 + FANOUT_GAP, idle, true), Duration::ZERO);
        // A round that took nothing does not delay the next.
        let t1 = t0 + FANOUT_GAP * 3;
        p.took(t1, false);
        assert!(p.due(t1));
    }
}
