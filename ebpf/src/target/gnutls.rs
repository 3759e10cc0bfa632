//! The `gnutls` module (GnuTLS, `libgnutls.so.30`): the library to probe,
//! the session offsets its programs read (decoded from the library's own
//! accessors) and, for the versions whose session layout was verified, the
//! key log.

use rcapture_core::records::RecordKind;

use super::{Elf, find_library, version_after};
use crate::Error;
use crate::module::{Attach, AttachPoint, Global, ModuleDesc, Target, TargetRequest};

/// The GnuTLS module.
pub static MODULE: ModuleDesc = ModuleDesc {
    name: "gnutls",
    about: "GnuTLS (libgnutls.so.30) plaintext and secrets",
    object: include_bytes!("../../obj/gnutls.bpf.o"),
    kinds: &[RecordKind::GnutlsData, RecordKind::GnutlsSecret],
    routes: &["/gnutls"],
    path_flag: "--gnutls",
    skipped: &[],
    resolve,
};

const LIBGNUTLS: &str = "libgnutls.so.30";

/// The receive call every GnuTLS application uses; must exist.
const RECV: &str = "gnutls_record_recv";
/// The send call behind `gnutls_record_send` (3.6.3+); `gnutls_record_send`
/// itself where it does not exist. Never both: `gnutls_record_send` is a
/// stub that tail-jumps into `gnutls_record_send2`.
const SEND2: &str = "gnutls_record_send2";
const SEND: &str = "gnutls_record_send";
/// Entry programs of the other data calls, probed where exported.
const OPTIONAL_DATA: [(&str, &str); 4] = [
    ("rc_gnutls_send_entry", "gnutls_record_send_range"),
    ("rc_gnutls_send_entry", "gnutls_record_send_early_data"),
    ("rc_gnutls_recv_entry", "gnutls_record_recv_seq"),
    ("rc_gnutls_recv_entry", "gnutls_record_recv_early_data"),
];
const DATA_RETURN: &str = "rc_gnutls_data_return";
const HANDSHAKE: &str = "gnutls_handshake";

/// Offsets in `gnutls_session_t` (`struct gnutls_session_int`) of one
/// GnuTLS build, for the key log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SessionLayout {
    /// `internals.transport_recv_ptr` (what `gnutls_transport_get_int` reads).
    transport: u32,
    /// `internals.rsend_state` (what `gnutls_record_cork` writes).
    cork: u32,
    /// `security_parameters.prf` and `mac_entry_st.id` in it.
    prf: u32,
    mac_id: u32,
    /// `security_parameters.master_secret[48]`.
    master: u32,
    /// `security_parameters.client_random[32]`.
    random: u32,
    /// `security_parameters.pversion` and `version_entry_st.id` in it.
    pversion: u32,
    version_id: u32,
    /// `key.proto.tls13.e_ckey[64]`, followed by `hs_ckey`, `hs_skey`,
    /// `ap_ckey`, `ap_skey`, `ap_expkey` (64 bytes each). No accessor reads
    /// them: this is the offset only a verified version gives.
    tls13_secrets: u32,
}

/// Versions whose layout was verified against the library's own
/// `SSLKEYLOGFILE` output (shared/spec/MODULES.md §1). Every field but
/// `tls13_secrets` is also checked against the library's accessors at start.
const LAYOUTS: &[(&str, SessionLayout)] = &[(
    "3.7.9",
    SessionLayout {
        transport: 0x600,
        cork: 0x548,
        prf: 0x18,
        mac_id: 0x18,
        master: 0x20,
        random: 0x50,
        pversion: 0xf8,
        version_id: 0x8,
        tls13_secrets: 0x1754,
    },
)];

/// The versions [`LAYOUTS`] knows, for messages.
fn known_versions() -> String {
    LAYOUTS
        .iter()
        .map(|(v, _)| *v)
        .collect::<Vec<_>>()
        .join(", ")
}

fn resolve(req: &TargetRequest) -> Result<Target, Error> {
    let path = find_library(&MODULE, LIBGNUTLS, req)?;
    let elf = Elf::read(MODULE.name, &path)?;
    // The receive call first: a library that is not GnuTLS fails here.
    let mut attach = vec![
        elf.uprobe(&MODULE, "rc_gnutls_recv_entry", RECV, false)?,
        elf.uprobe(&MODULE, DATA_RETURN, RECV, true)?,
    ];
    let send = if elf.symbol(SEND2).is_some() {
        SEND2
    } else if elf.symbol(SEND).is_some() {
        SEND
    } else {
        return Err(Error::ModuleSymbol {
            module: MODULE.name,
            symbol: SEND2.into(),
            path,
        });
    };
    attach.push(elf.uprobe(&MODULE, "rc_gnutls_send2_entry", send, false)?);
    attach.push(elf.uprobe(&MODULE, DATA_RETURN, send, true)?);
    for (program, symbol) in OPTIONAL_DATA {
        if elf.symbol(symbol).is_some() {
            attach.push(elf.uprobe(&MODULE, program, symbol, false)?);
            attach.push(elf.uprobe(&MODULE, DATA_RETURN, symbol, true)?);
        }
    }
    attach.push(Attach {
        program: "rc_sys_enter",
        point: AttachPoint::RawTracepoint("sys_enter"),
        required: true,
    });

    let version = version_after(elf.bytes(), b"Enabled GnuTLS ");
    let found = Accessors::decode(&elf);
    let mut notes = Vec::new();
    let mut globals = Vec::new();
    for (decoded, names, missing) in [
        (
            found.transport,
            ["transport_recv_off", "transport_send_off"],
            "cannot decode gnutls_transport_get_int: fds come from the socket syscalls only \
             (calls answered from GnuTLS's buffers show fd 0)",
        ),
        (
            found.cork,
            ["cork_off", "cork_state"],
            "cannot decode gnutls_record_cork: writes of a corked session are captured \
             when buffered and again when sent",
        ),
    ] {
        match decoded {
            Some((a, b)) => {
                globals.extend([(names[0], Global::U32(a)), (names[1], Global::U32(b))])
            }
            None => notes.push(missing.to_owned()),
        }
    }
    match keylog_layout(version.as_deref(), &found, &elf) {
        Ok(l) => {
            for (name, v) in [
                ("sp_prf_off", l.prf),
                ("mac_id_off", l.mac_id),
                ("sp_master_off", l.master),
                ("sp_random_off", l.random),
                ("sp_pversion_off", l.pversion),
                ("version_id_off", l.version_id),
                ("tls13_secrets_off", l.tls13_secrets),
            ] {
                globals.push((name, Global::U32(v)));
            }
            attach.push(elf.uprobe(&MODULE, "rc_gnutls_handshake_entry", HANDSHAKE, false)?);
            attach.push(elf.uprobe(&MODULE, "rc_gnutls_handshake_return", HANDSHAKE, true)?);
        }
        Err(why) => notes.push(format!("no key log: {why}; plaintext is captured")),
    }
    Ok(Target {
        module: &MODULE,
        path,
        version: version.unwrap_or_else(|| "unknown".into()),
        attach,
        globals,
        notes,
    })
}

/// The session layout for the key log, or why there is none: the version
/// must be one of [`LAYOUTS`] and the library's accessors must read the
/// offsets that layout says.
fn keylog_layout(
    version: Option<&str>,
    found: &Accessors,
    elf: &Elf,
) -> Result<SessionLayout, String> {
    let Some(version) = version else {
        return Err(format!(
            "no `Enabled GnuTLS VERSION` string in {}, and the session layout is known only for GnuTLS {}",
            elf.path().display(),
            known_versions()
        ));
    };
    let Some((_, l)) = LAYOUTS.iter().find(|(v, _)| *v == version) else {
        return Err(format!(
            "the session layout of GnuTLS {version} is not known (known: {})",
            known_versions()
        ));
    };
    if elf.symbol(HANDSHAKE).is_none() {
        return Err(format!("{HANDSHAKE} is not exported"));
    }
    let checks = [
        (
            "gnutls_transport_get_int",
            found.transport.map(|t| vec![t.0]),
            vec![l.transport],
        ),
        (
            "gnutls_record_cork",
            found.cork.map(|c| vec![c.0]),
            vec![l.cork],
        ),
        (
            "gnutls_prf_hash_get",
            found.prf.map(|(a, b)| vec![a, b]),
            vec![l.prf, l.mac_id],
        ),
        (
            "gnutls_session_get_master_secret",
            found.master.map(|m| vec![m]),
            vec![l.master],
        ),
        (
            "gnutls_session_get_random",
            found.random.map(|r| vec![r]),
            vec![l.random],
        ),
        (
            "gnutls_protocol_get_version",
            found.pversion.map(|(a, b)| vec![a, b]),
            vec![l.pversion, l.version_id],
        ),
    ];
    for (accessor, got, want) in checks {
        match got {
            Some(got) if got == want => {}
            Some(got) => {
                return Err(format!(
                    "{accessor} of this GnuTLS {version} build reads offsets {} where the verified layout has {}",
                    hex_list(&got),
                    hex_list(&want)
                ));
            }
            None => {
                return Err(format!(
                    "cannot decode {accessor} to check the session layout"
                ));
            }
        }
    }
    Ok(*l)
}

fn hex_list(v: &[u32]) -> String {
    v.iter()
        .map(|x| format!("{x:#x}"))
        .collect::<Vec<_>>()
        .join("/")
}

/// Session offsets read from the first instructions of exported accessors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Accessors {
    /// (recv, send) transport pointers: `gnutls_transport_get_int`, `_int2`.
    transport: Option<(u32, u32)>,
    /// (rsend_state offset, its corked value): `gnutls_record_cork`.
    cork: Option<(u32, u32)>,
    /// (prf pointer, id in the mac entry): `gnutls_prf_hash_get`.
    prf: Option<(u32, u32)>,
    /// master_secret: `gnutls_session_get_master_secret`.
    master: Option<u32>,
    /// client_random: `gnutls_session_get_random`.
    random: Option<u32>,
    /// (pversion pointer, id in the version entry): `gnutls_protocol_get_version`.
    pversion: Option<(u32, u32)>,
}

/// Bytes of an accessor looked at (they are a few instructions long).
const ACCESSOR_BYTES: usize = 48;

impl Accessors {
    fn decode(elf: &Elf) -> Self {
        let code = |name: &str| {
            elf.symbol(name)
                .and_then(|va| elf.bytes_at(va, ACCESSOR_BYTES))
        };
        let recv = code("gnutls_transport_get_int").and_then(transport_get_int);
        Self {
            transport: recv.map(|r| {
                let send = code("gnutls_transport_get_int2")
                    .and_then(|c| transport_get_int2(c, r))
                    .unwrap_or(r);
                (r, send)
            }),
            cork: code("gnutls_record_cork").and_then(record_cork),
            prf: code("gnutls_prf_hash_get").and_then(field_of_field),
            master: code("gnutls_session_get_master_secret").and_then(address_of_field),
            random: code("gnutls_session_get_random").and_then(address_of_field),
            pversion: code("gnutls_protocol_get_version").and_then(field_of_field),
        }
    }
}

/// An x86-64 instruction with a `disp(base)` memory operand (ModRM mod 1 or
/// 2, no SIB, no RIP-relative), or a register operand (mod 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Insn {
    opcode: u8,
    /// ModRM reg (with REX.R): the register operand, or an opcode extension.
    reg: u8,
    /// ModRM rm (with REX.B): the base register.
    base: u8,
    /// `None`: a register operand (mod 3).
    disp: Option<i32>,
    len: usize,
}

const RDI: u8 = 7;

fn insn(code: &[u8]) -> Option<Insn> {
    let mut i = 0;
    let mut rex = 0;
    if let Some(&b) = code.first()
        && (0x40..=0x4f).contains(&b)
    {
        rex = b;
        i = 1;
    }
    let opcode = *code.get(i)?;
    let modrm = *code.get(i + 1)?;
    i += 2;
    let (md, rm) = (modrm >> 6, modrm & 7);
    let disp = match md {
        3 => None,
        _ if rm == 4 => return None, // SIB
        1 => {
            let d = i32::from(*code.get(i)? as i8);
            i += 1;
            Some(d)
        }
        2 => {
            let d = i32::from_le_bytes(code.get(i..i + 4)?.try_into().ok()?);
            i += 4;
            Some(d)
        }
        _ => return None,
    };
    Some(Insn {
        opcode,
        reg: (modrm >> 3) & 7 | (rex & 0x4) << 1,
        base: rm | (rex & 0x1) << 3,
        disp,
        len: i,
    })
}

/// The first instruction at or after each byte of `code` that `pred`
/// accepts, with its position (accessors are short: a byte scan finds the
/// instruction without a full decoder; the results are cross-checked).
fn find_insn(code: &[u8], pred: impl Fn(&Insn) -> bool) -> Option<(usize, Insn)> {
    (0..code.len()).find_map(|p| insn(&code[p..]).filter(&pred).map(|i| (p, i)))
}

fn non_negative(d: Option<i32>) -> Option<u32> {
    d.and_then(|d| u32::try_from(d).ok())
}

/// `mov disp(%rdi),%eax`: the recv transport offset.
fn transport_get_int(code: &[u8]) -> Option<u32> {
    let i = insn(code).filter(|i| i.opcode == 0x8b && i.base == RDI)?;
    non_negative(i.disp)
}

/// The load from `%rdi` after the one of `recv` (`*recv_fd = ...; *send_fd = ...`).
fn transport_get_int2(code: &[u8], recv: u32) -> Option<u32> {
    let load = |i: &Insn| i.opcode == 0x8b && i.base == RDI && i.disp.is_some();
    let (p, first) = find_insn(code, load)?;
    if non_negative(first.disp)? != recv {
        return None;
    }
    let (_, second) = find_insn(&code[p + first.len..], load)?;
    non_negative(second.disp)
}

/// `movl $imm32,disp(%rdi)`: (offset, value).
fn record_cork(code: &[u8]) -> Option<(u32, u32)> {
    let i = insn(code).filter(|i| i.opcode == 0xc7 && i.reg == 0 && i.base == RDI)?;
    let imm = u32::from_le_bytes(code.get(i.len..i.len + 4)?.try_into().ok()?);
    Some((non_negative(i.disp)?, imm))
}

/// `mov disp1(%rdi),%reg` then `mov disp2(%reg),...`: (disp1, disp2).
fn field_of_field(code: &[u8]) -> Option<(u32, u32)> {
    let (p, first) = find_insn(code, |i| {
        i.opcode == 0x8b && i.base == RDI && i.disp.is_some()
    })?;
    let (_, second) = find_insn(&code[p + first.len..], |i| {
        i.opcode == 0x8b && i.base == first.reg && i.disp.is_some()
    })?;
    Some((non_negative(first.disp)?, non_negative(second.disp)?))
}

/// `lea disp(%rdi),%reg` or `add $imm,%rdi`: the address of a field.
fn address_of_field(code: &[u8]) -> Option<u32> {
    let (p, i) = find_insn(code, |i| {
        (i.opcode == 0x8d && i.base == RDI && i.disp.is_some())
            || (matches!(i.opcode, 0x83 | 0x81) && i.reg == 0 && i.base == RDI && i.disp.is_none())
    })?;
    match i.opcode {
        0x8d => non_negative(i.disp),
        0x83 => u32::try_from(*code.get(p + i.len)? as i8).ok(),
        _ => u32::try_from(i32::from_le_bytes(
            code.get(p + i.len..p + i.len + 4)?.try_into().ok()?,
        ))
        .ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// The accessors of libgnutls 3.7.9 (objdump of Debian's build).
    #[test]
    fn accessors_decode() {
        assert_eq!(
            transport_get_int(&[0x8b, 0x87, 0x00, 0x06, 0, 0, 0xc3]),
            Some(0x600)
        );
        // mov 0x600(%rdi),%rax; mov %eax,(%rsi); mov 0x608(%rdi),%rax; mov %eax,(%rdx)
        let int2 = [
            0x48, 0x8b, 0x87, 0x00, 0x06, 0, 0, 0x89, 0x06, 0x48, 0x8b, 0x87, 0x08, 0x06, 0, 0,
            0x89, 0x02, 0xc3,
        ];
        assert_eq!(transport_get_int2(&int2, 0x600), Some(0x608));
        assert_eq!(transport_get_int2(&int2, 0x610), None);
        assert_eq!(
            record_cork(&[0xc7, 0x87, 0x48, 0x05, 0, 0, 0x01, 0, 0, 0, 0xc3]),
            Some((0x548, 1))
        );
        // sub $8,%rsp; mov 0x18(%rdi),%rax; test %rax,%rax; je; mov 0x18(%rax),%eax
        let prf = [
            0x48, 0x83, 0xec, 0x08, 0x48, 0x8b, 0x47, 0x18, 0x48, 0x85, 0xc0, 0x74, 0x23, 0x8b,
            0x40, 0x18,
        ];
        assert_eq!(field_of_field(&prf), Some((0x18, 0x18)));
        // mov 0xf8(%rdi),%rax; test; je; mov 0x8(%rax),%eax
        let pv = [
            0x48, 0x8b, 0x87, 0xf8, 0, 0, 0, 0x48, 0x85, 0xc0, 0x74, 0x04, 0x8b, 0x40, 0x08, 0xc3,
        ];
        assert_eq!(field_of_field(&pv), Some((0xf8, 0x8)));
        // add $0x20,%rdi; movl $0x30,0x8(%rsi); mov %rdi,(%rsi)
        assert_eq!(
            address_of_field(&[0x48, 0x83, 0xc7, 0x20, 0xc7, 0x46, 0x08, 0x30, 0, 0, 0]),
            Some(0x20)
        );
        // test %rsi,%rsi; je; lea 0x50(%rdi),%rax
        assert_eq!(
            address_of_field(&[0x48, 0x85, 0xf6, 0x74, 0x0e, 0x48, 0x8d, 0x47, 0x50]),
            Some(0x50)
        );
        // Not an accessor of this shape.
        assert_eq!(transport_get_int(&[0x31, 0xc0, 0xc3]), None);
        assert_eq!(record_cork(&[0xc3]), None);
    }

    const SYSTEM: &str = "/usr/lib/x86_64-linux-gnu/libgnutls.so.30";

    fn system_target() -> Option<Target> {
        if !Path::new(SYSTEM).exists() {
            eprintln!("skipping test - no {SYSTEM}");
            return None;
        }
        Some(resolve(&TargetRequest::default()).expect("resolving the system's libgnutls"))
    }

    fn global(t: &Target, name: &str) -> Option<Global> {
        t.globals
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    }

    fn probed(t: &Target) -> Vec<(&'static str, String, bool)> {
        t.attach
            .iter()
            .filter_map(|a| match &a.point {
                AttachPoint::Uprobe { symbol, ret, .. } => Some((a.program, symbol.clone(), *ret)),
                _ => None,
            })
            .collect()
    }

    /// Debian 12's GnuTLS 3.7.9: found through ldconfig, its accessors
    /// decoded, the key log on, and `gnutls_record_send` not probed.
    #[test]
    fn system_gnutls_is_resolved_with_key_log() {
        let Some(t) = system_target() else { return };
        assert_eq!(t.version, "3.7.9", "{t:?}");
        assert!(t.notes.is_empty(), "{:?}", t.notes);
        assert_eq!(global(&t, "transport_recv_off"), Some(Global::U32(0x600)));
        assert_eq!(global(&t, "transport_send_off"), Some(Global::U32(0x608)));
        assert_eq!(global(&t, "cork_off"), Some(Global::U32(0x548)));
        assert_eq!(global(&t, "cork_state"), Some(Global::U32(1)));
        assert_eq!(global(&t, "tls13_secrets_off"), Some(Global::U32(0x1754)));
        let p = probed(&t);
        for sym in [
            "gnutls_record_send2",
            "gnutls_record_send_range",
            "gnutls_record_send_early_data",
            "gnutls_record_recv",
            "gnutls_record_recv_seq",
            "gnutls_record_recv_early_data",
            "gnutls_handshake",
        ] {
            assert!(
                p.iter().any(|(_, s, r)| s == sym && !r),
                "{sym} entry: {p:?}"
            );
            assert!(
                p.iter().any(|(_, s, r)| s == sym && *r),
                "{sym} return: {p:?}"
            );
        }
        assert!(
            !p.iter().any(|(_, s, _)| s == "gnutls_record_send"),
            "gnutls_record_send tail-jumps into send2: {p:?}"
        );
        assert!(t.attach.iter().any(|a| a.program == "rc_sys_enter"));
    }

    /// Another version: the key log is off with a note naming the version.
    #[test]
    fn unknown_version_turns_the_key_log_off() {
        let Some(t) = system_target() else { return };
        let elf = Elf::read("gnutls", Path::new(SYSTEM)).unwrap();
        let found = Accessors::decode(&elf);
        let err = keylog_layout(Some("3.8.3"), &found, &elf).unwrap_err();
        assert_eq!(
            err,
            "the session layout of GnuTLS 3.8.3 is not known (known: 3.7.9)"
        );
        let mut other = found;
        other.random = Some(0x58);
        let err = keylog_layout(Some("3.7.9"), &other, &elf).unwrap_err();
        assert!(
            err.contains("gnutls_session_get_random") && err.contains("0x58"),
            "{err}"
        );
        assert!(keylog_layout(Some(&t.version), &found, &elf).is_ok());
    }

    /// OpenSSL's libssl.so.3 is not GnuTLS: the error names the module, the
    /// file and the missing symbol.
    #[test]
    fn a_library_without_the_symbols_is_refused() {
        let libssl = PathBuf::from("/usr/lib/x86_64-linux-gnu/libssl.so.3");
        if !libssl.exists() {
            eprintln!("skipping test - no {}", libssl.display());
            return;
        }
        let err = resolve(&TargetRequest {
            path: Some(libssl.clone()),
            pid: None,
            symbols: Vec::new(),
        })
        .expect_err("libssl is not GnuTLS");
        assert_eq!(
            err.to_string(),
            format!(
                "symbol gnutls_record_recv not found in {} (module gnutls)",
                libssl.display()
            )
        );
    }
}
