//! rcapture's kernel side: the embedded BPF objects of every capture module
//! and their loader.
//!
//! Each module ([`module::ModuleDesc`], listed in [`module::MODULES`]) finds
//! its target ([`module::Target`]: the file to probe, its version, the
//! resolved attach points); [`Capture::load`] loads any set of targets on
//! one BPF ring buffer per CPU, handed out as [`CpuRing`]s that implement
//! [`rcapture_core::ring::RecordRing`]. Record layouts: `include/records.h`.
//!
//! ```no_run
//! use rcapture_core::ring::RecordRing as _;
//! use rcapture_ebpf::module::{self, TargetRequest};
//! use rcapture_ebpf::{Capture, CaptureOptions};
//!
//! let tls = module::module("tls").expect("built in");
//! let target = (tls.resolve)(&TargetRequest::default())?;
//! let mut capture = Capture::load(&[target], &CaptureOptions::default())?;
//! for mut ring in capture.take_rings() {
//!     let cpu = ring.cpu();
//!     ring.drain(&mut |record| println!("cpu {cpu}: {} bytes", record.len()));
//! }
//! # Ok::<(), rcapture_ebpf::Error>(())
//! ```

mod capture;
mod detach;
mod error;
pub mod libwatch;
mod maps;
pub mod module;
pub mod pktfilter;
mod ring;
mod sys;
mod target;

pub use capture::{Capture, CaptureOptions, FileInfo, LoadWarning, ModuleInfo, error_chain};
pub use error::Error;
pub use maps::{Counters, Filter};
pub use ring::CpuRing;
pub use target::conn::{Interface, MAX_SNAP_LEN, PacketCapture, packet_target};
pub use target::gotls::{Function, FunctionSource, GoTarget};
pub use target::nss::NssTarget;
pub use target::openssl::{Flavor, OpensslTarget, Release, defines_ssl_write};
