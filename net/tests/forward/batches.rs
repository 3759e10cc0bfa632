//! Batching (size and timeout), timestamp order, seq, module filter, and the
//! protobuf / NDJSON bodies, plain and gzip'd.

use crate::config;
use crate::support::{Collector, TempDir, batch, body, event, header, wait_for};
use base64::Engine;
use prost::Message;
use rcapture_core::event::Module;
use rcapture_net::forward::{ForwardFormat, Forwarder};
use std::io::Read;
use std::time::{Duration, Instant};

/// (seq, timestamp, uuid, payload) of one forwarded entry.
type Row = (u64, i64, String, Vec<u8>);

const KEYS: [&str; 18] = [
    "timestamp",
    "uuid",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "pid",
    "pname",
    "type",
    "length",
    "payload",
    "tid",
    "uid",
    "module",
    "fd",
    "truncated",
    "status",
    "seq",
];

fn rows_of(format: ForwardFormat, gzip: bool, rec: &serde_json::Value) -> Vec<Row> {
    let mut raw = body(rec);
    assert_eq!(header(rec, "content-encoding") == Some("gzip"), gzip);
    if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .expect("a gzip body");
        raw = out;
    }
    match format {
        ForwardFormat::Protobuf => {
            assert_eq!(header(rec, "content-type"), Some("application/x-protobuf"));
            let b = rcapture_proto::LogBatch::decode(&raw[..]).expect("a LogBatch");
            b.entries
                .into_iter()
                .map(|e| {
                    assert_eq!(e.log_type, rcapture_proto::LogType::Event as i32);
                    let Some(rcapture_proto::log_entry::Payload::EventPayload(ev)) = e.payload
                    else {
                        panic!("not an event entry")
                    };
                    assert_eq!(
                        (
                            ev.pid,
                            ev.pname.as_str(),
                            ev.length as usize,
                            ev.tid,
                            ev.module.as_str()
                        ),
                        (4242, "curl", ev.payload.len(), 4243, "tls")
                    );
                    (e.seq, ev.timestamp, ev.uuid, ev.payload)
                })
                .collect()
        }
        _ => {
            assert_eq!(header(rec, "content-type"), Some("application/x-ndjson"));
            let text = String::from_utf8(raw).expect("UTF-8 NDJSON");
            assert!(text.ends_with('\n'));
            text.lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
                    let o = v.as_object().expect("an object");
                    let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
                    keys.sort_unstable();
                    let mut want = KEYS.to_vec();
                    want.sort_unstable();
                    assert_eq!(keys, want, "{l}");
                    let payload = base64::engine::general_purpose::STANDARD
                        .decode(v["payload"].as_str().expect("payload"))
                        .expect("base64 payload");
                    assert_eq!(v["length"].as_u64(), Some(payload.len() as u64));
                    assert_eq!(v["module"], "tls");
                    (
                        v["seq"].as_u64().expect("seq"),
                        v["timestamp"].as_i64().expect("timestamp"),
                        v["uuid"].as_str().expect("uuid").to_string(),
                        payload,
                    )
                })
                .collect()
        }
    }
}

/// 12 events (two worker batches, out of order, plus one of a filtered
/// module), batch_size 5 → batches of 5, 5 and 2, the last by the timeout.
fn twelve_events(format: ForwardFormat, gzip: bool) {
    let dir = TempDir::new("batch");
    let c = Collector::start(&dir, "c", &[]);
    let mut cfg = config(
        &format!("http://127.0.0.1:{}/ingest?token=a%20b", c.port),
        format,
    );
    cfg.batch_size = 5;
    cfg.batch_timeout = Duration::from_millis(400);
    cfg.gzip = gzip;
    cfg.modules = vec![Module::Tls];
    let f = Forwarder::start(cfg).expect("start");
    let uuids: Vec<String> = (0..12).map(|i| format!("sock:uuid-{i}")).collect();
    let payloads: Vec<Vec<u8>> = (0..12)
        .map(|i| format!("GET /{i} HTTP/1.1\r\n\"\\\u{1}\r\n").into_bytes())
        .collect();
    // Event i has timestamp 100 + i; worker X holds the even ones and worker
    // Y the odd ones, each newest first.
    let ev = |i: usize| event(100 + i as i64, &uuids[i], "tls", &payloads[i]);
    let x: Vec<_> = (0..12).rev().filter(|i| i % 2 == 0).map(ev).collect();
    let mut y: Vec<_> = (0..12).rev().filter(|i| i % 2 == 1).map(ev).collect();
    y.insert(2, event(1, "bash-uuid", "bash", b"ls"));
    let t0 = Instant::now();
    f.offer(&batch(&x));
    f.offer(&batch(&y));
    assert!(wait_for(Duration::from_secs(10), || c.records().len() >= 3));
    let last_at = t0.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let stats = f.shutdown(Duration::from_secs(2));
    let recs = c.records();
    assert_eq!(recs.len(), 3, "{recs:#?}");
    assert!(
        last_at >= Duration::from_millis(350),
        "the last batch waits for the timeout: {last_at:?}"
    );
    let mut batches = Vec::new();
    for r in &recs {
        assert_eq!(
            (r["method"].as_str(), r["path"].as_str()),
            (Some("POST"), Some("/ingest?token=a%20b"))
        );
        let rows = rows_of(format, gzip, r);
        let ts: Vec<i64> = rows.iter().map(|r| r.1).collect();
        assert!(
            ts.windows(2).all(|w| w[0] < w[1]),
            "entries in timestamp order: {ts:?}"
        );
        batches.push(rows);
    }
    // Two requests are in flight by default: the two full batches may
    // arrive in either order; `seq` orders them.
    batches.sort_by_key(|rows| rows.first().map(|r| r.0));
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    assert_eq!(sizes, [5, 5, 2]);
    let all: Vec<Row> = batches.into_iter().flatten().collect();
    let seqs: Vec<u64> = all.iter().map(|r| r.0).collect();
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
    let mut all = all;
    all.sort_by_key(|r| r.1);
    for (i, (_, ts, uuid, payload)) in all.iter().enumerate() {
        assert_eq!(
            (*ts, uuid, payload),
            (100 + i as i64, &uuids[i], &payloads[i])
        );
    }
    assert_eq!(
        (
            stats.sent_events,
            stats.sent_batches,
            stats.retries,
            stats.dropped_events,
            stats.queue_bytes
        ),
        (12, 3, 0, 0, 0),
        "{stats:?}"
    );
}

#[test]
fn protobuf_batches() {
    twelve_events(ForwardFormat::Protobuf, false);
}

#[test]
fn protobuf_batches_gzip() {
    twelve_events(ForwardFormat::Protobuf, true);
}

#[test]
fn ndjson_batches() {
    twelve_events(ForwardFormat::Json, false);
}

#[test]
fn ndjson_batches_gzip() {
    twelve_events(ForwardFormat::Json, true);
}
