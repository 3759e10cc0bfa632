//! The `gotls` module: Go's crypto/tls inside a Go executable (amd64,
//! Go ≥ 1.17, with or without a symbol table, PIE or not).
//!
//! Functions are found in the ELF `.symtab` or, in a stripped binary, in
//! the pclntab (Go's own function table, which every Go binary keeps); the
//! Go version comes from the build info (`\xff Go buildinf:`). `Read` is
//! probed at each of its `ret` instructions, found by decoding the function
//! (iced-x86), and the argument spill slots the probes read at the `ret`
//! are taken from its decoded prologue. Facts: `shared/spec/GOTLS.md`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use iced_x86::{Code, Decoder, DecoderOptions, Mnemonic, OpKind, Register};
use object::read::elf::{ElfFile64, FileHeader as _};
use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
use rcapture_core::records::RecordKind;

use super::{Elf, exe_of};
use crate::Error;
use crate::module::{Attach, AttachPoint, Global, ModuleDesc, Target, TargetRequest};

/// The Go TLS module.
pub static MODULE: ModuleDesc = ModuleDesc {
    name: "gotls",
    about: "Go crypto/tls plaintext and key logs (Go 1.17+ amd64 binaries, stripped or not)",
    object: include_bytes!("../../obj/gotls.bpf.o"),
    kinds: &[RecordKind::GotlsData, RecordKind::GotlsKey],
    routes: &["/gotls"],
    path_flag: "--elfpath",
    skipped: &[],
    resolve,
};

fn resolve(req: &TargetRequest) -> Result<Target, Error> {
    let path = match (&req.path, req.pid) {
        (Some(path), _) => path.clone(),
        (None, Some(pid)) => exe_of(pid)?,
        (None, None) => {
            return Err(Error::NoTarget {
                module: MODULE.name,
                what: "the Go binary",
                flag: MODULE.path_flag,
            });
        }
    };
    GoTarget::inspect(&path)?.target()
}

/// `(*Conn).writeRecordLocked(typ recordType, data []byte)`: entry.
pub const WRITE_FN: &str = "crypto/tls.(*Conn).writeRecordLocked";
/// `(*Conn).Read(b []byte) (int, error)`: every `ret`.
pub const READ_FN: &str = "crypto/tls.(*Conn).Read";
/// `(*Config).writeKeyLog(label string, clientRandom, secret []byte)`: entry.
pub const KEYLOG_FN: &str = "crypto/tls.(*Config).writeKeyLog";
/// Methods whose address identifies the connection types' itabs in a
/// stripped binary (`Close` is net.Conn's first method).
const TCPCONN_CLOSE: &str = "net.(*TCPConn).Close";
const UNIXCONN_CLOSE: &str = "net.(*UnixConn).Close";
/// `Read` copies the plaintext to `b` with a call to it.
const MEMMOVE: &str = "runtime.memmove";
const FUNCTIONS: [&str; 6] = [
    WRITE_FN,
    READ_FN,
    KEYLOG_FN,
    TCPCONN_CLOSE,
    UNIXCONN_CLOSE,
    MEMMOVE,
];

/// The oldest and newest Go minor versions whose layout the probes know:
/// 1.17 brought the register ABI; the crypto/tls signatures and the
/// tls.Conn → net.Conn → *netFD → Sysfd chain are the same up to 1.25
/// (measured on 1.19.8, read in the sources of the others).
const MIN_MINOR: u32 = 17;
const MAX_MINOR: u32 = 25;
const SUPPORTED: &str = "Go 1.17 to 1.25 on amd64 (register ABI)";

/// Where a function's address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionSource {
    /// The ELF `.symtab` (address and size).
    SymbolTable,
    /// Go's pclntab (entry, and the next function's entry as the end).
    Pclntab,
}

impl FunctionSource {
    fn name(self) -> &'static str {
        match self {
            Self::SymbolTable => "the ELF symbol table",
            Self::Pclntab => "the pclntab",
        }
    }
}

/// A Go function's virtual address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function {
    /// Entry address.
    pub entry: u64,
    /// First address after its code.
    pub end: u64,
}

/// A Go binary checked for the probes: version, functions, `ret`s of
/// `Read`, the spill slots of its arguments and the connection type hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoTarget {
    path: PathBuf,
    version: String,
    pie: bool,
    source: FunctionSource,
    write: Function,
    read: Function,
    keylog: Option<Function>,
    /// Where `writeRecordLocked` and `writeKeyLog` are probed.
    write_probe: EntryProbe,
    keylog_probe: Option<EntryProbe>,
    /// Virtual addresses of every `ret` of `Read`.
    read_rets: Vec<u64>,
    /// `Read`'s one `call runtime.memmove` (the copy into `b`), if it has one.
    read_copy: Option<u64>,
    /// Probe `Read`'s `ret`s even though it has the copy call.
    use_returns: bool,
    /// `Read`'s frame: where its receiver and `b.ptr` are spilled.
    read_frame: Frame,
    tcpconn_hash: Option<u32>,
    unixconn_hash: Option<u32>,
    /// File offsets of the probed addresses, by address.
    offsets: Vec<(u64, u64)>,
}

impl GoTarget {
    /// Reads and checks a Go executable: amd64, a supported Go version,
    /// `writeRecordLocked` and `Read` present, `Read`'s `ret`s and spill
    /// slots decodable.
    pub fn inspect(path: &Path) -> Result<Self, Error> {
        let elf = Elf::read(MODULE.name, path)?;
        let unsupported = |reason: String| Error::Unsupported {
            module: MODULE.name,
            path: path.to_path_buf(),
            reason,
        };
        let parsed =
            ElfFile64::<object::Endianness>::parse(elf.bytes()).map_err(|source| Error::Elf {
                module: MODULE.name,
                path: path.to_path_buf(),
                source,
            })?;
        let endian = parsed.endian();
        let header = parsed.elf_header();
        if header.e_machine(endian) != object::elf::EM_X86_64 || !parsed.is_little_endian() {
            return Err(unsupported(
                "not an x86-64 ELF executable (the probes read amd64 registers)".into(),
            ));
        }
        let pie = header.e_type(endian) == object::elf::ET_DYN;
        let image = Image::new(&elf, &parsed);

        let version = build_info_version(&image).ok_or_else(|| {
            unsupported("no Go build info (`\\xff Go buildinf:`): not a Go executable".into())
        })?;
        let minor = go_minor(&version)
            .ok_or_else(|| unsupported(format!("unreadable Go version {version:?}")))?;
        if !(MIN_MINOR..=MAX_MINOR).contains(&minor) {
            return Err(Error::UnsupportedVersion {
                module: MODULE.name,
                found: version,
                path: path.to_path_buf(),
                supported: SUPPORTED,
            });
        }

        let layout = |what: String| Error::UnknownLayout {
            module: MODULE.name,
            path: path.to_path_buf(),
            version: version.clone(),
            what,
        };
        let symbols = symtab_symbols(&parsed);
        let (source, functions) = find_functions(&image, &parsed, &symbols).map_err(layout)?;
        let searched = match source {
            FunctionSource::Pclntab if !symbols.is_empty() => {
                "the ELF symbol table and the pclntab"
            }
            s => s.name(),
        };
        let missing = |function: &str| {
            layout(format!(
                "{function} not found (searched {searched}); does the program use crypto/tls?"
            ))
        };
        let write = *functions.get(WRITE_FN).ok_or_else(|| missing(WRITE_FN))?;
        let read = *functions.get(READ_FN).ok_or_else(|| missing(READ_FN))?;
        let keylog = functions.get(KEYLOG_FN).copied();
        let entry_probe = |f: Function, name: &str| {
            image
                .code(f)
                .map(|code| EntryProbe::of(code, f.entry))
                .ok_or_else(|| layout(format!("{name} is outside the file")))
        };
        let write_probe = entry_probe(write, WRITE_FN)?;
        let keylog_probe = keylog.map(|k| entry_probe(k, KEYLOG_FN)).transpose()?;

        let code = image
            .code(read)
            .ok_or_else(|| layout(format!("{READ_FN} is outside the file")))?;
        let read_rets = returns(code, read.entry).map_err(|e| layout(format!("{READ_FN}: {e}")))?;
        let read_frame = read_frame(code, read.entry).ok_or_else(|| {
            layout(format!(
                "{READ_FN}'s prologue does not store its receiver (RAX) and \
                 b.ptr (RBX) in the caller's argument slots: unknown layout"
            ))
        })?;
        let read_copy = functions.get(MEMMOVE).and_then(|m| {
            let b_slot = u64::from(read_frame.depth + read_frame.buf);
            copy_call(code, read.entry, m.entry, b_slot)
        });

        let hash = |itab_type: &str, close: &str| {
            itab_hash_by_symbol(&image, &symbols, itab_type)
                .or_else(|| itab_hash_by_method(&image, &parsed, functions.get(close)?.entry))
        };
        let tcpconn_hash = hash("*net.TCPConn", TCPCONN_CLOSE);
        let unixconn_hash = hash("*net.UnixConn", UNIXCONN_CLOSE);

        let mut offsets = Vec::new();
        for va in [write_probe.at]
            .into_iter()
            .chain(keylog_probe.map(|k| k.at))
            .chain(read_rets.iter().copied())
            .chain(read_copy)
        {
            let off = elf
                .file_offset(va)
                .ok_or_else(|| layout(format!("address {va:#x} is in no loadable segment")))?;
            offsets.push((va, off));
        }
        Ok(Self {
            path: path.to_path_buf(),
            version,
            pie,
            source,
            write,
            read,
            keylog,
            write_probe,
            keylog_probe,
            read_rets,
            read_copy,
            use_returns: false,
            read_frame,
            tcpconn_hash,
            unixconn_hash,
            offsets,
        })
    }

    fn offset(&self, vaddr: u64) -> u64 {
        self.offsets
            .iter()
            .find(|(va, _)| *va == vaddr)
            .map(|(_, off)| *off)
            .expect("every probed address has its offset from inspect")
    }

    fn uprobe(&self, program: &'static str, symbol: String, vaddr: u64, cookie: u64) -> Attach {
        Attach {
            program,
            point: AttachPoint::Uprobe {
                path: self.path.clone(),
                symbol,
                offset: self.offset(vaddr),
                ret: false,
                cookie,
            },
            required: true,
        }
    }

    fn entry_uprobe(
        &self,
        program: &'static str,
        name: &str,
        f: Function,
        p: EntryProbe,
    ) -> Attach {
        let symbol = if p.at == f.entry {
            name.to_owned()
        } else {
            format!("{name}+{:#x}", p.at - f.entry)
        };
        self.uprobe(program, symbol, p.at, u64::from(p.stack_check))
    }

    /// The attach points (entry of `writeRecordLocked` and `writeKeyLog`,
    /// each `ret` of `Read`) and the layout globals.
    pub fn target(&self) -> Result<Target, Error> {
        let mut attach =
            vec![self.entry_uprobe("rc_gotls_write", WRITE_FN, self.write, self.write_probe)];
        let f = self.read_frame;
        let read_slots = match self.read_copy.filter(|_| !self.use_returns) {
            Some(at) => {
                attach.push(self.uprobe(
                    "rc_gotls_read_copy",
                    format!("{READ_FN}+{:#x}", at - self.read.entry),
                    at,
                    0,
                ));
                // SP at the call is the entry SP minus the frame.
                (f.depth + f.conn, f.depth + f.buf)
            }
            None => {
                for &r in &self.read_rets {
                    attach.push(self.uprobe(
                        "rc_gotls_read",
                        format!("{READ_FN}+{:#x}", r - self.read.entry),
                        r,
                        0,
                    ));
                }
                (f.conn, f.buf)
            }
        };
        let mut notes = Vec::new();
        match (self.keylog, self.keylog_probe) {
            (Some(k), Some(p)) => {
                attach.push(self.entry_uprobe("rc_gotls_keylog", KEYLOG_FN, k, p))
            }
            _ => notes.push(format!(
                "no key log: {KEYLOG_FN} is not in {}",
                self.path.display()
            )),
        }
        if self.source == FunctionSource::Pclntab {
            notes.push("no symbol table: functions found in the pclntab".into());
        }
        if self.tcpconn_hash.is_none() {
            notes.push(format!(
                "fd and addresses unknown: no *net.TCPConn itab found in {}",
                self.path.display()
            ));
        }
        let globals = vec![
            ("go_conn_iface_off", Global::U32(0)),
            ("go_netfd_off", Global::U32(0)),
            ("go_sysfd_off", Global::U32(16)),
            ("go_itab_hash_off", Global::U32(16)),
            (
                "go_tcpconn_hash",
                Global::U32(self.tcpconn_hash.unwrap_or(0)),
            ),
            (
                "go_unixconn_hash",
                Global::U32(self.unixconn_hash.unwrap_or(0)),
            ),
            ("go_read_conn_sp", Global::U32(read_slots.0)),
            ("go_read_buf_sp", Global::U32(read_slots.1)),
        ];
        Ok(Target {
            module: &MODULE,
            path: self.path.clone(),
            version: self.version.clone(),
            attach,
            globals,
            notes,
        })
    }

    /// The executable.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The Go version from the build info, e.g. `go1.19.8`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// A position-independent executable (ELF type `ET_DYN`).
    pub fn pie(&self) -> bool {
        self.pie
    }

    /// Where the functions were found.
    pub fn source(&self) -> FunctionSource {
        self.source
    }

    /// `writeRecordLocked`, `Read` and `writeKeyLog` (if present).
    pub fn functions(&self) -> (Function, Function, Option<Function>) {
        (self.write, self.read, self.keylog)
    }

    /// Offsets of `Read`'s `ret` instructions from its entry.
    pub fn read_returns(&self) -> Vec<u64> {
        self.read_rets.iter().map(|r| r - self.read.entry).collect()
    }

    /// The receiver's and `b.ptr`'s slots, from SP at a `ret` of `Read`.
    pub fn read_slots(&self) -> (u32, u32) {
        (self.read_frame.conn, self.read_frame.buf)
    }

    /// Offset from `Read`'s entry of its `call runtime.memmove`, where the
    /// plaintext it returns is probed (one trap: the kernel emulates a
    /// call, while a `ret` is single-stepped out of line, ~15 µs a hit
    /// here); `None`: its `ret`s are probed instead.
    pub fn read_copy_call(&self) -> Option<u64> {
        self.read_copy
            .filter(|_| !self.use_returns)
            .map(|c| c - self.read.entry)
    }

    /// Probes `Read` at its `ret`s, as for a `Read` without a single copy
    /// call (to test that way on binaries that have one).
    pub fn use_return_probes(&mut self) {
        self.use_returns = true;
    }

    /// The type hashes of `*net.TCPConn` and `*net.UnixConn`, from their itabs.
    pub fn conn_type_hashes(&self) -> (Option<u32>, Option<u32>) {
        (self.tcpconn_hash, self.unixconn_hash)
    }
}

/// Where a function's arguments are read: at its stack check's `jbe
/// runtime.morestack` when the prologue has one and touches no argument
/// register before it (the probe then skips the hit when the branch is
/// taken: after growing the stack, morestack jumps back to the entry and
/// the function starts again, so an entry probe would see the call twice);
/// else at the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EntryProbe {
    at: u64,
    /// `at` is the stack check's `jbe` (attach cookie 1 for the program).
    stack_check: bool,
}

impl EntryProbe {
    fn of(code: &[u8], ip: u64) -> Self {
        for insn in Decoder::with_ip(64, code, ip, DecoderOptions::NONE)
            .into_iter()
            .take(4)
        {
            match insn.mnemonic() {
                // JLS morestack after CMPQ SP (or R12 = SP - frame), 16(R14)
                Mnemonic::Jbe => {
                    return Self {
                        at: insn.ip(),
                        stack_check: true,
                    };
                }
                Mnemonic::Cmp if insn.memory_base() == Register::R14 => {}
                Mnemonic::Lea
                    if insn.op0_register() == Register::R12
                        && insn.memory_base() == Register::RSP => {}
                _ => break,
            }
        }
        Self {
            at: ip,
            stack_check: false,
        }
    }
}

/// The file's bytes by virtual address, with the addends of its
/// `R_X86_64_RELATIVE` relocations for pointers the file leaves zero.
struct Image<'a> {
    elf: &'a Elf,
    relative: HashMap<u64, u64>,
}

impl<'a> Image<'a> {
    fn new(elf: &'a Elf, parsed: &ElfFile64<'_, object::Endianness>) -> Self {
        let mut relative = HashMap::new();
        if let Some(relocs) = parsed.dynamic_relocations() {
            for (at, r) in relocs {
                if r.flags()
                    == (object::RelocationFlags::Elf {
                        r_type: object::elf::R_X86_64_RELATIVE,
                    })
                {
                    relative.insert(at, r.addend() as u64);
                }
            }
        }
        Self { elf, relative }
    }

    fn bytes(&self, vaddr: u64, len: usize) -> Option<&'a [u8]> {
        self.elf.bytes_at(vaddr, len).filter(|b| b.len() == len)
    }

    fn u32_at(&self, vaddr: u64) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(vaddr, 4)?.try_into().ok()?))
    }

    /// A pointer stored at `vaddr`: the file's value, or the relocation's
    /// addend where the linker left the field zero.
    fn ptr_at(&self, vaddr: u64) -> Option<u64> {
        let v = u64::from_le_bytes(self.bytes(vaddr, 8)?.try_into().ok()?);
        if v == 0 {
            return self.relative.get(&vaddr).copied().or(Some(0));
        }
        Some(v)
    }

    fn code(&self, f: Function) -> Option<&'a [u8]> {
        self.bytes(f.entry, usize::try_from(f.end.checked_sub(f.entry)?).ok()?)
    }
}

/// The Go version in the build info: the `.go.buildinfo` section, or the
/// magic anywhere in the file.
fn build_info_version(image: &Image<'_>) -> Option<String> {
    let bytes = image.elf.bytes();
    let at = memchr::memmem::find(bytes, BUILDINFO_MAGIC)?;
    parse_build_info(&bytes[at..], |va, len| image.bytes(va, len))
}

const BUILDINFO_MAGIC: &[u8] = b"\xff Go buildinf:";

/// The version of a build info blob (`blob` starts at the magic): Go 1.18+
/// inlines it after the 32-byte header (flag 0x2); older versions point to
/// a Go string (`read(vaddr, len)` reads the image).
fn parse_build_info<'a>(
    blob: &'a [u8],
    read: impl Fn(u64, usize) -> Option<&'a [u8]>,
) -> Option<String> {
    let ptr_size = *blob.get(14)? as usize;
    let flags = *blob.get(15)?;
    if flags & 0x1 != 0 {
        return None; // big-endian
    }
    let text = if flags & 0x2 != 0 {
        let (len, n) = uvarint(blob.get(32..)?)?;
        let start = 32 + n;
        blob.get(start..start.checked_add(usize::try_from(len).ok()?)?)?
    } else {
        if ptr_size != 8 {
            return None;
        }
        let header = u64::from_le_bytes(blob.get(16..24)?.try_into().ok()?);
        let string = read(header, 16)?;
        let ptr = u64::from_le_bytes(string[..8].try_into().ok()?);
        let len = u64::from_le_bytes(string[8..16].try_into().ok()?);
        read(ptr, usize::try_from(len).ok().filter(|l| *l < 256)?)?
    };
    let v = std::str::from_utf8(text).ok()?;
    v.starts_with("go").then(|| v.to_owned())
}

fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The minor version of `go1.M[.P]`, `go1.Mrc1` or `devel go1.M-…`.
fn go_minor(version: &str) -> Option<u32> {
    let at = version.find("go1.")?;
    let digits: String = version[at + 4..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// `.symtab` symbols: name → (value, size).
fn symtab_symbols<'a>(
    parsed: &'a ElfFile64<'_, object::Endianness>,
) -> HashMap<&'a str, (u64, u64)> {
    parsed
        .symbols()
        .filter(|s| s.is_definition())
        .filter_map(|s| Some((s.name().ok()?, (s.address(), s.size()))))
        .collect()
}

/// The wanted functions, from the symbol table when it has them, else from
/// the pclntab.
fn find_functions(
    image: &Image<'_>,
    parsed: &ElfFile64<'_, object::Endianness>,
    symbols: &HashMap<&str, (u64, u64)>,
) -> Result<(FunctionSource, HashMap<&'static str, Function>), String> {
    if symbols.contains_key(READ_FN) {
        let found = FUNCTIONS
            .iter()
            .filter_map(|&name| {
                let &(entry, size) = symbols.get(name)?;
                (size > 0).then_some((
                    name,
                    Function {
                        entry,
                        end: entry + size,
                    },
                ))
            })
            .collect();
        return Ok((FunctionSource::SymbolTable, found));
    }
    let table = pclntab_bytes(image.elf.bytes(), parsed)
        .ok_or("no pclntab (section .gopclntab or .data.rel.ro.gopclntab, or its magic)")?;
    let pcln = Pclntab::parse(table)?;
    Ok((FunctionSource::Pclntab, pcln.find(&FUNCTIONS)))
}

/// The pclntab: its section, else the first magic in the file that parses.
fn pclntab_bytes<'a>(
    file: &'a [u8],
    parsed: &ElfFile64<'a, object::Endianness>,
) -> Option<&'a [u8]> {
    for name in [".gopclntab", ".data.rel.ro.gopclntab"] {
        if let Some(data) = parsed.section_by_name(name).and_then(|s| s.data().ok()) {
            return Some(data);
        }
    }
    const HEADS: [[u8; 8]; 3] = [
        [0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8],
        [0xf0, 0xff, 0xff, 0xff, 0, 0, 1, 8],
        [0xfa, 0xff, 0xff, 0xff, 0, 0, 1, 8],
    ];
    HEADS.iter().find_map(|head| {
        memchr::memmem::find_iter(file, head)
            .filter(|at| at % 8 == 0)
            .map(|at| &file[at..])
            .find(|t| Pclntab::parse(t).is_ok_and(|p| p.nfunc > 0))
    })
}

/// Go's function table (runtime/symtab.go, debug/gosym), layouts of
/// Go 1.16–1.17 (magic 0xfffffffa) and 1.18+ (0xfffffff0, 0xfffffff1).
#[derive(Debug)]
struct Pclntab<'a> {
    data: &'a [u8],
    /// 1.18+: offsets from `text_start` are 32-bit.
    relative: bool,
    nfunc: usize,
    text_start: u64,
    funcnames: usize,
    functab: usize,
}

impl<'a> Pclntab<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, String> {
        let word = |at: usize| -> Result<u64, String> {
            data.get(at..at + 8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                .ok_or_else(|| "pclntab header cut short".to_string())
        };
        let head = data.get(..8).ok_or("pclntab header cut short")?;
        let magic = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
        if head[4..8] != [0, 0, 1, 8] {
            return Err(format!(
                "pclntab header {:02x?}: not amd64 (minLC 1, 8-byte pointers)",
                &head[4..8]
            ));
        }
        let offset =
            |v: u64| usize::try_from(v).map_err(|_| "pclntab offset too large".to_string());
        let (relative, text_start, funcnames, functab) = match magic {
            0xffff_fff0 | 0xffff_fff1 => (true, word(24)?, word(32)?, word(64)?),
            0xffff_fffa => (false, 0, word(24)?, word(56)?),
            other => return Err(format!("unknown pclntab magic {other:#x}")),
        };
        let nfunc = offset(word(8)?)?;
        let p = Self {
            data,
            relative,
            nfunc,
            text_start,
            funcnames: offset(funcnames)?,
            functab: offset(functab)?,
        };
        if p.entry(nfunc).is_none() {
            return Err(format!(
                "pclntab function table of {nfunc} functions cut short"
            ));
        }
        Ok(p)
    }

    fn field_size(&self) -> usize {
        if self.relative { 4 } else { 8 }
    }

    fn read(&self, at: usize, size: usize) -> Option<u64> {
        let b = self.data.get(at..at.checked_add(size)?)?;
        Some(if size == 4 {
            u64::from(u32::from_le_bytes(b.try_into().ok()?))
        } else {
            u64::from_le_bytes(b.try_into().ok()?)
        })
    }

    /// The entry address of function `i` (`i == nfunc`: the end of the text).
    fn entry(&self, i: usize) -> Option<u64> {
        let fs = self.field_size();
        let v = self.read(self.functab.checked_add(i.checked_mul(2 * fs)?)?, fs)?;
        Some(if self.relative {
            self.text_start.checked_add(v)?
        } else {
            v
        })
    }

    fn name(&self, i: usize) -> Option<&'a [u8]> {
        let fs = self.field_size();
        let funcoff = self.read(self.functab + i * 2 * fs + fs, fs)?;
        let func = self.functab.checked_add(usize::try_from(funcoff).ok()?)?;
        // _func: entry (uint32 offset, or uintptr before 1.18), then nameOff int32.
        let nameoff = self.read(func + fs, 4)? as u32 as i32;
        let at = self.funcnames.checked_add(usize::try_from(nameoff).ok()?)?;
        let rest = self.data.get(at..)?;
        Some(&rest[..memchr::memchr(0, rest)?])
    }

    /// Entry and end of each function of `wanted` that is in the table.
    fn find(&self, wanted: &[&'static str]) -> HashMap<&'static str, Function> {
        let mut found = HashMap::new();
        for i in 0..self.nfunc {
            let Some(name) = self.name(i) else { continue };
            let Some(&w) = wanted.iter().find(|w| w.as_bytes() == name) else {
                continue;
            };
            if let (Some(entry), Some(end)) = (self.entry(i), self.entry(i + 1))
                && end > entry
            {
                found.insert(w, Function { entry, end });
            }
            if found.len() == wanted.len() {
                break;
            }
        }
        found
    }
}

/// The address of every near `ret` in `code` (at `ip`), decoding it from
/// the start; an undecodable instruction is an error.
fn returns(code: &[u8], ip: u64) -> Result<Vec<u64>, String> {
    let mut rets = Vec::new();
    for insn in Decoder::with_ip(64, code, ip, DecoderOptions::NONE) {
        if insn.is_invalid() {
            return Err(format!("undecodable instruction at {:#x}", insn.ip()));
        }
        if matches!(insn.code(), Code::Retnq | Code::Retnq_imm16) {
            rets.push(insn.ip());
        }
    }
    if rets.is_empty() {
        return Err("no ret instruction".into());
    }
    Ok(rets)
}

/// `Read`'s frame after its prologue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frame {
    /// Bytes below the entry SP (`push`es and `sub rsp, N`): SP in the body
    /// is the entry SP minus this.
    depth: u32,
    /// Where the prologue stores RAX (the receiver) and RBX (`b.ptr`), as
    /// offsets from the entry SP, which is SP at a `ret`: the caller's
    /// argument spill slots (≥ 8, above the return address).
    conn: u32,
    buf: u32,
}

/// `Read`'s frame: follows `push` and `sub rsp, N` and the stores of RAX
/// and RBX to `[rsp+d]` up to the first call.
fn read_frame(code: &[u8], ip: u64) -> Option<Frame> {
    let mut depth: u64 = 0; // bytes pushed below the entry SP
    let (mut rax, mut rbx) = (None, None);
    for insn in Decoder::with_ip(64, code, ip, DecoderOptions::NONE)
        .into_iter()
        .take(64)
    {
        match insn.mnemonic() {
            Mnemonic::Call | Mnemonic::Ret | Mnemonic::Jmp => break,
            Mnemonic::Push => depth += 8,
            Mnemonic::Sub
                if insn.op0_kind() == OpKind::Register
                    && insn.op0_register() == Register::RSP
                    && matches!(
                        insn.op1_kind(),
                        OpKind::Immediate8to64 | OpKind::Immediate32to64
                    ) =>
            {
                depth = depth.checked_add(insn.immediate(1))?;
            }
            Mnemonic::Mov
                if insn.code() == Code::Mov_rm64_r64
                    && insn.op0_kind() == OpKind::Memory
                    && insn.memory_base() == Register::RSP
                    && insn.memory_index() == Register::None =>
            {
                let slot = insn
                    .memory_displacement64()
                    .checked_sub(depth)
                    .filter(|s| *s >= 8)
                    .and_then(|s| u32::try_from(s).ok());
                match insn.op1_register() {
                    Register::RAX if rax.is_none() => rax = slot,
                    Register::RBX if rbx.is_none() => rbx = slot,
                    _ => {}
                }
            }
            _ => {}
        }
        if let (Some(conn), Some(buf)) = (rax, rbx) {
            return Some(Frame {
                depth: u32::try_from(depth).ok()?,
                conn,
                buf,
            });
        }
    }
    None
}

/// The address of `Read`'s copy into `b`: its only `call target`
/// (runtime.memmove), if the last write of RAX (memmove's destination)
/// before it loads `b.ptr` from its spill slot (`mov rax, [rsp+slot]`,
/// `slot` from the SP in the body).
fn copy_call(code: &[u8], ip: u64, target: u64, b_slot: u64) -> Option<u64> {
    let mut found = None;
    let mut rax_is_b = false;
    for insn in Decoder::with_ip(64, code, ip, DecoderOptions::NONE) {
        if insn.code() == Code::Call_rel32_64 && insn.near_branch_target() == target {
            if found.is_some() || !rax_is_b {
                return None;
            }
            found = Some(insn.ip());
        }
        // op0 is the destination, but for the comparisons (no write)
        if insn.op0_kind() == OpKind::Register
            && matches!(
                insn.op0_register(),
                Register::RAX | Register::EAX | Register::AX | Register::AL
            )
            && !matches!(
                insn.mnemonic(),
                Mnemonic::Cmp | Mnemonic::Test | Mnemonic::Push
            )
        {
            rax_is_b = insn.code() == Code::Mov_r64_rm64
                && insn.memory_base() == Register::RSP
                && insn.memory_index() == Register::None
                && insn.memory_displacement64() == b_slot;
        }
    }
    found
}

/// The type hash in the itab symbol of `typ` for net.Conn (`go.itab.` up
/// to Go 1.19, `go:itab.` since 1.20).
fn itab_hash_by_symbol(
    image: &Image<'_>,
    symbols: &HashMap<&str, (u64, u64)>,
    typ: &str,
) -> Option<u32> {
    ["go.itab.", "go:itab."].iter().find_map(|prefix| {
        let &(va, _) = symbols.get(format!("{prefix}{typ},net.Conn").as_str())?;
        image.u32_at(va + ITAB_HASH).filter(|h| *h != 0)
    })
}

/// itab: inter, _type, hash (uint32, the type's), pad, fun[0] …
const ITAB_HASH: u64 = 16;
const ITAB_FUN0: u64 = 24;

/// The type hash of the first itab in the itab links whose first method
/// is at `method` (e.g. `net.(*TCPConn).Close`: the type's itabs for
/// net.Conn, io.Closer, … all carry the same type hash).
fn itab_hash_by_method(
    image: &Image<'_>,
    parsed: &ElfFile64<'_, object::Endianness>,
    method: u64,
) -> Option<u32> {
    let links = [".itablink", ".data.rel.ro.itablink"]
        .iter()
        .find_map(|n| parsed.section_by_name(n))?;
    let (start, size) = (links.address(), links.size());
    (0..size / 8).find_map(|i| {
        let itab = image.ptr_at(start + i * 8)?;
        (itab != 0 && image.ptr_at(itab + ITAB_FUN0)? == method)
            .then(|| image.u32_at(itab + ITAB_HASH))
            .flatten()
            .filter(|h| *h != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_versions_are_parsed() {
        assert_eq!(go_minor("go1.19.8"), Some(19));
        assert_eq!(go_minor("go1.21rc2"), Some(21));
        assert_eq!(go_minor("devel go1.23-4f7a9d3 Tue"), Some(23));
        assert_eq!(go_minor("go2"), None);
    }

    #[test]
    fn inline_build_info_is_read() {
        let mut blob = BUILDINFO_MAGIC.to_vec();
        blob.extend([8, 2]);
        blob.resize(32, 0);
        blob.push(8);
        blob.extend(b"go1.19.8");
        blob.extend([0xe5, 1, b'p']);
        assert_eq!(
            parse_build_info(&blob, |_, _| None).as_deref(),
            Some("go1.19.8")
        );
        blob[15] = 3; // big-endian
        assert_eq!(parse_build_info(&blob, |_, _| None), None);
    }

    /// Before Go 1.18 the header points to a Go string {ptr, len}.
    #[test]
    fn pointer_build_info_is_read() {
        let mut blob = BUILDINFO_MAGIC.to_vec();
        blob.extend([8, 0]);
        blob.extend(0x1000u64.to_le_bytes());
        blob.extend(0x1010u64.to_le_bytes());
        let mut mem = 0x2000u64.to_le_bytes().to_vec();
        mem.extend(9u64.to_le_bytes());
        let text = b"go1.17.13";
        let read = |va: u64, len: usize| -> Option<&[u8]> {
            match va {
                0x1000 => mem.get(..len),
                0x2000 => text.get(..len),
                _ => None,
            }
        };
        assert_eq!(parse_build_info(&blob, read).as_deref(), Some("go1.17.13"));
    }

    /// A function table in each layout: names map to entry and end.
    #[test]
    fn pclntab_layouts_are_parsed() {
        for magic in [0xffff_fff1u32, 0xffff_fff0, 0xffff_fffa] {
            let relative = magic != 0xffff_fffa;
            let fs = if relative { 4 } else { 8 };
            let names = ["main.main", READ_FN, WRITE_FN];
            let entries = [0x401000u64, 0x401100, 0x401380, 0x401400];
            let header_len = 72;
            let mut funcnames = Vec::new();
            let mut name_offs = Vec::new();
            for n in names {
                name_offs.push(funcnames.len() as u32);
                funcnames.extend(n.as_bytes());
                funcnames.push(0);
            }
            let funcnames_off = header_len;
            let functab_off = funcnames_off + funcnames.len();
            let ftab_len = (2 * names.len() + 1) * fs;
            let put = |v: &mut Vec<u8>, x: u64| {
                if relative {
                    v.extend((x as u32).to_le_bytes())
                } else {
                    v.extend(x.to_le_bytes())
                }
            };
            let text = if relative { 0x401000 } else { 0 };
            let mut ftab = Vec::new();
            let mut funcs = Vec::new();
            for (i, e) in entries.iter().enumerate() {
                put(&mut ftab, e - text);
                if i < names.len() {
                    put(&mut ftab, (ftab_len + funcs.len()) as u64);
                    put(&mut funcs, e - text);
                    funcs.extend(name_offs[i].to_le_bytes());
                    funcs.extend([0u8; 4]);
                }
            }
            let mut t = magic.to_le_bytes().to_vec();
            t.extend([0, 0, 1, 8]);
            t.extend((names.len() as u64).to_le_bytes());
            t.extend(0u64.to_le_bytes()); // nfiles
            if relative {
                t.extend(0x401000u64.to_le_bytes());
                t.extend((funcnames_off as u64).to_le_bytes());
                t.extend([0u8; 24]); // cu, filetab, pctab
                t.extend((functab_off as u64).to_le_bytes());
            } else {
                t.extend((funcnames_off as u64).to_le_bytes());
                t.extend([0u8; 24]);
                t.extend((functab_off as u64).to_le_bytes());
            }
            t.resize(header_len, 0);
            t.extend(&funcnames);
            t.extend(&ftab);
            t.extend(&funcs);
            let p = Pclntab::parse(&t).unwrap_or_else(|e| panic!("{magic:#x}: {e}"));
            let found = p.find(&[READ_FN, WRITE_FN, KEYLOG_FN]);
            assert_eq!(
                found.get(READ_FN),
                Some(&Function {
                    entry: 0x401100,
                    end: 0x401380
                }),
                "{magic:#x}"
            );
            assert_eq!(
                found.get(WRITE_FN),
                Some(&Function {
                    entry: 0x401380,
                    end: 0x401400
                })
            );
            assert!(!found.contains_key(KEYLOG_FN));
            // cut short: an error, not a panic
            assert!(Pclntab::parse(&t[..functab_off + 4]).is_err());
        }
        assert!(Pclntab::parse(&[0xfb, 0xff, 0xff, 0xff, 0, 0, 1, 8]).is_err());
    }

    /// `ret`s are instructions, not 0xC3 bytes: `mov eax, 0xc3c3c3c3` holds
    /// four, and only the real `ret`s count.
    #[test]
    fn returns_are_decoded_not_scanned() {
        let code = [
            0xb8, 0xc3, 0xc3, 0xc3, 0xc3, // mov eax, 0xc3c3c3c3
            0x74, 0x01, // je +1
            0xc3, // ret
            0x48, 0x83, 0xc4, 0x08, // add rsp, 8
            0xc2, 0x08, 0x00, // ret 8
            0xcc, 0xcc, // int3 padding
        ];
        assert_eq!(returns(&code, 0x1000), Ok(vec![0x1007, 0x100c]));
        assert!(returns(&code[..5], 0).is_err(), "no ret");
    }

    /// Go 1.19's writeRecordLocked prologue: the probe goes to its `jbe`;
    /// a function without a stack check is probed at its entry.
    #[test]
    fn entry_probes_go_to_the_stack_check() {
        let code = [
            0x4c, 0x8d, 0x64, 0x24, 0xb0, // lea r12, [rsp-0x50]
            0x4d, 0x3b, 0x66, 0x10, // cmp r12, [r14+0x10]
            0x0f, 0x86, 0x9b, 0x06, 0x00, 0x00, // jbe
            0x48, 0x81, 0xec, 0xd0, 0x00, 0x00, 0x00, // sub rsp, 0xd0
        ];
        assert_eq!(
            EntryProbe::of(&code, 0x5ad580),
            EntryProbe {
                at: 0x5ad589,
                stack_check: true
            }
        );
        assert_eq!(
            EntryProbe::of(&code[15..], 0x1000),
            EntryProbe {
                at: 0x1000,
                stack_check: false
            }
        );
        // An argument register written before the check: entry.
        let mut clobber = vec![0x48, 0x89, 0xd8]; // mov rax, rbx
        clobber.extend(&code);
        assert!(!EntryProbe::of(&clobber, 0).stack_check);
    }

    /// Only a single call to the target counts, and only when RAX was last
    /// loaded from `b.ptr`'s slot.
    #[test]
    fn the_copy_call_is_the_only_one_into_b() {
        let load = [0x48, 0x8b, 0x44, 0x24, 0x78]; // mov rax, [rsp+0x78]
        let call = |from: u64, to: u64| {
            let rel = (to as i64 - (from as i64 + 5)) as i32;
            let mut c = vec![0xe8];
            c.extend(rel.to_le_bytes());
            c
        };
        let mut code = load.to_vec();
        code.extend(call(0x1005, 0x2000));
        assert_eq!(copy_call(&code, 0x1000, 0x2000, 0x78), Some(0x1005));
        assert_eq!(copy_call(&code, 0x1000, 0x2000, 0x70), None, "another slot");
        assert_eq!(
            copy_call(&code, 0x1000, 0x3000, 0x78),
            None,
            "another target"
        );
        let mut compared = load.to_vec();
        compared.extend([0x48, 0x39, 0xd8]); // cmp rax, rbx
        compared.extend(call(0x1008, 0x2000));
        assert_eq!(copy_call(&compared, 0x1000, 0x2000, 0x78), Some(0x1008));
        let mut clobbered = load.to_vec();
        clobbered.extend([0x31, 0xc0]); // xor eax, eax
        clobbered.extend(call(0x1007, 0x2000));
        assert_eq!(copy_call(&clobbered, 0x1000, 0x2000, 0x78), None);
        let mut twice = code.clone();
        twice.extend(load);
        twice.extend(call(0x100f, 0x2000));
        assert_eq!(copy_call(&twice, 0x1000, 0x2000, 0x78), None);
    }

    /// Go 1.19's `Read` prologue (crypto/tls.(*Conn).Read in the test binary).
    #[test]
    fn the_read_frame_is_decoded() {
        let code = [
            0x49, 0x3b, 0x66, 0x10, // cmp rsp, [r14+0x10]
            0x0f, 0x86, 0x00, 0x01, 0x00, 0x00, // jbe
            0x48, 0x83, 0xec, 0x68, // sub rsp, 0x68
            0x48, 0x89, 0x6c, 0x24, 0x60, // mov [rsp+0x60], rbp
            0x48, 0x8d, 0x6c, 0x24, 0x60, // lea rbp, [rsp+0x60]
            0x48, 0x89, 0x8c, 0x24, 0x80, 0x00, 0x00, 0x00, // mov [rsp+0x80], rcx
            0x48, 0x89, 0x5c, 0x24, 0x78, // mov [rsp+0x78], rbx
            0x48, 0x89, 0x44, 0x24, 0x70, // mov [rsp+0x70], rax
            0xe8, 0, 0, 0, 0, // call
        ];
        assert_eq!(
            read_frame(&code, 0x5aff40),
            Some(Frame {
                depth: 0x68,
                conn: 8,
                buf: 16
            })
        );
        // Stored in its own frame only: no slot in the caller's.
        let own = [
            0x48, 0x83, 0xec, 0x68, // sub rsp, 0x68
            0x48, 0x89, 0x5c, 0x24, 0x10, // mov [rsp+0x10], rbx
            0x48, 0x89, 0x44, 0x24, 0x08, // mov [rsp+0x8], rax
            0xc3,
        ];
        assert_eq!(read_frame(&own, 0), None);
    }
}
