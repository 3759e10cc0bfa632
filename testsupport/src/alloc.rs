//! A counting global allocator: [`System`], with a hook told the size of
//! every allocation and reallocation (frees are not counted).
//!
//! ```ignore
//! use rcapture_testsupport::alloc::{self, CountingAlloc};
//! #[global_allocator]
//! static GLOBAL: CountingAlloc = CountingAlloc::per_thread();
//! let (_, n) = alloc::allocs_during(|| Vec::<u8>::with_capacity(10));
//! assert_eq!(n, 1);
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// [`System`] with a hook on every allocation.
#[derive(Debug)]
pub struct CountingAlloc {
    note: fn(usize),
}

impl CountingAlloc {
    /// Counts what the threads that asked ([`count_this_thread`]) allocate.
    pub const fn per_thread() -> Self {
        Self {
            note: note_if_counting,
        }
    }

    /// Calls `note` with the size of every allocation and reallocation, on
    /// the allocating thread. `note` must not recurse without bound: if it
    /// allocates, it must not count its own allocations.
    pub const fn with_hook(note: fn(usize)) -> Self {
        Self { note }
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees hold; the hook beside it has no effect
// on the memory handed out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        (self.note)(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        (self.note)(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (that is, `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        (self.note)(new_size);
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

/// The hook of [`CountingAlloc::per_thread`]: touches only atomics and a
/// const-initialised thread-local `Cell<bool>` (neither allocates; `try_with`
/// so an allocation during thread teardown never panics).
fn note_if_counting(size: usize) {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(size as u64, Relaxed);
    }
}

/// Counts (or stops counting) what this thread allocates.
pub fn count_this_thread(on: bool) {
    COUNTING.with(|c| c.set(on));
}

/// Allocations and bytes counted so far, every counting thread together.
pub fn counted() -> (u64, u64) {
    (ALLOCS.load(Relaxed), BYTES.load(Relaxed))
}

/// Allocations made by this thread while running `f`.
pub fn allocs_during<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = ALLOCS.load(Relaxed);
    count_this_thread(true);
    let r = f();
    count_this_thread(false);
    (r, ALLOCS.load(Relaxed) - before)
}
