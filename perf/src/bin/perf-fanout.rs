//! `perf-fanout`: WebSocket fan-out of rcapture's event server (one mio loop,
//! entries encoded once into shared batches, per-client header + `seq`
//! prefix, `writev`) to 1, 8 and 64 loopback clients, side by side with a
//! baseline broadcast server written on tokio + tokio-tungstenite (a
//! `tokio::sync::broadcast` channel of encoded entries, one task per client
//! that adds its own `seq` prefix and writes `Message::Binary`).
//!
//! Both servers get the same synthetic events (same `EventFields`, same
//! `LogEntry` bytes from `rcapture_core::encode`), and the same raw-socket
//! clients read them. The event payload carries the monotonic hand-over time
//! and the event index, so clients measure latency and notice any loss.
//!
//! Per server and client count it reports frames/s, MB/s, latency (at full
//! load and at a paced load both servers sustain), the server thread's CPU
//! time per delivered frame (`CLOCK_THREAD_CPUTIME_ID` of the server thread;
//! the tokio server is a current-thread runtime on one thread) and the
//! allocations that thread made per frame (a counting global allocator that
//! counts only the server thread). Writes `perf/results/fanout.{json,md}`.

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use crossbeam_utils::CachePadded;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use rcapture_core::encode;
use rcapture_core::event::{Detail, EventFields, EventKind};
use rcapture_core::worker::EventSink;
use rcapture_net::config::StartSettings;
use rcapture_net::conn::QueueLimits;
use rcapture_net::control::LiveSettings;
use rcapture_net::publish::{BatchPoolConfig, Publisher};
use rcapture_net::{Limits, Server, ServerConfig};
use rcapture_testsupport::alloc::{self, CountingAlloc};
use rcapture_testsupport::control::NoControl;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, broadcast};
use tokio_tungstenite::tungstenite::Message;

// ---------------------------------------------------------------------------
// Allocation counting: only the server threads are counted.

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc::per_thread();

// ---------------------------------------------------------------------------
// Clocks.

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; a failing call leaves it 0.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Monotonic nanoseconds (the same clock in every thread of the process).
fn mono_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// User and system CPU time of thread `tid` of this process (clock ticks,
/// `/proc/self/task/TID/stat` fields 14 and 15), in nanoseconds.
fn thread_user_sys_ns(tid: i32) -> (u64, u64) {
    let Ok(s) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
        return (0, 0);
    };
    // Fields after the `(comm)`, which may hold spaces: state is field 3.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let tick =
        |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) * 1_000_000_000 / hz;
    (tick(11), tick(12))
}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// The CPU-time clock of the calling thread, readable from other threads.
fn this_thread_cpu_clock() -> libc::clockid_t {
    let mut clock: libc::clockid_t = libc::CLOCK_THREAD_CPUTIME_ID;
    // SAFETY: `pthread_self()` is the calling, live thread; `clock` is writable.
    let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
    assert_eq!(rc, 0, "pthread_getcpuclockid failed");
    clock
}

// ---------------------------------------------------------------------------
// Arguments.

#[derive(Debug, Parser)]
#[command(
    about = "WebSocket fan-out: rcapture's event server against a tokio + tokio-tungstenite broadcast server"
)]
struct Args {
    /// Client counts to run (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    clients: Vec<usize>,
    /// Servers to run: rcapture, tokio (send per message), tokio-batched (feed + one flush per burst).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "rcapture,tokio,tokio-batched"
    )]
    servers: Vec<String>,
    /// Measured events per run with fewer than 64 clients.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Measured events per run with 64 clients or more.
    #[arg(long, default_value_t = 50_000)]
    events_64: u64,
    /// Warm-up events before each measured window.
    #[arg(long, default_value_t = 20_000)]
    warmup: u64,
    /// Event payload bytes (≥ 16: send time and event index come first).
    #[arg(long, default_value_t = 256)]
    payload: usize,
    /// Events per `Publisher::flush` (and per paced burst).
    #[arg(long, default_value_t = 64)]
    batch: u64,
    /// Most events in flight (produced, not yet received by every client).
    #[arg(long, default_value_t = 4096)]
    window: u64,
    /// Paced latency runs at this fraction of the slower server's full-load frames/s (0 skips them).
    #[arg(long, default_value_t = 0.5)]
    paced_load: f64,
    /// Length of a paced run (seconds).
    #[arg(long, default_value_t = 1.0)]
    paced_secs: f64,
    /// Runs per server and client count; the one with the median server CPU per frame is reported.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Where fanout.json and fanout.md go.
    #[arg(long, default_value = "perf/results")]
    out: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rcapture,
    /// One `send` (feed + flush: one write) per message: the usual design.
    TokioSend,
    /// `feed` every message that is ready, then one `flush`.
    TokioBatched,
}

impl Kind {
    fn parse(s: &str) -> anyhow::Result<Kind> {
        Ok(match s {
            "rcapture" => Kind::Rcapture,
            "tokio" => Kind::TokioSend,
            "tokio-batched" => Kind::TokioBatched,
            other => bail!("unknown server {other:?} (rcapture, tokio, tokio-batched)"),
        })
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Rcapture => "rcapture",
            Kind::TokioSend => "tokio",
            Kind::TokioBatched => "tokio-batched",
        }
    }
}

// ---------------------------------------------------------------------------
// The synthetic event.

const UUID: &str = "sock:4242_4243_curl_3_1_127.0.0.1:40000-127.0.0.1:443";
const MARK: &[u8; 16] = b"\xfa\x11FANOUT-MARK\x7f\x00!";

struct Template {
    timestamp: i64,
    payload_len: usize,
    /// Where the payload starts, counted back from the end of a frame's payload
    /// (seq prefix + entry); the tail after the payload is the same in every event.
    off_from_end: usize,
    entry_len: usize,
}

fn fields(timestamp: i64, payload: &[u8]) -> EventFields<'_> {
    EventFields {
        timestamp,
        uuid: UUID,
        src_ip: "127.0.0.1",
        src_port: 40000,
        dst_ip: "127.0.0.1",
        dst_port: 443,
        pid: 4242,
        pname: "curl",
        r#type: 0,
        payload,
        tid: 4243,
        uid: 1000,
        module: "tls",
        fd: 3,
        truncated: 0,
        detail: Detail::None,
    }
}

impl Template {
    fn new(payload_len: usize) -> anyhow::Result<Template> {
        if payload_len < MARK.len() {
            bail!("--payload must be at least {}", MARK.len());
        }
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let mut payload = vec![b'x'; payload_len];
        payload[..MARK.len()].copy_from_slice(MARK);
        let f = fields(timestamp, &payload);
        let mut entry = Vec::with_capacity(encode::event_entry_len(&f));
        encode::encode_event_entry(&f, &mut entry);
        let pos = entry
            .windows(MARK.len())
            .position(|w| w == MARK)
            .context("payload not found in the encoded entry")?;
        Ok(Template {
            timestamp,
            payload_len,
            off_from_end: entry.len() - pos,
            entry_len: entry.len(),
        })
    }
}

// ---------------------------------------------------------------------------
// Servers.

/// How the producer hands events to a server.
enum Feed {
    Rcapture(Publisher),
    Tokio {
        tx: broadcast::Sender<Bytes>,
        scratch: Vec<u8>,
    },
}

impl Feed {
    fn event(&mut self, f: &EventFields<'_>) {
        match self {
            Feed::Rcapture(p) => p.event(f, EventKind::Data),
            Feed::Tokio { tx, scratch } => {
                // Encoded once per event (like rcapture's workers), shared by all clients.
                scratch.clear();
                encode::encode_event_entry(f, scratch);
                let _ = tx.send(Bytes::copy_from_slice(scratch));
            }
        }
    }
    fn flush(&mut self) {
        if let Feed::Rcapture(p) = self {
            p.flush();
        }
    }
}

struct Running {
    addr: SocketAddr,
    /// CPU-time clock and thread id of the server thread.
    cpu: libc::clockid_t,
    tid: i32,
    feed: Option<Feed>,
    stop: Box<dyn FnOnce() + Send>,
    thread: JoinHandle<anyhow::Result<()>>,
    /// Entries a tokio client task missed (`RecvError::Lagged`).
    lagged: Arc<AtomicU64>,
}

impl Running {
    fn shutdown(mut self) -> anyhow::Result<()> {
        drop(self.feed.take());
        (self.stop)();
        match self.thread.join() {
            Ok(r) => r,
            Err(_) => bail!("server thread panicked"),
        }
    }
}

fn start_rcapture(a: &Args, t: &Template) -> anyhow::Result<Running> {
    let inflight_batches = (a.window / a.batch.max(1)) as usize + 1;
    let limits = Limits {
        client_queue: QueueLimits {
            frames: (4 * a.window as usize).max(8192),
            bytes: (4 * a.window as usize * (t.entry_len + 32)).max(16 << 20),
        },
        ..Limits::default()
    };
    let cfg = ServerConfig {
        listen: Some("127.0.0.1:0".parse()?),
        ecaptureq: None,
        heartbeat: Duration::from_secs(15),
        auth_token: None,
        access: Default::default(),
        limits,
        pool: BatchPoolConfig {
            batches: 2 * inflight_batches + 16,
            batch_bytes: (a.batch as usize * (t.entry_len + 16)).max(4096),
            batch_entries: a.batch as usize,
        },
        start: StartSettings {
            per_cpu_map_size: 8192,
            truncate_size: 1 << 20,
        },
        initial: LiveSettings::default(),
        forward: None,
        event_file: None,
    };
    let (srv, mut pubs) = Server::bind(cfg, Arc::new(NoControl), 1)?;
    let addr = srv
        .local_addr()
        .context("rcapture server has no listener")?;
    let handle = srv.handle();
    let publisher = pubs.pop().context("no publisher")?;
    let (ctx, crx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("rcapture-net".into())
        .spawn(move || {
            let _ = ctx.send((this_thread_cpu_clock(), gettid()));
            alloc::count_this_thread(true);
            srv.run().context("rcapture server")
        })?;
    let (cpu, tid) = crx.recv().context("server thread did not start")?;
    Ok(Running {
        addr,
        cpu,
        tid,
        feed: Some(Feed::Rcapture(publisher)),
        stop: Box::new(move || handle.stop()),
        thread,
        lagged: Arc::new(AtomicU64::new(0)),
    })
}

fn start_tokio(a: &Args, batched: bool) -> anyhow::Result<Running> {
    let (tx, _) = broadcast::channel::<Bytes>((4 * a.window as usize).max(1024));
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(Notify::new());
    let lagged = Arc::new(AtomicU64::new(0));
    let (ctx, crx) = mpsc::channel();
    let thread = {
        let tx = tx.clone();
        let stop = Arc::clone(&stop);
        let lagged = Arc::clone(&lagged);
        std::thread::Builder::new().name("tokio-ws".into()).spawn(
            move || -> anyhow::Result<()> {
                let _ = ctx.send((this_thread_cpu_clock(), gettid()));
                alloc::count_this_thread(true);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    loop {
                        tokio::select! {
                            r = listener.accept() => {
                                let (sock, _) = r?;
                                // Subscribed before the handshake completes: a client
                                // that has its 101 gets every later event.
                                let rx = tx.subscribe();
                                tokio::spawn(tokio_client(sock, rx, batched, Arc::clone(&lagged)));
                            }
                            _ = stop.notified() => break,
                        }
                    }
                    anyhow::Ok(())
                })?;
                drop(rt);
                Ok(())
            },
        )?
    };
    let (cpu, tid) = crx.recv().context("server thread did not start")?;
    Ok(Running {
        addr,
        cpu,
        tid,
        feed: Some(Feed::Tokio {
            tx,
            scratch: Vec::new(),
        }),
        stop: Box::new(move || stop.notify_one()),
        thread,
        lagged,
    })
}

/// One baseline client task: its own `seq`, one `Message::Binary` per entry.
async fn tokio_client(
    sock: tokio::net::TcpStream,
    mut rx: broadcast::Receiver<Bytes>,
    batched: bool,
    lagged: Arc<AtomicU64>,
) {
    let _ = sock.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(sock).await else {
        return;
    };
    let (mut write, mut read) = ws.split();
    // Client messages (pings, close) are read and dropped.
    tokio::spawn(async move { while let Some(Ok(_)) = read.next().await {} });
    let mut seq = 0u64;
    let message = |seq: u64, body: &[u8]| {
        let (prefix, plen) = encode::seq_prefix(seq);
        let mut v = Vec::with_capacity(plen + body.len());
        v.extend_from_slice(&prefix[..plen]);
        v.extend_from_slice(body);
        Message::Binary(Bytes::from(v))
    };
    loop {
        let body = match rx.recv().await {
            Ok(b) => b,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                lagged.fetch_add(n, Ordering::Relaxed);
                seq += n;
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        seq += 1;
        if !batched {
            if write.send(message(seq, &body)).await.is_err() {
                return;
            }
            continue;
        }
        if write.feed(message(seq, &body)).await.is_err() {
            return;
        }
        loop {
            match rx.try_recv() {
                Ok(b) => {
                    seq += 1;
                    if write.feed(message(seq, &b)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    lagged.fetch_add(n, Ordering::Relaxed);
                    seq += n;
                }
                Err(_) => break,
            }
        }
        if write.flush().await.is_err() {
            return;
        }
    }
    let _ = write.close().await;
}

// ---------------------------------------------------------------------------
// Clients: raw sockets, frame parsing, latency from the payload's send time.

#[derive(Debug)]
struct ClientResult {
    hist: Histogram<u64>,
    /// Measured events received, and their wire bytes.
    events: u64,
    bytes: u64,
    seq_gaps: u64,
    idx_gaps: u64,
    heartbeats: u64,
}

const HANDSHAKE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &x) in b.iter().enumerate().take(10) {
        v |= u64::from(x & 0x7f) << (7 * i);
        if x & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn client_main(
    addr: SocketAddr,
    progress: Arc<CachePadded<AtomicU64>>,
    measure_from: u64,
    off_from_end: usize,
    ready: mpsc::Sender<()>,
) -> anyhow::Result<ClientResult> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.write_all(HANDSHAKE)?;
    let mut buf = vec![0u8; 1 << 18];
    let mut have = 0;
    let body_start = loop {
        let n = s.read(&mut buf[have..])?;
        if n == 0 {
            bail!("server closed during the handshake");
        }
        have += n;
        if let Some(p) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if have == buf.len() {
            bail!("handshake response too long");
        }
    };
    if !buf.starts_with(b"HTTP/1.1 101") {
        bail!(
            "upgrade refused: {}",
            String::from_utf8_lossy(&buf[..body_start])
        );
    }
    buf.copy_within(body_start..have, 0);
    have -= body_start;
    let _ = ready.send(());
    let mut r = ClientResult {
        hist: Histogram::new_with_bounds(1, 60_000_000_000, 3)?,
        events: 0,
        bytes: 0,
        seq_gaps: 0,
        idx_gaps: 0,
        heartbeats: 0,
    };
    let mut last_seq = 0u64;
    let mut next_idx = 0u64;
    let mut now = mono_ns();
    loop {
        let mut pos = 0;
        while have - pos >= 2 {
            let f = &buf[pos..have];
            let (hlen, len) = match f[1] & 0x7f {
                126 if f.len() >= 4 => (4, u16::from_be_bytes([f[2], f[3]]) as usize),
                127 if f.len() >= 10 => {
                    let mut l = [0u8; 8];
                    l.copy_from_slice(&f[2..10]);
                    (10, u64::from_be_bytes(l) as usize)
                }
                126 | 127 => break,
                l => (2, l as usize),
            };
            if f.len() < hlen + len {
                if hlen + len > buf.len() {
                    bail!("frame of {len} bytes is larger than the read buffer");
                }
                break;
            }
            pos += hlen + len;
            let p = &f[hlen..hlen + len];
            match f[0] & 0x0f {
                0x8 => {
                    progress.store(u64::MAX, Ordering::Release);
                    return Ok(r);
                }
                0x2 => {}
                _ => continue,
            }
            let mut q = p;
            if q.first() == Some(&0x28) {
                let (seq, n) = varint(&q[1..]).context("bad seq prefix")?;
                if seq != last_seq + 1 {
                    r.seq_gaps += seq.saturating_sub(last_seq + 1);
                }
                last_seq = seq;
                q = &q[1 + n..];
            }
            if !q.starts_with(&[0x08, encode::LOG_TYPE_EVENT as u8]) {
                r.heartbeats += 1;
                continue;
            }
            let base = p
                .len()
                .checked_sub(off_from_end)
                .context("event frame too short")?;
            let mut w = [0u8; 8];
            w.copy_from_slice(&p[base..base + 8]);
            let sent = u64::from_le_bytes(w);
            w.copy_from_slice(&p[base + 8..base + 16]);
            let idx = u64::from_le_bytes(w);
            if idx != next_idx {
                r.idx_gaps += idx.saturating_sub(next_idx);
            }
            next_idx = idx + 1;
            if idx >= measure_from {
                r.hist.saturating_record(now.saturating_sub(sent).max(1));
                r.events += 1;
                r.bytes += (hlen + len) as u64;
            }
        }
        progress.store(next_idx, Ordering::Release);
        buf.copy_within(pos..have, 0);
        have -= pos;
        let n = match s.read(&mut buf[have..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // A reset at shutdown ends the stream like a close.
            Err(_) => 0,
        };
        if n == 0 {
            progress.store(u64::MAX, Ordering::Release);
            return Ok(r);
        }
        now = mono_ns();
        have += n;
    }
}

// ---------------------------------------------------------------------------
// One run.

#[derive(Debug, Clone)]
struct RunResult {
    kind: Kind,
    clients: usize,
    events: u64,
    /// Paced events/s (None: as fast as the window allows).
    rate: Option<f64>,
    wall_s: f64,
    frames: u64,
    bytes: u64,
    server_cpu_ns: u64,
    /// The server thread's user and system time (clock-tick resolution).
    server_user_ns: u64,
    server_sys_ns: u64,
    producer_cpu_ns: u64,
    server_allocs: u64,
    server_alloc_bytes: u64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    /// Frames missing at the end, gaps seen in `seq` and in the event index, tokio lags.
    missing: u64,
    seq_gaps: u64,
    idx_gaps: u64,
    lagged: u64,
}

impl RunResult {
    fn frames_per_s(&self) -> f64 {
        self.frames as f64 / self.wall_s
    }
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.wall_s / 1e6
    }
    fn cpu_per_frame(&self) -> f64 {
        self.server_cpu_ns as f64 / self.frames.max(1) as f64
    }
    fn allocs_per_frame(&self) -> f64 {
        self.server_allocs as f64 / self.frames.max(1) as f64
    }
    fn drops(&self) -> u64 {
        self.missing + self.seq_gaps + self.idx_gaps + self.lagged
    }
    fn to_json(&self) -> Value {
        json!({
            "server": self.kind.name(),
            "clients": self.clients,
            "events": self.events,
            "paced_events_per_s": self.rate,
            "wall_s": self.wall_s,
            "frames": self.frames,
            "bytes": self.bytes,
            "frames_per_s": self.frames_per_s(),
            "mb_per_s": self.mb_per_s(),
            "latency_us": {"p50": self.p50_us, "p99": self.p99_us, "p999": self.p999_us, "max": self.max_us},
            "server_cpu_ns": self.server_cpu_ns,
            "server_cpu_ns_per_frame": self.cpu_per_frame(),
            "server_user_ns_per_frame": self.server_user_ns as f64 / self.frames.max(1) as f64,
            "server_sys_ns_per_frame": self.server_sys_ns as f64 / self.frames.max(1) as f64,
            "server_cpu_utilisation": self.server_cpu_ns as f64 / 1e9 / self.wall_s,
            "producer_cpu_ns_per_event": self.producer_cpu_ns as f64 / self.events.max(1) as f64,
            "server_allocations": self.server_allocs,
            "server_allocated_bytes": self.server_alloc_bytes,
            "server_allocations_per_frame": self.allocs_per_frame(),
            "drops": {"missing": self.missing, "seq_gaps": self.seq_gaps, "idx_gaps": self.idx_gaps, "lagged": self.lagged},
        })
    }
}

/// Produces events `[*idx, *idx + count)`, never more than `window` ahead of
/// the slowest client, in bursts of `batch` (paced at `rate` events/s if given).
#[allow(clippy::too_many_arguments)]
fn produce(
    feed: &mut Feed,
    t: &Template,
    payload: &mut [u8],
    idx: &mut u64,
    count: u64,
    batch: u64,
    window: u64,
    rate: Option<f64>,
    progress: &[Arc<CachePadded<AtomicU64>>],
) {
    let end = *idx + count;
    let start = Instant::now();
    let mut burst = 0u64;
    while *idx < end {
        if let Some(r) = rate {
            let due = start + Duration::from_secs_f64(burst as f64 * batch as f64 / r);
            loop {
                let now = Instant::now();
                if now >= due {
                    break;
                }
                let left = due - now;
                if left > Duration::from_micros(200) {
                    std::thread::sleep(left - Duration::from_micros(100));
                } else {
                    std::thread::yield_now();
                }
            }
        }
        burst += 1;
        let n = batch.min(end - *idx);
        while *idx + n > min_progress(progress) + window {
            std::thread::sleep(Duration::from_micros(20));
        }
        for _ in 0..n {
            payload[..8].copy_from_slice(&mono_ns().to_le_bytes());
            payload[8..16].copy_from_slice(&idx.to_le_bytes());
            feed.event(&fields(t.timestamp, payload));
            *idx += 1;
        }
        feed.flush();
    }
}

fn min_progress(progress: &[Arc<CachePadded<AtomicU64>>]) -> u64 {
    progress
        .iter()
        .map(|p| p.load(Ordering::Acquire))
        .min()
        .unwrap_or(0)
}

/// Waits until every client has event `target - 1`; false if progress stalls for `stall`.
fn wait_for(progress: &[Arc<CachePadded<AtomicU64>>], target: u64, stall: Duration) -> bool {
    let mut last = min_progress(progress);
    let mut since = Instant::now();
    loop {
        let p = min_progress(progress);
        if p >= target {
            return true;
        }
        if p != last {
            last = p;
            since = Instant::now();
        } else if since.elapsed() >= stall {
            return false;
        }
        std::thread::sleep(Duration::from_micros(20));
    }
}

fn run_one(
    a: &Args,
    t: &Template,
    kind: Kind,
    clients: usize,
    events: u64,
    rate: Option<f64>,
) -> anyhow::Result<RunResult> {
    let mut srv = match kind {
        Kind::Rcapture => start_rcapture(a, t)?,
        Kind::TokioSend => start_tokio(a, false)?,
        Kind::TokioBatched => start_tokio(a, true)?,
    };
    let progress: Vec<_> = (0..clients)
        .map(|_| Arc::new(CachePadded::new(AtomicU64::new(0))))
        .collect();
    let (rtx, rrx) = mpsc::channel();
    let mut threads = Vec::with_capacity(clients);
    for p in &progress {
        let p = Arc::clone(p);
        let rtx = rtx.clone();
        let (addr, warm, off) = (srv.addr, a.warmup, t.off_from_end);
        threads.push(
            std::thread::Builder::new()
                .name("fanout-client".into())
                .stack_size(256 * 1024)
                .spawn(move || client_main(addr, p, warm, off, rtx))?,
        );
    }
    drop(rtx);
    for _ in 0..clients {
        rrx.recv_timeout(Duration::from_secs(10))
            .context("a client did not connect")?;
    }
    let mut feed = srv.feed.take().context("no feed")?;
    let mut payload = vec![b'x'; t.payload_len];
    let mut idx = 0u64;
    produce(
        &mut feed,
        t,
        &mut payload,
        &mut idx,
        a.warmup,
        a.batch,
        a.window,
        None,
        &progress,
    );
    if !wait_for(&progress, idx, Duration::from_secs(10)) {
        bail!(
            "{} with {clients} clients: warm-up not delivered",
            kind.name()
        );
    }
    let me = this_thread_cpu_clock();
    let (al0, ab0) = alloc::counted();
    let (cpu0, me0) = (clock_ns(srv.cpu), clock_ns(me));
    let us0 = thread_user_sys_ns(srv.tid);
    let t0 = Instant::now();
    produce(
        &mut feed,
        t,
        &mut payload,
        &mut idx,
        events,
        a.batch,
        a.window,
        rate,
        &progress,
    );
    let me1 = clock_ns(me);
    let complete = wait_for(&progress, idx, Duration::from_secs(5));
    let wall_s = t0.elapsed().as_secs_f64();
    let cpu1 = clock_ns(srv.cpu);
    let (al1, ab1) = alloc::counted();
    let us1 = thread_user_sys_ns(srv.tid);
    srv.feed = Some(feed);
    let lagged = Arc::clone(&srv.lagged);
    srv.shutdown()?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let (mut frames, mut bytes, mut seq_gaps, mut idx_gaps) = (0, 0, 0, 0);
    for th in threads {
        let r = th
            .join()
            .map_err(|_| anyhow::anyhow!("client panicked"))??;
        hist.add(&r.hist)?;
        frames += r.events;
        bytes += r.bytes;
        seq_gaps += r.seq_gaps;
        idx_gaps += r.idx_gaps;
        let _ = r.heartbeats;
    }
    let expected = events * clients as u64;
    if !complete {
        eprintln!(
            "perf-fanout: {} with {clients} clients: delivery stalled ({frames} of {expected} frames)",
            kind.name()
        );
    }
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1e3;
    Ok(RunResult {
        kind,
        clients,
        events,
        rate,
        wall_s,
        frames,
        bytes,
        server_cpu_ns: cpu1 - cpu0,
        server_user_ns: us1.0.saturating_sub(us0.0),
        server_sys_ns: us1.1.saturating_sub(us0.1),
        producer_cpu_ns: me1 - me0,
        server_allocs: al1 - al0,
        server_alloc_bytes: ab1 - ab0,
        p50_us: us(0.5),
        p99_us: us(0.99),
        p999_us: us(0.999),
        max_us: hist.max() as f64 / 1e3,
        missing: expected.saturating_sub(frames),
        seq_gaps,
        idx_gaps,
        lagged: lagged.load(Ordering::Relaxed),
    })
}

/// Runs `reps` times and keeps the run with the median server CPU per frame.
fn median_run(
    a: &Args,
    t: &Template,
    kind: Kind,
    clients: usize,
    events: u64,
    rate: Option<f64>,
) -> anyhow::Result<(RunResult, Vec<f64>)> {
    let mut runs = Vec::new();
    for _ in 0..a.reps.max(1) {
        let r = run_one(a, t, kind, clients, events, rate)?;
        eprintln!(
            "  {:<13} {:>2} clients{}: {:>9.0} frames/s  {:>6.0} ns/frame server CPU  {:.3} allocs/frame  p99 {:.0} µs  drops {}",
            kind.name(),
            clients,
            rate.map(|r| format!(" @{r:.0} ev/s")).unwrap_or_default(),
            r.frames_per_s(),
            r.cpu_per_frame(),
            r.allocs_per_frame(),
            r.p99_us,
            r.drops()
        );
        runs.push(r);
    }
    let all: Vec<f64> = runs.iter().map(RunResult::cpu_per_frame).collect();
    runs.sort_by(|x, y| x.cpu_per_frame().total_cmp(&y.cpu_per_frame()));
    let mid = runs.len() / 2;
    Ok((runs.swap_remove(mid), all))
}

// ---------------------------------------------------------------------------
// Report.

fn fmt_ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "–".into()
    }
}

fn markdown(full: &[RunResult], paced: &[RunResult], a: &Args) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "WebSocket fan-out on loopback, {} B payload events ({} B `LogEntry`), batches of {}, \
         {} in flight at most; server CPU = the server thread's CPU time (tokio: current-thread runtime). \
         Median of {} runs by server CPU per frame.\n",
        a.payload,
        Template::new(a.payload).map(|t| t.entry_len).unwrap_or(0),
        a.batch,
        a.window,
        a.reps.max(1)
    );
    let _ = writeln!(o, "### Full load (as fast as the slowest client reads)\n");
    let _ = writeln!(
        o,
        "| clients | server | frames/s | MB/s | p50 µs | p99 µs | server CPU ns/frame | user / sys ns/frame | vs tokio | vs tokio-batched | server CPU busy | allocs/frame (server) | producer ns/event | drops |"
    );
    let _ = writeln!(
        o,
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let base = |n: usize, k: Kind| {
        full.iter()
            .find(|r| r.clients == n && r.kind == k)
            .map(RunResult::cpu_per_frame)
            .unwrap_or(0.0)
    };
    for r in full {
        let _ = writeln!(
            o,
            "| {} | {} | {:.0} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} / {:.0} | {} | {} | {:.0}% | {:.4} | {:.0} | {} |",
            r.clients,
            r.kind.name(),
            r.frames_per_s(),
            r.mb_per_s(),
            r.p50_us,
            r.p99_us,
            r.cpu_per_frame(),
            r.server_user_ns as f64 / r.frames.max(1) as f64,
            r.server_sys_ns as f64 / r.frames.max(1) as f64,
            fmt_ratio(r.cpu_per_frame(), base(r.clients, Kind::TokioSend)),
            fmt_ratio(r.cpu_per_frame(), base(r.clients, Kind::TokioBatched)),
            100.0 * r.server_cpu_ns as f64 / 1e9 / r.wall_s,
            r.allocs_per_frame(),
            r.producer_cpu_ns as f64 / r.events.max(1) as f64,
            r.drops()
        );
    }
    let _ = writeln!(
        o,
        "\nAt full load p50/p99 include the queue of up to {} in-flight events (Little's law); see the paced table \
         for latency. user / sys come from clock-tick accounting (`/proc/self/task/TID/stat`): coarse.",
        a.window
    );
    if !paced.is_empty() {
        let _ = writeln!(
            o,
            "\n### Paced load ({:.0}% of the slower server's full-load frames/s, same rate for every server)\n",
            a.paced_load * 100.0
        );
        let _ = writeln!(
            o,
            "| clients | server | events/s | frames/s | p50 µs | p99 µs | p99.9 µs | max µs | server CPU ns/frame | allocs/frame (server) | drops |"
        );
        let _ = writeln!(o, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in paced {
            let _ = writeln!(
                o,
                "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.4} | {} |",
                r.clients,
                r.kind.name(),
                r.rate.unwrap_or(0.0),
                r.frames_per_s(),
                r.p50_us,
                r.p99_us,
                r.p999_us,
                r.max_us,
                r.cpu_per_frame(),
                r.allocs_per_frame(),
                r.drops()
            );
        }
    }
    o
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let kinds = a
        .servers
        .iter()
        .map(|s| Kind::parse(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if a.batch == 0 || a.window < a.batch {
        bail!("--batch must be at least 1 and --window at least --batch");
    }
    let t = Template::new(a.payload)?;
    let mut full = Vec::new();
    let mut paced = Vec::new();
    let mut reps = Vec::new();
    for &n in &a.clients {
        let events = if n >= 64 { a.events_64 } else { a.events };
        let mut slowest = f64::INFINITY;
        for &k in &kinds {
            let (r, all) = median_run(&a, &t, k, n, events, None)?;
            slowest = slowest.min(r.frames_per_s());
            reps.push(json!({"server": k.name(), "clients": n, "server_cpu_ns_per_frame": all}));
            full.push(r);
        }
        if a.paced_load > 0.0 && slowest.is_finite() {
            let rate = a.paced_load * slowest / n as f64;
            let count = ((rate * a.paced_secs) as u64).max(a.batch * 16);
            for &k in &kinds {
                paced.push(median_run(&a, &t, k, n, count, Some(rate))?.0);
            }
        }
    }
    let md = markdown(&full, &paced, &a);
    println!("{md}");
    let j = json!({
        "payload_bytes": a.payload,
        "entry_bytes": t.entry_len,
        "batch": a.batch,
        "window": a.window,
        "warmup": a.warmup,
        "reps": a.reps,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "full_load": full.iter().map(RunResult::to_json).collect::<Vec<_>>(),
        "paced": paced.iter().map(RunResult::to_json).collect::<Vec<_>>(),
        "server_cpu_ns_per_frame_all_reps": reps,
    });
    std::fs::create_dir_all(&a.out)?;
    std::fs::write(a.out.join("fanout.json"), serde_json::to_string_pretty(&j)?)?;
    std::fs::write(a.out.join("fanout.md"), md)?;
    eprintln!(
        "perf-fanout: wrote {}",
        a.out.join("fanout.{json,md}").display()
    );
    Ok(())
}
