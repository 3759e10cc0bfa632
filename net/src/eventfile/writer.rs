//! The event file's writer thread: numbers entries, frames them into pooled
//! buffers, and writes full buffers through io_uring while it fills the next.

use super::file::{FileConfig, FileCounters, Items, OutFile};
use super::{EventFileConfig, EventFileFormat, Shared};
use crate::entry::event_fields_of;
use crate::publish::Batch;
use rcapture_core::{encode, ndjson};
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, TryRecvError};

/// One queued batch and the `seq` of its first entry.
#[derive(Debug)]
pub(super) struct Msg {
    pub batch: Arc<Batch>,
    pub first_seq: u64,
}

/// The event file's counters, as the file reports to them.
struct Counters(Arc<Shared>);

impl FileCounters for Counters {
    fn written(&self, items: Items, bytes: u64) {
        self.0.written.fetch_add(items[0], Relaxed);
        self.0.bytes.fetch_add(bytes, Relaxed);
    }

    fn dropped(&self, items: Items) {
        self.0.dropped.fetch_add(items[0], Relaxed);
    }

    fn rotated(&self, deleted: u64) {
        self.0.rotated.fetch_add(1, Relaxed);
        self.0.deleted.fetch_add(deleted, Relaxed);
    }

    fn error(&self, e: &io::Error) {
        self.0.set_error(e);
    }
}

/// The state of the writer thread.
pub(super) struct Writer {
    out: OutFile,
    format: EventFileFormat,
    /// One NDJSON line, measured before it goes into the buffer.
    line: Vec<u8>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("out", &self.out).finish()
    }
}

impl Writer {
    /// Sets up the ring and opens `PATH` (rotating out a non-empty one left
    /// by an earlier run, so each file holds one run of `seq`).
    pub(super) fn open(cfg: EventFileConfig, shared: Arc<Shared>) -> io::Result<Self> {
        let file = FileConfig {
            path: cfg.path,
            max_bytes: cfg.max_bytes,
            keep: cfg.keep,
            mode: cfg.mode,
        };
        let out = OutFile::create(file, true, Box::new(Counters(Arc::clone(&shared))))?;
        Ok(Self {
            out,
            format: cfg.format,
            line: Vec::with_capacity(4096),
            shared,
        })
    }

    /// Runs until the sender is gone and everything queued is written; the
    /// error is that of the final write, sync or close.
    pub(super) fn run(mut self, rx: Receiver<Msg>) -> io::Result<()> {
        loop {
            match rx.try_recv() {
                Ok(m) => self.write_batch(&m),
                Err(TryRecvError::Empty) => {
                    if self.out.busy() {
                        self.out.complete();
                    } else if self.out.pending() > 0 {
                        self.out.flush();
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

    fn drop_events(&self, n: u64, e: &io::Error) {
        self.shared.dropped.fetch_add(n, Relaxed);
        self.shared.set_error(e);
    }

    fn write_batch(&mut self, m: &Msg) {
        if !self.out.ensure_open() {
            let n = m.batch.entries.iter().filter(|e| super::written(e)).count();
            self.shared.dropped.fetch_add(n as u64, Relaxed);
            return;
        }
        let mut seq = m.first_seq;
        for i in 0..m.batch.entries.len() {
            if !super::written(&m.batch.entries[i]) {
                continue;
            }
            let this = seq;
            seq += 1;
            let body = m.batch.body(i);
            match self.format {
                EventFileFormat::Protobuf => {
                    let (prefix, n) = encode::seq_prefix(this);
                    let len = n + body.len();
                    let framed = prost::encoding::length_delimiter_len(len) + len;
                    self.make_room(framed);
                    let fill = self.out.fill_mut();
                    prost::encoding::encode_varint(len as u64, fill);
                    fill.extend_from_slice(&prefix[..n]);
                    fill.extend_from_slice(body);
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
                    ndjson::write_ndjson_line(&ev, this, &mut self.line);
                    self.make_room(self.line.len());
                    self.out.fill_mut().extend_from_slice(&self.line);
                }
            }
            self.out.add_items([1, 0]);
        }
    }

    /// Before `framed` more bytes: rotates when they would take the file
    /// past `max_bytes`, and writes the buffer when they would not fit in it.
    fn make_room(&mut self, framed: usize) {
        if self.out.needs_rotation(framed) {
            self.out.rotate();
        }
        self.out.reserve(framed);
    }

    /// Writes what is left, syncs and closes.
    fn close(mut self) -> io::Result<()> {
        let dropped_before = self.shared.dropped.load(Relaxed);
        self.out.close()?;
        let lost = self.shared.dropped.load(Relaxed) - dropped_before;
        if lost > 0 {
            let why = self.shared.last_error().unwrap_or_default();
            return Err(io::Error::other(format!(
                "{lost} events were not written at shutdown: {why}"
            )));
        }
        Ok(())
    }
}
