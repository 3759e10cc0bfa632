//! The HTTP API: `POST /config` reaches `Control::apply` and `GET /config`
//! shows it, the bearer token guards everything, `/status` shape, and
//! `/metrics` passes `promtool check metrics`.

use crate::util::{TestEvent, TestServer, config, request, ws_connect};
use rcapture_net::control::{CaptureCounters, LiveSettings};
use rcapture_testsupport::promtool;

#[test]
fn post_config_applies_pid_live_and_get_config_reflects_it() {
    let s = TestServer::start();
    let r = s.post("/config", r#"{"pid": 4242}"#);
    assert_eq!((r.status, r.code()), (200, 0), "{r:?}");
    assert_eq!(r.json()["data"]["pid"], 4242);
    assert_eq!(
        *s.control.applied.lock().unwrap(),
        vec![LiveSettings {
            pid: Some(4242),
            uid: None,
            hex: false
        }]
    );
    let c = s.get("/config");
    assert_eq!((c.status, c.code()), (200, 0));
    let d = &c.json()["data"];
    assert_eq!(
        (d["pid"].as_u64(), d["uid"].as_u64()),
        (Some(4242), Some(0))
    );
    assert_eq!(d["truncate_size"], 1 << 20);
    assert_eq!(d["per_cpu_map_size"], 8192);
    // Upstream module route, partial update: uid added, pid kept.
    let r = s.post("/tls", r#"{"uid": 1000, "is_hex": true}"#);
    assert_eq!((r.status, r.code()), (200, 0), "{r:?}");
    assert_eq!(r.json()["module_type"], "tls");
    assert_eq!(
        s.control.applied.lock().unwrap().last(),
        Some(&LiveSettings {
            pid: Some(4242),
            uid: Some(1000),
            hex: true
        })
    );
    // pid 0 means all processes again.
    let r = s.post("/config", r#"{"pid": 0}"#);
    assert_eq!(r.status, 200);
    assert_eq!(s.control.applied.lock().unwrap().last().unwrap().pid, None);
    assert_eq!(s.get("/config").json()["data"]["pid"], 0);
    // What GET shows can be posted back unchanged (no apply needed).
    let n = s.control.applied.lock().unwrap().len();
    let shown = s.get("/config").json()["data"].to_string();
    assert_eq!(s.post("/config", &shown).status, 200);
    assert_eq!(s.control.applied.lock().unwrap().len(), n);
}

#[test]
fn status_reports_modules_and_counters() {
    let s = TestServer::start();
    s.control.counters.lock().unwrap().captured = 12;
    s.control.counters.lock().unwrap().lost_kernel_per_cpu = vec![(0, 3), (1, 4)];
    let r = s.get("/status");
    assert_eq!((r.status, r.code()), (200, 0));
    let d = &r.json()["data"];
    assert_eq!(d["ready"], true);
    assert_eq!(d["modules"][0]["name"], "tls");
    assert_eq!(d["modules"][0]["probes"], 4);
    assert_eq!(d["counters"]["captured"], 12);
    assert_eq!(d["counters"]["lost_kernel"], 7);
    assert_eq!(d["counters"]["ws_clients"], 0);
    assert!(d["uptime_secs"].is_u64() && d["version"].is_string(), "{d}");
}

/// Every capture-side counter is in `/status` and `/metrics`, each with its
/// own value (reassembly's orphans and evictions, the text output's drops).
#[test]
fn capture_counters_are_all_shown() {
    let s = TestServer::start();
    type Field = fn(&mut CaptureCounters) -> &mut u64;
    let rows: [(&str, &str, u64, Field); 8] = [
        (
            "truncated_events",
            "ecapture_truncated_events_total",
            11,
            |c| &mut c.truncated_events,
        ),
        ("malformed", "ecapture_malformed_records_total", 12, |c| {
            &mut c.malformed
        }),
        (
            "incomplete_calls",
            "ecapture_incomplete_calls_total",
            13,
            |c| &mut c.incomplete_calls,
        ),
        ("orphan_records", "ecapture_orphan_records_total", 14, |c| {
            &mut c.orphan_records
        }),
        ("orphan_bytes", "ecapture_orphan_bytes_total", 15, |c| {
            &mut c.orphan_bytes
        }),
        ("evicted_calls", "ecapture_evicted_calls_total", 16, |c| {
            &mut c.evicted_calls
        }),
        (
            "output_dropped",
            "ecapture_output_dropped_events_total",
            17,
            |c| &mut c.output_dropped,
        ),
        ("filtered", "ecapture_filtered_events_total", 18, |c| {
            &mut c.filtered
        }),
    ];
    for (_, _, v, field) in &rows {
        *field(&mut s.control.counters.lock().unwrap()) = *v;
    }
    let d = s.get("/status").json();
    let metrics = s.get("/metrics").text();
    for (key, series, v, _) in rows {
        assert_eq!(d["data"]["counters"][key], v, "/status {key}: {d}");
        assert!(
            metrics.lines().any(|l| l == format!("{series} {v}")),
            "{series} {v} not in\n{metrics}"
        );
    }
}

#[test]
fn auth_token_guards_api_and_stream() {
    let mut cfg = config();
    cfg.auth_token = Some("s3cret".into());
    let s = TestServer::with(cfg);
    let r = s.get("/status");
    assert_eq!((r.status, r.code()), (401, 1), "{r:?}");
    assert_eq!(r.header("WWW-Authenticate"), Some("Bearer"));
    assert!(r.msg().contains("Authorization: Bearer"), "{}", r.msg());
    let r = request(
        s.addr,
        b"GET /status HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer wrong\r\n\r\n",
    );
    assert_eq!((r.status, r.msg().as_str()), (401, "invalid token"));
    let r = request(
        s.addr,
        b"GET /status HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer s3cret\r\n\r\n",
    );
    assert_eq!((r.status, r.code()), (200, 0), "{r:?}");
    // ?token= is for the WebSocket upgrade only.
    let r = request(
        s.addr,
        b"GET /status?token=s3cret HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert_eq!(r.status, 401);
    let r = request(
        s.addr,
        b"POST /config HTTP/1.1\r\nHost: localhost\r\nContent-Length: 12\r\n\r\n{\"pid\": 123}",
    );
    assert_eq!(r.status, 401);
    assert!(s.control.applied.lock().unwrap().is_empty());
    match ws_connect(s.addr, "/", &[]) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("upgrade without token: {:?}", other.map(|x| x.1)),
    }
    match ws_connect(s.addr, "/?token=nope", &[]) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("upgrade with a wrong token: {:?}", other.map(|x| x.1)),
    }
    let (mut ws, _) = ws_connect(s.addr, "/?token=s3cret&pids=1", &[]).expect("?token= upgrade");
    let hb = crate::util::next_entry(&mut ws);
    assert_eq!(hb.log_type, 0);
    let (mut ws2, _) =
        ws_connect(s.addr, "/ws", &[("Authorization", "Bearer s3cret")]).expect("bearer upgrade");
    assert_eq!(crate::util::next_entry(&mut ws2).log_type, 0);
}

#[test]
fn metrics_pass_promtool_with_every_series_populated() {
    let mut s = TestServer::start();
    {
        let mut c = s.control.counters.lock().unwrap();
        c.captured = 9;
        c.lost_kernel_per_cpu = vec![(0, 1), (1, 0)];
        c.truncated_bytes = 100;
    }
    let mut ws = crate::util::ws_ready(s.addr, "/?max_rate=1");
    let evs: Vec<TestEvent> = (0..3).map(TestEvent::tls).collect();
    s.publish(&evs);
    assert_eq!(crate::util::next_event(&mut ws).0, 1);
    s.wait_counters("2 dropped", |c| c["ws_dropped"] == 2);
    let r = s.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(
        r.header("Content-Type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{r:?}"
    );
    let text = r.text();
    for want in [
        "ecapture_events_total{module=\"tls\",pid=\"4000\"} 1",
        "ecapture_payload_bytes_total{module=\"tls\"} ",
        "ecapture_connections_active 2",
        "ecapture_websocket_clients 1",
        "ecapture_captured_events_total 9",
        "ecapture_kernel_lost_events_total{cpu=\"0\"} 1",
        "ecapture_truncated_bytes_total 100",
        "ecapture_websocket_dropped_events_total{reason=\"max_rate\"} 2",
        "ecapture_websocket_dropped_events_total{reason=\"queue_full\"} 0",
        "ecapture_websocket_dropped_events_total{reason=\"share\"} 0",
        "ecapture_websocket_dropped_events_total{reason=\"closed\"} 0",
        "ecapture_websocket_dropped_events_total{reason=\"deflate\"} 0",
        ",reason=\"max_rate\"} 2",
        "ecapture_event_latency_seconds_count 3",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    // The client's drops, by reason, in /metrics and /status.
    let local = ws.get_ref().local_addr().unwrap();
    assert!(
        text.contains(&format!(
            "ecapture_websocket_client_dropped_events{{client=\"{local}#"
        )),
        "{text}"
    );
    let st = s.get("/status").json()["data"].clone();
    assert_eq!(
        st["counters"]["ws_dropped_by_reason"],
        serde_json::json!({"queue_full": 0, "share": 0, "max_rate": 2, "closed": 0, "deflate": 0}),
        "{st}"
    );
    let c = crate::util::ws_client_status(&st, local).expect("the client in /status");
    assert_eq!(
        (
            &c["seq"],
            &c["sent"],
            &c["dropped"],
            &c["dropped_by_reason"]["max_rate"]
        ),
        (&3.into(), &1.into(), &2.into(), &2.into()),
        "{c}"
    );
    let bytes: u64 = evs.iter().map(|e| e.payload.len() as u64).sum();
    assert!(
        text.contains(&format!(
            "ecapture_payload_bytes_total{{module=\"tls\"}} {bytes}\n"
        )),
        "{text}"
    );
    promtool::assert_clean(&text);
}

#[test]
fn many_pids_are_bounded_by_an_other_label() {
    let mut s = TestServer::start();
    let evs: Vec<TestEvent> = (0..400)
        .map(|i| TestEvent::tls(i).with_pid(10_000 + i as i64))
        .collect();
    s.publish(&evs);
    let end = std::time::Instant::now() + crate::util::WAIT;
    let text = loop {
        let t = s.get("/metrics").text();
        if t.contains("ecapture_event_latency_seconds_count 400") {
            break t;
        }
        assert!(std::time::Instant::now() < end, "{t}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let labelled = text
        .lines()
        .filter(|l| l.starts_with("ecapture_events_total{"))
        .count();
    // At most 32 pids of one module, the rest as pid="other".
    assert_eq!(labelled, 32 + 1, "{text}");
    let sum: u64 = text
        .lines()
        .filter(|l| l.starts_with("ecapture_events_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(sum, 400, "every event counted once");
    assert!(text.contains("pid=\"other\""), "{text}");
    promtool::assert_clean(&text);
}

/// The pid label names the busiest pids: a pid first seen after 32 others
/// gets its own series once it is busier than them, and the series still
/// sum to every event.
#[test]
fn a_busy_pid_seen_late_gets_its_own_series() {
    let mut s = TestServer::start();
    let early: Vec<TestEvent> = (0..64)
        .map(|i| TestEvent::tls(i).with_pid(20_000 + i as i64))
        .collect();
    s.publish(&early);
    let busy: Vec<TestEvent> = (64..364)
        .map(|i| TestEvent::tls(i).with_pid(31_337))
        .collect();
    s.publish(&busy);
    let end = std::time::Instant::now() + crate::util::WAIT;
    let text = loop {
        let t = s.get("/metrics").text();
        if t.contains("ecapture_event_latency_seconds_count 364") {
            break t;
        }
        assert!(std::time::Instant::now() < end, "{t}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ecapture_events_total{"))
        .collect();
    assert!(series.len() <= 32 + 1, "{text}");
    let busy_line = series
        .iter()
        .find(|l| l.contains("pid=\"31337\""))
        .unwrap_or_else(|| panic!("the busy pid has no series:\n{text}"));
    let n: u64 = busy_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n > 250, "{busy_line}");
    let sum: u64 = series
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(sum, 364, "every event counted once: {text}");
}
