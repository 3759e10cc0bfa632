//! The io_uring seam of the event file: one ring, at most one operation in flight.
//!
//! A write takes ownership of its buffer until the kernel is done with it
//! ([`FileRing::finish`] hands it back), so the memory the kernel reads can
//! neither move nor be freed early; dropping the ring waits for (or, if
//! waiting fails, leaks) a buffer still in flight. Short writes are
//! resubmitted for the rest, at the matching offset.

use io_uring::{IoUring, opcode, types};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

const WRITE: u64 = 1;
const FSYNC: u64 = 2;
/// One write submits at most this much (the SQE length is a `u32`).
const MAX_WRITE: usize = 1 << 30;

/// A buffer being written.
#[derive(Debug)]
struct Pending {
    buf: Vec<u8>,
    fd: RawFd,
    offset: u64,
    done: usize,
}

/// One io_uring with at most one operation in flight.
pub(super) struct FileRing {
    ring: IoUring,
    pending: Option<Pending>,
}

impl std::fmt::Debug for FileRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileRing")
            .field("pending", &self.pending.as_ref().map(|p| p.buf.len()))
            .finish()
    }
}

impl FileRing {
    /// Sets up the ring; the error names io_uring (it may be disabled by
    /// `kernel.io_uring_disabled`, seccomp, or an old kernel).
    pub(super) fn new() -> io::Result<Self> {
        let ring = IoUring::new(4).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "io_uring setup failed (disabled by sysctl kernel.io_uring_disabled, \
                     seccomp, or an old kernel?): {e}"
                ),
            )
        })?;
        Ok(Self {
            ring,
            pending: None,
        })
    }

    /// Whether a write is in flight.
    pub(super) fn busy(&self) -> bool {
        self.pending.is_some()
    }

    /// Starts writing all of `buf` to `fd` at `offset`; the caller must have
    /// [`finish`](Self::finish)ed the previous write. On an error the buffer
    /// comes back with it (nothing was submitted).
    pub(super) fn start_write(
        &mut self,
        fd: BorrowedFd<'_>,
        buf: Vec<u8>,
        offset: u64,
    ) -> Result<(), (Vec<u8>, io::Error)> {
        if self.pending.is_some() {
            return Err((buf, io::Error::other("a write is already in flight")));
        }
        if buf.is_empty() {
            self.pending = Some(Pending {
                buf,
                fd: fd.as_raw_fd(),
                offset,
                done: 0,
            });
            return Ok(());
        }
        let p = Pending {
            buf,
            fd: fd.as_raw_fd(),
            offset,
            done: 0,
        };
        match self.push_write(&p) {
            Ok(()) => {
                self.pending = Some(p);
                Ok(())
            }
            Err(e) => Err((p.buf, e)),
        }
    }

    /// Queues and submits the not yet written part of `p`; an error means
    /// nothing was queued.
    fn push_write(&mut self, p: &Pending) -> io::Result<()> {
        let rest = &p.buf[p.done..];
        let len = rest.len().min(MAX_WRITE) as u32;
        let sqe = opcode::Write::new(types::Fd(p.fd), rest.as_ptr(), len)
            .offset(p.offset + p.done as u64)
            .build()
            .user_data(WRITE);
        // SAFETY: the SQE points at `len` initialised bytes of `p.buf`. The
        // caller stores `p` in `self.pending` (or already has), where the
        // Vec's heap storage stays put and alive until `finish` reaps the
        // completion, and `Drop` waits for that completion too.
        unsafe { self.ring.submission().push(&sqe) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        // Once queued, the write is in flight as far as the buffer is
        // concerned: a failed submit here is retried (and reported) by the
        // wait in `finish`, never answered by handing the buffer back.
        let _ = submit(&self.ring, 0);
        Ok(())
    }

    /// Waits for the write in flight to complete (resubmitting short
    /// writes) and returns its buffer with the outcome; `None` if idle.
    pub(super) fn finish(&mut self) -> Option<(Vec<u8>, io::Result<()>)> {
        let mut p = self.pending.take()?;
        loop {
            if p.done == p.buf.len() {
                return Some((p.buf, Ok(())));
            }
            let res = match self.reap(WRITE) {
                Ok(r) => r,
                Err(e) => {
                    // The write may still be in flight: keep its buffer owned.
                    self.pending = Some(p);
                    return self.abandon(e);
                }
            };
            match res {
                r if r < 0 => return Some((p.buf, Err(io::Error::from_raw_os_error(-r)))),
                0 => {
                    let e = io::Error::new(io::ErrorKind::WriteZero, "write returned 0 bytes");
                    return Some((p.buf, Err(e)));
                }
                n => {
                    p.done += n as usize;
                    if p.done < p.buf.len()
                        && let Err(e) = self.push_write(&p)
                    {
                        return Some((p.buf, Err(e)));
                    }
                }
            }
        }
    }

    /// Gives up on a write whose completion could not be waited for: its
    /// buffer is leaked (the kernel may still read it) and the error returned.
    fn abandon(&mut self, e: io::Error) -> Option<(Vec<u8>, io::Result<()>)> {
        if let Some(p) = self.pending.take() {
            std::mem::forget(p.buf);
        }
        Some((Vec::new(), Err(e)))
    }

    /// `fsync(fd)` through the ring, after any write in flight.
    pub(super) fn fsync(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        if self.pending.is_some() {
            return Err(io::Error::other("fsync with a write in flight"));
        }
        let sqe = opcode::Fsync::new(types::Fd(fd.as_raw_fd()))
            .build()
            .user_data(FSYNC);
        // SAFETY: an fsync SQE references no user memory.
        unsafe { self.ring.submission().push(&sqe) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        match self.reap(FSYNC)? {
            r if r < 0 => Err(io::Error::from_raw_os_error(-r)),
            _ => Ok(()),
        }
    }

    /// Submits what is queued and waits for the completion tagged `tag`.
    fn reap(&mut self, tag: u64) -> io::Result<i32> {
        loop {
            if let Some(cqe) = self.ring.completion().next() {
                if cqe.user_data() == tag {
                    return Ok(cqe.result());
                }
                continue;
            }
            submit(&self.ring, 1)?;
        }
    }
}

/// `io_uring_enter`, retried on EINTR.
fn submit(ring: &IoUring, want: usize) -> io::Result<usize> {
    loop {
        match ring.submit_and_wait(want) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

impl Drop for FileRing {
    fn drop(&mut self) {
        // The kernel must be done with a buffer before it is freed.
        let _ = self.finish();
    }
}
