//! The pcapng output of `-m pcap`: the captured packets with the TLS
//! secrets as Decryption Secrets Blocks, so Wireshark/tshark decrypt them
//! with no key file.
//!
//! The workers' sinks ([`PcapOutput::sinks`]) copy packet and master-key
//! events into pooled frames and hand them to one writer thread (never
//! waiting: without a free frame the event is dropped and counted). The
//! writer writes every new key-log line at once as a DSB, and holds each
//! packet for [`PcapConfig::hold`] before writing it as an Enhanced Packet
//! Block, in timestamp order across the workers: a session's secrets reach
//! user space after its handshake packets (they are read once the handshake
//! is done), and tshark decrypts a TLS 1.3 session only if its secrets come
//! before its ServerHello, a TLS 1.2 one before its ChangeCipherSpec. Held
//! packets beyond [`PcapConfig::hold_bytes`] are written early (counted).
//!
//! The file: a Section Header Block, one Interface Description Block per
//! interface (Ethernet, nanosecond timestamps), then DSBs and EPBs; an EPB
//! carries its direction (`epb_flags`) and, when the packet's connection is
//! known, the comment `pid=PID comm=COMM`. Writes go through io_uring (the
//! event file's [`OutFile`](crate::eventfile)); with `max_bytes` the file
//! rotates by size like the event file, and every new file starts with its
//! own SHB, IDBs and a DSB of the recent secrets. At shutdown the held
//! packets are written and the file synced: it is valid at every block
//! boundary.

pub mod block;
mod hold;
mod sink;
mod writer;

use rcapture_core::event::Clock;
use rcapture_core::worker::EventSink;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::sync_channel;
use std::thread::JoinHandle;
use std::time::Duration;

/// An interface the packets come from (one IDB each, in this order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapInterface {
    /// Its name (`if_name`).
    pub name: String,
    /// Its index (`rc_packet.ifindex`).
    pub ifindex: u32,
}

/// Where and how to write.
#[derive(Debug, Clone)]
pub struct PcapConfig {
    pub path: PathBuf,
    pub interfaces: Vec<PcapInterface>,
    /// Bytes of a packet captured at most (the IDBs' snaplen).
    pub snap_len: u32,
    /// Rotate before a file would grow past this many bytes (0: never).
    pub max_bytes: u64,
    /// Rotated files kept (`PATH.1` … `PATH.keep`).
    pub keep: usize,
    /// Mode of the file and its rotations.
    pub mode: u32,
    /// How long a packet waits for its session's secrets.
    pub hold: Duration,
    /// Bytes of packets held at most; beyond, the oldest are written early.
    pub hold_bytes: usize,
    /// Kernel time → Unix time, as the events' timestamps were converted.
    pub clock: Clock,
    /// Frames per worker.
    pub frames: usize,
    /// A frame is handed over once it holds this many bytes.
    pub frame_bytes: usize,
}

impl PcapConfig {
    /// A config with the defaults: no rotation (10 files kept once
    /// rotating), 1 s hold within 256 MiB, 32 frames of 256 KiB per worker.
    pub fn new(path: impl Into<PathBuf>, interfaces: Vec<PcapInterface>, snap_len: u32) -> Self {
        Self {
            path: path.into(),
            interfaces,
            snap_len,
            max_bytes: 0,
            keep: crate::eventfile::DEFAULT_KEEP,
            mode: crate::eventfile::rotate::DEFAULT_FILE_MODE,
            hold: Duration::from_secs(1),
            hold_bytes: 256 << 20,
            clock: Clock::now(),
            frames: 32,
            frame_bytes: 256 * 1024,
        }
    }
}

/// Counters shared by the sinks and the writer.
#[derive(Debug, Default)]
pub struct PcapStats {
    packets: AtomicU64,
    packets_written: AtomicU64,
    packets_dropped: AtomicU64,
    packets_behind: AtomicU64,
    packets_early: AtomicU64,
    secrets: AtomicU64,
    secrets_dropped: AtomicU64,
    secret_lines_written: AtomicU64,
    secret_lines_dropped: AtomicU64,
    duplicate_lines: AtomicU64,
    bytes: AtomicU64,
    files_rotated: AtomicU64,
    files_deleted: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// What the pcapng output did (a snapshot of [`PcapStats`]). The packets
/// balance: `packets` = `packets_written` + `packets_dropped` + those
/// still held or being written (none after shutdown).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PcapCounters {
    /// Packet events offered to the output.
    pub packets: u64,
    /// Packets whose EPB the kernel accepted.
    pub packets_written: u64,
    /// Packets lost: no free frame (also in `packets_behind`), a failed write.
    pub packets_dropped: u64,
    /// Packets dropped because the writer was behind.
    pub packets_behind: u64,
    /// Packets written before their hold time because too many were held.
    pub packets_early: u64,
    /// Master-key events offered.
    pub secrets: u64,
    /// Master-key events dropped (the writer was behind).
    pub secrets_dropped: u64,
    /// Key log lines written in DSBs (first time each).
    pub secret_lines_written: u64,
    /// Key log lines lost to a failed write.
    pub secret_lines_dropped: u64,
    /// Key log lines already written (not repeated).
    pub duplicate_lines: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Rotations done, and rotated files deleted (beyond `keep`).
    pub files_rotated: u64,
    pub files_deleted: u64,
    /// The last write, sync or rotation error.
    pub last_error: Option<String>,
}

impl PcapStats {
    /// The counters now.
    pub fn snapshot(&self) -> PcapCounters {
        let l = |a: &AtomicU64| a.load(Relaxed);
        PcapCounters {
            packets: l(&self.packets),
            packets_written: l(&self.packets_written),
            packets_dropped: l(&self.packets_dropped),
            packets_behind: l(&self.packets_behind),
            packets_early: l(&self.packets_early),
            secrets: l(&self.secrets),
            secrets_dropped: l(&self.secrets_dropped),
            secret_lines_written: l(&self.secret_lines_written),
            secret_lines_dropped: l(&self.secret_lines_dropped),
            duplicate_lines: l(&self.duplicate_lines),
            bytes: l(&self.bytes),
            files_rotated: l(&self.files_rotated),
            files_deleted: l(&self.files_deleted),
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }

    fn set_error(&self, e: &io::Error) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(e.to_string());
        }
    }
}

/// A running pcapng output: the sinks to give the workers, and its writer.
pub struct PcapOutput {
    /// One sink per worker, in worker order (take them with `std::mem::take`).
    pub sinks: Vec<Box<dyn EventSink>>,
    /// Counters.
    pub stats: Arc<PcapStats>,
    writer: JoinHandle<io::Result<()>>,
}

impl std::fmt::Debug for PcapOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapOutput")
            .field("stats", &self.stats.snapshot())
            .finish_non_exhaustive()
    }
}

impl PcapOutput {
    /// Sets up io_uring, creates `PATH` (replacing a file of that name)
    /// with its SHB and IDBs, and starts the writer thread.
    pub fn start(cfg: PcapConfig, workers: usize) -> io::Result<Self> {
        let stats = Arc::new(PcapStats::default());
        let frames = cfg.frames.max(1);
        let (tx, rx) = sync_channel(workers * frames);
        let mut sinks: Vec<Box<dyn EventSink>> = Vec::with_capacity(workers);
        let mut returns = Vec::with_capacity(workers);
        let capacity = cfg.frame_bytes + sink::entry_max(cfg.snap_len);
        for worker in 0..workers {
            let (free_tx, free_rx) = sync_channel(frames);
            for _ in 0..frames {
                // The channel has room for exactly `frames` buffers.
                let _ = free_tx.send(Vec::with_capacity(capacity));
            }
            returns.push(free_tx);
            sinks.push(Box::new(sink::PcapSink::new(
                worker,
                tx.clone(),
                free_rx,
                &cfg,
                Arc::clone(&stats),
            )));
        }
        drop(tx);
        let w = writer::Writer::open(cfg, workers, returns, Arc::clone(&stats))?;
        let writer = std::thread::Builder::new()
            .name("rcapture-pcapng".into())
            .spawn(move || w.run(rx))?;
        Ok(Self {
            sinks,
            stats,
            writer,
        })
    }

    /// Waits for the writer to write everything the (dropped) sinks sent,
    /// held packets included, and to sync the file.
    pub fn finish(self) -> io::Result<PcapCounters> {
        drop(self.sinks);
        match self.writer.join() {
            Ok(r) => r.map(|()| self.stats.snapshot()),
            Err(_) => Err(io::Error::other("the pcapng writer thread panicked")),
        }
    }
}
