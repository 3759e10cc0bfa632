//! Fuzzes the `Reassembler` with calls built by `synth` from arbitrary input, then dropped, duplicated, reordered or re-flagged.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rcapture_core::decode::decode;
use rcapture_core::join::Reassembler;
use rcapture_core::records::{FLAG_LAST, RecordKind};
use rcapture_core::synth;

#[derive(Debug, Arbitrary)]
struct Call {
    /// Data, bash, query or packet.
    kind: u8,
    tid: u8,
    call_seq: u8,
    len: u16,
    chunk_max: u16,
    /// Kernel-side capture limit.
    limit: u16,
}

#[derive(Debug, Arbitrary)]
enum Mutation {
    Drop(u16),
    Duplicate(u16),
    Swap(u16, u16),
    ToggleLast(u16),
}

#[derive(Debug, Arbitrary)]
struct Input {
    slots: u8,
    max_payload: u16,
    calls: Vec<Call>,
    mutations: Vec<Mutation>,
}

fn records_of(c: &Call, out: &mut Vec<Vec<u8>>) {
    let kind = match c.kind % 6 {
        0 => RecordKind::TlsData,
        1 => RecordKind::GotlsData,
        2 => RecordKind::Bash,
        3 => RecordKind::MysqlQuery,
        4 => RecordKind::PgQuery,
        _ => RecordKind::Packet,
    };
    let hdr = synth::header(kind, 100, u32::from(c.tid % 4), 0, "fz", 1);
    // Small enough to keep thousands of runs per second under ASan, large
    // enough for many records per call.
    let payload: Vec<u8> = (0..usize::from(c.len % 8192)).map(|i| i as u8).collect();
    let (seq, cmax, limit) = (
        u32::from(c.call_seq % 4),
        64 + usize::from(c.chunk_max % 4096),
        usize::from(c.limit),
    );
    match kind {
        RecordKind::Bash => {
            synth::split_call(synth::bash(hdr, 0, 0), &payload, seq, cmax, limit, out)
        }
        RecordKind::MysqlQuery | RecordKind::PgQuery => {
            synth::split_call(synth::query(hdr, 0), &payload, seq, cmax, limit, out)
        }
        RecordKind::Packet => {
            synth::split_call(synth::packet(hdr, 1, 0), &payload, seq, cmax, limit, out)
        }
        _ => {
            let t = synth::tuple("1.2.3.4:5".parse().unwrap(), "6.7.8.9:10".parse().unwrap());
            synth::split_call(
                synth::data(hdr, 3, 1, 0, t),
                &payload,
                seq,
                cmax,
                limit,
                out,
            )
        }
    }
}

fuzz_target!(|input: Input| {
    let mut recs = Vec::new();
    for c in input.calls.iter().take(64) {
        records_of(c, &mut recs);
    }
    for m in input.mutations.iter().take(64) {
        let n = recs.len();
        if n == 0 {
            break;
        }
        match *m {
            Mutation::Drop(i) => {
                recs.remove(usize::from(i) % n);
            }
            Mutation::Duplicate(i) => {
                let r = recs[usize::from(i) % n].clone();
                recs.insert(usize::from(i) % n, r);
            }
            Mutation::Swap(a, b) => recs.swap(usize::from(a) % n, usize::from(b) % n),
            Mutation::ToggleLast(i) => recs[usize::from(i) % n][2] ^= FLAG_LAST as u8,
        }
    }
    let max_payload = usize::from(input.max_payload);
    let mut join = Reassembler::new(usize::from(input.slots % 8), max_payload);
    let (mut fed, mut emitted, mut events) = (0usize, 0usize, 0usize);
    let mut emit = |r: &rcapture_core::decode::Record<'_>, _truncated: u32| {
        assert!(
            r.payload().len() <= max_payload,
            "event exceeds the capture limit"
        );
        emitted += r.payload().len();
        events += 1;
    };
    for raw in &recs {
        let rec = decode(raw).expect("synth records decode");
        fed += rec.payload().len();
        join.push(rec, &mut emit);
    }
    join.flush_all(&mut emit);
    assert!(
        emitted <= fed,
        "emitted {emitted} payload bytes from {fed} fed"
    );
    let s = join.stats();
    assert_eq!(
        s.joined + s.incomplete,
        events as u64,
        "every event is counted once: {s:?}"
    );
});
