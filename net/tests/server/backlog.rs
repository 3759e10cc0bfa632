//! Memory per connection is bounded: a client that sends pings or
//! pipelined requests and never reads the replies is closed (1008 / 429)
//! once `reply_backlog_bytes` of them wait, and counted.

use crate::util::{RawWs, TestServer, config, connect, masked_frame, read_response, series_value};
use std::io::Write;
use std::net::TcpStream;

const BACKLOG: usize = 64 * 1024;

/// A small receive buffer, so that the server's replies wait on its side.
fn small_rcvbuf(s: &TcpStream) {
    crate::strict_http::set_buffer(s, libc::SO_RCVBUF, 16 * 1024);
}

fn backlog_closed(s: &TestServer, protocol: &str) -> f64 {
    let text = s.get("/metrics").text();
    series_value(
        &text,
        &format!("ecapture_reply_backlog_closed_connections_total{{protocol=\"{protocol}\"}}"),
    )
    .unwrap_or_else(|| panic!("no {protocol} series in\n{text}"))
}

fn server() -> TestServer {
    let mut cfg = config();
    cfg.limits.reply_backlog_bytes = BACKLOG;
    cfg.limits.requests_per_sec = 1_000_000;
    TestServer::with(cfg)
}

#[test]
fn a_client_that_sends_pings_and_never_reads_is_closed_1008() {
    let s = server();
    let mut raw = RawWs::connect(s.addr, "/");
    small_rcvbuf(&raw.sock);
    // 16 MiB of 125-byte pings, written before anything is read.
    let one = masked_frame(0x9, true, &[b'p'; 125]);
    let pings = 16 * 1024 * 1024 / one.len();
    let all: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * pings)
        .collect();
    let mut w = raw.sock.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&all).is_ok());
    let mut pongs = 0usize;
    let code = loop {
        let (_, op, p) = raw.read_frame().expect("frames until the close");
        match op {
            0xA => pongs += 1,
            0x8 => break u16::from_be_bytes([p[0], p[1]]),
            _ => {}
        }
    };
    let _ = writer.join();
    assert_eq!(code, 1008);
    // Every pong staged before the close was delivered before it: what
    // the server held for this client stayed near the bound (plus what
    // the sockets' buffers took), far from the 16 MiB it was sent.
    let pong_bytes = pongs * 127;
    eprintln!("{pongs} pongs ({pong_bytes} bytes) for {pings} pings before the 1008");
    assert!(
        pong_bytes < BACKLOG + (4 << 20),
        "{pongs} pongs ({pong_bytes} bytes) for {pings} pings"
    );
    assert!(pongs < pings / 2, "{pongs} pongs for {pings} pings");
    s.wait_counters("the client gone", |c| c["ws_clients"] == 0);
    s.assert_serving("a client that never reads its pongs");
    assert_eq!(backlog_closed(&s, "websocket"), 1.0);
    assert_eq!(backlog_closed(&s, "http"), 0.0);
    assert_eq!(s.metric("ecapture_websocket_closed_clients_total"), 1.0);
}

#[test]
fn a_client_that_pipelines_requests_and_never_reads_gets_429() {
    let s = server();
    let c = connect(s.addr);
    small_rcvbuf(&c);
    let one = b"GET /status HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let n = 4 * 1024 * 1024 / one.len();
    let all: Vec<u8> = one.iter().copied().cycle().take(one.len() * n).collect();
    let mut w = c.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&all).is_ok());
    let mut c = c;
    let (mut ok, mut bytes) = (0usize, 0usize);
    let last = loop {
        let r = read_response(&mut c).expect("responses until the 429");
        bytes += r.body.len();
        if r.status != 200 {
            break r;
        }
        ok += 1;
    };
    let _ = writer.join();
    assert_eq!((last.status, last.code()), (429, 6), "{last:?}");
    assert!(
        last.msg().contains("pipelined") && last.msg().contains(&BACKLOG.to_string()),
        "{}",
        last.msg()
    );
    assert_eq!(last.header("Connection"), Some("close"));
    eprintln!("{ok} of {n} pipelined requests answered ({bytes} bytes) before the 429");
    assert!(ok < n / 2, "{ok} of {n} requests answered");
    assert!(
        bytes < BACKLOG + (4 << 20),
        "{bytes} bytes of responses held"
    );
    s.assert_serving("a client that never reads its responses");
    assert_eq!(backlog_closed(&s, "http"), 1.0);
    let text = s.get("/metrics").text();
    assert_eq!(
        series_value(&text, "ecapture_http_responses_total{code=\"200\"}"),
        // Those it read, the /status and this /metrics.
        Some(ok as f64 + 2.0),
        "{text}"
    );
}
