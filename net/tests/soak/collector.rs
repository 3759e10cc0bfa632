//! A collector that flaps: a real HTTP/1.1 server on loopback that takes
//! `LogBatch` POSTs and counts every entry, up for a while, then down for a
//! while in one of several ways, round and round:
//!
//! - `Refuse`: the port is closed (connections are refused), open
//!   connections are dropped;
//! - `Unavailable`: every request gets 503 (every other one with
//!   `Retry-After: 1`);
//! - `Reset`: connections are accepted and dropped without a response;
//! - `Reject`: every request gets 400 (the forwarder gives the batch up).
//!
//! An entry is counted as received only once the 200 (or, for `Reject`, the
//! 400) has been written, so that what the collector counts is what the
//! forwarder is told. The forwarder's `seq` is followed across batches:
//! it must only grow (a repeat would be a duplicate delivery).

use crate::wire::{self, ModuleCounts, module_index};
use prost::Message;
use rcapture_proto::LogBatch;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The collector's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Up = 0,
    Refuse = 1,
    Unavailable = 2,
    Reset = 3,
    Reject = 4,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            1 => Phase::Refuse,
            2 => Phase::Unavailable,
            3 => Phase::Reset,
            4 => Phase::Reject,
            _ => Phase::Up,
        }
    }
}

/// The outages, in turn, and how long each lasts.
const OUTAGES: [(Phase, Duration); 5] = [
    (Phase::Refuse, Duration::from_secs(3)),
    (Phase::Unavailable, Duration::from_secs(3)),
    (Phase::Reset, Duration::from_secs(2)),
    (Phase::Reject, Duration::from_millis(700)),
    (Phase::Unavailable, Duration::from_secs(2)),
];
/// How long the collector stays up between outages.
const UP: Duration = Duration::from_secs(4);

/// Counts of the collector.
#[derive(Debug, Default)]
pub struct Counts {
    /// Entries in requests answered 200.
    pub received: AtomicU64,
    /// Those entries by module ([`wire::ModuleCounts`]' order).
    pub modules: [AtomicU64; rcapture_core::event::Module::ALL.len()],
    /// Requests answered 200.
    pub batches: AtomicU64,
    /// Entries in requests answered 400.
    pub rejected: AtomicU64,
    /// Requests answered 503.
    pub unavailable: AtomicU64,
    /// Connections dropped without a response.
    pub dropped_connections: AtomicU64,
    /// Outages begun, by phase (`Phase as usize`).
    pub outages: [AtomicU64; 5],
    /// Batches fully decoded with prost (samples), all consistent.
    pub sampled: AtomicU64,
    /// Forwarder `seq`s missing between received or rejected entries.
    pub seq_gaps: AtomicU64,
    /// Entries whose `seq` had been seen before.
    pub duplicates: AtomicU64,
    /// Payload bytes received.
    pub payload_bytes: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    phase: AtomicU8,
    flapping: AtomicBool,
    stop: AtomicBool,
    counts: Counts,
    /// Forwarder `seq` ranges seen (received or rejected), merged, in
    /// order (two requests are in flight: batches may arrive out of order).
    seen: Mutex<Vec<(u64, u64)>>,
    errors: Mutex<Vec<String>>,
}

impl Shared {
    fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Relaxed))
    }

    fn error(&self, e: String) {
        let mut v = self.errors.lock().unwrap();
        if v.len() < 10 {
            v.push(e);
        }
    }
}

/// A running collector.
#[derive(Debug)]
pub struct Collector {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Collector {
    /// Binds a port and starts flapping: up first.
    pub fn start() -> Collector {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind the collector");
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let shared = Arc::new(Shared {
            phase: AtomicU8::new(Phase::Up as u8),
            flapping: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            counts: Counts::default(),
            seen: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("soak-collector".into())
                .spawn(move || accept_loop(Some(l), addr, &shared))
                .unwrap()
        };
        let flapper = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("soak-flapper".into())
                .spawn(move || flap(&shared))
                .unwrap()
        };
        Collector {
            addr,
            shared,
            threads: vec![acceptor, flapper],
        }
    }

    pub fn counts(&self) -> &Counts {
        &self.shared.counts
    }

    pub fn phase(&self) -> Phase {
        self.shared.phase()
    }

    /// Stays up from now on.
    pub fn settle(&self) {
        self.shared.flapping.store(false, Relaxed);
        self.shared.phase.store(Phase::Up as u8, Relaxed);
    }

    /// Problems seen in requests (bad bodies, seq going back).
    pub fn errors(&self) -> Vec<String> {
        self.shared.errors.lock().unwrap().clone()
    }

    /// Stops every thread; returns how many panicked.
    pub fn stop(self) -> usize {
        self.shared.stop.store(true, Relaxed);
        self.threads
            .into_iter()
            .map(|t| usize::from(t.join().is_err()))
            .sum()
    }
}

fn flap(shared: &Shared) {
    let sleep = |d: Duration| {
        let end = Instant::now() + d;
        while Instant::now() < end && shared.flapping.load(Relaxed) && !shared.stop.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
        shared.flapping.load(Relaxed) && !shared.stop.load(Relaxed)
    };
    for (phase, down) in OUTAGES.iter().cycle() {
        if !sleep(UP) {
            return;
        }
        shared.counts.outages[*phase as usize].fetch_add(1, Relaxed);
        shared.phase.store(*phase as u8, Relaxed);
        let going = sleep(*down);
        if shared.flapping.load(Relaxed) {
            shared.phase.store(Phase::Up as u8, Relaxed);
        }
        if !going {
            return;
        }
    }
}

fn accept_loop(mut listener: Option<TcpListener>, addr: SocketAddr, shared: &Arc<Shared>) {
    let mut handlers: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.load(Relaxed) {
        handlers.retain(|h| !h.is_finished());
        let phase = shared.phase();
        if phase == Phase::Refuse {
            listener = None;
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let Some(l) = listener.as_ref() else {
            // Back up on the same port (SO_REUSEADDR is set by std). Should
            // something else have taken the port meanwhile, keep trying: to
            // the forwarder that is a longer outage.
            match TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|()| l)) {
                Ok(l) => listener = Some(l),
                Err(e) => {
                    shared.error(format!("rebinding {addr}: {e}"));
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            continue;
        };
        match l.accept() {
            Ok((s, _)) => {
                if phase == Phase::Reset {
                    shared.counts.dropped_connections.fetch_add(1, Relaxed);
                    drop(s);
                    continue;
                }
                let shared = Arc::clone(shared);
                handlers.push(
                    std::thread::Builder::new()
                        .name("soak-collector-conn".into())
                        .spawn(move || serve(s, &shared))
                        .unwrap(),
                );
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => {
                shared.error(format!("accept: {e}"));
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    for h in handlers {
        let _ = h.join();
    }
}

/// One collector connection: keep-alive requests until the peer closes or
/// an outage drops the connection.
fn serve(mut s: TcpStream, shared: &Shared) {
    s.set_nonblocking(false).unwrap();
    // Each response goes out in one write, at once (no Nagle wait for the
    // forwarder's delayed ACK).
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 256 * 1024];
    let mut n503 = 0u64;
    loop {
        if shared.stop.load(Relaxed) {
            return;
        }
        // Whole requests buffered.
        while let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let end = head_end + 4 + len;
            if buf.len() < end {
                break;
            }
            let phase = shared.phase();
            let body = &buf[head_end + 4..end];
            let ok = match phase {
                Phase::Refuse | Phase::Reset => {
                    shared.counts.dropped_connections.fetch_add(1, Relaxed);
                    return;
                }
                Phase::Unavailable => {
                    n503 += 1;
                    let extra = if n503.is_multiple_of(2) {
                        "Retry-After: 1\r\n"
                    } else {
                        ""
                    };
                    let r = s.write_all(
                        format!(
                            "HTTP/1.1 503 Service Unavailable\r\n{extra}Content-Length: 0\r\n\r\n"
                        )
                        .as_bytes(),
                    );
                    if r.is_ok() {
                        shared.counts.unavailable.fetch_add(1, Relaxed);
                    }
                    r
                }
                Phase::Up | Phase::Reject => {
                    if !head.starts_with("post ") || !head.contains("application/x-protobuf") {
                        shared.error(format!("unexpected request head: {head}"));
                    }
                    match entries(body) {
                        Ok(scan) => {
                            let status = if phase == Phase::Up {
                                "200 OK"
                            } else {
                                "400 Bad Request"
                            };
                            let r = s.write_all(
                                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n")
                                    .as_bytes(),
                            );
                            if r.is_ok() {
                                account(shared, phase, body, &scan);
                            }
                            r
                        }
                        Err(e) => {
                            shared.error(format!("bad LogBatch body: {e}"));
                            s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                        }
                    }
                }
            };
            if ok.is_err() {
                return;
            }
            buf.drain(..end);
        }
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                // An idle connection goes with the collector.
                if matches!(shared.phase(), Phase::Refuse | Phase::Reset) {
                    shared.counts.dropped_connections.fetch_add(1, Relaxed);
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// What one `LogBatch` holds.
#[derive(Debug, Default)]
struct Scan {
    entries: u64,
    first: u64,
    last: u64,
    payload_bytes: u64,
    modules: ModuleCounts,
}

/// Scans a `LogBatch`; the seqs of a batch must be consecutive.
fn entries(body: &[u8]) -> Result<Scan, String> {
    let mut sc = Scan::default();
    let mut bad = None;
    wire::batch_entries(body, |e| match wire::entry(e) {
        Ok(wire::Entry::Event {
            seq,
            payload_len,
            module,
        }) => {
            if sc.entries > 0 && seq != sc.last + 1 && bad.is_none() {
                bad = Some(format!("seq {seq} after {} in one batch", sc.last));
            }
            if sc.entries == 0 {
                sc.first = seq;
            }
            sc.last = seq;
            sc.entries += 1;
            sc.payload_bytes += payload_len as u64;
            sc.modules[module_index(module)] += 1;
        }
        Ok(other) => {
            bad.get_or_insert(format!("a {other:?} entry in a batch"));
        }
        Err(e) => {
            bad.get_or_insert(e);
        }
    })?;
    match bad {
        Some(e) => Err(e),
        None if sc.entries == 0 => Err("an empty batch".into()),
        None => Ok(sc),
    }
}

fn account(shared: &Shared, phase: Phase, body: &[u8], sc: &Scan) {
    let (n, first, last) = (sc.entries, sc.first, sc.last);
    let c = &shared.counts;
    {
        let mut seen = shared.seen.lock().unwrap();
        let twice: u64 = seen
            .iter()
            .map(|&(a, b)| (b.min(last) + 1).saturating_sub(a.max(first)))
            .sum();
        if twice > 0 {
            c.duplicates.fetch_add(twice, Relaxed);
            shared.error(format!("batch seq {first}..={last}: {twice} seen before"));
        }
        seen.push((first, last));
        seen.sort_unstable();
        seen.dedup_by(|next, prev| {
            let joins = next.0 <= prev.1 + 1;
            if joins {
                prev.1 = prev.1.max(next.1);
            }
            joins
        });
        // Seqs start at 1: the ones below the highest never seen.
        let covered: u64 = seen.iter().map(|&(a, b)| b - a + 1).sum();
        let top = seen.last().map_or(0, |r| r.1);
        c.seq_gaps.store(top - covered, Relaxed);
    }
    if phase == Phase::Reject {
        c.rejected.fetch_add(n, Relaxed);
        return;
    }
    let batches = c.batches.fetch_add(1, Relaxed);
    c.received.fetch_add(n, Relaxed);
    for (total, n) in c.modules.iter().zip(sc.modules) {
        total.fetch_add(n, Relaxed);
    }
    c.payload_bytes.fetch_add(sc.payload_bytes, Relaxed);
    // Every 64th batch is decoded in full as a cross-check of the scanner.
    if batches.is_multiple_of(64) {
        match LogBatch::decode(body) {
            Ok(b)
                if b.entries.len() as u64 == n && b.entries.last().map(|e| e.seq) == Some(last) =>
            {
                c.sampled.fetch_add(1, Relaxed);
            }
            Ok(b) => shared.error(format!(
                "prost sees {} entries, the scanner {n}",
                b.entries.len()
            )),
            Err(e) => shared.error(format!("prost cannot decode a batch: {e}")),
        }
    }
}
