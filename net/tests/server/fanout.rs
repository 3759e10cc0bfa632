//! Fan-out under load: a client that never reads does not slow the publisher
//! or a fast client; its drops are counted and it is closed with 1008 after
//! the slow-client deadline.

use crate::util::{
    RawWs, TestEvent, TestServer, WAIT, config, metric_sum, next_event, series_value,
    ws_client_status, ws_ready,
};
use rcapture_core::worker::EventSink;
use rcapture_proto::LogEntry;
use serde_json::Value;
use std::io;
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
                let r =
                    crate::util::request(addr, b"GET /status HTTP/1.1\r\nHost: localhost\r\n\r\n");
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
    let text = s.get("/metrics").text();
    assert_eq!(
        metric_sum(&text, "ecapture_websocket_dropped_events_total"),
        Some(dropped as f64),
        "{text}"
    );
    // Dropped while its queue was full, then what was queued at the close.
    let by = &c["ws_dropped_by_reason"];
    assert!(by["queue_full"].as_u64() > Some(0), "{c}");
    assert_eq!(
        (&by["max_rate"], &by["share"]),
        (&0.into(), &0.into()),
        "{c}"
    );
    assert_eq!(
        by["queue_full"].as_u64().unwrap() + by["closed"].as_u64().unwrap(),
        dropped,
        "{c}"
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

/// The `/status` `websocket.clients` (or `.closed`) counts of one client,
/// checked for its own ledger: every entry numbered for it (`seq`) was
/// written, is queued, or was dropped for one of the reasons.
fn client_ledger(c: &Value) -> (u64, u64, u64, [u64; 4]) {
    let n = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("a count: {c}"));
    let by = &c["dropped_by_reason"];
    let reasons = ["queue_full", "share", "max_rate", "closed"].map(|r| n(&by[r]));
    let queued = c["queued"].as_u64().unwrap_or(0);
    assert_eq!(
        reasons.iter().sum::<u64>() + n(&by["deflate"]),
        n(&c["dropped"]),
        "{c}"
    );
    assert_eq!(
        n(&c["sent"]) + queued + n(&c["dropped"]),
        n(&c["seq"]),
        "sent + queued + dropped = numbered: {c}"
    );
    (n(&c["seq"]), n(&c["sent"]), queued, reasons)
}

/// Two clients that never read and one that does, with far more events than
/// the stalled clients' queues hold: the stalled clients cannot keep the
/// workers' batch buffers (what they queue beyond their share of the pool is
/// copied out, into a spill of 256 KiB here), so the reader gets every event
/// without a gap, nothing is dropped before the server, and the stalled
/// clients' drops are their own — their share held and their spill full —
/// counted by reason, and kept once they are gone. Their spills together
/// stay within the server-wide budget (384 KiB here, less than two full
/// spills), shown in `/status` and `/metrics`.
#[test]
fn stalled_clients_cannot_take_the_batch_pool_from_a_reader() {
    const N: u64 = 24_000;
    const CHUNK: u64 = 16;
    let mut cfg = config();
    cfg.limits.client_queue.frames = 2048;
    cfg.limits.client_queue.bytes = 2 << 20;
    cfg.limits.client_spill_bytes = 256 << 10;
    cfg.limits.spill_budget_bytes = 384 << 10;
    cfg.limits.stuck_deadline = Duration::from_secs(600);
    let mut s = TestServer::with(cfg);
    let stalled: Vec<RawWs> = (0..2).map(|_| RawWs::connect(s.addr, "/ws")).collect();
    let locals: Vec<_> = stalled
        .iter()
        .map(|w| w.sock.local_addr().unwrap())
        .collect();
    let mut ws = ws_ready(s.addr, "/ws");
    let reader_local = ws.get_ref().local_addr().unwrap();
    s.wait_counters("3 clients", |c| c["ws_clients"] == 3);

    let received = Arc::new(AtomicU64::new(0));
    let reader = {
        let received = Arc::clone(&received);
        std::thread::spawn(move || {
            ws.get_mut()
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut seqs = Vec::with_capacity(N as usize);
            while (seqs.len() as u64) < N {
                let msg = match ws.read() {
                    Ok(m) => m,
                    Err(tungstenite::Error::Io(e))
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        break;
                    }
                    Err(e) => panic!("reader: {e}"),
                };
                if let tungstenite::Message::Binary(b) = msg {
                    let e = <LogEntry as prost::Message>::decode(&b[..]).unwrap();
                    if let Some((seq, _)) = crate::util::as_event(&e) {
                        seqs.push(seq);
                        received.store(seqs.len() as u64, Ordering::Release);
                    }
                }
            }
            (seqs, ws)
        })
    };

    // 1 kB events in drain batches of 16, kept within 4 batches of the reader.
    let base = TestEvent::tls(1).with_payload(vec![b's'; 1000]);
    let mut published = 0u64;
    let mut starved = None;
    while published < N && starved.is_none() {
        let end = Instant::now() + Duration::from_secs(3);
        while published > received.load(Ordering::Acquire) + 4 * CHUNK {
            if Instant::now() >= end {
                starved = Some(received.load(Ordering::Acquire));
                break;
            }
            std::thread::yield_now();
        }
        for _ in 0..CHUNK {
            s.publishers[0].event(&base.fields(), base.kind);
        }
        s.publishers[0].flush();
        published += CHUNK;
    }
    let (seqs, _ws) = reader.join().expect("reader");
    let st = s.status();
    let c = &st["counters"];
    assert_eq!(
        starved, None,
        "the reader stopped getting events (at {:?} of {published}): {c}",
        starved
    );
    assert_eq!(
        c["server_queue_dropped"], 0,
        "nothing dropped before the server: {c}"
    );
    assert!(
        seqs.iter().copied().eq(1..=N),
        "the reader got {} events, not 1..={N} in order (first gap after {:?}): {c}",
        seqs.len(),
        seqs.iter()
            .zip(1..)
            .find(|(s, i)| **s != *i)
            .map(|(_, i)| i - 1)
    );
    let r = ws_client_status(&st, reader_local).expect("the reader in /status");
    assert_eq!(client_ledger(&r), (N, N, 0, [0; 4]), "reader: {r}");
    let mut before = Vec::new();
    for local in &locals {
        let w = ws_client_status(&st, *local).expect("a stalled client in /status");
        let (seq, sent, queued, [queue_full, share, max_rate, closed]) = client_ledger(&w);
        assert_eq!(seq, N, "{w}");
        assert!(share > 0 && sent + queued < N / 2, "{w}");
        assert_eq!((queue_full, max_rate, closed), (0, 0, 0), "{w}");
        before.push((sent, queued, share));
    }
    assert!(
        c["ws_spilled"].as_u64() > Some(0),
        "entries were copied out of the pool: {c}"
    );
    let spills: Vec<u64> = locals
        .iter()
        .map(|l| {
            ws_client_status(&st, *l).unwrap()["spill_bytes"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let held = c["ws_spill_bytes"].as_u64().unwrap();
    assert_eq!(held, spills.iter().sum::<u64>(), "{c}");
    assert!(
        held <= 384 << 10,
        "spills hold {held} B, budget 384 KiB: {c}"
    );
    assert!(
        spills.iter().all(|&b| b <= 256 << 10) && spills.iter().any(|&b| b < 256 << 10),
        "the budget, not the clients' own limit, stopped a spill: {spills:?}"
    );
    let text = s.get("/metrics").text();
    assert_eq!(
        series_value(&text, "ecapture_websocket_spill_bytes"),
        Some(held as f64),
        "{text}"
    );
    let share: u64 = before.iter().map(|b| b.2).sum();
    assert_eq!(
        series_value(
            &text,
            "ecapture_websocket_dropped_events_total{reason=\"share\"}"
        ),
        Some(share as f64),
        "{text}"
    );
    for (local, b) in locals.iter().zip(&before) {
        let name = ws_client_status(&st, *local).unwrap()["client"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            series_value(
                &text,
                &format!(
                    "ecapture_websocket_client_dropped_events{{client=\"{name}\",reason=\"share\"}}"
                )
            ),
            Some(b.2 as f64),
            "{text}"
        );
    }

    // The stalled clients go: what they had queued is dropped as "closed",
    // and their final counts stay in /status.
    drop(stalled);
    let c = s.wait_counters("stalled clients gone", |c| c["ws_clients"] == 1);
    let st = s.status();
    let closed = st["websocket"]["closed"]
        .as_array()
        .expect("closed clients");
    assert_eq!(st["websocket"]["closed_total"], 2, "{st}");
    for (local, (sent, queued, share)) in locals.iter().zip(&before) {
        let prefix = format!("{local}#");
        let w = closed
            .iter()
            .find(|w| w["client"].as_str().unwrap().starts_with(&prefix))
            .unwrap_or_else(|| panic!("{local} in the closed clients: {st}"));
        assert_eq!(
            client_ledger(w),
            (N, *sent, 0, [0, *share, 0, *queued]),
            "{w}"
        );
        assert!(w["closed"].is_string(), "{w}");
    }
    let total: u64 = before.iter().map(|(_, q, f)| q + f).sum();
    assert_eq!(c["ws_dropped"].as_u64(), Some(total), "{c}");
    assert_eq!(c["server_queue_dropped"], 0, "{c}");
    s.assert_serving("stalled clients");
}

/// A client that stops reading while its queue is far from its bounds drops
/// for its share of the batch pool; that is being stuck too: it is closed
/// with 1008 once the slow-client deadline has passed, however many events
/// keep coming, and its final counts say so.
#[test]
fn a_client_stuck_on_its_share_is_closed_as_too_slow() {
    let mut cfg = config();
    cfg.limits.client_spill_bytes = 64 << 10;
    cfg.limits.stuck_deadline = Duration::from_secs(1);
    let mut s = TestServer::with(cfg);
    let mut slow = RawWs::connect(s.addr, "/ws");
    s.wait_counters("one client", |c| c["ws_clients"] == 1);
    let base = TestEvent::tls(1).with_payload(vec![b'x'; PAYLOAD]);
    // Enough to fill the socket buffers and the client's share, then a
    // drain batch every 20 ms until the server has closed it: within the
    // deadline and the 2 s a closing client gets, counted from its first
    // drop.
    let mut stuck_at = None;
    let end = Instant::now() + WAIT;
    loop {
        for _ in 0..10 {
            s.publishers[0].event(&base.fields(), base.kind);
        }
        s.publishers[0].flush();
        let c = s.counters();
        if stuck_at.is_none() && c["ws_dropped_by_reason"]["share"].as_u64() > Some(0) {
            stuck_at = Some(Instant::now());
        }
        if c["ws_clients"] == 0 {
            break;
        }
        let limit = stuck_at.map_or(end, |t| t + Duration::from_secs(5));
        assert!(
            Instant::now() < limit,
            "not closed while events keep coming: {c}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // It never read: the close frame may not have fit in its socket.
    match slow.read_until_close() {
        Ok(((code, reason), _)) => assert_eq!(code, 1008, "{reason}"),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}"),
    }
    let c = s.counters();
    let st = s.status();
    let w = &st["websocket"]["closed"][0];
    assert_eq!(w["closed"], "too slow", "{st}");
    let (seq, sent, _, [queue_full, share, max_rate, _]) = client_ledger(w);
    assert!(share > 0 && queue_full == 0 && max_rate == 0, "{w}");
    assert!(sent < seq, "{w}");
    assert_eq!(c["server_queue_dropped"], 0, "{c}");
}
