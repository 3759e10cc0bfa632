//! Fan-out under load: a client that never reads does not slow the publisher
//! or a fast client; its drops are counted and it is closed with 1008 after
//! the slow-client deadline.

use crate::util::{RawWs, TestEvent, TestServer, WAIT, config, next_event, ws_ready};
use rcapture_core::worker::EventSink;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// 3000 events of 8 KB: 24 MB, more than a never-reading client's socket
/// buffers (a few MB on loopback) and queue (512 KiB) hold.
const EVENTS: u64 = 3000;
const PAYLOAD: usize = 8000;

#[test]
fn slow_client_is_dropped_and_closed_while_fast_client_gets_everything() {
    let mut cfg = config();
    cfg.limits.client_queue.frames = 1024;
    cfg.limits.client_queue.bytes = 512 * 1024;
    cfg.limits.stuck_deadline = Duration::from_secs(1);
    let mut s = TestServer::with(cfg);

    let mut slow = RawWs::connect(s.addr, "/");

    let mut fast = ws_ready(s.addr, "/ws");
    let received = Arc::new(AtomicU64::new(0));
    let reader = {
        let received = Arc::clone(&received);
        std::thread::spawn(move || {
            let mut seqs = Vec::with_capacity(EVENTS as usize);
            while seqs.len() < EVENTS as usize {
                let (seq, ev) = next_event(&mut fast);
                assert_eq!(ev.payload.len(), PAYLOAD);
                assert_eq!(ev.length as usize, PAYLOAD);
                seqs.push(seq);
                received.store(seq, Ordering::Release);
            }
            (seqs, fast)
        })
    };

    // When the slow client's first drop is seen (from outside, via /status).
    let first_drop = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let watcher = {
        let first_drop = Arc::clone(&first_drop);
        let addr = s.addr;
        std::thread::spawn(move || {
            let end = Instant::now() + WAIT;
            while Instant::now() < end {
                let r = crate::util::request(addr, b"GET /status HTTP/1.1\r\nHost: t\r\n\r\n");
                if r.json()["data"]["counters"]["ws_dropped"].as_u64() > Some(0) {
                    *first_drop.lock().unwrap() = Some(Instant::now());
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    // Publish in drain batches of 10 as fast as the fast client keeps up
    // (it stays within 40 events, 320 KB); time every call.
    let base = TestEvent::tls(1).with_payload(vec![b'p'; PAYLOAD]);
    let mut slowest = Duration::ZERO;
    let mut published = 0u64;
    let end = Instant::now() + Duration::from_secs(30);
    while published < EVENTS {
        while published > received.load(Ordering::Acquire) + 40 {
            assert!(
                Instant::now() < end,
                "the fast client stalled at {}",
                received.load(Ordering::Acquire)
            );
            std::thread::yield_now();
        }
        let t = Instant::now();
        for _ in 0..10 {
            s.publishers[0].event(&base.fields(), base.kind);
        }
        s.publishers[0].flush();
        slowest = slowest.max(t.elapsed());
        published += 10;
    }
    let (seqs, _fast) = reader.join().expect("fast client");
    assert_eq!(
        seqs,
        (1..=EVENTS).collect::<Vec<_>>(),
        "the fast client gets every event in order"
    );
    assert!(
        slowest < Duration::from_millis(500),
        "publishing 10 events took {slowest:?}: the publisher must not wait for clients"
    );
    watcher.join().unwrap();
    let t_drop = first_drop
        .lock()
        .unwrap()
        .expect("the slow client had drops");

    // The slow client starts reading once its deadline has surely passed
    // (but well within the 2 s the server gives a closing client).
    let wake = t_drop + Duration::from_millis(1500);
    std::thread::sleep(wake.saturating_duration_since(Instant::now()));
    let ((code, reason), entries) = slow
        .read_until_close()
        .expect("the slow client gets a close frame");
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("too slow"), "{reason}");
    let got: Vec<u64> = entries
        .iter()
        .filter_map(|e| crate::util::as_event(e).map(|x| x.0))
        .collect();
    assert!(
        !got.is_empty() && (got.len() as u64) < EVENTS / 2,
        "slow client got {}",
        got.len()
    );
    assert_eq!(
        got,
        (1..=got.len() as u64).collect::<Vec<_>>(),
        "what the slow client got is a prefix, whole frames"
    );
    // Every event the slow client did not get is counted as dropped, and
    // the fast client has none.
    let c = s.wait_counters("slow client gone", |c| c["ws_clients"] == 1);
    let dropped = EVENTS - got.len() as u64;
    assert_eq!(c["ws_dropped"].as_u64(), Some(dropped), "{c}");
    assert_eq!(
        s.metric("ecapture_websocket_dropped_events_total"),
        dropped as f64
    );
    assert_eq!(
        c["ws_sent"].as_u64(),
        Some(EVENTS + got.len() as u64),
        "{c}"
    );
    assert_eq!(c["server_queue_dropped"].as_u64(), Some(0), "{c}");
}

/// A client that goes away with entries still queued: every event published
/// is written to its socket or counted as dropped — by the client's queue, or
/// before the server when the client's queued entries pin the batch pool.
#[test]
fn entries_queued_for_a_client_that_disconnects_are_counted() {
    let mut cfg = config();
    cfg.limits.client_queue.frames = 8192;
    cfg.limits.client_queue.bytes = 64 << 20;
    let mut s = TestServer::with(cfg);
    let slow = RawWs::connect(s.addr, "/");
    s.wait_counters("one client", |c| c["ws_clients"] == 1);
    let events: Vec<TestEvent> = (1..=EVENTS)
        .map(|i| TestEvent::tls(i).with_payload(vec![b'q'; PAYLOAD]))
        .collect();
    for chunk in events.chunks(100) {
        s.publish(chunk);
    }
    // More than the socket buffers hold is queued in the server now.
    let c = s.wait_counters("entries queued", |c| c["ws_sent"].as_u64() > Some(0));
    assert!(c["ws_sent"].as_u64().unwrap() < EVENTS, "{c}");
    drop(slow);
    let c = s.wait_counters("client gone", |c| c["ws_clients"] == 0);
    let n = |k: &str| c[k].as_u64().unwrap();
    assert!(n("ws_dropped") > 0, "{c}");
    assert_eq!(
        n("ws_sent") + n("ws_dropped") + n("server_queue_dropped"),
        EVENTS,
        "every event written or counted: {c}"
    );
    s.assert_serving("a client left with entries queued");
}
