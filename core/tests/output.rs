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
