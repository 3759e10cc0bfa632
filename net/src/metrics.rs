//! Counters kept by the event loop and the Prometheus text exposition (WIRE.md §6).

use crate::access::Refusal;
use crate::conn::{ClientCounts, DropReason};
use crate::control::CaptureCounters;
use crate::eventfile::EventFileStats;
use crate::forward::retire::Retiring;
use crate::forward::{ForwardStats, Forwarder};
use crate::pid_labels::PidLabels;
use crate::publish::EntryMeta;
use rcapture_core::event::Module;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write;
use std::time::Duration;

pub use crate::pid_labels::MAX_PID_LABELS;

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// Closed WebSocket clients whose final counts `/status` keeps.
pub const RECENT_CLOSED: usize = 64;

/// One WebSocket client's counts, as `/status` and `/metrics` show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientReport {
    /// `PEER#ID`.
    pub name: String,
    pub counts: ClientCounts,
    /// Entries queued now.
    pub queued: u64,
    /// Bytes its spill holds now (taken from the server-wide budget).
    pub spill_bytes: u64,
    /// Why the connection ended (a closed client).
    pub closed: Option<&'static str>,
}

/// The forwarder's counters over every forwarder the server has run:
/// those a `POST /config` replaced or disabled (their final counts, after
/// the bounded shutdown; while it runs in the background, their live
/// counts) plus the running one, so they never go down.
#[derive(Debug, Default)]
pub struct ForwardTotals {
    retired: ForwardStats,
    /// Replaced forwarders still shutting down (on threads of their own).
    retiring: Vec<Retiring>,
    /// Forwarders replaced or disabled.
    pub retired_count: u64,
}

impl ForwardTotals {
    /// Adds the final counts of a forwarder that has been shut down.
    pub fn retire(&mut self, s: ForwardStats) {
        self.fold(s);
        self.retired_count += 1;
    }

    /// Takes a replaced or disabled forwarder and shuts it down in the
    /// background (waiting up to `wait` for delivery), so the caller does
    /// not wait; its counts are in the totals meanwhile and after.
    pub fn retire_in_background(&mut self, f: Forwarder, wait: Duration) {
        self.reap();
        self.retiring.push(Retiring::start(f, wait));
        self.retired_count += 1;
    }

    /// Waits for every background shutdown to end (at server stop).
    pub fn wait_retiring(&mut self) {
        for r in std::mem::take(&mut self.retiring) {
            let s = r.wait();
            self.fold(s);
        }
    }

    /// Folds the final counts of the background shutdowns that have ended.
    fn reap(&mut self) {
        let mut i = 0;
        while i < self.retiring.len() {
            if self.retiring[i].is_done() {
                let s = self.retiring.swap_remove(i).wait();
                self.fold(s);
            } else {
                i += 1;
            }
        }
    }

    fn fold(&mut self, s: ForwardStats) {
        add_forward(&mut self.retired, s);
        self.retired.queue_bytes = 0;
    }

    /// The totals with `current` (the running forwarder's counters), or
    /// `None` if no forwarder ever ran. `queue_bytes` is that of the
    /// running one and of those still shutting down; `last_error` the most
    /// recent one's.
    pub fn with(&self, current: Option<ForwardStats>) -> Option<ForwardStats> {
        if current.is_none() && self.retired_count == 0 {
            return None;
        }
        let mut t = self.retired.clone();
        for r in &self.retiring {
            add_forward(&mut t, r.stats());
        }
        if let Some(c) = current {
            add_forward(&mut t, c);
        }
        Some(t)
    }
}

fn add_forward(t: &mut ForwardStats, s: ForwardStats) {
    t.sent_events += s.sent_events;
    t.sent_batches += s.sent_batches;
    t.failed_batches += s.failed_batches;
    t.failed_events += s.failed_events;
    t.retries += s.retries;
    t.dropped_events += s.dropped_events;
    t.queue_bytes += s.queue_bytes;
    t.skipped_events += s.skipped_events;
    t.malformed_requests += s.malformed_requests;
    if s.last_error.is_some() {
        t.last_error = s.last_error;
    }
}

/// Counters of the server side.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    /// `ecapture_events_total`'s series: the busiest pids per module.
    pids: HashMap<Module, PidLabels>,
    payload_bytes: HashMap<Module, u64>,
    /// Events received from the workers.
    pub received: u64,
    /// The counts of every WebSocket client that has gone.
    pub ws_closed: ClientCounts,
    /// How many have gone.
    pub ws_closed_clients: u64,
    /// The last [`RECENT_CLOSED`] of them, oldest first.
    pub ws_recent_closed: VecDeque<ClientReport>,
    /// HTTP requests answered, by status.
    pub http_responses: HashMap<u16, u64>,
    /// Connections closed for leaving too many replies unread: HTTP
    /// (pipelined responses, 429) and WebSocket (pongs and replies, 1008).
    pub backlog_closed: [u64; 2],
    /// Requests refused by the access checks, by [`Refusal::index`].
    pub refused: [u64; Refusal::ALL.len()],
    latency_counts: [u64; LATENCY_BUCKETS.len() + 1],
    latency_sum: f64,
}

impl ServerMetrics {
    /// Counts one event handed over by a worker; `latency_s` from capture to now.
    pub fn event(&mut self, m: &EntryMeta, latency_s: f64) {
        self.received += 1;
        self.pids.entry(m.module).or_default().count(m.pid);
        *self.payload_bytes.entry(m.module).or_default() += u64::from(m.payload_len);
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| latency_s <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency_counts[i] += 1;
        self.latency_sum += latency_s.max(0.0);
    }

    /// Counters at zero, with room for the closed clients kept (so that a
    /// client going allocates nothing).
    pub fn new() -> Self {
        Self {
            ws_recent_closed: VecDeque::with_capacity(RECENT_CLOSED),
            ..Self::default()
        }
    }

    /// Takes the final counts of a WebSocket client that has gone.
    pub fn client_closed(&mut self, r: ClientReport) {
        self.ws_closed.add(&r.counts);
        self.ws_closed_clients += 1;
        if self.ws_recent_closed.len() == RECENT_CLOSED {
            self.ws_recent_closed.pop_front();
        }
        self.ws_recent_closed.push_back(r);
    }

    /// The counts of every WebSocket client ever: gone and `live`.
    pub fn ws_totals(&self, live: &[ClientReport]) -> ClientCounts {
        let mut t = self.ws_closed;
        for c in live {
            t.add(&c.counts);
        }
        t
    }

    /// The exposition text.
    pub fn render(&self, view: &MetricsView<'_>) -> String {
        let mut o = String::with_capacity(4096);
        head(
            &mut o,
            "ecapture_events_total",
            "counter",
            "Events captured, by module and pid: the 32 busiest pids of each module lately (decayed counts) have their own series, the rest count in pid=\"other\" (a displaced pid's count moves there).",
        );
        let mut mods: Vec<_> = self.pids.iter().collect();
        mods.sort_by_key(|(m, _)| m.name());
        for (m, p) in mods {
            for (pid, n) in p.series() {
                let _ = writeln!(
                    o,
                    "ecapture_events_total{{module=\"{}\",pid=\"{pid}\"}} {n}",
                    m.name()
                );
            }
            if let Some(n) = p.other() {
                let _ = writeln!(
                    o,
                    "ecapture_events_total{{module=\"{}\",pid=\"other\"}} {n}",
                    m.name()
                );
            }
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
        counters(
            &mut o,
            [
                (
                    "ecapture_orphan_records_total",
                    "Records dropped by reassembly: the first record of their call was lost, so there was no call to join them to.",
                    c.orphan_records,
                ),
                (
                    "ecapture_orphan_bytes_total",
                    "Payload bytes of the orphan records.",
                    c.orphan_bytes,
                ),
                (
                    "ecapture_evicted_calls_total",
                    "Calls emitted before their last record because every reassembly slot was busy.",
                    c.evicted_calls,
                ),
                (
                    "ecapture_output_dropped_events_total",
                    "Events the stdout text (or key log) output did not write: it was behind (a slow terminal, a pipe nobody reads) or a write failed.",
                    c.output_dropped,
                ),
            ],
        );
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
        let ws = self.ws_totals(view.ws_clients);
        head(
            &mut o,
            "ecapture_websocket_sent_events_total",
            "counter",
            "Event entries written to WebSocket clients.",
        );
        let _ = writeln!(o, "ecapture_websocket_sent_events_total {}", ws.sent);
        head(
            &mut o,
            "ecapture_websocket_dropped_events_total",
            "counter",
            "Event entries dropped for WebSocket clients, all clients ever, by reason: queue_full (slow client), share (a lagging client past its share of the batch pool and its spill), max_rate, closed (queued when the connection went), deflate (a permessage-deflate client past its part of the loop's compression work per round).",
        );
        for r in DropReason::ALL {
            let _ = writeln!(
                o,
                "ecapture_websocket_dropped_events_total{{reason=\"{}\"}} {}",
                r.name(),
                ws.dropped_for(r)
            );
        }
        head(
            &mut o,
            "ecapture_websocket_client_dropped_events",
            "gauge",
            "Event entries dropped for each connected WebSocket client, by reason.",
        );
        for c in view.ws_clients {
            for r in DropReason::ALL {
                let _ = writeln!(
                    o,
                    "ecapture_websocket_client_dropped_events{{client=\"{}\",reason=\"{}\"}} {}",
                    c.name,
                    r.name(),
                    c.counts.dropped_for(r)
                );
            }
        }
        head(
            &mut o,
            "ecapture_websocket_spilled_events_total",
            "counter",
            "Event entries copied out of shared batches for WebSocket clients that held their share of the batch pool.",
        );
        let _ = writeln!(o, "ecapture_websocket_spilled_events_total {}", ws.spilled);
        head(
            &mut o,
            "ecapture_websocket_spill_bytes",
            "gauge",
            "Bytes the WebSocket clients' spills hold now (together at most --spill-budget-bytes).",
        );
        let _ = writeln!(
            o,
            "ecapture_websocket_spill_bytes {}",
            view.ws_clients.iter().map(|c| c.spill_bytes).sum::<u64>()
        );
        head(
            &mut o,
            "ecapture_websocket_closed_clients_total",
            "counter",
            "WebSocket clients that have gone.",
        );
        let _ = writeln!(
            o,
            "ecapture_websocket_closed_clients_total {}",
            self.ws_closed_clients
        );
        render_forward(&mut o, view.forward.as_ref(), view.forward_enabled);
        if let Some(f) = view.event_file {
            render_event_file(&mut o, f);
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
            "ecapture_reply_backlog_closed_connections_total",
            "counter",
            "Connections closed for not reading their replies: pipelined HTTP responses (429) or WebSocket pongs and replies (1008).",
        );
        for (protocol, n) in ["http", "websocket"].iter().zip(self.backlog_closed) {
            let _ = writeln!(
                o,
                "ecapture_reply_backlog_closed_connections_total{{protocol=\"{protocol}\"}} {n}"
            );
        }
        head(
            &mut o,
            "ecapture_server_refused_requests_total",
            "counter",
            "Requests refused by the access checks, by reason: local_user (a local user not allowed by --allow-uid/--allow-gid), token (--auth-token missing or wrong), origin, host (a browser page of another site, DNS rebinding), content_type (a POST that is not JSON).",
        );
        for r in Refusal::ALL {
            let _ = writeln!(
                o,
                "ecapture_server_refused_requests_total{{reason=\"{}\"}} {}",
                r.name(),
                self.refused[r.index()]
            );
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

fn head(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Unlabelled counters: (name, help, value).
fn counters<const N: usize>(o: &mut String, rows: [(&str, &str, u64); N]) {
    for (name, help, v) in rows {
        head(o, name, "counter", help);
        let _ = writeln!(o, "{name} {v}");
    }
}

/// WIRE.md §6 "dropped by the forwarder, batches sent/failed", with the
/// rest of the `/status` forward counters; zeros before any forwarder ran.
fn render_forward(o: &mut String, f: Option<&ForwardStats>, enabled: bool) {
    let zero = ForwardStats::default();
    let f = f.unwrap_or(&zero);
    head(
        o,
        "ecapture_forward_enabled",
        "gauge",
        "1 while events are forwarded to a collector.",
    );
    let _ = writeln!(o, "ecapture_forward_enabled {}", u8::from(enabled));
    counters(
        o,
        [
            (
                "ecapture_forward_sent_events_total",
                "Events the collector accepted.",
                f.sent_events,
            ),
            (
                "ecapture_forward_sent_batches_total",
                "Requests the collector accepted.",
                f.sent_batches,
            ),
            (
                "ecapture_forward_failed_batches_total",
                "Requests the collector refused for good (4xx other than 408/429, 501).",
                f.failed_batches,
            ),
            (
                "ecapture_forward_failed_events_total",
                "Events in the requests refused for good.",
                f.failed_events,
            ),
            (
                "ecapture_forward_retries_total",
                "Attempts repeated after a connect error, a timeout, 408, 429 or 5xx.",
                f.retries,
            ),
            (
                "ecapture_forward_dropped_events_total",
                "Events dropped by the forwarder (intake or queue full, an unreadable entry, a gzip error, or left at shutdown).",
                f.dropped_events,
            ),
            (
                "ecapture_forward_skipped_events_total",
                "http_proxy: data events that are not an HTTP/1.x request.",
                f.skipped_events,
            ),
            (
                "ecapture_forward_malformed_requests_total",
                "http_proxy: requests that could not be parsed.",
                f.malformed_requests,
            ),
        ],
    );
    head(
        o,
        "ecapture_forward_queue_bytes",
        "gauge",
        "Bytes of encoded requests waiting to be sent.",
    );
    let _ = writeln!(o, "ecapture_forward_queue_bytes {}", f.queue_bytes);
    if let Some(e) = &f.last_error {
        head(
            o,
            "ecapture_forward_last_error_info",
            "gauge",
            "The forwarder's most recent error (as /status forward.last_error).",
        );
        o.push_str("ecapture_forward_last_error_info{error=\"");
        escape_label(o, e);
        o.push_str("\"} 1\n");
    }
}

fn render_event_file(o: &mut String, f: &EventFileStats) {
    counters(
        o,
        [
            (
                "ecapture_event_file_written_events_total",
                "Events written to the event file.",
                f.written_events,
            ),
            (
                "ecapture_event_file_dropped_events_total",
                "Events the event file lost (queue full, a failed write).",
                f.dropped_events,
            ),
            (
                "ecapture_event_file_written_bytes_total",
                "Bytes written to the event file.",
                f.bytes,
            ),
            (
                "ecapture_event_file_rotations_total",
                "Rotations of the event file.",
                f.files_rotated,
            ),
            (
                "ecapture_event_file_deleted_files_total",
                "Rotated event files deleted (more than keep).",
                f.files_deleted,
            ),
        ],
    );
}

/// Appends a label value escaped as the text format wants (`\`, `"`,
/// newline), cut at 200 characters.
fn escape_label(o: &mut String, v: &str) {
    for c in v.chars().take(200) {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
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
    /// Each connected WebSocket client.
    pub ws_clients: &'a [ClientReport],
    pub publish_dropped: u64,
    /// The forwarders' totals ([`ForwardTotals::with`]).
    pub forward: Option<ForwardStats>,
    /// A forwarder runs now.
    pub forward_enabled: bool,
    pub event_file: Option<&'a EventFileStats>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_cut() {
        let mut o = String::new();
        escape_label(&mut o, "a \"b\" \\c\nd");
        assert_eq!(o, r#"a \"b\" \\c\nd"#);
        o.clear();
        escape_label(&mut o, &"x".repeat(500));
        assert_eq!(o.len(), 200);
    }

    #[test]
    fn forward_totals_add_retired_forwarders_to_the_running_one() {
        let mut t = ForwardTotals::default();
        assert_eq!(t.with(None), None, "no forwarder ever ran");
        let s = |sent, dropped, queue, err: Option<&str>| ForwardStats {
            sent_events: sent,
            dropped_events: dropped,
            queue_bytes: queue,
            retries: 1,
            last_error: err.map(str::to_string),
            ..ForwardStats::default()
        };
        t.retire(s(10, 2, 99, Some("refused")));
        t.retire(s(5, 0, 0, None));
        let off = t.with(None).unwrap();
        assert_eq!(
            (
                off.sent_events,
                off.dropped_events,
                off.retries,
                off.queue_bytes
            ),
            (15, 2, 2, 0)
        );
        assert_eq!(off.last_error.as_deref(), Some("refused"));
        let on = t.with(Some(s(1, 1, 7, Some("503")))).unwrap();
        assert_eq!(
            (
                on.sent_events,
                on.dropped_events,
                on.retries,
                on.queue_bytes
            ),
            (16, 3, 3, 7)
        );
        assert_eq!(on.last_error.as_deref(), Some("503"));
        assert_eq!(t.retired_count, 2);
    }
}
