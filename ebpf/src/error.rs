//! The errors of discovering libssl and loading the probes.

use std::{io, path::PathBuf};

/// Why a target could not be found or the probes could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Neither root nor CAP_BPF+CAP_PERFMON.
    #[error("not root: run as root or with CAP_BPF+CAP_PERFMON")]
    NotPrivileged,
    /// The kernel refused to create even a one-entry BPF map.
    #[error(
        "BPF is unavailable: the kernel refused to create a BPF map \
         (needs CONFIG_BPF_SYSCALL, and kernel.unprivileged_bpf_disabled/lockdown allowing it)"
    )]
    BpfUnavailable(#[source] aya::maps::MapError),
    /// No libssl.so.3 where it was looked for.
    #[error("no libssl.so.3 found in {searched}; give its path with --libssl")]
    LibsslNotFound {
        /// Where the search looked.
        searched: String,
    },
    /// `ldconfig -p` could not be run.
    #[error("cannot run `ldconfig -p`")]
    Ldconfig(#[source] io::Error),
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A library is not a parsable ELF object.
    #[error("{path} is not an ELF shared object")]
    Elf {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: object::Error,
    },
    /// libssl's libcrypto (where the version string lives) was not found.
    #[error("cannot find {name} (needed by {libssl}) to check the OpenSSL version")]
    LibcryptoNotFound {
        /// The DT_NEEDED name, e.g. libcrypto.so.3.
        name: String,
        /// The libssl that needs it.
        libssl: PathBuf,
    },
    /// No `OpenSSL X.Y.Z` string in libcrypto.
    #[error("no OpenSSL version string in {path}")]
    VersionNotFound {
        /// The libcrypto searched.
        path: PathBuf,
    },
    /// An OpenSSL whose struct layout the probes do not know.
    #[error(
        "unsupported OpenSSL {found} (from {path}): the probes know only the OpenSSL 3.0.x layout"
    )]
    UnsupportedVersion {
        /// The version found, e.g. "3.2.1".
        found: String,
        /// Where it was found.
        path: PathBuf,
    },
    /// A function the probes hook is not exported.
    #[error("symbol {symbol} not found in {path}")]
    MissingSymbol {
        /// The missing symbol.
        symbol: &'static str,
        /// The library.
        path: PathBuf,
    },
    /// The CPU lists in sysfs could not be read.
    #[error("cannot list CPUs from {path}")]
    Cpus {
        /// The sysfs file.
        path: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The embedded BPF object failed to load.
    #[error("loading the BPF object")]
    Load(#[source] aya::EbpfError),
    /// A map is missing from the object or could not be created/used.
    #[error("BPF map {name}")]
    Map {
        /// The map.
        name: String,
        /// The cause.
        #[source]
        source: aya::maps::MapError,
    },
    /// A map the loader needs is not in the object.
    #[error("BPF map {name} missing from the object")]
    MissingMap {
        /// The map.
        name: &'static str,
    },
    /// A program is missing from the object.
    #[error("BPF program {name} missing from the object")]
    MissingProgram {
        /// The program.
        name: &'static str,
    },
    /// A program failed to load (the verifier log is in the source) or attach.
    #[error("BPF program {name} ({attach_point})")]
    Program {
        /// The program.
        name: &'static str,
        /// Where it was being attached ("load" while loading).
        attach_point: String,
        /// The cause.
        #[source]
        source: aya::programs::ProgramError,
    },
}
