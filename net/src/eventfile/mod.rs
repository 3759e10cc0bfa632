//! The event file sink (`--event-file`, WIRE.md §5): every event entry, numbered
//! by the sink, written to disk through io_uring and rotated by size.
//!
//! Formats:
//! - `protobuf`: a stream of varint-length-delimited `LogEntry` messages
//!   (length, then the `seq` prefix and the encoded body): read each with
//!   prost's `LogEntry::decode_length_delimited`, as Go's
//!   `protodelim`/Java's `parseDelimitedFrom` do.
//! - `json`: NDJSON, one WIRE.md §5 line per event.
//!
//! `seq` numbers the entries offered to this sink from 1. Entries dropped
//! because the queue was full still use their numbers, so a reader sees the
//! loss as a gap (as on a WebSocket); every drop is also counted.
//!
//! Rotation (see [`rotate`]): before a write would take `PATH` past
//! `max_bytes`, it is synced and closed, `PATH.N` becomes `PATH.N+1`, `PATH`
//! becomes `PATH.1`, and a new `PATH` starts; at most `keep` rotated files
//! are kept (older ones deleted and counted). A non-empty `PATH` found at
//! start is rotated out first, so each file holds one run of `seq`.
//! Every file is created (or set) to `mode`, 0600 by default.
//!
//! The event loop calls [`EventFile::offer`], which only clones the batch's
//! `Arc` into a bounded queue and never blocks. A dedicated thread with its
//! own io_uring frames entries into one of two pooled 1 MiB buffers while
//! the other is being written (short writes are resubmitted), so nothing is
//! allocated per event in steady state.
//!
//! ```no_run
//! use rcapture_net::eventfile::{EventFile, EventFileConfig, EventFileFormat};
//! let sink = EventFile::start(EventFileConfig::new("/var/log/rcapture/events.pb", EventFileFormat::Protobuf, 256 << 20))?;
//! // sink.offer(&batch) for every published batch, then:
//! let stats = sink.shutdown()?;
//! println!("{} events written", stats.written_events);
//! # Ok::<(), std::io::Error>(())
//! ```

pub(crate) mod file;
mod ring;
pub mod rotate;
mod writer;

use crate::publish::Batch;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use writer::{Msg, Writer};

/// Whether the event file takes an entry: every kind but packets (`-m
/// pcap` writes those to its pcapng file; they are in a batch only while a
/// WebSocket client or the forwarder asks for them).
pub(crate) fn written(m: &crate::publish::EntryMeta) -> bool {
    m.kind != rcapture_core::event::EventKind::Packet
}

/// Rotated files kept by default (`PATH.1` … `PATH.10`).
pub const DEFAULT_KEEP: usize = 10;
/// Batches the queue holds by default.
pub const DEFAULT_QUEUE_BATCHES: usize = 256;

/// How entries are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFileFormat {
    /// Varint-length-delimited `LogEntry` messages.
    Protobuf,
    /// NDJSON lines (WIRE.md §5).
    Json,
}

impl FromStr for EventFileFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "protobuf" => Ok(Self::Protobuf),
            "json" => Ok(Self::Json),
            _ => Err(format!(
                "event file format {s:?} is not one of protobuf, json"
            )),
        }
    }
}

/// Where and how to write.
#[derive(Debug, Clone)]
pub struct EventFileConfig {
    pub path: PathBuf,
    pub format: EventFileFormat,
    /// Rotate before a file would grow past this many bytes (0: never).
    pub max_bytes: u64,
    /// Rotated files kept; older ones are deleted.
    pub keep: usize,
    /// Batches that may wait for the writer; more are dropped and counted.
    pub queue_batches: usize,
    /// Mode of `PATH` and its rotations (default 0600); an existing file
    /// is set to it too.
    pub mode: u32,
}

impl EventFileConfig {
    /// A config with the default `keep` and queue size.
    pub fn new(path: impl Into<PathBuf>, format: EventFileFormat, max_bytes: u64) -> Self {
        Self {
            path: path.into(),
            format,
            max_bytes,
            keep: DEFAULT_KEEP,
            queue_batches: DEFAULT_QUEUE_BATCHES,
            mode: rotate::DEFAULT_FILE_MODE,
        }
    }
}

/// Counters of the sink, read with [`EventFile::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFileStats {
    /// Events whose bytes the kernel accepted.
    pub written_events: u64,
    /// Events lost: queue full, a failed write, or an entry that did not decode.
    pub dropped_events: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Rotations done.
    pub files_rotated: u64,
    /// Rotated files deleted because `keep` were already there.
    pub files_deleted: u64,
    /// The last write, sync, rotation or decode error.
    pub last_error: Option<String>,
}

/// Counters shared by the loop side and the writer thread.
#[derive(Debug, Default)]
struct Shared {
    written: AtomicU64,
    dropped: AtomicU64,
    bytes: AtomicU64,
    rotated: AtomicU64,
    deleted: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Shared {
    fn set_error(&self, e: &io::Error) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(e.to_string());
        }
    }

    fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    fn snapshot(&self) -> EventFileStats {
        EventFileStats {
            written_events: self.written.load(Relaxed),
            dropped_events: self.dropped.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            files_rotated: self.rotated.load(Relaxed),
            files_deleted: self.deleted.load(Relaxed),
            last_error: self.last_error(),
        }
    }
}

/// A running event file sink.
#[derive(Debug)]
pub struct EventFile {
    tx: Option<SyncSender<Msg>>,
    next_seq: AtomicU64,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl EventFile {
    /// Sets up io_uring, opens `PATH` and starts the writer thread. Fails
    /// (naming io_uring) where io_uring is unavailable; there is no other
    /// write path.
    pub fn start(cfg: EventFileConfig) -> io::Result<EventFile> {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = sync_channel(cfg.queue_batches.max(1));
        let writer = Writer::open(cfg, Arc::clone(&shared))?;
        let thread = std::thread::Builder::new()
            .name("rcapture-eventfile".into())
            .spawn(move || writer.run(rx))?;
        Ok(EventFile {
            tx: Some(tx),
            next_seq: AtomicU64::new(1),
            shared,
            thread: Some(thread),
        })
    }

    /// Queues `batch` for writing; never blocks. When the queue is full the
    /// batch's events are dropped and counted (their `seq`s become a gap).
    pub fn offer(&self, batch: &Arc<Batch>) {
        let n = batch.entries.iter().filter(|m| written(m)).count() as u64;
        if n == 0 {
            return;
        }
        let first_seq = self.next_seq.fetch_add(n, Relaxed);
        let msg = Msg {
            batch: Arc::clone(batch),
            first_seq,
        };
        let sent = self.tx.as_ref().map(|tx| tx.try_send(msg));
        match sent {
            Some(Ok(())) => {}
            Some(Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) | None => {
                self.shared.dropped.fetch_add(n, Relaxed);
            }
        }
    }

    /// The counters now.
    pub fn stats(&self) -> EventFileStats {
        self.shared.snapshot()
    }

    /// Writes everything queued, syncs and closes the file; the error is
    /// that of the final writes or sync (the counters say what was lost).
    pub fn shutdown(mut self) -> io::Result<EventFileStats> {
        self.stop()?;
        Ok(self.shared.snapshot())
    }

    fn stop(&mut self) -> io::Result<()> {
        self.tx = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(res)) => res,
            Some(Err(_)) => Err(io::Error::other("the event file writer thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for EventFile {
    /// Like [`EventFile::shutdown`], for a sink nobody shut down.
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("rcapture: event file {}", e);
        }
    }
}
