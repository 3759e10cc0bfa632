//! Who may use the server (issue 12.1, 20.1, 20.6): local users other than
//! root are refused with 403 unless allowed (the clients really run as
//! `nobody`: curl and Python `websockets` under `runuser`), browsers of
//! other sites by Origin/Host/Content-Type, the WebSocket clients leave
//! room for the API, and loopback addresses share one rate bucket.

use crate::util::{TestServer, closed_within, config, connect, request, series_value};
use rcapture_net::access::AccessConfig;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;

/// A WebSocket client in Python: prints `open` and the first message's
/// length, or `status N` when the upgrade is refused.
const WS_CLIENT: &str = r#"
import asyncio, sys, websockets
async def main(url):
    try:
        async with websockets.connect(url, open_timeout=10) as ws:
            m = await asyncio.wait_for(ws.recv(), 10)
            print("open", len(m))
    except websockets.exceptions.InvalidStatusCode as e:
        print("status", e.status_code)
asyncio.run(main(sys.argv[1]))
"#;

/// False (and why, printed) when the test cannot run clients as nobody.
fn can_run_as_nobody(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let why = if unsafe { libc::geteuid() } != 0 {
        "needs root to run clients as nobody"
    } else if !Command::new("runuser")
        .args([
            "-u",
            "nobody",
            "--",
            "/usr/bin/python3",
            "-c",
            "import websockets",
        ])
        .current_dir("/")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        "needs Debian's python3-websockets (nobody cannot read root's Python)"
    } else {
        return true;
    };
    let required = ["RCAPTURE_REQUIRE_BPF", "RCAPTURE_REQUIRE_PYTHON"]
        .iter()
        .any(|v| std::env::var(v).as_deref() == Ok("1"));
    if required {
        panic!("{test}: {why}, and CI forbids skipping");
    }
    eprintln!("skipping test {test} - {why}");
    false
}

/// Runs `argv` as `user` (`root` runs it directly); its stdout.
fn run_as(user: &str, argv: &[&str]) -> String {
    let mut cmd = if user == "root" {
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..]);
        c
    } else {
        let mut c = Command::new("runuser");
        c.args(["-u", user, "--"]).args(argv);
        c
    };
    let out = cmd
        .current_dir("/")
        .output()
        .unwrap_or_else(|e| panic!("running {argv:?}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// curl as `user`: (status, body).
fn curl(user: &str, extra: &[&str], url: &str) -> (u16, String) {
    let mut argv = vec!["curl", "-s", "-m", "10", "-w", "\n%{http_code}"];
    argv.extend_from_slice(extra);
    argv.push(url);
    let out = run_as(user, &argv);
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Python `websockets` as `user` (Debian's python3 and python3-websockets:
/// a user's own interpreter may not be readable by nobody).
fn python_ws(user: &str, url: &str) -> String {
    run_as(user, &["/usr/bin/python3", "-c", WS_CLIENT, url])
        .trim()
        .to_string()
}

fn post_config(user: &str, url: &str, body: &str) -> (u16, String) {
    curl(
        user,
        &[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ],
        url,
    )
}

fn refused(s: &TestServer, reason: &str) -> f64 {
    let text = s.get("/metrics").text();
    series_value(
        &text,
        &format!("ecapture_server_refused_requests_total{{reason=\"{reason}\"}}"),
    )
    .unwrap_or_else(|| panic!("no refused series for {reason}:\n{text}"))
}

#[test]
fn nobody_is_refused_status_stream_and_config_with_403() {
    if !can_run_as_nobody("nobody_is_refused_status_stream_and_config_with_403") {
        return;
    }
    let mut cfg = config();
    cfg.ecaptureq = Some("127.0.0.1:0".parse().unwrap());
    let s = TestServer::with(cfg);
    let base = format!("http://{}", s.addr);
    let (status, body) = curl("nobody", &[], &format!("{base}/status"));
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("uid 65534 may not use rcapture's server")
            && body.contains("--allow-uid 65534")
            && body.contains("--insecure"),
        "the 403 says why and which flag allows: {body}"
    );
    assert_eq!(
        python_ws("nobody", &format!("ws://{}/ws", s.addr)),
        "status 403"
    );
    let q = s.ecaptureq.unwrap();
    assert_eq!(python_ws("nobody", &format!("ws://{q}/")), "status 403");
    let steal = r#"{"event_forward": {"url": "http://127.0.0.1:9/steal", "format": "json"}}"#;
    let (status, body) = post_config("nobody", &format!("{base}/config"), steal);
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        s.get("/config").json()["data"]["event_forward"]["enabled"],
        false,
        "nobody's POST /config changed nothing"
    );
    assert!(s.control.applied.lock().unwrap().is_empty());
    assert_eq!(refused(&s, "local_user"), 4.0);
    // Root is served, on the same server.
    assert_eq!(curl("root", &[], &format!("{base}/status")).0, 200);
    assert!(python_ws("root", &format!("ws://{}/ws", s.addr)).starts_with("open "));
    assert_eq!(refused(&s, "local_user"), 4.0);
    drop(s);
    // The same over IPv6.
    let mut cfg = config();
    cfg.listen = Some("[::1]:0".parse().unwrap());
    let Ok(s) = std::panic::catch_unwind(|| TestServer::with(cfg)) else {
        eprintln!("no IPv6 loopback here: IPv6 case skipped");
        return;
    };
    let url = format!("http://{}/status", s.addr);
    assert_eq!(curl("nobody", &[], &url).0, 403);
    assert_eq!(curl("root", &[], &url).0, 200);
}

#[test]
fn allow_uid_allow_gid_and_insecure_let_nobody_in() {
    if !can_run_as_nobody("allow_uid_allow_gid_and_insecure_let_nobody_in") {
        return;
    }
    for (what, access) in [
        (
            "--allow-uid",
            AccessConfig {
                allow_uids: vec![1234, NOBODY],
                ..AccessConfig::default()
            },
        ),
        (
            "--allow-gid of nogroup",
            AccessConfig {
                allow_gids: vec![NOBODY],
                ..AccessConfig::default()
            },
        ),
        (
            "--insecure",
            AccessConfig {
                insecure: true,
                ..AccessConfig::default()
            },
        ),
    ] {
        let mut cfg = config();
        cfg.access = access;
        cfg.ecaptureq = Some("127.0.0.1:0".parse().unwrap());
        let s = TestServer::with(cfg);
        let base = format!("http://{}", s.addr);
        let (status, body) = curl("nobody", &[], &format!("{base}/status"));
        assert_eq!(status, 200, "{what}: {body}");
        let ws = python_ws("nobody", &format!("ws://{}/ws", s.addr));
        assert!(ws.starts_with("open "), "{what}: {ws}");
        // eCaptureQ running as that user, on the stream-only address.
        let q = s.ecaptureq.unwrap();
        let ws = python_ws("nobody", &format!("ws://{q}/"));
        assert!(ws.starts_with("open "), "{what}, --ecaptureq: {ws}");
        let (status, body) = post_config("nobody", &format!("{base}/config"), r#"{"pid": 42}"#);
        assert_eq!(status, 200, "{what}: {body}");
        assert_eq!(s.control.applied.lock().unwrap().len(), 1, "{what}");
        assert_eq!(refused(&s, "local_user"), 0.0, "{what}");
    }
    // A group nobody is not in lets nobody in no more than nothing does.
    let mut cfg = config();
    cfg.access.allow_gids = vec![0];
    let s = TestServer::with(cfg);
    assert_eq!(
        curl("nobody", &[], &format!("http://{}/status", s.addr)).0,
        403
    );
}

/// A collector that reports the head of each request it gets.
fn head_collector() -> (u16, std::sync::mpsc::Receiver<String>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                while let Ok(n) = std::io::Read::read(&mut c, &mut chunk) {
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let _ = tx.send(String::from_utf8_lossy(&buf[..end]).into_owned());
                        let _ = c.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                        return;
                    }
                }
            });
        }
    });
    (port, rx)
}

#[test]
fn config_shows_no_forward_header_values_and_posting_it_back_keeps_them() {
    let mut s = TestServer::start();
    let (port, rx) = head_collector();
    let on = format!(
        r#"{{"event_forward": {{"url": "http://127.0.0.1:{port}/c", "format": "json", "batch_size": 1, "headers": {{"Authorization": "Bearer collector-secret"}}}}}}"#
    );
    let r = s.post("/config", &on);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.text().contains("collector-secret"), "{}", r.text());
    let got = s.get("/config");
    assert!(!got.text().contains("collector-secret"), "{}", got.text());
    let fwd = got.json()["data"]["event_forward"].clone();
    assert_eq!(fwd["headers"]["Authorization"], "<redacted>");
    assert!(!s.get("/status").text().contains("collector-secret"));
    // GET /config posted back (another batch size) keeps the real value.
    let mut back = fwd.clone();
    back["batch_size"] = 2.into();
    let r = s.post(
        "/config",
        &serde_json::json!({ "event_forward": back }).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    s.publish(&[
        crate::util::TestEvent::tls(1),
        crate::util::TestEvent::tls(2),
    ]);
    let head = rx.recv_timeout(Duration::from_secs(10)).expect("a batch");
    assert!(
        head.to_ascii_lowercase()
            .contains("authorization: bearer collector-secret"),
        "{head}"
    );
    // A redacted value with none to keep is refused, naming the header.
    let r = s.post(
        "/config",
        r#"{"event_forward": {"headers": {"X-Key": "<redacted>"}}}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.msg().contains("X-Key"), "{}", r.msg());
}

#[test]
fn token_is_compared_on_the_header_and_only_on_the_upgrade_query() {
    let mut cfg = config();
    cfg.auth_token = Some("s3cret".into());
    let s = TestServer::with(cfg);
    let r = request(
        s.addr,
        b"GET /status?token=s3cret HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert_eq!(r.status, 401);
    assert!(
        r.msg().contains("only accepted on the WebSocket upgrade"),
        "{}",
        r.msg()
    );
    let r = request(
        s.addr,
        b"GET /status HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer s3cre\r\n\r\n",
    );
    assert_eq!(r.status, 401, "a prefix of the token is not the token");
    assert_eq!(refused_with_token(&s, "token"), 2.0);
}

fn refused_with_token(s: &TestServer, reason: &str) -> f64 {
    let r = request(
        s.addr,
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer s3cret\r\n\r\n",
    );
    series_value(
        &r.text(),
        &format!("ecapture_server_refused_requests_total{{reason=\"{reason}\"}}"),
    )
    .unwrap()
}

#[test]
fn other_sites_hosts_and_non_json_posts_are_refused() {
    let s = TestServer::start();
    let post = |headers: &str| {
        let body = r#"{"event_forward": {"url": "http://127.0.0.1:9/x"}}"#;
        request(
            s.addr,
            format!(
                "POST /config HTTP/1.1\r\n{headers}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
    };
    // A cross-site form / no-cors fetch: text/plain.
    let r = post("Host: localhost\r\nContent-Type: text/plain\r\n");
    assert_eq!(r.status, 415, "{}", r.text());
    assert!(r.msg().contains("application/json"), "{}", r.msg());
    let r = post("Host: localhost\r\n");
    assert_eq!(r.status, 415, "no Content-Type: {}", r.text());
    // JSON, but from a page of another site.
    let r = post(
        "Host: localhost\r\nContent-Type: application/json\r\nOrigin: http://evil.example\r\n",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.msg().contains("http://evil.example"), "{}", r.msg());
    // DNS rebinding: the page's own name as Host.
    let r = post("Host: evil.example:28256\r\nContent-Type: application/json\r\n");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.msg().contains("evil.example"), "{}", r.msg());
    let r = request(
        s.addr,
        b"GET /status HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    );
    assert_eq!(r.status, 403, "a rebinding page reads nothing either");
    let r = request(s.addr, b"GET /status HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200, "no Host (HTTP/1.0): not a browser's");
    match crate::util::ws_connect(s.addr, "/ws", &[("Host", "evil.example")]) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("upgrade with Host evil.example: {:?}", other.map(|x| x.1)),
    }
    assert_eq!(
        s.get("/config").json()["data"]["event_forward"]["enabled"],
        false,
        "nothing changed the config"
    );
    for (reason, n) in [("content_type", 2.0), ("origin", 1.0), ("host", 3.0)] {
        assert_eq!(refused(&s, reason), n, "{reason}");
    }
    // Loopback names and a configured origin are served.
    for host in ["localhost:1", "127.0.0.5", "[::1]:28256"] {
        let r = request(
            s.addr,
            format!("GET /status HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 200, "Host {host}");
    }
    let mut cfg = config();
    cfg.access.allow_origins = vec!["http://ui.example:8080".into()];
    let s = TestServer::with(cfg);
    let r = request(
        s.addr,
        b"POST /config HTTP/1.1\r\nHost: ui.example:28256\r\nOrigin: http://ui.example:8080\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 11\r\n\r\n{\"pid\": 42}",
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn websocket_clients_leave_the_api_its_reserve() {
    let mut cfg = config();
    cfg.limits.max_connections = 16;
    cfg.limits.api_reserve = 4;
    let s = TestServer::with(cfg);
    let clients: Vec<_> = (0..12)
        .map(|_| crate::util::ws_ready(s.addr, "/ws"))
        .collect();
    match crate::util::ws_connect(s.addr, "/ws", &[]) {
        Err(tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 503);
            let body: serde_json::Value =
                serde_json::from_slice(resp.body().as_deref().unwrap_or(b"")).unwrap();
            assert!(
                body["msg"].as_str().unwrap().contains("kept for the API"),
                "{body}"
            );
        }
        other => panic!("a 13th WebSocket client: {:?}", other.map(|x| x.1)),
    }
    // The API still answers, several at once.
    let api: Vec<_> = (0..2).map(|_| connect(s.addr)).collect();
    s.assert_serving("the WebSocket share is full");
    assert_eq!(s.status()["counters"]["ws_clients"], 12);
    drop((clients, api));
}

#[test]
fn a_connection_that_never_sends_a_request_is_closed() {
    let mut cfg = config();
    cfg.limits.request_timeout = Duration::from_secs(1);
    let s = TestServer::with(cfg);
    let mut c = connect(s.addr);
    let t0 = Instant::now();
    assert!(
        closed_within(&mut c, Duration::from_secs(8)),
        "a silent connection kept its slot (idle timeout: 60 s)"
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(800),
        "{:?}",
        t0.elapsed()
    );
    s.assert_serving("a silent connection");
}

#[test]
fn loopback_addresses_share_one_rate_bucket() {
    let mut cfg = config();
    cfg.limits.requests_per_sec = 5;
    let s = TestServer::with(cfg);
    let url = format!("http://{}/status", s.addr);
    let t0 = Instant::now();
    let mut codes = Vec::new();
    // Four source addresses, eight requests each on one connection.
    for src in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        let mut argv = vec!["curl", "-s", "-m", "10", "--interface", src];
        argv.extend(["-w", "%{http_code}\n"]);
        for _ in 0..8 {
            argv.extend(["-o", "/dev/null", url.as_str()]);
        }
        let out = run_as("root", &argv);
        codes.extend(out.lines().map(|l| l.parse::<u16>().unwrap_or(0)));
    }
    assert_eq!(codes.len(), 32, "{codes:?}");
    let allowed = 10 + (5.0 * t0.elapsed().as_secs_f64()).ceil() as usize;
    let ok = codes.iter().filter(|&&c| c == 200).count();
    assert!(
        ok <= allowed,
        "{ok} of 32 served from four 127.x addresses, at most {allowed} for one client: {codes:?}"
    );
    assert!(codes.iter().all(|&c| c == 200 || c == 429), "{codes:?}");
}
