//! User-space mirrors of the map values shared with the BPF programs
//! (`struct rc_filter`, `struct rc_counters` in `include/records.h`).

/// The live filter (`struct rc_filter`); 0 means any.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this thread group id, or 0.
    pub pid: u32,
    /// Only this uid, or 0.
    pub uid: u32,
    /// Non-zero: no new call is captured (set at shutdown).
    pub stopped: u32,
    pub _pad: u32,
}

// SAFETY: repr(C), four u32 fields, no padding; every bit pattern is valid.
unsafe impl aya::Pod for Filter {}

/// One CPU's counters (`struct rc_counters`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Records written to the ring buffer.
    pub emitted: u64,
    /// Records that could not be written (ring full or unreadable user memory).
    pub lost: u64,
    /// Payload bytes of the lost records.
    pub lost_bytes: u64,
    /// TLS calls skipped by the live filter.
    pub filtered: u64,
}

// SAFETY: repr(C), four u64 fields, no padding; every bit pattern is valid.
unsafe impl aya::Pod for Counters {}

impl std::ops::AddAssign for Counters {
    fn add_assign(&mut self, o: Self) {
        self.emitted += o.emitted;
        self.lost += o.lost;
        self.lost_bytes += o.lost_bytes;
        self.filtered += o.filtered;
    }
}

const _: () = assert!(size_of::<Filter>() == 16);
const _: () = assert!(size_of::<Counters>() == 32);
