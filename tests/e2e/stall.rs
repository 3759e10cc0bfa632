//! No output stalls another: with stdout a pipe nobody reads and a collector
//! that accepts connections but never answers, a WebSocket client still gets
//! every event of real curl traffic, and the text output's drops are
//! counted (in `/status`, `/metrics` and the exit ledger) instead of
//! blocking the workers.

use crate::server::{WsClient, compile_schemas, http, marker, unhex};
use crate::testutil::{Rcapture, TempDir, bpf_available, python_server};
use serde_json::Value;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Accepts connections and keeps them open without reading or answering.
fn silent_collector() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().map_while(Result::ok) {
            held.push(s);
        }
    });
    port
}

/// The number after `label` in the JSON counters, as u64.
fn counter(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {key} in {v}"))
}

fn status_counters(addr: &str) -> Value {
    let (code, body) = http(addr, "GET", "/status", "");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"]["counters"].clone()
}

#[test]
fn slow_stdout_and_blocked_forwarder_stall_no_other_output() {
    let Some(_serial) = bpf_available("slow_stdout_and_blocked_forwarder_stall_no_other_output")
    else {
        return;
    };
    let dir = TempDir::new("stall");
    let Some((_, ext)) = compile_schemas(&dir) else {
        return;
    };
    let (_srv, port) = python_server(&dir, false);
    let collector = silent_collector();
    // Only the traffic of `nobody` (the curl processes below); stdout is a
    // pipe this test does not read until the end.
    let rc = Rcapture::start_unread_stdout(&[
        "tls",
        "--uid",
        "65534",
        "--forward",
        &format!("http://127.0.0.1:{collector}/events"),
        "--batch-size",
        "10",
        "--batch-timeout-ms",
        "100",
    ]);
    let addr = rc.addr.clone().expect("announced address");
    let ws = WsClient::start("ws", &format!("ws://{addr}/ws"), &ext, "event_pb2", false);

    // 24 POSTs of 192 KiB: several MiB of text, far more than the stdout
    // pipe and the text output's frames hold. Each is waited for on the
    // WebSocket before the next, so the client never lags.
    let body = dir.path("body");
    let m = marker("stall");
    let mut content = format!("{m}|").into_bytes();
    content.extend((0..192 * 1024).map(|i| b'a' + (i % 26) as u8));
    std::fs::write(&body, &content).unwrap();
    let mut seen: u64 = 0;
    let is_marked = |e: &Value, path: &str| {
        String::from_utf8_lossy(&unhex(e["event_payload"]["payload"].as_str().unwrap_or("")))
            .contains(path)
    };
    for i in 0..24 {
        let path = format!("/stall-{m}-{i}");
        let st = Command::new("runuser")
            .args(["-u", "nobody", "--", "curl", "-sk", "-o", "/dev/null"])
            .arg("--data-binary")
            .arg(format!("@{}", body.display()))
            .arg(format!("https://127.0.0.1:{port}{path}"))
            .stdout(Stdio::null())
            .status()
            .expect("runuser curl");
        assert!(st.success(), "curl {i}: {st}");
        let end = Instant::now() + Duration::from_secs(20);
        let mut got = false;
        while !got {
            let left = end.saturating_duration_since(Instant::now());
            let v = ws
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("request {i} never reached the WebSocket client"));
            if v["entry"]["payload_kind"] == "event_payload" {
                seen += 1;
                got = is_marked(&v["entry"], &path);
            }
        }
    }
    // Every captured event reaches the client: wait for the rest (responses).
    let end = Instant::now() + Duration::from_secs(20);
    let c = loop {
        let c = status_counters(&addr);
        if seen == counter(&c, "captured") {
            break c;
        }
        assert!(
            Instant::now() < end,
            "the client got {seen} events of {}: {c}",
            counter(&c, "captured")
        );
        if let Ok(v) = ws.lines.recv_timeout(Duration::from_millis(200))
            && v["entry"]["payload_kind"] == "event_payload"
        {
            seen += 1;
        }
    };
    eprintln!("stall: {seen} events to the WebSocket client; counters {c}");
    assert!(seen >= 48, "at least each request and its response: {seen}");
    assert_eq!(counter(&c, "ws_dropped"), 0, "{c}");
    assert_eq!(counter(&c, "server_queue_dropped"), 0, "{c}");
    let text_dropped = counter(&c, "output_dropped");
    assert!(text_dropped > 0, "the unread stdout dropped, counted: {c}");
    assert_eq!(
        c["forward"]["sent_events"], 0,
        "the collector never answers: {c}"
    );
    let (_, metrics) = http(&addr, "GET", "/metrics", "");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("ecapture_output_dropped_events_total "))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(!line.ends_with(" 0"), "{line}");
    drop(ws);

    let (stdout, stderr) = rc.stop_with_stderr();
    let ledger = stderr
        .iter()
        .find(|l| l.starts_with("rcapture: stopped by signal"))
        .expect("ledger");
    let num_before = |label: &str| -> u64 {
        let i = ledger
            .find(label)
            .unwrap_or_else(|| panic!("{label} in {ledger}"));
        ledger[..i]
            .trim_end()
            .rsplit(' ')
            .next()
            .unwrap()
            .trim_start_matches('(')
            .parse()
            .unwrap_or_else(|_| panic!("no number before {label} in {ledger}"))
    };
    let events = num_before(" events,");
    let written = num_before(" written,");
    let drops = num_before(" output drops");
    let behind = num_before(" while the output was behind");
    assert!(behind > 0 && behind <= drops, "{ledger}");
    assert_eq!(written + drops, events, "{ledger}");
    assert!(written > 0 && !stdout.is_empty(), "{ledger}");
}
