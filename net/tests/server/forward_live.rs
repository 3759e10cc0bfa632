//! `POST /config` with `event_forward` enables, changes and disables
//! forwarding while serving; a bad object is refused with the field named.

use crate::util::{TestEvent, TestServer};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

/// A collector thread: answers 200 to every request and reports its
/// `Content-Type` and body.
fn collector() -> (u16, mpsc::Receiver<(String, Vec<u8>)>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(s) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || serve(s, tx));
        }
    });
    (port, rx)
}

fn serve(mut s: TcpStream, tx: mpsc::Sender<(String, Vec<u8>)>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let field = |name: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            };
            let len: usize = field("content-length:").map_or(0, |v| v.parse().unwrap());
            if buf.len() < end + 4 + len {
                break;
            }
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            let _ = tx.send((field("content-type:").unwrap_or_default(), body));
            if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .is_err()
            {
                return;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn event_forward_is_enabled_changed_and_disabled_live() {
    let mut srv = TestServer::start();
    let (port, rx) = collector();
    assert_eq!(
        srv.get("/config").json()["data"]["event_forward"]["enabled"],
        false
    );

    let on = format!(
        r#"{{"event_forward": {{"enabled": true, "url": "http://127.0.0.1:{port}/c?x=1", "format": "json", "batch_size": 3, "batch_timeout_ms": 100}}}}"#
    );
    let r = srv.post("/config", &on);
    assert_eq!((r.status, r.code()), (200, 0), "{}", r.text());
    let fwd = &srv.get("/config").json()["data"]["event_forward"];
    assert_eq!(fwd["enabled"], true);
    assert_eq!(fwd["url"], format!("http://127.0.0.1:{port}/c?x=1"));
    assert_eq!(
        (fwd["format"].as_str(), fwd["batch_size"].as_u64()),
        (Some("json"), Some(3))
    );

    srv.publish(&[TestEvent::tls(1), TestEvent::tls(2), TestEvent::tls(3)]);
    let (ctype, body) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a batch reaches the collector");
    assert_eq!(ctype, "application/x-ndjson");
    let lines: Vec<serde_json::Value> = body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines
            .iter()
            .map(|l| l["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let st = srv.wait_counters("forward.sent_events == 3", |c| {
        c["forward"]["sent_events"] == 3
    });
    assert_eq!(st["forward"]["sent_batches"], 1);

    // Change: protobuf now.
    let r = srv.post("/config", r#"{"event_forward": {"format": "protobuf"}}"#);
    assert_eq!((r.status, r.code()), (200, 0), "{}", r.text());
    srv.publish(&[TestEvent::tls(4), TestEvent::tls(5), TestEvent::tls(6)]);
    let (ctype, _) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a protobuf batch");
    assert_eq!(ctype, "application/x-protobuf");

    // A bad object changes nothing and names the field.
    let r = srv.post("/config", r#"{"event_forward": {"batch_size": "many"}}"#);
    assert_eq!((r.status, r.code()), (400, 4));
    assert!(r.msg().contains("event_forward.batch_size"), "{}", r.msg());
    assert_eq!(
        srv.get("/config").json()["data"]["event_forward"]["format"],
        "protobuf"
    );

    // Off: nothing more is sent.
    let r = srv.post("/config", r#"{"event_forward": {"enabled": false}}"#);
    assert_eq!((r.status, r.code()), (200, 0));
    assert_eq!(
        srv.get("/config").json()["data"]["event_forward"]["enabled"],
        false
    );
    assert!(srv.get("/status").json()["data"]["counters"]["forward"].is_null());
    srv.publish(&[TestEvent::tls(7), TestEvent::tls(8), TestEvent::tls(9)]);
    assert!(
        rx.recv_timeout(Duration::from_millis(800)).is_err(),
        "forwarding is off"
    );
    srv.assert_serving("event_forward changes");
}
