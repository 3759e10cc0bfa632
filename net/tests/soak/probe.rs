//! What the soak reads from outside the server — `/metrics`, `/status`,
//! `POST /config` over real HTTP — and from the kernel: the process's RSS.

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One request on its own connection: (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the API");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_nodelay(true).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("{method} {path}: reading the response: {e}"));
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no response head in {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: bad status line {head:?}"));
    (status, body.to_string())
}

/// `GET` a JSON envelope's `data`; asserts 200.
pub fn get_json(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = http(addr, "GET", path, "");
    assert_eq!(status, 200, "GET {path}: {body}");
    let v: Value = serde_json::from_str(&body).expect("a JSON body");
    v["data"].clone()
}

/// The counters of one `/metrics` exposition.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Sum of `ecapture_events_total`: events the server took from workers.
    pub received: u64,
    /// `ecapture_events_total` by module (its pid label summed over).
    pub received_by_module: BTreeMap<String, u64>,
    pub captured: u64,
    pub filtered: u64,
    pub server_queue_dropped: u64,
    pub ws_sent: u64,
    /// `ecapture_websocket_dropped_events_total`, all reasons.
    pub ws_dropped: u64,
    /// `ecapture_websocket_dropped_events_total` by reason.
    pub ws_dropped_by: BTreeMap<String, u64>,
    /// `ecapture_websocket_client_dropped_events` by client (`ADDR#ID`),
    /// all reasons.
    pub client_dropped: BTreeMap<String, u64>,
    pub ws_spilled: u64,
    pub ws_closed_clients: u64,
    /// `ecapture_http_responses_total` by code.
    pub http: BTreeMap<u16, u64>,
    pub ws_clients: u64,
    /// The `ecapture_forward_*` series, by name without the prefix.
    pub forward: BTreeMap<String, u64>,
}

impl Metrics {
    pub fn get(addr: SocketAddr) -> Metrics {
        let (status, text) = http(addr, "GET", "/metrics", "");
        assert_eq!(status, 200, "GET /metrics: {text}");
        Metrics::parse(&text)
    }

    pub fn parse(text: &str) -> Metrics {
        let mut m = Metrics::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad line {line:?}"));
            let n = value as u64;
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            let label = |key: &str| {
                labels.split(',').find_map(|kv| {
                    kv.strip_prefix(key)?
                        .strip_prefix("=\"")?
                        .strip_suffix('"')
                        .map(str::to_string)
                })
            };
            match name {
                "ecapture_events_total" => {
                    m.received += n;
                    *m.received_by_module
                        .entry(label("module").expect("a module label"))
                        .or_default() += n;
                }
                "ecapture_captured_events_total" => m.captured = n,
                "ecapture_filtered_events_total" => m.filtered = n,
                "ecapture_server_queue_dropped_events_total" => m.server_queue_dropped = n,
                "ecapture_websocket_sent_events_total" => m.ws_sent = n,
                "ecapture_websocket_dropped_events_total" => {
                    m.ws_dropped += n;
                    m.ws_dropped_by
                        .insert(label("reason").expect("a reason label"), n);
                }
                "ecapture_websocket_clients" => m.ws_clients = n,
                "ecapture_websocket_client_dropped_events" => {
                    *m.client_dropped
                        .entry(label("client").expect("a client label"))
                        .or_default() += n;
                }
                "ecapture_websocket_spilled_events_total" => m.ws_spilled = n,
                "ecapture_websocket_closed_clients_total" => m.ws_closed_clients = n,
                "ecapture_http_responses_total" => {
                    let code = label("code").and_then(|c| c.parse().ok());
                    m.http.insert(code.expect("a code label"), n);
                }
                _ => {
                    if let Some(f) = name.strip_prefix("ecapture_forward_") {
                        m.forward.insert(f.to_string(), n);
                    }
                }
            }
        }
        m
    }

    /// An `ecapture_forward_*` series (without the prefix); 0 if absent.
    pub fn fwd(&self, name: &str) -> u64 {
        self.forward.get(name).copied().unwrap_or(0)
    }
}

/// One WebSocket client's counts in `/status` (`websocket.clients` while
/// connected, `websocket.closed` once gone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStat {
    /// `ADDR#ID`.
    pub client: String,
    /// Entries numbered for it.
    pub seq: u64,
    /// Written to its socket whole.
    pub sent: u64,
    pub queued: u64,
    /// Dropped, all reasons, then by reason.
    pub dropped: u64,
    pub queue_full: u64,
    pub share: u64,
    pub max_rate: u64,
    pub at_close: u64,
    /// Copied out of shared batches (it held its share of the pool).
    pub spilled: u64,
    /// Why it went (a closed client).
    pub closed: Option<String>,
}

impl ClientStat {
    fn parse(v: &Value) -> ClientStat {
        let n = |k: &str| {
            k.split('.')
                .fold(v, |v, k| &v[k])
                .as_u64()
                .unwrap_or_else(|| panic!("/status client {k} missing: {v}"))
        };
        ClientStat {
            client: v["client"].as_str().expect("a client name").to_string(),
            seq: n("seq"),
            sent: n("sent"),
            queued: n("queued"),
            dropped: n("dropped"),
            queue_full: n("dropped_by_reason.queue_full"),
            share: n("dropped_by_reason.share"),
            max_rate: n("dropped_by_reason.max_rate"),
            at_close: n("dropped_by_reason.closed"),
            spilled: n("spilled"),
            closed: v["closed"].as_str().map(str::to_string),
        }
    }

    /// The client whose socket is `local`.
    pub fn is(&self, local: SocketAddr) -> bool {
        self.client
            .strip_prefix(&local.to_string())
            .is_some_and(|r| r.starts_with('#'))
    }
}

/// The WebSocket part of one `/status`: every client's counts and the
/// totals over all clients ever (one snapshot).
#[derive(Debug, Clone, Default)]
pub struct WsStatus {
    pub clients: Vec<ClientStat>,
    /// The most recently closed clients (the server keeps 64).
    pub closed: Vec<ClientStat>,
    pub closed_total: u64,
    pub sent: u64,
    pub dropped: u64,
    /// `ws_dropped_by_reason`: queue_full, share, max_rate, closed.
    pub by_reason: [u64; 4],
    pub spilled: u64,
}

impl WsStatus {
    fn parse(s: &Value) -> WsStatus {
        let c = &s["counters"];
        let n = |v: &Value, k: &str| {
            v[k].as_u64()
                .unwrap_or_else(|| panic!("/status {k} missing: {v}"))
        };
        let list = |k: &str| {
            s["websocket"][k]
                .as_array()
                .unwrap_or_else(|| panic!("/status websocket.{k} missing: {s}"))
                .iter()
                .map(ClientStat::parse)
                .collect()
        };
        let by = &c["ws_dropped_by_reason"];
        WsStatus {
            clients: list("clients"),
            closed: list("closed"),
            closed_total: n(&s["websocket"], "closed_total"),
            sent: n(c, "ws_sent"),
            dropped: n(c, "ws_dropped"),
            by_reason: ["queue_full", "share", "max_rate", "closed"].map(|r| n(by, r)),
            spilled: n(c, "ws_spilled"),
        }
    }
}

/// What the soak reads from one `/status`.
#[derive(Debug, Clone)]
pub struct Status {
    pub ws: WsStatus,
    /// `None` when no forwarder ever ran.
    pub forward: Option<Forward>,
}

impl Status {
    pub fn get(addr: SocketAddr) -> Status {
        let s = get_json(addr, "/status");
        Status {
            ws: WsStatus::parse(&s),
            forward: Forward::parse(&s),
        }
    }
}

/// The forwarder's counters from `/status`: totals over every forwarder
/// that ran (`None` when none ever did).
#[derive(Debug, Clone, Default)]
pub struct Forward {
    /// A forwarder runs now.
    pub enabled: bool,
    /// Forwarders replaced or disabled so far.
    pub retired: u64,
    pub sent_events: u64,
    pub sent_batches: u64,
    pub failed_batches: u64,
    pub failed_events: u64,
    pub retries: u64,
    pub dropped_events: u64,
    pub queue_bytes: u64,
    pub last_error: Option<String>,
}

impl Forward {
    fn parse(s: &Value) -> Option<Forward> {
        let f = &s["counters"]["forward"];
        if f.is_null() {
            return None;
        }
        let n = |k: &str| {
            f[k].as_u64()
                .unwrap_or_else(|| panic!("/status forward.{k} missing: {f}"))
        };
        Some(Forward {
            enabled: f["enabled"]
                .as_bool()
                .unwrap_or_else(|| panic!("/status forward.enabled missing: {f}")),
            retired: n("retired"),
            sent_events: n("sent_events"),
            sent_batches: n("sent_batches"),
            failed_batches: n("failed_batches"),
            failed_events: n("failed_events"),
            retries: n("retries"),
            dropped_events: n("dropped_events"),
            queue_bytes: n("queue_bytes"),
            last_error: f["last_error"].as_str().map(str::to_string),
        })
    }

    /// Events the forwarder has settled: delivered, dropped or given up.
    pub fn settled(&self) -> u64 {
        self.sent_events + self.dropped_events + self.failed_events
    }
}

/// Resident set size of this process, bytes (`VmRSS` of /proc/self/status).
pub fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}
