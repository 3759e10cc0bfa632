//! The web viewer at the server's root, in headless Chromium (Playwright,
//! `tests/web/viewer.mjs`), against the real binary and real curl traffic:
//! the page loads, a request appears as a row and opens with its headers, a
//! pid filter hides other processes, pause stops new rows, and with
//! `--auth-token` the page asks for the token; a MariaDB query seen by
//! `rcapture mysqld` shows as SQL. Screenshots are left in
//! `target/web-artifacts/`.

use crate::testutil::{Rcapture, TempDir, bpf_available, python_server};
use rcapture_testsupport::browser::{self, Script};
use rcapture_testsupport::db::MariaDb;
use serde_json::json;
use std::time::Duration;

fn viewer(test: &str, token: Option<&str>) {
    let Some(_bpf) = bpf_available(test) else {
        return;
    };
    if !browser::available(test) {
        return;
    }
    let dir = TempDir::new("web");
    let (_server, tls_port) = python_server(&dir, false);
    let mut args = vec!["tls"];
    if let Some(t) = token {
        args.extend(["--auth-token", t]);
    }
    let rc = Rcapture::start(&args);
    let addr = rc.addr.clone().expect("the listen address");
    let artifacts = browser::artifacts_dir();
    let report = Script::start(
        "viewer.mjs",
        &json!({
            "url": format!("http://{addr}/"),
            "tlsPort": tls_port,
            "artifacts": artifacts,
            "token": token,
            "tag": test,
        }),
    )
    .report(Duration::from_secs(180));
    let shot = artifacts.join(if token.is_some() {
        "viewer-auth.png"
    } else {
        "viewer.png"
    });
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000),
        "screenshot {}",
        shot.display()
    );
    eprintln!("web viewer: {report}");
    rc.stop();
}

#[test]
fn web_viewer_shows_live_traffic_filters_and_pauses() {
    viewer("web_viewer_shows_live_traffic_filters_and_pauses", None);
}

#[test]
fn web_viewer_asks_for_the_auth_token() {
    viewer("web_viewer_asks_for_the_auth_token", Some("web-s3cret"));
}

/// A MariaDB query, seen by `rcapture mysqld`, shows in the page as SQL.
#[test]
fn web_viewer_shows_mariadb_queries_as_sql() {
    let test = "web_viewer_shows_mariadb_queries_as_sql";
    let Some(_bpf) = bpf_available(test) else {
        return;
    };
    if !browser::available(test) {
        return;
    }
    let server = MariaDb::start().unwrap_or_else(|e| panic!("MariaDB server: {e}"));
    let pid = server.pid().to_string();
    let rc = Rcapture::start(&["mysqld", "--pid", &pid]);
    let addr = rc.addr.clone().expect("the listen address");
    let m = crate::server::marker("WEBSQL");
    let sql = format!("SELECT 'viewer {m}' AS marker");
    let mut script = Script::start(
        "watch.mjs",
        &json!({"url": format!("http://{addr}/"), "marker": m,
                "artifacts": browser::artifacts_dir(), "shot": "viewer-sql.png"}),
    );
    script.wait_for("ready", Duration::from_secs(60));
    let out = server
        .client()
        .arg("-e")
        .arg(&sql)
        .output()
        .expect("mariadb");
    assert!(out.status.success(), "{out:?}");
    let report = script.report(Duration::from_secs(60));
    let cells: Vec<&str> = report["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        cells[1..6],
        [pid.as_str(), "mariadbd", "mysqld", "query", "ret 0"]
    );
    assert!(
        report["sections"].as_array().unwrap().contains(&json!(
            "SQL query (MySQL/MariaDB, dispatch_command returned 0)"
        )),
        "{report}"
    );
    let shown = report["pres"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p[0] == "sql")
        .unwrap_or_else(|| panic!("no SQL section: {report}"));
    assert_eq!(shown[1], sql.as_str());
    rc.stop();
}
