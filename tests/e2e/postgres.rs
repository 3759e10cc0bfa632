//! `rcapture postgres` against a throw-away cluster
//! (rcapture_testsupport::db::PgCluster): simple queries (`psql -c`) and a
//! prepared statement through the extended protocol (`pgbench -M
//! prepared`: Parse with `$1`, then Bind/Execute) reach every output whole,
//! from the connections' backend processes. The backends are forked per
//! connection, so the capture filters on the server's uid; a --pid of the
//! postmaster is explained at start-up.

use crate::queries::QueryCapture;
use crate::testutil::{Rcapture, bpf_available};
use rcapture_testsupport::db::PgCluster;

#[test]
fn postgres_queries_reach_every_output_whole() {
    let Some(_serial) = bpf_available("postgres_queries_reach_every_output_whole") else {
        return;
    };
    let pg = PgCluster::start(45434).unwrap_or_else(|e| panic!("PostgreSQL cluster: {e}"));
    let uid = pg.uid().to_string();
    let Some(cap) = QueryCapture::start("postgres", &["postgres", "--uid", &uid]) else {
        return;
    };
    let m = crate::server::marker("PGE2E");
    let ok = format!("SELECT '{m}'");
    let long = format!("SELECT LENGTH('{m}{}')", "q".repeat(65_536));
    for sql in [&ok, &long] {
        let out = pg.psql().arg("-c").arg(sql).output().expect("psql");
        assert!(out.status.success(), "{:.60}: {out:?}", sql);
    }
    pg.pgbench_prepared(&format!("SELECT '{m}-prepared', :x::int;\n"), 2)
        .unwrap_or_else(|e| panic!("{e}"));
    let last = format!("SELECT '{m}-last'");
    assert!(
        pg.psql()
            .arg("-c")
            .arg(&last)
            .status()
            .expect("psql")
            .success()
    );
    let got = cap.finish(&last);

    let prepared = format!("SELECT '{m}-prepared', $1::int;");
    for sql in [&ok, &long, &prepared, &last] {
        let (e, block) = got.query("postgres", sql);
        assert!(block.header.ends_with(" query"), "{}", block.header);
        assert_ne!(
            e["pid"].as_u64(),
            Some(u64::from(pg.pid())),
            "a backend's pid"
        );
        assert_eq!(e["pname"], "postgres");
        assert_eq!(e["uid"].as_u64(), Some(u64::from(pg.uid())));
        assert_eq!(e["type"], 0);
    }
    // Prepared once: one Parse for the two executions.
    let parses = got
        .event_file
        .iter()
        .filter(|e| crate::queries::payload(e) == prepared.as_bytes())
        .count();
    assert_eq!(parses, 1, "-M prepared parses the statement once");

    // --pid of the postmaster would capture nothing: the note says so.
    let rc = Rcapture::start(&["postgres", "--pid", &pg.pid().to_string()]);
    let (_, stderr) = rc.stop_with_stderr();
    assert!(
        stderr.iter().any(
            |l| l.contains(&format!("pid {} is the postmaster", pg.pid()))
                && l.contains(&format!("--uid {uid}"))
        ),
        "{stderr:#?}"
    );
}
