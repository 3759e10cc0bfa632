//! `http_proxy` through a real mitmdump, which relays to a real (TLS)
//! server: the captured request shows up in mitmproxy's flows with its
//! method, absolute URL, headers and body.

use crate::config;
use crate::support::{
    Collector, Proc, TempDir, batch, body, event, free_port, have_tool, header, make_certs,
    read_jsonl, support, wait_for, wait_port,
};
use rcapture_net::forward::{ForwardFormat, Forwarder};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn http_proxy_through_mitmdump() {
    if !have_tool("mitmdump") {
        return;
    }
    let dir = TempDir::new("mitm");
    let (_ca, cert, key) = make_certs(&dir);
    let upstream = Collector::start(
        &dir,
        "upstream",
        &["--tls", cert.to_str().unwrap(), key.to_str().unwrap()],
    );
    let flows = dir.path("flows.jsonl");
    let port = free_port();
    let mitm = Command::new("mitmdump")
        .args([
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            &port.to_string(),
        ])
        .arg("-s")
        .arg(support("mitm_record.py"))
        .args(["--set", "ssl_insecure=true", "--set", "flow_detail=0"])
        .env("RCAPTURE_MITM_OUT", &flows)
        .stdout(Stdio::null())
        .spawn()
        .expect("start mitmdump");
    let _mitm = Proc(mitm);
    assert!(
        wait_port(port, Duration::from_secs(30)),
        "mitmdump listens on {port}"
    );

    let mut cfg = config(
        &format!("http://127.0.0.1:{port}/"),
        ForwardFormat::HttpProxy,
    );
    cfg.protocols = vec!["https".into()];
    cfg.headers = vec![("X-Forwarded-By".into(), "rcapture".into())];
    // A HEAD response has no body even with a Content-Length: waiting for
    // one would stall until this timeout.
    cfg.io_timeout = Duration::from_secs(30);
    let f = Forwarder::start(cfg).expect("start");
    let unique = format!("rcapture-{}", std::process::id());
    let up = upstream.port;
    let post = format!(
        "POST /api/items?id=7 HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\nX-Rcapture-Test: {unique}\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world"
    );
    let pipelined = format!(
        "GET /one HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\nGET /two HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\n"
    );
    let head = format!("HEAD /head HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\n");
    let plain = format!("GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\n");
    let evs = [
        event(1, "a", "tls", post.as_bytes()),
        event(
            2,
            "b",
            "tls",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ),
        event(
            3,
            "c",
            "tls",
            b"GET /x HTTP/1.1\r\nHost: h\r\nContent-Length: 50\r\n\r\nshort",
        ),
        event(4, "d", "bash", plain.as_bytes()),
        event(5, "e", "gnutls", pipelined.as_bytes()),
        event(6, "f", "nss", head.as_bytes()),
    ];
    f.offer(&batch(&evs));
    assert!(wait_for(Duration::from_secs(20), || f.stats().sent_events == 4));
    let stats = f.shutdown(Duration::from_secs(5));
    assert_eq!(
        (
            stats.sent_events,
            stats.skipped_events,
            stats.malformed_requests,
            stats.dropped_events
        ),
        (4, 1, 1, 0),
        "{stats:?}"
    );
    assert!(
        stats
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("body is truncated: Content-Length 50, 5 bytes captured")),
        "{stats:?}"
    );

    let seen = read_jsonl(&flows);
    let urls: Vec<&str> = seen.iter().map(|r| r["url"].as_str().unwrap()).collect();
    let base = format!("https://127.0.0.1:{up}");
    assert_eq!(
        urls,
        [
            format!("{base}/api/items?id=7"),
            format!("{base}/one"),
            format!("{base}/two"),
            format!("{base}/head")
        ],
        "the plaintext (protocol http) request is filtered out"
    );
    let p = &seen[0];
    assert_eq!(p["method"], "POST");
    assert_eq!(p["path"], "/api/items?id=7");
    assert_eq!(header(p, "X-Rcapture-Test"), Some(unique.as_str()));
    assert_eq!(header(p, "X-Forwarded-By"), Some("rcapture"));
    assert_eq!(body(p), b"hello world");

    // mitmproxy replayed it to the real server over TLS.
    assert!(wait_for(Duration::from_secs(5), || upstream
        .records()
        .len()
        == 3));
    let got = upstream.records();
    assert_eq!(
        (got[0]["method"].as_str(), got[0]["path"].as_str()),
        (Some("POST"), Some("/api/items?id=7"))
    );
    assert_eq!(body(&got[0]), b"hello world");
    assert_eq!(header(&got[0], "X-Rcapture-Test"), Some(unique.as_str()));
}
