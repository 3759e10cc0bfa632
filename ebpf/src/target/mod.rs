//! Finding what each module probes, one file per module, and the ELF and
//! process helpers they share.

pub mod bash;
mod boringssl_layout;
pub mod conn;
pub mod gnutls;
pub mod gotls;
pub mod mysqld;
pub mod nss;
pub mod openssl;
mod openssl_layouts;
pub mod postgres;
pub(crate) mod stripped;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use object::read::elf::{Dyn as _, ElfFile64, ProgramHeader as _};
use object::{Object as _, ObjectSymbol as _};

use crate::Error;
use crate::module::{Attach, AttachPoint, ModuleDesc, TargetRequest};

/// An ELF file read once: its defined symbols (`.dynsym`, and `.symtab`
/// where present) and loadable segments, to turn symbols into uprobe
/// offsets.
pub(crate) struct Elf {
    path: PathBuf,
    bytes: Vec<u8>,
    /// name → st_value, defined symbols only (`.dynsym` wins).
    symbols: HashMap<String, u64>,
    /// (p_vaddr, p_offset, p_filesz) of each PT_LOAD.
    loads: Vec<(u64, u64, u64)>,
    needed: Vec<String>,
}

impl Elf {
    /// Reads and parses `path`; `module` names the module in errors.
    pub(crate) fn read(module: &'static str, path: &Path) -> Result<Self, Error> {
        let bytes = read_file(path)?;
        let elf_err = |source| Error::Elf {
            module,
            path: path.to_path_buf(),
            source,
        };
        let (symbols, loads, needed) = {
            let elf = ElfFile64::<object::Endianness>::parse(&*bytes).map_err(elf_err)?;
            let mut symbols = HashMap::new();
            for s in elf.symbols().chain(elf.dynamic_symbols()) {
                if !s.is_definition() {
                    continue;
                }
                if let Ok(name) = s.name() {
                    symbols.insert(name.to_owned(), s.address());
                }
            }
            let endian = elf.endian();
            let loads = elf
                .elf_program_headers()
                .iter()
                .filter(|p| p.p_type(endian) == object::elf::PT_LOAD)
                .map(|p| (p.p_vaddr(endian), p.p_offset(endian), p.p_filesz(endian)))
                .collect();
            (symbols, loads, needed_of(&elf).map_err(elf_err)?)
        };
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            symbols,
            loads,
            needed,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The DT_NEEDED names.
    pub(crate) fn needed(&self) -> &[String] {
        &self.needed
    }

    /// Adds (or replaces) symbols: addresses given for a stripped file.
    pub(crate) fn with_symbols(mut self, given: &[(String, u64)]) -> Self {
        for (name, addr) in given {
            self.symbols.insert(name.clone(), *addr);
        }
        self
    }

    /// A defined symbol's value (its virtual address).
    pub(crate) fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.get(name).copied()
    }

    /// Defined symbol names matching `pred`.
    #[allow(dead_code)] // used by the resolvers of the modules to come
    pub(crate) fn symbols_matching(&self, pred: impl Fn(&str) -> bool) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .symbols
            .keys()
            .map(String::as_str)
            .filter(|n| pred(n))
            .collect();
        v.sort_unstable();
        v
    }

    /// The file offset of virtual address `vaddr` (`vaddr − p_vaddr + p_offset`
    /// of the segment holding it).
    pub(crate) fn file_offset(&self, vaddr: u64) -> Option<u64> {
        self.loads
            .iter()
            .find(|(va, _, size)| vaddr >= *va && vaddr < va + size)
            .map(|(va, off, _)| vaddr - va + off)
    }

    /// The bytes of the file at virtual address `vaddr`, `len` at most.
    pub(crate) fn bytes_at(&self, vaddr: u64, len: usize) -> Option<&[u8]> {
        let off = usize::try_from(self.file_offset(vaddr)?).ok()?;
        self.bytes
            .get(off..off.saturating_add(len).min(self.bytes.len()))
    }

    /// The uprobe attach point of function `symbol`, or an error naming the
    /// module, the file and the symbol.
    pub(crate) fn uprobe(
        &self,
        module: &'static ModuleDesc,
        program: &'static str,
        symbol: &str,
        ret: bool,
    ) -> Result<Attach, Error> {
        let missing = || Error::ModuleSymbol {
            module: module.name,
            symbol: symbol.to_owned(),
            path: self.path.clone(),
        };
        let vaddr = self.symbol(symbol).ok_or_else(missing)?;
        let offset = self.file_offset(vaddr).ok_or_else(missing)?;
        Ok(Attach {
            program,
            point: AttachPoint::Uprobe {
                path: self.path.clone(),
                symbol: symbol.to_owned(),
                offset,
                ret,
                cookie: 0,
            },
            required: true,
        })
    }
}

fn needed_of(elf: &ElfFile64<'_, object::Endianness>) -> Result<Vec<String>, object::Error> {
    let endian = elf.endian();
    let data = elf.data();
    let sections = elf.elf_section_table();
    let Some((dynamic, index)) = sections.dynamic(endian, data)? else {
        return Ok(Vec::new());
    };
    let strings = sections.strings(endian, data, index)?;
    Ok(dynamic
        .iter()
        .filter(|d| d.d_tag(endian) == object::elf::DT_NEEDED)
        .filter_map(|d| d.string(endian, strings).ok())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect())
}

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Finds a shared library of `module`: the request's path if given; else the
/// file whose name starts with `soname` mapped by the request's pid (through
/// `/proc/PID/root`, so containers work); else `ldconfig -p`'s.
pub(crate) fn find_library(
    module: &'static ModuleDesc,
    soname: &str,
    req: &TargetRequest,
) -> Result<PathBuf, Error> {
    let not_found = |searched: String| Error::LibraryNotFound {
        module: module.name,
        library: soname.to_owned(),
        searched,
        flag: module.path_flag,
    };
    match (&req.path, req.pid) {
        (Some(path), _) if !path.exists() => Err(Error::Unsupported {
            module: module.name,
            path: path.clone(),
            reason: format!("no such file (given with {})", module.path_flag),
        }),
        (Some(path), _) => Ok(path.clone()),
        (None, Some(pid)) => mapped_by(pid, soname)?
            .ok_or_else(|| not_found(format!("/proc/{pid}/maps (the process does not map it)"))),
        (None, None) => ldconfig_lookup(soname)?.ok_or_else(|| not_found("`ldconfig -p`".into())),
    }
}

/// The file whose name starts with `prefix` mapped by process `pid`, as a
/// path through the process's root.
pub(crate) fn mapped_by(pid: u32, prefix: &str) -> Result<Option<PathBuf>, Error> {
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
                .is_some_and(|name| name.as_encoded_bytes().starts_with(prefix.as_bytes()))
        });
    Ok(mapped.map(|m| via_root(pid, Path::new(m))))
}

/// The executable a module probes: the request's path if given; else the
/// executable of the request's pid; else the first of `defaults` that exists.
pub(crate) fn find_executable(
    module: &'static ModuleDesc,
    what: &'static str,
    defaults: &[PathBuf],
    req: &TargetRequest,
) -> Result<PathBuf, Error> {
    match (&req.path, req.pid) {
        (Some(path), _) => Ok(path.clone()),
        (None, Some(pid)) => exe_of(pid),
        (None, None) => defaults
            .iter()
            .find(|p| p.exists())
            .cloned()
            .ok_or_else(|| Error::ExecutableNotFound {
                module: module.name,
                what,
                searched: defaults
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                flag: module.path_flag,
            }),
    }
}

/// The executable of process `pid`, through its root.
pub(crate) fn exe_of(pid: u32) -> Result<PathBuf, Error> {
    let link = PathBuf::from(format!("/proc/{pid}/exe"));
    let exe = fs::read_link(&link).map_err(|source| Error::Read { path: link, source })?;
    Ok(via_root(pid, &exe))
}

/// `path` as seen from process `pid` (another mount namespace, a container).
fn via_root(pid: u32, path: &Path) -> PathBuf {
    let through =
        PathBuf::from(format!("/proc/{pid}/root")).join(path.strip_prefix("/").unwrap_or(path));
    if through.exists() {
        through
    } else {
        path.to_path_buf()
    }
}

/// The path `ldconfig -p` gives for `name` on this architecture.
pub(crate) fn ldconfig_lookup(name: &str) -> Result<Option<PathBuf>, Error> {
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

/// The text after the first `prefix` in `bytes`, up to the first byte not
/// in `[0-9A-Za-z.]` (a version number), if it starts with a digit.
pub(crate) fn version_after(bytes: &[u8], prefix: &[u8]) -> Option<String> {
    memchr::memmem::find_iter(bytes, prefix).find_map(|at| {
        let rest = &bytes[at + prefix.len()..];
        let end = rest
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'.'))
            .unwrap_or(rest.len());
        let v = std::str::from_utf8(&rest[..end]).ok()?;
        v.starts_with(|c: char| c.is_ascii_digit())
            .then(|| v.trim_end_matches('.').to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn versions_are_read_after_their_prefix() {
        let blob = b"xx Enabled GnuTLS 3.7.9 logging...\0";
        assert_eq!(
            version_after(blob, b"Enabled GnuTLS ").as_deref(),
            Some("3.7.9")
        );
        assert_eq!(version_after(b"Enabled GnuTLS x", b"Enabled GnuTLS "), None);
    }

    /// Symbol offsets of a real library equal what the ELF says (libc's
    /// `write` is in its executable segment).
    #[test]
    fn symbols_resolve_to_file_offsets() {
        let Some(libc) = ldconfig_lookup("libc.so.6").ok().flatten() else {
            panic!("no libc.so.6 in ldconfig -p");
        };
        let elf = Elf::read("test", &libc).expect("libc parses");
        let va = elf.symbol("write").expect("libc exports write");
        let off = elf.file_offset(va).expect("in a segment");
        assert!(off > 0 && (off as usize) < elf.bytes().len());
        assert!(elf.symbol("no_such_symbol_rcapture").is_none());
    }
}
