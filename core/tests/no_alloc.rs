//! Proves the hot path (decode → join → event fields → protobuf + NDJSON +
//! text) and the key log's duplicate filter allocate nothing once warm.
//!
//! This file is its own test binary so it can install a counting global
//! allocator. Only the test thread counts (a per-thread flag), so the test
//! harness's own threads cannot disturb the figure.

use rcapture_core::decode::decode;
use rcapture_core::encode;
use rcapture_core::event::{Clock, EventScratch, event_fields};
use rcapture_core::join::Reassembler;
use rcapture_core::keylog::{DEDUPE_ENTRIES, KeylogDedupe, push_hex};
use rcapture_core::ndjson;
use rcapture_core::records::{
    CHUNK_MAX, DIR_RECV, DIR_SEND, FLAG_FIRST, FLAG_LAST, RecordKind, Tuple,
};
use rcapture_core::synth;
use rcapture_core::text::{PayloadStyle, write_text};
use rcapture_testsupport::alloc::{CountingAlloc, allocs_during};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc::per_thread();

const SIZES: [usize; 5] = [0, 64, 256, 4096, CHUNK_MAX];
const DATA_KINDS: [RecordKind; 4] = [
    RecordKind::TlsData,
    RecordKind::GnutlsData,
    RecordKind::NssData,
    RecordKind::GotlsData,
];

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn tuples() -> [Tuple; 3] {
    [
        synth::tuple(
            "10.1.2.3:52814".parse().unwrap(),
            "93.184.216.34:443".parse().unwrap(),
        ),
        synth::tuple(
            "[2001:db8::1]:40000".parse().unwrap(),
            "[2606:2800:220:1:248:1893:25c8:1946]:8443".parse().unwrap(),
        ),
        // family 0: unknown tuple
        Tuple::default(),
    ]
}

/// A pass of raw records covering every kind, and how many events it yields.
fn record_mix() -> (Vec<Vec<u8>>, usize) {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut events = 0;
    let mut ts = 1_000_000_000u64;
    let mut hdr = |kind: RecordKind, pid: u32, tid: u32, comm: &str| {
        ts += 1_000;
        synth::header(kind, pid, tid, 1000, comm, ts)
    };
    for (k, kind) in DATA_KINDS.into_iter().enumerate() {
        for (t, tuple) in tuples().into_iter().enumerate() {
            for (s, &size) in SIZES.iter().enumerate() {
                let dir = if s % 2 == 0 { DIR_SEND } else { DIR_RECV };
                let fd = if t == 2 { u32::MAX } else { 5 + t as u32 };
                let fixed = synth::data(
                    hdr(kind, 4242, 4243, "curl"),
                    fd,
                    dir,
                    0xffff_8880_0000_0000 + k as u64,
                    tuple,
                );
                out.push(synth::single(fixed, &payload(size, s as u8)));
                events += 1;
            }
        }
    }
    for (s, &size) in SIZES.iter().enumerate() {
        let p = payload(size, 7);
        let bash = synth::bash(hdr(RecordKind::Bash, 77, 77, "ba\"sh\\x"), s as u32 % 3, 0);
        out.push(synth::single(bash, &p));
        let my = synth::query(hdr(RecordKind::MysqlQuery, 88, 89, "mysqld"), -3);
        out.push(synth::single(my, &p));
        let pg = synth::query(hdr(RecordKind::PgQuery, 99, 99, "postgres"), 0);
        out.push(synth::single(pg, &p));
        let pkt = synth::packet(hdr(RecordKind::Packet, 0, 0, "swapper/0"), 2, s as u8 % 2);
        out.push(synth::single(pkt, &p));
        events += 4;
    }
    let random: [u8; 32] = std::array::from_fn(|i| i as u8 + 1);
    for (version, cipher) in [
        (0x0303, 0x0300_c02f),
        (0x0304, 0x0300_1301),
        (0x0304, 0x0300_1302),
    ] {
        out.push(synth::master_secret(
            hdr(RecordKind::MasterSecret, 4242, 4242, "curl"),
            version,
            cipher,
            random,
            0x40,
        ));
        events += 1;
    }
    for (version, hash_len, early) in [(0x0303, 48, false), (0x0304, 32, false), (0x0304, 48, true)]
    {
        // The longest key log text: six TLS 1.3 lines of SHA-384 secrets.
        out.push(synth::gnutls_secret(
            hdr(RecordKind::GnutlsSecret, 4343, 4343, "gnutls-cli"),
            version,
            hash_len,
            random,
            0x60,
            early,
        ));
        events += 1;
    }
    out.push(synth::gotls_key(
        hdr(RecordKind::GotlsKey, 555, 556, "goclient"),
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        random,
        &[0x5a; 32],
    ));
    events += 1;
    for (i, tuple) in tuples().into_iter().enumerate() {
        out.push(synth::conn(
            hdr(RecordKind::Conn, 4242, 4242, "curl"),
            5,
            i as u8,
            0xffff_8880_0000_1000,
            tuple,
        ));
        events += 1;
    }
    // Multi-record calls: 100 KiB whole, 100 KiB cut at 64 KiB by the kernel,
    // and two 100 KiB calls of different threads interleaved.
    let big = payload(100 * 1024, 3);
    let t4 = tuples()[0];
    let d = synth::data(hdr(RecordKind::TlsData, 4242, 4243, "curl"), 5, 0, 1, t4);
    synth::split_call(d, &big, 1, CHUNK_MAX, usize::MAX, &mut out);
    let d = synth::data(hdr(RecordKind::GotlsData, 600, 601, "go"), 6, 1, 0, t4);
    synth::split_call(d, &big, 2, CHUNK_MAX, 64 * 1024, &mut out);
    events += 2;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let d = synth::data(hdr(RecordKind::TlsData, 700, 701, "nginx"), 7, 0, 2, t4);
    synth::split_call(d, &big, 3, CHUNK_MAX, usize::MAX, &mut a);
    let q = synth::query(hdr(RecordKind::PgQuery, 800, 801, "postgres"), 0);
    synth::split_call(q, &big[..40_000], 4, 4096, usize::MAX, &mut b);
    let (mut a, mut b) = (a.into_iter(), b.into_iter());
    loop {
        match (a.next(), b.next()) {
            (None, None) => break,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
    events += 2;
    (out, events)
}

/// The per-worker state of the pipeline under test.
struct Pipeline {
    join: Reassembler,
    scratch: EventScratch,
    clock: Clock,
    frame: Vec<u8>,
    line: Vec<u8>,
    text: Vec<u8>,
    seq: u64,
    events: usize,
    bytes_out: usize,
    max_frame: usize,
    max_line: usize,
}

impl Pipeline {
    /// Runs one raw record through decode → join → event → encoders.
    fn feed(&mut self, raw: &[u8]) {
        let rec = decode(raw).expect("synthetic record must decode");
        let Pipeline {
            join,
            scratch,
            clock,
            frame,
            line,
            text,
            seq,
            events,
            bytes_out,
            max_frame,
            max_line,
        } = self;
        join.push(rec, &mut |r, truncated| {
            let ev = event_fields(r, truncated, clock, scratch);
            *seq += 1;
            *events += 1;
            let body = encode::event_entry_len(&ev);
            *max_frame = (*max_frame).max(encode::MAX_SEQ_PREFIX + body);
            *max_line = (*max_line).max(ndjson::ndjson_line_max_len(&ev));
            frame.clear();
            encode::encode_seq_prefix(*seq, frame);
            encode::encode_event_entry(&ev, frame);
            assert_eq!(frame.len(), encode::seq_prefix_len(*seq) + body);
            let (prefix, n) = encode::seq_prefix(*seq);
            assert_eq!(&frame[..n], &prefix[..n]);
            line.clear();
            ndjson::write_ndjson_line(&ev, *seq, line);
            assert_eq!(line.last(), Some(&b'\n'));
            // The text output renders into a reused frame: capacity grown
            // in the warm-up pass (escaped and hex dumps alternate).
            text.clear();
            let style = if *seq % 2 == 0 {
                PayloadStyle::Escaped
            } else {
                PayloadStyle::Hex
            };
            write_text(
                &ev,
                rcapture_core::event::EventKind::of(r.kind()),
                style,
                text,
            );
            *bytes_out += frame.len() + line.len() + text.len();
        });
    }
}

/// The order records are fed in: every record once, in order, and each small
/// single-record call [`SMALL_REPEAT`] extra times, so the mix is weighted
/// towards typical small events and 1 M records stay quick in debug builds.
fn schedule(records: &[Vec<u8>]) -> (Vec<usize>, usize) {
    let mut order = Vec::new();
    let mut extra_events = 0;
    for (i, raw) in records.iter().enumerate() {
        order.push(i);
        let flags = u16::from_ne_bytes([raw[2], raw[3]]);
        if flags == FLAG_FIRST | FLAG_LAST && raw.len() <= 512 {
            order.extend(std::iter::repeat_n(i, SMALL_REPEAT));
            extra_events += SMALL_REPEAT;
        }
    }
    (order, extra_events)
}

/// Extra feeds of each small single-record call per pass.
const SMALL_REPEAT: usize = 4;

#[test]
fn counting_allocator_counts() {
    let (v, n) = allocs_during(|| Vec::<u8>::with_capacity(10));
    drop(v);
    assert_eq!(n, 1, "the counting allocator must see an allocation");
}

#[test]
fn hot_path_allocates_nothing_when_warm() {
    const MIN_OPS: usize = 1_000_000;
    let (records, mix_events) = record_mix();
    let (order, extra_events) = schedule(&records);
    let events_per_pass = mix_events + extra_events;
    let mut p = Pipeline {
        join: Reassembler::new(16, 1 << 20),
        scratch: EventScratch::new(),
        clock: Clock::from_offset(1_764_000_000_000_000_000),
        frame: Vec::new(),
        line: Vec::new(),
        text: Vec::new(),
        seq: 0,
        events: 0,
        bytes_out: 0,
        max_frame: 0,
        max_line: 0,
    };
    // Warm-up: one pass sizes the reassembler's slots and finds the largest outputs.
    for &i in &order {
        p.feed(&records[i]);
    }
    assert_eq!(p.events, events_per_pass, "events of the warm-up pass");
    let stats = p.join.stats();
    assert_eq!(
        (stats.incomplete, stats.orphan_records, stats.evicted),
        (0, 0, 0)
    );
    p.frame = Vec::with_capacity(p.max_frame);
    p.line = Vec::with_capacity(p.max_line);

    let passes = MIN_OPS.div_ceil(order.len());
    let (ops, allocs) = allocs_during(|| {
        let mut ops = 0usize;
        for _ in 0..passes {
            for &i in &order {
                p.feed(&records[i]);
                ops += 1;
            }
        }
        ops
    });
    let events = p.events - events_per_pass;
    println!(
        "no_alloc: {ops} records ({} per pass, {passes} passes) -> {events} events, \
         {} MiB encoded, {allocs} allocations",
        order.len(),
        p.bytes_out >> 20,
    );
    assert!(ops >= MIN_OPS);
    assert_eq!(events, events_per_pass * passes);
    assert_eq!(allocs, 0, "the warm hot path allocated {allocs} times");
}

/// The key log's duplicate filter over 1 M lines from more client randoms
/// than it remembers (so it forgets and re-admits), with repeats.
#[test]
fn keylog_dedupe_allocates_nothing() {
    const LINES: usize = 1_000_000;
    let labels: [&[u8]; 3] = [
        b"CLIENT_RANDOM",
        b"CLIENT_TRAFFIC_SECRET_0",
        b"EXPORTER_SECRET",
    ];
    // A frame of key log text: randoms 0..3*DEDUPE_ENTRIES, each line twice.
    let mut text = Vec::new();
    for i in 0..(3 * DEDUPE_ENTRIES) as u64 {
        for _ in 0..2 {
            let mut random = [0u8; 32];
            random[..8].copy_from_slice(&i.to_le_bytes());
            text.extend_from_slice(labels[i as usize % 3]);
            text.push(b' ');
            push_hex(&mut text, &random);
            text.extend_from_slice(b" 0011223344556677\n");
        }
    }
    let lines_per_pass = 6 * DEDUPE_ENTRIES;
    let mut d = KeylogDedupe::new();
    let mut out = Vec::with_capacity(text.len());
    let passes = LINES.div_ceil(lines_per_pass);
    let (dups, allocs) = allocs_during(|| {
        let mut dups = 0;
        for _ in 0..passes {
            out.clear();
            dups += d.filter(&text, &mut out);
        }
        dups
    });
    println!(
        "no_alloc: key log filter, {} lines, {dups} duplicates, {allocs} allocations",
        passes * lines_per_pass
    );
    // Each pass sees every pair twice in a row: once written, once a duplicate.
    assert_eq!(dups as usize, passes * lines_per_pass / 2);
    assert_eq!(allocs, 0, "the key log filter allocated {allocs} times");
}
