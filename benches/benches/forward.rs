//! Criterion benches of forwarding (WIRE.md §5): request bodies from the loop's batches, POSTs to a loopback sink, gzip backends.
//!
//! Run: `cargo bench -p rcapture-benches --bench forward -- --warm-up-time 1 --measurement-time 3`.
//! Groups (100 events of 256 B payload per batch, as the default `batch_size`):
//! - `forward_body`: events/s from a shared `Batch` to a request body: copy
//!   the entries out, order by timestamp, number with `seq`, encode as
//!   `LogBatch` (item header + seq prefix + body) or NDJSON, optionally gzip.
//! - `forward_post`: the same, plus the POST (head + body, one vectored
//!   write as the forwarder's client does) written to a loopback TCP sink
//!   that reads and discards (no response: the round trip is not included).
//! - `forward_pipeline`: the real [`Forwarder`] end to end — batches
//!   offered as the event loop does, its batcher thread ordering them
//!   (and its compressor threads encoding and gzipping the bodies) while
//!   its sender threads POST the previous ones over their keep-alive
//!   connections to a loopback HTTP/1.1 sink (a thread per connection)
//!   that reads each request whole and answers `200`; timed until the sink
//!   has answered every request. Protobuf with the default requests in
//!   flight (two) and with one; gzip with the default `batch_size` (100)
//!   and with 1000 (ten loop batches a request). The references: the same protobuf body
//!   compressed alone at the forwarder's level, as raw deflate (the
//!   backend's own speed) and as the forwarder's gzip member (+ CRC-32).
//!   After the group it prints the gzip pipeline's speed over each, measured
//!   in the same samples (each gzip sample is followed by as many bodies
//!   compressed alone, so all see the same machine load), and the same
//!   CPU time of each forwarder thread per batch (from `/proc`).
//! - `gzip_backends`: MB/s of raw deflate at the forwarder's level
//!   (`GzipEncoder::LEVEL`) of the same protobuf batch body, per backend,
//!   side by side, plus the gzip trailer's CRC-32; three ways to build the
//!   gzip member (the forwarder's `GzipEncoder`: header, one CRC-32 pass,
//!   raw deflate; zlib-rs's own wrapper, `Compress::new_gzip`; flate2's
//!   `GzEncoder` made per body); and levels 2 and 6 for the ratio/speed
//!   trade. flate2 uses one backend per build:
//!   miniz_oxide by default, zlib-rs with `--features zlib-rs`, zlib-ng
//!   with `--features zlib-ng` (needs cmake); miniz_oxide is always also
//!   run directly, and zlib-rs directly whenever the `zlib-rs` feature is
//!   on, so `--features zlib-rs,zlib-ng` compares all three in one build.
//!
//! The forwarder's body building is private to its batcher thread
//! (`net/src/forward/batcher.rs`), so [`BodyBuilder`] runs the same steps
//! with the same `rcapture-core` encoders and the forwarder's own
//! [`GzipEncoder`].

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use rcapture_core::encode;
use rcapture_core::event::{Detail, EventFields, EventKind, Module};
use rcapture_core::ndjson::write_ndjson_line;
use rcapture_net::entry::event_fields_of;
use rcapture_net::forward::gzip::GzipEncoder;
use rcapture_net::forward::{
    CollectorUrl, DEFAULT_CONCURRENCY, ForwardConfig, ForwardFormat, Forwarder,
};
use rcapture_net::publish::{Batch, EntryMeta};
use std::cell::Cell;
use std::hint::black_box;
use std::io::{IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const EVENTS: usize = 100;
const PAYLOAD: usize = 256;

/// Which backend flate2 was built with. rcapture-net enables flate2's
/// `zlib-rs` feature and cargo unifies features, so in this workspace flate2
/// runs on zlib-rs unless `zlib-ng` is asked for; `miniz_oxide` is benched
/// directly below as the reference.
const FLATE2_BACKEND: &str = if cfg!(feature = "zlib-ng") {
    "flate2_zlib-ng"
} else {
    "flate2_zlib-rs"
};

/// An HTTP/1.1 request's worth of plaintext, `PAYLOAD` bytes, varying per event
/// (ids, a random-looking request id) so it compresses like real traffic.
fn payload(i: usize) -> Vec<u8> {
    let rid = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut p = format!(
        "POST /api/v1/orders/{i} HTTP/1.1\r\nHost: shop.internal:8443\r\n\
         User-Agent: curl/8.5.0\r\nAccept: application/json\r\n\
         X-Request-Id: {rid:016x}\r\nContent-Type: application/json\r\n\
         Content-Length: 42\r\n\r\n{{\"sku\":{},\"qty\":{}}}",
        i * 7919 % 100_000,
        i % 9 + 1
    )
    .into_bytes();
    p.resize(PAYLOAD, b' ');
    p
}

/// One loop batch of `EVENTS` TLS data events, encoded as the workers do.
fn loop_batch() -> Arc<Batch> {
    let mut b = Batch {
        worker: 0,
        buf: Vec::new(),
        entries: Vec::new(),
    };
    for i in 0..EVENTS {
        let p = payload(i);
        let uuid = format!(
            "sock:4242_{}_curl_5_1_10.1.2.3:{}-93.184.216.34:443_{}",
            4242 + i % 4,
            52_000 + i % 16,
            0xffff_8880_1234_0000u64 + (i % 16) as u64
        );
        let ev = EventFields {
            // Slightly out of order, as batches from several CPUs are.
            timestamp: 1_764_133_728_123_456_789 + ((i * 37) % EVENTS) as i64 * 1000,
            uuid: &uuid,
            src_ip: "10.1.2.3",
            src_port: 52_000 + (i % 16) as u32,
            dst_ip: "93.184.216.34",
            dst_port: 443,
            pid: 4242,
            pname: "curl",
            r#type: 1,
            payload: &p,
            tid: 4242 + (i % 4) as u32,
            uid: 1000,
            module: "tls",
            fd: 5,
            truncated: 0,
            detail: Detail::None,
        };
        let start = b.buf.len() as u32;
        encode::encode_event_entry(&ev, &mut b.buf);
        b.entries.push(EntryMeta {
            start,
            end: b.buf.len() as u32,
            module: Module::Tls,
            kind: EventKind::Data,
            pid: 4242,
            uid: 1000,
            timestamp: ev.timestamp,
            payload_len: PAYLOAD as u32,
        });
    }
    Arc::new(b)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

#[derive(Debug, Clone, Copy)]
struct Item {
    timestamp: i64,
    order: u64,
    start: u32,
    end: u32,
}

/// The forwarder's batching steps with reused buffers (see the module docs).
struct BodyBuilder {
    pending: Vec<u8>,
    items: Vec<Item>,
    next_order: u64,
    seq: u64,
    raw: Vec<u8>,
    body: Vec<u8>,
    gzip: GzipEncoder,
}

/// The forwarder's compression level.
fn level() -> Compression {
    Compression::new(GzipEncoder::LEVEL)
}

impl BodyBuilder {
    fn new() -> Self {
        Self {
            pending: Vec::with_capacity(256 * 1024),
            items: Vec::with_capacity(4 * EVENTS),
            next_order: 0,
            seq: 0,
            raw: Vec::with_capacity(256 * 1024),
            body: Vec::with_capacity(256 * 1024),
            gzip: GzipEncoder::new(),
        }
    }

    /// Copies a loop batch's entries out (the loop's batch is released).
    fn take(&mut self, b: &Batch) {
        for (i, m) in b.entries.iter().enumerate() {
            let start = self.pending.len() as u32;
            self.pending.extend_from_slice(b.body(i));
            self.items.push(Item {
                timestamp: m.timestamp,
                order: self.next_order,
                start,
                end: self.pending.len() as u32,
            });
            self.next_order += 1;
        }
    }

    /// Encodes every pending entry as one body and returns it.
    fn emit(&mut self, format: Format, gzip: bool) -> &[u8] {
        self.items
            .sort_unstable_by_key(|it| (it.timestamp, it.order));
        let out = if gzip { &mut self.raw } else { &mut self.body };
        out.clear();
        for it in &self.items {
            let entry = &self.pending[it.start as usize..it.end as usize];
            self.seq += 1;
            match format {
                Format::Json => {
                    let f = event_fields_of(entry).expect("entry decodes");
                    write_ndjson_line(&f, self.seq, out);
                }
                Format::Protobuf => {
                    let (prefix, n) = encode::seq_prefix(self.seq);
                    encode::encode_batch_item_header(n + entry.len(), out);
                    out.extend_from_slice(&prefix[..n]);
                    out.extend_from_slice(entry);
                }
            }
        }
        self.items.clear();
        self.pending.clear();
        if gzip {
            self.gzip.compress(&self.raw, &mut self.body).expect("gzip");
        }
        &self.body
    }
}

/// Replaces `out` with the gzip member of `input` as zlib-rs writes it
/// (`Compress::new_gzip`: header and trailer from the deflate state, its
/// CRC-32 folded over each window fill). `deflate` is such a state.
fn zlib_gzip_member(deflate: &mut Compress, input: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(GzipEncoder::max_len(input.len()));
    deflate.reset();
    let start_in = deflate.total_in();
    loop {
        let rest = &input[(deflate.total_in() - start_in) as usize..];
        let status = deflate
            .compress_vec(rest, out, FlushCompress::Finish)
            .expect("deflate");
        if status == Status::StreamEnd {
            break;
        }
        out.reserve(4096);
    }
}

/// A loopback TCP peer that reads and discards everything until EOF.
struct Sink {
    stream: TcpStream,
    reader: JoinHandle<u64>,
}

impl Sink {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let reader = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n as u64,
                }
            }
        });
        let stream = TcpStream::connect(addr).expect("connect loopback");
        stream.set_nodelay(true).expect("nodelay");
        Self { stream, reader }
    }

    fn finish(self) -> u64 {
        drop(self.stream);
        self.reader.join().expect("sink thread")
    }
}

/// Writes one POST (head, then body) to `s`; `head` is a reused buffer.
fn post(s: &mut TcpStream, head: &mut Vec<u8>, format: Format, gzip: bool, body: &[u8]) {
    head.clear();
    head.extend_from_slice(b"POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ");
    head.extend_from_slice(match format {
        Format::Protobuf => b"application/x-protobuf",
        Format::Json => b"application/x-ndjson",
    });
    if gzip {
        head.extend_from_slice(b"\r\nContent-Encoding: gzip");
    }
    head.extend_from_slice(b"\r\nContent-Length: ");
    head.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    head.extend_from_slice(b"\r\n\r\n");
    write_all2(s, head, body).expect("write the request");
}

/// Writes `a` then `b` with vectored writes, as the forwarder's client does.
fn write_all2(s: &mut TcpStream, mut a: &[u8], mut b: &[u8]) -> std::io::Result<()> {
    while !a.is_empty() || !b.is_empty() {
        let n = match s.write_vectored(&[IoSlice::new(a), IoSlice::new(b)]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let from_a = n.min(a.len());
        a = &a[from_a..];
        b = &b[n - from_a..];
    }
    Ok(())
}

const CASES: [(&str, Format, bool); 4] = [
    ("protobuf", Format::Protobuf, false),
    ("protobuf_gzip", Format::Protobuf, true),
    ("json", Format::Json, false),
    ("json_gzip", Format::Json, true),
];

fn forward_body(c: &mut Criterion) {
    let batch = loop_batch();
    let mut g = c.benchmark_group("forward_body");
    g.throughput(Throughput::Elements(EVENTS as u64));
    for (name, format, gzip) in CASES {
        let mut bb = BodyBuilder::new();
        g.bench_function(name, |b| {
            b.iter(|| {
                bb.take(black_box(&batch));
                black_box(bb.emit(format, gzip).len())
            })
        });
    }
    g.finish();
}

fn forward_post(c: &mut Criterion) {
    let batch = loop_batch();
    let mut g = c.benchmark_group("forward_post");
    g.throughput(Throughput::Elements(EVENTS as u64));
    for (name, format, gzip) in CASES {
        let mut bb = BodyBuilder::new();
        let mut sink = Sink::start();
        let mut head = Vec::with_capacity(256);
        g.bench_function(name, |b| {
            b.iter(|| {
                bb.take(black_box(&batch));
                let body = bb.emit(format, gzip);
                post(&mut sink.stream, &mut head, format, gzip, body);
            })
        });
        black_box(sink.finish());
    }
    g.finish();
}

/// The loopback HTTP/1.1 collector of `forward_pipeline`: reads each
/// request whole (head, then Content-Length bytes of body) on the
/// forwarder's keep-alive connection and answers `200` with an empty body.
struct HttpSink {
    addr: SocketAddr,
    answered: Arc<Answered>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Requests answered, and the count a waiter waits for (it is woken only
/// then, so the bench's own thread costs little).
struct Answered {
    count: Mutex<u64>,
    wanted: AtomicU64,
    cv: Condvar,
}

impl Default for Answered {
    fn default() -> Self {
        Self {
            count: Mutex::new(0),
            wanted: AtomicU64::new(u64::MAX),
            cv: Condvar::new(),
        }
    }
}

impl Answered {
    fn add(&self, n: u64) {
        let mut c = self.count.lock().unwrap_or_else(PoisonError::into_inner);
        *c += n;
        if *c >= self.wanted.load(Ordering::Acquire) {
            self.cv.notify_all();
        }
    }
}

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

/// The name of the sink's connection threads (their CPU time is reported).
const SINK_THREAD: &str = "fwd-bench-sink";

impl HttpSink {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let answered = Arc::new(Answered::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (a, st) = (Arc::clone(&answered), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("fwd-bench-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if st.load(Ordering::Acquire) {
                        return;
                    }
                    if let Ok(c) = conn {
                        // A thread per connection (the forwarder may keep
                        // several); it ends when the forwarder closes it.
                        let a = Arc::clone(&a);
                        std::thread::Builder::new()
                            .name(SINK_THREAD.into())
                            .spawn(move || {
                                // A broken connection: the forwarder opens a new one.
                                let _ = serve_requests(c, &a);
                            })
                            .expect("start a sink thread");
                    }
                }
            })
            .expect("start the sink's accept thread");
        Self {
            addr,
            answered,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits until `n` requests have been answered in all; returns how many are.
    fn wait_for(&self, n: u64, fwd: &Forwarder) -> u64 {
        let a = &*self.answered;
        let mut c = a.count.lock().unwrap_or_else(PoisonError::into_inner);
        a.wanted.store(n, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(30);
        while *c < n {
            let now = Instant::now();
            assert!(
                now < deadline,
                "the sink answered {} of {n} requests; forwarder {:?}",
                *c,
                fwd.stats()
            );
            c =
                a.cv.wait_timeout(c, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
        }
        a.wanted.store(u64::MAX, Ordering::Release);
        *c
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the accept (the forwarder's connection is closed by now).
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves requests on one connection until it closes.
fn serve_requests(mut s: TcpStream, answered: &Answered) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = vec![0u8; 256 * 1024];
    // Bytes of an incomplete head kept at the front of `buf`.
    let mut have = 0;
    // Body bytes still to come.
    let mut body_left = 0usize;
    loop {
        let n = s.read(&mut buf[have..])?;
        if n == 0 {
            return Ok(());
        }
        let end = have + n;
        let mut pos = 0;
        let mut done = 0u64;
        loop {
            if body_left > 0 {
                let k = body_left.min(end - pos);
                body_left -= k;
                pos += k;
                if body_left > 0 {
                    break;
                }
                s.write_all(RESPONSE)?;
                done += 1;
                continue;
            }
            let Some(h) = buf[pos..end].windows(4).position(|w| w == b"\r\n\r\n") else {
                break;
            };
            let len = content_length(&buf[pos..pos + h]).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "no Content-Length")
            })?;
            pos += h + 4;
            body_left = len;
            if len == 0 {
                s.write_all(RESPONSE)?;
                done += 1;
            }
        }
        if done > 0 {
            answered.add(done);
        }
        buf.copy_within(pos..end, 0);
        have = end - pos;
        if have == buf.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
    }
}

/// The Content-Length of a request head (as the forwarder spells it).
fn content_length(head: &[u8]) -> Option<usize> {
    const NAME: &[u8] = b"\r\nContent-Length: ";
    let at = head.windows(NAME.len()).position(|w| w == NAME)? + NAME.len();
    let digits = head[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&head[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// Loop batches the pipeline lets be offered but not yet answered (well
/// below the forwarder's intake of 256, so none is dropped) when a request
/// holds one; at least six requests' worth when it holds more. It tops the
/// window up when half of it has been answered.
const WINDOW: u64 = 32;

/// A running [`Forwarder`] posting to an [`HttpSink`].
struct Pipeline {
    fwd: Forwarder,
    sink: HttpSink,
    /// Loop batches (of `EVENTS` events) a request holds: `batch_size` is
    /// `EVENTS` times this.
    per_request: u64,
    /// Loop batches let be offered but not yet answered.
    window: u64,
    /// Copies of the loop batch, offered in turn (see `next_batch`): twice
    /// the window, so a batch is offered again only after the forwarder
    /// has answered it (and let go of it).
    ring: Vec<Arc<Batch>>,
    /// The loop batch's timestamps.
    timestamps: Vec<i64>,
    /// The loop batch's bytes.
    template: Vec<u8>,
    /// Loop batches offered.
    offered: u64,
    /// Requests answered when last looked.
    answered: u64,
}

impl Pipeline {
    fn start(format: ForwardFormat, gzip: bool, concurrency: usize, per_request: u64) -> Self {
        let sink = HttpSink::start();
        let url = CollectorUrl::parse(&format!("http://{}/events", sink.addr)).expect("url");
        let mut cfg = ForwardConfig::new(url, format);
        cfg.batch_size = EVENTS * per_request as usize;
        cfg.gzip = gzip;
        cfg.concurrency = concurrency;
        let fwd = Forwarder::start(cfg).expect("start the forwarder");
        let batch = loop_batch();
        let timestamps = batch.entries.iter().map(|m| m.timestamp).collect();
        let template = batch.buf.clone();
        let window = WINDOW.max(6 * per_request);
        let ring = (0..2 * window)
            .map(|_| {
                Arc::new(Batch {
                    worker: 0,
                    buf: batch.buf.clone(),
                    entries: batch.entries.clone(),
                })
            })
            .collect();
        Self {
            fwd,
            sink,
            per_request,
            window,
            ring,
            timestamps,
            template,
            offered: 0,
            answered: 0,
        }
    }

    /// The ring index of the next batch to offer: the loop batch with the times the batcher
    /// orders by moved past the previous batch's, so a burst of batches
    /// taken together is not interleaved — every body holds the bytes of
    /// one loop batch, as `protobuf_body` (the raw reference) does.
    fn next_batch(&mut self) -> usize {
        let i = (self.offered % self.ring.len() as u64) as usize;
        let shift = self.offered as i64 * 1_000_000;
        let b = Arc::get_mut(&mut self.ring[i]).expect("the forwarder let go of the batch");
        for (m, t) in b.entries.iter_mut().zip(&self.timestamps) {
            m.timestamp = t + shift;
        }
        // Written now, as a worker writes a batch just before the loop
        // hands it over (its bytes are in this CPU's cache, not stale).
        b.buf.copy_from_slice(&self.template);
        i
    }

    /// Makes `n` requests — offers `n * per_request` loop batches of
    /// `EVENTS` events — and waits until the sink has answered all of them.
    fn run(&mut self, n: u64) -> Duration {
        let t0 = Instant::now();
        for _ in 0..n * self.per_request {
            if self.offered - self.answered * self.per_request >= self.window {
                let want = (self.offered - self.window / 2).div_ceil(self.per_request);
                self.answered = self.sink.wait_for(want, &self.fwd);
            }
            let i = self.next_batch();
            self.fwd.offer(&self.ring[i]);
            self.offered += 1;
        }
        self.answered = self
            .sink
            .wait_for(self.offered / self.per_request, &self.fwd);
        t0.elapsed()
    }

    fn finish(self) {
        let s = self.fwd.shutdown(Duration::from_secs(5));
        assert_eq!(
            (s.sent_events, s.dropped_events, s.retries, s.failed_batches),
            (self.offered * EVENTS as u64, 0, 0, 0),
            "{s:?}"
        );
    }
}

/// One body compressed alone at the forwarder's level, the state reset per
/// body as the forwarder does: raw deflate (the backend's own speed) or the
/// forwarder's whole gzip member (deflate + header, CRC-32, size).
struct Alone {
    deflate: Compress,
    gzip: GzipEncoder,
    input: Vec<u8>,
    out: Vec<u8>,
}

impl Alone {
    fn new(input: Vec<u8>) -> Self {
        let out = Vec::with_capacity(GzipEncoder::max_len(input.len()));
        Self {
            deflate: Compress::new(level(), false),
            gzip: GzipEncoder::new(),
            input,
            out,
        }
    }

    fn raw_once(&mut self) -> u64 {
        self.deflate.reset();
        self.out.clear();
        let s = self
            .deflate
            .compress_vec(&self.input, &mut self.out, FlushCompress::Finish)
            .expect("deflate");
        assert_eq!(s, Status::StreamEnd);
        self.deflate.total_out()
    }

    fn member_once(&mut self) -> usize {
        self.gzip
            .compress(&self.input, &mut self.out)
            .expect("gzip");
        self.out.len()
    }

    /// `n` bodies, raw deflate or gzip members: wall and this thread's CPU time.
    fn run(&mut self, n: u64, member: bool, me: &str) -> (Duration, Duration) {
        let c0 = thread_cpu(me);
        let t0 = Instant::now();
        for _ in 0..n {
            if member {
                black_box(self.member_once());
            } else {
                black_box(self.raw_once());
            }
        }
        (t0.elapsed(), thread_cpu(me).saturating_sub(c0))
    }
}

/// Moves a thread of this process to one CPU (`FORWARD_BENCH_PIN`).
fn pin_thread(tid: &str, cpu: usize) {
    let tid: libc::pid_t = tid.parse().expect("a task id");
    // SAFETY: `set` is a plain bit set, zeroed then filled by the libc
    // macros; sched_setaffinity only reads it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(
        rc,
        0,
        "pin task {tid} to CPU {cpu}: {}",
        std::io::Error::last_os_error()
    );
}

/// CPU time a thread has run so far (`/proc/self/task/TID/schedstat`, ns).
fn thread_cpu(tid: &str) -> Duration {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split(' ').next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// The task ids of this process's threads named `name` (waits up to a
/// second for one to exist).
fn threads_named(name: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let found: Vec<String> = std::fs::read_dir("/proc/self/task")
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| {
                        std::fs::read_to_string(e.path().join("comm"))
                            .is_ok_and(|c| c.trim() == name)
                    })
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if !found.is_empty() || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// CPU time the threads have run so far.
fn cpu_of(tids: &[String]) -> Duration {
    tids.iter().map(|t| thread_cpu(t)).sum()
}

/// This thread's task id (`/proc/thread-self` links to `PID/task/TID`).
fn this_thread() -> String {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

/// The uncompressed protobuf body of one loop batch, as the forwarder builds it.
fn protobuf_body() -> Vec<u8> {
    request_body(1)
}

/// The uncompressed protobuf body of a request holding `per_request` loop
/// batches offered one after the other, as [`Pipeline`] offers them (each
/// batch's times moved past the previous one's, `seq` running on).
fn request_body(per_request: u64) -> Vec<u8> {
    let mut bb = BodyBuilder::new();
    let batch = loop_batch();
    for k in 0..per_request {
        let mut b = Batch {
            worker: 0,
            buf: batch.buf.clone(),
            entries: batch.entries.clone(),
        };
        for m in &mut b.entries {
            m.timestamp += k as i64 * 1_000_000;
        }
        bb.take(&b);
    }
    bb.emit(Format::Protobuf, false).to_vec()
}

fn forward_pipeline(c: &mut Criterion) {
    let body = protobuf_body();
    let mut g = c.benchmark_group("forward_pipeline");
    g.throughput(Throughput::Elements(EVENTS as u64));

    let me = this_thread();
    // Wall time and batches, and the CPU time of every thread involved
    // (forwarder, sink, this one), with the default requests in flight
    // (two) and one at a time.
    let mut plain = [(Duration::ZERO, 0u64, Duration::ZERO); 2];
    for (k, concurrency) in [DEFAULT_CONCURRENCY, 1].into_iter().enumerate() {
        let mut p = Pipeline::start(ForwardFormat::Protobuf, false, concurrency, 1);
        // Sender and sink threads are found once their connections are up.
        p.run(WINDOW);
        let tids: Vec<String> = ["rcapture-fwd-ba", "rcapture-fwd-se", SINK_THREAD]
            .iter()
            .flat_map(|n| threads_named(n))
            .chain([me.clone()])
            .collect();
        let sums = Cell::new(plain[k]);
        let name = if concurrency == DEFAULT_CONCURRENCY {
            "protobuf".to_string()
        } else {
            format!("protobuf_concurrency{concurrency}")
        };
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let c0 = cpu_of(&tids);
                let t = p.run(iters);
                let (d, n, c) = sums.get();
                sums.set((d + t, n + iters, c + cpu_of(&tids).saturating_sub(c0)));
                t
            })
        });
        plain[k] = sums.get();
        p.finish();
    }

    // gzip with the default batch size, then with ten times as many events
    // a request (a body of ~417 KB, still far below what collectors take).
    let gz = gzip_pipeline(&mut g, &me, 1, "protobuf_gzip");
    let gz10 = gzip_pipeline(&mut g, &me, 10, "protobuf_gzip_batch1000");

    g.throughput(Throughput::Elements(EVENTS as u64));
    let mut alone = Alone::new(body.clone());
    g.bench_function(format!("raw_deflate_level{}", GzipEncoder::LEVEL), |b| {
        b.iter(|| black_box(alone.raw_once()))
    });
    g.bench_function(format!("gzip_member_level{}", GzipEncoder::LEVEL), |b| {
        b.iter(|| black_box(alone.member_once()))
    });
    g.finish();

    let rates = plain.map(|(d, n, c)| {
        let events = n as f64 * EVENTS as f64;
        (
            events / d.as_secs_f64().max(1e-9) / 1e6,
            c.as_secs_f64() * 1e6 / n.max(1) as f64,
            2.0 * events / c.as_secs_f64().max(1e-9) / 1e6,
        )
    });
    eprintln!(
        "forward_pipeline: {EVENTS} events x {PAYLOAD} B a loop batch, protobuf body {} bytes, gzip level {}\n\
         \x20 protobuf ({DEFAULT_CONCURRENCY} requests in flight, the default): {:.2} M events/s (target >= 2 M); \
         CPU a batch, all threads (forwarder, sink, bench thread): {:.1} us -> two CPUs kept busy would reach {:.2} M events/s\n\
         \x20 protobuf, 1 request in flight: {:.2} M events/s; CPU a batch {:.1} us -> at most {:.2} M events/s\n{}{}",
        body.len(),
        GzipEncoder::LEVEL,
        rates[0].0,
        rates[0].1,
        rates[0].2,
        rates[1].0,
        rates[1].1,
        rates[1].2,
        gz.report("protobuf_gzip"),
        gz10.report("protobuf_gzip_batch1000"),
    );
}

/// Runs the gzip pipeline with `per_request` loop batches a request as
/// bench `name`. Each sample is followed by as many of its bodies
/// compressed alone (raw deflate, then gzip members): the ratios compare
/// them under the same load. The CPU time of the forwarder's threads, the
/// sink's and this thread's, and of the compressions alone, are summed too
/// (less sensitive to what else the machine runs than wall time).
fn gzip_pipeline(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    me: &str,
    per_request: u64,
    name: &str,
) -> GzipSums {
    g.throughput(Throughput::Elements(EVENTS as u64 * per_request));
    let body = request_body(per_request);
    let mut p = Pipeline::start(
        ForwardFormat::Protobuf,
        true,
        DEFAULT_CONCURRENCY,
        per_request,
    );
    // The sink's connection thread exists once the first request is made.
    p.run(WINDOW.div_ceil(per_request));
    // Batcher, compressors (one per CPU, up to two), senders (one per
    // request in flight), the sink's connection threads. Thread names are
    // cut to 15 bytes.
    let groups = [
        threads_named("rcapture-fwd-ba"),
        ["rcapture-gzip-0", "rcapture-gzip-1"]
            .iter()
            .flat_map(|n| threads_named(n))
            .collect(),
        threads_named("rcapture-fwd-se"),
        threads_named(SINK_THREAD),
    ];
    assert!(groups.iter().all(|g| !g.is_empty()), "{groups:?}");
    if std::env::var_os("FORWARD_BENCH_PIN").is_some() {
        // The compressor on a CPU of its own, everything else (this
        // thread, the sink, batcher, sender) on the other.
        for e in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
            let tid = e
                .expect("a task")
                .file_name()
                .to_string_lossy()
                .into_owned();
            pin_thread(&tid, 0);
        }
        pin_thread(&groups[1][0], 1);
    }
    let mut alone = Alone::new(body.clone());
    let gz = Cell::new(GzipSums {
        body: body.len(),
        events: EVENTS as u64 * per_request,
        ..GzipSums::default()
    });
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let c0 = groups.each_ref().map(|g| cpu_of(g));
            let m0 = thread_cpu(me);
            let t = p.run(iters);
            let m1 = thread_cpu(me);
            let c1 = groups.each_ref().map(|g| cpu_of(g));
            let raw = alone.run(iters, false, me);
            let member = alone.run(iters, true, me);
            let mut s = gz.get();
            s.batches += iters;
            s.pipeline += t;
            for i in 0..4 {
                s.cpu[i] += c1[i].saturating_sub(c0[i]);
            }
            s.main += m1.saturating_sub(m0);
            s.raw.0 += raw.0;
            s.raw.1 += raw.1;
            s.member.0 += member.0;
            s.member.1 += member.1;
            gz.set(s);
            t
        })
    });
    p.finish();
    gz.get()
}

/// What the gzip samples of `forward_pipeline` summed.
#[derive(Debug, Default, Clone, Copy)]
struct GzipSums {
    /// Bytes of one uncompressed request body, and its events.
    body: usize,
    events: u64,
    /// Requests made.
    batches: u64,
    /// Wall time of the pipeline runs.
    pipeline: Duration,
    /// CPU time of the forwarder's batcher, compressor and sender threads
    /// in them, and of the sink's threads.
    cpu: [Duration; 4],
    /// CPU time of the bench's own thread in them (offering batches).
    main: Duration,
    /// Wall and CPU time of as many bodies compressed alone: raw deflate,
    /// and the gzip member.
    raw: (Duration, Duration),
    member: (Duration, Duration),
}

impl GzipSums {
    /// The lines `forward_pipeline` prints for bench `name`.
    fn report(&self, name: &str) -> String {
        let s = self;
        let mb = |d: Duration| s.batches as f64 * s.body as f64 / d.as_secs_f64().max(1e-9) / 1e6;
        let us = |d: Duration| d.as_secs_f64() * 1e6 / s.batches.max(1) as f64;
        let pct = |fast: Duration, slow: Duration| {
            100.0 * fast.as_secs_f64() / slow.as_secs_f64().max(1e-9)
        };
        let fwd_cpu = s.cpu[..3].iter().sum::<Duration>();
        format!(
            "\x20 {name} ({} events, {} bytes a request): {:.2} M events/s = {:.0} MB/s of body. \
             The same body compressed alone, in the same samples:\n\
             \x20   raw deflate: {:.0} MB/s -> pipeline at {:.0} % of it (target >= 70 %)\n\
             \x20   gzip member: {:.0} MB/s -> pipeline at {:.0} % of it\n\
             \x20 CPU a request: batcher {:.1} us, compressors {:.1} us, sender {:.1} us; the same body alone: \
             raw deflate {:.1} us ({:.0} % of the compressors'), gzip member {:.1} us ({:.0} %)\n\
             \x20 CPU a request, all threads: forwarder {:.1} us + sink {:.1} us + bench thread offering {:.1} us \
             -> two CPUs kept busy would reach {:.0} % of raw deflate\n",
            s.events,
            s.body,
            s.batches as f64 * s.events as f64 / s.pipeline.as_secs_f64().max(1e-9) / 1e6,
            mb(s.pipeline),
            mb(s.raw.0),
            pct(s.raw.0, s.pipeline),
            mb(s.member.0),
            pct(s.member.0, s.pipeline),
            us(s.cpu[0]),
            us(s.cpu[1]),
            us(s.cpu[2]),
            us(s.raw.1),
            pct(s.raw.1, s.cpu[1]),
            us(s.member.1),
            pct(s.member.1, s.cpu[1]),
            us(fwd_cpu),
            us(s.cpu[3]),
            us(s.main),
            pct(2 * s.raw.1, fwd_cpu + s.cpu[3] + s.main),
        )
    }
}

fn gzip_backends(c: &mut Criterion) {
    let input = protobuf_body();
    let mut out = vec![0u8; GzipEncoder::max_len(input.len())];
    let mut g = c.benchmark_group("gzip_backends");
    g.throughput(Throughput::Bytes(input.len() as u64));

    let mut deflate = Compress::new(level(), false);
    g.bench_function(FLATE2_BACKEND, |b| {
        b.iter(|| {
            deflate.reset();
            let s = deflate
                .compress(&input, &mut out, FlushCompress::Finish)
                .expect("deflate");
            assert_eq!(s, Status::StreamEnd);
            black_box(deflate.total_out())
        })
    });

    let mut mz: Box<miniz_oxide::deflate::core::CompressorOxide> = Box::default();
    mz.set_format_and_level(miniz_oxide::DataFormat::Raw, GzipEncoder::LEVEL as u8);
    g.bench_function("miniz_oxide", |b| {
        b.iter(|| {
            mz.reset();
            let r = miniz_oxide::deflate::stream::deflate(
                &mut mz,
                &input,
                &mut out,
                miniz_oxide::MZFlush::Finish,
            );
            assert_eq!(r.status, Ok(miniz_oxide::MZStatus::StreamEnd));
            black_box(r.bytes_written)
        })
    });

    #[cfg(feature = "zlib-rs")]
    {
        let mut z = zlib_rs::Deflate::new(GzipEncoder::LEVEL as i32, false, 15);
        g.bench_function("zlib-rs", |b| {
            b.iter(|| {
                z.reset();
                let s = z
                    .compress(&input, &mut out, zlib_rs::DeflateFlush::Finish)
                    .expect("deflate");
                assert_eq!(s, zlib_rs::Status::StreamEnd);
                black_box(z.total_out())
            })
        });
    }

    // The gzip trailer's CRC-32: flate2's (zlib-rs's own here) and
    // crc32fast's, which the forwarder uses.
    g.bench_function("crc32_flate2", |b| {
        b.iter(|| {
            let mut crc = Crc::new();
            crc.update(black_box(&input));
            black_box(crc.sum())
        })
    });
    g.bench_function("crc32_crc32fast", |b| {
        b.iter(|| black_box(crc32fast::hash(black_box(&input))))
    });

    // The gzip member three ways, on the same backend and level.
    let mut enc = GzipEncoder::new();
    let mut gz = Vec::with_capacity(GzipEncoder::max_len(input.len()));
    g.bench_function("member_gzip_encoder", |b| {
        b.iter(|| {
            enc.compress(black_box(&input), &mut gz).expect("gzip");
            black_box(gz.len())
        })
    });
    let mut zlib_gz = Compress::new_gzip(level(), 15);
    g.bench_function("member_zlib_wrapper", |b| {
        b.iter(|| {
            zlib_gzip_member(&mut zlib_gz, black_box(&input), &mut gz);
            black_box(gz.len())
        })
    });
    g.bench_function("member_flate2_gzencoder", |b| {
        b.iter(|| {
            gz.clear();
            let mut w = flate2::write::GzEncoder::new(&mut gz, level());
            w.write_all(black_box(&input)).expect("gzip");
            black_box(w.finish().expect("gzip").len())
        })
    });

    // Other levels of the same backend (the forwarder's is `GzipEncoder::LEVEL`).
    let mut sizes = Vec::new();
    for lv in [2, 6] {
        let mut d = Compress::new(Compression::new(lv), false);
        d.compress(&input, &mut out, FlushCompress::Finish)
            .expect("deflate");
        sizes.push(format!("level {lv} {} bytes", d.total_out()));
        g.bench_function(format!("{FLATE2_BACKEND}_level{lv}"), |b| {
            b.iter(|| {
                d.reset();
                let s = d
                    .compress(&input, &mut out, FlushCompress::Finish)
                    .expect("deflate");
                assert_eq!(s, Status::StreamEnd);
                black_box(d.total_out())
            })
        });
    }
    g.finish();

    enc.compress(&input, &mut gz).expect("gzip");
    let mut sizes = format!(
        "{FLATE2_BACKEND} gzip member (level {}) {} bytes, {}",
        GzipEncoder::LEVEL,
        gz.len(),
        sizes.join(", ")
    );
    mz.reset();
    let r = miniz_oxide::deflate::stream::deflate(
        &mut mz,
        &input,
        &mut out,
        miniz_oxide::MZFlush::Finish,
    );
    sizes += &format!(", miniz_oxide deflate {} bytes", r.bytes_written);
    #[cfg(feature = "zlib-rs")]
    {
        let mut z = zlib_rs::Deflate::new(GzipEncoder::LEVEL as i32, false, 15);
        let _ = z.compress(&input, &mut out, zlib_rs::DeflateFlush::Finish);
        sizes += &format!(", zlib-rs deflate {} bytes", z.total_out());
    }
    eprintln!(
        "gzip_backends: protobuf body of {EVENTS} events x {PAYLOAD} B = {} bytes; {sizes}",
        input.len()
    );
}

criterion_group!(
    benches,
    forward_body,
    forward_post,
    forward_pipeline,
    gzip_backends
);
criterion_main!(benches);
