//! Byte-stream outputs (stdout text, key log file) fed by the workers.
//!
//! Each worker renders events into pooled frames (many events per frame) and
//! hands full frames to one writer thread through a bounded queue; the writer
//! returns each frame to its worker's pool once written. A worker never
//! waits for this output: when the writer falls behind (a slow terminal, a
//! pipe nobody reads) and the worker has no free frame, the event is dropped
//! for this output and counted in [`OutputStats::behind`], so the other
//! outputs (WebSocket, forwarder, event file) keep getting every event.
//! Nothing is dropped silently: a failed write counts the frame's events in
//! [`OutputStats::dropped`] too.
//!
//! Each event's block is rendered whole into one frame and frames are
//! written whole by the one writer thread, so the blocks of two events never
//! interleave.

use crate::event::{EventFields, EventKind};
use crate::keylog::KeylogDedupe;
use crate::text::{PayloadStyle, write_text};
use crate::worker::EventSink;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;

/// Counters of one output.
#[derive(Debug, Default)]
pub struct OutputStats {
    /// Events written.
    pub delivered: AtomicU64,
    /// Events not written: lost to write errors, or dropped while the
    /// writer was behind (those are also in `behind`).
    pub dropped: AtomicU64,
    /// Events dropped because the writer was behind: the worker had no free
    /// frame (every one queued for the writer), and it does not wait.
    pub behind: AtomicU64,
    /// Key log lines not written because they were already written.
    pub duplicates: AtomicU64,
}

/// Frame pool sizes.
#[derive(Debug, Clone, Copy)]
pub struct FramePoolConfig {
    /// Frames per worker.
    pub frames: usize,
    /// A frame is handed over once it holds this many bytes.
    pub frame_bytes: usize,
}

impl Default for FramePoolConfig {
    fn default() -> Self {
        Self {
            frames: 8,
            frame_bytes: 64 * 1024,
        }
    }
}

struct Frame {
    worker: usize,
    events: u64,
    buf: Vec<u8>,
}

/// What an output makes of an event.
#[derive(Debug, Clone)]
enum Render {
    /// Text blocks; hex dumps while the flag is set (it can change live).
    Text(Arc<AtomicBool>),
    Keylog,
}

struct FrameSink {
    worker: usize,
    render: Render,
    frame_bytes: usize,
    tx: SyncSender<Frame>,
    free: Receiver<Vec<u8>>,
    current: Option<Frame>,
    stats: Arc<OutputStats>,
}

impl FrameSink {
    fn send(&mut self) {
        if let Some(f) = self.current.take() {
            if f.events == 0 {
                self.current = Some(f);
                return;
            }
            let n = f.events;
            if self.tx.send(f).is_err() {
                self.stats.dropped.fetch_add(n, Relaxed);
            }
        }
    }
}

impl EventSink for FrameSink {
    fn event(&mut self, ev: &EventFields<'_>, kind: EventKind) {
        if matches!(self.render, Render::Keylog) && kind != EventKind::MasterKey {
            return;
        }
        if self.current.is_none() {
            match self.free.try_recv() {
                Ok(buf) => {
                    self.current = Some(Frame {
                        worker: self.worker,
                        events: 0,
                        buf,
                    })
                }
                Err(TryRecvError::Empty) => {
                    // Every frame is queued for the writer: drop, counted.
                    self.stats.behind.fetch_add(1, Relaxed);
                    self.stats.dropped.fetch_add(1, Relaxed);
                    return;
                }
                Err(TryRecvError::Disconnected) => {
                    // The writer is gone (its output failed): count, don't block.
                    self.stats.dropped.fetch_add(1, Relaxed);
                    return;
                }
            }
        }
        let Some(f) = self.current.as_mut() else {
            return;
        };
        match &self.render {
            Render::Text(hex) => {
                let style = if hex.load(Relaxed) {
                    PayloadStyle::Hex
                } else {
                    PayloadStyle::Escaped
                };
                write_text(ev, kind, style, &mut f.buf)
            }
            Render::Keylog => f.buf.extend_from_slice(ev.payload),
        }
        f.events += 1;
        if f.buf.len() >= self.frame_bytes {
            self.send();
        }
    }

    fn flush(&mut self) {
        self.send();
    }
}

/// A running byte-stream output: the sinks to give the workers, and its writer.
#[derive(Debug)]
pub struct StreamOutput {
    /// One sink per worker, in worker order (take them with `std::mem::take`).
    pub sinks: Vec<Box<dyn EventSink>>,
    /// Counters.
    pub stats: Arc<OutputStats>,
    writer: JoinHandle<std::io::Result<()>>,
}

impl std::fmt::Debug for dyn EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSink")
    }
}

impl StreamOutput {
    /// Text blocks (WIRE.md §8) written to `out`; payloads as hex dumps
    /// while `hex` is set.
    pub fn text(
        out: Box<dyn Write + Send>,
        hex: Arc<AtomicBool>,
        workers: usize,
        pool: FramePoolConfig,
    ) -> Self {
        Self::start(out, Render::Text(hex), workers, pool)
    }

    /// NSS key log lines written to `out`, flushed after every frame; a line
    /// whose (label, client random) is among the last
    /// [`crate::keylog::DEDUPE_ENTRIES`] written is not written again.
    pub fn keylog(out: Box<dyn Write + Send>, workers: usize, pool: FramePoolConfig) -> Self {
        Self::start(out, Render::Keylog, workers, pool)
    }

    fn start(
        mut out: Box<dyn Write + Send>,
        render: Render,
        workers: usize,
        pool: FramePoolConfig,
    ) -> Self {
        let stats = Arc::new(OutputStats::default());
        let (tx, rx) = sync_channel::<Frame>(workers * pool.frames);
        let mut sinks: Vec<Box<dyn EventSink>> = Vec::with_capacity(workers);
        let mut returns = Vec::with_capacity(workers);
        for worker in 0..workers {
            let (free_tx, free_rx) = sync_channel(pool.frames);
            for _ in 0..pool.frames {
                // The channel has room for exactly `pool.frames` buffers.
                let _ = free_tx.send(Vec::with_capacity(pool.frame_bytes * 2));
            }
            returns.push(free_tx);
            sinks.push(Box::new(FrameSink {
                worker,
                render: render.clone(),
                frame_bytes: pool.frame_bytes,
                tx: tx.clone(),
                free: free_rx,
                current: None,
                stats: Arc::clone(&stats),
            }));
        }
        drop(tx);
        let st = Arc::clone(&stats);
        let writer = std::thread::Builder::new()
            .name("rcapture-output".into())
            .spawn(move || -> std::io::Result<()> {
                let mut seen = match render {
                    Render::Keylog => Some(KeylogDedupe::new()),
                    Render::Text(_) => None,
                };
                let mut lines = Vec::new();
                for mut f in rx {
                    let res = match &mut seen {
                        None => out.write_all(&f.buf),
                        Some(seen) => {
                            lines.clear();
                            let dup = seen.filter(&f.buf, &mut lines);
                            st.duplicates.fetch_add(dup, Relaxed);
                            out.write_all(&lines)
                        }
                    }
                    .and_then(|()| out.flush());
                    match res {
                        Ok(()) => st.delivered.fetch_add(f.events, Relaxed),
                        Err(e) => {
                            st.dropped.fetch_add(f.events, Relaxed);
                            return Err(e);
                        }
                    };
                    f.buf.clear();
                    // The worker may be gone at shutdown: then the buffer is freed.
                    let _ = returns[f.worker].send(f.buf);
                }
                out.flush()
            })
            .expect("spawning the output thread");
        Self {
            sinks,
            stats,
            writer,
        }
    }

    /// Waits for the writer to write everything the (dropped) sinks sent.
    pub fn finish(self) -> std::io::Result<Arc<OutputStats>> {
        drop(self.sinks);
        match self.writer.join() {
            Ok(r) => r.map(|()| self.stats),
            Err(_) => Err(std::io::Error::other("output thread panicked")),
        }
    }
}
