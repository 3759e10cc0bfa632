//! Capture modules as data: what a module's BPF object is, where its
//! programs attach and which records it emits.
//!
//! A module is a [`ModuleDesc`] (one per BPF object, in [`MODULES`]) plus a
//! resolver that turns a [`TargetRequest`] (a path and/or a pid from the
//! command line) into a [`Target`]: the file to probe, its version, the
//! resolved attach points and the load-time globals the programs need.
//! [`crate::Capture::load`] loads any set of targets on one set of per-CPU
//! ring buffers. Adding a module means a BPF file (`src/NAME.bpf.c`), a
//! resolver with its descriptor (`src/target/NAME.rs`) and an entry here.

use std::fmt;
use std::path::PathBuf;

use rcapture_core::records::RecordKind;

use crate::Error;

/// A capture module: its BPF object and how to find what it probes.
pub struct ModuleDesc {
    /// The wire name (`Event.module`, metric labels, `/status`): `tls`, `gnutls`, `nss`, …
    pub name: &'static str,
    /// What it captures, for help texts and `/status`.
    pub about: &'static str,
    /// The embedded BPF object (`obj/NAME.bpf.o`).
    pub object: &'static [u8],
    /// The record kinds its programs emit.
    pub kinds: &'static [RecordKind],
    /// API routes that configure it (upstream's `POST /tls`, `/gnutls`, …).
    pub routes: &'static [&'static str],
    /// The command-line flag that names its target file, for error messages.
    pub path_flag: &'static str,
    /// Why its programs skip calls, one name per entry of the object's
    /// per-CPU `rc_skipped` map (`u64` counts; empty: the object has none).
    pub skipped: &'static [&'static str],
    /// Finds and checks the target and resolves every attach point.
    pub resolve: fn(&TargetRequest) -> Result<Target, Error>,
}

impl fmt::Debug for ModuleDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModuleDesc")
            .field("name", &self.name)
            .field("kinds", &self.kinds)
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ModuleDesc {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for ModuleDesc {}

/// What the command line says about a module's target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetRequest {
    /// The file to probe (`--libssl`, `--gnutls`, …); default: the module's own search.
    pub path: Option<PathBuf>,
    /// Only this process (its own copy of the library is probed).
    pub pid: Option<u32>,
    /// Function addresses (virtual, as `nm` lists them) given on the command
    /// line for a stripped target (`--ssl-offsets SYMBOL=ADDR`): they stand
    /// in for, or replace, the ELF's own symbols.
    pub symbols: Vec<(String, u64)>,
}

/// A resolved target: ready to load and attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The module.
    pub module: &'static ModuleDesc,
    /// The file probed (shown at start-up and in `/status`).
    pub path: PathBuf,
    /// The version found in it (e.g. `3.0.22`, `3.7.9`).
    pub version: String,
    /// Every attach point, resolved.
    pub attach: Vec<Attach>,
    /// Load-time values of the object's `const volatile` globals.
    pub globals: Vec<(&'static str, Global)>,
    /// Things the operator should know (e.g. what cannot be captured here).
    pub notes: Vec<String>,
}

/// One program at one attach point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attach {
    /// The BPF program (function name in the object).
    pub program: &'static str,
    /// Where it attaches.
    pub point: AttachPoint,
    /// A failure to attach is an error (else a warning).
    pub required: bool,
}

/// Where a program attaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachPoint {
    /// An entry uprobe or a return uprobe (the program's section decides).
    Uprobe {
        /// The ELF file.
        path: PathBuf,
        /// The function, for messages.
        symbol: String,
        /// Its offset in the file.
        offset: u64,
        /// A return probe (checked against the program's section).
        ret: bool,
        /// `bpf_get_attach_cookie()` value (0: none).
        cookie: u64,
    },
    /// A raw tracepoint (e.g. `sys_enter`).
    RawTracepoint(&'static str),
    /// A BTF-typed raw tracepoint (`tp_btf`, e.g. `inet_sock_set_state`):
    /// the program is loaded for this tracepoint's `btf_trace_NAME` type.
    TpBtf(&'static str),
    /// A tc program on a network interface through tcx (`BPF_TCX_INGRESS`
    /// or `BPF_TCX_EGRESS`), after the programs already there.
    Tcx {
        /// The interface name.
        interface: String,
        /// Ingress, else egress.
        ingress: bool,
    },
}

impl fmt::Display for AttachPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uprobe {
                path,
                symbol,
                offset,
                ret,
                ..
            } => write!(
                f,
                "{} {}:{symbol} (offset {offset:#x})",
                if *ret { "uretprobe" } else { "uprobe" },
                path.display()
            ),
            Self::RawTracepoint(name) => write!(f, "raw tracepoint {name}"),
            Self::TpBtf(name) => write!(f, "tp_btf {name}"),
            Self::Tcx { interface, ingress } => write!(
                f,
                "tcx {} {interface}",
                if *ingress { "ingress" } else { "egress" }
            ),
        }
    }
}

/// A load-time global's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Global {
    U32(u32),
    U64(u64),
    /// The bytes of an array or struct global (exactly its size).
    Bytes(Vec<u8>),
}

/// Every module this build has.
pub static MODULES: &[&ModuleDesc] = &[
    &crate::target::openssl::MODULE,
    &crate::target::gnutls::MODULE,
    &crate::target::gotls::MODULE,
    &crate::target::nss::MODULE,
    &crate::target::mysqld::MODULE,
    &crate::target::postgres::MODULE,
    &crate::target::bash::MODULE,
    &crate::target::conn::MODULE,
];

/// The module with this wire name.
pub fn module(name: &str) -> Option<&'static ModuleDesc> {
    MODULES.iter().copied().find(|m| m.name == name)
}

/// The names of every module, comma-separated (for messages).
pub fn module_names() -> String {
    MODULES
        .iter()
        .map(|m| m.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names, routes and kinds are each claimed by one module only.
    #[test]
    fn modules_do_not_overlap() {
        let mut names = Vec::new();
        let mut routes = Vec::new();
        let mut kinds = Vec::new();
        for m in MODULES {
            names.push(m.name);
            routes.extend(m.routes);
            kinds.extend(m.kinds);
            assert!(!m.object.is_empty(), "{}: no object", m.name);
            assert!(m.path_flag.starts_with("--"), "{}", m.name);
        }
        for v in [&mut names, &mut routes] {
            let n = v.len();
            v.sort();
            v.dedup();
            assert_eq!(v.len(), n, "duplicates in {v:?}");
        }
        let n = kinds.len();
        kinds.sort_by_key(|k: &&RecordKind| **k as u16);
        kinds.dedup();
        assert_eq!(kinds.len(), n, "a record kind claimed twice");
        assert!(module("tls").is_some() && module("nope").is_none());
    }
}
