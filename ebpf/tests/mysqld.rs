//! The mysqld probes against a throw-away MariaDB server: the SQL staged at
//! dispatch_command's entry, emitted at its return with the return value
//! and the statement's SQL error number, in chunks, cut at max_payload.

use std::process::{Command, Output};

use rcapture_ebpf::module::{self, TargetRequest};
use rcapture_ebpf::{Capture, CaptureOptions, CpuRing};
use rcapture_testsupport::db::MariaDb;

use crate::testutil::{F_FIRST, F_LAST, KIND_MYSQL_QUERY, drain, joined_queries, require_bpf};

/// A fresh server, the probes loaded on its pid, their rings.
fn start(max_payload: u32) -> (MariaDb, Capture, Vec<CpuRing>) {
    let server = MariaDb::start().unwrap_or_else(|e| panic!("MariaDB server: {e}"));
    let mut probes = load(server.pid(), max_payload);
    let rings = probes.take_rings();
    (server, probes, rings)
}

fn load(server_pid: u32, max_payload: u32) -> Capture {
    let desc = module::module("mysqld").expect("the mysqld module");
    let target = (desc.resolve)(&TargetRequest {
        path: None,
        pid: Some(server_pid),
        symbols: Vec::new(),
    })
    .unwrap_or_else(|e| panic!("resolving mariadbd: {e}"));
    let opts = CaptureOptions {
        max_payload,
        pid: Some(server_pid),
        ..CaptureOptions::default()
    };
    Capture::load(&[target], &opts).unwrap_or_else(|e| panic!("loading mysqld probes: {e}"))
}

/// The client has its reply once the server sent it, a moment before
/// dispatch_command returns (where the record is emitted).
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(200));
}

fn sql(server: &MariaDb, text: &str) -> Output {
    server
        .client()
        .arg("-e")
        .arg(text)
        .output()
        .expect("running mariadb")
}

#[test]
fn queries_carry_their_sql_return_value_and_error_number() {
    let Some(_guard) = require_bpf() else { return };
    let (server, mut probes, mut rings) = start(1 << 20);

    let m = format!("MYBPF{}", std::process::id());
    let ok = format!("SELECT '{m}-ok'");
    let missing = format!("SELECT * FROM mysql.nosuch_{m}");
    let syntax = format!("SELEC '{m}-syntax'");
    // 100 000 bytes of literal: 7 chunks of 16 KiB.
    let long = format!("SELECT LENGTH('{m}-long{}')", "x".repeat(100_000));
    assert!(sql(&server, &ok).status.success());
    assert!(!sql(&server, &missing).status.success(), "no such table");
    assert!(!sql(&server, &syntax).status.success(), "a syntax error");
    let out = sql(&server, &long);
    assert!(out.status.success(), "{out:?}");
    settle();
    probes.detach();

    let records = drain(&mut rings);
    let counters = probes.counters().expect("counters");
    assert!(
        counters.iter().all(|c| c.lost == 0),
        "records lost: {counters:?}"
    );
    let calls = joined_queries(&records, KIND_MYSQL_QUERY);
    let find = |text: &str| {
        calls
            .iter()
            .find(|(_, p, _)| p == text.as_bytes())
            .unwrap_or_else(|| {
                let seen: Vec<String> = calls
                    .iter()
                    .map(|(_, p, _)| String::from_utf8_lossy(&p[..p.len().min(60)]).into_owned())
                    .collect();
                panic!("no record of {:.60}; seen: {seen:#?}", text)
            })
    };
    for (text, errno) in [(&ok, 0), (&missing, 1146), (&syntax, 1064), (&long, 0)] {
        let (q, payload, flags) = find(text);
        assert_eq!(q.hdr.pid, server.pid(), "{q:?}");
        assert_eq!(q.hdr.comm, "mariadbd");
        assert_eq!(q.uid, 0, "the test server runs as root");
        assert_eq!(q.total_len as usize, text.len());
        assert_eq!(payload.len(), text.len(), "captured whole");
        // dispatch_command returns SUCCESS (0) for statements that failed too.
        assert_eq!(q.retval, 0, "{q:?}");
        assert_eq!(q.sql_errno, errno, "error number of {:.40}", text);
        assert_eq!(flags.first().map(|f| f & F_FIRST), Some(F_FIRST));
        assert_eq!(flags.last().map(|f| f & F_LAST), Some(F_LAST));
        assert_eq!(flags.len(), text.len().div_ceil(16384), "{flags:?}");
    }
}

/// A query longer than max_payload: its first max_payload bytes, and the
/// real length in total_len (the cut is visible); nothing counted lost.
#[test]
fn a_query_over_the_limit_is_cut_and_says_so() {
    let Some(_guard) = require_bpf() else { return };
    let (server, mut probes, mut rings) = start(20_000);
    let m = format!("MYCUT{}", std::process::id());
    let long = format!("SELECT LENGTH('{m}{}')", "y".repeat(65_536));
    assert!(sql(&server, &long).status.success());
    settle();
    probes.detach();

    let records = drain(&mut rings);
    let counters = probes.counters().expect("counters");
    assert!(counters.iter().all(|c| c.lost == 0), "{counters:?}");
    let calls = joined_queries(&records, KIND_MYSQL_QUERY);
    let (q, payload, flags) = calls
        .iter()
        .find(|(_, p, _)| p.starts_with(format!("SELECT LENGTH('{m}").as_bytes()))
        .expect("the long query");
    assert_eq!(q.total_len as usize, long.len());
    assert_eq!(payload.as_slice(), &long.as_bytes()[..20_000]);
    assert_eq!(flags.len(), 2, "16384 + 3616 bytes: {flags:?}");
}

/// COM_STMT_PREPARE (a server-side prepared statement, Perl DBD::MariaDB
/// with mariadb_server_prepare) is captured like COM_QUERY.
#[test]
fn server_side_prepared_statements_are_captured() {
    let Some(_guard) = require_bpf() else { return };
    let have_dbd = Command::new("perl")
        .args(["-MDBI", "-MDBD::MariaDB", "-e", "1"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        have_dbd,
        "perl's DBD::MariaDB is needed (apt-get install libdbd-mariadb-perl)"
    );
    let (server, mut probes, mut rings) = start(1 << 20);
    let m = format!("MYPREP{}", std::process::id());
    let stmt = format!("SELECT ? + 1 AS {m}");
    let script = format!(
        "my $d = DBI->connect('DBI:MariaDB:mariadb_socket={};mariadb_server_prepare=1', 'root', '', {{RaiseError => 1}});\n\
         my $s = $d->prepare(q{{{stmt}}}); $s->execute(41); print $s->fetchrow_array, qq{{\\n}};",
        server.socket().display()
    );
    let out = Command::new("perl")
        .args(["-MDBI", "-e", &script])
        .output()
        .expect("perl");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    settle();
    probes.detach();

    let records = drain(&mut rings);
    let calls = joined_queries(&records, KIND_MYSQL_QUERY);
    let (q, _, _) = calls
        .iter()
        .find(|(_, p, _)| p == stmt.as_bytes())
        .unwrap_or_else(|| panic!("no COM_STMT_PREPARE record of {stmt}"));
    assert_eq!((q.retval, q.sql_errno), (0, 0));
}

/// More SQL in flight than the staging pool holds (six 1 MiB queries kept
/// running at once by SLEEP(3); the pool is 4 MiB): every query still yields
/// its record with its real length, and every byte not staged is counted
/// lost.
#[test]
fn staging_exhaustion_cuts_and_counts() {
    let Some(_guard) = require_bpf() else { return };
    let (server, mut probes, mut rings) = start(1 << 20);
    let m = format!("MYPOOL{}", std::process::id());
    let queries: Vec<String> = (0..6)
        .map(|i| format!("SELECT LENGTH('{m}-{i}-{}'), SLEEP(3)", "p".repeat(1 << 20)))
        .collect();
    let clients: Vec<_> = queries
        .iter()
        .map(|q| {
            let mut c = server
                .client()
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("mariadb");
            std::io::Write::write_all(c.stdin.as_mut().unwrap(), q.as_bytes()).unwrap();
            drop(c.stdin.take());
            c
        })
        .collect();
    for mut c in clients {
        assert!(c.wait().unwrap().success());
    }
    settle();
    probes.detach();

    let records = drain(&mut rings);
    let counters = probes.counters().expect("counters");
    let lost_bytes: u64 = counters.iter().map(|c| c.lost_bytes).sum();
    let calls = joined_queries(&records, KIND_MYSQL_QUERY);
    // One record per query, with its real length (all six are as long);
    // each captured up to 1 MiB (max_payload) less what the pool could not
    // stage, so those with nothing staged have an empty payload.
    let len = queries[0].len();
    let mine: Vec<&Vec<u8>> = calls
        .iter()
        .filter(|(r, _, _)| r.hdr.pid == server.pid() && r.total_len as usize == len)
        .map(|(_, p, _)| p)
        .collect();
    assert_eq!(mine.len(), queries.len(), "a record for every query");
    for q in &queries {
        let whole = mine
            .iter()
            .filter(|p| p.len() == 1 << 20 && q.as_bytes().starts_with(p));
        assert!(whole.count() <= 1, "{:.40} twice", q);
    }
    for p in &mine {
        assert!(
            queries.iter().any(|q| q.as_bytes().starts_with(p)),
            "a prefix of a query"
        );
    }
    let cut: u64 = mine.iter().map(|p| ((1usize << 20) - p.len()) as u64).sum();
    assert!(
        cut > 0,
        "six 1 MiB queries cannot all fit in 4 MiB of units"
    );
    assert_eq!(
        lost_bytes, cut,
        "every byte the pool could not stage is counted"
    );
}
