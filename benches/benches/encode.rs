//! Criterion benches of the hot path: decode → join → event fields → protobuf/NDJSON encode, against memcpy.
//!
//! Run: `cargo bench -p rcapture-benches -- --warm-up-time 1 --measurement-time 3`.
//! Groups:
//! - `pipeline_events`: events/s of the whole path per payload size.
//! - `pipeline_bytes`: payload bytes/s of the same path, next to `memcpy`
//!   copying the same payload bytes into a reused buffer (the ceiling).
//! - `stages_256`: each stage alone at 256 B, to see where time goes.
//! - `ndjson_256`: one NDJSON line (WIRE.md §5) from a built event.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rcapture_core::decode::decode;
use rcapture_core::encode;
use rcapture_core::event::{Clock, EventScratch, event_fields};
use rcapture_core::join::Reassembler;
use rcapture_core::ndjson;
use rcapture_core::records::{DIR_SEND, RecordKind};
use rcapture_core::synth;
use std::hint::black_box;

const SIZES: [usize; 4] = [64, 256, 4096, 16384];

/// One TLS data record (OpenSSL, IPv4 tuple, send) carrying `size` payload bytes.
fn tls_record(size: usize) -> Vec<u8> {
    let hdr = synth::header(RecordKind::TlsData, 4242, 4243, 1000, "curl", 123_456_789);
    let tuple = synth::tuple(
        "10.1.2.3:52814".parse().unwrap(),
        "93.184.216.34:443".parse().unwrap(),
    );
    let fixed = synth::data(hdr, 5, DIR_SEND, 0xffff_8880_1234_5678, tuple);
    let payload: Vec<u8> = (0..size).map(|i| (i * 31) as u8).collect();
    synth::single(fixed, &payload)
}

/// The worker state one pipeline iteration reuses.
struct Worker {
    join: Reassembler,
    scratch: EventScratch,
    clock: Clock,
    frame: Vec<u8>,
}

impl Worker {
    fn new() -> Self {
        Self {
            join: Reassembler::new(16, 1 << 20),
            scratch: EventScratch::new(),
            clock: Clock::from_offset(1_764_000_000_000_000_000),
            frame: Vec::with_capacity(64 * 1024),
        }
    }

    /// decode → join → event_fields → encode (seq prefix + entry); returns the frame length.
    fn run(&mut self, raw: &[u8], seq: u64) -> usize {
        let rec = decode(raw).expect("synthetic record decodes");
        let Worker {
            join,
            scratch,
            clock,
            frame,
        } = self;
        join.push(rec, &mut |r, truncated| {
            let ev = event_fields(r, truncated, clock, scratch);
            frame.clear();
            encode::encode_seq_prefix(seq, frame);
            encode::encode_event_entry(&ev, frame);
        });
        frame.len()
    }
}

fn pipeline(c: &mut Criterion) {
    let records: Vec<(usize, Vec<u8>)> = SIZES.iter().map(|&s| (s, tls_record(s))).collect();
    let mut g = c.benchmark_group("pipeline_events");
    for (size, raw) in &records {
        g.throughput(Throughput::Elements(1));
        let mut w = Worker::new();
        let mut seq = 0u64;
        g.bench_with_input(BenchmarkId::new("encode", size), raw, |b, raw| {
            b.iter(|| {
                seq += 1;
                w.run(black_box(raw), seq)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("pipeline_bytes");
    for (size, raw) in &records {
        g.throughput(Throughput::Bytes(*size as u64));
        let mut w = Worker::new();
        let mut seq = 0u64;
        g.bench_with_input(BenchmarkId::new("encode", size), raw, |b, raw| {
            b.iter(|| {
                seq += 1;
                w.run(black_box(raw), seq)
            })
        });
        let payload = &raw[raw.len() - size..];
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        g.bench_with_input(BenchmarkId::new("memcpy", size), payload, |b, p| {
            b.iter(|| {
                buf.clear();
                buf.extend_from_slice(black_box(p));
                black_box(buf.len())
            })
        });
    }
    g.finish();
}

fn stages(c: &mut Criterion) {
    let raw = tls_record(256);
    let clock = Clock::from_offset(1_764_000_000_000_000_000);
    let mut scratch = EventScratch::new();
    let mut g = c.benchmark_group("stages_256");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode", |b| b.iter(|| decode(black_box(&raw)).is_ok()));
    let rec = decode(&raw).unwrap();
    let mut join = Reassembler::new(16, 1 << 20);
    g.bench_function("join_push", |b| {
        b.iter(|| {
            let mut n = 0;
            join.push(black_box(rec), &mut |r, t| {
                n += r.payload().len() + t as usize
            });
            n
        })
    });
    g.bench_function("event_fields", |b| {
        b.iter(|| {
            event_fields(black_box(&rec), 0, &clock, &mut scratch)
                .uuid
                .len()
        })
    });
    let mut frame = Vec::with_capacity(4096);
    let ev = event_fields(&rec, 0, &clock, &mut scratch);
    g.bench_function("encode_event_entry", |b| {
        b.iter(|| {
            frame.clear();
            encode::encode_seq_prefix(17, &mut frame);
            encode::encode_event_entry(black_box(&ev), &mut frame);
            frame.len()
        })
    });
    g.finish();
}

fn ndjson_line(c: &mut Criterion) {
    let raw = tls_record(256);
    let rec = decode(&raw).unwrap();
    let mut scratch = EventScratch::new();
    let ev = event_fields(
        &rec,
        0,
        &Clock::from_offset(1_764_000_000_000_000_000),
        &mut scratch,
    );
    let mut line = Vec::with_capacity(ndjson::ndjson_line_max_len(&ev));
    let mut g = c.benchmark_group("ndjson_256");
    g.throughput(Throughput::Elements(1));
    g.bench_function("events", |b| {
        b.iter(|| {
            line.clear();
            ndjson::write_ndjson_line(black_box(&ev), 17, &mut line);
            line.len()
        })
    });
    g.throughput(Throughput::Bytes(256));
    g.bench_function("payload_bytes", |b| {
        b.iter(|| {
            line.clear();
            ndjson::write_ndjson_line(black_box(&ev), 17, &mut line);
            line.len()
        })
    });
    g.finish();
}

criterion_group!(benches, pipeline, stages, ndjson_line);
criterion_main!(benches);
