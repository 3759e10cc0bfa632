//! The event file's writer thread: numbers entries, frames them into pooled
//! buffers, and writes full buffers through io_uring while it fills the next.

use super::ring::FileRing;
use super::rotate;
use super::{EventFileConfig, EventFileFormat, Shared};
use crate::entry::event_fields_of;
use crate::publish::Batch;
use rcapture_core::{encode, ndjson};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

/// A buffer is written once it holds this many bytes (or the queue is empty).
pub(super) const BUF_BYTES: usize = 1 << 20;
/// How often to retry opening `PATH` after it failed.
const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// One queued batch and the `seq` of its first entry.
#[derive(Debug)]
pub(super) struct Msg {
    pub batch: Arc<Batch>,
    pub first_seq: u64,
}

/// The state of the writer thread. `ring` is declared first so it is
/// dropped (waiting for a write in flight) before the file is closed.
pub(super) struct Writer {
    ring: FileRing,
    cfg: EventFileConfig,
    file: Option<File>,
    /// When opening `PATH` last failed.
    open_failed: Option<Instant>,
    /// Bytes given to the current file so far, `fill` included.
    file_len: u64,
    /// The buffer being filled, and how many entries it holds.
    fill: Vec<u8>,
    fill_events: u64,
    /// The other buffer, when no write holds it.
    spare: Option<Vec<u8>>,
    /// Entries in the buffer being written.
    inflight_events: u64,
    /// One NDJSON line, measured before it goes into `fill`.
    line: Vec<u8>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("path", &self.cfg.path)
            .field("file_len", &self.file_len)
            .finish()
    }
}

impl Writer {
    /// Sets up the ring and opens `PATH` (rotating out a non-empty one left
    /// by an earlier run, so each file holds one run of `seq`).
    pub(super) fn open(cfg: EventFileConfig, shared: Arc<Shared>) -> io::Result<Self> {
        let ring = FileRing::new()?;
        let mut w = Self {
            ring,
            cfg,
            file: None,
            open_failed: None,
            file_len: 0,
            fill: Vec::with_capacity(BUF_BYTES),
            fill_events: 0,
            spare: Some(Vec::with_capacity(BUF_BYTES)),
            inflight_events: 0,
            line: Vec::with_capacity(4096),
            shared,
        };
        let existing = std::fs::metadata(&w.cfg.path).map(|m| m.len()).unwrap_or(0);
        if existing > 0 {
            let r = rotate::shift(&w.cfg.path, w.cfg.keep, w.cfg.mode)?;
            w.shared.rotated.fetch_add(1, Relaxed);
            w.shared.deleted.fetch_add(r.deleted, Relaxed);
        }
        w.file = Some(rotate::create(&w.cfg.path, w.cfg.mode)?);
        Ok(w)
    }

    /// Runs until the sender is gone and everything queued is written; the
    /// error is that of the final write, sync or close.
    pub(super) fn run(mut self, rx: Receiver<Msg>) -> io::Result<()> {
        loop {
            match rx.try_recv() {
                Ok(m) => self.write_batch(&m),
                Err(TryRecvError::Empty) => {
                    if self.ring.busy() {
                        self.complete();
                    } else if !self.fill.is_empty() {
                        self.flush_fill();
                    } else {
                        match rx.recv() {
                            Ok(m) => self.write_batch(&m),
                            Err(_) => break,
                        }
                    }
                }
                Err(TryRecvError::Disconnected) => break,
            }
        }
        self.close()
    }

    fn error(&self, e: &io::Error) {
        if let Ok(mut last) = self.shared.last_error.lock() {
            *last = Some(e.to_string());
        }
    }

    fn drop_events(&self, n: u64, e: &io::Error) {
        self.shared.dropped.fetch_add(n, Relaxed);
        self.error(e);
    }

    fn write_batch(&mut self, m: &Msg) {
        if self.file.is_none() && !self.reopen() {
            self.shared
                .dropped
                .fetch_add(m.batch.entries.len() as u64, Relaxed);
            return;
        }
        for i in 0..m.batch.entries.len() {
            let seq = m.first_seq + i as u64;
            let body = m.batch.body(i);
            match self.cfg.format {
                EventFileFormat::Protobuf => {
                    let (prefix, n) = encode::seq_prefix(seq);
                    let len = n + body.len();
                    let framed = prost::encoding::length_delimiter_len(len) + len;
                    self.make_room(framed);
                    prost::encoding::encode_varint(len as u64, &mut self.fill);
                    self.fill.extend_from_slice(&prefix[..n]);
                    self.fill.extend_from_slice(body);
                }
                EventFileFormat::Json => {
                    let ev = match event_fields_of(body) {
                        Ok(ev) => ev,
                        Err(e) => {
                            self.drop_events(1, &io::Error::new(io::ErrorKind::InvalidData, e));
                            continue;
                        }
                    };
                    self.line.clear();
                    self.line.reserve(ndjson::ndjson_line_max_len(&ev));
                    ndjson::write_ndjson_line(&ev, seq, &mut self.line);
                    self.make_room(self.line.len());
                    self.fill.extend_from_slice(&self.line);
                }
            }
            self.fill_events += 1;
        }
    }

    /// Before `framed` more bytes go into `fill`: rotates when they would
    /// take the file past `max_bytes` (an entry larger than that gets a file
    /// of its own), and writes `fill` when they would not fit in it.
    fn make_room(&mut self, framed: usize) {
        let max = self.cfg.max_bytes;
        if max > 0 && self.file_len > 0 && self.file_len + framed as u64 > max {
            self.rotate();
        }
        if !self.fill.is_empty() && self.fill.len() + framed > BUF_BYTES {
            self.flush_fill();
        }
        self.file_len += framed as u64;
    }

    /// Hands `fill` to the ring (after the write in flight) and continues
    /// in the other buffer.
    fn flush_fill(&mut self) {
        if self.fill.is_empty() {
            return;
        }
        self.complete();
        let next = self
            .spare
            .take()
            .unwrap_or_else(|| Vec::with_capacity(BUF_BYTES));
        let buf = std::mem::replace(&mut self.fill, next);
        let events = std::mem::take(&mut self.fill_events);
        let Some(file) = self.file.as_ref() else {
            self.recycle(buf);
            self.shared.dropped.fetch_add(events, Relaxed);
            return;
        };
        let offset = self.file_len - buf.len() as u64;
        match self.ring.start_write(file.as_fd(), buf, offset) {
            Ok(()) => self.inflight_events = events,
            Err((buf, e)) => {
                self.recycle(buf);
                self.drop_events(events, &e);
            }
        }
    }

    /// Waits for the write in flight and accounts for it.
    fn complete(&mut self) {
        let Some((buf, res)) = self.ring.finish() else {
            return;
        };
        let events = std::mem::take(&mut self.inflight_events);
        match res {
            Ok(()) => {
                self.shared.written.fetch_add(events, Relaxed);
                self.shared.bytes.fetch_add(buf.len() as u64, Relaxed);
            }
            Err(e) => self.drop_events(events, &rotate::with_path(e, "write", &self.cfg.path)),
        }
        self.recycle(buf);
    }

    fn recycle(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        if buf.capacity() > 0 {
            self.spare = Some(buf);
        }
    }

    /// Writes and syncs the current file, then shifts names and starts a
    /// new `PATH`. On failure the error is recorded and writing goes on,
    /// appending to `PATH` (nothing is truncated).
    fn rotate(&mut self) {
        self.flush_fill();
        self.complete();
        if let Some(f) = self.file.take()
            && let Err(e) = self.ring.fsync(f.as_fd())
        {
            self.error(&rotate::with_path(e, "fsync", &self.cfg.path));
        }
        self.file_len = 0;
        match rotate::shift(&self.cfg.path, self.cfg.keep, self.cfg.mode) {
            Ok(r) => {
                self.shared.rotated.fetch_add(1, Relaxed);
                self.shared.deleted.fetch_add(r.deleted, Relaxed);
                match rotate::create(&self.cfg.path, self.cfg.mode) {
                    Ok(f) => self.file = Some(f),
                    Err(e) => {
                        self.error(&e);
                        self.open_failed = Some(Instant::now());
                    }
                }
            }
            Err(e) => {
                self.error(&e);
                self.reopen();
            }
        }
    }

    /// Opens `PATH` for appending, at most once per [`REOPEN_EVERY`].
    fn reopen(&mut self) -> bool {
        if self.open_failed.is_some_and(|t| t.elapsed() < REOPEN_EVERY) {
            return false;
        }
        match rotate::append(&self.cfg.path, self.cfg.mode) {
            Ok((f, len)) => {
                self.file = Some(f);
                self.file_len = len;
                self.open_failed = None;
                true
            }
            Err(e) => {
                self.error(&e);
                self.open_failed = Some(Instant::now());
                false
            }
        }
    }

    /// Writes what is left, syncs and closes.
    fn close(mut self) -> io::Result<()> {
        let dropped_before = self.shared.dropped.load(Relaxed);
        self.flush_fill();
        self.complete();
        let lost = self.shared.dropped.load(Relaxed) - dropped_before;
        if let Some(f) = self.file.take() {
            self.ring
                .fsync(f.as_fd())
                .map_err(|e| rotate::with_path(e, "fsync", &self.cfg.path))?;
        }
        if lost > 0 {
            let why = self.shared.last_error().unwrap_or_default();
            return Err(io::Error::other(format!(
                "{lost} events were not written at shutdown: {why}"
            )));
        }
        Ok(())
    }
}
