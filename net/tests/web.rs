//! The web viewer in headless Chromium (`tests/web/synthetic.mjs`, see
//! `rcapture_testsupport::browser`) against the server with synthetic
//! events: every event kind decoded and shown, the exports (NDJSON checked
//! field by field, pcapng read by tshark), reconnecting, and the page under
//! 10 000 events/s (frames/s and heap printed; the history stays bounded,
//! the heap flat; `RCAPTURE_WEB_PROFILE=1` adds the page's CPU profile, self
//! time per function). A test binary of its own, one browser at a time: the
//! load run does not share the CPUs with the server tests' timings.

#[path = "server/util.rs"]
#[allow(dead_code)]
mod util;

use base64::Engine;
use rcapture_core::event::EventKind;
use rcapture_testsupport::browser::{self, Script};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use util::*;

static ONE_BROWSER: Mutex<()> = Mutex::new(());

/// The browser lock, when the browser tests can run here.
fn browser(test: &str) -> Option<MutexGuard<'static, ()>> {
    browser::available(test).then(|| ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner()))
}

/// An Ethernet frame: IPv4 10.1.1.1:40000 → 10.2.2.2:80, TCP PSH ACK, `data`.
fn ipv4_tcp_frame(data: &[u8]) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00];
    let total = (20 + 20 + data.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend(total.to_be_bytes());
    ip.extend([0, 1, 0x40, 0, 64, 6, 0, 0, 10, 1, 1, 1, 10, 2, 2, 2]);
    let sum = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend(ip);
    f.extend(40000u16.to_be_bytes());
    f.extend(80u16.to_be_bytes());
    f.extend([0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend(data);
    f
}

/// An Ethernet frame: IPv6 [2001:db8::1]:5353 → [ff02::fb]:5353, UDP, `data`.
fn ipv6_udp_frame(data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x33, 0x33, 0, 0, 0, 0xfb, 0, 0, 0, 0, 0, 1, 0x86, 0xdd];
    let len = (8 + data.len()) as u16;
    f.extend([0x60, 0, 0, 0]);
    f.extend(len.to_be_bytes());
    f.extend([17, 255]);
    f.extend([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    f.extend([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfb]);
    f.extend(5353u16.to_be_bytes());
    f.extend(5353u16.to_be_bytes());
    f.extend(len.to_be_bytes());
    f.extend([0, 0]);
    f.extend(data);
    f
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(data).unwrap();
    z.finish().unwrap()
}

const KEYLOG: &str = "CLIENT_HANDSHAKE_TRAFFIC_SECRET 0A0B0C0D0E0F101112131415161718191A1B1C1D1E1F20212223242526272829 1111111111111111111111111111111111111111111111111111111111111111\nSERVER_HANDSHAKE_TRAFFIC_SECRET 0A0B0C0D0E0F101112131415161718191A1B1C1D1E1F20212223242526272829 2222222222222222222222222222222222222222222222222222222222222222\n";

/// One event of every kind the page tells apart, each with its own pid.
fn every_kind() -> Vec<TestEvent> {
    let ev = |pid: i64, module: &'static str, kind, uuid: &str, ty: u32, payload: Vec<u8>| {
        let mut e = TestEvent::tls(pid as u64)
            .with_pid(pid)
            .with_module(module, kind)
            .with_payload(payload);
        e.uuid = uuid.into();
        e.r#type = ty;
        e.truncated = 0;
        e.pname = if module == "tls" { "curl" } else { module }.into();
        if kind != EventKind::Data && kind != EventKind::Conn {
            e.src_ip = "127.0.0.1".into();
            e.dst_ip = "127.0.0.1".into();
            (e.src_port, e.dst_port) = (0, 0);
        }
        e
    };
    let mut response = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let body = gzip(b"hello gzip world");
    let (a, b) = body.split_at(7);
    for chunk in [a, b] {
        response.extend(format!("{:x}\r\n", chunk.len()).into_bytes());
        response.extend(chunk);
        response.extend(b"\r\n");
    }
    response.extend(b"0\r\n\r\n");
    let mut binary = ev(
        5010,
        "tls",
        EventKind::Data,
        "sock:5010_5010_curl_5_1_10.0.0.1:50010-93.184.216.34:443_0",
        1,
        vec![0x16, 0x03, 0x01, 0xff, 0x00, b'a'],
    );
    binary.truncated = 100;
    let mut conn = ev(5007, "tls", EventKind::Conn, "5007_5007_curl_7", 0, vec![]);
    conn.fd = 7;
    vec![
        ev(
            5001,
            "tls",
            EventKind::Data,
            "sock:5001_5001_curl_5_1_10.0.0.1:50001-93.184.216.34:443_0",
            1,
            b"POST /api/items HTTP/1.1\r\nHost: example\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"a\":[1,2,3]}".to_vec(),
        ),
        ev(
            5002,
            "tls",
            EventKind::Data,
            "sock:5002_5002_curl_5_0_10.0.0.1:50002-93.184.216.34:443_0",
            0,
            response,
        ),
        ev(
            5003,
            "tls",
            EventKind::MasterKey,
            "0A0B0C0D0E0F101112131415161718191A1B1C1D1E1F20212223242526272829",
            0x0304,
            KEYLOG.as_bytes().to_vec(),
        ),
        ev(
            5004,
            "bash",
            EventKind::Bash,
            "5004_0_bash",
            0,
            b"ls -la /tmp | grep web-marker".to_vec(),
        ),
        ev(
            5005,
            "mysqld",
            EventKind::Query,
            "5005_mysqld",
            -1i32 as u32,
            b"SELECT name FROM users WHERE id = 42".to_vec(),
        ),
        ev(
            5006,
            "postgres",
            EventKind::Query,
            "5006_postgres",
            0,
            b"INSERT INTO t VALUES (1)".to_vec(),
        ),
        conn,
        ev(
            5008,
            "tls",
            EventKind::Packet,
            "5008_1_curl",
            0,
            ipv4_tcp_frame(b"GET /pcap-marker HTTP/1.1\r\nHost: x\r\n\r\n"),
        ),
        ev(
            5009,
            "tls",
            EventKind::Packet,
            "5009_1_curl",
            0,
            ipv6_udp_frame(b"mdns-marker"),
        ),
        binary,
    ]
}

/// The report row (cells and detail pane) of the event of `pid`.
fn row(report: &Value, pid: i64) -> &Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["cells"][1].as_str().and_then(|c| c.parse().ok()) == Some(pid))
        .unwrap_or_else(|| panic!("no row of pid {pid}: {report}"))
}

fn cells(r: &Value) -> Vec<&str> {
    r["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect()
}

/// The text of the detail pane's `<pre class=CLASS>`.
fn pre<'a>(r: &'a Value, class: &str) -> &'a str {
    r["pres"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p[0] == class)
        .and_then(|p| p[1].as_str())
        .unwrap_or_else(|| panic!("no pre.{class}: {r}"))
}

fn has_header(r: &Value, name: &str, value: &str) -> bool {
    r["headers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h[0] == name && h[1] == value)
}

#[test]
fn the_viewer_shows_every_kind_and_exports_ndjson_and_pcapng() {
    let test = "the_viewer_shows_every_kind_and_exports_ndjson_and_pcapng";
    let Some(_one) = browser(test) else {
        return;
    };
    let mut s = TestServer::start();
    let events = every_kind();
    let artifacts = browser::artifacts_dir();
    let mut script = Script::start(
        "synthetic.mjs",
        &json!({"url": format!("http://{}/", s.addr), "mode": "kinds",
                "artifacts": artifacts, "count": events.len()}),
    );
    script.wait_for("ready", Duration::from_secs(60));
    s.publish(&events);
    let report = script.report(Duration::from_secs(120));

    let r = row(&report, 5001);
    let e = &events[0];
    let tuple = format!("{}:{} → {}:{}", e.src_ip, e.src_port, e.dst_ip, e.dst_port);
    let len = e.payload.len().to_string();
    assert_eq!(cells(r)[3..8], ["tls", "data", "send", &tuple, &len]);
    assert!(strings(&r["sections"]).contains(&"HTTP request"), "{r}");
    assert_eq!(r["startline"], "POST /api/items HTTP/1.1");
    assert!(has_header(r, "Content-Type", "application/json"), "{r}");
    assert_eq!(
        pre(r, "body"),
        "{\n  \"a\": [\n    1,\n    2,\n    3\n  ]\n}"
    );
    let mut iso = Vec::new();
    rcapture_core::text::write_rfc3339_nanos(events[0].timestamp, &mut iso);
    assert_eq!(r["fields"]["time"], String::from_utf8(iso).unwrap());

    let r = row(&report, 5002);
    assert_eq!(r["startline"], "HTTP/1.1 200 OK");
    assert!(strings(&r["sections"]).contains(&"HTTP response"), "{r}");
    let notes = strings(&r["notes"]);
    assert!(notes.contains(&"chunked body, decoded"), "{r}");
    assert!(notes.contains(&"gzip-encoded, 16 bytes decoded"), "{r}");
    assert_eq!(pre(r, "body"), "hello gzip world");

    let r = row(&report, 5003);
    assert_eq!(cells(r)[4..6], ["masterkey", "TLS 1.3"]);
    assert_eq!(pre(r, "keylog"), KEYLOG);

    let r = row(&report, 5004);
    assert_eq!(cells(r)[4..6], ["bash", "readline"]);
    assert_eq!(cells(r)[6], "", "bash has no addresses");
    assert!(strings(&r["sections"]).contains(&"bash command"), "{r}");
    assert_eq!(pre(r, "command"), "ls -la /tmp | grep web-marker");

    let r = row(&report, 5005);
    assert_eq!(cells(r)[4..6], ["query", "ret -1"]);
    assert!(
        strings(&r["sections"])
            .contains(&"SQL query (MySQL/MariaDB, dispatch_command returned -1)"),
        "{r}"
    );
    assert_eq!(pre(r, "sql"), "SELECT name FROM users WHERE id = 42");
    let r = row(&report, 5006);
    assert!(
        strings(&r["sections"]).contains(&"SQL query (PostgreSQL)"),
        "{r}"
    );
    assert_eq!(pre(r, "sql"), "INSERT INTO t VALUES (1)");

    let r = row(&report, 5007);
    assert_eq!(cells(r)[4], "conn");
    assert_eq!(cells(r)[8], "fd 7");

    let r = row(&report, 5008);
    assert_eq!(
        cells(r)[4..7],
        ["packet", "", "10.1.1.1:40000 → 10.2.2.2:80"]
    );
    assert!(
        cells(r)[8].starts_with("IPv4 TCP [PSH ACK] seq 1, 38 bytes of data: GET /pcap-marker"),
        "{r}"
    );
    assert_eq!(r["startline"], "GET /pcap-marker HTTP/1.1");
    let r = row(&report, 5009);
    assert_eq!(
        cells(r)[6..9],
        [
            "[2001:db8::1]:5353 → [ff02::fb]:5353",
            "73",
            "IPv6 UDP, 11 bytes of data: mdns-marker"
        ]
    );

    let r = row(&report, 5010);
    assert_eq!(cells(r)[7], "6+", "truncated events are marked");
    assert_eq!(pre(r, "text"), "\\x16\\x03\\x01\\xff\\x00a");
    assert!(
        pre(r, "hex").starts_with("00000000  16 03 01 ff 00 61 "),
        "{r}"
    );
    assert_eq!(r["fields"]["length"], "6 bytes (+100 not captured)");

    // Every field of every event, exported as the forwarder's json lines.
    let lines = ndjson(&report["ndjson"]);
    assert_eq!(lines.len(), events.len());
    for e in &events {
        let l = lines
            .iter()
            .find(|l| l["pid"] == e.pid)
            .unwrap_or_else(|| panic!("no line of pid {}", e.pid));
        let payload = base64::engine::general_purpose::STANDARD
            .decode(l["payload"].as_str().unwrap())
            .unwrap();
        assert_eq!(payload, e.payload, "{l}");
        assert_eq!(l["timestamp"].as_i64(), Some(e.timestamp), "{l}");
        for (k, v) in [
            ("uuid", json!(e.uuid)),
            ("src_ip", json!(e.src_ip)),
            ("src_port", json!(e.src_port)),
            ("dst_ip", json!(e.dst_ip)),
            ("dst_port", json!(e.dst_port)),
            ("pname", json!(e.pname)),
            ("type", json!(e.r#type)),
            ("length", json!(e.payload.len())),
            ("tid", json!(e.tid)),
            ("uid", json!(e.uid)),
            ("module", json!(e.module)),
            ("fd", json!(e.fd)),
            ("truncated", json!(e.truncated)),
        ] {
            assert_eq!(l[k], v, "{k} of {l}");
        }
        assert!(l["seq"].as_u64().unwrap() > 0);
    }
    let selected = ndjson(&report["ndjson_selected"]);
    let pids: Vec<_> = selected.iter().map(|l| l["pid"].clone()).collect();
    assert_eq!(json!(pids), report["selected_pids"]);
    assert_eq!(pids.len(), 2);

    let search = report["search"].as_array().unwrap();
    assert_eq!(search.len(), 1, "{search:?}");
    assert_eq!(search[0]["pid"], 5005);
    let module = report["module_filter"].as_array().unwrap();
    assert_eq!(module.len(), 1, "{module:?}");
    assert_eq!(module[0]["pid"], 5004);

    check_pcapng(
        Path::new(report["pcapng"].as_str().unwrap()),
        &events[7],
        &events[8],
    );
}

fn ndjson(path: &Value) -> Vec<Value> {
    std::fs::read_to_string(path.as_str().unwrap())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// The two packets read back by tshark (time, length, addresses, the HTTP
/// request in the first), and the key log in a Decryption Secrets Block.
fn check_pcapng(path: &Path, tcp: &TestEvent, udp: &TestEvent) {
    let bytes = std::fs::read(path).unwrap();
    let mut blocks = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let word = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
        let (ty, len) = (word(at), word(at + 4) as usize);
        assert_eq!(word(at + len - 4) as usize, len, "trailing length");
        blocks.push((ty, bytes[at + 8..at + len - 4].to_vec()));
        at += len;
    }
    assert_eq!(at, bytes.len());
    let types: Vec<u32> = blocks.iter().map(|b| b.0).collect();
    assert_eq!(types, [0x0a0d0d0a, 1, 0x0a, 6, 6]);
    let dsb = &blocks[2].1;
    assert_eq!(&dsb[..4], &0x544c534bu32.to_le_bytes());
    let n = u32::from_le_bytes(dsb[4..8].try_into().unwrap()) as usize;
    assert_eq!(&dsb[8..8 + n], KEYLOG.as_bytes());

    let out = match Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args([
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "frame.time_epoch",
        ])
        .args([
            "-e",
            "frame.len",
            "-e",
            "ip.src",
            "-e",
            "ipv6.dst",
            "-e",
            "tcp.dstport",
        ])
        .args(["-e", "udp.dstport", "-e", "http.request.uri"])
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            assert!(
                std::env::var("RCAPTURE_REQUIRE_BPF").as_deref() != Ok("1"),
                "tshark is needed: {e}"
            );
            eprintln!("skipping the tshark check - tshark not runnable: {e}");
            return;
        }
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let epoch = |e: &TestEvent| {
        format!(
            "{}.{:09}",
            e.timestamp / 1_000_000_000,
            e.timestamp % 1_000_000_000
        )
    };
    let want = format!(
        "{}|{}|10.1.1.1||80||/pcap-marker\n{}|{}||ff02::fb||5353|\n",
        epoch(tcp),
        tcp.payload.len(),
        epoch(udp),
        udp.payload.len()
    );
    assert_eq!(text, want);
}

#[test]
fn the_viewer_keeps_up_at_10000_events_per_second() {
    let test = "the_viewer_keeps_up_at_10000_events_per_second";
    let Some(_one) = browser(test) else {
        return;
    };
    const RATE: u64 = 10_000;
    const SECONDS: u64 = 15;
    let mut s = TestServer::start();
    let mut script = Script::start(
        "synthetic.mjs",
        &json!({"url": format!("http://{}/", s.addr), "mode": "load",
                "artifacts": browser::artifacts_dir(), "seconds": SECONDS,
                "profile": std::env::var_os("RCAPTURE_WEB_PROFILE").is_some()}),
    );
    script.wait_for("ready", Duration::from_secs(60));
    let body = "x".repeat(120);
    let t0 = Instant::now();
    let mut sent = 0u64;
    while t0.elapsed() < Duration::from_secs(SECONDS + 2) {
        let due = (t0.elapsed().as_secs_f64() * RATE as f64) as u64;
        let batch: Vec<TestEvent> = (sent..due)
            .map(|i| {
                let e = TestEvent::tls(i);
                let payload =
                    format!("GET /item/{i} HTTP/1.1\r\nHost: example\r\nX-Load: {body}\r\n\r\n");
                e.with_payload(payload.into_bytes())
            })
            .collect();
        sent = due;
        s.publish(&batch);
        std::thread::sleep(Duration::from_millis(5));
    }
    let report = script.report(Duration::from_secs(60));
    let c = s.counters();
    eprintln!(
        "web viewer at {RATE} events/s: published {sent}, server ws_sent {} ws_dropped {} {}, page {}",
        c["ws_sent"], c["ws_dropped"], c["ws_dropped_by_reason"], report
    );
    // The history stays bounded however much arrives.
    assert_eq!(report["counters"]["held"], 10_000, "{report}");
    assert!(
        report["counters"]["evicted"].as_u64().unwrap() > 0,
        "{report}"
    );
    // Frames kept coming: no second of the load without one.
    let samples = report["samples"].as_array().unwrap();
    assert!(samples.len() >= 3, "{report}");
    assert!(
        samples.iter().all(|s| s["fps"].as_u64().unwrap() > 0),
        "{report}"
    );
    // Memory stays flat: the heap once the history is full and at the end
    // (both after a collection) differ by far less than what keeping every
    // event received would take.
    let full = samples
        .iter()
        .find_map(|s| s["heap"]["used"].as_u64())
        .expect("a heap sample");
    let end = report["heap_end"]["used"].as_u64().unwrap();
    assert!(
        end < 2 * full + (4 << 20),
        "heap {full} then {end}: {report}"
    );
}

#[test]
fn the_viewer_reconnects_when_the_server_comes_back() {
    let test = "the_viewer_reconnects_when_the_server_comes_back";
    let Some(_one) = browser(test) else {
        return;
    };
    let first = TestServer::start();
    let addr = first.addr;
    let marker = "back-again-marker";
    let mut script = Script::start(
        "synthetic.mjs",
        &json!({"url": format!("http://{addr}/"), "mode": "reconnect",
                "artifacts": browser::artifacts_dir(), "marker": marker}),
    );
    script.wait_for("ready", Duration::from_secs(60));
    drop(first);
    script.wait_for("down", Duration::from_secs(30));
    let mut cfg = config();
    cfg.listen = Some(addr);
    let mut second = TestServer::with(cfg);
    script.wait_for("live", Duration::from_secs(30));
    second.publish(&[
        TestEvent::tls(1).with_payload(format!("GET /{marker} HTTP/1.1\r\n\r\n").into_bytes())
    ]);
    let report = script.report(Duration::from_secs(60));
    assert!(
        report["down"].as_str().unwrap().starts_with("disconnected"),
        "{report}"
    );
}
