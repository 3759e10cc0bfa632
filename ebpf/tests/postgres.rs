//! The postgres probe against a throw-away cluster: every text
//! pg_parse_query sees, read at entry (syntax errors too), whole across
//! chunk boundaries, and extended-protocol Parse messages.

use std::process::Output;

use rcapture_ebpf::module::{self, TargetRequest};
use rcapture_ebpf::{Capture, CaptureOptions};
use rcapture_testsupport::db::PgCluster;

use crate::testutil::{KIND_PG_QUERY, drain, joined_queries, require_bpf};

fn psql(pg: &PgCluster, text: &str) -> Output {
    pg.psql()
        .arg("-c")
        .arg(text)
        .output()
        .expect("running psql")
}

#[test]
fn parsed_texts_are_captured_whole() {
    let Some(_guard) = require_bpf() else { return };
    let pg = PgCluster::start(45433).unwrap_or_else(|e| panic!("PostgreSQL cluster: {e}"));
    let desc = module::module("postgres").expect("the postgres module");
    let target = (desc.resolve)(&TargetRequest::default())
        .unwrap_or_else(|e| panic!("resolving postgres: {e}"));
    let opts = CaptureOptions {
        uid: Some(pg.uid()),
        ..CaptureOptions::default()
    };
    let mut probes = Capture::load(&[target], &opts).expect("loading the postgres probe");
    let mut rings = probes.take_rings();

    let m = format!("PGBPF{}", std::process::id());
    let ok = format!("SELECT '{m}-ok'");
    let syntax = format!("SELEC '{m}-syntax'");
    // Lengths around the first read (16383 bytes and its NUL) and past it.
    let pad = |n: usize| {
        let head = format!("SELECT '{m}-{n}-");
        format!("{head}{}'", "z".repeat(n - head.len() - 1))
    };
    let (edge, over, long) = (pad(16_383), pad(16_384), pad(70_000));
    assert!(psql(&pg, &ok).status.success());
    assert!(!psql(&pg, &syntax).status.success(), "a syntax error");
    for t in [&edge, &over, &long] {
        let out = psql(&pg, t);
        assert!(out.status.success(), "{out:?}");
    }
    pg.pgbench_prepared(&format!("SELECT '{m}-ext', :x::int;\n"), 1)
        .unwrap_or_else(|e| panic!("{e}"));
    probes.detach();

    let records = drain(&mut rings);
    let counters = probes.counters().expect("counters");
    assert!(counters.iter().all(|c| c.lost == 0), "{counters:?}");
    let calls = joined_queries(&records, KIND_PG_QUERY);
    let ext = format!("SELECT '{m}-ext', $1::int;");
    for text in [&ok, &syntax, &edge, &over, &long, &ext] {
        let (q, payload, flags) = calls
            .iter()
            .find(|(_, p, _)| p == text.as_bytes())
            .unwrap_or_else(|| panic!("no record of {:.50} ({} bytes)", text, text.len()));
        assert_eq!(q.total_len as usize, text.len());
        assert_eq!(payload.len(), text.len());
        assert_eq!(q.uid, pg.uid());
        assert_eq!(q.hdr.comm, "postgres");
        assert_ne!(q.hdr.pid, pg.pid(), "a backend, not the postmaster");
        assert_eq!((q.retval, q.sql_errno), (0, 0));
        assert_eq!(flags.len(), text.len().max(1).div_ceil(16384), "{flags:?}");
    }
}
