//! Whole-path allocation proof: raw records → the real worker (decode, join,
//! event model, encode into pooled batches) → the event loop → a connected
//! WebSocket client, a client of the `--ecaptureq` address (every batch
//! rewritten in eCaptureQ's meaning: HTTP labels, client → server) **and**
//! the forwarder (its batcher thread: copy out,
//! order, number, encode, gzip; its sender thread: keep-alive POSTs,
//! response parsing, buffer recycling) → a collector on loopback.
//!
//! For each forwarding format (protobuf, protobuf + gzip, NDJSON): after
//! warm-up, ≥ 1 M events with zero allocations on the worker, server and
//! forwarder threads (a counting global allocator; only the test's own
//! WebSocket client and collector threads, and the harness's main thread,
//! are exempt), every event reaches the client, and the collector decodes
//! every body and receives exactly every event, numbered by `seq` from 1
//! without a gap or a repeat (each body's entries consecutive), over one
//! keep-alive connection per request in flight (the default, two).
//!
//! The records replayed hold events of every module (OpenSSL, GnuTLS, NSS
//! and Go data, bash, MariaDB and PostgreSQL queries, a secret, a
//! connection): both clients and the collector count every event by its
//! module, and must see exactly the replayed number of each.

#[path = "soak/wire.rs"]
mod wire;

use base64::Engine;
use prost::Message;
use rcapture_core::event::{Clock, Module};
use rcapture_core::records::{DIR_RECV, DIR_SEND, RecordKind, Tuple};
use rcapture_core::ring::RecordRing;
use rcapture_core::synth;
use rcapture_core::worker::{LiveFilter, Worker, WorkerConfig};
use rcapture_net::config::StartSettings;
use rcapture_net::control::LiveSettings;
use rcapture_net::forward::{CollectorUrl, DEFAULT_CONCURRENCY, ForwardConfig, ForwardFormat};
use rcapture_net::{Limits, Server, ServerConfig};
use rcapture_proto::{LogBatch, LogType, log_entry::Payload};
use rcapture_testsupport::alloc::CountingAlloc;
use rcapture_testsupport::control::NoControl;
use std::backtrace::Backtrace;
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use wire::{ModuleCounts, module_index};

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
/// Thread and backtrace of the first counted allocation (the failure message).
static FIRST_ALLOC: Mutex<Option<(String, Backtrace)>> = Mutex::new(None);

thread_local! {
    /// The test's own client and collector threads.
    static EXEMPT: Cell<bool> = const { Cell::new(false) };
    /// Inside `note` (its own allocations are not counted).
    static NOTING: Cell<bool> = const { Cell::new(false) };
}

fn note(_size: usize) {
    if !COUNTING.load(SeqCst) || EXEMPT.with(Cell::get) || NOTING.with(Cell::get) {
        return;
    }
    // The process's main thread is the test harness's (it reports slow
    // tests); the worker runs on the test's own thread.
    // SAFETY: gettid(2) and getpid(2) have no preconditions.
    if unsafe { libc::gettid() == libc::getpid() } {
        return;
    }
    if ALLOCS.fetch_add(1, SeqCst) == 0 {
        NOTING.with(|n| n.set(true));
        // Symbols are resolved later, when the failure is reported: a slow
        // allocation here would stall the thread and upset the pacing.
        let first = (
            std::thread::current().name().unwrap_or("?").to_owned(),
            Backtrace::force_capture(),
        );
        *FIRST_ALLOC.lock().unwrap_or_else(PoisonError::into_inner) = Some(first);
        NOTING.with(|n| n.set(false));
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc::with_hook(note);

/// Replays the same pre-built records, `rounds` times, in batches.
struct ReplayRing {
    records: Arc<Vec<Vec<u8>>>,
    rounds: Arc<AtomicU64>,
    fd: i32,
}

impl RecordRing for ReplayRing {
    fn cpu(&self) -> u32 {
        0
    }
    fn poll_fd(&self) -> i32 {
        self.fd
    }
    fn drain(&mut self, f: &mut dyn FnMut(&[u8])) -> usize {
        if self.rounds.load(SeqCst) == 0 {
            return 0;
        }
        self.rounds.fetch_sub(1, SeqCst);
        for r in self.records.iter() {
            f(r);
        }
        self.records.len()
    }
}

/// The records replayed each round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mix {
    /// TLS data at 64 B, 256 B, 1 KiB and 4 KiB each way; GnuTLS, NSS and
    /// Go data; bash; a MariaDB and a PostgreSQL query; an OpenSSL and a
    /// GnuTLS secret; a connection; and a 40 000-byte call split over three
    /// records (joined by the worker): 18 events, ~54 KB.
    Full,
    /// The same without the 4 KiB and 40 000-byte calls: 15 events, ~5 KB.
    Small,
}

/// The records of a round, the events they make, those by module, and
/// the HTTP requests (as many as responses) among them.
fn records(mix: Mix) -> (Vec<Vec<u8>>, u64, ModuleCounts, u64) {
    let sizes: &[usize] = match mix {
        Mix::Full => &[64, 256, 1024, 4096],
        Mix::Small => &[64, 256, 1024],
    };
    let t4 = synth::tuple(
        "127.0.0.1:40000".parse().unwrap(),
        "127.0.0.1:443".parse().unwrap(),
    );
    let t6 = synth::tuple("[::1]:40000".parse().unwrap(), "[::1]:443".parse().unwrap());
    let h = |k, pid| synth::header(k, pid, pid + 1, 1000, "app", 1_000_000);
    let mut v = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        // An HTTP request sent and a response received (labelled 1 and 3
        // on the eCaptureQ stream), padded to the size.
        let http = |head: &[u8]| {
            let mut p = head.to_vec();
            p.resize(size, b'a' + i as u8);
            p
        };
        let payload = http(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        v.push(synth::single(
            synth::data(
                h(RecordKind::TlsData, 100),
                5,
                DIR_SEND,
                0xffff_8880_0000_1000,
                t4,
            ),
            &payload,
        ));
        let payload = http(b"HTTP/1.1 200 OK\r\n\r\n");
        v.push(synth::single(
            synth::data(
                h(RecordKind::TlsData, 101),
                6,
                DIR_RECV,
                0xffff_8880_0000_2000,
                t6,
            ),
            &payload,
        ));
    }
    // Data of the other TLS libraries: a request (GnuTLS) and a response
    // (NSS), labelled on the eCaptureQ stream as OpenSSL's are, and an
    // HTTP/2 frame (Go), which is not HTTP/1.
    let mut modules = ModuleCounts::default();
    modules[module_index(Module::Tls)] = 2 * sizes.len() as u64 + 2;
    for (kind, module, dir, payload) in [
        (
            RecordKind::GnutlsData,
            Module::Gnutls,
            DIR_SEND,
            &b"GET /gnutls HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        ),
        (
            RecordKind::NssData,
            Module::Nss,
            DIR_RECV,
            b"HTTP/1.1 204 No Content\r\n\r\n",
        ),
        (
            RecordKind::GotlsData,
            Module::Gotls,
            DIR_SEND,
            b"\0\0\x04\x08\0\0\0\0\0\0\x0f\0\x01",
        ),
    ] {
        v.push(synth::single(
            synth::data(h(kind, 104), 8, dir, 0xffff_8880_0000_3000, t4),
            payload,
        ));
        modules[module_index(module)] += 1;
    }
    v.push(synth::single(
        synth::bash(h(RecordKind::Bash, 102), 0, 0),
        b"ls -la /tmp",
    ));
    v.push(synth::single(
        synth::bash(h(RecordKind::Bash, 102), 1, 2),
        b"ls -la /nonexistent",
    ));
    modules[module_index(Module::Bash)] = 2;
    // A query that succeeded (type 0 on both streams, so not counted as
    // an HTTP label) and one of PostgreSQL's.
    v.push(synth::single(
        synth::query(h(RecordKind::MysqlQuery, 105), 0),
        b"SELECT user, host FROM mysql.user WHERE user = 'root'",
    ));
    v.push(synth::single(
        synth::query(h(RecordKind::PgQuery, 106), 0),
        b"SELECT * FROM pg_catalog.pg_user;",
    ));
    modules[module_index(Module::Mysqld)] = 1;
    modules[module_index(Module::Postgres)] = 1;
    v.push(synth::master_secret(
        h(RecordKind::MasterSecret, 100),
        0x0304,
        0x0300_1301,
        [7; 32],
        9,
    ));
    // GnuTLS's secrets with 0-RTT: the longest key log text (six lines).
    v.push(synth::gnutls_secret(
        h(RecordKind::GnutlsSecret, 104),
        0x0304,
        48,
        [8; 32],
        9,
        true,
    ));
    modules[module_index(Module::Gnutls)] += 1;
    v.push(synth::conn(
        h(RecordKind::Conn, 100),
        5,
        0,
        1,
        Tuple::default(),
    ));
    let mut events = v.len() as u64;
    let http = sizes.len() as u64 + 1;
    if mix == Mix::Full {
        let mut long = Vec::new();
        synth::split_call(
            synth::data(h(RecordKind::TlsData, 103), 7, DIR_SEND, 0, t4),
            &vec![b'z'; 40_000],
            3,
            16384,
            usize::MAX,
            &mut long,
        );
        assert_eq!(long.len(), 3);
        v.extend(long);
        events += 1;
        modules[module_index(Module::Tls)] += 1;
    }
    assert_eq!(modules.iter().sum::<u64>(), events);
    (v, events, modules, http)
}

/// Events of each `type` 0..=4 a client saw among the TLS libraries' (with
/// `labels`).
type Labels = [AtomicU64; 5];

/// Events a client saw, by module.
type ModuleTally = [AtomicU64; Module::ALL.len()];

/// What a client saw.
#[derive(Debug, Default)]
struct Seen {
    events: AtomicU64,
    modules: ModuleTally,
}

/// Reads WebSocket frames from the server and counts binary messages, by
/// module (and the `Event.type`s of TLS data into `labels`).
fn client(addr: std::net::SocketAddr, want: u64, got: Arc<Seen>, labels: Option<Arc<Labels>>) {
    EXEMPT.with(|t| t.set(true));
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut have = 0;
    let mut upgraded = false;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    while got.events.load(SeqCst) < want {
        let n = s.read(&mut buf[have..]).unwrap();
        assert!(n > 0, "server closed the stream");
        have += n;
        let mut pos = 0;
        if !upgraded {
            let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            assert!(buf.starts_with(b"HTTP/1.1 101"));
            pos = end + 4;
            upgraded = true;
        }
        loop {
            let rest = &buf[pos..have];
            if rest.len() < 2 {
                break;
            }
            let (len, hl) = match rest[1] & 0x7f {
                126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
                127 if rest.len() >= 10 => (
                    u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if rest.len() < hl + len {
                break;
            }
            let body = &rest[hl..hl + len];
            if rest[0] & 0x0f == 2 {
                match wire::entry(body) {
                    Ok(wire::Entry::Event { module, .. }) => {
                        if let Some(l) = &labels
                            && matches!(
                                module,
                                Module::Tls | Module::Gnutls | Module::Nss | Module::Gotls
                            )
                        {
                            let e = rcapture_proto::LogEntry::decode(body).unwrap();
                            if let Some(Payload::EventPayload(e)) = e.payload
                                && let Some(n) = l.get(e.r#type as usize)
                            {
                                n.fetch_add(1, SeqCst);
                            }
                        }
                        got.modules[module_index(module)].fetch_add(1, SeqCst);
                        got.events.fetch_add(1, SeqCst);
                    }
                    Ok(wire::Entry::Heartbeat) => {}
                    other => panic!("a frame that is no event or heartbeat: {other:?}"),
                }
            }
            pos += hl + len;
        }
        buf.copy_within(pos..have, 0);
        have -= pos;
    }
}

fn status(addr: std::net::SocketAddr) -> serde_json::Value {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
    serde_json::from_str(body).unwrap()
}

/// Events the forwarder puts in one request (its default `batch_size`).
const BATCH_SIZE: usize = 100;
/// Worker batches (rounds) the pacing lets be on their way to the WebSocket
/// client: below a client's share of the batches (a quarter of the pool,
/// 16), past which the server copies the client's queue out (a lagging
/// client's cost, not the steady path's).
const WS_IN_FLIGHT_ROUNDS: u64 = 8;
/// ... and to the collector (plus the forwarder batch the batcher fills).
const COLLECTOR_IN_FLIGHT_ROUNDS: u64 = 16;
/// Every this many bodies the collector also decodes fully (prost, serde_json).
const FULL_DECODE_EVERY: u64 = 64;

/// One forwarding setup under test.
#[derive(Debug, Clone, Copy)]
struct Variant {
    name: &'static str,
    format: ForwardFormat,
    gzip: bool,
    mix: Mix,
}

/// The protobuf run carries the full mix (the worker's join included); the
/// other formats prove the forwarder's other encoders on the small mix,
/// which keeps the bytes moved (and a debug build's run time) down.
const VARIANTS: [Variant; 3] = [
    Variant {
        name: "protobuf",
        format: ForwardFormat::Protobuf,
        gzip: false,
        mix: Mix::Full,
    },
    Variant {
        name: "protobuf+gzip",
        format: ForwardFormat::Protobuf,
        gzip: true,
        mix: Mix::Small,
    },
    Variant {
        name: "json",
        format: ForwardFormat::Json,
        gzip: false,
        mix: Mix::Small,
    },
];

/// What the collector received (read live by the pacing loop).
#[derive(Debug, Default)]
struct Collected {
    /// Events in accepted bodies.
    events: AtomicU64,
    /// Those events by module.
    modules: ModuleTally,
    /// (first seq, events) of each accepted body: together exactly
    /// `1..=events` once every body is in (`seq_gaps` checks).
    ranges: Mutex<Vec<(u64, u64)>>,
    batches: AtomicU64,
    connections: AtomicU64,
    /// The first thing the collector found wrong (it then stops answering).
    error: Mutex<Option<String>>,
}

impl Collected {
    /// What is wrong with the bodies' seq ranges taken together: not
    /// exactly `1..=events`, each once.
    fn seq_gaps(&self) -> Option<String> {
        let mut r = self
            .ranges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        r.sort_unstable();
        let mut next = 1;
        for (first, n) in r {
            if first != next {
                return Some(format!("a body starts at seq {first}, want {next}"));
            }
            next += n;
        }
        let events = self.events.load(SeqCst);
        (next != events + 1).then(|| format!("seqs up to {}, events {events}", next - 1))
    }

    fn error(&self) -> Option<String> {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A loopback HTTP/1.1 collector: reads whole requests (by Content-Length)
/// on keep-alive connections (a thread each), checks and decodes every
/// body, answers `200` with an empty body.
struct Collector {
    addr: SocketAddr,
    state: Arc<Collected>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Collector {
    fn start(v: Variant) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Collected::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (Arc::clone(&state), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            EXEMPT.with(|t| t.set(true));
            let mut served = Vec::new();
            for conn in listener.incoming() {
                if sp.load(SeqCst) {
                    break;
                }
                st.connections.fetch_add(1, SeqCst);
                let st = Arc::clone(&st);
                served.push(std::thread::spawn(move || {
                    EXEMPT.with(|t| t.set(true));
                    let r = conn
                        .map_err(|e| format!("accept: {e}"))
                        .and_then(|c| serve(c, v, &st));
                    if let Err(e) = r {
                        let mut slot = st.error.lock().unwrap_or_else(PoisonError::into_inner);
                        slot.get_or_insert(e);
                    }
                }));
            }
            // The forwarder has closed its connections by now.
            for t in served {
                t.join().unwrap();
            }
        });
        Self {
            addr,
            state,
            stop,
            thread,
        }
    }

    fn finish(self) {
        self.stop.store(true, SeqCst);
        // Wakes the accept; refused is as good (the listener is gone then).
        let _ = TcpStream::connect(self.addr);
        self.thread.join().unwrap();
    }
}

/// Serves one connection until the peer closes it.
fn serve(mut s: TcpStream, v: Variant, st: &Collected) -> Result<(), String> {
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 1 << 20];
    let mut have = 0;
    let mut plain = Vec::new();
    loop {
        // The head.
        let (head_len, length) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            match req
                .parse(&buf[..have])
                .map_err(|e| format!("request head: {e}"))?
            {
                httparse::Status::Complete(n) => break (n, check_head(&req, v)?),
                httparse::Status::Partial => {}
            }
            if !fill(&mut s, &mut buf, &mut have)? {
                if have == 0 {
                    return Ok(());
                }
                return Err(format!("closed inside a request head ({have} bytes)"));
            }
        };
        // The whole body.
        let end = head_len + length;
        if buf.len() < end {
            buf.resize(end, 0);
        }
        while have < end {
            if !fill(&mut s, &mut buf, &mut have)? {
                return Err(format!("closed inside a body ({have} of {end} bytes)"));
            }
        }
        let batch = st.batches.load(SeqCst) + 1;
        let body = &buf[head_len..end];
        let body = if v.gzip {
            plain.clear();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut plain)
                .map_err(|e| format!("batch {batch}: gunzip: {e}"))?;
            &plain[..]
        } else {
            body
        };
        let mut modules = ModuleCounts::default();
        let (first, n) = match v.format {
            ForwardFormat::Json => json_entries(body, &mut modules),
            _ => protobuf_entries(body, &mut modules),
        }
        .map_err(|e| format!("batch {batch}: {e}"))?;
        if batch % FULL_DECODE_EVERY == 1 {
            full_decode(body, v.format, first, n).map_err(|e| format!("batch {batch}: {e}"))?;
        }
        if n == 0 || n > BATCH_SIZE as u64 {
            return Err(format!(
                "batch {batch}: {n} events (batch_size {BATCH_SIZE})"
            ));
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .map_err(|e| format!("writing the response: {e}"))?;
        st.ranges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((first, n));
        for (total, n) in st.modules.iter().zip(modules) {
            total.fetch_add(n, SeqCst);
        }
        st.events.fetch_add(n, SeqCst);
        st.batches.fetch_add(1, SeqCst);
        buf.copy_within(end..have, 0);
        have -= end;
    }
}

/// Reads more into `buf[have..]` (growing it when full); false at end of stream.
fn fill(s: &mut TcpStream, buf: &mut Vec<u8>, have: &mut usize) -> Result<bool, String> {
    if *have == buf.len() {
        buf.resize(buf.len() * 2, 0);
    }
    match s.read(&mut buf[*have..]) {
        Ok(0) => Ok(false),
        Ok(n) => {
            *have += n;
            Ok(true)
        }
        Err(e) => Err(format!("reading the request: {e}")),
    }
}

/// Checks the request line and headers; returns the Content-Length.
fn check_head(req: &httparse::Request<'_, '_>, v: Variant) -> Result<usize, String> {
    if req.method != Some("POST") || req.path != Some("/events") || req.version != Some(1) {
        return Err(format!(
            "request line {:?} {:?} HTTP/1.{:?}",
            req.method, req.path, req.version
        ));
    }
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    let want_type = match v.format {
        ForwardFormat::Json => "application/x-ndjson",
        _ => "application/x-protobuf",
    };
    if header("content-type").as_deref() != Some(want_type) {
        return Err(format!(
            "Content-Type {:?}, want {want_type}",
            header("content-type")
        ));
    }
    let encoding = header("content-encoding");
    if encoding.as_deref() != v.gzip.then_some("gzip") {
        return Err(format!("Content-Encoding {encoding:?} (gzip: {})", v.gzip));
    }
    if header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close")) {
        return Err("the forwarder asked to close the connection".into());
    }
    header("content-length")
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| format!("Content-Length {:?}", header("content-length")))
}

/// Walks a `LogBatch`: every entry is an event entry (log_type 2, an
/// `event_payload` of a known module, `length` its payload's) with `seq` =
/// `first`, `first + 1`, ...; counts its events into `modules`; returns
/// `first` (the first entry's seq) and the count.
fn protobuf_entries(body: &[u8], modules: &mut ModuleCounts) -> Result<(u64, u64), String> {
    let (mut n, mut first, mut bad) = (0, 0, None);
    wire::batch_entries(body, |entry| {
        let want = first + n;
        match wire::entry(entry) {
            Ok(wire::Entry::Event { seq, module, .. }) if (n == 0 || seq == want) && seq > 0 => {
                if n == 0 {
                    first = seq;
                }
                modules[module_index(module)] += 1;
                n += 1;
            }
            other => {
                bad.get_or_insert(format!("entry {n}: {other:?} (want seq {want})"));
            }
        }
    })?;
    match bad {
        Some(e) => Err(e),
        None => Ok((first, n)),
    }
}

/// Where `pat` first occurs in `hay` (libc's memmem: this file is not
/// optimised in a debug build, and the JSON run searches ~1 M lines).
fn find(hay: &[u8], pat: &[u8]) -> Option<usize> {
    // SAFETY: both pointers and lengths describe live slices, which memmem
    // only reads; a non-null result points into `hay`.
    let p = unsafe {
        libc::memmem(
            hay.as_ptr().cast(),
            hay.len(),
            pat.as_ptr().cast(),
            pat.len(),
        )
    };
    (!p.is_null()).then(|| p as usize - hay.as_ptr() as usize)
}

/// Walks an NDJSON body: one event object per line, its `seq` (the last
/// key) = `first`, `first + 1`, ...; returns `first` (the first line's
/// seq) and the count, and counts its events into `modules`. Each line's
/// base64 payload is stepped over by its `length` (which checks it), not
/// scanned.
fn json_entries(body: &[u8], modules: &mut ModuleCounts) -> Result<(u64, u64), String> {
    const PAYLOAD: &[u8] = b"\"payload\":\"";
    const LENGTH: &[u8] = b",\"length\":";
    let mut pos = 0;
    let mut n = 0;
    let mut first = 0;
    while pos < body.len() {
        let want = first + n;
        let line = &body[pos..];
        let head = &line[..line.len().min(1024)];
        let bad = |what: &str| {
            format!(
                "line {n} (want seq {want}): {what}: {:?}",
                String::from_utf8_lossy(&head[..head.len().min(200)])
            )
        };
        if !line.starts_with(b"{\"timestamp\":") {
            return Err(bad("not an event object"));
        }
        let p = find(head, PAYLOAD).ok_or_else(|| bad("no payload"))?;
        let l = find(&head[..p], LENGTH).ok_or_else(|| bad("no length"))? + LENGTH.len();
        let length: usize = std::str::from_utf8(&head[l..p - 1])
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| bad("length"))?;
        let after = p + PAYLOAD.len() + length.div_ceil(3) * 4;
        let tail = line
            .get(after..(after + 256).min(line.len()))
            .ok_or_else(|| bad("payload past the body's end"))?;
        let end = find(tail, b"\n").ok_or_else(|| bad("no line end after the payload"))?;
        let tail = &tail[..end];
        let seq = find(tail, b",\"seq\":")
            .and_then(|i| tail[i + 7..].strip_suffix(b"}"))
            .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u64>().ok());
        if n == 0 {
            first = seq.unwrap_or(0);
        }
        let want = first + n;
        if !tail.starts_with(b"\",\"tid\":") || seq != Some(want) || want == 0 {
            return Err(bad(&format!(
                "after the payload {:?}",
                String::from_utf8_lossy(tail)
            )));
        }
        const MODULE: &[u8] = b",\"module\":\"";
        let module = find(tail, MODULE)
            .map(|i| &tail[i + MODULE.len()..])
            .and_then(|m| std::str::from_utf8(&m[..find(m, b"\"")?]).ok())
            .and_then(Module::from_name)
            .ok_or_else(|| bad(&format!("module in {:?}", String::from_utf8_lossy(tail))))?;
        modules[module_index(module)] += 1;
        pos += after + end + 1;
        n += 1;
    }
    Ok((first, n))
}

/// Decodes a body with the reference decoders: `n` events numbered from
/// `first`, each complete (payload length = `length`, a module).
fn full_decode(body: &[u8], format: ForwardFormat, first: u64, n: u64) -> Result<(), String> {
    let events: Vec<(u64, u32, usize, String)> = match format {
        ForwardFormat::Json => body
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let v: serde_json::Value =
                    serde_json::from_slice(l).map_err(|e| format!("NDJSON line: {e}"))?;
                let payload = base64::engine::general_purpose::STANDARD
                    .decode(v["payload"].as_str().unwrap_or("?"))
                    .map_err(|e| format!("payload: {e}"))?;
                // WIRE.md's NDJSON fields, `status` (Event field 17) included.
                if v.as_object().map_or(0, |o| o.len()) != 18 || v.get("status").is_none() {
                    return Err(format!(
                        "{} keys, want 18 with status: {v}",
                        v.as_object().map_or(0, |o| o.len())
                    ));
                }
                Ok((
                    v["seq"].as_u64().unwrap_or(0),
                    v["length"].as_u64().unwrap_or(0) as u32,
                    payload.len(),
                    v["module"].as_str().unwrap_or("").to_string(),
                ))
            })
            .collect::<Result<_, String>>()?,
        _ => LogBatch::decode(body)
            .map_err(|e| format!("LogBatch: {e}"))?
            .entries
            .into_iter()
            .map(|e| match e.payload {
                Some(Payload::EventPayload(ev)) if e.log_type == LogType::Event as i32 => {
                    Ok((e.seq, ev.length, ev.payload.len(), ev.module))
                }
                other => Err(format!("entry seq {}: {other:?}", e.seq)),
            })
            .collect::<Result<_, String>>()?,
    };
    if events.len() as u64 != n {
        return Err(format!("decoded {} events, walked {n}", events.len()));
    }
    for (i, (seq, length, payload, module)) in events.into_iter().enumerate() {
        if seq != first + i as u64 || length as usize != payload || module.is_empty() {
            return Err(format!(
                "event {i}: seq {seq} (want {}), length {length}, payload {payload} bytes, module {module:?}",
                first + i as u64
            ));
        }
    }
    Ok(())
}

/// What one variant's run measured.
#[derive(Debug)]
struct Figures {
    counted: u64,
    total: u64,
    secs: f64,
    allocs: u64,
    first_alloc: Option<String>,
    ws: u64,
    ws_modules: ModuleCounts,
    /// Events the eCaptureQ client got, by module, and their types.
    eq: u64,
    eq_modules: ModuleCounts,
    eq_labels: [u64; 5],
    /// HTTP requests (and responses) replayed.
    http_each: u64,
    /// Events replayed, by module.
    modules: ModuleCounts,
    status: serde_json::Value,
}

fn tally(t: &ModuleTally) -> ModuleCounts {
    std::array::from_fn(|i| t[i].load(SeqCst))
}

fn run(v: Variant, collector: &Collector) -> Figures {
    let (recs, per_round, round_modules, http_per_round) = records(v.mix);
    let recs = Arc::new(recs);
    let warm_rounds = 24_000 / per_round;
    let rounds = 1_000_000 / per_round + 1;
    let total = (warm_rounds + rounds) * per_round;

    let mut forward = ForwardConfig::new(
        CollectorUrl::parse(&format!("http://{}/events", collector.addr)).unwrap(),
        v.format,
    );
    forward.batch_size = BATCH_SIZE;
    forward.batch_timeout = Duration::from_millis(100);
    forward.gzip = v.gzip;
    let cfg = ServerConfig {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        ecaptureq: Some("127.0.0.1:0".parse().unwrap()),
        heartbeat: Duration::from_millis(500),
        auth_token: None,
        access: Default::default(),
        limits: Limits::default(),
        pool: Default::default(),
        start: StartSettings {
            per_cpu_map_size: 4,
            truncate_size: 1 << 20,
        },
        initial: LiveSettings::default(),
        forward: Some(forward),
        event_file: None,
    };
    let (srv, mut publishers) = Server::bind(cfg, Arc::new(NoControl), 1).unwrap();
    let addr = srv.local_addr().unwrap();
    let srv_eq = srv.ecaptureq_addr();
    let handle = srv.handle();
    let server = std::thread::spawn(move || srv.run());
    let seen = Arc::new(Seen::default());
    let got = &seen.events;
    let g = Arc::clone(&seen);
    let reader = std::thread::spawn(move || client(addr, total, g, None));
    let eq_addr = srv_eq.expect("the --ecaptureq address");
    let seen_eq = Arc::new(Seen::default());
    let got_eq = &seen_eq.events;
    let labels: Arc<Labels> = Arc::new(Default::default());
    let (g, l) = (Arc::clone(&seen_eq), Arc::clone(&labels));
    let eq_reader = std::thread::spawn(move || client(eq_addr, total, g, Some(l)));
    std::thread::sleep(Duration::from_millis(300));

    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let left = Arc::new(AtomicU64::new(warm_rounds));
    let ring = ReplayRing {
        records: Arc::clone(&recs),
        rounds: Arc::clone(&left),
        fd: fds[0],
    };
    let config = WorkerConfig {
        pin: false,
        poll_timeout_ms: 1,
        ..Default::default()
    };
    let sinks: Vec<Box<dyn rcapture_core::worker::EventSink>> =
        vec![Box::new(publishers.remove(0))];
    let mut worker = Worker::new(
        ring,
        config,
        Clock::from_offset(0),
        Arc::new(LiveFilter::new(None, None)),
        sinks,
    );
    let stats = worker.stats();
    let coll = &collector.state;
    let stalled = |what: &str| {
        format!(
            "{} {what}: worker produced {}, client got {} (eCaptureQ client {}), collector got {} \
             in {} batches (collector error: {:?}); status {}",
            v.name,
            stats.events.load(SeqCst),
            got.load(SeqCst),
            got_eq.load(SeqCst),
            coll.events.load(SeqCst),
            coll.batches.load(SeqCst),
            coll.error(),
            status(addr)
        )
    };
    // Pace the worker so both consumers keep up: the publisher's pool is
    // bounded (64 batches) and drops would be counted. Each drain is one
    // small batch (one round), which returns to the pool once the client's
    // connection and the forwarder's batcher have taken it and the loop
    // has run again: in the worst case the batches in flight and as many
    // taken but not yet reclaimed. So keep at most 8 batches in flight to
    // the client, and 16 to the collector plus the forwarder batch the
    // batcher fills (up to 12 more): at most 2 × 28 of 64.
    let ws_in_flight = WS_IN_FLIGHT_ROUNDS * per_round;
    let coll_in_flight = COLLECTOR_IN_FLIGHT_ROUNDS * per_round + BATCH_SIZE as u64;
    let pace = |worker: &mut Worker<ReplayRing>, left: &AtomicU64| {
        while left.load(SeqCst) > 0 {
            worker.drain_once();
            let produced = stats.events.load(SeqCst);
            let deadline = Instant::now() + Duration::from_secs(20);
            while produced.saturating_sub(got.load(SeqCst)) > ws_in_flight
                || produced.saturating_sub(got_eq.load(SeqCst)) > ws_in_flight
                || produced.saturating_sub(coll.events.load(SeqCst)) > coll_in_flight
            {
                assert!(
                    Instant::now() < deadline && coll.error().is_none(),
                    "{}",
                    stalled("stalled")
                );
                std::thread::yield_now();
            }
        }
    };
    let wait_for = |n: u64, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while got.load(SeqCst) < n || got_eq.load(SeqCst) < n || coll.events.load(SeqCst) < n {
            assert!(
                Instant::now() < deadline && coll.error().is_none(),
                "{}",
                stalled(what)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    // Warm-up: pools, slots, queues and buffers reach their steady size.
    pace(&mut worker, &left);
    wait_for(warm_rounds * per_round, "warm-up");

    ALLOCS.store(0, SeqCst);
    COUNTING.store(true, SeqCst);
    let t0 = Instant::now();
    left.store(rounds, SeqCst);
    pace(&mut worker, &left);
    // The last partial forwarder batch goes on its timeout (counted too).
    wait_for(total, "after warm-up");
    COUNTING.store(false, SeqCst);
    let secs = t0.elapsed().as_secs_f64();
    let allocs = ALLOCS.load(SeqCst);
    let first_alloc = FIRST_ALLOC
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .map(|(thread, bt)| format!("thread {thread:?}:\n{bt}"));
    let status = status(addr);
    handle.stop();
    server.join().unwrap().unwrap();
    reader.join().unwrap();
    eq_reader.join().unwrap();
    drop(worker);
    for fd in fds {
        // SAFETY: both descriptors came from pipe(2) above and are closed once.
        unsafe { libc::close(fd) };
    }
    Figures {
        counted: rounds * per_round,
        total,
        secs,
        allocs,
        first_alloc,
        ws: got.load(SeqCst),
        ws_modules: tally(&seen.modules),
        eq: got_eq.load(SeqCst),
        eq_modules: tally(&seen_eq.modules),
        eq_labels: std::array::from_fn(|i| labels[i].load(SeqCst)),
        http_each: (warm_rounds + rounds) * http_per_round,
        modules: round_modules.map(|n| n * (warm_rounds + rounds)),
        status,
    }
}

#[test]
fn one_million_events_worker_to_websocket_and_forwarder_allocate_nothing() {
    // One test runs the variants in turn: the allocation counter is global.
    for v in VARIANTS {
        let collector = Collector::start(v);
        let f = run(v, &collector);
        let st = Arc::clone(&collector.state);
        collector.finish();
        let fwd = &f.status["data"]["counters"]["forward"];
        eprintln!(
            "whole path, forwarder {}: {} events after warm-up in {:.1} s ({:.0} events/s), \
             {} allocations on the worker, server and forwarder threads; collector got {} events \
             in {} batches over {} connection(s)",
            v.name,
            f.counted,
            f.secs,
            f.counted as f64 / f.secs,
            f.allocs,
            st.events.load(SeqCst),
            st.batches.load(SeqCst),
            st.connections.load(SeqCst),
        );
        assert!(f.counted >= 1_000_000);
        assert_eq!(st.error(), None, "{}: the collector found", v.name);
        assert_eq!(f.ws, f.total, "{}: every event reached the client", v.name);
        assert_eq!(
            f.eq, f.total,
            "{}: every event reached the eCaptureQ client",
            v.name
        );
        assert_eq!(
            (f.eq_labels[1], f.eq_labels[3]),
            (f.http_each, f.http_each),
            "{}: requests typed 1 and responses 3 on the eCaptureQ stream ({:?})",
            v.name,
            f.eq_labels
        );
        assert_eq!(
            st.events.load(SeqCst),
            f.total,
            "{}: the collector got every event, seq 1..=N",
            v.name
        );
        assert_eq!(st.seq_gaps(), None, "{}: every seq exactly once", v.name);
        for (who, got) in [
            ("the client", f.ws_modules),
            ("the eCaptureQ client", f.eq_modules),
            ("the collector", tally(&st.modules)),
        ] {
            assert_eq!(
                got,
                f.modules,
                "{}: {who} got every event of each module ({:?})",
                v.name,
                Module::ALL.map(Module::name)
            );
        }
        assert_eq!(
            st.connections.load(SeqCst),
            DEFAULT_CONCURRENCY as u64,
            "{}: one keep-alive connection per request in flight",
            v.name
        );
        assert_eq!(
            (
                fwd["sent_events"].as_u64(),
                fwd["dropped_events"].as_u64(),
                fwd["retries"].as_u64(),
                fwd["failed_batches"].as_u64(),
            ),
            (Some(f.total), Some(0), Some(0), Some(0)),
            "{}: forwarder counters {fwd}",
            v.name
        );
        assert_eq!(
            f.allocs,
            0,
            "{}: allocations on the worker/server/forwarder threads after warm-up; the first:\n{}",
            v.name,
            f.first_alloc.as_deref().unwrap_or("?")
        );
    }
}
