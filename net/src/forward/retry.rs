//! What to do after a delivery attempt (WIRE.md §5): which outcomes are
//! retried, and how long to wait — capped exponential backoff with jitter,
//! or the collector's `Retry-After`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Backoff bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait before the first retry.
    pub initial: Duration,
    /// Largest wait (also caps `Retry-After`).
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

/// The verdict on one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAction {
    /// Delivered.
    Done,
    /// Try again after a wait (`Some` = the collector's `Retry-After`).
    Retry(Option<Duration>),
    /// Give up on this batch.
    Fail,
}

/// Classifies a collector's status: 2xx (and 1xx/3xx, which a POST to a
/// collector does not expect but which mean the request was read) is done;
/// 408, 429 and 5xx except 501 are retried; other 4xx and 501 fail.
pub fn classify_status(status: u16, retry_after: Option<Duration>) -> RetryAction {
    match status {
        408 | 429 => RetryAction::Retry(retry_after),
        501 => RetryAction::Fail,
        500..=599 => RetryAction::Retry(retry_after),
        400..=499 => RetryAction::Fail,
        _ => RetryAction::Done,
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (1-based): `Retry-After` when
    /// given (capped at `max`), else `initial·2^(attempt-1)` capped at `max`,
    /// drawn uniformly from its upper half so that several rcapture
    /// instances do not retry in step.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d.min(self.max);
        }
        let exp = self
            .initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max);
        let half = exp / 2;
        half + half.mul_f64(jitter_unit())
    }
}

/// A number in [0, 1) from the clock's nanoseconds, mixed (splitmix64):
/// enough to spread retries, no RNG dependency.
fn jitter_unit() -> f64 {
    let ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut z = ns.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Parses `Retry-After` in seconds (the HTTP-date form is not honoured:
/// the backoff applies instead).
pub fn parse_retry_after(v: &[u8]) -> Option<Duration> {
    let s = std::str::from_utf8(v).ok()?.trim();
    s.parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(classify_status(200, None), RetryAction::Done);
        assert_eq!(classify_status(204, None), RetryAction::Done);
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(classify_status(s, None), RetryAction::Retry(_)),
                "{s}"
            );
        }
        for s in [400, 401, 404, 413, 501] {
            assert_eq!(classify_status(s, None), RetryAction::Fail, "{s}");
        }
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let p = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for attempt in 1..40 {
            let d = p.delay(attempt, None);
            let exp = Duration::from_millis(100 << (attempt - 1).min(10)).min(p.max);
            assert!(d >= exp / 2 && d <= exp, "{attempt}: {d:?}");
        }
        assert_eq!(p.delay(1, Some(Duration::from_secs(7))), p.max);
        assert_eq!(
            p.delay(1, Some(Duration::from_millis(300))),
            Duration::from_millis(300)
        );
        assert_eq!(parse_retry_after(b" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(b"Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
