//! The soak's figures: the RSS budget made of the configured sizes, the
//! collector's counts at the end, and the report printed for quoting.

use crate::collector::Counts;
use crate::probe::{Metrics, Status};
use crate::replay::Stopped;
use crate::{MIB, Run, Stopping, WORKERS};
use rcapture_net::Limits;
use rcapture_net::forward::ForwardConfig;
use rcapture_net::publish::{BatchPoolConfig, EntryMeta};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// The RSS the data plane may add to what the process holds before the
/// first event, from the configured sizes (bytes, by part).
#[derive(Debug)]
pub struct RssBudget {
    /// The workers' batch pools: every buffer may be filled.
    pub pools: u64,
    /// The clients' send queues: items of at most 64 bytes, and the
    /// entries copied out of shared batches for a client that holds its
    /// share of the pool (its spill, never more than its queue's bytes).
    pub client_queues: u64,
    /// The forwarder: its send queue (buffers may have up to twice the
    /// `queue_bytes` of content they are counted by), 16 pooled request
    /// bodies of up to 1 MiB, the pending store (a few batches).
    pub forwarder: u64,
    /// The collector's buffers (this test's; 1.25 MiB per connection).
    pub collector: u64,
    /// Allocator arenas and thread stacks.
    pub slack: u64,
}

impl RssBudget {
    pub fn new(
        pool: &BatchPoolConfig,
        limits: &Limits,
        fwd: &ForwardConfig,
        clients: usize,
    ) -> Self {
        let batch = pool.batch_bytes as u64
            + 64 * 1024
            + (pool.batch_entries * size_of::<EntryMeta>()) as u64;
        Self {
            pools: (WORKERS * pool.batches) as u64 * batch,
            client_queues: clients as u64
                * (limits.client_queue.frames as u64 * 64
                    + limits.client_spill_bytes.min(limits.client_queue.bytes) as u64),
            forwarder: 2 * fwd.queue_bytes as u64 + 16 * MIB + 4 * batch,
            collector: 3 * MIB,
            slack: 24 * MIB,
        }
    }

    pub fn total(&self) -> u64 {
        self.pools + self.client_queues + self.forwarder + self.collector + self.slack
    }
}

/// The collector's counts at the end.
#[derive(Debug)]
pub struct CollectorEnd {
    pub received: u64,
    /// Those by module ([`crate::wire::ModuleCounts`]' order).
    pub modules: crate::wire::ModuleCounts,
    pub batches: u64,
    pub rejected: u64,
    pub unavailable: u64,
    pub dropped_connections: u64,
    /// Outages begun: refused, 503, reset, 400.
    pub outages: [u64; 4],
    pub sampled: u64,
    pub seq_gaps: u64,
    pub duplicates: u64,
    pub payload_bytes: u64,
    pub errors: Vec<String>,
}

impl CollectorEnd {
    pub fn of(c: &Counts, errors: Vec<String>) -> Self {
        let o = |i: usize| c.outages[i].load(Relaxed);
        Self {
            received: c.received.load(Relaxed),
            modules: std::array::from_fn(|i| c.modules[i].load(Relaxed)),
            batches: c.batches.load(Relaxed),
            rejected: c.rejected.load(Relaxed),
            unavailable: c.unavailable.load(Relaxed),
            dropped_connections: c.dropped_connections.load(Relaxed),
            outages: [o(1), o(2), o(3), o(4)],
            sampled: c.sampled.load(Relaxed),
            seq_gaps: c.seq_gaps.load(Relaxed),
            duplicates: c.duplicates.load(Relaxed),
            payload_bytes: c.payload_bytes.load(Relaxed),
            errors,
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub fn print_figures(
    end: &Stopping,
    run: &Run,
    stopped: &Stopped,
    m: &Metrics,
    st: &Status,
    secs: u64,
    rate: u64,
    whole: Duration,
) {
    let s = run.production.as_secs_f64();
    let per_s = |n: u64| n as f64 / s;
    let c = &end.collector;
    let b = &end.budget;
    let f = st.forward.clone().unwrap_or_default();
    eprintln!("==== soak figures ====");
    eprintln!(
        "run: {s:.1} s of production (RCAPTURE_SOAK_SECS={secs}), drain {:.1} s, whole test {:.1} s; {WORKERS} workers, rate cap {}",
        run.drain.as_secs_f64(),
        whole.as_secs_f64(),
        if rate == 0 {
            "none".to_string()
        } else {
            format!("{rate} events/s")
        },
    );
    eprintln!(
        "capture: {} records replayed = {} events ({:.0}/s): {} captured ({:.0}/s) + {} filtered by the live pid filter",
        stopped.records,
        stopped.events,
        per_s(stopped.events),
        m.captured,
        per_s(m.captured),
        m.filtered
    );
    eprintln!(
        "server: took {} ({:.0}/s), dropped before it {} (no free batch or queue full); took nothing for up to {:.0} s",
        m.received,
        per_s(m.received),
        m.server_queue_dropped,
        run.server_idle.as_secs_f64()
    );
    eprintln!("server: took by module {:?}", m.received_by_module);
    for (i, ((name, _), r)) in end.behaviours.iter().zip(&end.reports).enumerate() {
        let Some(r) = r else {
            eprintln!("ws {name}: the client thread panicked");
            continue;
        };
        let n = end.ledger.counts(i);
        eprintln!(
            "ws {name} ({}): numbered {}, received {} ({:.0} MiB of payload), dropped for it {} (queue full {}, share {}, max_rate {}, at close {}), copied out {}, seq gaps {}, heartbeats {}; {}{}{}",
            r.local,
            n.seq,
            r.events,
            r.payload_bytes as f64 / MIB as f64,
            n.dropped,
            n.queue_full,
            n.share,
            n.max_rate,
            n.at_close,
            n.spilled,
            r.gaps,
            r.heartbeats,
            match (&r.stalled_at, &r.resumed_at) {
                (Some(a), Some(b)) => format!(
                    "stopped reading at {:.1} s, read again at {:.1} s; ",
                    a.as_secs_f64(),
                    b.as_secs_f64()
                ),
                _ => String::new(),
            },
            match &r.close {
                Some((code, reason)) => format!("closed {code} {reason:?}"),
                None => "ended without a close frame".into(),
            },
            if end.ledger.gone[i] {
                " before the end"
            } else {
                ""
            },
        );
    }
    eprintln!(
        "ws totals: sent {} dropped {} (queue full {}, share {}, max_rate {}, at close {}), copied out {}; {} clients closed",
        st.ws.sent,
        st.ws.dropped,
        st.ws.by_reason[0],
        st.ws.by_reason[1],
        st.ws.by_reason[2],
        st.ws.by_reason[3],
        st.ws.spilled,
        st.ws.closed_total
    );
    eprintln!(
        "forwarder: sent {} in {} batches, dropped {}, refused {} ({} batches), {} retries, queue {} B, last error {:?}",
        f.sent_events,
        f.sent_batches,
        f.dropped_events,
        f.failed_events,
        f.failed_batches,
        f.retries,
        f.queue_bytes,
        f.last_error
    );
    eprintln!(
        "collector: received {} in {} batches ({:.0} MiB of payload), answered 400 to {}, 503 {} times, dropped {} connections; outages refused/503/reset/400: {:?}; seq gaps {}, duplicates {}",
        c.received,
        c.batches,
        c.payload_bytes as f64 / MIB as f64,
        c.rejected,
        c.unavailable,
        c.dropped_connections,
        c.outages,
        c.seq_gaps,
        c.duplicates
    );
    eprintln!(
        "config: {} POST /config ({} failed), {} applied; HTTP answers by status {:?}",
        run.config_posts,
        run.config_failures.len(),
        end.control.applied.load(Relaxed),
        m.http
    );
    eprintln!(
        "rss: max {} MiB, bound {} MiB = {} before the first event + pools {} + client queues {} + forwarder {} + collector {} + slack {}",
        end.rss_max / MIB,
        (end.rss_base + b.total()) / MIB,
        end.rss_base / MIB,
        b.pools / MIB,
        b.client_queues / MIB,
        b.forwarder / MIB,
        b.collector / MIB,
        b.slack / MIB
    );
}
