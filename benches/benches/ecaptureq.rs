//! Criterion bench of the `--ecaptureq` stream's rewrite (net/src/ecaptureq.rs):
//! per event, reading an encoded TLS data entry back, classifying its
//! payload, orienting it and encoding it again, next to the workers'
//! encode of the same events (the cost every event pays once anyway).
//!
//! Run: `cargo bench -p rcapture-benches --bench ecaptureq -- --warm-up-time 1 --measurement-time 3`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rcapture_core::encode;
use rcapture_core::event::{Detail, EventFields, EventKind, Module};
use rcapture_net::ecaptureq::EcaptureqBatches;
use rcapture_net::publish::{Batch, BatchPoolConfig, EntryMeta};
use std::hint::black_box;

const EVENTS: usize = 1024;

/// A request, its response head and a body, in turn, on 8 connections.
fn events(size: usize) -> Vec<(Vec<u8>, u32, u32)> {
    (0..EVENTS)
        .map(|i| {
            let head: &[u8] = match i % 3 {
                0 => b"GET /item HTTP/1.1\r\nHost: example\r\nAccept: */*\r\n\r\n",
                1 => b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
                _ => b"",
            };
            let mut p = head.to_vec();
            p.resize(size.max(head.len()), b'x');
            let port = 50000 + (i % 8) as u32;
            (p, port, u32::from(i % 3 == 0))
        })
        .collect()
}

fn fields<'a>(p: &'a [u8], port: u32, dir: u32) -> EventFields<'a> {
    let (c, s) = (("10.0.0.1", port), ("93.184.216.34", 443));
    let (src, dst) = if dir == 1 { (c, s) } else { (s, c) };
    EventFields {
        timestamp: 1_764_000_000_000_000_000,
        uuid: "sock:4242_4243_curl_5_1_10.0.0.1:50000-93.184.216.34:443_18446612682",
        src_ip: src.0,
        src_port: src.1,
        dst_ip: dst.0,
        dst_port: dst.1,
        pid: 4242,
        pname: "curl",
        r#type: dir,
        payload: p,
        tid: 4243,
        uid: 1000,
        module: "tls",
        fd: 5,
        truncated: 0,
        detail: Detail::None,
    }
}

fn encode_all(evs: &[(Vec<u8>, u32, u32)], b: &mut Batch) {
    b.buf.clear();
    b.entries.clear();
    for (p, port, dir) in evs {
        let f = fields(p, *port, *dir);
        let start = b.buf.len() as u32;
        b.buf.reserve(encode::event_entry_len(&f));
        encode::encode_event_entry(&f, &mut b.buf);
        b.entries.push(EntryMeta {
            start,
            end: b.buf.len() as u32,
            module: Module::Tls,
            kind: EventKind::Data,
            pid: 4242,
            uid: 1000,
            timestamp: f.timestamp,
            payload_len: f.length(),
        });
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ecaptureq_per_event");
    g.throughput(Throughput::Elements(EVENTS as u64));
    for size in [64usize, 256, 4096] {
        let evs = events(size);
        let mut batch = Batch {
            worker: 0,
            buf: Vec::with_capacity(EVENTS * (size + 256)),
            entries: Vec::with_capacity(EVENTS),
        };
        encode_all(&evs, &mut batch);
        g.bench_with_input(BenchmarkId::new("worker_encode", size), &size, |b, _| {
            b.iter(|| encode_all(black_box(&evs), &mut batch))
        });
        let pool = BatchPoolConfig {
            batches: 2,
            batch_bytes: batch.buf.len(),
            batch_entries: EVENTS,
        };
        let mut eq = EcaptureqBatches::new(2, pool);
        g.bench_with_input(
            BenchmarkId::new("ecaptureq_rewrite", size),
            &size,
            |b, _| {
                b.iter(|| {
                    black_box(eq.rewrite(black_box(&batch)).expect("a free batch"))
                        .buf
                        .len()
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
