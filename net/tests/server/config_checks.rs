//! `POST /config` refuses what would break or inject into forwarded
//! requests (URLs with CR LF, spaces, bad hosts, over-long URLs, too many
//! or too large headers), and quotes the real range of integer fields.

use crate::util::TestServer;
use serde_json::json;

fn refused(s: &TestServer, body: &serde_json::Value, code: i64, wants: &[&str]) {
    let r = s.post("/config", &body.to_string());
    let text = r.text();
    assert_eq!((r.status, r.code()), (400, code), "{body}: {text}");
    for w in wants {
        assert!(r.msg().contains(w), "{w:?} not in {:?}", r.msg());
    }
    s.assert_serving(&text);
}

#[test]
fn forward_urls_and_headers_that_could_inject_are_refused() {
    let s = TestServer::start();
    let url = |u: &str| json!({"event_forward": {"enabled": true, "url": u}});
    for (u, want) in [
        ("http://127.0.0.1:9/x\r\nX-Injected: 1", "0x0d"),
        ("http://127.0.0.1\r\nX-Injected: 1/", "0x0d"),
        ("http://127.0.0.1:9/a b", "0x20"),
        ("http://127.0.0.1:9/\u{7f}", "0x7f"),
        ("http://ex ample/", "0x20"),
        ("http://a;b/", "is not a host name"),
        ("http://[::1/", "unclosed ["),
        ("http://c:+80/", "is not a number"),
    ] {
        refused(&s, &url(u), 5, &["event_forward.url", want]);
    }
    let long = format!("http://127.0.0.1:9/{}", "a".repeat(900_000));
    refused(
        &s,
        &url(&long),
        5,
        &["event_forward.url", "over the 8192-byte limit"],
    );
    let many: serde_json::Map<String, serde_json::Value> = (0..10_000)
        .map(|i| (format!("X-H{i}"), json!("v")))
        .collect();
    refused(
        &s,
        &json!({"event_forward": {"url": "http://127.0.0.1:9/", "headers": many}}),
        5,
        &["event_forward.headers", "10000 headers", "limit of 64"],
    );
    refused(
        &s,
        &json!({"event_forward": {"url": "http://127.0.0.1:9/", "headers": {"X-Big": "v".repeat(9000)}}}),
        5,
        &["event_forward.headers", "8192-byte limit"],
    );
    refused(
        &s,
        &json!({"event_forward": {"url": "http://127.0.0.1:9/", "headers": {"X-A": "a\u{1}b"}}}),
        5,
        &["control character"],
    );
    // Nothing took effect.
    let cfg = s.get("/config").json();
    assert_eq!(cfg["data"]["event_forward"]["enabled"], false, "{cfg}");
    assert_eq!(
        s.status()["forward"],
        serde_json::Value::Null,
        "no forwarder ever ran"
    );
}

#[test]
fn integer_fields_quote_their_range_and_floats_are_code_4() {
    let s = TestServer::start();
    refused(
        &s,
        &json!({"pid": -1}),
        5,
        &["pid: -1 is out of range 0..=4294967295"],
    );
    refused(
        &s,
        &json!({"uid": 4294967296u64}),
        5,
        &["uid: 4294967296 is out of range 0..=4294967295"],
    );
    refused(
        &s,
        &json!({"btf_mode": -1}),
        5,
        &["btf_mode: -1 is out of range 0..=2"],
    );
    refused(
        &s,
        &json!({"pid": 1.5}),
        4,
        &["pid must be an integer, got 1.5"],
    );
    refused(&s, &json!({"uid": 1000.0}), 4, &["uid must be an integer"]);
    let fwd = |k: &str, v: serde_json::Value| json!({"event_forward": {"url": "http://127.0.0.1:9/", k: v}});
    refused(
        &s,
        &fwd("batch_size", json!(-1)),
        5,
        &["event_forward.batch_size: -1 is out of range 1..=100000"],
    );
    refused(
        &s,
        &fwd("batch_size", json!(2.5)),
        4,
        &["event_forward.batch_size must be an integer"],
    );
    refused(
        &s,
        &fwd("concurrency", json!(1e2)),
        4,
        &["event_forward.concurrency must be an integer"],
    );
    assert!(
        s.control.applied.lock().unwrap().is_empty(),
        "nothing applied"
    );
}
