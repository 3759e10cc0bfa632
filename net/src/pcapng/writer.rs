//! The pcapng writer thread: takes the workers' frames, writes new secrets
//! at once and packets once held long enough, oldest first.

use super::block::{self, FLAG_INBOUND, FLAG_OUTBOUND, Packet};
use super::hold::Held;
use super::sink::{
    Frame, KEYLOG_HEAD, PACKET_HEAD, PacketHead, TAG_KEYLOG, TAG_PACKET, keylog_entry_len,
};
use super::{PcapConfig, PcapStats};
use crate::eventfile::file::{FileConfig, FileCounters, Items, OutFile};
use rcapture_core::keylog::KeylogDedupe;
use rcapture_core::records::DIR_SEND;
use std::io::{self, Write as _};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::time::Duration;

/// Key log text kept for the DSB at the start of a rotated file.
const RECENT_MAX: usize = 1 << 20;
/// Longest wait for frames when nothing is held.
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// Items: `[packets, key log lines]`.
struct Counters(Arc<PcapStats>);

impl FileCounters for Counters {
    fn written(&self, items: Items, bytes: u64) {
        self.0.packets_written.fetch_add(items[0], Relaxed);
        self.0.secret_lines_written.fetch_add(items[1], Relaxed);
        self.0.bytes.fetch_add(bytes, Relaxed);
    }

    fn dropped(&self, items: Items) {
        self.0.packets_dropped.fetch_add(items[0], Relaxed);
        self.0.secret_lines_dropped.fetch_add(items[1], Relaxed);
    }

    fn rotated(&self, deleted: u64) {
        self.0.files_rotated.fetch_add(1, Relaxed);
        self.0.files_deleted.fetch_add(deleted, Relaxed);
    }

    fn error(&self, e: &io::Error) {
        self.0.set_error(e);
    }
}

pub(super) struct Writer {
    out: OutFile,
    cfg: PcapConfig,
    held: Held,
    /// Frame buffers go back to their worker.
    returns: Vec<SyncSender<Vec<u8>>>,
    dedupe: KeylogDedupe,
    /// New key log lines not written yet.
    pending: Vec<u8>,
    /// The latest lines written, for a rotated file's first DSB.
    recent: Vec<u8>,
    /// An EPB comment.
    comment: Vec<u8>,
    /// A file header being built.
    scratch: Vec<u8>,
    stats: Arc<PcapStats>,
}

impl Writer {
    /// Creates the file and writes its SHB and IDBs.
    pub(super) fn open(
        cfg: PcapConfig,
        workers: usize,
        returns: Vec<SyncSender<Vec<u8>>>,
        stats: Arc<PcapStats>,
    ) -> io::Result<Self> {
        let file = FileConfig {
            path: cfg.path.clone(),
            max_bytes: cfg.max_bytes,
            keep: cfg.keep,
            mode: cfg.mode,
        };
        let out = OutFile::create(file, false, Box::new(Counters(Arc::clone(&stats))))?;
        let mut w = Self {
            out,
            held: Held::new(workers),
            returns,
            dedupe: KeylogDedupe::new(),
            pending: Vec::with_capacity(64 * 1024),
            recent: Vec::with_capacity(RECENT_MAX),
            comment: Vec::with_capacity(64),
            scratch: Vec::new(),
            stats,
            cfg,
        };
        w.header();
        Ok(w)
    }

    /// Runs until every sink is gone, then writes what is held and syncs.
    pub(super) fn run(mut self, rx: Receiver<Frame>) -> io::Result<()> {
        loop {
            let mut gone = false;
            loop {
                match rx.try_recv() {
                    Ok(f) => self.take(f),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        gone = true;
                        break;
                    }
                }
            }
            if gone {
                break;
            }
            self.write_secrets();
            self.release(false);
            if self.out.busy() {
                self.out.complete();
                continue;
            }
            if self.out.pending() > 0 {
                self.out.flush();
                continue;
            }
            match rx.recv_timeout(self.next_release()) {
                Ok(f) => self.take(f),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.close()
    }

    /// Unix nanoseconds now, on the events' clock.
    fn now(&self) -> i64 {
        let boot = rcapture_core::sys::clock_ns(libc::CLOCK_BOOTTIME);
        self.cfg.clock.to_unix_ns(boot.max(0) as u64)
    }

    fn hold_ns(&self) -> i64 {
        i64::try_from(self.cfg.hold.as_nanos()).unwrap_or(i64::MAX)
    }

    /// How long until the oldest held packet is due.
    fn next_release(&self) -> Duration {
        match self.held.oldest() {
            Some((_, h)) => {
                let due = h.ts_ns.saturating_add(self.hold_ns());
                let wait = due.saturating_sub(self.now()).max(0) as u64;
                Duration::from_nanos(wait).min(IDLE_WAIT) + Duration::from_millis(1)
            }
            None => IDLE_WAIT,
        }
    }

    /// Files a frame's entries, and gives the buffer back.
    fn take(&mut self, mut f: Frame) {
        let mut at = 0;
        while at < f.buf.len() {
            let e = &f.buf[at..];
            match e[0] {
                TAG_PACKET if e.len() >= PACKET_HEAD => {
                    let len = PacketHead::read(e).entry_len().min(e.len());
                    self.held.push(f.worker, &e[..len]);
                    at += len;
                }
                TAG_KEYLOG if e.len() >= KEYLOG_HEAD => {
                    let len = keylog_entry_len(e).min(e.len());
                    let dup = self.dedupe.filter(&e[KEYLOG_HEAD..len], &mut self.pending);
                    self.stats.duplicate_lines.fetch_add(dup, Relaxed);
                    at += len;
                }
                _ => break, // not written by PcapSink: cannot happen
            }
        }
        f.buf.clear();
        if let Some(r) = self.returns.get(f.worker) {
            // The worker may be gone at shutdown: then the buffer is freed.
            let _ = r.send(f.buf);
        }
    }

    /// Room for a block of `len` bytes: rotates first when the file would
    /// grow past its limit (the new file gets its header). False if the
    /// file cannot be written.
    fn room(&mut self, len: usize) -> bool {
        if !self.out.ensure_open() {
            return false;
        }
        if self.out.needs_rotation(len) {
            self.out.rotate();
            if !self.out.ensure_open() {
                return false;
            }
            self.header();
        }
        self.out.reserve(len);
        true
    }

    /// SHB, IDBs, and the recent secrets: the start of every file.
    fn header(&mut self) {
        if !self.out.ensure_open() {
            return;
        }
        let mut h = std::mem::take(&mut self.scratch);
        h.clear();
        block::shb(&mut h, concat!("rcapture ", env!("CARGO_PKG_VERSION")));
        for i in &self.cfg.interfaces {
            block::idb(&mut h, &i.name, self.cfg.snap_len);
        }
        if !self.recent.is_empty() {
            block::dsb(&mut h, &self.recent);
        }
        self.out.reserve(h.len());
        self.out.fill_mut().extend_from_slice(&h);
        self.scratch = h;
    }

    /// The new key log lines as one DSB, before any packet still held.
    fn write_secrets(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let lines = memchr::memchr_iter(b'\n', &self.pending).count() as u64;
        if !self.room(block::dsb_len(self.pending.len())) {
            self.stats.secret_lines_dropped.fetch_add(lines, Relaxed);
            self.pending.clear();
            return;
        }
        block::dsb(self.out.fill_mut(), &self.pending);
        self.out.add_items([0, lines]);
        if self.recent.len() + self.pending.len() > RECENT_MAX {
            let excess = self.recent.len() + self.pending.len() - RECENT_MAX / 2;
            let cut = memchr::memchr(b'\n', &self.recent[excess.min(self.recent.len())..])
                .map_or(self.recent.len(), |i| excess + i + 1);
            self.recent.drain(..cut.min(self.recent.len()));
        }
        self.recent.extend_from_slice(&self.pending);
        self.pending.clear();
    }

    /// Writes the held packets that are due (all with `force`), oldest
    /// first; more than `hold_bytes` held are written early.
    fn release(&mut self, force: bool) {
        let now = self.now();
        let hold = self.hold_ns();
        while let Some((w, h)) = self.held.oldest() {
            let due = h.ts_ns.saturating_add(hold) <= now;
            if !due && !force {
                if self.held.bytes() <= self.cfg.hold_bytes {
                    break;
                }
                self.stats.packets_early.fetch_add(1, Relaxed);
            }
            self.write_packet(w, &h);
            self.held.pop(w);
        }
    }

    fn write_packet(&mut self, worker: usize, h: &PacketHead) {
        let Some(interface) = self
            .cfg
            .interfaces
            .iter()
            .position(|i| i.ifindex == h.ifindex)
        else {
            self.stats.packets_dropped.fetch_add(1, Relaxed);
            self.stats.set_error(&io::Error::other(format!(
                "a packet of interface index {} that is not captured",
                h.ifindex
            )));
            return;
        };
        self.comment.clear();
        if h.pid != 0 {
            let _ = write!(self.comment, "pid={} comm=", h.pid);
            self.comment.extend_from_slice(h.comm());
        }
        if !self.room(block::epb_len(h.caplen as usize, self.comment.len())) {
            self.stats.packets_dropped.fetch_add(1, Relaxed);
            return;
        }
        let Self {
            out, held, comment, ..
        } = self;
        let Some(entry) = held.head(worker) else {
            return;
        };
        let data = &entry[PACKET_HEAD..];
        block::epb(
            out.fill_mut(),
            &Packet {
                interface: interface as u32,
                ts_ns: h.ts_ns.max(0) as u64,
                data,
                orig_len: h.orig_len,
                flags: if h.direction == DIR_SEND {
                    FLAG_OUTBOUND
                } else {
                    FLAG_INBOUND
                },
                comment,
            },
        );
        out.add_items([1, 0]);
    }

    /// Writes the secrets, every held packet and the buffer, then syncs.
    fn close(mut self) -> io::Result<()> {
        self.write_secrets();
        self.release(true);
        let before = self.stats.snapshot();
        self.out.close()?;
        let after = self.stats.snapshot();
        let lost = after.packets_dropped - before.packets_dropped;
        if lost > 0 {
            return Err(io::Error::other(format!(
                "{lost} packets were not written at shutdown: {}",
                after.last_error.unwrap_or_default()
            )));
        }
        Ok(())
    }
}
