//! The seam between the kernel loader and the workers: a source of raw records.
//!
//! `rcapture-ebpf` implements [`RecordRing`] over one BPF ring buffer per CPU;
//! tests implement it over byte vectors. Workers only see this trait.

use std::os::fd::RawFd;

/// One per-CPU ring buffer of records laid out as in `ebpf/include/records.h`.
pub trait RecordRing: Send {
    /// The CPU whose records land in this ring.
    fn cpu(&self) -> u32;
    /// A file descriptor that becomes readable (epoll) when records are pending.
    fn poll_fd(&self) -> RawFd;
    /// Hands every record currently available to `f`, in ring order, releasing
    /// each one after `f` returns. Returns the number of records handed over.
    fn drain(&mut self, f: &mut dyn FnMut(&[u8])) -> usize;
}
