//! `rcapture mysqld` against a throw-away MariaDB server
//! (rcapture_testsupport::db::MariaDb): the queries the `mariadb` client
//! sends reach every output whole, with the server's pid, uid and comm,
//! dispatch_command's return value as `type`, and in the text output the
//! SQL error number of a statement that failed.

use crate::queries::QueryCapture;
use crate::testutil::bpf_available;
use rcapture_testsupport::db::MariaDb;

#[test]
fn mariadb_queries_reach_every_output_whole() {
    let Some(_serial) = bpf_available("mariadb_queries_reach_every_output_whole") else {
        return;
    };
    let server = MariaDb::start().unwrap_or_else(|e| panic!("MariaDB server: {e}"));
    let pid = server.pid().to_string();
    let Some(cap) = QueryCapture::start("mysqld", &["mysqld", "--pid", &pid]) else {
        return;
    };
    let m = crate::server::marker("MYE2E");
    let ok = format!("SELECT '{m}'");
    let failing = format!("SELECT * FROM mysql.nosuch_{}", m.replace('-', "_"));
    // 64 KiB of literal: five 16 KiB records joined into one event.
    let long = format!("SELECT LENGTH('{m}{}')", "q".repeat(65_536));
    let last = format!("SELECT '{m}-last'");
    for (sql, succeeds) in [(&ok, true), (&failing, false), (&long, true), (&last, true)] {
        let out = server
            .client()
            .arg("-e")
            .arg(sql)
            .output()
            .expect("mariadb");
        assert_eq!(out.status.success(), succeeds, "{:.60}: {out:?}", sql);
    }
    let got = cap.finish(&last);

    for (sql, status) in [
        (&ok, "(ret=0)"),
        (&failing, "(ret=0 error=1146)"),
        (&long, "(ret=0)"),
        (&last, "(ret=0)"),
    ] {
        let (e, block) = got.query("mysqld", sql);
        // The text header: the return value, and the statement's SQL
        // error number when it failed (ER_NO_SUCH_TABLE).
        assert!(
            block.header.ends_with(&format!(" query {status}")),
            "{}",
            block.header
        );
        assert_eq!(e["pid"].as_u64(), Some(u64::from(server.pid())));
        assert_eq!(e["pname"], "mariadbd");
        assert_eq!(e["uid"], 0, "the test server runs as root");
        // dispatch_command's return value: SUCCESS (0), for a statement
        // that failed too (its error is the statement's, not the call's).
        assert_eq!(e["type"], 0, "{e}");
    }
}
