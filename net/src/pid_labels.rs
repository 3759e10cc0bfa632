//! The `pid` label of `ecapture_events_total` (WIRE.md §6): the busiest pids
//! of a module, the rest counted as `pid="other"`.
//!
//! Per module, at most [`MAX_PID_LABELS`] pids have their own series. Each
//! has a score, its events with exponential decay (every score is halved
//! every [`HALVE_EVERY`] events of the module), so "busiest" means busy
//! lately. Pids without a series compete in a fixed table of
//! [`CANDIDATES`] scores (Space-Saving: a new pid takes the place of the
//! lowest, inheriting its score + 1). A candidate whose score passes twice
//! the lowest labelled score (+ 8, so that equals do not swap back and
//! forth) takes that pid's place: the displaced pid's series goes away and
//! its count moves into `pid="other"`, and the newcomer's series starts at
//! 0 (its earlier events are in `other` already). So every counter only
//! grows while it exists, and the series plus `other` always sum to every
//! event of the module. Fixed-size tables: counting allocates nothing.

/// Pids with their own series, per module.
pub const MAX_PID_LABELS: usize = 32;
/// Pids without a series whose recent events are tracked.
pub const CANDIDATES: usize = 32;
/// Events of a module between two halvings of its scores.
pub const HALVE_EVERY: u64 = 1 << 16;

#[derive(Debug, Clone, Copy, Default)]
struct Labelled {
    pid: u32,
    /// The series' value.
    total: u64,
    score: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Candidate {
    pid: u32,
    /// 0: empty.
    score: u64,
}

/// The pid series of one module.
#[derive(Debug)]
pub struct PidLabels {
    labelled: [Labelled; MAX_PID_LABELS],
    used: usize,
    candidates: [Candidate; CANDIDATES],
    other: u64,
    events: u64,
}

impl Default for PidLabels {
    fn default() -> Self {
        Self {
            labelled: [Labelled::default(); MAX_PID_LABELS],
            used: 0,
            candidates: [Candidate::default(); CANDIDATES],
            other: 0,
            events: 0,
        }
    }
}

impl PidLabels {
    /// Counts one event of `pid`.
    pub fn count(&mut self, pid: u32) {
        self.events += 1;
        if self.events.is_multiple_of(HALVE_EVERY) {
            self.decay();
        }
        let used = &mut self.labelled[..self.used];
        if let Some(l) = used.iter_mut().find(|l| l.pid == pid) {
            l.total += 1;
            l.score += 1;
            return;
        }
        if self.used < MAX_PID_LABELS {
            self.labelled[self.used] = Labelled {
                pid,
                total: 1,
                score: 1,
            };
            self.used += 1;
            return;
        }
        self.other += 1;
        let ci = match self
            .candidates
            .iter()
            .position(|c| c.score > 0 && c.pid == pid)
        {
            Some(i) => {
                self.candidates[i].score += 1;
                i
            }
            None => {
                let i = min_index(self.candidates.iter().map(|c| c.score));
                let score = self.candidates[i].score + 1;
                self.candidates[i] = Candidate { pid, score };
                i
            }
        };
        let li = min_index(self.labelled.iter().map(|l| l.score));
        let (quiet, busy) = (self.labelled[li], self.candidates[ci]);
        if busy.score > 2 * quiet.score + 8 {
            self.other += quiet.total;
            self.labelled[li] = Labelled {
                pid: busy.pid,
                total: 0,
                score: busy.score,
            };
            self.candidates[ci] = Candidate {
                pid: quiet.pid,
                score: quiet.score.max(1),
            };
        }
    }

    fn decay(&mut self) {
        for l in &mut self.labelled {
            l.score /= 2;
        }
        for c in &mut self.candidates {
            c.score /= 2;
        }
    }

    /// `(pid, value)` of each labelled pid, by pid.
    pub fn series(&self) -> Vec<(u32, u64)> {
        let mut v: Vec<_> = self.labelled[..self.used]
            .iter()
            .map(|l| (l.pid, l.total))
            .collect();
        v.sort_unstable();
        v
    }

    /// The `pid="other"` value, if any pid went there.
    pub fn other(&self) -> Option<u64> {
        (self.other > 0 || self.used == MAX_PID_LABELS).then_some(self.other)
    }
}

fn min_index(scores: impl Iterator<Item = u64>) -> usize {
    scores
        .enumerate()
        .min_by_key(|&(_, s)| s)
        .map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(p: &PidLabels) -> u64 {
        p.series().iter().map(|s| s.1).sum::<u64>() + p.other().unwrap_or(0)
    }

    /// 32 pids seen early and then quiet do not keep a busy late pid out;
    /// every event stays counted once and no series ever goes down.
    #[test]
    fn a_busy_late_pid_gets_a_label() {
        let mut p = PidLabels::default();
        for pid in 1..=40 {
            p.count(pid);
        }
        assert_eq!(p.series().len(), MAX_PID_LABELS);
        assert_eq!(p.other(), Some(8));
        let mut last: Vec<(u32, u64)> = p.series();
        for i in 0..1000u64 {
            p.count(4242);
            if i % 10 == 0 {
                p.count(7);
            }
            for (pid, v) in p.series() {
                if let Some((_, was)) = last.iter().find(|s| s.0 == pid) {
                    assert!(v >= *was, "pid {pid} went down");
                }
            }
            last = p.series();
        }
        let s = p.series();
        assert!(s.iter().any(|&(pid, n)| pid == 4242 && n > 900), "{s:?}");
        assert!(s.iter().any(|&(pid, _)| pid == 7), "{s:?}");
        assert_eq!(s.len(), MAX_PID_LABELS);
        assert_eq!(total(&p), 40 + 1000 + 100);
    }

    /// Many short-lived pids each seen once do not churn the labels of
    /// steadily busy ones.
    #[test]
    fn steady_pids_keep_their_labels_among_many_one_off_pids() {
        let mut p = PidLabels::default();
        let mut n = 0;
        for round in 0..20_000u32 {
            for pid in 1..=MAX_PID_LABELS as u32 {
                p.count(pid);
                n += 1;
            }
            p.count(100_000 + round);
            n += 1;
        }
        let s = p.series();
        assert!(
            s.iter().all(|&(pid, _)| pid <= MAX_PID_LABELS as u32),
            "{s:?}"
        );
        assert_eq!(total(&p), n);
    }
}
