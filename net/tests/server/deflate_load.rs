//! Issue 20.7: permessage-deflate clients cannot starve the other outputs.
//! Compressing every event for each of 200 deflate clients is far more work
//! than the loop can do; the loop bounds it per round, so the forwarder and
//! the event file still get every event, and what the deflate clients miss
//! is counted as theirs (reason `deflate`).

use crate::forward_live::{collector, events_in};
use crate::util::{RawWs, TestEvent, TestServer, WAIT, config, connect, metric_value};
use prost::Message;
use rcapture_net::eventfile::{EventFileConfig, EventFileFormat};
use rcapture_net::forward::{CollectorUrl, ForwardConfig, ForwardFormat};
use rcapture_proto::LogEntry;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const DEFLATE_CLIENTS: usize = 200;
/// Events published, in bursts of [`BURST`] every [`PERIOD`] (10 000/s).
const EVENTS: u64 = 30_000;
const BURST: u64 = 20;
const PERIOD: Duration = Duration::from_millis(2);

/// A client that negotiates permessage-deflate and reads (discarding) all it gets.
fn deflate_client(s: &TestServer) -> TcpStream {
    let mut sock = connect(s.addr);
    write!(
        sock,
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        crate::util::HANDSHAKE_KEY
    )
    .unwrap();
    let ws = RawWs::on_upgraded(sock);
    assert!(
        ws.head.to_ascii_lowercase().contains("permessage-deflate"),
        "deflate negotiated: {}",
        ws.head
    );
    ws.sock
}

#[test]
fn deflate_clients_do_not_cost_the_forwarder_and_event_file_their_events() {
    let (port, rx) = collector();
    let dir = std::env::temp_dir().join(format!("rcapture-deflate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("events.pb");
    let mut cfg = config();
    let mut fwd = ForwardConfig::new(
        CollectorUrl::parse(&format!("http://127.0.0.1:{port}/c")).unwrap(),
        ForwardFormat::Protobuf,
    );
    fwd.batch_size = 1000;
    fwd.batch_timeout = Duration::from_millis(50);
    cfg.forward = Some(fwd);
    cfg.event_file = Some(EventFileConfig::new(
        file.clone(),
        EventFileFormat::Protobuf,
        0,
    ));
    let mut s = TestServer::with(cfg);
    let socks: Vec<TcpStream> = (0..DEFLATE_CLIENTS).map(|_| deflate_client(&s)).collect();
    // One thread reads every deflate client, so none of them is slow.
    let done = Arc::new(AtomicBool::new(false));
    let read_bytes = Arc::new(AtomicU64::new(0));
    let reader = {
        let (done, read_bytes) = (Arc::clone(&done), Arc::clone(&read_bytes));
        std::thread::spawn(move || {
            let mut socks = socks;
            for c in &socks {
                c.set_nonblocking(true).unwrap();
            }
            let mut buf = vec![0u8; 256 * 1024];
            while !done.load(Ordering::Acquire) {
                let mut any = false;
                for c in &mut socks {
                    match c.read(&mut buf) {
                        Ok(n) => {
                            any |= n > 0;
                            read_bytes.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(e) => panic!("a deflate client's read failed: {e}"),
                    }
                }
                if !any {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            socks
        })
    };
    let payload = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n".repeat(8);
    let start = Instant::now();
    let mut i = 0;
    while i < EVENTS {
        let evs: Vec<TestEvent> = (i..i + BURST)
            .map(|k| TestEvent::tls(k + 1).with_payload(payload.clone()))
            .collect();
        let w = (i / BURST) as usize % s.publishers.len();
        let p = &mut s.publishers[w];
        for e in &evs {
            rcapture_core::worker::EventSink::event(p, &e.fields(), e.kind);
        }
        rcapture_core::worker::EventSink::flush(p);
        i += BURST;
        let due = start + PERIOD * (i / BURST) as u32;
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let c = s.wait_counters("every event forwarded and written (or dropped)", |c| {
        let before = n(&c["server_queue_dropped"]);
        n(&c["forward"]["sent_events"]) + n(&c["forward"]["dropped_events"]) + before >= EVENTS
            && n(&c["event_file"]["written_events"])
                + n(&c["event_file"]["dropped_events"])
                + before
                >= EVENTS
    });
    // Nothing was lost before the outputs, nor by them.
    assert_eq!(
        c["server_queue_dropped"], 0,
        "dropped before the outputs: {c}"
    );
    assert_eq!(c["forward"]["sent_events"], EVENTS, "{c}");
    assert_eq!(c["event_file"]["written_events"], EVENTS, "{c}");
    // The collector received every event, each once.
    let mut got = 0;
    let deadline = Instant::now() + WAIT;
    while got < EVENTS && Instant::now() < deadline {
        if let Ok((ctype, body)) = rx.recv_timeout(Duration::from_millis(200)) {
            got += events_in(&ctype, &body);
        }
    }
    assert_eq!(got, EVENTS, "events at the collector");
    let st = s.status();
    // The deflate clients got what the loop could compress; the rest is
    // counted as theirs, and every client's ledger balances.
    let clients = st["websocket"]["clients"].as_array().expect("clients");
    assert_eq!(clients.len(), DEFLATE_CLIENTS, "{st}");
    let mut deflate_drops = 0;
    for w in clients {
        let by = &w["dropped_by_reason"];
        assert_eq!(n(&w["seq"]), EVENTS, "every event numbered for {w}");
        assert_eq!(
            n(&w["sent"]) + n(&w["queued"]) + n(&w["dropped"]),
            n(&w["seq"]),
            "{w}"
        );
        assert_eq!(
            n(&by["deflate"]),
            n(&w["dropped"]),
            "only deflate drops: {w}"
        );
        deflate_drops += n(&by["deflate"]);
    }
    assert!(deflate_drops > 0, "the loop could not compress it all");
    let text = s.get("/metrics").text();
    assert_eq!(
        metric_value(
            &text,
            "ecapture_websocket_dropped_events_total{reason=\"deflate\"}"
        ),
        Some(deflate_drops as f64),
        "{text}"
    );
    assert!(
        read_bytes.load(Ordering::Relaxed) > 0,
        "the clients got frames"
    );
    done.store(true, Ordering::Release);
    drop(reader.join().unwrap());
    s.assert_serving("200 deflate clients");
    // The event file holds every event, in order (read once it is closed).
    drop(s);
    let bytes = std::fs::read(&file).unwrap();
    let mut buf = &bytes[..];
    let mut seqs = Vec::new();
    while !buf.is_empty() {
        seqs.push(
            LogEntry::decode_length_delimited(&mut buf)
                .expect("a length-delimited LogEntry")
                .seq,
        );
    }
    assert!(
        seqs == (1..=EVENTS).collect::<Vec<_>>(),
        "the event file: {} entries",
        seqs.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
