//! Reassembly of multi-record calls into one event, with every anomaly counted.

use rcapture_core::decode::{Record, decode};
use rcapture_core::join::{JoinStats, Reassembler};
use rcapture_core::records::{DataRecord, RecordKind, Tuple};
use rcapture_core::synth;

fn fixed(tid: u32) -> DataRecord {
    synth::data(
        synth::header(RecordKind::TlsData, 1, tid, 0, "c", 1),
        3,
        1,
        0,
        Tuple::default(),
    )
}

fn body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

/// Pushes every raw record; returns (payload, truncated) of each emitted event.
fn run(j: &mut Reassembler, recs: &[Vec<u8>]) -> Vec<(Vec<u8>, u32)> {
    let mut out = Vec::new();
    for r in recs {
        let rec = decode(r).unwrap();
        j.push(rec, &mut |e: &Record<'_>, t| {
            out.push((e.payload().to_vec(), t))
        });
    }
    out
}

#[test]
fn long_call_joins_in_order() {
    let p = body(1 << 20);
    let mut recs = Vec::new();
    synth::split_call(fixed(5), &p, 9, 16384, usize::MAX, &mut recs);
    assert_eq!(recs.len(), 64);
    let mut j = Reassembler::new(8, 1 << 20);
    let out = run(&mut j, &recs);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, 0);
    assert!(out[0].0 == p, "joined payload differs");
    assert_eq!(
        j.stats(),
        JoinStats {
            joined: 1,
            ..Default::default()
        }
    );
}

#[test]
fn kernel_cut_is_reported_as_truncated() {
    let p = body(100_000);
    let mut recs = Vec::new();
    synth::split_call(fixed(5), &p, 1, 16384, 40_000, &mut recs);
    let mut j = Reassembler::new(8, 1 << 20);
    let out = run(&mut j, &recs);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, &p[..40_000]);
    assert_eq!(out[0].1, 60_000);
}

#[test]
fn user_space_limit_cuts_too() {
    let p = body(50_000);
    let mut recs = Vec::new();
    synth::split_call(fixed(5), &p, 1, 16384, usize::MAX, &mut recs);
    let mut j = Reassembler::new(8, 20_000);
    let out = run(&mut j, &recs);
    assert_eq!((out[0].0.len(), out[0].1), (20_000, 30_000));
    // A single-record call is cut the same way.
    let one = synth::single(fixed(6), &body(16_000));
    let mut j = Reassembler::new(8, 1000);
    let out = run(&mut j, &[one]);
    assert_eq!((out[0].0.len(), out[0].1), (1000, 15_000));
}

#[test]
fn interleaved_calls_of_two_threads() {
    let (a, b) = (body(40_000), vec![b'z'; 30_000]);
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    synth::split_call(fixed(1), &a, 7, 16384, usize::MAX, &mut ra);
    synth::split_call(fixed(2), &b, 7, 16384, usize::MAX, &mut rb);
    let mixed = vec![
        ra[0].clone(),
        rb[0].clone(),
        ra[1].clone(),
        rb[1].clone(),
        ra[2].clone(),
    ];
    let mut j = Reassembler::new(8, 1 << 20);
    let out = run(&mut j, &mixed);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].0, b);
    assert_eq!(out[1].0, a);
}

#[test]
fn lost_middle_record_is_counted_incomplete() {
    let p = body(40_000);
    let mut recs = Vec::new();
    synth::split_call(fixed(1), &p, 3, 16384, usize::MAX, &mut recs);
    recs.remove(1);
    let mut j = Reassembler::new(8, 1 << 20);
    let out = run(&mut j, &recs);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, &p[..16384], "only the contiguous prefix is kept");
    assert_eq!(out[0].1, 40_000 - 16384);
    assert_eq!(j.stats().incomplete, 1);
}

#[test]
fn lost_first_record_makes_orphans() {
    let p = body(40_000);
    let mut recs = Vec::new();
    synth::split_call(fixed(1), &p, 3, 16384, usize::MAX, &mut recs);
    recs.remove(0);
    let mut j = Reassembler::new(8, 1 << 20);
    assert!(run(&mut j, &recs).is_empty());
    assert_eq!(j.stats().orphan_records, 2);
    assert_eq!(j.stats().orphan_bytes, (40_000 - 16384) as u64);
}

#[test]
fn full_table_evicts_oldest_and_flush_all_empties() {
    let mut j = Reassembler::new(2, 1 << 20);
    let mut firsts = Vec::new();
    for tid in 1..=3 {
        let mut recs = Vec::new();
        synth::split_call(fixed(tid), &body(20_000), 1, 16384, usize::MAX, &mut recs);
        firsts.push(recs.swap_remove(0));
    }
    let out = run(&mut j, &firsts);
    assert_eq!(
        out.len(),
        1,
        "the oldest open call is emitted when a third opens"
    );
    assert_eq!(j.stats().evicted, 1);
    let mut rest = Vec::new();
    j.flush_all(&mut |e: &Record<'_>, t| rest.push((e.payload().len(), t)));
    assert_eq!(rest, vec![(16384, 20_000 - 16384); 2]);
    assert_eq!(j.stats().incomplete, 3);
}

#[test]
fn reused_call_id_flushes_the_open_one() {
    let mut r1 = Vec::new();
    synth::split_call(fixed(1), &body(20_000), 4, 16384, usize::MAX, &mut r1);
    let mut r2 = Vec::new();
    synth::split_call(fixed(1), &body(20_000), 4, 16384, usize::MAX, &mut r2);
    let mut j = Reassembler::new(4, 1 << 20);
    let out = run(&mut j, &[r1[0].clone(), r2[0].clone(), r2[1].clone()]);
    assert_eq!(out.len(), 2);
    assert_eq!(j.stats().incomplete, 1);
    assert_eq!(j.stats().joined, 1);
}

#[test]
fn fixed_size_kinds_pass_through() {
    let raw = synth::conn(
        synth::header(RecordKind::Conn, 1, 1, 0, "c", 1),
        4,
        0,
        0,
        Tuple::default(),
    );
    let mut j = Reassembler::new(1, 10);
    let mut n = 0;
    j.push(decode(&raw).unwrap(), &mut |e: &Record<'_>, t| {
        assert_eq!((e.kind(), t), (RecordKind::Conn, 0));
        n += 1;
    });
    assert_eq!(n, 1);
}
