//! Kernel→user capacity: `bpf/gen.bpf.o` emits synthetic TLS data records
//! into one CPU's ring buffer as fast as the trigger thread asks, and one
//! consumer drains them — a bare ring drain, or an rcapture-core [`Worker`]
//! (decode, join, event fields) feeding an encoding sink.
//!
//! The trigger keeps the ring's backlog under half its size, so nothing is
//! lost and the consumer never waits for data while the producer keeps up.

use crate::sys;
use anyhow::Context;
use aya::maps::{ArrayOfMaps, Map, MapData, PerCpuArray, RingBuf};
use aya::programs::RawTracePoint;
use aya::{Ebpf, EbpfLoader};
use aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_RINGBUF;
use rcapture_core::encode::encode_event_entry;
use rcapture_core::event::{Clock, EventFields, EventKind};
use rcapture_core::ring::RecordRing;
use rcapture_core::text::{PayloadStyle, write_text};
use rcapture_core::worker::{EventSink, LiveFilter, Worker, WorkerConfig};
use std::os::fd::{AsRawFd as _, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

static GEN_OBJ: &[u8] = include_bytes!("../bpf/gen.bpf.o");
/// Fixed part of `struct rc_data` (records.h).
const RC_DATA_LEN: u64 = 112;
/// BPF ring buffer record header.
const RINGBUF_HDR: u64 = 8;

/// Where the producer and the consumer run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Trigger and consumer share one CPU (rcapture's deployment: the worker
    /// of CPU k drains ring k, next to the traced code on CPU k).
    SameCpu(u32),
    /// Trigger on one CPU, consumer on another: the consumer's own ceiling.
    Split {
        /// CPU whose ring receives the records.
        trigger: u32,
        /// CPU the consumer runs on.
        worker: u32,
    },
}

impl Placement {
    fn cpus(self) -> (u32, u32) {
        match self {
            Self::SameCpu(c) => (c, c),
            Self::Split { trigger, worker } => (trigger, worker),
        }
    }

    fn label(self) -> String {
        match self {
            Self::SameCpu(c) => format!("same CPU ({c})"),
            Self::Split { trigger, worker } => format!("ring CPU {trigger} → worker CPU {worker}"),
        }
    }
}

/// What drains the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    /// `RecordRing::drain` with a callback that only sums lengths.
    RawDrain,
    /// A `Worker` whose sink encodes each event as a protobuf `LogEntry`.
    WorkerEncode,
    /// A `Worker` whose sink renders each event as text (`rcapture tls` output).
    WorkerText,
}

impl Consumer {
    fn label(self) -> &'static str {
        match self {
            Self::RawDrain => "raw drain (no-op)",
            Self::WorkerEncode => "Worker + protobuf encode",
            Self::WorkerText => "Worker + text render",
        }
    }
}

/// Settings of a capacity run.
#[derive(Debug, Clone, Copy)]
pub struct CapacityConfig {
    /// Records to push through.
    pub records: u64,
    /// Records per trigger (bpf_loop iterations).
    pub batch: u32,
    /// Payload bytes per record.
    pub payload: u32,
    /// Ring buffer size (power of two pages).
    pub ring_bytes: usize,
    /// When the generator wakes the consumer.
    pub wakeup: Wakeup,
}

/// When a record wakes the consumer (the ring holds `wakeup_bytes` = 64 KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Wakeup {
    /// Every record while the backlog is at or above the mark (rcapture's
    /// former `rc_output` policy).
    Backlog,
    /// Only the record that crosses the mark (rcapture's `rc_output`).
    Crossing,
}

/// The outcome of a capacity run.
#[derive(Debug, Clone)]
pub struct CapacityResult {
    /// Where it ran.
    pub placement: Placement,
    /// What consumed.
    pub consumer: Consumer,
    /// Payload bytes per record.
    pub payload: u32,
    /// The generator's wakeup policy.
    pub wakeup: Wakeup,
    /// Records written by the kernel side.
    pub emitted: u64,
    /// Records the kernel side could not reserve.
    pub lost: u64,
    /// Records the consumer took from the ring.
    pub consumed: u64,
    /// Events the worker handed to its sink (0 for the raw drain).
    pub events: u64,
    /// Bytes the sink produced (encoded/rendered) or drained.
    pub out_bytes: u64,
    /// From the first trigger to the consumer having drained everything.
    pub wall_secs: f64,
    /// CPU time of the consumer thread.
    pub worker_cpu_secs: f64,
    /// CPU time of the trigger thread (mostly the BPF generator, in getppid).
    pub trigger_cpu_secs: f64,
    /// True if the trigger gave up waiting for the consumer.
    pub stalled: bool,
}

impl CapacityResult {
    /// As JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "placement": self.placement.label(),
            "consumer": self.consumer.label(),
            "payload": self.payload,
            "wakeup": match self.wakeup { Wakeup::Backlog => "backlog", Wakeup::Crossing => "crossing" },
            "emitted": self.emitted,
            "lost": self.lost,
            "consumed": self.consumed,
            "events": self.events,
            "out_bytes": self.out_bytes,
            "wall_secs": self.wall_secs,
            "worker_cpu_secs": self.worker_cpu_secs,
            "per_sec_wall": self.consumed as f64 / self.wall_secs.max(1e-9),
            "per_worker_cpu_sec": self.consumed as f64 / self.worker_cpu_secs.max(1e-9),
            "trigger_cpu_secs": self.trigger_cpu_secs,
            "producer_ns_per_record": self.trigger_cpu_secs * 1e9 / (self.emitted.max(1) as f64),
            "stalled": self.stalled,
        })
    }
}

/// One CPU's ring of the generator as a [`RecordRing`].
struct GenRing {
    cpu: u32,
    ring: RingBuf<MapData>,
}

impl RecordRing for GenRing {
    fn cpu(&self) -> u32 {
        self.cpu
    }

    fn poll_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    fn drain(&mut self, f: &mut dyn FnMut(&[u8])) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            f(&item);
            n += 1;
        }
        n
    }
}

/// Encodes every event into one reused buffer.
struct EncodeSink {
    buf: Vec<u8>,
    bytes: u64,
    total: Arc<AtomicU64>,
}

impl EventSink for EncodeSink {
    fn event(&mut self, ev: &EventFields<'_>, _kind: EventKind) {
        self.buf.clear();
        encode_event_entry(ev, &mut self.buf);
        self.bytes += self.buf.len() as u64;
    }

    fn flush(&mut self) {
        self.total.store(self.bytes, Ordering::Relaxed);
    }
}

/// Renders every event as text into one reused buffer.
struct TextSink {
    buf: Vec<u8>,
    bytes: u64,
    total: Arc<AtomicU64>,
}

impl EventSink for TextSink {
    fn event(&mut self, ev: &EventFields<'_>, kind: EventKind) {
        self.buf.clear();
        write_text(ev, kind, PayloadStyle::Escaped, &mut self.buf);
        self.bytes += self.buf.len() as u64;
    }

    fn flush(&mut self) {
        self.total.store(self.bytes, Ordering::Relaxed);
    }
}

struct Generator {
    _ebpf: Ebpf,
    _outer: ArrayOfMaps<MapData, MapData>,
    rings: Vec<GenRing>,
    counts: PerCpuArray<MapData, u64>,
}

impl Generator {
    fn load(cfg: &CapacityConfig, target_tid: u32) -> anyhow::Result<Self> {
        let possible = aya::util::nr_cpus().map_err(|(p, e)| anyhow::anyhow!("{p}: {e}"))?;
        let online = aya::util::online_cpus().map_err(|(p, e)| anyhow::anyhow!("{p}: {e}"))?;
        let wakeup = 64u32 * 1024;
        let mut ebpf = EbpfLoader::new()
            .override_global("target_tid", &target_tid, true)
            .override_global("batch", &cfg.batch, true)
            .override_global("payload_len", &cfg.payload, true)
            .override_global("wakeup_bytes", &wakeup, true)
            .override_global(
                "wake_on_crossing",
                &u32::from(cfg.wakeup == Wakeup::Crossing),
                true,
            )
            .map_max_entries("gen_rings", u32::try_from(possible)?)
            .load(GEN_OBJ)
            .context("loading gen.bpf.o")?;
        let mut outer: ArrayOfMaps<MapData, MapData> =
            ArrayOfMaps::try_from(ebpf.take_map("gen_rings").context("no gen_rings")?)?;
        let size = u32::try_from(cfg.ring_bytes.next_power_of_two())?;
        let mut rings = Vec::new();
        for cpu in online {
            let obj = aya_obj::Map::new_from_params(BPF_MAP_TYPE_RINGBUF as u32, 0, 0, size, 0);
            let data = MapData::create(obj, &format!("gen_ring_{cpu}"), None)?;
            outer.set(cpu, &data, 0)?;
            let ring = RingBuf::try_from(Map::from_map_data(data)?)?;
            rings.push(GenRing { cpu, ring });
        }
        let counts = PerCpuArray::try_from(ebpf.take_map("gen_counts").context("no gen_counts")?)?;
        let prog: &mut RawTracePoint = ebpf
            .program_mut("gen_sys_enter")
            .context("no gen_sys_enter")?
            .try_into()?;
        prog.load().context("loading gen_sys_enter")?;
        prog.attach("sys_enter")
            .context("attaching gen_sys_enter")?;
        Ok(Self {
            _ebpf: ebpf,
            _outer: outer,
            rings,
            counts,
        })
    }

    fn take_ring(&mut self, cpu: u32) -> anyhow::Result<GenRing> {
        let at = self
            .rings
            .iter()
            .position(|r| r.cpu == cpu)
            .with_context(|| format!("CPU {cpu} is not online"))?;
        Ok(self.rings.swap_remove(at))
    }

    /// (emitted, lost) over all CPUs.
    fn counts(&self) -> anyhow::Result<(u64, u64)> {
        let emitted = self.counts.get(&0, 0)?.iter().sum();
        let lost = self.counts.get(&1, 0)?.iter().sum();
        Ok((emitted, lost))
    }
}

/// Runs one capacity measurement.
pub fn run(
    cfg: &CapacityConfig,
    placement: Placement,
    consumer: Consumer,
) -> anyhow::Result<CapacityResult> {
    let (trigger_cpu, worker_cpu) = placement.cpus();
    let record_bytes = (RC_DATA_LEN + u64::from(cfg.payload) + RINGBUF_HDR).next_multiple_of(8);
    let backlog_limit = (cfg.ring_bytes as u64 / 2 / record_bytes).max(u64::from(cfg.batch));
    let consumed = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<
        Option<Arc<crossbeam_utils::CachePadded<rcapture_core::worker::WorkerStats>>>,
    >();

    let target = cfg.records;
    let batch = u64::from(cfg.batch);
    let c = Arc::clone(&consumed);
    let d = Arc::clone(&done);
    let trigger = std::thread::Builder::new()
        .name("perf-trigger".into())
        .spawn(move || -> anyhow::Result<(bool, f64)> {
            rcapture_core::sys::pin_to_cpu(trigger_cpu).context("pinning the trigger")?;
            tid_tx.send(sys::gettid())?;
            let Ok(worker_stats) = go_rx.recv() else {
                return Ok((false, 0.0));
            };
            let cpu0 = sys::thread_cpu_secs();
            let seen = || match &worker_stats {
                Some(s) => s.records.load(Ordering::Relaxed),
                None => c.load(Ordering::Relaxed),
            };
            let mut produced = 0u64;
            let mut stalled = false;
            let (mut last_seen, mut last_progress) = (0, Instant::now());
            while produced < target {
                let now_seen = seen();
                if produced.saturating_sub(now_seen) + batch > backlog_limit {
                    if now_seen != last_seen {
                        (last_seen, last_progress) = (now_seen, Instant::now());
                    } else if last_progress.elapsed() > Duration::from_secs(2) {
                        stalled = true;
                        break;
                    }
                    // Sleep rather than spin: a spinning reader of the worker's
                    // counter would steal its cache line (and, on one CPU, its time).
                    std::thread::sleep(Duration::from_micros(50));
                    continue;
                }
                sys::trigger();
                produced += batch;
            }
            d.store(true, Ordering::Release);
            Ok((stalled, sys::thread_cpu_secs() - cpu0))
        })?;
    let tid = tid_rx.recv().context("trigger thread did not start")?;
    let mut generator = Generator::load(cfg, tid)?;
    let ring = generator.take_ring(trigger_cpu)?;
    let out_bytes = Arc::new(AtomicU64::new(0));

    let (consumer_thread, worker_stats) = match consumer {
        Consumer::RawDrain => {
            let (c, d, ob) = (
                Arc::clone(&consumed),
                Arc::clone(&done),
                Arc::clone(&out_bytes),
            );
            let mut ring = ring;
            let h = std::thread::Builder::new()
                .name("perf-drain".into())
                .spawn(move || -> anyhow::Result<(f64, Instant)> {
                    rcapture_core::sys::pin_to_cpu(worker_cpu)?;
                    let cpu0 = sys::thread_cpu_secs();
                    let mut bytes = 0u64;
                    loop {
                        let stopping = d.load(Ordering::Acquire);
                        let n = ring.drain(&mut |r| bytes += r.len() as u64);
                        c.fetch_add(n as u64, Ordering::Relaxed);
                        if n == 0 {
                            if stopping {
                                break;
                            }
                            rcapture_core::sys::wait_readable(ring.poll_fd(), 5);
                        }
                    }
                    ob.store(bytes, Ordering::Relaxed);
                    Ok((sys::thread_cpu_secs() - cpu0, Instant::now()))
                })?;
            (h, None)
        }
        Consumer::WorkerEncode | Consumer::WorkerText => {
            let sink: Box<dyn EventSink> = match consumer {
                Consumer::WorkerText => Box::new(TextSink {
                    buf: Vec::with_capacity(8192),
                    bytes: 0,
                    total: Arc::clone(&out_bytes),
                }),
                _ => Box::new(EncodeSink {
                    buf: Vec::with_capacity(8192),
                    bytes: 0,
                    total: Arc::clone(&out_bytes),
                }),
            };
            let config = WorkerConfig {
                pin: false,
                ..WorkerConfig::default()
            };
            let worker = Worker::new(
                ring,
                config,
                Clock::now(),
                Arc::new(LiveFilter::new(None, None)),
                vec![sink],
            );
            let stats = worker.stats();
            let d = Arc::clone(&done);
            let h = std::thread::Builder::new()
                .name(match consumer {
                    Consumer::WorkerText => "perf-text".into(),
                    _ => "perf-encode".into(),
                })
                .spawn(move || -> anyhow::Result<(f64, Instant)> {
                    rcapture_core::sys::pin_to_cpu(worker_cpu)?;
                    let cpu0 = sys::thread_cpu_secs();
                    worker.run(&d);
                    Ok((sys::thread_cpu_secs() - cpu0, Instant::now()))
                })?;
            (h, Some(stats))
        }
    };
    let start = Instant::now();
    go_tx.send(worker_stats.clone()).ok();
    let (stalled, trigger_cpu_secs) = trigger
        .join()
        .map_err(|_| anyhow::anyhow!("trigger thread panicked"))??;
    let (worker_cpu_secs, end) = consumer_thread
        .join()
        .map_err(|_| anyhow::anyhow!("consumer thread panicked"))??;
    let wall_secs = end.duration_since(start).as_secs_f64();
    let (emitted, lost) = generator.counts()?;
    let (consumed, events) = match &worker_stats {
        Some(s) => (
            s.records.load(Ordering::Relaxed),
            s.events.load(Ordering::Relaxed),
        ),
        None => (consumed.load(Ordering::Relaxed), 0),
    };
    Ok(CapacityResult {
        placement,
        consumer,
        payload: cfg.payload,
        wakeup: cfg.wakeup,
        emitted,
        lost,
        consumed,
        events,
        out_bytes: out_bytes.load(Ordering::Relaxed),
        wall_secs,
        worker_cpu_secs,
        trigger_cpu_secs,
        stalled,
    })
}
