//! The byte-stream outputs under concurrency and a stuck writer: the text
//! blocks of events from several workers at once come out whole (never
//! interleaved), and a writer that cannot write never blocks a worker — its
//! events are dropped and counted instead.

use rcapture_core::event::{EventFields, EventKind};
use rcapture_core::output::{FramePoolConfig, StreamOutput};
use rcapture_core::text::{PayloadStyle, write_text};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An HTTP-like payload of worker `w`'s event `i`, of varied size.
fn payload(w: usize, i: usize) -> Vec<u8> {
    let mut p = format!("POST /w{w}/e{i} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes();
    let lines = [1, 3, 50, 900][i % 4] * (1 + w);
    for n in 0..lines {
        p.extend_from_slice(format!("w{w} e{i} line {n}\r\n").as_bytes());
    }
    p
}

fn event(w: usize, payload: &[u8]) -> EventFields<'_> {
    EventFields {
        timestamp: 1_764_134_928_000_000_000,
        uuid: "u",
        src_ip: "127.0.0.1",
        src_port: 40000,
        dst_ip: "127.0.0.1",
        dst_port: 443,
        pid: w as i64 + 100,
        pname: "app",
        r#type: 1,
        payload,
        tid: w as u32 + 100,
        module: "tls",
        fd: 3,
        ..Default::default()
    }
}

/// Takes at most 4 KiB per `write` call (like a pipe under pressure).
#[derive(Clone, Default)]
struct Dribble(Arc<Mutex<Vec<u8>>>);

impl Write for Dribble {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = b.len().min(4096);
        self.0.lock().unwrap().extend_from_slice(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn text_blocks_of_concurrent_workers_never_interleave() {
    const WORKERS: usize = 4;
    const EVENTS: usize = 2000;
    let sink = Dribble::default();
    let mut out = StreamOutput::text(
        Box::new(sink.clone()),
        Arc::new(AtomicBool::new(false)),
        WORKERS,
        FramePoolConfig {
            frames: 64,
            frame_bytes: 16 * 1024,
        },
    );
    let threads: Vec<_> = std::mem::take(&mut out.sinks)
        .into_iter()
        .enumerate()
        .map(|(w, mut s)| {
            std::thread::spawn(move || {
                for i in 0..EVENTS {
                    let p = payload(w, i);
                    s.event(&event(w, &p), EventKind::Data);
                    if i % 7 == 0 {
                        s.flush();
                    }
                }
                s.flush();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = out.finish().unwrap();
    let text = sink.0.lock().unwrap().clone();
    let written = stats.delivered.load(Relaxed);
    let behind = stats.behind.load(Relaxed);
    assert_eq!(written + behind, (WORKERS * EVENTS) as u64);
    assert_eq!(stats.dropped.load(Relaxed), behind);

    // The output is a concatenation of whole blocks; each worker's blocks
    // in its order (a dropped event is skipped, never cut).
    let mut next = [0usize; WORKERS];
    let mut pos = 0;
    let mut blocks = 0u64;
    let mut block = Vec::new();
    while pos < text.len() {
        let line_end = pos + text[pos..].iter().position(|&b| b == b'\n').unwrap();
        let header = std::str::from_utf8(&text[pos..line_end]).unwrap();
        let pid: usize = header
            .split(' ')
            .find_map(|f| f.strip_prefix("pid="))
            .unwrap_or_else(|| panic!("not a header at byte {pos}: {header:?}"))
            .parse()
            .unwrap();
        let w = pid - 100;
        loop {
            let i = next[w];
            assert!(
                i < EVENTS,
                "worker {w}: no event matches the block at byte {pos}"
            );
            next[w] += 1;
            block.clear();
            let p = payload(w, i);
            write_text(
                &event(w, &p),
                EventKind::Data,
                PayloadStyle::Escaped,
                &mut block,
            );
            if text[pos..].starts_with(&block) {
                break;
            }
        }
        pos += block.len();
        blocks += 1;
    }
    assert_eq!(blocks, written);
    // CRLF payload lines end as plain lines.
    let first = payload(0, 0);
    block.clear();
    write_text(
        &event(0, &first),
        EventKind::Data,
        PayloadStyle::Escaped,
        &mut block,
    );
    assert!(
        String::from_utf8_lossy(&block)
            .contains("\nPOST /w0/e0 HTTP/1.1\nHost: x\n\nw0 e0 line 0\n\n"),
        "{}",
        String::from_utf8_lossy(&block)
    );
}

/// Blocks in `write` until the gate's sender is dropped.
struct Stuck(Mutex<mpsc::Receiver<()>>, Arc<Mutex<Vec<u8>>>);

impl Write for Stuck {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.lock().unwrap().recv();
        self.1.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_stuck_writer_never_blocks_a_worker() {
    const EVENTS: usize = 10_000;
    let (gate, gate_rx) = mpsc::channel::<()>();
    let written = Arc::new(Mutex::new(Vec::new()));
    let mut out = StreamOutput::text(
        Box::new(Stuck(Mutex::new(gate_rx), Arc::clone(&written))),
        Arc::new(AtomicBool::new(false)),
        1,
        FramePoolConfig {
            frames: 4,
            frame_bytes: 4096,
        },
    );
    let mut s = out.sinks.pop().unwrap();
    let (done_tx, done) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        for i in 0..EVENTS {
            let p = payload(0, i);
            s.event(&event(0, &p), EventKind::Data);
        }
        s.flush();
        done_tx.send(()).unwrap();
        s
    });
    done.recv_timeout(Duration::from_secs(30))
        .expect("the worker finished while the writer was stuck");
    let behind = out.stats.behind.load(Relaxed);
    assert!(behind > 0, "events beyond the frames are dropped");
    assert!(
        written.lock().unwrap().is_empty(),
        "the writer is still stuck"
    );
    drop(worker.join().unwrap());
    drop(gate);
    let stats = out.finish().unwrap();
    assert_eq!(
        stats.delivered.load(Relaxed) + stats.behind.load(Relaxed),
        EVENTS as u64
    );
    assert_eq!(stats.dropped.load(Relaxed), behind);
    assert!(stats.delivered.load(Relaxed) > 0);
}

/// One record of every kind, each module's (the key records twice, as a
/// handshake's secrets can be reported again).
fn every_kind() -> Vec<Vec<u8>> {
    use rcapture_core::records::{CONN_ACCEPT, DIR_RECV, DIR_SEND, RecordKind as K};
    use rcapture_core::synth;
    let t = synth::tuple(
        "10.0.0.1:40000".parse().unwrap(),
        "10.0.0.2:443".parse().unwrap(),
    );
    let h = |k, pid, comm: &str| synth::header(k, pid, pid + 1, 1000, comm, 1);
    let data =
        |k, pid, comm| synth::single(synth::data(h(k, pid, comm), 5, DIR_SEND, 1, t), b"GET /");
    let tls12 = synth::master_secret(
        h(K::MasterSecret, 10, "curl"),
        0x0303,
        0x0300_c02f,
        [1; 32],
        1,
    );
    let tls13 = synth::master_secret(
        h(K::MasterSecret, 10, "curl"),
        0x0304,
        0x0300_1301,
        [2; 32],
        1,
    );
    let go = synth::gotls_key(
        h(K::GotlsKey, 50, "goclient"),
        "CLIENT_RANDOM",
        [3; 32],
        &[4; 48],
    );
    vec![
        data(K::TlsData, 10, "curl"),
        data(K::GnutlsData, 20, "gnutls-cli"),
        data(K::NssData, 30, "tstclnt"),
        data(K::GotlsData, 50, "goclient"),
        tls12.clone(),
        tls13.clone(),
        go.clone(),
        tls12,
        tls13,
        go,
        synth::single(
            synth::bash(h(K::Bash, 60, "bash"), 1, 2),
            b"ls /nonexistent",
        ),
        synth::single(
            synth::query(h(K::MysqlQuery, 70, "mysqld"), -1),
            b"SELECT 1",
        ),
        synth::single(synth::query(h(K::PgQuery, 80, "postgres"), 0), b"SELECT 2"),
        synth::conn(h(K::Conn, 10, "curl"), 5, CONN_ACCEPT, 1, t),
        synth::single(
            synth::packet(h(K::Packet, 0, "swapper/0"), 2, DIR_RECV),
            &[0x45; 20],
        ),
    ]
}

/// The text output writes every kind's block as `write_text` renders it,
/// in the style the live hex flag gives at that moment; the key log output
/// of the same events writes the key log lines of every module (OpenSSL
/// 1.2 and 1.3, Go) once each, and nothing of the other kinds.
#[test]
fn every_kind_in_text_and_keylog_outputs() {
    use rcapture_core::decode::decode;
    use rcapture_core::event::{Clock, EventScratch, event_fields};
    let records = every_kind();
    let text_sink = Dribble::default();
    let key_sink = Dribble::default();
    let hex = Arc::new(AtomicBool::new(false));
    let pool = FramePoolConfig::default();
    let mut text = StreamOutput::text(Box::new(text_sink.clone()), Arc::clone(&hex), 1, pool);
    let mut keys = StreamOutput::keylog(Box::new(key_sink.clone()), 1, pool);
    let (mut ts, mut ks) = (text.sinks.pop().unwrap(), keys.sinks.pop().unwrap());
    let clock = Clock::from_offset(0);
    let mut scratch = EventScratch::new();
    let mut want_text = Vec::new();
    let mut want_keys = Vec::new();
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let mut key_events = 0;
    for (pass, style) in [PayloadStyle::Escaped, PayloadStyle::Hex]
        .into_iter()
        .enumerate()
    {
        hex.store(style == PayloadStyle::Hex, Relaxed);
        for raw in &records {
            let rec = decode(raw).unwrap();
            let kind = EventKind::of(rec.kind());
            let ev = event_fields(&rec, 0, &clock, &mut scratch);
            ts.event(&ev, kind);
            ks.event(&ev, kind);
            write_text(&ev, kind, style, &mut want_text);
            if kind == EventKind::MasterKey {
                key_events += 1;
                // Each record's lines once: the second copy is a duplicate.
                if pass == 0 && !seen.iter().any(|p| p == ev.payload) {
                    seen.push(ev.payload.to_vec());
                    want_keys.extend_from_slice(ev.payload);
                }
            }
        }
        ts.flush();
        ks.flush();
    }
    drop((ts, ks));
    let tstats = text.finish().unwrap();
    let kstats = keys.finish().unwrap();
    let got_text = String::from_utf8(text_sink.0.lock().unwrap().clone()).unwrap();
    let got_keys = String::from_utf8(key_sink.0.lock().unwrap().clone()).unwrap();
    assert_eq!(got_text, String::from_utf8(want_text).unwrap());
    assert_eq!(tstats.delivered.load(Relaxed), 2 * records.len() as u64);
    // Every kind is in the text, its payload in the style of its pass.
    for line in [
        "Z tls pid=10 tid=11 comm=curl fd=5 10.0.0.1:40000->10.0.0.2:443 send 5 bytes\nGET /\n\n",
        "Z gnutls pid=20 tid=21 comm=gnutls-cli fd=5 10.0.0.1:40000->10.0.0.2:443 send 5 bytes\nGET /\n\n",
        "Z nss pid=30 tid=31 comm=tstclnt fd=5 10.0.0.1:40000->10.0.0.2:443 send 5 bytes\n\
         00000000  47 45 54 20 2f                                    |GET /|\n\n",
        "Z gotls pid=50 tid=51 comm=goclient fd=5 10.0.0.1:40000->10.0.0.2:443 send 5 bytes\nGET /\n\n",
        "Z tls pid=10 tid=11 comm=curl masterkey TLS1.2 client_random=0101",
        "Z tls pid=10 tid=11 comm=curl masterkey TLS1.3 client_random=0202",
        "Z gotls pid=50 tid=51 comm=goclient masterkey client_random=0303",
        "Z bash pid=60 uid=1000 comm=bash status=2: ls /nonexistent\n\n",
        "Z bash pid=60 uid=1000 comm=bash status=2 15 bytes\n00000000  6c 73",
        "Z mysqld pid=70 tid=71 comm=mysqld query (ret=-1)\nSELECT 1\n\n",
        "Z postgres pid=80 tid=81 comm=postgres query\n00000000  53 45",
        "Z tls pid=10 tid=11 comm=curl fd=5 accept 10.0.0.1:40000->10.0.0.2:443\n\n",
        "Z tls pid=0 comm=swapper/0 ifindex=2 ingress 20 bytes\n00000000  45 45",
    ] {
        assert!(got_text.contains(line), "{line:?} not in:\n{got_text}");
    }
    // Key lines are never hex dumps.
    assert!(!got_text.contains("|CLIENT_RANDOM"), "{got_text}");
    let labels: Vec<&str> = got_keys
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        labels,
        [
            "CLIENT_RANDOM",
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
            "SERVER_HANDSHAKE_TRAFFIC_SECRET",
            "CLIENT_TRAFFIC_SECRET_0",
            "SERVER_TRAFFIC_SECRET_0",
            "EXPORTER_SECRET",
            "CLIENT_RANDOM",
        ]
    );
    assert_eq!(got_keys, String::from_utf8(want_keys).unwrap());
    assert!(got_keys.contains(&format!(
        "CLIENT_RANDOM {} {}\n",
        "03".repeat(32),
        "04".repeat(48)
    )));
    assert_eq!(kstats.delivered.load(Relaxed), key_events);
    assert_eq!(kstats.duplicates.load(Relaxed), 3 * 7);
}
