//! The map values shared with the BPF programs (`struct rc_filter`,
//! `struct rc_counters` of `include/records.h`): core's mirrors
//! ([`rcapture_core::records::FilterValue`], [`KernelCounters`], whose
//! layout core's tests check against the header), made readable by aya.

pub use rcapture_core::records::{FilterValue as Filter, KernelCounters as Counters};

/// A map value as aya reads and writes it.
#[repr(transparent)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct MapValue<T>(pub T);

// SAFETY: `FilterValue` is repr(C), four u32 fields, no padding (core's
// layout test and const asserts); every bit pattern is valid.
unsafe impl aya::Pod for MapValue<Filter> {}

// SAFETY: `KernelCounters` is repr(C), four u64 fields, no padding (core's
// layout test and const asserts); every bit pattern is valid.
unsafe impl aya::Pod for MapValue<Counters> {}
