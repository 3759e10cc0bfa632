//! The event file sink end to end: synthetic batches in, every rotated file read back.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use prost::Message;
use rcapture_core::encode;
use rcapture_core::event::{Detail, EventFields, EventKind, Module};
use rcapture_net::eventfile::rotate::rotated_path;
use rcapture_net::eventfile::{EventFile, EventFileConfig, EventFileFormat, EventFileStats};
use rcapture_net::publish::{Batch, EntryMeta};
use rcapture_proto::{LogEntry, LogType, log_entry::Payload};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The payload of event `i` (0-based): a unique marker, then filler of a
/// size that varies from event to event; one in 97 is larger than the
/// files' size limit.
fn payload(i: usize) -> Vec<u8> {
    let mut p = format!("marker-{i:06}|").into_bytes();
    let filler = if i % 97 == 50 {
        20_000
    } else {
        (i * 37) % 1500
    };
    p.extend((0..filler).map(|k| b'a' + ((i + k) % 26) as u8));
    p
}

/// Events `first..first + n` as one batch, encoded as the workers do.
fn batch(first: usize, n: usize) -> Arc<Batch> {
    let mut b = Batch {
        worker: 0,
        buf: Vec::new(),
        entries: Vec::new(),
    };
    for i in first..first + n {
        let p = payload(i);
        let uuid = format!("sock:{i}_1_curl_5_1_0.0.0.0:0-0.0.0.0:0_0");
        let ev = EventFields {
            timestamp: 1_764_000_000_000_000_000 + i as i64,
            uuid: &uuid,
            src_ip: "10.0.0.1",
            src_port: 40_000,
            dst_ip: "10.0.0.2",
            dst_port: 443,
            pid: 4242,
            pname: "curl",
            r#type: 1,
            payload: &p,
            tid: 4243,
            uid: 1000,
            module: "tls",
            fd: 5,
            truncated: 0,
            detail: Detail::None,
        };
        let start = b.buf.len() as u32;
        encode::encode_event_entry(&ev, &mut b.buf);
        b.entries.push(EntryMeta {
            start,
            end: b.buf.len() as u32,
            module: Module::Tls,
            kind: EventKind::Data,
            pid: 4242,
            uid: 1000,
            timestamp: ev.timestamp,
            payload_len: p.len() as u32,
        });
    }
    Arc::new(b)
}

/// Batches of mixed sizes holding `n` events in all.
fn batches(n: usize) -> Vec<Arc<Batch>> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut size = 1;
    while i < n {
        let k = size.min(n - i);
        out.push(batch(i, k));
        i += k;
        size = size % 23 + 7;
    }
    out
}

fn fresh_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rcapture-eventfile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One event read back: its seq and payload.
#[derive(Debug)]
struct Read {
    seq: u64,
    payload: Vec<u8>,
}

fn read_protobuf(mut buf: &[u8]) -> Vec<Read> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let e = LogEntry::decode_length_delimited(&mut buf).expect("length-delimited LogEntry");
        assert_eq!(e.log_type, LogType::Event as i32);
        let Some(Payload::EventPayload(ev)) = e.payload else {
            panic!("not an event: {e:?}");
        };
        assert_eq!(ev.length as usize, ev.payload.len());
        assert_eq!(ev.module, "tls");
        out.push(Read {
            seq: e.seq,
            payload: ev.payload,
        });
    }
    out
}

fn read_json(buf: &[u8]) -> Vec<Read> {
    let text = std::str::from_utf8(buf).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'));
    text.lines()
        .map(|line| {
            let v: serde_json::Value =
                serde_json::from_str(line).expect("one JSON object per line");
            let payload = STANDARD.decode(v["payload"].as_str().unwrap()).unwrap();
            assert_eq!(v["length"].as_u64().unwrap() as usize, payload.len());
            assert_eq!(v["module"], "tls");
            Read {
                seq: v["seq"].as_u64().unwrap(),
                payload,
            }
        })
        .collect()
}

/// Every file of the sink, oldest first, with what it holds.
fn read_all(path: &Path, format: EventFileFormat) -> Vec<(PathBuf, u64, Vec<Read>)> {
    let mut n = 1;
    while rotated_path(path, n).exists() {
        n += 1;
    }
    (0..n)
        .rev()
        .map(|k| rotated_path(path, k))
        .filter(|p| p.exists())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            let reads = match format {
                EventFileFormat::Protobuf => read_protobuf(&bytes),
                EventFileFormat::Json => read_json(&bytes),
            };
            (p, bytes.len() as u64, reads)
        })
        .collect()
}

fn run(format: EventFileFormat, name: &str, n: usize, max_bytes: u64) -> (PathBuf, EventFileStats) {
    let dir = fresh_dir(name);
    let path = dir.join("events");
    let mut cfg = EventFileConfig::new(&path, format, max_bytes);
    cfg.keep = 10_000;
    cfg.queue_batches = 4096;
    let sink = EventFile::start(cfg).expect("io_uring event file starts");
    for b in batches(n) {
        sink.offer(&b);
    }
    let stats = sink.shutdown().expect("clean shutdown");
    (path, stats)
}

fn every_event_once(format: EventFileFormat, name: &str) {
    const N: usize = 3000;
    const MAX: u64 = 64 * 1024;
    let (path, stats) = run(format, name, N, MAX);
    assert_eq!(stats.written_events, N as u64, "{stats:?}");
    assert_eq!(stats.dropped_events, 0, "{stats:?}");
    assert_eq!(stats.last_error, None);
    assert_eq!(stats.files_deleted, 0);

    let files = read_all(&path, format);
    assert_eq!(files.len() as u64, stats.files_rotated + 1, "{stats:?}");
    assert!(
        files.len() > 10,
        "rotation was exercised: {} files",
        files.len()
    );
    assert_eq!(files.iter().map(|f| f.1).sum::<u64>(), stats.bytes);
    let mut next = 1u64;
    for (p, size, reads) in &files {
        assert!(!reads.is_empty(), "{} is empty", p.display());
        assert!(
            *size <= MAX || reads.len() == 1,
            "{} holds {} bytes in {} entries",
            p.display(),
            size,
            reads.len()
        );
        for r in reads {
            assert_eq!(r.seq, next, "in {}", p.display());
            let i = (r.seq - 1) as usize;
            let marker = format!("marker-{i:06}|");
            assert!(r.payload.starts_with(marker.as_bytes()));
            assert_eq!(r.payload, payload(i));
            next += 1;
        }
    }
    assert_eq!(next, N as u64 + 1);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn protobuf_every_event_once_across_rotations() {
    every_event_once(EventFileFormat::Protobuf, "pb");
}

#[test]
fn json_every_event_once_across_rotations() {
    every_event_once(EventFileFormat::Json, "json");
}

#[test]
fn keeps_at_most_keep_files_and_the_newest_entries() {
    let dir = fresh_dir("keep");
    let path = dir.join("events.pb");
    std::fs::write(&path, b"left by an earlier run").unwrap();
    let mut cfg = EventFileConfig::new(&path, EventFileFormat::Protobuf, 32 * 1024);
    cfg.keep = 3;
    cfg.queue_batches = 4096;
    let sink = EventFile::start(cfg).unwrap();
    const N: usize = 1000;
    for b in batches(N) {
        sink.offer(&b);
    }
    let stats = sink.shutdown().unwrap();
    assert_eq!(stats.written_events, N as u64);
    assert!(stats.files_rotated > 4, "{stats:?}");
    // The earlier run's file counts as one rotated file; 3 are kept.
    assert_eq!(stats.files_deleted, stats.files_rotated - 3, "{stats:?}");
    assert!(!rotated_path(&path, 4).exists());
    let files = read_all(&path, EventFileFormat::Protobuf);
    assert_eq!(files.len(), 4);
    let seqs: Vec<u64> = files
        .iter()
        .flat_map(|f| f.2.iter().map(|r| r.seq))
        .collect();
    assert_eq!(*seqs.last().unwrap(), N as u64);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_full_queue_drops_counted_and_leaves_seq_gaps() {
    let dir = fresh_dir("drops");
    let path = dir.join("events.ndjson");
    let mut cfg = EventFileConfig::new(&path, EventFileFormat::Json, 0);
    cfg.queue_batches = 1;
    let sink = EventFile::start(cfg).unwrap();
    const N: usize = 5000;
    let all = batches(N);
    for _ in 0..3 {
        for b in &all {
            sink.offer(b);
        }
    }
    let stats = sink.shutdown().unwrap();
    eprintln!("queue of 1 batch: {stats:?}");
    assert_eq!(
        stats.written_events + stats.dropped_events,
        3 * N as u64,
        "{stats:?}"
    );
    assert_eq!(stats.files_rotated, 0);
    let files = read_all(&path, EventFileFormat::Json);
    let reads = &files[0].2;
    assert_eq!(reads.len() as u64, stats.written_events);
    assert!(reads.windows(2).all(|w| w[1].seq > w[0].seq));
    for r in reads {
        assert_eq!(r.payload, payload((r.seq as usize - 1) % N));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The modes of the event file's files, by path.
fn modes(path: &Path) -> Vec<(PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    (0..)
        .map(|n| rotated_path(path, n))
        .take_while(|p| p.exists())
        .map(|p| {
            let m = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
            (p, m)
        })
        .collect()
}

/// The file and every rotation are 0600 by default — also a world-readable
/// file left by an earlier run, and also with a permissive umask — and
/// exactly the configured mode when one is given.
#[test]
fn files_and_rotations_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: umask(2) only changes this process's file creation mask.
    let old = unsafe { libc::umask(0) };
    for (name, mode) in [("mode-default", None), ("mode-0640", Some(0o640))] {
        let dir = fresh_dir(name);
        let path = dir.join("events.pb");
        std::fs::write(&path, b"left by an earlier run").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut cfg = EventFileConfig::new(&path, EventFileFormat::Protobuf, 32 * 1024);
        cfg.queue_batches = 4096;
        if let Some(m) = mode {
            cfg.mode = m;
        }
        let sink = EventFile::start(cfg).unwrap();
        for b in batches(500) {
            sink.offer(&b);
        }
        let stats = sink.shutdown().unwrap();
        assert!(stats.files_rotated >= 3, "{stats:?}");
        let found = modes(&path);
        let kept = stats.files_rotated - stats.files_deleted;
        assert_eq!(found.len() as u64, kept + 1, "{found:?}");
        let want = mode.unwrap_or(0o600);
        for (p, m) in &found {
            assert_eq!(*m, want, "{} is {m:o}, not {want:o}", p.display());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    // SAFETY: as above, restoring the mask.
    unsafe { libc::umask(old) };
}
