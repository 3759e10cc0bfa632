//! RFC 6455 strictness of client frames: invalid close frames, a new
//! message inside a fragmented one, oversized or fragmented control frames
//! are protocol errors (1002); valid close codes are echoed.

use crate::util::{RawWs, TestServer, closed_within, masked_frame};
use std::io::Write;
use std::time::Duration;

/// Sends `frames` on a new WebSocket connection; returns the server's close.
fn close_after(s: &TestServer, frames: &[Vec<u8>]) -> (u16, String) {
    let mut raw = RawWs::connect(s.addr, "/");
    for f in frames {
        raw.sock.write_all(f).unwrap();
    }
    let (close, _) = raw.read_until_close().expect("a close frame");
    assert!(
        closed_within(&mut raw.sock, Duration::from_secs(5)),
        "then the connection closes"
    );
    close
}

fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    masked_frame(0x8, true, &p)
}

/// The WebSocket clients that went, by `/metrics`.
fn closed_clients(s: &TestServer) -> f64 {
    s.metric("ecapture_websocket_closed_clients_total")
}

#[test]
fn invalid_close_frames_are_answered_1002() {
    let s = TestServer::start();
    let mut n = 0.0;
    let mut cases: Vec<(String, Vec<u8>)> =
        [999u16, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]
            .into_iter()
            .map(|c| (format!("code {c}"), close_frame(c, b"")))
            .collect();
    cases.push(("1-byte payload".into(), masked_frame(0x8, true, &[0x03])));
    cases.push(("non-UTF-8 reason".into(), close_frame(1000, b"\xff\xfe")));
    for (what, frame) in cases {
        let (code, reason) = close_after(&s, &[frame]);
        assert_eq!(code, 1002, "{what}: {reason}");
        n += 1.0;
        s.assert_serving(&what);
        assert_eq!(
            s.wait_counters("the client gone", |c| c["ws_clients"] == 0)["ws_clients"],
            0
        );
        assert_eq!(closed_clients(&s), n, "{what}");
    }
    // Valid codes are echoed.
    for ok in [1000u16, 1001, 1003, 1007, 1011, 3000, 4999] {
        let (code, _) = close_after(&s, &[close_frame(ok, "bye".as_bytes())]);
        assert_eq!(code, ok);
    }
    s.assert_serving("valid close codes");
}

#[test]
fn a_new_message_inside_a_fragmented_one_is_1002() {
    let s = TestServer::start();
    for op in [0x1, 0x2] {
        let (code, reason) = close_after(
            &s,
            &[
                masked_frame(0x1, false, br#"{"op": "subscr"#),
                masked_frame(op, true, br#"{"op": "subscribe", "modules": ["bash"]}"#),
            ],
        );
        assert_eq!(code, 1002, "{reason}");
        assert!(reason.contains("inside a fragmented"), "{reason}");
        s.assert_serving("a message inside a fragmented one");
    }
    // Control frames may come between fragments: a ping is answered and
    // the message completes.
    let mut raw = RawWs::connect(s.addr, "/");
    raw.sock
        .write_all(&masked_frame(0x1, false, br#"{"op": "subscribe", "#))
        .unwrap();
    raw.sock.write_all(&masked_frame(0x9, true, b"p")).unwrap();
    raw.sock
        .write_all(&masked_frame(0x0, true, br#""modules": ["bash"]}"#))
        .unwrap();
    let mut seen = (false, false);
    while !(seen.0 && seen.1) {
        let (_, op, p) = raw.read_frame().unwrap();
        match op {
            0xA => seen.0 = p == b"p",
            0x1 => {
                assert!(String::from_utf8_lossy(&p).contains("subscribed"), "{p:?}");
                seen.1 = true;
            }
            _ => {}
        }
    }
    s.assert_serving("fragments around a ping");
}

#[test]
fn oversized_or_fragmented_control_frames_are_1002() {
    let s = TestServer::start();
    for (what, f) in [
        ("126-byte ping", masked_frame(0x9, true, &[b'x'; 126])),
        ("fragmented ping", masked_frame(0x9, false, b"x")),
        ("126-byte close", masked_frame(0x8, true, &[b'x'; 126])),
    ] {
        let (code, _) = close_after(&s, &[f]);
        assert_eq!(code, 1002, "{what}");
        s.assert_serving(what);
    }
    assert_eq!(closed_clients(&s), 3.0);
}
