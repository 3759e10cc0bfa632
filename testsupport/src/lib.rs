//! Helpers shared by rcapture's tests, benches and perf tools (a
//! dev-dependency; `perf` links it for its allocation counts).
//!
//! - [`event::OwnedEvent`]: an event with owned fields, borrowed as
//!   `EventFields` and built as the prost `Event` a client decodes;
//! - [`alloc::CountingAlloc`]: the system allocator with a counting hook;
//! - [`control::NoControl`]: a `Control` for servers without probes;
//! - [`promtool`]: `promtool check metrics` on an exposition;
//! - [`gobuild`]: the Go test programs of `tests/support/gotls/`, built with `go`;
//! - [`db`]: throw-away MariaDB and PostgreSQL servers;
//! - [`browser`]: the web viewer's browser tests (node + playwright-core + chromium).

pub mod alloc;
pub mod browser;
pub mod control;
pub mod db;
pub mod event;
pub mod gobuild;
pub mod promtool;
