//! The worker side of the pcapng output: packet and master-key events copied
//! into pooled frames, handed to the writer at the end of each drain batch.
//!
//! Entries in a frame (little-endian), also the layout of held packets:
//! - packet: `tag 1, direction u8, comm_len u8, 0, caplen u32, orig_len u32,
//!   ifindex u32, pid u32, ts_ns i64, comm [u8; 16]`, then `caplen` bytes;
//! - key log: `tag 2, 0, 0, 0, len u32`, then `len` bytes of NSS key log lines.

use super::{PcapConfig, PcapStats};
use rcapture_core::event::{Detail, EventFields, EventKind};
use rcapture_core::worker::EventSink;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};

pub(super) const TAG_PACKET: u8 = 1;
pub(super) const TAG_KEYLOG: u8 = 2;
/// Fixed part of a packet entry.
pub(super) const PACKET_HEAD: usize = 44;
/// Fixed part of a key log entry.
pub(super) const KEYLOG_HEAD: usize = 8;
/// The key log text of one master-key event, at most.
const KEYLOG_MAX: usize = rcapture_core::keylog::MAX_KEYLOG_BYTES;

/// The largest entry of a capture with this snap length.
pub(super) fn entry_max(snap_len: u32) -> usize {
    (PACKET_HEAD + snap_len as usize).max(KEYLOG_HEAD + KEYLOG_MAX)
}

/// A frame of entries from one worker.
#[derive(Debug)]
pub(super) struct Frame {
    pub worker: usize,
    pub buf: Vec<u8>,
    pub packets: u64,
    pub secrets: u64,
}

/// The fixed part of a packet entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PacketHead {
    pub direction: u8,
    pub caplen: u32,
    pub orig_len: u32,
    pub ifindex: u32,
    pub pid: u32,
    pub ts_ns: i64,
    pub comm_len: u8,
    pub comm: [u8; 16],
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl PacketHead {
    /// Reads the head of a packet entry (`b` holds at least
    /// [`PACKET_HEAD`] bytes: entries come from [`PcapSink`]).
    pub(super) fn read(b: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[20..28]);
        let mut comm = [0u8; 16];
        comm.copy_from_slice(&b[28..44]);
        Self {
            direction: b[1],
            comm_len: b[2].min(16),
            caplen: u32_at(b, 4),
            orig_len: u32_at(b, 8),
            ifindex: u32_at(b, 12),
            pid: u32_at(b, 16),
            ts_ns: i64::from_le_bytes(ts),
            comm,
        }
    }

    /// Bytes of the whole entry.
    pub(super) fn entry_len(&self) -> usize {
        PACKET_HEAD + self.caplen as usize
    }

    /// The comm bytes.
    pub(super) fn comm(&self) -> &[u8] {
        &self.comm[..usize::from(self.comm_len)]
    }
}

/// Length of the key log entry at the start of `b`.
pub(super) fn keylog_entry_len(b: &[u8]) -> usize {
    KEYLOG_HEAD + u32_at(b, 4) as usize
}

/// One worker's sink.
pub(super) struct PcapSink {
    worker: usize,
    tx: SyncSender<Frame>,
    free: Receiver<Vec<u8>>,
    current: Option<Frame>,
    frame_bytes: usize,
    snap_len: usize,
    stats: Arc<PcapStats>,
}

impl PcapSink {
    pub(super) fn new(
        worker: usize,
        tx: SyncSender<Frame>,
        free: Receiver<Vec<u8>>,
        cfg: &PcapConfig,
        stats: Arc<PcapStats>,
    ) -> Self {
        Self {
            worker,
            tx,
            free,
            current: None,
            frame_bytes: cfg.frame_bytes,
            snap_len: cfg.snap_len as usize,
            stats,
        }
    }

    fn send(&mut self) {
        let Some(f) = self.current.take() else { return };
        if f.buf.is_empty() {
            self.current = Some(f);
            return;
        }
        let (p, s) = (f.packets, f.secrets);
        if self.tx.send(f).is_err() {
            self.stats.packets_dropped.fetch_add(p, Relaxed);
            self.stats.secrets_dropped.fetch_add(s, Relaxed);
        }
    }

    /// The frame to append to, or `None` (the event is counted dropped).
    fn frame(&mut self, packet: bool) -> Option<&mut Frame> {
        if self.current.is_none() {
            match self.free.try_recv() {
                Ok(buf) => {
                    self.current = Some(Frame {
                        worker: self.worker,
                        buf,
                        packets: 0,
                        secrets: 0,
                    })
                }
                Err(e) => {
                    let s = &self.stats;
                    if packet {
                        s.packets_dropped.fetch_add(1, Relaxed);
                        if e == TryRecvError::Empty {
                            s.packets_behind.fetch_add(1, Relaxed);
                        }
                    } else {
                        s.secrets_dropped.fetch_add(1, Relaxed);
                    }
                    return None;
                }
            }
        }
        self.current.as_mut()
    }
}

impl EventSink for PcapSink {
    fn event(&mut self, ev: &EventFields<'_>, kind: EventKind) {
        match (kind, ev.detail) {
            (EventKind::Packet, Detail::Packet { ifindex, direction }) => {
                self.stats.packets.fetch_add(1, Relaxed);
                let data = &ev.payload[..ev.payload.len().min(self.snap_len)];
                let orig =
                    (ev.payload.len() as u64 + u64::from(ev.truncated)).min(u64::from(u32::MAX));
                let comm = ev.pname.as_bytes();
                let comm = &comm[..comm.len().min(16)];
                let Some(f) = self.frame(true) else { return };
                let b = &mut f.buf;
                b.extend_from_slice(&[TAG_PACKET, direction, comm.len() as u8, 0]);
                b.extend_from_slice(&(data.len() as u32).to_le_bytes());
                b.extend_from_slice(&(orig as u32).to_le_bytes());
                b.extend_from_slice(&ifindex.to_le_bytes());
                b.extend_from_slice(&(ev.pid as u32).to_le_bytes());
                b.extend_from_slice(&ev.timestamp.to_le_bytes());
                b.extend_from_slice(comm);
                b.extend_from_slice(&[0; 16][comm.len()..]);
                b.extend_from_slice(data);
                f.packets += 1;
            }
            (EventKind::MasterKey, _) => {
                self.stats.secrets.fetch_add(1, Relaxed);
                let text = &ev.payload[..ev.payload.len().min(KEYLOG_MAX)];
                let Some(f) = self.frame(false) else { return };
                f.buf.extend_from_slice(&[TAG_KEYLOG, 0, 0, 0]);
                f.buf.extend_from_slice(&(text.len() as u32).to_le_bytes());
                f.buf.extend_from_slice(text);
                f.secrets += 1;
            }
            _ => return,
        }
        if self
            .current
            .as_ref()
            .is_some_and(|f| f.buf.len() >= self.frame_bytes)
        {
            self.send();
        }
    }

    fn flush(&mut self) {
        self.send();
    }
}
