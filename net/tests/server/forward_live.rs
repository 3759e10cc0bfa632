//! `POST /config` with `event_forward` enables, changes and disables
//! forwarding while serving; a bad object is refused with the field named.

use crate::util::{TestEvent, TestServer, config, metric_value, series_value};
use prost::Message;
use rcapture_net::eventfile::{EventFileConfig, EventFileFormat};
use rcapture_net::forward::{CollectorUrl, ForwardConfig, ForwardFormat};
use rcapture_proto::LogBatch;
use rcapture_testsupport::promtool;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A collector thread: answers 200 to every request and reports its
/// `Content-Type` and body.
pub fn collector() -> (u16, mpsc::Receiver<(String, Vec<u8>)>) {
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
    // The collector hands the batch over before it answers: the forwarder
    // counts it once it has read the answer.
    srv.wait_counters("forward.sent_events == 6", |c| {
        c["forward"]["sent_events"] == 6
    });

    // A bad object changes nothing and names the field.
    let r = srv.post("/config", r#"{"event_forward": {"batch_size": "many"}}"#);
    assert_eq!((r.status, r.code()), (400, 4));
    assert!(r.msg().contains("event_forward.batch_size"), "{}", r.msg());
    assert_eq!(
        srv.get("/config").json()["data"]["event_forward"]["format"],
        "protobuf"
    );

    // Off: nothing more is sent; the counters of what was forwarded stay.
    let r = srv.post("/config", r#"{"event_forward": {"enabled": false}}"#);
    assert_eq!((r.status, r.code()), (200, 0));
    assert_eq!(
        srv.get("/config").json()["data"]["event_forward"]["enabled"],
        false
    );
    let fwd = &srv.get("/status").json()["data"]["counters"]["forward"];
    assert_eq!(
        (fwd["enabled"].as_bool(), fwd["sent_events"].as_u64()),
        (Some(false), Some(6)),
        "{fwd}"
    );
    srv.publish(&[TestEvent::tls(7), TestEvent::tls(8), TestEvent::tls(9)]);
    assert!(
        rx.recv_timeout(Duration::from_millis(800)).is_err(),
        "forwarding is off"
    );
    srv.assert_serving("event_forward changes");
}

/// Events in one request body the collector got: NDJSON lines or the
/// entries of a `LogBatch`, gzip-compressed or not.
pub fn events_in(ctype: &str, body: &[u8]) -> u64 {
    let body = if body.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .expect("a gzip body");
        out
    } else {
        body.to_vec()
    };
    match ctype {
        "application/x-ndjson" => body
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count() as u64,
        "application/x-protobuf" => LogBatch::decode(&body[..])
            .expect("a LogBatch")
            .entries
            .len() as u64,
        other => panic!("unexpected Content-Type {other:?}"),
    }
}

/// The `/status` forward counters that only grow.
const FORWARD_COUNTERS: [&str; 8] = [
    "sent_events",
    "sent_batches",
    "failed_batches",
    "failed_events",
    "retries",
    "dropped_events",
    "skipped_events",
    "malformed_requests",
];

/// WIRE.md §6 and §5: the forwarder's counters are in `/metrics` (equal to
/// `/status`), as are the event file's, promtool-clean — with a last error
/// whose text needs escaping too.
#[test]
fn forwarder_and_event_file_counters_are_in_metrics() {
    let (port, rx) = collector();
    let dir = std::env::temp_dir().join(format!("rcapture-metrics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = config();
    let mut fwd = ForwardConfig::new(
        CollectorUrl::parse(&format!("http://127.0.0.1:{port}/c")).unwrap(),
        ForwardFormat::Json,
    );
    fwd.batch_size = 2;
    fwd.batch_timeout = Duration::from_millis(100);
    cfg.forward = Some(fwd);
    cfg.event_file = Some(EventFileConfig::new(
        dir.join("events.pb"),
        EventFileFormat::Protobuf,
        0,
    ));
    let mut s = TestServer::with(cfg);
    let evs: Vec<TestEvent> = (1..=5).map(TestEvent::tls).collect();
    s.publish(&evs);
    let c = s.wait_counters("5 forwarded and written", |c| {
        c["forward"]["sent_events"] == 5 && c["event_file"]["written_events"] == 5
    });
    let mut got = 0;
    while got < 5 {
        let (ctype, body) = rx.recv_timeout(Duration::from_secs(10)).expect("batches");
        got += events_in(&ctype, &body);
    }
    let text = s.get("/metrics").text();
    let f = &c["forward"];
    for (series, value) in [
        ("ecapture_forward_enabled", Some(1)),
        ("ecapture_forward_sent_events_total", Some(5)),
        (
            "ecapture_forward_sent_batches_total",
            f["sent_batches"].as_u64(),
        ),
        ("ecapture_forward_failed_batches_total", Some(0)),
        ("ecapture_forward_failed_events_total", Some(0)),
        ("ecapture_forward_retries_total", Some(0)),
        ("ecapture_forward_dropped_events_total", Some(0)),
        ("ecapture_forward_skipped_events_total", Some(0)),
        ("ecapture_forward_malformed_requests_total", Some(0)),
        ("ecapture_forward_queue_bytes", Some(0)),
        ("ecapture_event_file_written_events_total", Some(5)),
        ("ecapture_event_file_dropped_events_total", Some(0)),
        (
            "ecapture_event_file_written_bytes_total",
            c["event_file"]["bytes"].as_u64(),
        ),
        ("ecapture_event_file_rotations_total", Some(0)),
    ] {
        assert_eq!(
            metric_value(&text, series),
            value.map(|v| v as f64),
            "{series} in\n{text}"
        );
    }
    assert!(f["sent_batches"].as_u64() >= Some(3), "{f}");
    assert!(!text.contains("ecapture_forward_last_error_info"), "{text}");
    promtool::assert_clean(&text);

    // A collector nobody listens on: retries, and a last error.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let r = s.post(
        "/config",
        &format!(r#"{{"event_forward": {{"url": "http://127.0.0.1:{dead_port}/c"}}}}"#),
    );
    assert_eq!((r.status, r.code()), (200, 0), "{}", r.text());
    s.publish(&[TestEvent::tls(6)]);
    let c = s.wait_counters("a retry", |c| {
        c["forward"]["retries"].as_u64() > Some(0) && c["forward"]["last_error"].is_string()
    });
    let text = s.get("/metrics").text();
    let err = c["forward"]["last_error"].as_str().unwrap();
    let escaped = err
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    assert_eq!(
        series_value(
            &text,
            &format!("ecapture_forward_last_error_info{{error=\"{escaped}\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert!(metric_value(&text, "ecapture_forward_retries_total") >= Some(1.0));
    // Every series net/README.md lists is exposed, with the type and the
    // labels it gives (forwarder and event file on, a last error set).
    let listed = readme_metrics();
    for l in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = l.split(' ').next().unwrap_or_default();
        assert!(
            listed.iter().any(|(n, _, _)| n == name),
            "/metrics exposes {name}, which net/README.md does not list"
        );
    }
    for (name, kind, labels) in listed {
        assert!(
            text.lines().any(|l| l == format!("# TYPE {name} {kind}")),
            "net/README.md lists {name} as a {kind}: not so in\n{text}"
        );
        let series = if kind == "histogram" {
            format!("{name}_bucket")
        } else {
            name.clone()
        };
        let sample = text
            .lines()
            .find(|l| !l.starts_with('#') && l.starts_with(series.as_str()));
        // A labelled family may have no series yet (no CPU lost a record).
        let Some(sample) = sample else {
            assert!(!labels.is_empty(), "no sample of {name} in\n{text}");
            continue;
        };
        for label in &labels {
            assert!(
                sample.contains(&format!("{label}=\"")),
                "{name}: README label {label} not in {sample:?}"
            );
        }
    }
    // What the first forwarder sent is still counted.
    assert_eq!(
        metric_value(&text, "ecapture_forward_sent_events_total"),
        Some(5.0),
        "{text}"
    );
    promtool::assert_clean(&text);
    // Off (the bounded shutdown drops what the dead collector never got).
    // The shutdown runs in the background: its drops are counted once it ends.
    let r = s.post("/config", r#"{"event_forward": {"enabled": false}}"#);
    assert_eq!((r.status, r.code()), (200, 0), "{}", r.text());
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let text = s.get("/metrics").text();
        assert_eq!(metric_value(&text, "ecapture_forward_enabled"), Some(0.0));
        let total = metric_value(&text, "ecapture_forward_sent_events_total").unwrap()
            + metric_value(&text, "ecapture_forward_dropped_events_total").unwrap();
        if total == 6.0 {
            break;
        }
        assert!(total < 6.0 && Instant::now() < end, "{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Replacing or disabling the forwarder keeps what the old one did: the
/// counters in `/status` and `/metrics` are totals over every forwarder,
/// they never go down, and every event offered is accounted for (sent,
/// dropped or refused) — here all of them sent, once each.
#[test]
fn forwarder_totals_survive_replacement_and_disabling() {
    let mut srv = TestServer::start();
    let (port, rx) = collector();
    // Events wait in the batcher (a large batch, a long timeout): each
    // replacement's bounded shutdown flushes and sends them.
    let on = format!(
        r#"{{"event_forward": {{"enabled": true, "url": "http://127.0.0.1:{port}/c", "format": "json", "batch_size": 1000, "batch_timeout_ms": 60000}}}}"#
    );
    let r = srv.post("/config", &on);
    assert_eq!((r.status, r.code()), (200, 0), "{}", r.text());
    let mut offered = 0u64;
    let mut next = 1u64;
    let mut before = serde_json::Map::new();
    for (i, change) in [
        r#"{"format": "protobuf"}"#,
        r#"{"gzip": true}"#,
        r#"{"format": "json", "batch_size": 999}"#,
        r#"{"enabled": false}"#,
    ]
    .into_iter()
    .enumerate()
    {
        let n = 3 + i as u64;
        let evs: Vec<TestEvent> = (next..next + n).map(TestEvent::tls).collect();
        next += n;
        srv.publish(&evs);
        offered += n;
        // The loop offers the batch before it reads the next request.
        let _ = srv.get("/status");
        let r = srv.post("/config", &format!(r#"{{"event_forward": {change}}}"#));
        assert_eq!((r.status, r.code()), (200, 0), "{change}: {}", r.text());
        // The replaced forwarder flushes in the background: its counts are
        // in the totals while it does (never going down) and after.
        let end = Instant::now() + Duration::from_secs(10);
        let fwd = loop {
            let fwd = srv.counters()["forward"].clone();
            let get = |k: &str| {
                fwd[k]
                    .as_u64()
                    .unwrap_or_else(|| panic!("after {change}: forward.{k} in {fwd}"))
            };
            for k in FORWARD_COUNTERS {
                let was = before.get(k).and_then(Value::as_u64).unwrap_or(0);
                assert!(
                    get(k) >= was,
                    "after {change}: forward.{k} went down from {was}: {fwd}"
                );
            }
            before = fwd.as_object().unwrap().clone();
            let lost = get("dropped_events") + get("failed_events") + get("skipped_events");
            assert_eq!(lost, 0, "after {change}: {fwd}");
            if get("sent_events") == offered {
                break fwd;
            }
            assert!(
                Instant::now() < end,
                "after {change}: every event offered so far is sent: {fwd}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(fwd["enabled"], i < 3, "after {change}: {fwd}");
    }
    let text = srv.get("/metrics").text();
    assert_eq!(
        metric_value(&text, "ecapture_forward_sent_events_total"),
        Some(offered as f64),
        "{text}"
    );
    assert_eq!(metric_value(&text, "ecapture_forward_enabled"), Some(0.0));
    // The collector got each event once.
    let mut got = 0;
    let end = Instant::now() + Duration::from_secs(10);
    while got < offered && Instant::now() < end {
        if let Ok((ctype, body)) = rx.recv_timeout(Duration::from_millis(100)) {
            got += events_in(&ctype, &body);
        }
    }
    assert_eq!(got, offered, "events the collector got");
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "nothing more"
    );
}

/// (series, type, labels) of the metrics table in net/README.md.
fn readme_metrics() -> Vec<(String, String, Vec<String>)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("net/README.md");
    let rows: Vec<(String, String, Vec<String>)> = readme
        .lines()
        .filter(|l| l.starts_with("| `ecapture_"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let unquote = |c: &str| c.trim_matches('`').to_string();
            let labels = cells[3]
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(unquote)
                .collect();
            (unquote(cells[1]), cells[2].to_string(), labels)
        })
        .collect();
    assert!(
        rows.len() >= 30,
        "the metrics table of net/README.md: {rows:?}"
    );
    rows
}

/// `POST /config` that replaces a forwarder does not wait for the old one's
/// bounded shutdown: with the old collector holding a request unanswered,
/// the response comes while that request is still open (the loop did not
/// wait for its cancellation), the server keeps serving, and the old
/// forwarder's events are counted once its shutdown ends.
#[test]
fn replacing_a_stuck_forwarder_does_not_wait_for_its_shutdown() {
    let mut srv = TestServer::start();
    let stuck = TcpListener::bind("127.0.0.1:0").unwrap();
    let stuck_port = stuck.local_addr().unwrap().port();
    let (got_tx, got_request) = mpsc::channel();
    let (closed_tx, closed) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _) = stuck.accept().unwrap();
        let mut buf = [0u8; 65536];
        let mut told = false;
        // Reads, never answers; reports the request, then the close.
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) if !told => {
                    told = true;
                    let _ = got_tx.send(());
                }
                Ok(_) => {}
            }
        }
        let _ = closed_tx.send(());
    });
    let on = format!(
        r#"{{"event_forward": {{"enabled": true, "url": "http://127.0.0.1:{stuck_port}/c", "format": "json", "batch_size": 1, "concurrency": 1}}}}"#
    );
    let r = srv.post("/config", &on);
    assert_eq!((r.status, r.code()), (200, 0), "{}", r.text());
    srv.publish(&[TestEvent::tls(1), TestEvent::tls(2)]);
    got_request
        .recv_timeout(Duration::from_secs(10))
        .expect("the stuck collector got a request");

    let (port, rx) = collector();
    let r = srv.post(
        "/config",
        &format!(r#"{{"event_forward": {{"url": "http://127.0.0.1:{port}/d"}}}}"#),
    );
    assert_eq!((r.status, r.code()), (200, 0), "{}", r.text());
    assert!(
        closed.try_recv().is_err(),
        "the response waited for the old forwarder's shutdown (its request was already cancelled)"
    );
    srv.assert_serving("the replacement");
    // The new forwarder works; the old one's 2 events end up counted as
    // dropped once its shutdown gives up on the stuck collector.
    srv.publish(&[TestEvent::tls(3)]);
    let (ctype, body) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the new collector");
    assert_eq!(events_in(&ctype, &body), 1);
    closed
        .recv_timeout(Duration::from_secs(10))
        .expect("the old forwarder's request is cancelled");
    let c = srv.wait_counters("the old forwarder's final counts", |c| {
        c["forward"]["dropped_events"].as_u64() == Some(2)
    });
    assert_eq!(c["forward"]["sent_events"], 1, "{c}");
    assert_eq!(c["forward"]["retired"], 1, "{c}");
}
