//! The WebSocket event stream: upgrade and Origin rules, heartbeats, every
//! event field, per-connection `seq`, filters (query string and subscribe
//! frames), `max_rate`, ping/pong, close, and protocol violations.

use crate::util::{
    RawWs, TestEvent, TestServer, WAIT, as_event, assert_no_event, config, masked_frame,
    next_entry, next_event, next_text, ws_connect, ws_ready,
};
use rcapture_core::event::EventKind;
use rcapture_core::worker::EventSink;
use rcapture_proto::{LogType, log_entry::Payload};
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

#[test]
fn upgrade_on_root_and_ws_with_and_without_origin() {
    let s = TestServer::start();
    for path in ["/", "/ws"] {
        for origin in [
            Some("http://localhost/"),
            Some("http://127.0.0.1:3000"),
            None,
        ] {
            let headers: Vec<(&str, &str)> = origin.iter().map(|o| ("Origin", *o)).collect();
            let (mut ws, resp) = ws_connect(s.addr, path, &headers)
                .unwrap_or_else(|e| panic!("{path} with Origin {origin:?}: {e}"));
            assert_eq!(resp.status(), 101);
            assert_eq!(
                resp.headers()
                    .get("X-Rcapture-Protocol")
                    .map(|v| v.to_str().unwrap()),
                Some("1"),
                "{resp:?}"
            );
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            let hb = next_entry(&mut ws);
            assert_eq!(hb.log_type, LogType::Heartbeat as i32);
            assert_eq!(hb.seq, 0, "heartbeats carry no seq");
            let Some(Payload::HeartbeatPayload(h)) = hb.payload else {
                panic!("{hb:?}")
            };
            assert_eq!((h.count, h.message.as_str()), (0, "heartbeat:0"));
            assert!(
                (h.timestamp - now).abs() <= 5,
                "Unix seconds: {} vs {now}",
                h.timestamp
            );
        }
    }
}

#[test]
fn foreign_origin_is_refused_with_403() {
    let s = TestServer::start();
    for origin in [
        "http://evil.example",
        "http://localhost.evil.example/",
        "null",
    ] {
        match ws_connect(s.addr, "/", &[("Origin", origin)]) {
            Err(tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 403, "{origin}");
                let body: serde_json::Value =
                    serde_json::from_slice(resp.body().as_deref().unwrap_or(b"")).unwrap();
                assert_eq!(body["code"], 1);
                assert!(body["msg"].as_str().unwrap().contains(origin), "{body}");
            }
            Ok(_) => panic!("Origin {origin} was accepted"),
            Err(e) => panic!("Origin {origin}: unexpected {e}"),
        }
    }
    s.assert_serving("refused origins");
}

#[test]
fn periodic_heartbeats_count_up() {
    let mut cfg = config();
    cfg.heartbeat = Duration::from_secs(1);
    let s = TestServer::with(cfg);
    let mut ws = ws_ready(s.addr, "/");
    let t0 = Instant::now();
    let hb = next_entry(&mut ws);
    let Some(Payload::HeartbeatPayload(h)) = hb.payload else {
        panic!("{hb:?}")
    };
    assert_eq!((h.count, h.message.as_str()), (1, "heartbeat:1"));
    assert!(
        t0.elapsed() >= Duration::from_millis(700),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn events_decode_with_every_field_and_seq_per_connection() {
    let mut s = TestServer::start();
    let mut a = ws_ready(s.addr, "/");
    let evs: Vec<TestEvent> = (0..3).map(TestEvent::tls).collect();
    s.publish(&evs[..2]);
    for (i, e) in evs[..2].iter().enumerate() {
        let (seq, got) = next_event(&mut a);
        assert_eq!(seq, i as u64 + 1);
        assert_eq!(got, e.expected());
    }
    // A second client starts at seq 1; the first continues.
    let mut b = ws_ready(s.addr, "/ws");
    // A large payload (multi-byte length varints, 64-bit frame length path).
    let big = TestEvent::tls(99).with_payload((0..70_000u32).map(|i| (i % 251) as u8).collect());
    s.publish(&[evs[2].clone(), big.clone()]);
    assert_eq!(next_event(&mut a), (3, evs[2].expected()));
    assert_eq!(next_event(&mut a), (4, big.expected()));
    assert_eq!(next_event(&mut b), (1, evs[2].expected()));
    assert_eq!(next_event(&mut b), (2, big.expected()));
    // Both workers' publishers feed the same stream.
    let other = TestEvent::tls(7).with_pid(77);
    s.publishers[1].event(&other.fields(), other.kind);
    s.publishers[1].flush();
    assert_eq!(next_event(&mut b), (3, other.expected()));
    // a: 5 entries (it also got the last one), b: 3.
    let c = s.wait_counters("ws_sent 8", |c| c["ws_sent"] == 8);
    assert_eq!(
        (c["ws_clients"].as_u64(), c["ws_dropped"].as_u64()),
        (Some(2), Some(0))
    );
}

#[test]
fn query_string_filter_selects_events() {
    let mut s = TestServer::start();
    let mut ws = ws_ready(s.addr, "/?modules=bash&pids=7,8&types=bash");
    let mut all = ws_ready(s.addr, "/");
    let evs = [
        TestEvent::tls(1).with_pid(7),
        TestEvent::tls(2)
            .with_pid(7)
            .with_module("bash", EventKind::Bash),
        TestEvent::tls(3)
            .with_pid(9)
            .with_module("bash", EventKind::Bash),
        TestEvent::tls(4)
            .with_pid(8)
            .with_module("bash", EventKind::Bash),
    ];
    s.publish(&evs);
    assert_eq!(next_event(&mut ws), (1, evs[1].expected()));
    assert_eq!(next_event(&mut ws), (2, evs[3].expected()));
    for (i, e) in evs.iter().enumerate() {
        assert_eq!(next_event(&mut all), (i as u64 + 1, e.expected()));
    }
    assert_no_event(&mut ws, Duration::from_millis(300));
}

#[test]
fn bad_query_filter_refuses_the_upgrade() {
    let s = TestServer::start();
    match ws_connect(s.addr, "/?modules=ssh", &[]) {
        Err(tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 400);
            let body: serde_json::Value =
                serde_json::from_slice(resp.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["code"], 5);
            assert!(body["msg"].as_str().unwrap().contains("\"ssh\""), "{body}");
        }
        other => panic!("expected 400, got {:?}", other.map(|x| x.1)),
    }
}

#[test]
fn subscribe_replies_with_the_filter_and_bad_filters_change_nothing() {
    let mut s = TestServer::start();
    let mut ws = ws_ready(s.addr, "/");
    ws.send(Message::text(
        r#"{"op":"subscribe","filter":{"pids":[42],"types":["data"]}}"#,
    ))
    .unwrap();
    assert_eq!(
        next_text(&mut ws),
        json!({"op":"subscribed","filter":{"modules":[],"pids":[42],"uids":[],"types":["data"],"max_rate":0}})
    );
    for bad in [
        r#"{"op":"subscribe","filter":{"pids":"42"}}"#,
        r#"{"op":"subscribe","filter":{"modules":["ssh"]}}"#,
        r#"{"op":"unsubscribe"}"#,
        "not json",
    ] {
        ws.send(Message::text(bad)).unwrap();
        let r = next_text(&mut ws);
        assert_eq!(r["op"], "error", "{bad}: {r}");
        assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
    }
    ws.send(Message::text(
        r#"{"op":"subscribe","filter":{"pids":"42"}}"#,
    ))
    .unwrap();
    assert_eq!(
        next_text(&mut ws),
        json!({"op":"error","message":"pids must be an array, got a string"})
    );
    // The filter in force is still pid 42.
    let evs = [
        TestEvent::tls(1).with_pid(43),
        TestEvent::tls(2).with_pid(42),
        TestEvent::tls(3)
            .with_pid(42)
            .with_module("tls", EventKind::MasterKey),
    ];
    s.publish(&evs);
    assert_eq!(next_event(&mut ws), (1, evs[1].expected()));
    assert_no_event(&mut ws, Duration::from_millis(300));
    // An empty filter means everything again.
    ws.send(Message::text(r#"{"op":"subscribe"}"#)).unwrap();
    assert_eq!(next_text(&mut ws)["op"], "subscribed");
    s.publish(&evs[..1]);
    assert_eq!(next_event(&mut ws), (2, evs[0].expected()));
}

#[test]
fn max_rate_drops_are_counted_and_seen_as_seq_gaps() {
    let mut s = TestServer::start();
    let mut ws = ws_ready(s.addr, "/?max_rate=5");
    let evs: Vec<TestEvent> = (0..20).map(TestEvent::tls).collect();
    s.publish(&evs);
    for i in 0..5 {
        assert_eq!(next_event(&mut ws), (i + 1, evs[i as usize].expected()));
    }
    assert_no_event(&mut ws, Duration::from_millis(200));
    let c = s.counters();
    assert_eq!(
        (c["ws_dropped"].as_u64(), c["ws_sent"].as_u64()),
        (Some(15), Some(5)),
        "{c}"
    );
    assert_eq!(
        c["ws_dropped_by_reason"],
        json!({"queue_full": 0, "share": 0, "max_rate": 15, "closed": 0, "deflate": 0}),
        "{c}"
    );
    let m = s.get("/metrics").text();
    assert_eq!(
        crate::util::series_value(
            &m,
            "ecapture_websocket_dropped_events_total{reason=\"max_rate\"}"
        ),
        Some(15.0),
        "{m}"
    );
    assert!(
        m.lines().any(|l| l
            .starts_with("ecapture_websocket_client_dropped_events{client=\"127.0.0.1:")
            && l.ends_with(",reason=\"max_rate\"} 15")),
        "{m}"
    );
    // The next second's budget: the gap shows in seq.
    std::thread::sleep(Duration::from_millis(1100));
    s.publish(&evs[..1]);
    assert_eq!(next_event(&mut ws), (21, evs[0].expected()));
}

#[test]
fn ping_gets_pong_and_close_gets_close() {
    let s = TestServer::start();
    let mut ws = ws_ready(s.addr, "/");
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .unwrap();
    loop {
        match ws.read().unwrap() {
            Message::Pong(p) => {
                assert_eq!(&p[..], b"are you there");
                break;
            }
            Message::Binary(_) => {}
            other => panic!("{other:?}"),
        }
    }
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .unwrap();
    let echoed = loop {
        match ws.read() {
            Ok(Message::Close(f)) => break f,
            Ok(_) => {}
            Err(e) => panic!("no close reply: {e}"),
        }
    };
    assert_eq!(echoed.map(|f| f.code), Some(CloseCode::Normal));
    // Then the server closes the TCP connection.
    match ws.read() {
        Err(tungstenite::Error::ConnectionClosed) => {}
        other => panic!("expected the connection closed, got {other:?}"),
    }
    s.wait_counters("no clients", |c| c["ws_clients"] == 0);
}

#[test]
fn unmasked_client_frame_is_closed_with_1002() {
    let s = TestServer::start();
    let mut raw = RawWs::connect(s.addr, "/");
    assert!(raw.head.contains("X-Rcapture-Protocol: 1"), "{}", raw.head);
    // A text frame without the mask bit.
    raw.sock.write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
    let ((code, _), entries) = raw.read_until_close().unwrap();
    assert_eq!(code, 1002);
    assert_eq!(entries.len(), 1, "only the first heartbeat came before");
    assert!(crate::util::closed_within(&mut raw.sock, WAIT));
    s.assert_serving("an unmasked frame");
}

#[test]
fn oversized_client_frame_is_closed_with_1009() {
    let s = TestServer::start();
    let mut raw = RawWs::connect(s.addr, "/");
    // Header of a 1 MiB text frame (limit 64 KiB); the payload never needs to arrive.
    let mut f = vec![0x81, 0x80 | 127];
    f.extend_from_slice(&(1u64 << 20).to_be_bytes());
    f.extend_from_slice(&[1, 2, 3, 4]);
    raw.sock.write_all(&f).unwrap();
    let ((code, reason), _) = raw.read_until_close().unwrap();
    assert_eq!(code, 1009);
    assert!(reason.contains("1048576"), "{reason}");
    s.assert_serving("an oversized frame");
    // Fragments adding up past the limit are refused too.
    let mut raw = RawWs::connect(s.addr, "/");
    let part = vec![b'a'; 40 * 1024];
    raw.sock
        .write_all(&masked_frame(0x1, false, &part))
        .unwrap();
    raw.sock
        .write_all(&masked_frame(0x0, false, &part))
        .unwrap();
    let ((code, _), _) = raw.read_until_close().unwrap();
    assert_eq!(code, 1009);
    s.assert_serving("oversized fragments");
}

#[test]
fn truncated_frame_then_disconnect_is_forgotten() {
    let mut s = TestServer::start();
    let mut raw = RawWs::connect(s.addr, "/");
    let f = masked_frame(0x1, true, br#"{"op":"subscribe","filter":{}}"#);
    raw.sock.write_all(&f[..f.len() / 2]).unwrap();
    s.wait_counters("one client", |c| c["ws_clients"] == 1);
    drop(raw);
    s.wait_counters("no clients", |c| c["ws_clients"] == 0);
    s.assert_serving("a truncated frame");
    // Events still flow to a new client.
    let mut ws = ws_ready(s.addr, "/");
    let e = TestEvent::tls(5);
    s.publish(std::slice::from_ref(&e));
    assert_eq!(next_event(&mut ws), (1, e.expected()));
}

#[test]
fn text_subscribe_sent_with_the_upgrade_is_answered() {
    // Frames right behind the upgrade request, in the same segment.
    let s = TestServer::start();
    let mut sock = crate::util::connect(s.addr);
    let mut req = format!(
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        crate::util::HANDSHAKE_KEY
    )
    .into_bytes();
    req.extend_from_slice(&masked_frame(
        0x1,
        true,
        br#"{"op":"subscribe","filter":{"uids":[0]}}"#,
    ));
    sock.write_all(&req).unwrap();
    let mut raw = RawWs::on_upgraded(sock);
    let mut got = None;
    for _ in 0..3 {
        let (_, op, p) = raw.read_frame().unwrap();
        if op == 0x1 {
            got = Some(serde_json::from_slice::<serde_json::Value>(&p).unwrap());
            break;
        }
        let e: rcapture_proto::LogEntry = prost::Message::decode(&p[..]).unwrap();
        assert!(as_event(&e).is_none());
    }
    assert_eq!(got.unwrap()["filter"]["uids"], json!([0]));
}

#[test]
fn ecaptureq_address_serves_only_the_stream() {
    let mut cfg = config();
    cfg.ecaptureq = Some("127.0.0.1:0".parse().unwrap());
    let mut s = TestServer::with(cfg);
    let q = s.ecaptureq.expect("ecaptureq address");
    assert_ne!(q.port(), 0);
    assert_ne!(q, s.addr);
    // Any path upgrades there (eCaptureQ connects to the root).
    let mut ws = ws_ready(q, "/");
    let e = TestEvent::tls(1);
    s.publish(std::slice::from_ref(&e));
    assert_eq!(next_event(&mut ws), (1, e.expected()));
    let r = crate::util::request(q, b"GET /status HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!((r.status, r.code()), (404, 3), "{r:?}");
}
