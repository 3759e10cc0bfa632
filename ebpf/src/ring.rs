//! One CPU's BPF ring buffer as a [`RecordRing`].

use std::os::fd::{AsRawFd as _, RawFd};

use aya::maps::{MapData, RingBuf};
use rcapture_core::ring::RecordRing;

/// The ring buffer that receives the records produced on one CPU.
pub struct CpuRing {
    cpu: u32,
    ring: RingBuf<MapData>,
}

impl CpuRing {
    pub(crate) fn new(cpu: u32, ring: RingBuf<MapData>) -> Self {
        Self { cpu, ring }
    }
}

impl std::fmt::Debug for CpuRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuRing")
            .field("cpu", &self.cpu)
            .field("fd", &self.ring.as_raw_fd())
            .finish()
    }
}

impl RecordRing for CpuRing {
    fn cpu(&self) -> u32 {
        self.cpu
    }

    fn poll_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    fn drain(&mut self, f: &mut dyn FnMut(&[u8])) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            f(&item);
            n += 1;
        }
        n
    }
}
