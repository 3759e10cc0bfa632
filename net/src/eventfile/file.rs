//! A file written through io_uring from pooled buffers and rotated by size:
//! what the event file and the pcapng file share.
//!
//! The owner appends framed bytes to [`OutFile::fill_mut`] after
//! [`OutFile::reserve`]; full buffers are written while the next one fills
//! (one write in flight, short writes resubmitted), so steady state
//! allocates nothing. What a buffer held is tallied as [`Items`] (events,
//! or packets and key-log lines) and reported to [`FileCounters`] once the
//! kernel accepted it or the write failed.

use super::ring::FileRing;
use super::rotate;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A buffer is written once it holds this many bytes (or the owner flushes).
pub(crate) const BUF_BYTES: usize = 1 << 20;
/// How often to retry opening the file after it failed.
const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// What a buffer holds, in the owner's units (e.g. `[events, 0]` or
/// `[packets, key log lines]`).
pub(crate) type Items = [u64; 2];

fn add(a: &mut Items, b: Items) {
    a[0] += b[0];
    a[1] += b[1];
}

/// Where an [`OutFile`] reports what became of its bytes.
pub(crate) trait FileCounters: Send + Sync {
    /// A buffer was written.
    fn written(&self, items: Items, bytes: u64);
    /// Items were lost (a failed write or open).
    fn dropped(&self, items: Items);
    /// A rotation, and how many old files it deleted.
    fn rotated(&self, deleted: u64);
    /// The last error.
    fn error(&self, e: &io::Error);
}

/// Where and how the file is written.
#[derive(Debug, Clone)]
pub(crate) struct FileConfig {
    pub path: PathBuf,
    /// Rotate before the file would grow past this many bytes (0: never).
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: usize,
    /// Mode of the file and its rotations.
    pub mode: u32,
}

/// The file being written. `ring` is declared first so it is dropped
/// (waiting for a write in flight) before the file is closed.
pub(crate) struct OutFile {
    ring: FileRing,
    cfg: FileConfig,
    file: Option<File>,
    /// When opening the file last failed.
    open_failed: Option<Instant>,
    /// Bytes given to the current file so far, `fill` included.
    file_len: u64,
    /// The buffer being filled, and what it holds.
    fill: Vec<u8>,
    fill_items: Items,
    /// The other buffer, when no write holds it.
    spare: Option<Vec<u8>>,
    /// What the buffer being written holds.
    inflight_items: Items,
    counters: Box<dyn FileCounters>,
}

impl std::fmt::Debug for OutFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutFile")
            .field("path", &self.cfg.path)
            .field("file_len", &self.file_len)
            .finish()
    }
}

impl OutFile {
    /// Sets up the ring and creates the file empty; with `rotate_existing`
    /// a non-empty file left by an earlier run is rotated out first.
    pub(crate) fn create(
        cfg: FileConfig,
        rotate_existing: bool,
        counters: Box<dyn FileCounters>,
    ) -> io::Result<Self> {
        let ring = FileRing::new()?;
        let mut f = Self {
            ring,
            cfg,
            file: None,
            open_failed: None,
            file_len: 0,
            fill: Vec::with_capacity(BUF_BYTES),
            fill_items: [0; 2],
            spare: Some(Vec::with_capacity(BUF_BYTES)),
            inflight_items: [0; 2],
            counters,
        };
        let existing = std::fs::metadata(&f.cfg.path).map(|m| m.len()).unwrap_or(0);
        if rotate_existing && existing > 0 {
            let r = rotate::shift(&f.cfg.path, f.cfg.keep, f.cfg.mode)?;
            f.counters.rotated(r.deleted);
        }
        f.file = Some(rotate::create(&f.cfg.path, f.cfg.mode)?);
        Ok(f)
    }

    /// The file is open, or could be opened again now (at most once per
    /// second after a failure; appending, never truncating).
    pub(crate) fn ensure_open(&mut self) -> bool {
        if self.file.is_some() {
            return true;
        }
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
                self.counters.error(&e);
                self.open_failed = Some(Instant::now());
                false
            }
        }
    }

    /// Whether `framed` more bytes would take the file past its limit (an
    /// item larger than the limit gets a file of its own).
    pub(crate) fn needs_rotation(&self, framed: usize) -> bool {
        let max = self.cfg.max_bytes;
        max > 0 && self.file_len > 0 && self.file_len + framed as u64 > max
    }

    /// Before `framed` more bytes go into [`Self::fill_mut`]: writes the
    /// buffer when they would not fit in it.
    pub(crate) fn reserve(&mut self, framed: usize) {
        if !self.fill.is_empty() && self.fill.len() + framed > BUF_BYTES {
            self.flush();
        }
        self.file_len += framed as u64;
    }

    /// The buffer to append reserved bytes to.
    pub(crate) fn fill_mut(&mut self) -> &mut Vec<u8> {
        &mut self.fill
    }

    /// Counts items into the buffer being filled.
    pub(crate) fn add_items(&mut self, items: Items) {
        add(&mut self.fill_items, items);
    }

    /// Bytes waiting in the buffer.
    pub(crate) fn pending(&self) -> usize {
        self.fill.len()
    }

    /// Whether a write is in flight.
    pub(crate) fn busy(&self) -> bool {
        self.ring.busy()
    }

    /// Hands the buffer to the ring (after the write in flight) and
    /// continues in the other one.
    pub(crate) fn flush(&mut self) {
        if self.fill.is_empty() {
            return;
        }
        self.complete();
        let next = self
            .spare
            .take()
            .unwrap_or_else(|| Vec::with_capacity(BUF_BYTES));
        let buf = std::mem::replace(&mut self.fill, next);
        let items = std::mem::take(&mut self.fill_items);
        let Some(file) = self.file.as_ref() else {
            self.recycle(buf);
            self.counters.dropped(items);
            return;
        };
        let offset = self.file_len - buf.len() as u64;
        match self.ring.start_write(file.as_fd(), buf, offset) {
            Ok(()) => self.inflight_items = items,
            Err((buf, e)) => {
                self.recycle(buf);
                self.counters.dropped(items);
                self.counters.error(&e);
            }
        }
    }

    /// Waits for the write in flight and accounts for it.
    pub(crate) fn complete(&mut self) {
        let Some((buf, res)) = self.ring.finish() else {
            return;
        };
        let items = std::mem::take(&mut self.inflight_items);
        match res {
            Ok(()) => self.counters.written(items, buf.len() as u64),
            Err(e) => {
                self.counters.dropped(items);
                self.counters
                    .error(&rotate::with_path(e, "write", &self.cfg.path));
            }
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
    /// new, empty one. On failure the error is recorded and writing goes
    /// on, appending to the file (nothing is truncated).
    pub(crate) fn rotate(&mut self) {
        self.flush();
        self.complete();
        if let Some(f) = self.file.take()
            && let Err(e) = self.ring.fsync(f.as_fd())
        {
            self.counters
                .error(&rotate::with_path(e, "fsync", &self.cfg.path));
        }
        self.file_len = 0;
        match rotate::shift(&self.cfg.path, self.cfg.keep, self.cfg.mode) {
            Ok(r) => {
                self.counters.rotated(r.deleted);
                match rotate::create(&self.cfg.path, self.cfg.mode) {
                    Ok(f) => self.file = Some(f),
                    Err(e) => {
                        self.counters.error(&e);
                        self.open_failed = Some(Instant::now());
                    }
                }
            }
            Err(e) => {
                self.counters.error(&e);
                self.ensure_open();
            }
        }
    }

    /// Writes what is left and syncs (what a failed write lost is
    /// reported to the counters).
    pub(crate) fn close(&mut self) -> io::Result<()> {
        self.flush();
        self.complete();
        if let Some(f) = self.file.take() {
            self.ring
                .fsync(f.as_fd())
                .map_err(|e| rotate::with_path(e, "fsync", &self.cfg.path))?;
        }
        Ok(())
    }
}
