//! One client connection: HTTP requests, then (after an upgrade) a WebSocket
//! stream with its filter, `seq`, bounded send queue and vectored writes.

use crate::filter::ClientFilter;
use crate::publish::Batch;
use crate::ws::{self, Deflate};
use mio::net::TcpStream;
use rcapture_core::encode;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Largest per-message header: frame header + `seq` prefix.
const ITEM_HDR: usize = ws::MAX_HEADER + encode::MAX_SEQ_PREFIX;
/// Items written per `writev`.
const IOV_ITEMS: usize = 256;

/// One queued event entry: a shared batch, the entry, and this client's header.
#[derive(Debug)]
pub struct Item {
    batch: Arc<Batch>,
    idx: u32,
    hdr: [u8; ITEM_HDR],
    hdr_len: u8,
}

impl Item {
    fn body(&self) -> &[u8] {
        self.batch.body(self.idx as usize)
    }
    fn len(&self) -> usize {
        self.hdr_len as usize + self.body().len()
    }
}

/// Bounds of a client's send queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    pub frames: usize,
    pub bytes: usize,
}

/// Why an entry was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueue {
    Queued,
    /// Queue full (slow client).
    Full,
    /// Over the client's `max_rate`.
    RateLimited,
    /// The client does not want it.
    Filtered,
}

/// The WebSocket side of a connection.
#[derive(Debug)]
pub struct WsStream {
    pub filter: ClientFilter,
    pub seq: u64,
    pub sent: u64,
    pub dropped: u64,
    queue: VecDeque<Item>,
    queue_bytes: usize,
    /// Bytes of the front item already written.
    partial: usize,
    limits: QueueLimits,
    pub full_since: Option<Instant>,
    rate_window: Option<Instant>,
    rate_count: u32,
    pub deflate: Option<Deflate>,
    zbuf: Vec<u8>,
    pub heartbeats: i64,
    pub next_heartbeat: Instant,
    /// A fragmented client message being assembled (opcode, compressed, bytes).
    pub fragment: Option<(u8, bool, Vec<u8>)>,
}

impl WsStream {
    pub fn new(filter: ClientFilter, limits: QueueLimits, deflate: bool, now: Instant) -> Self {
        Self {
            filter,
            seq: 0,
            sent: 0,
            dropped: 0,
            queue: VecDeque::with_capacity(limits.frames),
            queue_bytes: 0,
            partial: 0,
            limits,
            full_since: None,
            rate_window: None,
            rate_count: 0,
            deflate: deflate.then(Deflate::default),
            zbuf: Vec::new(),
            heartbeats: 0,
            next_heartbeat: now,
            fragment: None,
        }
    }

    /// Offers entry `idx` of `batch`; `staged` receives compressed frames.
    pub fn offer(
        &mut self,
        batch: &Arc<Batch>,
        idx: usize,
        staged: &mut Staged,
        now: Instant,
    ) -> Enqueue {
        if !self.filter.passes(&batch.entries[idx]) {
            return Enqueue::Filtered;
        }
        self.seq += 1;
        if self.filter.max_rate > 0 {
            match self.rate_window {
                Some(t) if now.duration_since(t).as_secs() < 1 => {}
                _ => {
                    self.rate_window = Some(now);
                    self.rate_count = 0;
                }
            }
            if self.rate_count >= self.filter.max_rate {
                self.dropped += 1;
                return Enqueue::RateLimited;
            }
            self.rate_count += 1;
        }
        let body = batch.body(idx);
        let (prefix, plen) = encode::seq_prefix(self.seq);
        let msg_len = plen + body.len();
        let pending = self.queue_bytes + staged.pending();
        if self.queue.len() >= self.limits.frames || pending + msg_len > self.limits.bytes {
            self.dropped += 1;
            self.full_since.get_or_insert(now);
            return Enqueue::Full;
        }
        if self.queue.len() < self.limits.frames / 2 {
            self.full_since = None;
        }
        if let Some(d) = self.deflate.as_mut() {
            self.zbuf.clear();
            d.compress(&[&prefix[..plen], body], &mut self.zbuf);
            let mut h = [0u8; ws::MAX_HEADER];
            let n = ws::frame_header(ws::OP_BINARY, true, self.zbuf.len(), &mut h);
            staged.buf.extend_from_slice(&h[..n]);
            staged.buf.extend_from_slice(&self.zbuf);
            self.sent += 1;
            return Enqueue::Queued;
        }
        let mut hdr = [0u8; ITEM_HDR];
        let mut h = [0u8; ws::MAX_HEADER];
        let n = ws::frame_header(ws::OP_BINARY, false, msg_len, &mut h);
        hdr[..n].copy_from_slice(&h[..n]);
        hdr[n..n + plen].copy_from_slice(&prefix[..plen]);
        let item = Item {
            batch: Arc::clone(batch),
            idx: idx as u32,
            hdr,
            hdr_len: (n + plen) as u8,
        };
        self.queue_bytes += item.len();
        self.queue.push_back(item);
        Enqueue::Queued
    }

    /// Entries waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Drops everything queued (closing) except a frame already partly
    /// written, which must be finished before any other frame (a close) can
    /// follow on the wire. The dropped entries are counted; returns how many.
    pub fn clear(&mut self) -> u64 {
        let keep = usize::from(self.partial > 0);
        let mut n = 0;
        while self.queue.len() > keep {
            if let Some(item) = self.queue.pop_back() {
                self.queue_bytes -= item.len();
                n += 1;
            }
        }
        self.dropped += n;
        n
    }

    fn write_items(&mut self, sock: &mut TcpStream) -> io::Result<usize> {
        let mut iov = [IoSlice::new(&[]); 2 * IOV_ITEMS];
        let mut n = 0;
        for (i, item) in self.queue.iter().take(IOV_ITEMS).enumerate() {
            let hl = item.hdr_len as usize;
            let skip = if i == 0 { self.partial } else { 0 };
            if skip < hl {
                iov[n] = IoSlice::new(&item.hdr[skip..hl]);
                n += 1;
                iov[n] = IoSlice::new(item.body());
            } else {
                iov[n] = IoSlice::new(&item.body()[skip - hl..]);
            }
            n += 1;
        }
        let mut written = sock.write_vectored(&iov[..n])?;
        let total = written;
        while written > 0 {
            let Some(front) = self.queue.front() else {
                break;
            };
            let rest = front.len() - self.partial;
            if written >= rest {
                written -= rest;
                self.queue_bytes -= front.len();
                self.queue.pop_front();
                self.partial = 0;
                self.sent += 1;
            } else {
                self.partial += written;
                written = 0;
            }
        }
        Ok(total)
    }
}

/// Bytes owned by the connection (responses, control frames, compressed
/// frames), written between queued items.
#[derive(Debug, Default)]
pub struct Staged {
    pub buf: Vec<u8>,
    pos: usize,
}

impl Staged {
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// A client connection.
#[derive(Debug)]
pub struct Conn {
    pub sock: TcpStream,
    pub peer: SocketAddr,
    /// Accepted on the `--ecaptureq` address: the stream only.
    pub stream_only: bool,
    pub rbuf: Vec<u8>,
    pub staged: Staged,
    pub ws: Option<WsStream>,
    pub last_activity: Instant,
    /// When the request now being received started.
    pub request_started: Option<Instant>,
    /// Close once everything staged is written.
    pub close_after_flush: bool,
    /// Drop the connection at this instant even if writes are stuck.
    pub hard_deadline: Option<Instant>,
    pub id: u64,
}

/// What a write pass ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum Flush {
    /// Everything written.
    Idle,
    /// The socket is full; wait for WRITABLE.
    Blocked,
    /// The connection is done (closed after flush, or failed).
    Close,
}

impl Conn {
    pub fn new(
        sock: TcpStream,
        peer: SocketAddr,
        stream_only: bool,
        now: Instant,
        id: u64,
    ) -> Self {
        Self {
            sock,
            peer,
            stream_only,
            rbuf: Vec::with_capacity(4096),
            staged: Staged::default(),
            ws: None,
            last_activity: now,
            request_started: None,
            close_after_flush: false,
            hard_deadline: None,
            id,
        }
    }

    /// Reads what is available into `rbuf` (up to `limit` bytes buffered).
    /// Returns false when the peer closed or the read failed.
    pub fn read_available(&mut self, limit: usize) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if self.rbuf.len() >= limit {
                return true;
            }
            match self.sock.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => self.rbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }

    /// Writes staged bytes and queued items until done or blocked.
    pub fn flush(&mut self) -> Flush {
        loop {
            let partial_item = self.ws.as_ref().is_some_and(|w| w.partial > 0);
            let res = if !partial_item && self.staged.pending() > 0 {
                let r = self.sock.write(&self.staged.buf[self.staged.pos..]);
                if let Ok(n) = r {
                    self.staged.pos += n;
                    if self.staged.pos == self.staged.buf.len() {
                        self.staged.buf.clear();
                        self.staged.pos = 0;
                    }
                }
                r
            } else if let Some(ws) = self.ws.as_mut().filter(|w| w.queued() > 0) {
                ws.write_items(&mut self.sock)
            } else {
                return if self.close_after_flush {
                    Flush::Close
                } else {
                    Flush::Idle
                };
            };
            match res {
                Ok(0) => return Flush::Close,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flush::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Flush::Close,
            }
        }
    }
}
