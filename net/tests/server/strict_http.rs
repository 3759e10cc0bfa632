//! RFC 9112 strictness of the API's HTTP side: framing that could smuggle a
//! request is refused, `Expect: 100-continue`, half-closed clients,
//! HTTP/1.0, HEAD and absolute-form targets; responses reach clients that
//! send everything before reading (lingering close), slowloris gets 408.

use crate::util::{
    TestServer, closed_within, config, connect, read_response, request, series_value,
};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

/// `ecapture_http_responses_total{code="CODE"}`.
fn responses(s: &TestServer, code: u16) -> f64 {
    let text = s.get("/metrics").text();
    series_value(
        &text,
        &format!("ecapture_http_responses_total{{code=\"{code}\"}}"),
    )
    .unwrap_or(0.0)
}

/// Sets a socket buffer size (`SO_SNDBUF`, `SO_RCVBUF`) of `s`.
pub fn set_buffer(s: &std::net::TcpStream, which: libc::c_int, bytes: usize) {
    use std::os::fd::AsRawFd;
    let n = bytes as libc::c_int;
    // SAFETY: setsockopt on an open socket with a c_int of the right size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            which,
            (&n as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt {which}");
}

/// Writes `raw` whole before reading anything, then reads one response.
/// A small send buffer: the bytes are still arriving when the server has
/// answered (as from a client on a real network).
fn send_all_then_read(s: &TestServer, raw: &[u8]) -> crate::util::Response {
    let mut c = connect(s.addr);
    set_buffer(&c, libc::SO_SNDBUF, 8 * 1024);
    for (i, part) in raw.chunks(16 * 1024).enumerate() {
        if i == 1 {
            // The rest arrives after the server has seen the start.
            std::thread::sleep(Duration::from_millis(50));
        }
        c.write_all(part)
            .unwrap_or_else(|e| panic!("writing {} bytes before reading: {e}", raw.len()));
    }
    read_response(&mut c).unwrap_or_else(|e| panic!("no response after the whole request: {e}"))
}

#[test]
fn a_client_that_sends_a_2_mib_body_before_reading_gets_the_413() {
    let s = TestServer::start();
    let mut raw = b"POST /config HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2097152\r\n\r\n".to_vec();
    raw.resize(raw.len() + 2 * 1024 * 1024, b' ');
    let r = send_all_then_read(&s, &raw);
    assert_eq!((r.status, r.code()), (413, 1), "{r:?}");
    assert_eq!(r.header("Connection"), Some("close"));
    s.assert_serving("a 2 MiB body sent whole");
    assert_eq!(responses(&s, 413), 1.0);
    assert!(s.control.applied.lock().unwrap().is_empty());
}

#[test]
fn python_urllib_posting_2_mib_reads_the_413() {
    let s = TestServer::start();
    let script = format!(
        "import urllib.request, urllib.error\n\
         req = urllib.request.Request('http://{}/config', data=b' ' * (2 << 20), headers={{'Content-Type': 'application/json'}})\n\
         try:\n    urllib.request.urlopen(req, timeout=10); print('no error')\n\
         except urllib.error.HTTPError as e:\n    print(e.code)\n",
        s.addr
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(stdout.trim(), "413", "python urllib: {stdout} {stderr}");
    s.assert_serving("urllib's 2 MiB POST");
}

#[test]
fn a_client_that_sends_64_kib_of_headers_before_reading_gets_the_431() {
    let s = TestServer::start();
    let raw = format!(
        "GET /status HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let r = send_all_then_read(&s, raw.as_bytes());
    assert_eq!((r.status, r.code()), (431, 1), "{r:?}");
    s.assert_serving("64 KiB of headers sent whole");
    assert_eq!(responses(&s, 431), 1.0);
}

#[test]
fn slowloris_gets_408_before_the_close() {
    let mut cfg = config();
    cfg.limits.request_timeout = Duration::from_secs(1);
    let s = TestServer::with(cfg);
    let mut c = connect(s.addr);
    let t0 = Instant::now();
    c.write_all(b"GET /status HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    c.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = Vec::new();
    // Trickle a header byte every 100 ms until the server answers.
    while !got.windows(4).any(|w| w == b"\r\n\r\n") && t0.elapsed() < Duration::from_secs(8) {
        let _ = c.write_all(b"X");
        let mut b = [0u8; 1024];
        match c.read(&mut b) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&b[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read failed after {:?}: {e}; got {got:?}", t0.elapsed()),
        }
    }
    let head = String::from_utf8_lossy(&got);
    assert!(
        head.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{head:?}"
    );
    assert!(t0.elapsed() >= Duration::from_millis(900));
    assert!(
        closed_within(&mut c, Duration::from_secs(8)),
        "closed after the 408"
    );
    s.assert_serving("a slowloris client");
    assert_eq!(responses(&s, 408), 1.0);
}

#[test]
fn content_length_that_could_smuggle_a_request_is_400() {
    let s = TestServer::start();
    for raw in [
        "POST /config HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: +9\r\n\r\n{\"pid\":1}",
        "POST /config HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 9\r\nContent-Length: 2\r\n\r\n{\"pid\":1}",
        "POST /config HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2, 9\r\n\r\n{\"pid\":1}",
        "POST /config HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n{\"pid\":1}",
        "POST /config HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: identity\r\n\r\n",
    ] {
        let r = request(s.addr, raw.as_bytes());
        assert_eq!((r.status, r.code()), (400, 1), "{raw:?}: {r:?}");
        assert_eq!(r.header("Connection"), Some("close"), "{raw:?}");
        s.assert_serving(raw);
    }
    assert!(
        s.control.applied.lock().unwrap().is_empty(),
        "nothing applied"
    );
    assert_eq!(responses(&s, 400), 5.0);
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let s = TestServer::start();
    let body = r#"{"pid": 77}"#;
    let mut c = connect(s.addr);
    write!(
        c,
        "POST /config HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut interim = [0u8; 25];
    c.read_exact(&mut interim)
        .expect("100 Continue before the body is sent");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write_all(body.as_bytes()).unwrap();
    let r = read_response(&mut c).unwrap();
    assert_eq!((r.status, r.code()), (200, 0), "{r:?}");
    assert_eq!(
        s.control.applied.lock().unwrap().last().and_then(|l| l.pid),
        Some(77)
    );
    // Any other expectation is 417.
    let r = request(
        s.addr,
        b"POST /config HTTP/1.1\r\nHost: localhost\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\n{}",
    );
    assert_eq!(r.status, 417, "{r:?}");
    s.assert_serving("Expect");
}

#[test]
fn a_half_closed_client_still_gets_its_response() {
    let s = TestServer::start();
    let mut c = connect(s.addr);
    c.write_all(b"GET /status HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let r = read_response(&mut c).expect("the response after shutdown(SHUT_WR)");
    assert_eq!((r.status, r.code()), (200, 0), "{r:?}");
    assert!(closed_within(&mut c, Duration::from_secs(5)));
    s.assert_serving("a half-closed client");
}

#[test]
fn http_1_0_closes_unless_keep_alive_is_asked() {
    let s = TestServer::start();
    let mut c = connect(s.addr);
    c.write_all(b"GET /status HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let r = read_response(&mut c).unwrap();
    assert_eq!(
        (r.status, r.code(), r.header("Connection")),
        (200, 0, Some("close"))
    );
    assert!(
        closed_within(&mut c, Duration::from_secs(5)),
        "closed after an HTTP/1.0 response"
    );
    let mut c = connect(s.addr);
    for _ in 0..2 {
        c.write_all(b"GET /config HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let r = read_response(&mut c).unwrap();
        assert_eq!(
            (r.status, r.header("Connection")),
            (200, Some("keep-alive"))
        );
    }
    // WebSocket needs HTTP/1.1.
    let r = request(
        s.addr,
        b"GET /ws HTTP/1.0\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(r.status, 400, "{r:?}");
    s.assert_serving("HTTP/1.0");
}

#[test]
fn head_has_the_get_headers_and_no_body() {
    let s = TestServer::start();
    let get = s.get("/config");
    let mut c = connect(s.addr);
    c.write_all(b"HEAD /config HTTP/1.1\r\nHost: localhost\r\n\r\nGET /config HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    // The HEAD response's head only: read_response would wait for its body.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("Content-Length: {}\r\n", get.body.len())),
        "HEAD carries the GET's length {}: {head}",
        get.body.len()
    );
    // What follows is the next response, not a body.
    let r = read_response(&mut c).unwrap();
    assert_eq!((r.status, r.body.len()), (200, get.body.len()));
    s.assert_serving("HEAD");
}

#[test]
fn absolute_form_targets_are_served() {
    let s = TestServer::start();
    let raw = format!(
        "GET http://{}/status HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        s.addr, s.addr
    );
    let r = request(s.addr, raw.as_bytes());
    assert_eq!((r.status, r.code()), (200, 0), "{r:?}");
    let r = request(
        s.addr,
        b"GET example.com:80 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.msg().contains("neither /path nor http://host/path"),
        "{}",
        r.msg()
    );
    s.assert_serving("absolute-form");
}
