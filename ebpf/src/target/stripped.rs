//! Finding functions in a stripped x86-64 executable (no symbols) by their
//! error sites: OpenSSL 3.x / 4.x records `__func__` with every `ERR_raise`
//! (`ERR_set_debug(OPENSSL_FILE, OPENSSL_LINE, OPENSSL_FUNC)`), so a function
//! that raises an error references its own name as a NUL-terminated string.
//! The string is found in `.rodata`, the instructions that load its address
//! in the code (RIP-relative `lea`; `mov $imm32` in code that is not
//! position-independent), and the function holding them through the `.eh_frame`
//! FDEs (`strip` keeps `.eh_frame`: unwinding needs it). A function is
//! accepted only if exactly one FDE holds every reference.

use std::collections::HashSet;
use std::fmt::Write as _;

use object::{Object as _, ObjectSection as _, SectionKind};

/// One FDE's code range: `[start, end)`, virtual addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fde {
    pub start: u64,
    pub end: u64,
}

/// Why `.eh_frame` could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EhFrameError {
    /// Offset in the section of the entry.
    pub at: usize,
    pub what: &'static str,
}

impl std::fmt::Display for EhFrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, ".eh_frame entry at offset {:#x}: {}", self.at, self.what)
    }
}

const DW_EH_PE_OMIT: u8 = 0xff;
const DW_EH_PE_PCREL: u8 = 0x10;
const DW_EH_PE_DATAREL: u8 = 0x30;
const DW_EH_PE_INDIRECT: u8 = 0x80;

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let b = self.data.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(b)
    }
    fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
    }
    fn u64(&mut self) -> Option<u64> {
        self.bytes(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    }
    fn uleb(&mut self) -> Option<u64> {
        let (mut v, mut shift) = (0u64, 0u32);
        loop {
            let b = self.u8()?;
            if shift < 64 {
                v |= u64::from(b & 0x7f) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
    }
    fn sleb(&mut self) -> Option<i64> {
        let (mut v, mut shift) = (0i64, 0u32);
        loop {
            let b = self.u8()?;
            if shift < 64 {
                v |= i64::from(b & 0x7f) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                if shift < 64 && b & 0x40 != 0 {
                    v |= -1i64 << shift;
                }
                return Some(v);
            }
        }
    }
    fn cstr(&mut self) -> Option<&'a [u8]> {
        let rest = self.data.get(self.pos..)?;
        let n = rest.iter().position(|&b| b == 0)?;
        self.pos += n + 1;
        Some(&rest[..n])
    }

    /// A pointer in DWARF EH encoding `enc`; `field_va` is the virtual
    /// address of the field (the base of pcrel). `Err` names what is not
    /// supported.
    fn encoded(&mut self, enc: u8, field_va: u64) -> Result<u64, &'static str> {
        const SHORT: &str = "truncated";
        if enc & DW_EH_PE_INDIRECT != 0 {
            return Err("indirect pointer encoding (not used for code addresses)");
        }
        let raw: u64 = match enc & 0x0f {
            0x00 | 0x04 => self.u64().ok_or(SHORT)?,
            0x01 => self.uleb().ok_or(SHORT)?,
            0x02 => u64::from(self.u16().ok_or(SHORT)?),
            0x03 => u64::from(self.u32().ok_or(SHORT)?),
            0x09 => self.sleb().ok_or(SHORT)? as u64,
            0x0a => self.u16().ok_or(SHORT)? as i16 as i64 as u64,
            0x0b => self.u32().ok_or(SHORT)? as i32 as i64 as u64,
            0x0c => self.u64().ok_or(SHORT)?,
            _ => return Err("unknown pointer encoding"),
        };
        match enc & 0x70 {
            0 => Ok(raw),
            DW_EH_PE_PCREL => Ok(field_va.wrapping_add(raw)),
            DW_EH_PE_DATAREL => Err("datarel pointer encoding"),
            _ => Err("textrel/funcrel/aligned pointer encoding"),
        }
    }
}

/// Per CIE: the FDE pointer encoding (what the FDEs' augmentation data
/// holds is not needed: each entry is skipped by its length).
#[derive(Clone, Copy)]
struct Cie {
    fde_enc: u8,
}

fn parse_cie(r: &mut Reader<'_>, va: u64) -> Result<Cie, &'static str> {
    const SHORT: &str = "truncated CIE";
    let version = r.u8().ok_or(SHORT)?;
    if !matches!(version, 1 | 3 | 4) {
        return Err("unknown CIE version");
    }
    let aug = r.cstr().ok_or(SHORT)?;
    if aug.starts_with(b"eh") {
        r.u64().ok_or(SHORT)?;
    }
    if version == 4 {
        r.bytes(2).ok_or(SHORT)?; // address size, segment selector size
    }
    r.uleb().ok_or(SHORT)?; // code alignment
    r.sleb().ok_or(SHORT)?; // data alignment
    if version == 1 {
        r.u8().ok_or(SHORT)?;
    } else {
        r.uleb().ok_or(SHORT)?;
    }
    let mut cie = Cie { fde_enc: 0 };
    if aug.first() == Some(&b'z') {
        let len = usize::try_from(r.uleb().ok_or(SHORT)?).map_err(|_| SHORT)?;
        let start = r.pos;
        let data_va = va + start as u64;
        let mut a = Reader {
            data: r.bytes(len).ok_or(SHORT)?,
            pos: 0,
        };
        for &c in &aug[1..] {
            match c {
                b'R' => cie.fde_enc = a.u8().ok_or(SHORT)?,
                b'L' => {
                    a.u8().ok_or(SHORT)?;
                }
                b'P' => {
                    let enc = a.u8().ok_or(SHORT)?;
                    // only its size matters: the personality is not used
                    a.encoded(enc & 0x0f, data_va + a.pos as u64)?;
                }
                b'S' | b'B' | b'G' => {}
                _ => break, // unknown: the rest of the data is skipped by its length
            }
        }
    }
    Ok(cie)
}

/// The FDEs of an `.eh_frame` section loaded at virtual address `va`,
/// sorted by start, empty ranges (FDEs of discarded code) left out.
pub(crate) fn parse_eh_frame(data: &[u8], va: u64) -> Result<Vec<Fde>, EhFrameError> {
    let mut fdes = Vec::new();
    let mut cies: Vec<(usize, Cie)> = Vec::new();
    let mut at = 0usize;
    while at + 4 <= data.len() {
        let err = |what| EhFrameError { at, what };
        let mut r = Reader { data, pos: at };
        let len32 = r.u32().ok_or_else(|| err("truncated length"))?;
        if len32 == 0 {
            break; // the terminator
        }
        let (len, id_size) = if len32 == 0xffff_ffff {
            (r.u64().ok_or_else(|| err("truncated length"))?, 8)
        } else {
            (u64::from(len32), 4)
        };
        let body = r.pos;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| body.checked_add(l))
            .filter(|&e| e <= data.len())
            .ok_or_else(|| err("length beyond the section"))?;
        let id_pos = r.pos;
        let id = if id_size == 8 {
            r.u64()
        } else {
            r.u32().map(u64::from)
        }
        .ok_or_else(|| err("truncated id"))?;
        let mut r = Reader {
            data: &data[..end],
            pos: r.pos,
        };
        if id == 0 {
            let cie = parse_cie(&mut r, va).map_err(err)?;
            cies.push((at, cie));
        } else {
            let cie_at = u64::try_from(id_pos)
                .ok()
                .and_then(|p| p.checked_sub(id))
                .and_then(|p| usize::try_from(p).ok())
                .ok_or_else(|| err("CIE pointer before the section"))?;
            let cie = match cies.iter().rev().find(|(o, _)| *o == cie_at) {
                Some((_, c)) => *c,
                None => {
                    // A CIE after its FDE (allowed, unusual): parse it there.
                    let mut cr = Reader {
                        data,
                        pos: cie_at + 4,
                    };
                    if cr.u32() != Some(0) {
                        return Err(err("CIE pointer to no CIE"));
                    }
                    parse_cie(&mut cr, va).map_err(err)?
                }
            };
            if cie.fde_enc == DW_EH_PE_OMIT {
                return Err(err("FDE pointer encoding omitted"));
            }
            let field_va = va + r.pos as u64;
            let start = r.encoded(cie.fde_enc, field_va).map_err(err)?;
            let range = r.encoded(cie.fde_enc & 0x0f, 0).map_err(err)?;
            if range != 0 && start != 0 {
                fdes.push(Fde {
                    start,
                    end: start.wrapping_add(range),
                });
            }
        }
        at = end;
    }
    fdes.sort_unstable_by_key(|f| (f.start, f.end));
    Ok(fdes)
}

/// The FDE whose range holds `addr`.
pub(crate) fn fde_of(fdes: &[Fde], addr: u64) -> Option<Fde> {
    let i = fdes.partition_point(|f| f.start <= addr);
    fdes[..i]
        .iter()
        .rev()
        .take(4)
        .find(|f| addr < f.end)
        .copied()
}

/// Every RIP-relative 64-bit `lea` (`REX.W 8d /r`, ModRM mod = 00, rm = 101)
/// in `code` (loaded at `va`) whose target is in `targets`: (address of the
/// instruction, target). Every byte offset is tried (no decoding of
/// instruction boundaries): a false match would need its 32-bit
/// displacement to hit one of the few target addresses exactly.
pub(crate) fn lea_sites(code: &[u8], va: u64, targets: &HashSet<u64>) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for (i, w) in code.windows(7).enumerate() {
        if w[0] & 0xf8 != 0x48 || w[1] != 0x8d || w[2] & 0xc7 != 0x05 {
            continue;
        }
        let disp = i32::from_le_bytes([w[3], w[4], w[5], w[6]]);
        let next = va.wrapping_add(i as u64 + 7);
        let target = next.wrapping_add(disp as i64 as u64);
        if targets.contains(&target) {
            out.push((va.wrapping_add(i as u64), target));
        }
    }
    out
}

/// Every `mov $imm32, %r32` (`b8+r id`, also behind a REX prefix) in
/// `code` (loaded at `va`) whose immediate is in `targets`: how code that is
/// not position-independent loads an address below 4 GiB.
pub(crate) fn mov_imm_sites(code: &[u8], va: u64, targets: &HashSet<u64>) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for (i, w) in code.windows(5).enumerate() {
        if w[0] & 0xf8 != 0xb8 {
            continue;
        }
        let imm = u64::from(u32::from_le_bytes([w[1], w[2], w[3], w[4]]));
        if targets.contains(&imm) {
            out.push((va.wrapping_add(i as u64), imm));
        }
    }
    out
}

/// The virtual addresses of `name` followed by NUL in `data` (loaded at `va`):
/// also where it is the tail of a longer string (linkers merge those).
pub(crate) fn string_addresses(data: &[u8], va: u64, name: &str) -> Vec<u64> {
    let mut needle = name.as_bytes().to_vec();
    needle.push(0);
    memchr::memmem::find_iter(data, &needle)
        .map(|at| va + at as u64)
        .collect()
}

/// A stripped executable's read-only data, code and FDEs.
pub(crate) struct ErrorSites<'a> {
    rodata: Vec<(u64, &'a [u8])>,
    code: Vec<(u64, &'a [u8])>,
    fdes: Vec<Fde>,
}

impl<'a> ErrorSites<'a> {
    /// Reads the sections of an x86-64 ELF file; `Err` says what is missing.
    pub(crate) fn read(bytes: &'a [u8]) -> Result<Self, String> {
        let elf = object::read::elf::ElfFile64::<object::Endianness>::parse(bytes)
            .map_err(|e| format!("not a 64-bit ELF file: {e}"))?;
        if elf.architecture() != object::Architecture::X86_64 {
            return Err(format!(
                "the code is {:?}; finding functions by their error sites reads x86-64 code only",
                elf.architecture()
            ));
        }
        let (mut rodata, mut code, mut eh) = (Vec::new(), Vec::new(), None);
        for s in elf.sections() {
            let (Ok(name), Ok(data)) = (s.name(), s.data()) else {
                continue;
            };
            if name == ".eh_frame" {
                eh = Some((s.address(), data));
            } else if name.starts_with(".rodata") {
                rodata.push((s.address(), data));
            } else if s.kind() == SectionKind::Text {
                code.push((s.address(), data));
            }
        }
        let (eh_va, eh_data) = eh.ok_or_else(|| {
            "it has no .eh_frame section (needed to tell where functions start)".to_owned()
        })?;
        if rodata.is_empty() || code.is_empty() {
            return Err("it has no .rodata or no code section".into());
        }
        let fdes = parse_eh_frame(eh_data, eh_va).map_err(|e| e.to_string())?;
        if fdes.is_empty() {
            return Err(".eh_frame describes no function".into());
        }
        Ok(Self { rodata, code, fdes })
    }

    /// The start address of the function that references the string
    /// `name` (its own `__func__`, passed to `ERR_set_debug`), for each of
    /// `names`; one pass over the code for all of them.
    pub(crate) fn functions(&self, names: &[&str]) -> Vec<Result<u64, String>> {
        let strings: Vec<Vec<u64>> = names
            .iter()
            .map(|n| {
                self.rodata
                    .iter()
                    .flat_map(|(va, d)| string_addresses(d, *va, n))
                    .collect()
            })
            .collect();
        let targets: HashSet<u64> = strings.iter().flatten().copied().collect();
        let sites: Vec<(u64, u64)> = self
            .code
            .iter()
            .flat_map(|(va, d)| {
                let mut v = lea_sites(d, *va, &targets);
                v.extend(mov_imm_sites(d, *va, &targets));
                v
            })
            .collect();
        names
            .iter()
            .zip(&strings)
            .map(|(name, addrs)| {
                if addrs.is_empty() {
                    return Err(format!("no string \"{name}\" in .rodata"));
                }
                let refs: Vec<u64> = sites
                    .iter()
                    .filter(|(_, t)| addrs.contains(t))
                    .map(|(s, _)| *s)
                    .collect();
                self.one_function(name, &refs)
            })
            .collect()
    }

    fn one_function(&self, name: &str, refs: &[u64]) -> Result<u64, String> {
        if refs.is_empty() {
            return Err(format!(
                "no instruction in the code loads the address of the string \"{name}\" (RIP-relative lea or mov of an immediate)"
            ));
        }
        let mut fdes: Vec<Fde> = Vec::new();
        for &site in refs {
            let Some(f) = fde_of(&self.fdes, site) else {
                return Err(format!(
                    "the reference to \"{name}\" at {site:#x} lies in no .eh_frame FDE"
                ));
            };
            if !fdes.contains(&f) {
                fdes.push(f);
            }
        }
        if let [f] = fdes[..] {
            return Ok(f.start);
        }
        let mut list = String::new();
        for (i, f) in fdes.iter().enumerate() {
            let _ = write!(
                list,
                "{}{:#x}-{:#x}",
                if i == 0 { "" } else { ", " },
                f.start,
                f.end
            );
        }
        Err(format!(
            "the string \"{name}\" is referenced from {} functions ({list}): ambiguous",
            fdes.len()
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn uleb(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    /// A CIE with augmentation `zPLR` (personality pcrel|sdata4 4 bytes,
    /// LSDA enc, FDE enc `enc`), then FDEs (start, len).
    fn eh_frame(va: u64, enc: u8, fdes: &[(u64, u64)]) -> Vec<u8> {
        let mut cie = vec![0, 0, 0, 0, 1];
        cie.extend_from_slice(b"zPLR\0");
        uleb(1, &mut cie); // code align
        cie.push(0x78); // data align -8
        cie.push(16); // return register (version 1: a byte)
        let aug = [0x9b, 0, 0, 0, 0, 0x1b, enc];
        uleb(aug.len() as u64, &mut cie);
        cie.extend_from_slice(&aug);
        cie.extend_from_slice(&[0x0c, 7, 8]); // DW_CFA_def_cfa rsp+8
        while (cie.len() + 4) % 8 != 0 {
            cie.push(0);
        }
        let mut out = (cie.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&cie);
        for &(start, len) in fdes {
            let at = out.len();
            let mut fde = Vec::new();
            fde.extend_from_slice(&((at + 4) as u32).to_le_bytes()); // back to the CIE at 0
            let field = va + (at + 8) as u64;
            match enc {
                0x1b => {
                    fde.extend_from_slice(&((start.wrapping_sub(field)) as i32).to_le_bytes());
                    fde.extend_from_slice(&(len as u32).to_le_bytes());
                }
                0x00 => {
                    fde.extend_from_slice(&start.to_le_bytes());
                    fde.extend_from_slice(&len.to_le_bytes());
                }
                0x03 => {
                    fde.extend_from_slice(&(start as u32).to_le_bytes());
                    fde.extend_from_slice(&(len as u32).to_le_bytes());
                }
                _ => unreachable!(),
            }
            fde.push(0); // augmentation data length
            while (fde.len() + 4) % 8 != 0 {
                fde.push(0);
            }
            out.extend_from_slice(&(fde.len() as u32).to_le_bytes());
            out.extend_from_slice(&fde);
        }
        out.extend_from_slice(&[0, 0, 0, 0]);
        out
    }

    #[test]
    fn eh_frame_fdes_are_read_in_each_encoding() {
        let want = [(0x401000, 0x40), (0x401040, 0x1c0), (0x400800, 0x10)];
        for enc in [0x1b, 0x00, 0x03] {
            let data = eh_frame(0x48_0000, enc, &want);
            let fdes = parse_eh_frame(&data, 0x48_0000).expect("parses");
            let got: Vec<(u64, u64)> = fdes.iter().map(|f| (f.start, f.end - f.start)).collect();
            assert_eq!(
                got,
                vec![(0x400800, 0x10), (0x401000, 0x40), (0x401040, 0x1c0)],
                "encoding {enc:#x}"
            );
            assert_eq!(fde_of(&fdes, 0x401040).map(|f| f.start), Some(0x401040));
            assert_eq!(fde_of(&fdes, 0x40103f).map(|f| f.start), Some(0x401000));
            assert_eq!(fde_of(&fdes, 0x401200), None);
            assert_eq!(fde_of(&fdes, 0x400000), None);
        }
    }

    #[test]
    fn a_broken_eh_frame_is_an_error() {
        let mut data = eh_frame(0x1000, 0x1b, &[(0x2000, 0x10)]);
        // the FDE's length runs past the end
        let cie_len = u32::from_le_bytes(data[0..4].try_into().unwrap()) as usize;
        data[cie_len + 4..cie_len + 8].copy_from_slice(&0x1000u32.to_le_bytes());
        let e = parse_eh_frame(&data, 0x1000).unwrap_err();
        assert_eq!(e.what, "length beyond the section");
        assert_eq!(e.at, cie_len + 4);
        // an FDE pointing at no CIE
        let mut data = eh_frame(0x1000, 0x1b, &[(0x2000, 0x10)]);
        data[cie_len + 8..cie_len + 12].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(
            parse_eh_frame(&data, 0x1000).unwrap_err().what,
            "CIE pointer to no CIE"
        );
    }

    #[test]
    fn rip_relative_leas_are_found() {
        // 0x1000: lea 0x100(%rip),%rdx   -> 0x1107
        // 0x1007: lea -0x8(%rip),%r12    -> 0x1006 (REX.WR)
        // 0x100e: lea 0x10(%rax),%rdx    (not RIP-relative)
        // 0x1012: lea 0x100(%rip),%edx   (no REX.W)
        let code = [
            0x48, 0x8d, 0x15, 0x00, 0x01, 0x00, 0x00, //
            0x4c, 0x8d, 0x25, 0xf8, 0xff, 0xff, 0xff, //
            0x48, 0x8d, 0x50, 0x10, //
            0x8d, 0x15, 0x00, 0x01, 0x00, 0x00,
        ];
        let targets: HashSet<u64> = [0x1107, 0x1006, 0x1018 + 0x100].into();
        assert_eq!(
            lea_sites(&code, 0x1000, &targets),
            vec![(0x1000, 0x1107), (0x1007, 0x1006)]
        );
        assert!(lea_sites(&code, 0x1000, &HashSet::from([0x2000])).is_empty());
    }

    #[test]
    fn immediate_address_loads_are_found() {
        // 0x1000: mov $0x402010,%edx; 0x1005: mov $0x402010,%r9d (41 b9)
        let code = [
            0xba, 0x10, 0x20, 0x40, 0x00, //
            0x41, 0xb9, 0x10, 0x20, 0x40, 0x00,
        ];
        assert_eq!(
            mov_imm_sites(&code, 0x1000, &HashSet::from([0x402010])),
            vec![(0x1000, 0x402010), (0x1006, 0x402010)]
        );
    }

    #[test]
    fn strings_are_found_also_as_tails() {
        let data = b"\0ossl_write_internal\0ssl_write_internal\0ssl_write_internalx\0";
        assert_eq!(
            string_addresses(data, 0x100, "ssl_write_internal"),
            vec![0x102, 0x115]
        );
    }

    fn cc(
        dir: &std::path::Path,
        name: &str,
        src: &str,
        args: &[&str],
    ) -> Option<std::path::PathBuf> {
        let (c, exe) = (dir.join(format!("{name}.c")), dir.join(name));
        std::fs::write(&c, src).unwrap();
        let st = std::process::Command::new("cc")
            .args(args)
            .arg("-o")
            .arg(&exe)
            .arg(&c)
            .status();
        match st {
            Ok(s) if s.success() => Some(exe),
            _ => {
                eprintln!("skipping: cc {args:?} {name}.c failed");
                None
            }
        }
    }

    /// A stripped copy of `exe` (`strip -o`), next to it.
    pub(crate) fn strip(exe: &std::path::Path) -> std::path::PathBuf {
        let out = exe.with_extension("stripped");
        let st = std::process::Command::new("strip")
            .arg("-o")
            .arg(&out)
            .arg(exe)
            .status()
            .expect("strip");
        assert!(st.success());
        out
    }

    fn nm(exe: &std::path::Path, name: &str) -> u64 {
        let out = std::process::Command::new("nm")
            .arg(exe)
            .output()
            .expect("nm");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                let (a, _, n) = (w.next()?, w.next()?, w.next()?);
                (n == name).then(|| u64::from_str_radix(a, 16).unwrap())
            })
            .unwrap_or_else(|| panic!("{name} in nm {}", exe.display()))
    }

    /// A program whose functions report their own `__func__` (as
    /// `ERR_raise` does), stripped: each is found at the address `nm`
    /// gives for the unstripped build; a name used by two functions is
    /// refused as ambiguous, naming both ranges.
    #[test]
    fn functions_are_found_in_a_stripped_program() {
        let dir = tempfile::tempdir().unwrap();
        let src = r#"
            #include <stdio.h>
            __attribute__((noinline)) void report(const char *f, int l) { fprintf(stderr, "%s %d\n", f, l); }
            __attribute__((noinline)) int ssl_read_internal(int n) { if (n < 0) { report(__func__, 1); return -1; } if (n > 9) report(__func__, 2); return n + 1; }
            __attribute__((noinline)) int ssl_write_internal(int n) { if (n < 0) { report(__func__, 3); return -1; } return n * 2; }
            __attribute__((noinline)) int twice_a(int n) { if (n) report("twice", 4); return n; }
            __attribute__((noinline)) int twice_b(int n) { if (n) report("twice", 5); return n; }
            int main(int argc, char **argv) { (void)argv; return ssl_read_internal(argc) + ssl_write_internal(-argc) + twice_a(argc) + twice_b(argc); }
        "#;
        for args in [
            &["-O2"][..],
            &["-O2", "-static"][..],
            &["-O0", "-no-pie"][..],
        ] {
            let Some(exe) = cc(dir.path(), "sites", src, args) else {
                continue;
            };
            let stripped = strip(&exe);
            let bytes = std::fs::read(&stripped).unwrap();
            let sites = ErrorSites::read(&bytes).expect("sections");
            let found = sites.functions(&[
                "ssl_read_internal",
                "ssl_write_internal",
                "twice",
                "nothere",
            ]);
            assert_eq!(found[0], Ok(nm(&exe, "ssl_read_internal")), "{args:?}");
            assert_eq!(found[1], Ok(nm(&exe, "ssl_write_internal")), "{args:?}");
            let e = found[2].clone().unwrap_err();
            assert!(
                e.starts_with("the string \"twice\" is referenced from 2 functions (")
                    && e.contains(&format!("{:#x}-", nm(&exe, "twice_a")))
                    && e.contains(&format!("{:#x}-", nm(&exe, "twice_b")))
                    && e.ends_with("): ambiguous"),
                "{e}"
            );
            assert_eq!(found[3], Err("no string \"nothere\" in .rodata".into()));
        }
    }
}
