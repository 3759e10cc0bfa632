//! The `tls` module (OpenSSL 3.0, `libssl.so.3`): finding the libssl to
//! probe and refusing layouts the probes do not know.

use std::path::{Path, PathBuf};

use rcapture_core::records::RecordKind;

use super::{Elf, find_library, ldconfig_lookup, read_file};
use crate::Error;
use crate::module::{Attach, AttachPoint, ModuleDesc, Target, TargetRequest};

/// The OpenSSL module.
pub static MODULE: ModuleDesc = ModuleDesc {
    name: "tls",
    about: "OpenSSL 3.0 (libssl.so.3) plaintext and secrets",
    object: include_bytes!("../../obj/openssl.bpf.o"),
    kinds: &[RecordKind::TlsData, RecordKind::MasterSecret],
    routes: &["/tls", "/openssl"],
    path_flag: "--libssl",
    resolve,
};

fn resolve(req: &TargetRequest) -> Result<Target, Error> {
    OpensslTarget::discover(req.path.as_deref(), req.pid)?.target()
}

/// (program, hooked function): entry and return of the four I/O calls.
const IO_PROBES: [(&str, &str, bool); 8] = [
    ("rc_ssl_write_entry", REQUIRED_SYMBOLS[0], false),
    ("rc_ssl_write_return", REQUIRED_SYMBOLS[0], true),
    ("rc_ssl_write_ex_entry", REQUIRED_SYMBOLS[1], false),
    ("rc_ssl_write_ex_return", REQUIRED_SYMBOLS[1], true),
    ("rc_ssl_read_entry", REQUIRED_SYMBOLS[2], false),
    ("rc_ssl_read_return", REQUIRED_SYMBOLS[2], true),
    ("rc_ssl_read_ex_entry", REQUIRED_SYMBOLS[3], false),
    ("rc_ssl_read_ex_return", REQUIRED_SYMBOLS[3], true),
];

/// The functions whose entry and return are probed; all must exist.
pub(crate) const REQUIRED_SYMBOLS: [&str; 4] =
    ["SSL_write", "SSL_write_ex", "SSL_read", "SSL_read_ex"];
/// fd sources probed when present.
pub(crate) const OPTIONAL_SYMBOLS: [&str; 3] = ["SSL_set_fd", "SSL_set_rfd", "SSL_set_wfd"];

const LIBSSL: &str = "libssl.so.3";

/// A libssl.so.3 whose OpenSSL version (3.0.x) and symbols were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpensslTarget {
    libssl: PathBuf,
    libcrypto: PathBuf,
    version: String,
    optional_symbols: Vec<&'static str>,
}

impl OpensslTarget {
    /// Finds libssl: `explicit` if given; else the libssl.so.3 mapped by
    /// process `pid` (through `/proc/PID/root`, so containers work); else
    /// the system one from `ldconfig -p`. Then checks that it is OpenSSL 3.0.x
    /// and exports `SSL_write`, `SSL_write_ex`, `SSL_read` and `SSL_read_ex`.
    pub fn discover(explicit: Option<&Path>, pid: Option<u32>) -> Result<Self, Error> {
        let req = TargetRequest {
            path: explicit.map(Path::to_path_buf),
            pid,
        };
        Self::inspect(find_library(&MODULE, LIBSSL, &req)?)
    }

    /// Checks a given libssl path (version and symbols).
    pub fn inspect(libssl: PathBuf) -> Result<Self, Error> {
        let elf = Elf::read(MODULE.name, &libssl)?;
        if let Some(symbol) = REQUIRED_SYMBOLS
            .into_iter()
            .find(|s| elf.symbol(s).is_none())
        {
            return Err(Error::ModuleSymbol {
                module: MODULE.name,
                symbol: symbol.into(),
                path: libssl,
            });
        }
        let optional_symbols = OPTIONAL_SYMBOLS
            .into_iter()
            .filter(|s| elf.symbol(s).is_some())
            .collect();

        let needed = elf
            .needed()
            .iter()
            .find(|n| n.starts_with("libcrypto"))
            .cloned()
            .ok_or_else(|| Error::LibcryptoNotFound {
                name: "libcrypto (no DT_NEEDED entry)".into(),
                libssl: libssl.clone(),
            })?;
        let libcrypto = find_next_to(&libssl, &needed)
            .or_else(|| ldconfig_lookup(&needed).ok().flatten())
            .ok_or_else(|| Error::LibcryptoNotFound {
                name: needed.clone(),
                libssl: libssl.clone(),
            })?;
        let version =
            openssl_version(&read_file(&libcrypto)?).ok_or_else(|| Error::VersionNotFound {
                module: MODULE.name,
                path: libcrypto.clone(),
            })?;
        if !version.starts_with("3.0.") {
            return Err(Error::UnsupportedVersion {
                module: MODULE.name,
                found: version,
                path: libcrypto,
                supported: "the OpenSSL 3.0.x layout",
            });
        }
        Ok(Self {
            libssl,
            libcrypto,
            version,
            optional_symbols,
        })
    }

    /// Every attach point: the four I/O calls (entry and return),
    /// `SSL_set_fd`/`_rfd`/`_wfd` where exported, and the socket syscalls.
    pub fn target(&self) -> Result<Target, Error> {
        let elf = Elf::read(MODULE.name, &self.libssl)?;
        let mut attach = Vec::new();
        for (program, symbol, ret) in IO_PROBES {
            attach.push(elf.uprobe(&MODULE, program, symbol, ret)?);
        }
        for symbol in &self.optional_symbols {
            attach.push(elf.uprobe(&MODULE, "rc_ssl_set_fd", symbol, false)?);
        }
        attach.push(Attach {
            program: "rc_sys_enter",
            point: AttachPoint::RawTracepoint("sys_enter"),
            required: true,
        });
        Ok(Target {
            module: &MODULE,
            path: self.libssl.clone(),
            version: self.version.clone(),
            attach,
            globals: Vec::new(),
            notes: Vec::new(),
        })
    }

    /// The libssl the probes attach to.
    pub fn libssl(&self) -> &Path {
        &self.libssl
    }

    /// The libcrypto whose version string was read.
    pub fn libcrypto(&self) -> &Path {
        &self.libcrypto
    }

    /// The OpenSSL version, e.g. `3.0.22`.
    pub fn version(&self) -> &str {
        &self.version
    }
}

fn find_next_to(libssl: &Path, name: &str) -> Option<PathBuf> {
    let candidate = libssl.parent()?.join(name);
    candidate.exists().then_some(candidate)
}

/// The first `OpenSSL X.Y.Z` (Z may carry a letter suffix) in a binary.
pub(crate) fn openssl_version(bytes: &[u8]) -> Option<String> {
    memchr::memmem::find_iter(bytes, b"OpenSSL ").find_map(|at| {
        let rest = &bytes[at + b"OpenSSL ".len()..];
        let end = rest
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'.'))
            .unwrap_or(rest.len());
        let candidate = std::str::from_utf8(&rest[..end]).ok()?;
        let mut parts = candidate.split('.');
        let numeric =
            |p: Option<&str>| p.is_some_and(|p| p.starts_with(|c: char| c.is_ascii_digit()));
        let (a, b, c) = (parts.next(), parts.next(), parts.next());
        (a.is_some_and(|a| a.bytes().all(|c| c.is_ascii_digit()) && !a.is_empty())
            && numeric(b)
            && numeric(c)
            && parts.next().is_none())
        .then(|| candidate.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn version_string_is_found() {
        let blob = b"\0OpenSSL \0xx OpenSSL 3.0.22 25 Aug 2026\0";
        assert_eq!(openssl_version(blob).as_deref(), Some("3.0.22"));
        assert_eq!(
            openssl_version(b"OpenSSL 1.1.1w  11 Sep").as_deref(),
            Some("1.1.1w")
        );
        assert_eq!(openssl_version(b"OpenSSL library"), None);
    }

    #[test]
    fn a_library_without_the_symbols_is_refused() {
        // NSS's libssl3.so exports no SSL_write.
        let nss = PathBuf::from("/lib/x86_64-linux-gnu/libssl3.so");
        if !nss.exists() {
            eprintln!("skipping test - no {}", nss.display());
            return;
        }
        let err = OpensslTarget::inspect(nss).expect_err("NSS is not OpenSSL");
        assert!(
            err.to_string().starts_with("symbol SSL_write not found"),
            "{err}"
        );
    }

    /// The supported system (Debian 12, `libssl3`) has an OpenSSL 3.0
    /// libssl.so.3 that discovery finds: not finding it is a failure.
    #[test]
    fn system_libssl_is_openssl_30() {
        let t = OpensslTarget::discover(None, None)
            .unwrap_or_else(|e| panic!("discovering the system's libssl.so.3: {e}"));
        assert!(t.version().starts_with("3.0."), "{t:?}");
    }
}
