//! The producers of the soak: real [`Worker`]s fed by rings that replay
//! synthesized BPF records (a mix of event sizes), optionally paced, and a
//! [`Control`] over the workers' counters and live filter as the binary has.

use rcapture_core::event::Clock;
use rcapture_core::records::{DIR_RECV, DIR_SEND, RecordKind, Tuple};
use rcapture_core::ring::RecordRing;
use rcapture_core::synth;
use rcapture_core::worker::{EventSink, LiveFilter, Worker, WorkerConfig, WorkerStats};
use rcapture_net::control::{CaptureCounters, Control, LiveSettings, ModuleStatus};
use std::io::{PipeReader, PipeWriter};
use std::ops::Deref;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The records of one replay round and the events they make.
#[derive(Debug)]
struct Round {
    records: Vec<Vec<u8>>,
    events: u64,
}

/// Pid of worker `w`'s TLS data (the live pid filter selects it).
pub fn tls_pid(w: usize) -> u32 {
    100 + 10 * w as u32
}

/// The uid of every record.
pub const UID: u32 = 1000;

/// The rounds a ring cycles through: seven small rounds (64 B to 4 KiB TLS
/// data over IPv4 and IPv6; GnuTLS, NSS and Go data; a bash line; a
/// MariaDB and a PostgreSQL query; a TLS 1.3 secret; a connection), then
/// one that adds a 40 000-byte call split into three records (joined into
/// one event by the worker). Every module of WIRE.md is in each round.
fn rounds(w: usize) -> Vec<Round> {
    let t4 = synth::tuple(
        "127.0.0.1:40000".parse().unwrap(),
        "127.0.0.1:443".parse().unwrap(),
    );
    let t6 = synth::tuple("[::1]:40001".parse().unwrap(), "[::1]:443".parse().unwrap());
    let pid = tls_pid(w);
    let h = |k, pid| synth::header(k, pid, pid + 1, UID, "app", 1_000_000);
    let mut small = Vec::new();
    for (i, size) in [64usize, 256, 1024, 4096].into_iter().enumerate() {
        let payload = vec![b'a' + i as u8; size];
        let (p, fd, dir, sock, t) = if i % 2 == 0 {
            (pid, 5, DIR_SEND, 0xffff_8880_0000_1000, t4)
        } else {
            (pid + 1, 6, DIR_RECV, 0xffff_8880_0000_2000, t6)
        };
        small.push(synth::single(
            synth::data(h(RecordKind::TlsData, p), fd, dir, sock, t),
            &payload,
        ));
    }
    small.push(synth::single(
        synth::bash(h(RecordKind::Bash, pid + 2), 0, 0),
        b"ls -la /tmp",
    ));
    for (kind, dir, payload) in [
        (
            RecordKind::GnutlsData,
            DIR_SEND,
            &b"GET /gnutls HTTP/1.1\r\n\r\n"[..],
        ),
        (
            RecordKind::NssData,
            DIR_RECV,
            b"HTTP/1.1 204 No Content\r\n\r\n",
        ),
        (RecordKind::GotlsData, DIR_SEND, b"\0\0\x04\x08\0\0\0\0\0"),
    ] {
        small.push(synth::single(
            synth::data(h(kind, pid + 4), 8, dir, 0, t4),
            payload,
        ));
    }
    small.push(synth::single(
        synth::query(h(RecordKind::MysqlQuery, pid + 5), 0),
        b"SELECT * FROM mysql.user",
    ));
    small.push(synth::single(
        synth::query(h(RecordKind::PgQuery, pid + 6), 0),
        b"SELECT 1;",
    ));
    small.push(synth::master_secret(
        h(RecordKind::MasterSecret, pid),
        0x0304,
        0x0300_1301,
        [7; 32],
        9,
    ));
    small.push(synth::conn(
        h(RecordKind::Conn, pid),
        5,
        0,
        1,
        Tuple::default(),
    ));
    let small_events = small.len() as u64;
    let mut long = small.clone();
    synth::split_call(
        synth::data(h(RecordKind::TlsData, pid + 3), 7, DIR_SEND, 0, t4),
        &vec![b'z'; 40_000],
        3,
        16384,
        usize::MAX,
        &mut long,
    );
    let mut v: Vec<Round> = (0..7)
        .map(|_| Round {
            records: small.clone(),
            events: small_events,
        })
        .collect();
    v.push(Round {
        records: long,
        events: small_events + 1,
    });
    v
}

/// Counts of one ring: the ground truth the ledger is checked against.
#[derive(Debug, Default)]
pub struct RingCounts {
    /// Records handed to the worker.
    pub records: AtomicU64,
    /// Events those records make (each round's count is known).
    pub events: AtomicU64,
}

/// Replays its rounds while not stopped, at most `rate` events per second
/// (0 = as fast as the worker takes them).
struct ReplayRing {
    cpu: u32,
    rounds: Vec<Round>,
    next: usize,
    rounds_per_drain: usize,
    rate: u64,
    started: Instant,
    stop: Arc<AtomicBool>,
    counts: Arc<RingCounts>,
    /// Never written: the read end never becomes readable, so an idle
    /// worker waits its poll timeout (the writer is kept so it is no EOF).
    wake: (PipeReader, PipeWriter),
}

impl RecordRing for ReplayRing {
    fn cpu(&self) -> u32 {
        self.cpu
    }

    fn poll_fd(&self) -> RawFd {
        self.wake.0.as_raw_fd()
    }

    fn drain(&mut self, f: &mut dyn FnMut(&[u8])) -> usize {
        if self.stop.load(Relaxed) {
            return 0;
        }
        if self.rate > 0 {
            let allowed = (self.started.elapsed().as_secs_f64() * self.rate as f64) as u64;
            if self.counts.events.load(Relaxed) >= allowed {
                return 0;
            }
        }
        let mut n = 0;
        for _ in 0..self.rounds_per_drain {
            let round = &self.rounds[self.next];
            self.next = (self.next + 1) % self.rounds.len();
            // Counted before the worker sees them: the ledger's ground truth.
            self.counts.events.fetch_add(round.events, Relaxed);
            self.counts
                .records
                .fetch_add(round.records.len() as u64, Relaxed);
            for r in &round.records {
                f(r);
            }
            n += round.records.len();
        }
        n
    }
}

/// A worker's live counters (the worker hands them out cache-padded).
pub type SharedStats = Arc<dyn Deref<Target = WorkerStats> + Send + Sync>;

/// The capture side as the server sees it: the workers' counters summed as
/// `rcapture tls` does, and live settings applied to the workers' filter.
pub struct SoakControl {
    pub filter: Arc<LiveFilter>,
    pub workers: Mutex<Vec<SharedStats>>,
    pub hex: AtomicBool,
    /// `POST /config` updates applied.
    pub applied: AtomicU64,
}

impl std::fmt::Debug for SoakControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoakControl")
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

impl SoakControl {
    pub fn new() -> Self {
        Self {
            filter: Arc::new(LiveFilter::new(None, None)),
            workers: Mutex::new(Vec::new()),
            hex: AtomicBool::new(false),
            applied: AtomicU64::new(0),
        }
    }

    /// A worker counter summed over the workers.
    pub fn sum(&self, f: fn(&WorkerStats) -> &AtomicU64) -> u64 {
        self.workers
            .lock()
            .unwrap()
            .iter()
            .map(|w| f(w).load(Relaxed))
            .sum()
    }
}

impl Control for SoakControl {
    fn modules(&self) -> Vec<ModuleStatus> {
        vec![ModuleStatus {
            name: "tls",
            probes: 0,
            attached: true,
            routes: &["/tls", "/openssl"],
            ..ModuleStatus::default()
        }]
    }

    fn counters(&self) -> CaptureCounters {
        CaptureCounters {
            captured: self.sum(|w| &w.events),
            lost_kernel_per_cpu: Vec::new(),
            truncated_events: self.sum(|w| &w.truncated_events),
            truncated_bytes: self.sum(|w| &w.truncated_bytes),
            filtered: self.sum(|w| &w.filtered),
            malformed: self.sum(|w| &w.decode_errors),
            incomplete_calls: self.sum(|w| &w.incomplete_calls),
            orphan_records: self.sum(|w| &w.orphan_records),
            orphan_bytes: self.sum(|w| &w.orphan_bytes),
            evicted_calls: self.sum(|w| &w.evicted_calls),
            output_dropped: 0,
        }
    }

    fn apply(&self, s: LiveSettings) -> Result<(), String> {
        self.filter.set(s.pid, s.uid);
        self.hex.store(s.hex, Relaxed);
        self.applied.fetch_add(1, Relaxed);
        Ok(())
    }
}

/// Running producer threads.
#[derive(Debug)]
pub struct Producers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    counts: Vec<Arc<RingCounts>>,
}

impl Producers {
    /// One worker thread per sink, each replaying its own ring at up to
    /// `rate_per_worker` events/s (0 = uncapped).
    pub fn start(
        sinks: Vec<Box<dyn EventSink>>,
        control: &SoakControl,
        rate_per_worker: u64,
    ) -> Producers {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut counts = Vec::new();
        let mut stats = Vec::new();
        for (w, sink) in sinks.into_iter().enumerate() {
            let c = Arc::new(RingCounts::default());
            let ring = ReplayRing {
                cpu: w as u32,
                rounds: rounds(w),
                next: 0,
                // About 2 ms of work per drain at the capped rate; a drain
                // is one batch handed to the server.
                rounds_per_drain: if rate_per_worker == 0 {
                    16
                } else {
                    (rate_per_worker / 8 / 500).clamp(1, 64) as usize
                },
                rate: rate_per_worker,
                started: Instant::now(),
                stop: Arc::clone(&stop),
                counts: Arc::clone(&c),
                wake: std::io::pipe().expect("a pipe for the ring's poll fd"),
            };
            let worker = Worker::new(
                ring,
                WorkerConfig {
                    pin: false,
                    poll_timeout_ms: 1,
                    ..Default::default()
                },
                Clock::now(),
                Arc::clone(&control.filter),
                vec![sink],
            );
            let shared: SharedStats = worker.stats();
            stats.push(shared);
            let stop = Arc::clone(&stop);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("soak-worker-{w}"))
                    .spawn(move || worker.run(&stop))
                    .expect("spawn a worker thread"),
            );
            counts.push(c);
        }
        *control.workers.lock().unwrap() = stats;
        Producers {
            stop,
            threads,
            counts,
        }
    }

    /// Stops the rings; each worker drains, flushes and returns.
    pub fn stop(self, within: Duration) -> Stopped {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        let end = Instant::now() + within;
        let mut panicked = 0;
        for t in self.threads {
            while !t.is_finished() {
                assert!(
                    Instant::now() < end,
                    "a worker did not stop within {within:?}"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            panicked += usize::from(t.join().is_err());
        }
        Stopped {
            panicked,
            events: self.counts.iter().map(|c| c.events.load(Relaxed)).sum(),
            records: self.counts.iter().map(|c| c.records.load(Relaxed)).sum(),
        }
    }
}

/// The producers once stopped.
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    /// Worker threads that panicked.
    pub panicked: usize,
    /// Events made by the replayed records (the ground truth).
    pub events: u64,
    /// Records replayed.
    pub records: u64,
}
