//! The `--ecaptureq` stream's flavour against the main stream: the same
//! published events, typed and oriented in eCaptureQ's meaning there only,
//! and its sockets closed without a close frame at shutdown.

use crate::util::{RawWs, TestEvent, TestServer, as_event, config, next_event, ws_ready};
use rcapture_core::event::EventKind;
use rcapture_proto::{Event, LogEntry, LogType};
use std::io;

/// A response head, its body and the next request on one connection of
/// curl (10.0.0.1:50002 → 93.184.216.34:443), and a master key: WIRE.md's
/// direction and sender order on `/ws`; eCaptureQ's labels and client →
/// server on `--ecaptureq`.
fn exchange() -> Vec<TestEvent> {
    let recv = |payload: &[u8]| {
        let mut e = TestEvent::tls(2).with_payload(payload.to_vec());
        std::mem::swap(&mut e.event.src_ip, &mut e.event.dst_ip);
        (e.src_port, e.dst_port) = (e.dst_port, e.src_port);
        e
    };
    let mut req = TestEvent::tls(2).with_payload(b"GET /next HTTP/1.1\r\nHost: e\r\n\r\n".to_vec());
    req.r#type = 1; // a send
    let mut key = TestEvent::tls(4).with_module("tls", EventKind::MasterKey);
    key.r#type = 0x0304;
    key.payload = b"CLIENT_RANDOM 0011 2233\n".to_vec();
    vec![
        recv(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
        recv(b"hello"),
        req,
        key,
    ]
}

fn summary(e: &Event) -> (u32, String, String) {
    (
        e.r#type,
        format!("{}:{}", e.src_ip, e.src_port),
        format!("{}:{}", e.dst_ip, e.dst_port),
    )
}

#[test]
fn ecaptureq_stream_types_http_and_orients_client_to_server() {
    let mut cfg = config();
    cfg.ecaptureq = Some("127.0.0.1:0".parse().unwrap());
    let mut s = TestServer::with(cfg);
    let q = s.ecaptureq.expect("ecaptureq address");
    let mut main = ws_ready(s.addr, "/ws");
    let mut root = ws_ready(s.addr, "/");
    let mut eq = ws_ready(q, "/");
    let evs = exchange();
    s.publish(&evs);
    let (c, srv) = ("10.0.0.1:50002", "93.184.216.34:443");
    let s = |t: u32, a: &str, b: &str| (t, a.to_string(), b.to_string());
    let key = s(0x0304, "10.0.0.1:50004", srv);
    let want_main = [s(0, srv, c), s(0, srv, c), s(1, c, srv), key.clone()];
    let want_eq = [s(3, c, srv), s(0, c, srv), s(1, c, srv), key];
    for ws in [&mut main, &mut root] {
        let got: Vec<_> = (0..4).map(|_| summary(&next_event(ws).1)).collect();
        assert_eq!(got, want_main, "the main stream keeps WIRE.md's meaning");
    }
    let got: Vec<_> = (0..4).map(|_| next_event(&mut eq)).collect();
    assert_eq!(
        got.iter().map(|(_, e)| summary(e)).collect::<Vec<_>>(),
        want_eq,
        "eCaptureQ's labels, client -> server"
    );
    for ((seq, e), (i, sent)) in got.iter().zip(evs.iter().enumerate()) {
        assert_eq!(*seq, i as u64 + 1);
        let mut want = sent.expected();
        (
            want.r#type,
            want.src_ip,
            want.src_port,
            want.dst_ip,
            want.dst_port,
        ) = (
            e.r#type,
            e.src_ip.clone(),
            e.src_port,
            e.dst_ip.clone(),
            e.dst_port,
        );
        assert_eq!(e, &want, "every other field as published");
    }
}

#[test]
fn at_shutdown_only_the_ecaptureq_stream_closes_without_a_close_frame() {
    let mut cfg = config();
    cfg.ecaptureq = Some("127.0.0.1:0".parse().unwrap());
    let mut s = TestServer::with(cfg);
    let q = s.ecaptureq.expect("ecaptureq address");
    let mut main = RawWs::connect(s.addr, "/");
    let mut eq = RawWs::connect(q, "/");
    let evs: Vec<_> = (0..50).map(TestEvent::tls).collect();
    s.publish(&evs);
    drop(s); // stops the server
    let ((code, reason), entries) = main.read_until_close().expect("a close frame");
    assert_eq!(code, 1001, "{reason}");
    let events = |entries: &[LogEntry]| entries.iter().filter_map(as_event).count();
    assert_eq!(events(&entries), 50, "every event before the close");
    let mut got = Vec::new();
    let end = loop {
        match eq.read_frame() {
            Ok((_, 0x2, p)) => got.push(prost::Message::decode(&p[..]).unwrap()),
            Ok((_, op, p)) => panic!("frame {op:#x} {p:?} on the eCaptureQ stream"),
            Err(e) => break e,
        }
    };
    assert_eq!(end.kind(), io::ErrorKind::UnexpectedEof, "{end}");
    assert_eq!(events(&got), 50, "every event, then the socket closed");
    let first: &LogEntry = &got[0];
    assert_eq!(first.log_type, LogType::Heartbeat as i32);
}
