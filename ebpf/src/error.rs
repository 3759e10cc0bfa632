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
    /// A module's library was not found where it was looked for.
    #[error("module {module}: no {library} found in {searched}; give its path with {flag}")]
    LibraryNotFound {
        /// The module (`tls`, `gnutls`, …).
        module: &'static str,
        /// The library's file name, e.g. libssl.so.3.
        library: String,
        /// Where the search looked.
        searched: String,
        /// The flag that names it.
        flag: &'static str,
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
    /// A target is not a parsable ELF object.
    #[error("module {module}: {path} is not an ELF object")]
    Elf {
        /// The module.
        module: &'static str,
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
    /// No version string where the module looks for it.
    #[error("module {module}: no version string in {path}")]
    VersionNotFound {
        /// The module.
        module: &'static str,
        /// The libcrypto searched.
        path: PathBuf,
    },
    /// A version whose struct layout the probes do not know.
    #[error(
        "module {module}: unsupported version {found} (from {path}): the probes know only {supported}"
    )]
    UnsupportedVersion {
        /// The module.
        module: &'static str,
        /// The version found, e.g. "3.2.1".
        found: String,
        /// Where it was found.
        path: PathBuf,
        /// What is supported.
        supported: &'static str,
    },
    /// A function the module hooks is not in its target.
    #[error("symbol {symbol} not found in {path} (module {module})")]
    ModuleSymbol {
        /// The module.
        module: &'static str,
        /// The missing symbol.
        symbol: String,
        /// The file searched.
        path: PathBuf,
    },
    /// A module that probes an executable was given neither its path nor a process.
    #[error("module {module}: no target: give {what} with {flag} PATH or a process with --pid N")]
    NoTarget {
        /// The module.
        module: &'static str,
        /// What it probes, e.g. "the Go binary".
        what: &'static str,
        /// The flag that names it.
        flag: &'static str,
    },
    /// A target whose layout the module does not know: a hooked function
    /// is missing or has another signature in this version.
    #[error("module {module}: {path} (version {version}): {what}")]
    UnknownLayout {
        /// The module.
        module: &'static str,
        /// The file.
        path: PathBuf,
        /// The version found in it (or why none was).
        version: String,
        /// What is missing or different, naming the symbol.
        what: String,
    },
    /// An executable was not found where the module looks for it.
    #[error("module {module}: no {what} found (looked for {searched}); give its path with {flag}")]
    ExecutableNotFound {
        /// The module.
        module: &'static str,
        /// What was looked for, e.g. "MariaDB server".
        what: &'static str,
        /// The paths tried.
        searched: String,
        /// The flag that names it.
        flag: &'static str,
    },
    /// A target that the module cannot probe for another reason.
    #[error("module {module}: {path}: {reason}")]
    Unsupported {
        /// The module.
        module: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Two targets of the same module in one capture.
    #[error("module {module} is requested twice")]
    DuplicateModule {
        /// The module.
        module: &'static str,
    },
    /// A module's file given twice, or attached while already probed.
    #[error("module {module}: {path} is already probed (as {attached})")]
    DuplicateTarget {
        /// The module.
        module: &'static str,
        /// The file.
        path: PathBuf,
        /// The path it was attached through.
        attached: PathBuf,
    },
    /// A target added after the capture was detached.
    #[error("module {module}: the capture is detached; no target can be added")]
    Detached {
        /// The module.
        module: &'static str,
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
    /// A module's embedded BPF object failed to load.
    #[error("module {module}: loading its BPF object")]
    Load {
        /// The module.
        module: &'static str,
        /// The cause.
        #[source]
        source: aya::EbpfError,
    },
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
    #[error("module {module}: BPF map {name} missing from its object")]
    MissingMap {
        /// The module.
        module: &'static str,
        /// The map.
        name: &'static str,
    },
    /// A program is missing from the object.
    #[error("module {module}: BPF program {name} missing from its object")]
    MissingProgram {
        /// The module.
        module: &'static str,
        /// The program.
        name: &'static str,
    },
    /// A program failed to load (the verifier log is in the source) or attach.
    #[error("module {module}: BPF program {name} ({attach_point})")]
    Program {
        /// The module.
        module: &'static str,
        /// The program.
        name: &'static str,
        /// Where it was being attached ("load" while loading).
        attach_point: String,
        /// The cause.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
}
