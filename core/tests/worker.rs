//! Workers over an in-memory ring: every record drained, long calls joined,
//! filtered events and orphan records counted, everything written before `run` returns.

use rcapture_core::event::Clock;
use rcapture_core::output::{FramePoolConfig, StreamOutput};
use rcapture_core::records::{DIR_SEND, RecordKind};
use rcapture_core::ring::RecordRing;
use rcapture_core::synth;
use rcapture_core::worker::{LiveFilter, Worker, WorkerConfig};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Records handed out in batches; the fd is a pipe that is never readable.
struct VecRing {
    batches: Vec<Vec<Vec<u8>>>,
    fds: (i32, i32),
}

impl RecordRing for VecRing {
    fn cpu(&self) -> u32 {
        0
    }
    fn poll_fd(&self) -> i32 {
        self.fds.0
    }
    fn drain(&mut self, f: &mut dyn FnMut(&[u8])) -> usize {
        let Some(batch) = self.batches.pop() else {
            return 0;
        };
        for r in &batch {
            f(r);
        }
        batch.len()
    }
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (fds[0], fds[1])
}

#[test]
fn drains_joins_filters_and_flushes_before_returning() {
    let tuple = synth::tuple(
        "127.0.0.1:1000".parse().unwrap(),
        "127.0.0.1:443".parse().unwrap(),
    );
    let mk = |pid: u32| {
        synth::data(
            synth::header(RecordKind::TlsData, pid, pid, 0, "app", 1),
            7,
            DIR_SEND,
            0,
            tuple,
        )
    };
    let mut long = Vec::new();
    let body: Vec<u8> = (0..100_000).map(|i| b'a' + (i % 26) as u8).collect();
    synth::split_call(mk(10), &body, 1, 16384, usize::MAX, &mut long);
    let mut batch2 = vec![
        synth::single(mk(10), b"hello"),
        synth::single(mk(99), b"other"),
        vec![1, 2, 3],
    ];
    batch2.extend(long[4..].iter().cloned());
    // The middle record of a call whose first record was lost: an orphan.
    let mut lost_head = Vec::new();
    synth::split_call(
        mk(10),
        &body[..40_000],
        2,
        16384,
        usize::MAX,
        &mut lost_head,
    );
    batch2.push(lost_head[1].clone());
    let batches = vec![batch2, long[..4].to_vec()]; // popped from the end: long[..4] first
    let ring = VecRing {
        batches,
        fds: pipe(),
    };
    let sink = Shared::default();
    let out = StreamOutput::text(
        Box::new(sink.clone()),
        Arc::new(AtomicBool::new(false)),
        1,
        FramePoolConfig {
            frames: 2,
            frame_bytes: 1024,
        },
    );
    let mut out = out;
    let sinks = std::mem::take(&mut out.sinks);
    let filter = Arc::new(LiveFilter::new(Some(10), None));
    let config = WorkerConfig {
        pin: false,
        poll_timeout_ms: 1,
        ..Default::default()
    };
    let w = Worker::new(ring, config, Clock::from_offset(0), filter, sinks);
    let stats = w.stats();
    let stop = AtomicBool::new(true);
    w.run(&stop);
    let ostats = out.finish().unwrap();
    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert_eq!(stats.records.load(Relaxed), 11);
    assert_eq!(stats.orphan_records.load(Relaxed), 1);
    assert_eq!(stats.orphan_bytes.load(Relaxed), 16384);
    assert_eq!(stats.evicted_calls.load(Relaxed), 0);
    assert_eq!(stats.decode_errors.load(Relaxed), 1);
    assert_eq!(stats.filtered.load(Relaxed), 1);
    assert_eq!(stats.events.load(Relaxed), 2);
    assert_eq!(ostats.delivered.load(Relaxed), 2);
    assert!(text.contains(" send 100000 bytes\n"), "{}", &text[..200]);
    assert!(text.contains(std::str::from_utf8(&body).unwrap()));
    assert!(text.contains(" send 5 bytes\nhello\n"));
    assert!(!text.contains("other"));
}
