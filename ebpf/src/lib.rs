//! rcapture's kernel side: the embedded BPF objects and their loader.
//!
//! [`OpensslTarget::discover`] finds and checks a libssl (OpenSSL 3.0.x only),
//! [`TlsProbes::load`] attaches the OpenSSL probes and creates one BPF ring
//! buffer per CPU, handed out as [`CpuRing`]s that implement
//! [`rcapture_core::ring::RecordRing`]. Record layouts: `include/records.h`.
//!
//! ```no_run
//! use rcapture_core::ring::RecordRing as _;
//! use rcapture_ebpf::{OpensslTarget, TlsProbeOptions, TlsProbes};
//!
//! let target = OpensslTarget::discover(None, None)?;
//! let mut probes = TlsProbes::load(&target, &TlsProbeOptions::default())?;
//! for mut ring in probes.take_rings() {
//!     let cpu = ring.cpu();
//!     ring.drain(&mut |record| println!("cpu {cpu}: {} bytes", record.len()));
//! }
//! # Ok::<(), rcapture_ebpf::Error>(())
//! ```

mod detach;
mod error;
mod maps;
mod probes;
mod ring;
mod sys;
mod target;

pub use error::Error;
pub use maps::{Counters, Filter};
pub use probes::{LoadWarning, TlsProbeOptions, TlsProbes};
pub use ring::CpuRing;
pub use target::OpensslTarget;
