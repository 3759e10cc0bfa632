//! Counters kept by the event loop and the Prometheus text exposition (WIRE.md §6).

use crate::control::CaptureCounters;
use crate::publish::EntryMeta;
use rcapture_core::event::Module;
use std::collections::HashMap;
use std::fmt::Write;

/// Distinct pids labelled per module before the rest go to `pid="other"`.
pub const MAX_PID_LABELS: usize = 32;

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// Counters of the server side.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    events: HashMap<(Module, u32), u64>,
    other: HashMap<Module, u64>,
    payload_bytes: HashMap<Module, u64>,
    /// Events received from the workers.
    pub received: u64,
    /// WebSocket entries written / dropped (all clients, ever).
    pub ws_sent: u64,
    pub ws_dropped: u64,
    /// HTTP requests answered, by status.
    pub http_responses: HashMap<u16, u64>,
    latency_counts: [u64; LATENCY_BUCKETS.len() + 1],
    latency_sum: f64,
}

impl ServerMetrics {
    /// Counts one event handed over by a worker; `latency_s` from capture to now.
    pub fn event(&mut self, m: &EntryMeta, latency_s: f64) {
        self.received += 1;
        let key = (m.module, m.pid);
        if let Some(n) = self.events.get_mut(&key) {
            *n += 1;
        } else if self.events.keys().filter(|(k, _)| *k == m.module).count() < MAX_PID_LABELS {
            self.events.insert(key, 1);
        } else {
            *self.other.entry(m.module).or_default() += 1;
        }
        *self.payload_bytes.entry(m.module).or_default() += u64::from(m.payload_len);
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| latency_s <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency_counts[i] += 1;
        self.latency_sum += latency_s.max(0.0);
    }

    /// The exposition text.
    pub fn render(&self, view: &MetricsView<'_>) -> String {
        let mut o = String::with_capacity(4096);
        let head = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            &mut o,
            "ecapture_events_total",
            "counter",
            "Events captured, by module and pid (busiest pids; the rest as pid=\"other\").",
        );
        let mut ev: Vec<_> = self.events.iter().collect();
        ev.sort_by_key(|((m, pid), _)| (m.name(), *pid));
        for ((m, pid), n) in ev {
            let _ = writeln!(
                o,
                "ecapture_events_total{{module=\"{}\",pid=\"{pid}\"}} {n}",
                m.name()
            );
        }
        for (m, n) in by_module(&self.other) {
            let _ = writeln!(
                o,
                "ecapture_events_total{{module=\"{}\",pid=\"other\"}} {n}",
                m.name()
            );
        }
        head(
            &mut o,
            "ecapture_payload_bytes_total",
            "counter",
            "Payload bytes captured, by module.",
        );
        for (m, n) in by_module(&self.payload_bytes) {
            let _ = writeln!(
                o,
                "ecapture_payload_bytes_total{{module=\"{}\"}} {n}",
                m.name()
            );
        }
        head(
            &mut o,
            "ecapture_connections_active",
            "gauge",
            "Connections open to rcapture's listeners (HTTP and WebSocket).",
        );
        let _ = writeln!(o, "ecapture_connections_active {}", view.connections);
        head(
            &mut o,
            "ecapture_websocket_clients",
            "gauge",
            "WebSocket stream clients connected.",
        );
        let _ = writeln!(o, "ecapture_websocket_clients {}", view.ws_clients.len());
        let c = view.capture;
        head(
            &mut o,
            "ecapture_captured_events_total",
            "counter",
            "Events produced by the capture workers.",
        );
        let _ = writeln!(o, "ecapture_captured_events_total {}", c.captured);
        head(
            &mut o,
            "ecapture_kernel_lost_events_total",
            "counter",
            "Records the kernel could not write to a full ring buffer, by CPU.",
        );
        for (cpu, n) in &c.lost_kernel_per_cpu {
            let _ = writeln!(o, "ecapture_kernel_lost_events_total{{cpu=\"{cpu}\"}} {n}");
        }
        head(
            &mut o,
            "ecapture_truncated_events_total",
            "counter",
            "Calls cut at the capture limit or by a lost record.",
        );
        let _ = writeln!(o, "ecapture_truncated_events_total {}", c.truncated_events);
        head(
            &mut o,
            "ecapture_truncated_bytes_total",
            "counter",
            "Bytes of calls that were not captured.",
        );
        let _ = writeln!(o, "ecapture_truncated_bytes_total {}", c.truncated_bytes);
        head(
            &mut o,
            "ecapture_filtered_events_total",
            "counter",
            "Events skipped by the live pid/uid filter.",
        );
        let _ = writeln!(o, "ecapture_filtered_events_total {}", c.filtered);
        head(
            &mut o,
            "ecapture_malformed_records_total",
            "counter",
            "Records rejected by the decoder.",
        );
        let _ = writeln!(o, "ecapture_malformed_records_total {}", c.malformed);
        head(
            &mut o,
            "ecapture_incomplete_calls_total",
            "counter",
            "Calls delivered with a gap (a record was lost).",
        );
        let _ = writeln!(o, "ecapture_incomplete_calls_total {}", c.incomplete_calls);
        head(
            &mut o,
            "ecapture_server_queue_dropped_events_total",
            "counter",
            "Events dropped between the workers and the server (no free batch or queue full).",
        );
        let _ = writeln!(
            o,
            "ecapture_server_queue_dropped_events_total {}",
            view.publish_dropped
        );
        head(
            &mut o,
            "ecapture_websocket_sent_events_total",
            "counter",
            "Event entries written to WebSocket clients.",
        );
        let _ = writeln!(o, "ecapture_websocket_sent_events_total {}", self.ws_sent);
        head(
            &mut o,
            "ecapture_websocket_dropped_events_total",
            "counter",
            "Event entries dropped for WebSocket clients (slow client or max_rate), all clients ever.",
        );
        let _ = writeln!(
            o,
            "ecapture_websocket_dropped_events_total {}",
            self.ws_dropped
        );
        head(
            &mut o,
            "ecapture_websocket_client_dropped_events",
            "gauge",
            "Event entries dropped for each connected WebSocket client.",
        );
        for (id, dropped) in view.ws_clients {
            let _ = writeln!(
                o,
                "ecapture_websocket_client_dropped_events{{client=\"{id}\"}} {dropped}"
            );
        }
        head(
            &mut o,
            "ecapture_http_responses_total",
            "counter",
            "HTTP responses, by status code.",
        );
        for (code, n) in sorted(&self.http_responses) {
            let _ = writeln!(o, "ecapture_http_responses_total{{code=\"{code}\"}} {n}");
        }
        head(
            &mut o,
            "ecapture_event_latency_seconds",
            "histogram",
            "Time from capture in the kernel to hand-over to the server.",
        );
        let mut cum = 0;
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            cum += self.latency_counts[i];
            let _ = writeln!(
                o,
                "ecapture_event_latency_seconds_bucket{{le=\"{b}\"}} {cum}"
            );
        }
        cum += self.latency_counts[LATENCY_BUCKETS.len()];
        let _ = writeln!(
            o,
            "ecapture_event_latency_seconds_bucket{{le=\"+Inf\"}} {cum}"
        );
        let _ = writeln!(o, "ecapture_event_latency_seconds_sum {}", self.latency_sum);
        let _ = writeln!(o, "ecapture_event_latency_seconds_count {cum}");
        o
    }
}

fn sorted<K: Ord + Copy, V: Copy>(m: &HashMap<K, V>) -> Vec<(K, V)> {
    let mut v: Vec<_> = m.iter().map(|(k, v)| (*k, *v)).collect();
    v.sort_by_key(|a| a.0);
    v
}

fn by_module(m: &HashMap<Module, u64>) -> Vec<(Module, u64)> {
    let mut v: Vec<_> = m.iter().map(|(k, v)| (*k, *v)).collect();
    v.sort_by_key(|(k, _)| k.name());
    v
}

/// What the renderer needs from outside the metrics.
#[derive(Debug)]
pub struct MetricsView<'a> {
    pub capture: &'a CaptureCounters,
    pub connections: usize,
    /// (client id, dropped) of each connected WebSocket client.
    pub ws_clients: &'a [(String, u64)],
    pub publish_dropped: u64,
    pub forward: Option<&'a crate::forward::ForwardStats>,
    pub event_file: Option<&'a crate::eventfile::EventFileStats>,
}
