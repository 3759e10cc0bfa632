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
//! - `gzip_backends`: MB/s of raw deflate at `Compression::fast()` (level 1)
//!   of the same protobuf batch body, per backend, side by side, plus the
//!   gzip trailer's CRC-32. flate2 uses one backend per build: miniz_oxide by
//!   default, zlib-rs with `--features zlib-rs`, zlib-ng with `--features
//!   zlib-ng` (needs cmake); miniz_oxide is always also run directly, and
//!   zlib-rs directly whenever the `zlib-rs` feature is on, so
//!   `--features zlib-rs,zlib-ng` compares all three in one build.
//!
//! The forwarder's body building is private to its batcher thread
//! (`net/src/forward/batcher.rs`), so [`BodyBuilder`] runs the same steps
//! with the same `rcapture-core` encoders; the gzip member is built as the
//! forwarder's `GzipEncoder` does (one reused `Compress`, header, CRC-32, size).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use rcapture_core::encode;
use rcapture_core::event::{EventFields, EventKind, Module};
use rcapture_core::ndjson::write_ndjson_line;
use rcapture_net::entry::event_fields_of;
use rcapture_net::publish::{Batch, EntryMeta};
use std::hint::black_box;
use std::io::{IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;

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
    deflate: Compress,
}

/// gzip member header: magic, CM=deflate, no flags, mtime 0, XFL 0, OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

impl BodyBuilder {
    fn new() -> Self {
        Self {
            pending: Vec::with_capacity(256 * 1024),
            items: Vec::with_capacity(4 * EVENTS),
            next_order: 0,
            seq: 0,
            raw: Vec::with_capacity(256 * 1024),
            body: Vec::with_capacity(256 * 1024),
            deflate: Compress::new(Compression::fast(), false),
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
            gzip_member(&mut self.deflate, &self.raw, &mut self.body);
        }
        &self.body
    }
}

/// Replaces `out` with the gzip member of `input` (as the forwarder's `GzipEncoder`).
fn gzip_member(deflate: &mut Compress, input: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&GZIP_HEADER);
    deflate.reset();
    let mut crc = Crc::new();
    crc.update(input);
    let start_in = deflate.total_in();
    loop {
        let rest = &input[(deflate.total_in() - start_in) as usize..];
        out.reserve(rest.len() + rest.len() / 1000 + 64);
        let status = deflate
            .compress_vec(rest, out, FlushCompress::Finish)
            .expect("deflate");
        if status == Status::StreamEnd {
            break;
        }
    }
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(input.len() as u32).to_le_bytes());
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

fn gzip_backends(c: &mut Criterion) {
    let batch = loop_batch();
    let mut bb = BodyBuilder::new();
    bb.take(&batch);
    let input = bb.emit(Format::Protobuf, false).to_vec();
    let mut out = vec![0u8; input.len() + input.len() / 100 + 1024];
    let mut g = c.benchmark_group("gzip_backends");
    g.throughput(Throughput::Bytes(input.len() as u64));

    let mut deflate = Compress::new(Compression::fast(), false);
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
    mz.set_format_and_level(miniz_oxide::DataFormat::Raw, 1);
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
        let mut z = zlib_rs::Deflate::new(1, false, 15);
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

    g.bench_function("crc32", |b| {
        b.iter(|| {
            let mut crc = Crc::new();
            crc.update(black_box(&input));
            black_box(crc.sum())
        })
    });
    g.finish();

    let mut gz = Vec::new();
    gzip_member(&mut deflate, &input, &mut gz);
    let mut sizes = format!("{FLATE2_BACKEND} gzip member {} bytes", gz.len());
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
        let mut z = zlib_rs::Deflate::new(1, false, 15);
        let _ = z.compress(&input, &mut out, zlib_rs::DeflateFlush::Finish);
        sizes += &format!(", zlib-rs deflate {} bytes", z.total_out());
    }
    eprintln!(
        "gzip_backends: protobuf body of {EVENTS} events x {PAYLOAD} B = {} bytes; {sizes}",
        input.len()
    );
}

criterion_group!(benches, forward_body, forward_post, gzip_backends);
criterion_main!(benches);
