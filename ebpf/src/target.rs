//! Finding the libssl to probe and refusing layouts the probes do not know.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use object::{
    Object as _, ObjectSymbol as _,
    read::elf::{Dyn as _, ElfFile64},
};

use crate::Error;

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
        let libssl = match (explicit, pid) {
            (Some(path), _) => path.to_path_buf(),
            (None, Some(pid)) => libssl_of_process(pid)?,
            (None, None) => ldconfig_lookup(LIBSSL)?.ok_or_else(|| Error::LibsslNotFound {
                searched: "`ldconfig -p`".into(),
            })?,
        };
        Self::inspect(libssl)
    }

    /// Checks a given libssl path (version and symbols).
    pub fn inspect(libssl: PathBuf) -> Result<Self, Error> {
        let bytes = read(&libssl)?;
        let elf = ElfFile64::<object::Endianness>::parse(&*bytes).map_err(|source| Error::Elf {
            path: libssl.clone(),
            source,
        })?;
        let exported: Vec<&str> = elf
            .dynamic_symbols()
            .filter(|s| s.is_definition())
            .filter_map(|s| s.name().ok())
            .collect();
        if let Some(symbol) = REQUIRED_SYMBOLS.into_iter().find(|s| !exported.contains(s)) {
            return Err(Error::MissingSymbol {
                symbol,
                path: libssl,
            });
        }
        let optional_symbols = OPTIONAL_SYMBOLS
            .into_iter()
            .filter(|s| exported.contains(s))
            .collect();

        let needed = needed_libcrypto(&elf, &libssl)?;
        let libcrypto = find_next_to(&libssl, &needed)
            .or_else(|| ldconfig_lookup(&needed).ok().flatten())
            .ok_or_else(|| Error::LibcryptoNotFound {
                name: needed.clone(),
                libssl: libssl.clone(),
            })?;
        let version =
            openssl_version(&read(&libcrypto)?).ok_or_else(|| Error::VersionNotFound {
                path: libcrypto.clone(),
            })?;
        if !version.starts_with("3.0.") {
            return Err(Error::UnsupportedVersion {
                found: version,
                path: libcrypto,
            });
        }
        Ok(Self {
            libssl,
            libcrypto,
            version,
            optional_symbols,
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

    pub(crate) fn optional_symbols(&self) -> &[&'static str] {
        &self.optional_symbols
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn libssl_of_process(pid: u32) -> Result<PathBuf, Error> {
    let maps_path = PathBuf::from(format!("/proc/{pid}/maps"));
    let maps = fs::read_to_string(&maps_path).map_err(|source| Error::Read {
        path: maps_path.clone(),
        source,
    })?;
    let mapped = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| {
            Path::new(path)
                .file_name()
                .is_some_and(|name| name.as_encoded_bytes().starts_with(LIBSSL.as_bytes()))
        })
        .ok_or_else(|| Error::LibsslNotFound {
            searched: maps_path.display().to_string(),
        })?;
    // The process may live in another mount namespace: go through its root.
    let via_root = PathBuf::from(format!("/proc/{pid}/root{mapped}"));
    Ok(if via_root.exists() {
        via_root
    } else {
        PathBuf::from(mapped)
    })
}

/// The path `ldconfig -p` gives for `name` on this architecture.
fn ldconfig_lookup(name: &str) -> Result<Option<PathBuf>, Error> {
    let out = Command::new("ldconfig")
        .arg("-p")
        .output()
        .or_else(|_| Command::new("/sbin/ldconfig").arg("-p").output())
        .map_err(Error::Ldconfig)?;
    Ok(parse_ldconfig(&String::from_utf8_lossy(&out.stdout), name))
}

fn parse_ldconfig(listing: &str, name: &str) -> Option<PathBuf> {
    listing.lines().find_map(|line| {
        let (lib, path) = line.trim().split_once(" => ")?;
        let (lib_name, flags) = lib.split_once(' ')?;
        (lib_name == name && (!cfg!(target_pointer_width = "64") || flags.contains("64")))
            .then(|| PathBuf::from(path.trim()))
    })
}

fn needed_libcrypto(
    elf: &ElfFile64<'_, object::Endianness>,
    libssl: &Path,
) -> Result<String, Error> {
    let elf_err = |source| Error::Elf {
        path: libssl.to_path_buf(),
        source,
    };
    let endian = elf.endian();
    let data = elf.data();
    let sections = elf.elf_section_table();
    let (dynamic, index) = sections
        .dynamic(endian, data)
        .map_err(elf_err)?
        .ok_or_else(|| Error::LibcryptoNotFound {
            name: "libcrypto (no dynamic section)".into(),
            libssl: libssl.to_path_buf(),
        })?;
    let strings = sections.strings(endian, data, index).map_err(elf_err)?;
    dynamic
        .iter()
        .filter(|d| d.d_tag(endian) == object::elf::DT_NEEDED)
        .filter_map(|d| d.string(endian, strings).ok())
        .map(String::from_utf8_lossy)
        .find(|name| name.starts_with("libcrypto"))
        .map(|name| name.into_owned())
        .ok_or_else(|| Error::LibcryptoNotFound {
            name: "libcrypto (no DT_NEEDED entry)".into(),
            libssl: libssl.to_path_buf(),
        })
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
    fn ldconfig_listing_is_parsed() {
        let listing = "\tlibssl3.so (libc6,x86-64) => /lib/x86_64-linux-gnu/libssl3.so\n\
                       \tlibssl.so.3 (libc6,x86-64) => /lib/x86_64-linux-gnu/libssl.so.3\n";
        assert_eq!(
            parse_ldconfig(listing, "libssl.so.3"),
            Some(PathBuf::from("/lib/x86_64-linux-gnu/libssl.so.3"))
        );
        assert_eq!(parse_ldconfig(listing, "libssl.so.1.1"), None);
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
