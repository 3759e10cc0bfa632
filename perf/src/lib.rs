//! rcapture's end-to-end performance harness: a TLS load generator, the
//! uprobe floor, rcapture and peer tracers side by side, and the kernel→user
//! capacity of one ring and worker. `perf-tls` runs it all and writes
//! `perf/results/tls.{json,md}`; `perf-report` runs the whole suite (the
//! criterion benches, `perf-tls`, `perf-fanout`) and writes
//! `perf/results/summary.{json,md}`.
//!
//! ```
//! use rcapture_perf::report::ratio;
//! assert_eq!(ratio(90.0, 100.0), Some(0.9));
//! assert_eq!(ratio(1.0, 0.0), None);
//! ```

pub mod capacity;
pub mod fanload;
pub mod floor;
pub mod loadgen;
pub mod report;
pub mod scenario;
pub mod suite;
pub mod sys;
pub mod tracer;
