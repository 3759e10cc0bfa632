//! Bad and hostile HTTP input: each case gets its status and envelope code,
//! and the server keeps serving afterwards; connection limits, slowloris,
//! idle connections and per-client rate limiting.

use crate::util::{TestServer, closed_within, config, connect, read_response, request};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn malformed_request_line_is_400_code_1() {
    let s = TestServer::start();
    let r = request(s.addr, b"GARBAGE\r\n\r\n");
    assert_eq!((r.status, r.code()), (400, 1), "{r:?}");
    assert!(r.msg().starts_with("malformed request"), "{}", r.msg());
    assert_eq!(r.header("Connection"), Some("close"));
    s.assert_serving("a malformed request line");
    let r = request(s.addr, b"GET / HTTP/2.0\r\n\r\n");
    assert_eq!((r.status, r.code()), (400, 1), "{r:?}");
    s.assert_serving("HTTP/2.0");
}

#[test]
fn sixty_four_kib_of_headers_is_431() {
    let s = TestServer::start();
    let raw = format!(
        "GET /status HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let r = request(s.addr, raw.as_bytes());
    assert_eq!((r.status, r.code()), (431, 1), "{r:?}");
    assert!(r.msg().contains("8192"), "names the limit: {}", r.msg());
    s.assert_serving("64 KiB of headers");
}

#[test]
fn two_mib_body_declared_is_413() {
    let s = TestServer::start();
    let r = request(
        s.addr,
        b"POST /config HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2097152\r\n\r\n{\"pid\":",
    );
    assert_eq!((r.status, r.code()), (413, 1), "{r:?}");
    assert!(
        r.msg().contains("2097152") && r.msg().contains("1048576"),
        "names the size and the limit: {}",
        r.msg()
    );
    s.assert_serving("a 2 MiB body");
    assert!(
        s.control.applied.lock().unwrap().is_empty(),
        "nothing applied"
    );
}

#[test]
fn config_json_errors_are_code_4_and_5_and_name_the_field() {
    let s = TestServer::start();
    let r = s.post("/config", "{\"pid\": 12");
    assert_eq!((r.status, r.code()), (400, 4), "{r:?}");
    assert!(r.msg().contains("not valid JSON"), "{}", r.msg());
    s.assert_serving("invalid JSON");

    let r = s.post("/config", r#"{"pid": "1234"}"#);
    assert_eq!((r.status, r.code()), (400, 4), "{r:?}");
    assert_eq!(r.msg(), "pid must be a number, got \"1234\"");
    let r = s.post("/config", r#"{"is_hex": 1}"#);
    assert_eq!((r.status, r.code()), (400, 4), "{r:?}");
    assert!(r.msg().starts_with("is_hex "), "{}", r.msg());
    s.assert_serving("wrong JSON types");

    let r = s.post("/config", r#"{"uid": 5000000000}"#);
    assert_eq!((r.status, r.code()), (400, 5), "{r:?}");
    assert_eq!(r.msg(), "uid: 5000000000 is out of range 0..=4294967295");
    let r = s.post("/config", r#"{"truncate_size": 7}"#);
    assert_eq!((r.status, r.code()), (400, 5), "{r:?}");
    assert!(r.msg().contains("truncate_size: 7"), "{}", r.msg());
    s.assert_serving("out-of-range values");
    assert!(
        s.control.applied.lock().unwrap().is_empty(),
        "refused updates apply nothing"
    );
    // The configuration did not change.
    let c = s.get("/config").json();
    assert_eq!(
        (c["data"]["pid"].as_u64(), c["data"]["uid"].as_u64()),
        (Some(0), Some(0))
    );
}

#[test]
fn unknown_module_and_path_are_404_code_3() {
    let s = TestServer::start();
    let r = s.post("/gnutls", "{}");
    assert_eq!((r.status, r.code()), (404, 3), "{r:?}");
    assert_eq!(r.json()["module_type"], "gnutls");
    assert!(r.msg().contains("gnutls"), "{}", r.msg());
    let r = s.get("/no/such/thing");
    assert_eq!((r.status, r.code()), (404, 3), "{r:?}");
    assert!(r.msg().contains("/no/such/thing"), "{}", r.msg());
    s.assert_serving("404s");
}

#[test]
fn wrong_method_is_405_with_allow() {
    let s = TestServer::start();
    let r = request(
        s.addr,
        b"DELETE /config HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert_eq!((r.status, r.code()), (405, 1), "{r:?}");
    assert_eq!(r.header("Allow"), Some("GET, POST"));
    let r = request(s.addr, b"PUT /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!((r.status, r.header("Allow")), (405, Some("GET")), "{r:?}");
    let r = request(s.addr, b"GET /tls HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!((r.status, r.header("Allow")), (405, Some("POST")), "{r:?}");
    s.assert_serving("wrong methods");
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let s = TestServer::start();
    let mut c = connect(s.addr);
    // Two requests in one write (pipelined), then a third.
    c.write_all(b"GET /status HTTP/1.1\r\nHost: localhost\r\n\r\nGET /config HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let a = read_response(&mut c).unwrap();
    let b = read_response(&mut c).unwrap();
    assert_eq!((a.status, b.status), (200, 200));
    assert!(a.json()["data"]["counters"].is_object(), "{a:?}");
    assert_eq!(b.json()["data"]["truncate_size"], 1 << 20, "{b:?}");
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut c).unwrap().status, 200);
}

#[test]
fn a_thousand_idle_connections_then_a_request_is_served() {
    let s = TestServer::start();
    let idle: Vec<TcpStream> = (0..1000).map(|_| connect(s.addr)).collect();
    s.assert_serving("1000 idle connections");
    let m = s.metric("ecapture_connections_active");
    // The 1000 idle ones and the /metrics request itself.
    assert_eq!(m, 1001.0);
    drop(idle);
    let end = Instant::now() + crate::util::WAIT;
    while s.metric("ecapture_connections_active") != 1.0 {
        assert!(Instant::now() < end, "closed connections are forgotten");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn connections_over_the_limit_get_503_code_6() {
    let mut cfg = config();
    cfg.limits.max_connections = 5;
    let s = TestServer::with(cfg);
    let idle: Vec<TcpStream> = (0..5).map(|_| connect(s.addr)).collect();
    let r = s.get("/status");
    assert_eq!((r.status, r.code()), (503, 6), "{r:?}");
    assert!(r.msg().contains("limit 5"), "{}", r.msg());
    drop(idle);
    let end = Instant::now() + crate::util::WAIT;
    loop {
        let r = s.get("/status");
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < end,
            "still refused after the idle ones left: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let mut cfg = config();
    cfg.limits.idle_timeout = Duration::from_secs(1);
    let s = TestServer::with(cfg);
    let mut c = connect(s.addr);
    c.write_all(b"GET /status HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut c).unwrap().status, 200);
    let t0 = Instant::now();
    assert!(
        closed_within(&mut c, Duration::from_secs(8)),
        "never closed"
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(800),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn rate_limited_requests_get_429_with_retry_after() {
    let mut cfg = config();
    cfg.limits.requests_per_sec = 5;
    let s = TestServer::with(cfg);
    let mut c = connect(s.addr);
    let mut statuses = Vec::new();
    let mut limited = None;
    let t0 = Instant::now();
    for _ in 0..30 {
        c.write_all(b"GET /status HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let r = read_response(&mut c).unwrap();
        statuses.push(r.status);
        if r.status == 429 && limited.is_none() {
            limited = Some(r);
        }
    }
    // A burst of twice the rate, then 5 per second.
    let allowed = 10 + (5.0 * t0.elapsed().as_secs_f64()).ceil() as usize;
    assert!(statuses[..10].iter().all(|&s| s == 200), "{statuses:?}");
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    assert!(
        ok <= allowed,
        "{ok} served, at most {allowed}: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 429),
        "{statuses:?}"
    );
    let r = limited.unwrap();
    assert_eq!(r.code(), 6, "{r:?}");
    assert_eq!(r.header("Retry-After"), Some("1"));
    assert!(r.msg().contains("5 requests per second"), "{}", r.msg());
    std::thread::sleep(Duration::from_millis(1100));
    c.write_all(b"GET /status HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_response(&mut c).unwrap().status,
        200,
        "served again after Retry-After"
    );
}
