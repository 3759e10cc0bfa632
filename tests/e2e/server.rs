//! The event server of the real binary: a Python `websockets` client decodes
//! curl's live TLS events with the upstream schema and with rcapture's
//! (plain and permessage-deflate, on the API address and on `--ecaptureq`),
//! `/metrics` passes promtool, `POST /config` changes the pid filter live,
//! and a non-loopback listener needs a token.

use crate::testutil::{Rcapture, TempDir, blocks, bpf_available, python_server, run_ok, support};
use rcapture_testsupport::promtool;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub(crate) fn marker(tag: &str) -> String {
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

/// One HTTP/1.1 request to the API; returns (status, headers+body text, body).
pub(crate) fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

/// Python classes of both schemas, compiled now with grpc_tools.protoc;
/// `None` (after printing why) when Python lacks websockets/protobuf/grpcio-tools.
pub(crate) fn compile_schemas(dir: &TempDir) -> Option<(PathBuf, PathBuf)> {
    let probe = Command::new("python3")
        .args([
            "-c",
            "import websockets.sync.client, google.protobuf, grpc_tools.protoc",
        ])
        .output();
    let why = match probe {
        Err(e) => Some(format!("python3 not runnable: {e}")),
        Ok(o) if !o.status.success() => Some(String::from_utf8_lossy(&o.stderr).into_owned()),
        Ok(_) => None,
    };
    if let Some(why) = why {
        if std::env::var("RCAPTURE_REQUIRE_BPF").as_deref() == Ok("1") {
            panic!("python3 with websockets, protobuf and grpcio-tools is needed: {why}");
        }
        eprintln!("skipping test - {why}");
        return None;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let up = dir.path("up");
    let ext = dir.path("ext");
    for (inc, file, out) in [
        (root.join("core/tests/python"), "upstream_event.proto", &up),
        (root.join("proto"), "event.proto", &ext),
    ] {
        std::fs::create_dir_all(out).unwrap();
        run_ok(
            Command::new("python3")
                .args(["-m", "grpc_tools.protoc"])
                .arg(format!("-I{}", inc.display()))
                .arg(format!("--python_out={}", out.display()))
                .arg(file),
        );
    }
    Some((up, ext))
}

/// A running ws_client.py: its handshake and a channel of its JSON lines.
pub(crate) struct WsClient {
    child: Child,
    pub(crate) lines: mpsc::Receiver<Value>,
    handshake: Value,
    name: String,
}

impl Drop for WsClient {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl WsClient {
    pub(crate) fn start(name: &str, url: &str, pb2: &Path, module: &str, deflate: bool) -> Self {
        let mut cmd = Command::new("python3");
        cmd.arg(support("ws_client.py"))
            .arg(url)
            .arg(pb2)
            .arg(module)
            .args(["--secs", "60"]);
        if deflate {
            cmd.arg("--deflate");
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting ws_client.py");
        let out: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let mut me = Self {
            child,
            lines,
            handshake: Value::Null,
            name: name.into(),
        };
        me.handshake = me.next("the handshake")["handshake"].clone();
        assert_eq!(me.handshake["status"], 101, "{name}: {}", me.handshake);
        let first = me.next("the first heartbeat");
        let e = &first["entry"];
        assert_eq!(e["log_type"], 0, "{name}: heartbeat first, got {first}");
        assert_eq!(e["heartbeat_payload"]["message"], "heartbeat:0", "{first}");
        assert_eq!(e["heartbeat_payload"]["count"], 0, "{first}");
        me
    }

    pub(crate) fn next(&self, what: &str) -> Value {
        self.lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{}: no {what} within 30 s", self.name))
    }

    /// Events until `pred` has matched each of `want` predicates once.
    pub(crate) fn events_until(&self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        let end = Instant::now() + Duration::from_secs(30);
        while !done(&seen) {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if v["entry"]["payload_kind"] == "event_payload" => {
                    seen.push(v["entry"].clone())
                }
                Ok(_) => {}
                Err(_) => panic!("{}: events so far: {seen:#?}", self.name),
            }
        }
        seen
    }
}

pub(crate) fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Checks curl's request event (type 1, with the marker) field by field.
fn check_request_event(name: &str, e: &Value, curl_pid: u32, port: u16, m: &str, ext: bool) {
    let ev = &e["event_payload"];
    let payload = unhex(ev["payload"].as_str().unwrap());
    let text = String::from_utf8_lossy(&payload);
    assert!(
        text.starts_with("GET /ws-e2e HTTP/1.1\r\n"),
        "{name}: {text}"
    );
    assert!(
        text.contains(&format!("X-Unique: {m}\r\n")),
        "{name}: {text}"
    );
    assert_eq!(e["log_type"], 2, "{name}: {e}");
    assert_eq!(ev["pid"], curl_pid, "{name}");
    assert_eq!(ev["pname"], "curl", "{name}");
    assert_eq!(ev["type"], 1, "{name}: SSL_write is type 1");
    assert_eq!(ev["length"].as_u64(), Some(payload.len() as u64), "{name}");
    assert_eq!(ev["src_ip"], "127.0.0.1", "{name}");
    assert_eq!(ev["dst_ip"], "127.0.0.1", "{name}");
    assert_eq!(ev["dst_port"], port, "{name}");
    let sport = ev["src_port"].as_u64().unwrap();
    assert!(sport > 0 && sport != u64::from(port), "{name}: {ev}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let ts = ev["timestamp"].as_i64().unwrap();
    assert!(
        (now - ts).abs() < 120_000_000_000,
        "{name}: timestamp {ts} vs now {now}"
    );
    // sock:PID_TID_Comm_FD_DataType_Tuple_Sock
    let uuid = ev["uuid"].as_str().unwrap();
    let prefix = format!("sock:{curl_pid}_{curl_pid}_curl_");
    assert!(uuid.starts_with(&prefix), "{name}: {uuid}");
    let rest = &uuid[prefix.len()..];
    let (fd, rest) = rest.split_once('_').unwrap();
    let tuple = format!("1_127.0.0.1:{sport}-127.0.0.1:{port}_");
    assert!(rest.starts_with(&tuple), "{name}: {uuid} (want {tuple})");
    let fd: u64 = fd.parse().unwrap();
    assert!(fd > 2, "{name}: {uuid}");
    if ext {
        assert_eq!(ev["fd"].as_u64(), Some(fd), "{name}");
        assert_eq!(ev["tid"], curl_pid, "{name}");
        assert_eq!(ev["uid"], 0, "{name}");
        assert_eq!(ev["module"], "tls", "{name}");
        assert_eq!(ev["truncated"], 0, "{name}");
        let seq: u64 = e["seq"]
            .as_str()
            .map_or_else(|| e["seq"].as_u64().unwrap(), |s| s.parse().unwrap());
        assert!(seq >= 1, "{name}: seq {e}");
        assert_eq!(e["unknown_entry"], serde_json::json!([]), "{name}");
        assert_eq!(e["unknown_event"], serde_json::json!([]), "{name}");
    } else {
        // An upstream client ignores the extensions (they arrive as unknown fields).
        assert_eq!(
            e["unknown_entry"],
            serde_json::json!([5]),
            "{name}: seq is unknown upstream"
        );
        assert_eq!(
            e["unknown_event"],
            serde_json::json!([12, 14, 15]),
            "{name}: tid, module, fd (uid and truncated are 0, not encoded)"
        );
    }
}

fn seq_of(e: &Value) -> u64 {
    e["seq"]
        .as_str()
        .map_or_else(|| e["seq"].as_u64().unwrap_or(0), |s| s.parse().unwrap())
}

#[test]
fn python_websocket_clients_decode_live_curl_events() {
    let Some(_serial) = bpf_available("python_websocket_clients_decode_live_curl_events") else {
        return;
    };
    let dir = TempDir::new("ws");
    let Some((up, ext)) = compile_schemas(&dir) else {
        return;
    };
    let (_srv, port) = python_server(&dir, false);
    let rc = Rcapture::start(&["tls", "--ecaptureq", "127.0.0.1:0"]);
    let addr = rc.addr.clone().expect("announced address");
    let q = rc
        .stderr
        .iter()
        .find_map(|l| l.strip_prefix("rcapture: eCaptureQ stream on "))
        .unwrap_or_else(|| panic!("no eCaptureQ announcement: {:#?}", rc.stderr))
        .to_string();
    assert_ne!(q, addr);
    assert!(!q.ends_with(":0"), "the real port is announced: {q}");

    let clients = [
        WsClient::start(
            "upstream",
            &format!("ws://{addr}/"),
            &up,
            "upstream_event_pb2",
            false,
        ),
        WsClient::start(
            "extended",
            &format!("ws://{addr}/ws"),
            &ext,
            "event_pb2",
            false,
        ),
        WsClient::start("deflate", &format!("ws://{addr}/"), &ext, "event_pb2", true),
        WsClient::start("ecaptureq", &format!("ws://{q}/"), &ext, "event_pb2", false),
    ];
    for c in &clients {
        let h = &c.handshake["headers"];
        assert_eq!(h["x-rcapture-protocol"], "1", "{}: {h}", c.name);
        let ext_hdr = h["sec-websocket-extensions"].as_str().unwrap_or("");
        if c.name == "deflate" {
            assert!(ext_hdr.starts_with("permessage-deflate"), "{h}");
            assert_eq!(
                c.handshake["extensions"],
                serde_json::json!(["PerMessageDeflate"]),
                "negotiated by the client"
            );
        } else {
            assert_eq!(ext_hdr, "", "{}: {h}", c.name);
        }
    }

    let m = marker("ws");
    let (curl_pid, _) = run_ok(
        Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-H"])
            .arg(format!("X-Unique: {m}"))
            .arg(format!("https://127.0.0.1:{port}/ws-e2e")),
    );
    let is_req = |e: &Value| {
        e["event_payload"]["pid"] == curl_pid
            && e["event_payload"]["type"] == 1
            && String::from_utf8_lossy(&unhex(e["event_payload"]["payload"].as_str().unwrap()))
                .contains(&m)
    };
    let is_resp_body = |e: &Value| {
        e["event_payload"]["pid"] == curl_pid
            && e["event_payload"]["type"] == 0
            && String::from_utf8_lossy(&unhex(e["event_payload"]["payload"].as_str().unwrap()))
                .contains("hello from the test server /ws-e2e")
    };
    for c in &clients {
        let seen = c.events_until(|s| s.iter().any(is_req) && s.iter().any(is_resp_body));
        let req = seen.iter().find(|e| is_req(e)).unwrap();
        check_request_event(&c.name, req, curl_pid, port, &m, c.name != "upstream");
        let resp = seen.iter().find(|e| is_resp_body(e)).unwrap();
        let rp = &resp["event_payload"];
        // The response comes back on the same connection, reversed (on the
        // main stream: src = the sender); eCaptureQ's stream shows every
        // event of the connection client -> server (tests/e2e/ecaptureq.rs).
        let mut ports = (&Value::from(port), &req["event_payload"]["src_port"]);
        if c.name == "ecaptureq" {
            ports = (ports.1, ports.0);
        }
        assert_eq!(
            (&rp["src_port"], &rp["dst_port"]),
            ports,
            "{}: {resp}",
            c.name
        );
        if c.name != "upstream" {
            assert_eq!(rp["fd"], req["event_payload"]["fd"], "{}", c.name);
            // seq numbers every event entry of this connection, from 1, no gaps.
            let seqs: Vec<u64> = seen.iter().map(seq_of).collect();
            assert_eq!(
                seqs,
                (seqs[0]..seqs[0] + seqs.len() as u64).collect::<Vec<_>>(),
                "{}",
                c.name
            );
        }
    }

    let (status, metrics) = http(&addr, "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(
        metrics.contains(&format!(
            "ecapture_events_total{{module=\"tls\",pid=\"{curl_pid}\"}} "
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("ecapture_websocket_clients 4\n"),
        "{metrics}"
    );
    promtool::assert_clean(&metrics);
    let (status, st) = http(&addr, "GET", "/status", "");
    assert_eq!(status, 200);
    let st: Value = serde_json::from_str(&st).unwrap();
    assert_eq!(st["data"]["ready"], true, "{st}");
    // The loaded module, with what it probes.
    let m = &st["data"]["modules"][0];
    assert_eq!(m["name"], "tls", "{st}");
    assert!(
        m["target"]
            .as_str()
            .is_some_and(|t| t.contains("libssl.so.3")),
        "{st}"
    );
    assert!(
        m["version"].as_str().is_some_and(|v| v.starts_with("3.0.")),
        "{st}"
    );
    assert_eq!(m["routes"], serde_json::json!(["/tls", "/openssl"]), "{st}");
    assert!(m["probes"].as_u64().is_some_and(|n| n >= 9), "{st}");
    // Its routes configure like /config; a known module that is not loaded is named.
    let (code, body) = http(&addr, "POST", "/openssl", "{}");
    assert_eq!(code, 200, "{body}");
    let (code, body) = http(&addr, "POST", "/gotls", "{}");
    assert_eq!(code, 404, "{body}");
    assert!(
        body.contains("module gotls is not loaded (loaded: tls)"),
        "{body}"
    );
    assert_eq!(st["data"]["counters"]["ws_clients"], 4, "{st}");
    assert_eq!(st["data"]["counters"]["ws_dropped"], 0, "{st}");
    drop(clients);
    rc.stop();
}

#[test]
fn post_config_pid_filters_text_output_live() {
    let Some(_serial) = bpf_available("post_config_pid_filters_text_output_live") else {
        return;
    };
    let dir = TempDir::new("cfgpid");
    let (_srv, port) = python_server(&dir, false);
    let rc = Rcapture::start(&["tls"]);
    let addr = rc.addr.clone().unwrap();
    let curl = |m: &str| {
        run_ok(
            Command::new("curl")
                .args(["-sk", "-o", "/dev/null", "-H"])
                .arg(format!("X-Unique: {m}"))
                .arg(format!("https://127.0.0.1:{port}/cfg")),
        )
        .0
    };
    // A pid that makes no TLS calls: this test process.
    let other = std::process::id();
    let (status, body) = http(&addr, "POST", "/config", &format!("{{\"pid\": {other}}}"));
    assert_eq!(status, 200, "{body}");
    let (_, cfg) = http(&addr, "GET", "/config", "");
    let cfg: Value = serde_json::from_str(&cfg).unwrap();
    assert_eq!(cfg["data"]["pid"], other, "{cfg}");
    let hidden = marker("hidden");
    let hidden_pid = curl(&hidden);
    let (status, body) = http(&addr, "POST", "/config", r#"{"pid": 0}"#);
    assert_eq!(status, 200, "{body}");
    let shown = marker("shown");
    let shown_pid = curl(&shown);
    std::thread::sleep(Duration::from_millis(300));
    let out = rc.stop();
    let all = blocks(&out);
    assert!(
        !out.contains(&hidden) && all.iter().all(|b| b.pid() != hidden_pid),
        "curl {hidden_pid} ran while pid {other} was selected, yet is shown:\n{out}"
    );
    assert!(
        all.iter()
            .any(|b| b.pid() == shown_pid && b.what() == "send" && b.body.contains(&shown)),
        "after {{\"pid\":0}} curl {shown_pid} is shown again:\n{out}"
    );
}

#[test]
fn non_loopback_listen_without_token_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_rcapture"))
        .args(["tls", "--listen", "0.0.0.0:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("running rcapture");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit status {}: {err}", out.status);
    assert!(err.contains("--auth-token"), "{err}");
    assert!(err.contains("0.0.0.0:0"), "names the address: {err}");
    assert!(
        !err.contains("rcapture: listening on"),
        "nothing was served: {err}"
    );
}
