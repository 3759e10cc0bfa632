//! The outputs without the server: `--listen none --forward URL` delivers
//! curl's live TLS events to a collector (`tests/support/collector.py`)
//! through the output hub alone — no event-loop thread, no listening socket.

use crate::testutil::{
    Proc, Rcapture, TempDir, bpf_available, python_server, run_ok, spawn_with_port, support,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The names of the threads of process `pid`.
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("reading the tasks")
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|s| s.trim().to_string())
        .collect()
}

/// The TCP sockets in LISTEN state that process `pid` holds open.
fn listening_sockets(pid: u32) -> Vec<String> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("reading the fds")
        .flatten()
        .filter_map(|f| std::fs::read_link(f.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // local_address, state (0A = LISTEN), ..., inode (column 10).
            if cols.len() > 9 && cols[3] == "0A" && inodes.contains(cols[9]) {
                found.push(format!("{table} {}", cols[1]));
            }
        }
    }
    found
}

/// `tests/support/collector.py` recording into `out`; returns it (killed
/// at drop) and its ingest URL.
pub(crate) fn start_collector(out: &Path) -> (Proc, String) {
    let (collector, port) = spawn_with_port(
        Command::new("python3")
            .arg(support("collector.py"))
            .arg(out),
        "tests/support/collector.py",
    );
    (collector, format!("http://127.0.0.1:{port}/ingest"))
}

/// The events the collector received so far (NDJSON bodies, decoded).
pub(crate) fn collected(out: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let mut events = Vec::new();
    for req in text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        let body = STANDARD
            .decode(req["body"].as_str().unwrap_or(""))
            .expect("a base64 body");
        for line in String::from_utf8_lossy(&body).lines() {
            events.push(serde_json::from_str(line).expect("an NDJSON line"));
        }
    }
    events
}

/// Waits (15 s at most) until the collector got an event of `pid` whose
/// payload holds `marker`.
pub(crate) fn wait_collected(out: &Path, pid: u32, marker: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let hit = collected(out).iter().any(|e| {
            e["pid"] == pid
                && STANDARD
                    .decode(e["payload"].as_str().unwrap_or(""))
                    .is_ok_and(|p| String::from_utf8_lossy(&p).contains(marker))
        });
        if hit || Instant::now() >= deadline {
            return hit;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `-m none`: nothing on stdout, every event still forwarded.
#[test]
fn mode_none_writes_nothing_and_still_forwards() {
    let Some(_serial) = bpf_available("mode_none_writes_nothing_and_still_forwards") else {
        return;
    };
    let dir = TempDir::new("modenone");
    let (_srv, port) = python_server(&dir, false);
    let out = dir.path("collector.jsonl");
    let (_collector, url) = start_collector(&out);
    let rc = Rcapture::start(&[
        "tls",
        "-m",
        "none",
        "--forward",
        &url,
        "--forward-format",
        "json",
        "--batch-timeout-ms",
        "100",
    ]);
    let marker = format!("mode-none-{}", std::process::id());
    let (curl_pid, _) = run_ok(
        Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-H"])
            .arg(format!("X-Unique: {marker}"))
            .arg(format!("https://127.0.0.1:{port}/none")),
    );
    let found = wait_collected(&out, curl_pid, &marker);
    let stdout = rc.stop();
    assert!(
        found,
        "the collector got curl {curl_pid}'s request with {marker}"
    );
    assert_eq!(stdout, "", "-m none writes nothing on stdout");
}

#[test]
fn listen_none_forwards_without_the_server_loop() {
    let Some(_serial) = bpf_available("listen_none_forwards_without_the_server_loop") else {
        return;
    };
    let dir = TempDir::new("hubonly");
    let (_srv, port) = python_server(&dir, false);
    let out = dir.path("collector.jsonl");
    let (_collector, url) = start_collector(&out);
    let rc = Rcapture::start(&[
        "tls",
        "--listen",
        "none",
        "--forward",
        &url,
        "--forward-format",
        "json",
        "--batch-timeout-ms",
        "100",
    ]);
    assert_eq!(
        rc.addr, None,
        "nothing announced a listener: {:?}",
        rc.stderr
    );

    // A spawned thread names itself once it runs: wait for the hub's name,
    // then give any other thread started with it time to name itself too.
    let t0 = Instant::now();
    let mut names = thread_names(rc.pid());
    while !names.iter().any(|n| n == "rcapture-hub") && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
        names = thread_names(rc.pid());
    }
    assert!(
        names.iter().any(|n| n == "rcapture-hub"),
        "the hub runs on its own thread: {names:?}"
    );
    std::thread::sleep(Duration::from_millis(200));
    let names = thread_names(rc.pid());
    assert!(
        !names.iter().any(|n| n == "rcapture-server"),
        "no server loop runs with --listen none: {names:?}"
    );
    let listening = listening_sockets(rc.pid());
    assert!(listening.is_empty(), "listening sockets: {listening:?}");

    let marker = format!("hub-only-{}", std::process::id());
    let (curl_pid, _) = run_ok(
        Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-H"])
            .arg(format!("X-Unique: {marker}"))
            .arg(format!("https://127.0.0.1:{port}/hub")),
    );
    let found = wait_collected(&out, curl_pid, &marker);
    let (_, stderr) = rc.stop_with_stderr();
    assert!(
        found,
        "the collector got curl {curl_pid}'s request with {marker}; events: {:#?}",
        collected(&out)
    );
    let ledger = stderr
        .iter()
        .find(|l| l.starts_with("rcapture: forwarded "))
        .unwrap_or_else(|| panic!("the forwarder's exit ledger: {stderr:#?}"));
    assert!(
        !ledger.starts_with("rcapture: forwarded 0 events"),
        "{ledger}"
    );
}
