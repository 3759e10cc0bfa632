//! Delivery: retries (503, Retry-After), refusals (400), a collector that is
//! down and comes back (bounded memory, exact drop count), https with a CA
//! file, shutdown flushing, and `offer` never blocking.

use crate::config;
use crate::support::{Collector, TempDir, batch, body, event, free_port, make_certs, wait_for};
use prost::Message;
use rcapture_core::event::EventFields;
use rcapture_net::forward::{ForwardFormat, Forwarder};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn uuids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// A TLS event per uuid, timestamps 0, 1, 2, ..., all with `payload`.
fn tls_events<'a>(ids: &'a [String], payload: &'a [u8]) -> Vec<EventFields<'a>> {
    ids.iter()
        .enumerate()
        .map(|(i, u)| event(i as i64, u, "tls", payload))
        .collect()
}

/// Events in a protobuf body (not gzip'd).
fn events_in(rec: &serde_json::Value) -> usize {
    rcapture_proto::LogBatch::decode(&body(rec)[..])
        .expect("a LogBatch")
        .entries
        .len()
}

#[test]
fn retries_503_honouring_retry_after() {
    let dir = TempDir::new("retry");
    let c = Collector::start(&dir, "c", &["--fail", "3", "--retry-after", "1"]);
    let mut cfg = config(
        &format!("http://127.0.0.1:{}/", c.port),
        ForwardFormat::Protobuf,
    );
    cfg.batch_size = 5;
    cfg.retry.max = Duration::from_secs(5);
    let f = Forwarder::start(cfg).expect("start");
    let ids = uuids("r", 5);
    let evs = tls_events(&ids, b"x");
    f.offer(&batch(&evs));
    assert!(wait_for(Duration::from_secs(15), || f.stats().sent_events == 5));
    let stats = f.shutdown(Duration::from_secs(1));
    let recs = c.records();
    let statuses: Vec<u64> = recs.iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [503, 503, 503, 200]);
    assert!(
        recs.iter().all(|r| r["body"] == recs[0]["body"]),
        "the same batch is re-sent"
    );
    for w in recs.windows(2) {
        let gap = w[1]["t"].as_f64().unwrap() - w[0]["t"].as_f64().unwrap();
        assert!(gap >= 0.9, "Retry-After: 1 is honoured (gap {gap:.3}s)");
    }
    assert_eq!(
        (
            stats.sent_events,
            stats.sent_batches,
            stats.retries,
            stats.dropped_events,
            stats.failed_batches
        ),
        (5, 1, 3, 0, 0),
        "{stats:?}"
    );
    assert!(
        stats
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("HTTP 503")),
        "{stats:?}"
    );
}

/// With two requests in flight (the default), the backoff holds for both
/// senders: a batch offered during it does not set the idle sender off
/// (it would also have taken the failed batch at once); both go after the
/// 503's Retry-After.
#[test]
fn backoff_pauses_every_request_in_flight() {
    let dir = TempDir::new("pause");
    let c = Collector::start(&dir, "c", &["--fail", "1", "--retry-after", "1"]);
    let mut cfg = config(
        &format!("http://127.0.0.1:{}/", c.port),
        ForwardFormat::Protobuf,
    );
    assert_eq!(cfg.concurrency, 2, "the default");
    cfg.batch_size = 5;
    cfg.retry.max = Duration::from_secs(5);
    let f = Forwarder::start(cfg).expect("start");
    let ids = uuids("p", 10);
    let evs = tls_events(&ids, b"x");
    f.offer(&batch(&evs[..5]));
    assert!(wait_for(Duration::from_secs(5), || f.stats().retries == 1));
    // Inside the backoff.
    f.offer(&batch(&evs[5..]));
    assert!(wait_for(Duration::from_secs(15), || f.stats().sent_events == 10));
    let stats = f.shutdown(Duration::from_secs(1));
    let recs = c.records();
    let t = |r: &serde_json::Value| r["t"].as_f64().unwrap();
    let statuses: Vec<u64> = recs.iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [503, 200, 200], "{recs:#?}");
    for r in &recs[1..] {
        let gap = t(r) - t(&recs[0]);
        assert!(
            gap >= 0.9,
            "a request {gap:.3}s after a 503 with Retry-After: 1"
        );
    }
    let delivered: usize = recs[1..].iter().map(events_in).sum();
    assert_eq!(delivered, 10);
    assert_eq!(
        (
            stats.sent_events,
            stats.sent_batches,
            stats.retries,
            stats.dropped_events
        ),
        (10, 2, 1, 0),
        "{stats:?}"
    );
}

/// A forwarder that falls behind (gzip, a burst far beyond what it
/// compresses at once) holds at most its intake of the loop's batches,
/// plus the few its batcher and compressors work on, so the loop's other
/// outputs keep the rest of the pool; what does not fit is dropped and
/// counted, and every event offered is either delivered or dropped.
#[test]
fn a_forwarder_behind_holds_at_most_its_intake() {
    const BATCHES: usize = 400;
    const INTAKE: usize = 8;
    let dir = TempDir::new("intake");
    let c = Collector::start(&dir, "c", &[]);
    let mut cfg = config(
        &format!("http://127.0.0.1:{}/", c.port),
        ForwardFormat::Protobuf,
    );
    cfg.gzip = true;
    cfg.batch_size = 50;
    cfg.intake_batches = INTAKE;
    let f = Forwarder::start(cfg).expect("start");
    let ids = uuids("i", 50);
    let payload = vec![b'x'; 4096];
    let evs = tls_events(&ids, &payload);
    let batches: Vec<_> = (0..BATCHES).map(|_| batch(&evs)).collect();
    for b in &batches {
        f.offer(b);
    }
    // The intake, a round of the batcher (one batch here) and a job per
    // compressor thread and one waiting (two batches each at most).
    let held = batches.iter().filter(|b| Arc::strong_count(b) > 1).count();
    assert!(
        held <= INTAKE + 1 + 2 * 2 * 2,
        "the forwarder holds {held} batches"
    );
    let stats = f.shutdown(Duration::from_secs(20));
    assert!(stats.dropped_events > 0, "{stats:?}");
    assert_eq!(
        stats.sent_events + stats.dropped_events,
        (BATCHES * 50) as u64,
        "{stats:?}"
    );
    assert_eq!(stats.queue_bytes, 0);
    let received = c.records().len() as u64;
    assert_eq!(received, stats.sent_batches, "{stats:?}");
}

#[test]
fn client_error_fails_the_batch_without_retry() {
    let dir = TempDir::new("400");
    let c = Collector::start(&dir, "c", &["--fail", "1", "--fail-status", "400"]);
    let mut cfg = config(
        &format!("http://127.0.0.1:{}/", c.port),
        ForwardFormat::Protobuf,
    );
    cfg.batch_size = 5;
    let f = Forwarder::start(cfg).expect("start");
    let ids = uuids("f", 10);
    let evs = tls_events(&ids, b"x");
    f.offer(&batch(&evs[..5]));
    assert!(wait_for(Duration::from_secs(5), || f
        .stats()
        .failed_batches
        == 1));
    f.offer(&batch(&evs[5..]));
    let stats = f.shutdown(Duration::from_secs(5));
    assert_eq!(c.records().len(), 2);
    assert_eq!(
        (
            stats.failed_batches,
            stats.failed_events,
            stats.sent_events,
            stats.retries
        ),
        (1, 5, 5, 0),
        "{stats:?}"
    );
    assert!(
        stats
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("HTTP 400")),
        "{stats:?}"
    );
}

#[test]
fn collector_down_then_back() {
    let dir = TempDir::new("down");
    let port = free_port();
    let limit = 4096;
    let mut cfg = config(
        &format!("http://127.0.0.1:{port}/"),
        ForwardFormat::Protobuf,
    );
    cfg.batch_size = 10;
    cfg.batch_timeout = Duration::from_millis(20);
    cfg.queue_bytes = limit;
    let f = Forwarder::start(cfg).expect("start");
    let t0 = Instant::now();
    let c = Collector::start(
        &dir,
        "c",
        &["--port", &port.to_string(), "--delay-start", "5"],
    );
    let ids = uuids("d", 400);
    let payload = [b'p'; 100];
    let mut fed = 0u64;
    let mut max_queue = 0;
    // 2.4 s of traffic while the collector is down (for 5 s).
    for chunk in ids.chunks(10).take(30) {
        let evs: Vec<_> = chunk
            .iter()
            .map(|u| event(fed as i64, u, "tls", &payload))
            .collect();
        fed += evs.len() as u64;
        f.offer(&batch(&evs));
        std::thread::sleep(Duration::from_millis(80));
        max_queue = max_queue.max(f.stats().queue_bytes);
    }
    let down = f.stats();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "fed while the collector was down"
    );
    assert_eq!(down.sent_events, 0, "{down:?}");
    assert!(down.retries > 0 && down.dropped_events > 0, "{down:?}");
    assert!(
        max_queue <= limit as u64,
        "queue stays bounded: {max_queue} > {limit}"
    );
    assert!(
        down.last_error
            .as_deref()
            .is_some_and(|e| e.contains("connect to 127.0.0.1")),
        "{down:?}"
    );
    // The collector comes back: what is queued is delivered, and new events flow.
    assert!(wait_for(Duration::from_secs(10), || {
        let s = f.stats();
        s.sent_events + s.dropped_events == fed
    }));
    for chunk in ids.chunks(10).skip(30).take(2) {
        let evs: Vec<_> = chunk
            .iter()
            .map(|u| event(fed as i64, u, "tls", &payload))
            .collect();
        fed += evs.len() as u64;
        f.offer(&batch(&evs));
    }
    let stats = f.shutdown(Duration::from_secs(5));
    let received: usize = c.records().iter().map(events_in).sum();
    eprintln!(
        "collector down then back: fed {fed}, received {received}, max queue {max_queue} B, {stats:?}"
    );
    assert!(received >= 20, "delivery resumed: {received}");
    assert_eq!(stats.sent_events, received as u64, "{stats:?}");
    assert_eq!(stats.dropped_events, fed - received as u64, "{stats:?}");
    assert_eq!(stats.queue_bytes, 0);
}

#[test]
fn https_collector_with_ca_file() {
    let dir = TempDir::new("tls");
    let (ca, cert, key) = make_certs(&dir);
    let c = Collector::start(
        &dir,
        "c",
        &["--tls", cert.to_str().unwrap(), key.to_str().unwrap()],
    );
    let url = format!("https://127.0.0.1:{}/tls", c.port);
    let ids = uuids("t", 6);
    let evs = tls_events(&ids, b"s");

    // Not trusted by the system roots: retried, the error says why, and
    // the events are counted as dropped at shutdown.
    let mut cfg = config(&url, ForwardFormat::Protobuf);
    cfg.batch_size = 3;
    let f = Forwarder::start(cfg.clone()).expect("start");
    f.offer(&batch(&evs[..3]));
    assert!(wait_for(Duration::from_secs(5), || f.stats().retries >= 2));
    let stats = f.shutdown(Duration::ZERO);
    assert_eq!(
        (stats.sent_events, stats.dropped_events),
        (0, 3),
        "{stats:?}"
    );
    let e = stats.last_error.unwrap_or_default();
    assert!(
        e.contains("connect to 127.0.0.1") && e.to_lowercase().contains("certificate"),
        "{e}"
    );

    cfg.ca_file = Some(ca);
    let f = Forwarder::start(cfg).expect("start");
    f.offer(&batch(&evs));
    let stats = f.shutdown(Duration::from_secs(5));
    assert_eq!(
        (stats.sent_events, stats.sent_batches, stats.retries),
        (6, 2, 0),
        "{stats:?}"
    );
    let recs = c.records();
    assert_eq!(recs.iter().map(events_in).sum::<usize>(), 6);
    assert_eq!(recs[0]["path"], "/tls");
}

#[test]
fn shutdown_flushes_the_partial_batch() {
    let dir = TempDir::new("flush");
    let c = Collector::start(&dir, "c", &[]);
    let mut cfg = config(
        &format!("http://127.0.0.1:{}/", c.port),
        ForwardFormat::Protobuf,
    );
    cfg.batch_timeout = Duration::from_secs(3600);
    let f = Forwarder::start(cfg).expect("start");
    let ids = uuids("s", 3);
    let evs = tls_events(&ids, b"z");
    f.offer(&batch(&evs));
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        c.records().is_empty(),
        "batch_size and timeout not reached yet"
    );
    let stats = f.shutdown(Duration::from_secs(5));
    assert_eq!((stats.sent_events, stats.sent_batches), (3, 1), "{stats:?}");
    assert_eq!(c.records().iter().map(events_in).sum::<usize>(), 3);
}

#[test]
fn offer_never_blocks_and_every_event_is_counted() {
    let port = free_port(); // nothing listens there
    let mut cfg = config(
        &format!("http://127.0.0.1:{port}/"),
        ForwardFormat::Protobuf,
    );
    cfg.batch_size = 50;
    cfg.queue_bytes = 16 * 1024;
    let f = Forwarder::start(cfg).expect("start");
    let ids = uuids("b", 10);
    let evs = tls_events(&ids, &[7; 200]);
    let b = batch(&evs);
    let t0 = Instant::now();
    for _ in 0..20_000 {
        f.offer(&b);
    }
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(2), "20000 offers took {took:?}");
    assert!(f.stats().queue_bytes <= 16 * 1024);
    let stats = f.shutdown(Duration::from_millis(200));
    assert_eq!(stats.sent_events, 0);
    assert_eq!(stats.dropped_events, 200_000, "{stats:?}");
    assert_eq!(stats.queue_bytes, 0);
}

/// (arrival times, distinct client ports, seqs) of the requests a
/// forwarder with `concurrency` makes for 3 batches of 5 events offered at
/// once, to a collector that answers each request 0.4 s after reading it.
fn three_held_batches(concurrency: usize) -> (Vec<f64>, usize, Vec<u64>) {
    let dir = TempDir::new("conc");
    let c = Collector::start(&dir, "c", &["--hold", "0.4"]);
    let mut cfg = config(
        &format!("http://127.0.0.1:{}/", c.port),
        ForwardFormat::Protobuf,
    );
    cfg.batch_size = 5;
    cfg.concurrency = concurrency;
    let f = Forwarder::start(cfg).expect("start");
    let ids = uuids(&format!("c{concurrency}"), 15);
    let evs = tls_events(&ids, b"x");
    f.offer(&batch(&evs));
    let stats = f.shutdown(Duration::from_secs(10));
    assert_eq!(
        (stats.sent_events, stats.sent_batches, stats.dropped_events),
        (15, 3, 0),
        "{stats:?}"
    );
    let recs = c.records();
    let times: Vec<f64> = recs.iter().map(|r| r["t"].as_f64().expect("t")).collect();
    let mut peers: Vec<u64> = recs
        .iter()
        .map(|r| r["peer"].as_u64().expect("peer"))
        .collect();
    peers.sort_unstable();
    peers.dedup();
    let mut seqs = Vec::new();
    let mut got = Vec::new();
    for r in &recs {
        for e in rcapture_proto::LogBatch::decode(&body(r)[..])
            .expect("a LogBatch")
            .entries
        {
            seqs.push(e.seq);
            let Some(rcapture_proto::log_entry::Payload::EventPayload(ev)) = e.payload else {
                panic!("an event entry");
            };
            got.push(ev.uuid);
        }
    }
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want, "every event exactly once");
    seqs.sort_unstable();
    (times, peers.len(), seqs)
}

#[test]
fn concurrent_requests_on_their_own_connections() {
    // One at a time: each request waits for the previous answer.
    let (t, conns, seqs) = three_held_batches(1);
    let spread =
        t.iter().cloned().fold(f64::MIN, f64::max) - t.iter().cloned().fold(f64::MAX, f64::min);
    assert_eq!(conns, 1);
    assert!(
        spread >= 0.75,
        "sequential requests arrived {spread:.2} s apart"
    );
    assert_eq!(seqs, (1..=15).collect::<Vec<_>>());
    // Three in flight: all three arrive before the first is answered, each
    // on its own keep-alive connection.
    let (t, conns, seqs) = three_held_batches(3);
    let spread =
        t.iter().cloned().fold(f64::MIN, f64::max) - t.iter().cloned().fold(f64::MAX, f64::min);
    assert_eq!(conns, 3, "one connection per request in flight");
    assert!(
        spread < 0.3,
        "concurrent requests arrived {spread:.2} s apart"
    );
    assert_eq!(seqs, (1..=15).collect::<Vec<_>>());
}
