//! The `nss` module (NSS/NSPR, `libnspr4.so`): plaintext of the TLS
//! sockets of NSS programs, from NSPR's I/O calls.
//!
//! The probes sit on libnspr4's `PR_Write`, `PR_Send`, `PR_Read`, `PR_Recv`
//! and `PR_Writev`; the BPF side keeps only descriptors with an SSL layer
//! over a TCP socket (`nss.bpf.c`). No key log: see [`NO_KEY_LOG`].

use std::path::{Path, PathBuf};

use rcapture_core::records::RecordKind;

use super::{Elf, find_library, read_file, version_after};
use crate::Error;
use crate::module::{ModuleDesc, Target, TargetRequest};

/// The NSS/NSPR module.
pub static MODULE: ModuleDesc = ModuleDesc {
    name: "nss",
    about: "NSS/NSPR (libnspr4.so) TLS plaintext",
    object: include_bytes!("../../obj/nss.bpf.o"),
    kinds: &[RecordKind::NssData],
    routes: &["/nss", "/nspr"],
    path_flag: "--nspr",
    skipped: &[],
    resolve,
};

fn resolve(req: &TargetRequest) -> Result<Target, Error> {
    NssTarget::discover(req)?.target()
}

const LIBNSPR: &str = "libnspr4.so";
/// NSS's TLS library (not OpenSSL's `libssl.so.3`), for its version.
const LIBSSL3: &str = "libssl3.so";

/// (program, hooked function, return probe): entry and return of each call.
const PROBES: [(&str, &str, bool); 10] = [
    ("rc_pr_write_entry", "PR_Write", false),
    ("rc_pr_write_return", "PR_Write", true),
    ("rc_pr_send_entry", "PR_Send", false),
    ("rc_pr_send_return", "PR_Send", true),
    ("rc_pr_read_entry", "PR_Read", false),
    ("rc_pr_read_return", "PR_Read", true),
    ("rc_pr_recv_entry", "PR_Recv", false),
    ("rc_pr_recv_return", "PR_Recv", true),
    ("rc_pr_writev_entry", "PR_Writev", false),
    ("rc_pr_writev_return", "PR_Writev", true),
];

/// Why the module reports no secrets (printed at start-up).
pub const NO_KEY_LOG: &str = "no key log: this NSS's libssl3.so was built without \
     SSLKEYLOGFILE support (NSS_ALLOW_SSLKEYLOGFILE) and exports no function that is handed \
     the TLS secrets (they stay in softoken as PK11SymKey objects; only a callback the \
     program registers itself, SSL_SecretCallback, sees them): plaintext only";

/// A libnspr4.so whose symbols and version were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NssTarget {
    libnspr: PathBuf,
    nspr_version: String,
    /// `libssl3.so` next to libnspr4, if there is one.
    libssl3: Option<PathBuf>,
    nss_version: Option<String>,
    /// That libssl3.so mentions SSLKEYLOGFILE (a build that honours it).
    keylogfile: bool,
}

impl NssTarget {
    /// Finds libnspr4.so: the request's path (`--nspr`); else the one mapped
    /// by `--pid`; else `ldconfig -p`'s. Then checks it.
    pub fn discover(req: &TargetRequest) -> Result<Self, Error> {
        Self::inspect(find_library(&MODULE, LIBNSPR, req)?)
    }

    /// Checks a given libnspr4.so: the five I/O functions and `PR_GetVersion`
    /// are exported and the version is NSPR 4.x; reads the NSS version of
    /// the libssl3.so in the same directory, if any.
    pub fn inspect(libnspr: PathBuf) -> Result<Self, Error> {
        let elf = Elf::read(MODULE.name, &libnspr)?;
        for symbol in PROBES.iter().map(|p| p.1).chain(["PR_GetVersion"]) {
            if elf.symbol(symbol).is_none() {
                return Err(Error::ModuleSymbol {
                    module: MODULE.name,
                    symbol: symbol.into(),
                    path: libnspr,
                });
            }
        }
        let nspr_version =
            returned_string(&elf, "PR_GetVersion").ok_or_else(|| Error::VersionNotFound {
                module: MODULE.name,
                path: libnspr.clone(),
            })?;
        if !nspr_version.starts_with("4.") {
            return Err(Error::UnsupportedVersion {
                module: MODULE.name,
                found: nspr_version,
                path: libnspr,
                supported: "NSPR 4 (its PRFileDesc and PRIOMethods layout)",
            });
        }
        let libssl3 = libnspr
            .parent()
            .map(|d| d.join(LIBSSL3))
            .filter(|p| p.exists());
        let (nss_version, keylogfile) = match &libssl3 {
            Some(p) => nss_version_of(p)?,
            None => (None, false),
        };
        Ok(Self {
            libnspr,
            nspr_version,
            libssl3,
            nss_version,
            keylogfile,
        })
    }

    /// The attach points (entry and return of the five calls) and the notes.
    pub fn target(&self) -> Result<Target, Error> {
        let elf = Elf::read(MODULE.name, &self.libnspr)?;
        let attach = PROBES
            .iter()
            .map(|&(program, symbol, ret)| elf.uprobe(&MODULE, program, symbol, ret))
            .collect::<Result<Vec<_>, _>>()?;
        let mut notes = Vec::new();
        if self.keylogfile {
            notes.push(format!(
                "no key log from the probes: {} honours SSLKEYLOGFILE, so a program started \
                 with SSLKEYLOGFILE=FILE writes its own",
                self.libssl3
                    .as_deref()
                    .unwrap_or(Path::new(LIBSSL3))
                    .display()
            ));
        } else {
            notes.push(NO_KEY_LOG.to_owned());
        }
        if self.libssl3.is_none() {
            notes.push(format!(
                "no {LIBSSL3} next to {}: the NSS version is unknown",
                self.libnspr.display()
            ));
        }
        Ok(Target {
            module: &MODULE,
            path: self.libnspr.clone(),
            version: self.version(),
            attach,
            globals: Vec::new(),
            notes,
        })
    }

    /// The libnspr4.so probed.
    pub fn libnspr(&self) -> &Path {
        &self.libnspr
    }

    /// NSPR's version (`PR_GetVersion()`), e.g. `4.35`.
    pub fn nspr_version(&self) -> &str {
        &self.nspr_version
    }

    /// NSS's version from the libssl3.so next to libnspr4, e.g. `3.87.1`.
    pub fn nss_version(&self) -> Option<&str> {
        self.nss_version.as_deref()
    }

    /// The version shown at start-up and in `/status`: `4.35, NSS 3.87.1`.
    pub fn version(&self) -> String {
        match &self.nss_version {
            Some(nss) => format!("{}, NSS {nss}", self.nspr_version),
            None => self.nspr_version.clone(),
        }
    }
}

/// NSS's version in a libssl3.so (`NSSSSL_GetVersion()`, else its
/// `Version: NSS X.Y.Z` string) and whether it mentions SSLKEYLOGFILE.
fn nss_version_of(libssl3: &Path) -> Result<(Option<String>, bool), Error> {
    let keylogfile = memchr::memmem::find(&read_file(libssl3)?, b"SSLKEYLOGFILE").is_some();
    let elf = Elf::read(MODULE.name, libssl3)?;
    let version = returned_string(&elf, "NSSSSL_GetVersion")
        .or_else(|| version_after(elf.bytes(), b"Version: NSS "));
    Ok((version, keylogfile))
}

/// The constant string a `const char *f(void)` returns, for functions
/// compiled to `lea disp32(%rip),%rax; ret` (NSPR's `PR_GetVersion`, NSS's
/// `NSSSSL_GetVersion`), if it looks like a version number.
fn returned_string(elf: &Elf, symbol: &str) -> Option<String> {
    let at = elf.symbol(symbol)?;
    let code = elf.bytes_at(at, 8)?;
    let target = lea_rax_ret(code, at)?;
    let bytes = elf.bytes_at(target, 32)?;
    let s = std::str::from_utf8(&bytes[..bytes.iter().position(|&b| b == 0)?]).ok()?;
    is_version(s).then(|| s.to_owned())
}

/// The address loaded by `lea disp32(%rip),%rax` (48 8d 05) followed by
/// `ret` (c3), for code at virtual address `at`.
fn lea_rax_ret(code: &[u8], at: u64) -> Option<u64> {
    match code {
        [0x48, 0x8d, 0x05, d0, d1, d2, d3, 0xc3, ..] => {
            let disp = i32::from_le_bytes([*d0, *d1, *d2, *d3]);
            (at + 7).checked_add_signed(i64::from(disp))
        }
        _ => None,
    }
}

/// `N.N[.N...]` with an optional suffix on the last part (`4.35`, `3.87.1`, `3.90 Beta`).
fn is_version(s: &str) -> bool {
    let head = s.split(' ').next().unwrap_or("");
    let mut parts = head.split('.');
    let numeric = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    parts.next().is_some_and(numeric) && parts.next().is_some_and(numeric) && parts.all(numeric)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::AttachPoint;

    #[test]
    fn rip_relative_string_loads_are_decoded() {
        // PR_GetVersion of Debian's libnspr4 4.35: lea 0x14f9c(%rip),%rax; ret
        let code = [0x48, 0x8d, 0x05, 0x9c, 0x4f, 0x01, 0x00, 0xc3];
        assert_eq!(lea_rax_ret(&code, 0x1b510), Some(0x304b3));
        let back = [0x48, 0x8d, 0x05, 0xf0, 0xff, 0xff, 0xff, 0xc3];
        assert_eq!(lea_rax_ret(&back, 0x1000), Some(0x1000 + 7 - 16));
        // mov instead of lea, or no ret after it: not a constant string.
        assert_eq!(
            lea_rax_ret(&[0x48, 0x8b, 0x05, 0, 0, 0, 0, 0xc3], 0x1000),
            None
        );
        assert_eq!(
            lea_rax_ret(&[0x48, 0x8d, 0x05, 0, 0, 0, 0, 0x90], 0x1000),
            None
        );
        assert_eq!(lea_rax_ret(&[0x48, 0x8d], 0x1000), None);
    }

    #[test]
    fn version_numbers_are_recognised() {
        for v in ["4.35", "3.87.1", "3.90 Beta", "10.0"] {
            assert!(is_version(v), "{v}");
        }
        for v in ["", "4", "4.", ".35", "NSPR", "4.x", "libnspr4.so"] {
            assert!(!is_version(v), "{v}");
        }
    }

    /// A library without the NSPR functions is refused, naming the module,
    /// the file and the first missing symbol.
    #[test]
    fn a_library_without_pr_write_is_refused() {
        let libc = super::super::ldconfig_lookup("libc.so.6")
            .ok()
            .flatten()
            .expect("libc.so.6 in ldconfig -p");
        let err = NssTarget::inspect(libc.clone()).expect_err("libc is not NSPR");
        assert_eq!(
            err.to_string(),
            format!(
                "symbol PR_Write not found in {} (module nss)",
                libc.display()
            )
        );
    }

    /// An explicit path that does not exist is an error naming it.
    #[test]
    fn a_missing_explicit_path_is_an_error() {
        let req = TargetRequest {
            path: Some(PathBuf::from("/nonexistent/libnspr4.so")),
            pid: None,
            symbols: Vec::new(),
        };
        let err = NssTarget::discover(&req).expect_err("no such file");
        assert!(
            err.to_string().contains("/nonexistent/libnspr4.so"),
            "{err}"
        );
    }

    /// The supported system (Debian 12 with libnss3-tools, as CI installs)
    /// has libnspr4 4.35 with NSS 3.87 next to it: every probe resolves to
    /// the function's file offset, and the start-up note says why there is
    /// no key log.
    #[test]
    fn system_libnspr_resolves() {
        let t = NssTarget::discover(&TargetRequest::default())
            .unwrap_or_else(|e| panic!("discovering the system's libnspr4.so: {e}"));
        assert!(t.nspr_version().starts_with("4."), "{t:?}");
        let nss = t.nss_version().expect("libssl3.so next to libnspr4.so");
        assert!(nss.starts_with("3."), "{nss}");
        assert_eq!(t.version(), format!("{}, NSS {nss}", t.nspr_version()));

        let target = t.target().expect("target");
        assert_eq!(target.path, t.libnspr());
        assert_eq!(target.attach.len(), 10);
        let elf = Elf::read("test", t.libnspr()).unwrap();
        for a in &target.attach {
            let AttachPoint::Uprobe {
                symbol,
                offset,
                ret,
                ..
            } = &a.point
            else {
                panic!("{a:?}");
            };
            assert!(a.required);
            assert_eq!(a.program.ends_with("_return"), *ret, "{a:?}");
            let va = elf.symbol(symbol).unwrap();
            assert_eq!(Some(*offset), elf.file_offset(va), "{symbol}");
        }
        assert!(
            target.notes.iter().any(|n| n.starts_with("no key log")),
            "{:?}",
            target.notes
        );
    }
}
