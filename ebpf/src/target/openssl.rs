//! The `tls` module (OpenSSL 1.1.1 – 4.0: `libssl.so.1.1`, `.so.3`, `.so.4`,
//! or a statically linked executable; BoringSSL: its unversioned
//! `libssl.so`): finding the libssl to probe, reading its version from the
//! ELF and choosing the struct layout the probes read.

use std::fmt;
use std::path::{Path, PathBuf};

use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind};
use rcapture_core::records::RecordKind;

use super::boringssl_layout::BORING_LAYOUT;
use super::openssl_layouts::LAYOUTS;
use super::stripped::ErrorSites;
use super::{Elf, exe_of, ldconfig_lookup, mapped_by};
use crate::Error;
use crate::module::{Attach, AttachPoint, Global, ModuleDesc, Target, TargetRequest};

/// The OpenSSL module.
pub static MODULE: ModuleDesc = ModuleDesc {
    name: "tls",
    about: "OpenSSL 1.1.1 - 4.0 and BoringSSL (libssl) plaintext and secrets",
    object: include_bytes!("../../obj/openssl.bpf.o"),
    kinds: &[RecordKind::TlsData, RecordKind::MasterSecret],
    routes: &["/tls", "/openssl"],
    path_flag: "--libssl",
    skipped: &[
        // RC_SKIP_NOT_CONNECTION: 3.2+ QUIC objects
        "not_a_tls_connection",
        // RC_SKIP_BAD_SECRET: session, cipher, version or secret lengths
        // not those of the layout's library
        "secrets_failed_checks",
    ],
    resolve,
};

fn resolve(req: &TargetRequest) -> Result<Target, Error> {
    OpensslTarget::discover_with(req.path.as_deref(), req.pid, &req.symbols)?.target()
}

/// (program, hooked function, return probe): entry and return of the I/O calls.
const IO_PROBES: [(&str, &str, bool); 8] = [
    ("rc_ssl_write_entry", "SSL_write", false),
    ("rc_ssl_write_return", "SSL_write", true),
    ("rc_ssl_write_ex_entry", "SSL_write_ex", false),
    ("rc_ssl_write_ex_return", "SSL_write_ex", true),
    ("rc_ssl_read_entry", "SSL_read", false),
    ("rc_ssl_read_return", "SSL_read", true),
    ("rc_ssl_read_ex_entry", "SSL_read_ex", false),
    ("rc_ssl_read_ex_return", "SSL_read_ex", true),
];

/// 3.3+: `SSL_write_ex2(ssl, buf, num, flags, written)`, probed where
/// exported, so that an application calling it directly is captured. From
/// 3.3 on `SSL_write_ex` is `return SSL_write_ex2(...)` (stock 3.3.2 and
/// 3.5.5: a direct `jmp`): where its code does reach `SSL_write_ex2` that
/// way, `SSL_write_ex2` is probed instead of `SSL_write_ex` (one entry and
/// one return per call). Where it does not visibly (inlined, or through the
/// PLT), both are probed: a nested call is still recorded once (both
/// entries save the same arguments in the thread's one call slot, the
/// inner return takes it and records the call, the outer one finds it
/// free), but a skipped QUIC call is counted at both entries.
const WRITE_EX2_PROBES: [(&str, &str, bool); 2] = [
    ("rc_ssl_write_ex2_entry", "SSL_write_ex2", false),
    ("rc_ssl_write_ex_return", "SSL_write_ex2", true),
];

/// The internal functions every `SSL_read`, `SSL_read_ex`, `SSL_write`,
/// `SSL_write_ex` and `SSL_write_ex2` call (and the SSL BIO's reads and
/// writes) go through in 3.0 – 4.0, found in a stripped executable by their
/// error-site strings (`ERR_raise` records `__func__`: both raise
/// `SSL_R_UNINITIALIZED`). Only these two are probed there, so no call is
/// recorded twice (`SSL_read` calls `ssl_read_internal`); `SSL_peek` goes
/// through `ssl_peek_internal`, which is not probed (a peek is no read).
/// Both return 1 on success and the byte count through their last argument,
/// like the `_ex` calls; `ssl_write_internal` gained `uint64_t flags` before
/// `written` in 3.3: `(s, buf, num, flags, written)`.
const READ_INTERNAL: &str = "ssl_read_internal";
const WRITE_INTERNAL: &str = "ssl_write_internal";

/// The releases whose `ssl_read_internal`/`ssl_write_internal` signatures
/// were checked in their sources (3.0.8, 3.2.1, 3.3.2, 3.5.5, 4.0.3).
const ERROR_SITE_RELEASES: (&str, &str) = ("3.0.0", "4.0.99");

/// The functions whose entry and return are probed; all must exist (every
/// OpenSSL from 1.1.1 on has them; BoringSSL lacks the `_ex` pair).
pub(crate) const REQUIRED_SYMBOLS: [&str; 4] =
    ["SSL_write", "SSL_write_ex", "SSL_read", "SSL_read_ex"];
/// BoringSSL's: [`IO_PROBES`] without the `_ex` pair.
const BORING_SYMBOLS: [&str; 2] = ["SSL_write", "SSL_read"];
/// BoringSSL's internal `bssl::ssl_run_handshake(SSL_HANDSHAKE *, bool *)`
/// (a local symbol of `.symtab`, mangled): at its return the handshake
/// traffic secrets are readable, freed right after.
const BORING_HANDSHAKE_PREFIX: &str = "_ZN4bssl17ssl_run_handshakeE";
/// fd sources probed when present.
pub(crate) const OPTIONAL_SYMBOLS: [&str; 3] = ["SSL_set_fd", "SSL_set_rfd", "SSL_set_wfd"];

/// The system's libssl when neither a path nor a process is given.
const LIBSSL: &str = "libssl.so.3";
/// What a shared libssl's file name starts with (`libssl.so.1.1`, `.so.3`,
/// `.so.4`, BoringSSL's unversioned `libssl.so`; not NSS's `libssl3.so`).
const LIBSSL_PREFIX: &str = "libssl.so";

/// The bytes the entry probe reads from `SSL*` + 0 at every call
/// (`RC_SSL_HEAD` in openssl.bpf.c): every field it reads there must lie in them.
const RC_SSL_HEAD: u32 = 0x1c0;

/// The bytes of `s3` the BoringSSL entry probe reads at every call
/// (`RC_BORING_S3_HEAD` in openssl.bpf.c).
const RC_BORING_S3_HEAD: u32 = 0x1d8;

/// The struct offsets the BoringSSL probes read (bytes), generated
/// (`ebpf/tools/gen-boringssl-offsets.sh` → `boringssl_layout.rs`) with
/// offsetof against the headers of boring-sys 5.4.0's BoringSSL
/// (`BORINGSSL_API_VERSION` 44). Offsets are in `SSL` unless named `s3_`
/// (in `SSL3_STATE`), `hs_` (`SSL_HANDSHAKE`), `session_`, `cipher_`, `bio_`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BoringLayout {
    pub rbio: u32,
    pub wbio: u32,
    /// The `SSL3_STATE *`.
    pub s3: u32,
    /// The byte and bit of the `server` bit-field.
    pub server_byte: u32,
    pub server_mask: u32,
    pub s3_client_random: u32,
    /// `uint16_t version`.
    pub s3_version: u32,
    /// The `SSL_HANDSHAKE *`, NULL once the handshake is complete.
    pub s3_hs: u32,
    /// `InplaceVector<uint8_t, 48>`s: this side's write and read traffic
    /// secrets, the exporter secret.
    pub s3_write_secret: u32,
    pub s3_read_secret: u32,
    pub s3_exporter_secret: u32,
    pub s3_established_session: u32,
    /// The length byte in an `InplaceVector<uint8_t, 48>` (after the data).
    pub secret_len: u32,
    pub hs_ssl: u32,
    pub hs_client_hs_secret: u32,
    pub hs_server_hs_secret: u32,
    /// TLS 1.2's master secret (`InplaceVector<uint8_t, 48>`).
    pub session_secret: u32,
    pub session_cipher: u32,
    /// `uint16_t protocol_id` (e.g. 0x1301).
    pub cipher_protocol_id: u32,
    pub bio_method: u32,
    pub bio_num: u32,
    /// `bio_method_st.type` (the probes assume 0).
    pub bio_method_type: u32,
}

impl BoringLayout {
    /// The globals of openssl.bpf.c for this layout.
    fn globals(&self) -> Vec<(&'static str, Global)> {
        [
            ("layout_known", 1),
            ("flavor_boring", 1),
            ("rbio_off", self.rbio),
            ("wbio_off", self.wbio),
            ("s3_off", self.s3),
            ("b_server_byte", self.server_byte),
            ("b_server_mask", self.server_mask),
            ("b_client_random", self.s3_client_random),
            ("b_version", self.s3_version),
            ("b_hs", self.s3_hs),
            ("b_write_secret", self.s3_write_secret),
            ("b_read_secret", self.s3_read_secret),
            ("b_exporter_secret", self.s3_exporter_secret),
            ("b_established", self.s3_established_session),
            ("b_secret_len", self.secret_len),
            ("b_hs_ssl", self.hs_ssl),
            ("b_hs_client_secret", self.hs_client_hs_secret),
            ("b_hs_server_secret", self.hs_server_hs_secret),
            ("b_session_secret", self.session_secret),
            ("b_session_cipher", self.session_cipher),
            ("b_cipher_protocol_id", self.cipher_protocol_id),
            ("bio_method_off", self.bio_method),
            ("bio_num_off", self.bio_num),
        ]
        .map(|(n, v)| (n, Global::U32(v)))
        .into()
    }

    /// Whether the fields read from the heads of `SSL` and `s3` lie in the
    /// bytes the probe reads, and what the probes assume holds.
    fn fits_probes(&self) -> bool {
        let within =
            |head: u32| move |off: u32, len: u32| off.checked_add(len).is_some_and(|e| e <= head);
        let (ssl, s3) = (within(RC_SSL_HEAD), within(RC_BORING_S3_HEAD));
        let secret = 48 + 1;
        ssl(self.rbio, 8)
            && ssl(self.wbio, 8)
            && ssl(self.s3, 8)
            && ssl(self.server_byte, 1)
            && self.server_mask.count_ones() == 1
            && self.server_mask <= 0x80
            && s3(self.s3_client_random, 32)
            && s3(self.s3_version, 2)
            && s3(self.s3_hs, 8)
            && s3(self.s3_write_secret, secret)
            && s3(self.s3_read_secret, secret)
            && s3(self.s3_exporter_secret, secret)
            && s3(self.s3_established_session, 8)
            && self.secret_len == 48
            && self.bio_method_type == 0
    }
}

/// The struct offsets the probes read for one OpenSSL layout (bytes). The
/// values are generated (`ebpf/tools/gen-openssl-offsets.sh` →
/// `openssl_layouts.rs`) with offsetof against each release's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// 1: `SSL*` is an `SSL_CONNECTION` whose base header starts with `int type` (3.2+).
    pub type_check: u32,
    /// The `type` of a TLS/DTLS connection (`SSL_TYPE_SSL_CONNECTION`).
    pub conn_type: u32,
    pub version: u32,
    pub rbio: u32,
    pub wbio: u32,
    /// `statem.hand_state`.
    pub hand_state: u32,
    /// 1: `s3` is a pointer (1.1.1); 0: embedded (3.x, 4.x).
    pub s3_ptr: u32,
    pub s3: u32,
    /// `client_random` inside `s3`.
    pub client_random: u32,
    pub handshake_secret: u32,
    pub handshake_traffic_hash: u32,
    pub client_app_traffic_secret: u32,
    pub server_app_traffic_secret: u32,
    pub exporter_master_secret: u32,
    pub session: u32,
    pub session_master_key_length: u32,
    pub session_master_key: u32,
    pub session_cipher: u32,
    pub cipher_id: u32,
    pub bio_method: u32,
    pub bio_num: u32,
    /// `bio_method_st.type` (the probes assume 0).
    pub bio_method_type: u32,
}

impl Layout {
    /// The globals of openssl.bpf.c for this layout.
    fn globals(&self) -> Vec<(&'static str, Global)> {
        [
            ("layout_known", 1),
            ("type_check", self.type_check),
            ("conn_type", self.conn_type),
            ("version_off", self.version),
            ("rbio_off", self.rbio),
            ("wbio_off", self.wbio),
            ("hand_state_off", self.hand_state),
            ("s3_ptr", self.s3_ptr),
            ("s3_off", self.s3),
            ("client_random_off", self.client_random),
            ("handshake_secret_off", self.handshake_secret),
            ("handshake_traffic_hash_off", self.handshake_traffic_hash),
            (
                "client_app_traffic_secret_off",
                self.client_app_traffic_secret,
            ),
            (
                "server_app_traffic_secret_off",
                self.server_app_traffic_secret,
            ),
            ("exporter_master_secret_off", self.exporter_master_secret),
            ("session_off", self.session),
            (
                "session_master_key_length_off",
                self.session_master_key_length,
            ),
            ("session_master_key_off", self.session_master_key),
            ("session_cipher_off", self.session_cipher),
            ("cipher_id_off", self.cipher_id),
            ("bio_method_off", self.bio_method),
            ("bio_num_off", self.bio_num),
        ]
        .map(|(n, v)| (n, Global::U32(v)))
        .into()
    }

    /// Whether every field read from the head of `SSL*` lies in the
    /// `RC_SSL_HEAD` bytes the probe reads, and what the probes assume holds.
    fn fits_probes(&self) -> bool {
        let in_head = |off: u32, len: u32| off.checked_add(len).is_some_and(|e| e <= RC_SSL_HEAD);
        let random = if self.s3_ptr == 1 {
            in_head(self.s3, 8)
        } else {
            in_head(self.s3 + self.client_random, 32)
        };
        in_head(self.version, 4)
            && in_head(self.rbio, 8)
            && in_head(self.wbio, 8)
            && in_head(self.hand_state, 4)
            && random
            && self.bio_method_type == 0
    }
}

/// An OpenSSL release number: `3.5.5`, `1.1.1w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Release {
    major: u32,
    minor: u32,
    patch: u32,
    /// The 1.x letter (`b'w'`), 0 without one.
    letter: u8,
}

impl Release {
    /// Parses `X.Y.Z` with an optional lower-case letter (`1.1.1w`).
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('.');
        let num = |p: &str| {
            (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse().ok())
                .flatten()
        };
        let major = num(parts.next()?)?;
        let minor = num(parts.next()?)?;
        let last = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        let (digits, letter) = match last.as_bytes().last()? {
            b'a'..=b'z' => (&last[..last.len() - 1], last.as_bytes()[last.len() - 1]),
            _ => (last, 0),
        };
        Some(Self {
            major,
            minor,
            patch: num(digits)?,
            letter,
        })
    }

    /// `1.1`, `3.5`.
    fn major_minor(&self) -> String {
        format!("{}.{}", self.major, self.minor)
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if self.letter != 0 {
            write!(f, "{}", self.letter as char)?;
        }
        Ok(())
    }
}

/// Which releases share which layout: (family, first, last, the release
/// whose headers the layout was generated from). The families and their
/// boundaries are those of `shared/spec/OPENSSL-VERSIONS.md` (patch releases
/// do move fields: 3.2.2→3.2.3→3.2.4, 3.3.1→3.3.2→3.3.3, 3.4.0→3.4.1); a
/// release outside every range has no known layout.
const FAMILIES: &[(&str, &str, &str, &str)] = &[
    ("A", "1.1.1a", "1.1.1a", "1.1.1a"),
    ("B", "1.1.1b", "1.1.1c", "1.1.1b"),
    ("C", "1.1.1d", "1.1.1i", "1.1.1i"),
    ("D", "1.1.1j", "1.1.1w", "1.1.1w"),
    ("E", "3.0.0", "3.0.99", "3.0.8"),
    ("E", "3.1.0", "3.1.99", "3.1.4"),
    ("F", "3.2.0", "3.2.2", "3.2.1"),
    ("G", "3.2.3", "3.2.3", "3.3.2"),
    ("H", "3.2.4", "3.2.6", "3.4.1"),
    ("F", "3.3.0", "3.3.1", "3.2.1"),
    ("G", "3.3.2", "3.3.2", "3.3.2"),
    ("H", "3.3.3", "3.3.7", "3.4.1"),
    ("G", "3.4.0", "3.4.0", "3.3.2"),
    ("H", "3.4.1", "3.4.6", "3.4.1"),
    ("I", "3.5.0", "3.5.5", "3.5.5"),
    ("I", "3.6.0", "3.6.3", "3.6.3"),
    ("I", "4.0.0", "4.0.3", "4.0.3"),
];

/// The layout of `release`: its family and the generated offsets.
pub(crate) fn layout_of(release: Release) -> Option<(&'static str, &'static Layout)> {
    FAMILIES.iter().find_map(|(family, first, last, from)| {
        let (first, last) = (Release::parse(first)?, Release::parse(last)?);
        (first..=last).contains(&release).then_some(())?;
        let (_, layout) = LAYOUTS.iter().find(|(vs, _)| vs.contains(from))?;
        Some((*family, layout))
    })
}

/// The releases with a known layout, for messages.
fn known_releases() -> String {
    FAMILIES
        .iter()
        .map(|(_, first, last, _)| {
            if first == last {
                first.to_string()
            } else if last.ends_with(".99") {
                format!("{}.x", &first[..first.len() - 2])
            } else {
                format!("{first}-{last}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the ELF says the TLS library is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flavor {
    /// OpenSSL of this release.
    OpenSsl(Release),
    /// BoringSSL (it carries no release number).
    BoringSsl,
}

/// Exports only BoringSSL has.
const BORINGSSL_SYMBOLS: [&str; 2] = ["BORINGSSL_self_test", "SSL_CTX_set_custom_verify"];

/// The flavor and version in one ELF's bytes and symbols, if they say.
fn flavor_in(elf: &Elf) -> Option<Flavor> {
    if BORINGSSL_SYMBOLS.iter().any(|s| elf.symbol(s).is_some()) {
        return Some(Flavor::BoringSsl);
    }
    if let Some(v) = openssl_version(elf.bytes()).and_then(|v| Release::parse(&v)) {
        return Some(Flavor::OpenSsl(v));
    }
    memchr::memmem::find(elf.bytes(), b"BoringSSL").map(|_| Flavor::BoringSsl)
}

/// A libssl (or an executable with OpenSSL linked in) whose version was
/// read and whose symbols were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpensslTarget {
    libssl: PathBuf,
    /// The file the version was read from (libssl itself for 1.1.1 and
    /// static executables, else its libcrypto).
    version_file: PathBuf,
    flavor: Flavor,
    optional_symbols: Vec<&'static str>,
    /// Addresses given for a stripped file (`--ssl-offsets`).
    given: Vec<(String, u64)>,
    /// How the probed functions were found.
    route: Route,
}

/// How the functions to probe were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The ELF's symbols, and the addresses of `--ssl-offsets`.
    Symbols,
    /// A stripped OpenSSL 3.x/4.x executable: `ssl_read_internal` and
    /// `ssl_write_internal` (virtual addresses) found by their error-site
    /// strings and `.eh_frame` (see `stripped.rs`).
    ErrorSites {
        /// `ssl_read_internal`.
        read: u64,
        /// `ssl_write_internal`.
        write: u64,
    },
}

impl OpensslTarget {
    /// Finds libssl: `explicit` if given (a shared libssl or an executable
    /// with OpenSSL linked in); else the `libssl.so*` mapped by process
    /// `pid` (through `/proc/PID/root`, so containers work), or its
    /// executable if that exports `SSL_write`; else the system's
    /// `libssl.so.3` from `ldconfig -p`. Then reads the version and checks
    /// that `SSL_write`, `SSL_write_ex`, `SSL_read` and `SSL_read_ex` exist.
    pub fn discover(explicit: Option<&Path>, pid: Option<u32>) -> Result<Self, Error> {
        Self::discover_with(explicit, pid, &[])
    }

    /// [`Self::discover`] with function addresses for a stripped file
    /// (`--ssl-offsets SYMBOL=ADDR`, virtual addresses): only the functions
    /// the module probes may be named.
    pub fn discover_with(
        explicit: Option<&Path>,
        pid: Option<u32>,
        given: &[(String, u64)],
    ) -> Result<Self, Error> {
        let not_found = |searched: String| Error::LibraryNotFound {
            module: MODULE.name,
            library: LIBSSL_PREFIX.to_owned(),
            searched,
            flag: MODULE.path_flag,
        };
        let path = match (explicit, pid) {
            (Some(path), _) if !path.exists() => {
                return Err(Error::Unsupported {
                    module: MODULE.name,
                    path: path.to_path_buf(),
                    reason: format!("no such file (given with {})", MODULE.path_flag),
                });
            }
            (Some(path), _) => path.to_path_buf(),
            (None, Some(pid)) => match mapped_by(pid, LIBSSL_PREFIX)? {
                Some(lib) => lib,
                None => {
                    let exe = exe_of(pid)?;
                    // OpenSSL linked in: with symbols, or stripped (then its
                    // version text or 3.x's error-site strings are left).
                    let linked_in = Elf::read(MODULE.name, &exe).is_ok_and(|e| {
                        e.symbol("SSL_write").is_some()
                            || memchr::memmem::find(e.bytes(), b"ssl_write_internal\0").is_some()
                            || openssl_version(e.bytes()).is_some()
                    });
                    if !linked_in {
                        return Err(not_found(format!(
                            "/proc/{pid}/maps (the process maps no libssl.so*, and its executable has no OpenSSL linked in: no SSL_write symbol, no OpenSSL version text)"
                        )));
                    }
                    exe
                }
            },
            (None, None) => ldconfig_lookup(LIBSSL)?
                .ok_or_else(|| not_found(format!("`ldconfig -p` for {LIBSSL}")))?,
        };
        Self::inspect_with(path, given)
    }

    /// Checks a given libssl path (version and symbols).
    pub fn inspect(libssl: PathBuf) -> Result<Self, Error> {
        Self::inspect_with(libssl, &[])
    }

    fn inspect_with(libssl: PathBuf, given: &[(String, u64)]) -> Result<Self, Error> {
        if let Some((name, _)) = given.iter().find(|(n, _)| {
            !REQUIRED_SYMBOLS.contains(&n.as_str())
                && !OPTIONAL_SYMBOLS.contains(&n.as_str())
                && n != WRITE_EX2_PROBES[0].1
        }) {
            return Err(Error::Unsupported {
                module: MODULE.name,
                path: libssl,
                reason: format!(
                    "--ssl-offsets names {name}, which is not probed (only {}, {}, {})",
                    REQUIRED_SYMBOLS.join(", "),
                    WRITE_EX2_PROBES[0].1,
                    OPTIONAL_SYMBOLS.join(", ")
                ),
            });
        }
        let elf = Elf::read(MODULE.name, &libssl)?.with_symbols(given);
        // Stripped: none of the four functions has a symbol, and none was given.
        let stripped = given.is_empty() && REQUIRED_SYMBOLS.iter().all(|s| elf.symbol(s).is_none());
        if stripped {
            return Self::inspect_stripped(libssl, &elf);
        }
        let boring = || {
            BORING_SYMBOLS.iter().all(|s| elf.symbol(s).is_some())
                && flavor_in(&elf) == Some(Flavor::BoringSsl)
        };
        if let Some(symbol) = REQUIRED_SYMBOLS
            .into_iter()
            .find(|s| elf.symbol(s).is_none())
            .filter(|_| !boring())
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
        let links_libcrypto = elf.needed().iter().any(|n| n.starts_with("libcrypto"));
        let found = flavor_in(&elf).or_else(|| {
            // An executable with OpenSSL 3.x linked in whose version text
            // the linker left out.
            (!links_libcrypto)
                .then(|| provider_version(elf.bytes()))
                .flatten()
                .map(Flavor::OpenSsl)
        });
        let (flavor, version_file) = match found {
            Some(f) => (f, libssl.clone()),
            None => {
                // A shared 3.x/4.x libssl has no version text: its libcrypto has.
                let libcrypto = libcrypto_of(&elf)?;
                let crypto = Elf::read(MODULE.name, &libcrypto)?;
                let flavor = flavor_in(&crypto).ok_or_else(|| Error::VersionNotFound {
                    module: MODULE.name,
                    path: libcrypto.clone(),
                })?;
                (flavor, libcrypto)
            }
        };
        Ok(Self {
            libssl,
            version_file,
            flavor,
            optional_symbols,
            given: given.to_vec(),
            route: Route::Symbols,
        })
    }

    /// A file with none of the functions' symbols: a stripped executable
    /// with OpenSSL 3.x/4.x linked in is probed at the functions its error
    /// sites give away; anything else is refused, saying why.
    fn inspect_stripped(libssl: PathBuf, elf: &Elf) -> Result<Self, Error> {
        let refuse = |reason: String| Error::Unsupported {
            module: MODULE.name,
            path: libssl.clone(),
            reason,
        };
        const OFFSETS: &str = "give the addresses with --ssl-offsets SSL_write=ADDR,SSL_write_ex=ADDR,SSL_read=ADDR,SSL_read_ex=ADDR";
        let has_func_names = memchr::memmem::find(elf.bytes(), b"ssl_write_internal\0").is_some();
        let release = match flavor_in(elf)
            .or_else(|| provider_version(elf.bytes()).map(Flavor::OpenSsl))
        {
            Some(Flavor::OpenSsl(r)) => r,
            Some(Flavor::BoringSsl) | None if !has_func_names => {
                return Err(Error::ModuleSymbol {
                    module: MODULE.name,
                    symbol: REQUIRED_SYMBOLS[0].into(),
                    path: libssl,
                });
            }
            Some(Flavor::BoringSsl) | None => {
                return Err(refuse(format!(
                    "stripped (no SSL_write symbol), with OpenSSL 3.x's error-site strings but no OpenSSL version in it: \
                     ssl_write_internal's arguments depend on the release (3.3 added one); {OFFSETS}"
                )));
            }
        };
        if release.major < 3 {
            return Err(refuse(format!(
                "stripped OpenSSL {release} (no SSL_write symbol): {}.x names no functions in its error sites \
                 (it uses function codes), so they cannot be found without symbols; {OFFSETS}",
                release.major_minor()
            )));
        }
        let (first, last) = (
            Release::parse(ERROR_SITE_RELEASES.0).unwrap_or(release),
            Release::parse(ERROR_SITE_RELEASES.1).unwrap_or(release),
        );
        if !(first..=last).contains(&release) {
            return Err(refuse(format!(
                "stripped OpenSSL {release} (no SSL_write symbol): finding functions by their error-site strings \
                 is checked for OpenSSL 3.0 - 4.0 only; {OFFSETS}"
            )));
        }
        let sites = ErrorSites::read(elf.bytes()).map_err(|why| {
            refuse(format!(
                "stripped OpenSSL {release} (no SSL_write symbol): cannot find its functions by their error-site strings: {why}; {OFFSETS}"
            ))
        })?;
        let mut found = sites
            .functions(&[READ_INTERNAL, WRITE_INTERNAL])
            .into_iter();
        let mut next = |name: &str| {
            found.next().unwrap_or_else(|| Err("not searched".into())).map_err(|why| {
                refuse(format!(
                    "stripped OpenSSL {release} (no SSL_write symbol): finding {name} by its error-site string failed: {why}; {OFFSETS}"
                ))
            })
        };
        let read = next(READ_INTERNAL)?;
        let write = next(WRITE_INTERNAL)?;
        if read == write {
            return Err(refuse(format!(
                "stripped OpenSSL {release}: {READ_INTERNAL} and {WRITE_INTERNAL} were both found at {read:#x}; {OFFSETS}"
            )));
        }
        for (name, va) in [(READ_INTERNAL, read), (WRITE_INTERNAL, write)] {
            if elf.file_offset(va).is_none() {
                return Err(refuse(format!(
                    "stripped OpenSSL {release}: {name} was found at {va:#x}, in no loaded segment; {OFFSETS}"
                )));
            }
        }
        Ok(Self {
            libssl: libssl.clone(),
            version_file: libssl,
            flavor: Flavor::OpenSsl(release),
            optional_symbols: Vec::new(),
            given: Vec::new(),
            route: Route::ErrorSites { read, write },
        })
    }

    /// Every attach point: the four I/O calls (entry and return; BoringSSL:
    /// `SSL_write` and `SSL_read`, and its handshake's end where its symbol
    /// is there), `SSL_set_fd`/`_rfd`/`_wfd` where exported, and the socket
    /// syscalls; the layout's offsets as globals, or none (plaintext only)
    /// with a note.
    pub fn target(&self) -> Result<Target, Error> {
        let mut elf = Elf::read(MODULE.name, &self.libssl)?.with_symbols(&self.given);
        let boring = self.flavor == Flavor::BoringSsl;
        let mut attach = Vec::new();
        let mut notes = Vec::new();
        match self.route {
            Route::Symbols => {
                let ex2 = elf.symbol(WRITE_EX2_PROBES[0].1).is_some();
                let through_ex2 = ex2 && write_ex_enters_ex2(&elf);
                for (program, symbol, ret) in IO_PROBES {
                    let wanted = !boring || BORING_SYMBOLS.contains(&symbol);
                    if wanted && !(through_ex2 && symbol == "SSL_write_ex") {
                        attach.push(elf.uprobe(&MODULE, program, symbol, ret)?);
                    }
                }
                if ex2 {
                    for (program, symbol, ret) in WRITE_EX2_PROBES {
                        attach.push(elf.uprobe(&MODULE, program, symbol, ret)?);
                    }
                }
            }
            Route::ErrorSites { read, write } => {
                elf = elf.with_symbols(&[
                    (READ_INTERNAL.to_owned(), read),
                    (WRITE_INTERNAL.to_owned(), write),
                ]);
                let flags_arg = matches!(self.flavor, Flavor::OpenSsl(r) if r >= Release { major: 3, minor: 3, patch: 0, letter: 0 });
                let write_entry = if flags_arg {
                    "rc_ssl_write_ex2_entry"
                } else {
                    "rc_ssl_write_ex_entry"
                };
                for (program, symbol, ret) in [
                    (write_entry, WRITE_INTERNAL, false),
                    ("rc_ssl_write_ex_return", WRITE_INTERNAL, true),
                    ("rc_ssl_read_ex_entry", READ_INTERNAL, false),
                    ("rc_ssl_read_ex_return", READ_INTERNAL, true),
                ] {
                    attach.push(elf.uprobe(&MODULE, program, symbol, ret)?);
                }
                notes.push(format!(
                    "functions found by their error-site strings (stripped): {READ_INTERNAL} at {read:#x}, \
                     {WRITE_INTERNAL} at {write:#x} (function starts from .eh_frame); every SSL_read/SSL_write call goes through them"
                ));
            }
        }
        if boring {
            let handshake = elf.symbols_matching(|n| n.starts_with(BORING_HANDSHAKE_PREFIX));
            match handshake.as_slice() {
                [symbol] => {
                    for (program, ret) in [
                        ("rc_boring_handshake_entry", false),
                        ("rc_boring_handshake_return", true),
                    ] {
                        attach.push(elf.uprobe(&MODULE, program, symbol, ret)?);
                    }
                }
                found => notes.push(format!(
                    "BoringSSL in {}: {} bssl::ssl_run_handshake symbols (stripped?): no TLS 1.3 \
                     handshake traffic secrets in the key log (tshark needs them to decrypt TLS 1.3)",
                    self.libssl.display(),
                    if found.is_empty() { "no".to_owned() } else { found.len().to_string() }
                )),
            }
        }
        for symbol in &self.optional_symbols {
            attach.push(elf.uprobe(&MODULE, "rc_ssl_set_fd", symbol, false)?);
        }
        attach.push(Attach {
            program: "rc_sys_enter",
            point: AttachPoint::RawTracepoint("sys_enter"),
            required: true,
        });
        let layout = match &self.flavor {
            Flavor::BoringSsl => self.boring_layout().map(BoringLayout::globals),
            Flavor::OpenSsl(_) => self.layout().map(|(_, l)| l.globals()),
        };
        let globals = match layout {
            Ok(globals) => globals,
            Err(why) => {
                notes.push(format!(
                    "no key log: {why}; plaintext only, the fd from SSL_set_fd or the socket calls"
                ));
                Vec::new()
            }
        };
        Ok(Target {
            module: &MODULE,
            path: self.libssl.clone(),
            version: self.version(),
            attach,
            globals,
            notes,
        })
    }

    /// BoringSSL's offsets (those of boring-sys 5.4.0's BoringSSL: the
    /// probes check what they read), or why there are none.
    fn boring_layout(&self) -> Result<&'static BoringLayout, String> {
        if BORING_LAYOUT.fits_probes() {
            Ok(&BORING_LAYOUT)
        } else {
            Err(format!(
                "BoringSSL (recognised in {}): its layout does not fit the probes",
                self.version_file.display()
            ))
        }
    }

    /// The layout family and offsets, or why there are none.
    fn layout(&self) -> Result<(&'static str, &'static Layout), String> {
        let from = self.version_file.display();
        match self.flavor {
            Flavor::BoringSsl => Err(format!(
                "BoringSSL (recognised in {from}) has no OpenSSL layout"
            )),
            Flavor::OpenSsl(r) => match layout_of(r) {
                Some((family, layout)) if layout.fits_probes() => Ok((family, layout)),
                Some((family, _)) => Err(format!(
                    "OpenSSL {r} (from {from}): layout {family} does not fit the probes"
                )),
                None => Err(format!(
                    "OpenSSL {r} (from {from}) has no known struct layout (known: {})",
                    known_releases()
                )),
            },
        }
    }

    /// The libssl the probes attach to.
    pub fn libssl(&self) -> &Path {
        &self.libssl
    }

    /// The file whose version string was read (libssl itself or its libcrypto).
    pub fn version_file(&self) -> &Path {
        &self.version_file
    }

    /// What the library is.
    pub fn flavor(&self) -> &Flavor {
        &self.flavor
    }

    /// The version as shown at start-up and in `/status`: `3.0.22`,
    /// `1.1.1w`, `BoringSSL`.
    pub fn version(&self) -> String {
        match &self.flavor {
            Flavor::OpenSsl(r) => r.to_string(),
            Flavor::BoringSsl => "BoringSSL".into(),
        }
    }

    /// How the probed functions were found.
    pub fn route(&self) -> &Route {
        &self.route
    }

    /// The layout family (`D`, `E`, … of OPENSSL-VERSIONS.md), if known.
    pub fn layout_family(&self) -> Option<&'static str> {
        self.layout().ok().map(|(f, _)| f)
    }
}

/// Whether the ELF file at `path` defines `SSL_write` (an executable with
/// OpenSSL or a fork linked in, or a libssl); no other check. An executable
/// that only imports it from a shared libssl does not.
pub fn defines_ssl_write(path: &Path) -> bool {
    Elf::read(MODULE.name, path).is_ok_and(|e| e.symbol("SSL_write").is_some())
}

/// Whether every `SSL_write_ex` call enters `SSL_write_ex2`: its code
/// reaches a direct `jmp` or `call` to `SSL_write_ex2` before any
/// conditional branch or return (3.3+: `return SSL_write_ex2(s, buf, num,
/// 0, written)`).
fn write_ex_enters_ex2(elf: &Elf) -> bool {
    let (Some(ex), Some(ex2)) = (elf.symbol("SSL_write_ex"), elf.symbol("SSL_write_ex2")) else {
        return false;
    };
    let Some(code) = elf.bytes_at(ex, 64) else {
        return false;
    };
    for insn in Decoder::with_ip(64, code, ex, DecoderOptions::NONE) {
        let near = insn.op_count() == 1 && insn.op0_kind() == OpKind::NearBranch64;
        match insn.mnemonic() {
            Mnemonic::Jmp | Mnemonic::Call => return near && insn.near_branch_target() == ex2,
            Mnemonic::Ret | Mnemonic::Retf | Mnemonic::Int3 | Mnemonic::Ud2 | Mnemonic::INVALID => {
                return false;
            }
            // a conditional branch (jcc, loop, jrcxz)
            _ if near => return false,
            _ => {}
        }
    }
    false
}

/// The libcrypto a shared libssl needs: next to it, else `ldconfig -p`'s.
fn libcrypto_of(libssl: &Elf) -> Result<PathBuf, Error> {
    let needed = libssl
        .needed()
        .iter()
        .find(|n| n.starts_with("libcrypto"))
        .cloned()
        .ok_or_else(|| Error::VersionNotFound {
            module: MODULE.name,
            path: libssl.path().to_path_buf(),
        })?;
    find_next_to(libssl.path(), &needed)
        .or_else(|| ldconfig_lookup(&needed).ok().flatten())
        .ok_or_else(|| Error::LibcryptoNotFound {
            name: needed,
            libssl: libssl.path().to_path_buf(),
        })
}

fn find_next_to(libssl: &Path, name: &str) -> Option<PathBuf> {
    let candidate = libssl.parent()?.join(name);
    candidate.exists().then_some(candidate)
}

/// The release in the provider core's parameter table (`"openssl-version"`
/// then `OPENSSL_VERSION_STR`, adjacent in `.rodata`): in every OpenSSL 3.x
/// and 4.x program, also where the linker left the full version text out of
/// a static executable (it is only in `OpenSSL_version`'s object file).
pub(crate) fn provider_version(bytes: &[u8]) -> Option<Release> {
    memchr::memmem::find_iter(bytes, b"\0openssl-version\0").find_map(|at| {
        let rest = &bytes[at + b"\0openssl-version\0".len()..];
        let start = rest.iter().position(|&b| b != 0).filter(|&n| n < 16)?;
        let rest = &rest[start..];
        let text = &rest[..rest.iter().position(|&b| b == 0)?];
        let r = Release::parse(std::str::from_utf8(text).ok()?)?;
        (r.major >= 3).then_some(r)
    })
}

/// The first `OpenSSL X.Y.Z` (Z may carry a letter suffix) followed by one
/// or two spaces and a digit (the release date: `OpenSSL 3.5.5 27 Jan 2026`,
/// `OpenSSL 1.1.1w  11 Sep 2023`) in a binary. BoringSSL's `OpenSSL 1.1.1
/// (compatible; BoringSSL)` is no match.
pub(crate) fn openssl_version(bytes: &[u8]) -> Option<String> {
    memchr::memmem::find_iter(bytes, b"OpenSSL ").find_map(|at| {
        let rest = &bytes[at + b"OpenSSL ".len()..];
        let end = rest
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'.'))
            .unwrap_or(rest.len());
        let after = &rest[end..];
        let dated = match after {
            [b' ', b' ', d, ..] | [b' ', d, ..] => d.is_ascii_digit(),
            _ => false,
        };
        let candidate = std::str::from_utf8(&rest[..end]).ok()?;
        (dated && Release::parse(candidate).is_some()).then(|| candidate.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::super::stripped::tests::strip;
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn version_string_is_found() {
        let blob = b"\0OpenSSL \0xx OpenSSL 3.0.22 25 Aug 2026\0";
        assert_eq!(openssl_version(blob).as_deref(), Some("3.0.22"));
        assert_eq!(
            openssl_version(b"OpenSSL 1.1.1w  11 Sep 2023").as_deref(),
            Some("1.1.1w")
        );
        assert_eq!(openssl_version(b"OpenSSL library"), None);
        // BoringSSL's compatibility text is no OpenSSL release.
        assert_eq!(
            openssl_version(b"OpenSSL 1.1.1 (compatible; BoringSSL)\0"),
            None
        );
    }

    #[test]
    fn provider_version_is_found() {
        let blob = b"OSSL_provider_init\0openssl-version\x003.0.19\0provider-name\0";
        assert_eq!(provider_version(blob), Release::parse("3.0.19"));
        let padded = b"x\0openssl-version\0\0\0\x004.0.3\0";
        assert_eq!(provider_version(padded), Release::parse("4.0.3"));
        assert_eq!(
            provider_version(b"\0openssl-version\0provider-name\0"),
            None
        );
        assert_eq!(provider_version(b"\0openssl-version\x001.1.1\0"), None);
    }

    #[test]
    fn releases_parse_and_order() {
        let r = |s| Release::parse(s).unwrap_or_else(|| panic!("{s}"));
        assert_eq!(r("1.1.1w").to_string(), "1.1.1w");
        assert_eq!(r("3.10.2").to_string(), "3.10.2");
        assert!(r("1.1.1j") < r("1.1.1w") && r("1.1.1") < r("1.1.1a"));
        assert!(r("3.2.10") > r("3.2.9") && r("4.0.0") > r("3.6.3"));
        for bad in ["3.5", "3.5.5.1", "x.1.2", "3..1", "3.5.W"] {
            assert_eq!(Release::parse(bad), None, "{bad}");
        }
    }

    /// Every family's generated layout exists, fits the probes, and
    /// releases of one family share one layout.
    #[test]
    fn families_map_to_generated_layouts() {
        let mut by_family: Vec<(&str, &Layout)> = Vec::new();
        for (family, first, last, from) in FAMILIES {
            for v in [first, last, from] {
                assert!(Release::parse(v).is_some(), "{v}");
            }
            let (_, layout) = LAYOUTS
                .iter()
                .find(|(vs, _)| vs.contains(from))
                .unwrap_or_else(|| panic!("{from} is not generated"));
            assert!(layout.fits_probes(), "{from}: {layout:?}");
            match by_family.iter().find(|(f, _)| f == family) {
                Some((_, l)) => assert_eq!(*l, layout, "family {family} ({from})"),
                None => by_family.push((family, layout)),
            }
            let (f, l) = layout_of(Release::parse(first).unwrap()).unwrap();
            assert_eq!((f, l), (*family, layout));
            // A range's ends, where generated too, have its layout: the
            // family boundaries hold for the sources.
            for end in [first, last] {
                if let Some((_, l)) = LAYOUTS.iter().find(|(vs, _)| vs.contains(end)) {
                    assert_eq!(l, layout, "{end} in family {family}");
                }
            }
        }
        // Distinct families have distinct layouts.
        for (i, (f, l)) in by_family.iter().enumerate() {
            for (g, m) in &by_family[i + 1..] {
                assert_ne!(l, m, "families {f} and {g}");
            }
        }
        assert_eq!(layout_of(Release::parse("9.9.9").unwrap()), None);
        assert_eq!(layout_of(Release::parse("1.1.1").unwrap()), None);
        assert_eq!(layout_of(Release::parse("1.1.1i").unwrap()).unwrap().0, "C");
        assert_eq!(layout_of(Release::parse("3.0.22").unwrap()).unwrap().0, "E");
        assert_eq!(layout_of(Release::parse("3.2.3").unwrap()).unwrap().0, "G");
        assert_eq!(layout_of(Release::parse("3.4.1").unwrap()).unwrap().0, "H");
    }

    /// The generated 3.0 layout is the one measured on Debian's 3.0 build by
    /// disassembly and live reads (shared/spec/OPENSSL-3.0.md), and 3.5's has
    /// the offsets checked at run time there (OPENSSL-VERSIONS.md).
    #[test]
    fn generated_layouts_match_the_measured_ones() {
        let (_, e) = layout_of(Release::parse("3.0.22").unwrap()).unwrap();
        assert_eq!(
            (
                e.version,
                e.rbio,
                e.wbio,
                e.hand_state,
                e.s3 + e.client_random
            ),
            (0x0, 0x10, 0x18, 0x5c, 0x160)
        );
        assert_eq!(
            (
                e.handshake_secret,
                e.handshake_traffic_hash,
                e.client_app_traffic_secret,
                e.server_app_traffic_secret,
                e.exporter_master_secret,
                e.session
            ),
            (0x584, 0x704, 0x744, 0x784, 0x7c4, 0x918)
        );
        assert_eq!(
            (
                e.session_master_key_length,
                e.session_master_key,
                e.session_cipher,
                e.cipher_id,
                e.bio_method,
                e.bio_num
            ),
            (0x8, 0x50, 0x2f8, 0x18, 0x8, 0x38)
        );
        assert_eq!((e.type_check, e.s3_ptr), (0, 0));
        let (_, i) = layout_of(Release::parse("3.5.5").unwrap()).unwrap();
        assert_eq!(
            (i.type_check, i.version, i.rbio, i.wbio, i.hand_state, i.s3),
            (1, 0x48, 0x50, 0x58, 0xac, 0x160)
        );
        assert_eq!(
            (i.s3 + i.client_random, i.handshake_secret, i.session),
            (0x188, 0x5bc, 0x900)
        );
        let (_, d) = layout_of(Release::parse("1.1.1w").unwrap()).unwrap();
        assert_eq!(
            (d.s3_ptr, d.s3, d.client_random, d.session, d.session_cipher),
            (1, 0xa8, 0xb8, 0x510, 0x1f0)
        );
        assert_eq!((d.bio_method, d.bio_num), (0x0, 0x30));
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

    /// A shared library with BoringSSL's exports (and no `SSL_write_ex`)
    /// resolves to a BoringSSL target: `SSL_write`/`SSL_read` entry and
    /// return, no `_ex` probes, the boring layout's globals; the end of the
    /// handshake is probed where `bssl::ssl_run_handshake` is in the symbol
    /// table, else a note says the TLS 1.3 handshake secrets are missing.
    #[test]
    fn boringssl_is_recognised_with_its_own_probes() {
        let dir = std::env::temp_dir().join(format!("rcapture-boring-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = |name: &str, handshake: bool| {
            let (src, lib) = (
                dir.join(format!("{name}.c")),
                dir.join(name).join("libssl.so"),
            );
            std::fs::create_dir_all(lib.parent().unwrap()).unwrap();
            let mut c = "int SSL_write(void *s, const void *b, int n) { return n; }\n\
                         int SSL_read(void *s, void *b, int n) { return n; }\n\
                         int SSL_set_fd(void *s, int fd) { return 1; }\n\
                         int BORINGSSL_self_test(void) { return 1; }\n"
                .to_owned();
            if handshake {
                c += "__attribute__((visibility(\"hidden\"))) int run(void *hs, _Bool *e) \
                      __asm__(\"_ZN4bssl17ssl_run_handshakeEPNS_13SSL_HANDSHAKEEPb\");\n\
                      int run(void *hs, _Bool *e) { return hs != 0; }\n\
                      int SSL_do_handshake(void *s) { return run(s, 0); }\n";
            }
            std::fs::write(&src, c).unwrap();
            let st = std::process::Command::new("cc")
                .args(["-shared", "-fPIC", "-o"])
                .arg(&lib)
                .arg(&src)
                .status()
                .expect("cc");
            assert!(st.success());
            lib
        };
        let probes = |t: &Target| -> Vec<(&str, String, bool)> {
            t.attach
                .iter()
                .filter_map(|a| match &a.point {
                    AttachPoint::Uprobe { symbol, ret, .. } => {
                        Some((a.program, symbol.clone(), *ret))
                    }
                    _ => None,
                })
                .collect()
        };
        let (plain, with_hs) = (fake("plain", false), fake("hs", true));
        let t = OpensslTarget::inspect(plain.clone()).expect("BoringSSL is captured");
        assert_eq!(t.flavor(), &Flavor::BoringSsl);
        assert_eq!(t.version(), "BoringSSL");
        let target = t.target().unwrap();
        assert_eq!(target.version, "BoringSSL");
        assert_eq!(
            probes(&target),
            [
                ("rc_ssl_write_entry", "SSL_write", false),
                ("rc_ssl_write_return", "SSL_write", true),
                ("rc_ssl_read_entry", "SSL_read", false),
                ("rc_ssl_read_return", "SSL_read", true),
                ("rc_ssl_set_fd", "SSL_set_fd", false),
            ]
            .map(|(p, s, r)| (p, s.to_owned(), r))
        );
        assert!(
            target.attach.iter().any(|a| a.program == "rc_sys_enter"),
            "{:?}",
            target.attach
        );
        assert_eq!(global(&target, "flavor_boring"), Some(Global::U32(1)));
        assert_eq!(global(&target, "layout_known"), Some(Global::U32(1)));
        assert_eq!(global(&target, "s3_off"), Some(Global::U32(0x30)));
        let note = target.notes.join("\n");
        assert!(
            note.contains("no bssl::ssl_run_handshake symbols (stripped?)")
                && note.contains("no TLS 1.3 handshake traffic secrets"),
            "{note}"
        );

        let target = OpensslTarget::inspect(with_hs).unwrap().target().unwrap();
        std::fs::remove_dir_all(&dir).ok();
        assert!(target.notes.is_empty(), "{:?}", target.notes);
        let hs = "_ZN4bssl17ssl_run_handshakeEPNS_13SSL_HANDSHAKEEPb".to_owned();
        let p = probes(&target);
        assert!(
            p.contains(&("rc_boring_handshake_entry", hs.clone(), false))
                && p.contains(&("rc_boring_handshake_return", hs, true)),
            "{p:?}"
        );
        assert!(!p.iter().any(|(_, s, _)| s.ends_with("_ex")), "{p:?}");
    }

    /// The generated BoringSSL layout fits the probes and is the one
    /// measured on boring-sys 5.4.0's BoringSSL (OPENSSL-VERSIONS.md).
    #[test]
    fn boring_layout_matches_the_measured_one() {
        let b = BORING_LAYOUT;
        assert!(b.fits_probes(), "{b:?}");
        assert_eq!(
            (b.rbio, b.wbio, b.s3, b.server_byte, b.server_mask),
            (0x18, 0x20, 0x30, 0xa4, 0x1)
        );
        assert_eq!(
            (
                b.s3_client_random,
                b.s3_version,
                b.s3_hs,
                b.s3_write_secret,
                b.s3_read_secret,
                b.s3_exporter_secret,
                b.s3_established_session,
                b.secret_len
            ),
            (0x30, 0xd0, 0x118, 0x120, 0x151, 0x182, 0x1d0, 0x30)
        );
        assert_eq!(
            (
                b.hs_ssl,
                b.hs_client_hs_secret,
                b.hs_server_hs_secret,
                b.session_secret,
                b.session_cipher,
                b.cipher_protocol_id,
                b.bio_method,
                b.bio_num
            ),
            (0x0, 0x82, 0xb3, 0xa, 0xc8, 0x10, 0x8, 0x28)
        );
    }

    fn global(t: &Target, name: &str) -> Option<Global> {
        t.globals
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    }

    /// The supported system (Debian 12, `libssl3`) has an OpenSSL 3.0
    /// libssl.so.3 that discovery finds, its version read from libcrypto,
    /// with layout E: not finding it is a failure.
    #[test]
    fn system_libssl_is_openssl_30_with_its_layout() {
        let t = OpensslTarget::discover(None, None)
            .unwrap_or_else(|e| panic!("discovering the system's libssl.so.3: {e}"));
        assert!(t.version().starts_with("3.0."), "{t:?}");
        assert!(
            t.version_file()
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libcrypto.so.3")),
            "{t:?}"
        );
        assert_eq!(t.layout_family(), Some("E"));
        let target = t.target().unwrap();
        assert!(target.notes.is_empty(), "{:?}", target.notes);
        assert_eq!(global(&target, "layout_known"), Some(Global::U32(1)));
        assert_eq!(global(&target, "session_off"), Some(Global::U32(0x918)));
    }

    /// A copy of the system's libcrypto whose version text says 9.9.9: the
    /// target loads with no layout globals (plaintext only) and a note
    /// naming the version and the file.
    #[test]
    fn an_unknown_version_is_plaintext_only_with_a_note() {
        let sys = OpensslTarget::discover(None, None).expect("system libssl");
        let dir = std::env::temp_dir().join(format!("rcapture-ossl-999-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let libssl = dir.join("libssl.so.3");
        std::fs::copy(sys.libssl(), &libssl).unwrap();
        let mut crypto = std::fs::read(sys.version_file()).unwrap();
        let text = format!("OpenSSL {} ", sys.version());
        let at = memchr::memmem::find(&crypto, text.as_bytes()).expect("version text");
        let patched = format!("OpenSSL {:<w$} ", "9.9.9", w = sys.version().len());
        crypto[at..at + patched.len()].copy_from_slice(patched.as_bytes());
        // every occurrence, so no other copy of the text is found first
        while let Some(at) = memchr::memmem::find(&crypto, text.as_bytes()) {
            crypto[at..at + patched.len()].copy_from_slice(patched.as_bytes());
        }
        std::fs::write(dir.join("libcrypto.so.3"), &crypto).unwrap();
        let t = OpensslTarget::inspect(libssl.clone()).unwrap();
        let target = t.target();
        std::fs::remove_dir_all(&dir).ok();
        let target = target.unwrap();
        assert_eq!(t.version(), "9.9.9");
        assert_eq!(t.layout_family(), None);
        assert_eq!(
            global(&target, "layout_known"),
            None,
            "{:?}",
            target.globals
        );
        assert!(target.globals.is_empty());
        let note = target.notes.join("\n");
        assert!(
            note.contains("OpenSSL 9.9.9 (from ")
                && note.contains("libcrypto.so.3) has no known struct layout")
                && note.contains("plaintext only"),
            "{note}"
        );
    }

    /// `cc SRC -o DIR/NAME ARGS…`, `None` (printed) if the compiler or the
    /// libraries are missing.
    fn build(dir: &Path, name: &str, src: &str, args: &[&str]) -> Option<PathBuf> {
        let (c, exe) = (dir.join(format!("{name}.c")), dir.join(name));
        std::fs::write(&c, src).unwrap();
        let out = std::process::Command::new("cc")
            .arg("-o")
            .arg(&exe)
            .arg(&c)
            .args(args)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(exe),
            Ok(o) => {
                eprintln!(
                    "skipping: cc {name}.c {args:?}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                None
            }
            Err(e) => {
                eprintln!("skipping: no cc: {e}");
                None
            }
        }
    }

    /// A stripped executable with the system's OpenSSL 3.0 linked in
    /// (libssl-dev's static libraries): `ssl_read_internal` and
    /// `ssl_write_internal` are found by their error-site strings at the
    /// addresses of the unstripped build's symbols, and probed with the
    /// 4-argument write entry (3.0); with the symbols, SSL_write & co.
    #[test]
    fn a_stripped_static_openssl_3_is_found_by_error_sites() {
        let lib = Path::new("/usr/lib/x86_64-linux-gnu");
        if !lib.join("libssl.a").exists() {
            eprintln!("skipping: no {}/libssl.a (libssl-dev)", lib.display());
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let src = "#include <openssl/ssl.h>\n\
                   int main(int c, char **v) { SSL_CTX *x = SSL_CTX_new(TLS_method()); SSL *s = SSL_new(x);\n\
                   char b[8]; size_t n; if (c > 5) { SSL_read(s, b, 8); SSL_write(s, b, 8); SSL_read_ex(s, b, 8, &n); SSL_write_ex(s, b, 8, &n); }\n\
                   (void)v; return 0; }\n";
        let libssl = lib.join("libssl.a");
        let libcrypto = lib.join("libcrypto.a");
        let Some(exe) = build(
            dir.path(),
            "ossl_static",
            src,
            &[
                libssl.to_str().unwrap(),
                libcrypto.to_str().unwrap(),
                "-lpthread",
                "-ldl",
            ],
        ) else {
            return;
        };
        let unstripped = OpensslTarget::inspect(exe.clone()).unwrap();
        assert_eq!(unstripped.route(), &Route::Symbols);
        let symbols = Elf::read("test", &exe).unwrap();
        let want = Route::ErrorSites {
            read: symbols.symbol("ssl_read_internal").unwrap(),
            write: symbols.symbol("ssl_write_internal").unwrap(),
        };
        let stripped = strip(&exe);
        assert_eq!(
            Elf::read("test", &stripped).unwrap().symbol("SSL_write"),
            None
        );
        let t = OpensslTarget::inspect(stripped.clone()).unwrap();
        assert_eq!(t.route(), &want);
        assert!(t.version().starts_with("3.0."), "{t:?}");
        assert_eq!(t.layout_family(), Some("E"));
        let target = t.target().unwrap();
        let probes: Vec<(&str, &str)> = target
            .attach
            .iter()
            .filter_map(|a| match &a.point {
                AttachPoint::Uprobe { symbol, .. } => Some((a.program, symbol.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(
            probes,
            [
                ("rc_ssl_write_ex_entry", "ssl_write_internal"),
                ("rc_ssl_write_ex_return", "ssl_write_internal"),
                ("rc_ssl_read_ex_entry", "ssl_read_internal"),
                ("rc_ssl_read_ex_return", "ssl_read_internal"),
            ]
        );
        assert!(
            target.notes[0].starts_with(
                "functions found by their error-site strings (stripped): ssl_read_internal at 0x"
            ),
            "{:?}",
            target.notes
        );
    }

    /// The cached OpenSSL builds (`ebpf/tools/build-openssl.sh`; shared
    /// libraries, not stripped: their `.symtab` has the internal
    /// functions): the error-site search finds `ssl_read_internal` and
    /// `ssl_write_internal` at their symbols' addresses in each, i.e. they
    /// are not inlined and their strings are referenced from them only.
    #[test]
    fn error_sites_match_the_symbols_of_the_cached_builds() {
        let cache = std::env::var_os("RCAPTURE_OPENSSL_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/rcapture/openssl"));
        let mut checked = Vec::new();
        for v in ["3.2.1", "3.3.2", "3.4.1", "3.5.5", "4.0.3"] {
            let lib = cache
                .join(v)
                .join("lib")
                .join(format!("libssl.so.{}", &v[..1]));
            if !cache.join(v).join(".complete").exists() || !lib.exists() {
                eprintln!("skipping OpenSSL {v}: not built in {}", cache.display());
                continue;
            }
            let elf = Elf::read("test", &lib).unwrap();
            let sites = super::super::stripped::ErrorSites::read(elf.bytes()).unwrap();
            let found = sites.functions(&[READ_INTERNAL, WRITE_INTERNAL]);
            for (name, got) in [READ_INTERNAL, WRITE_INTERNAL].iter().zip(found) {
                let want = elf
                    .symbol(name)
                    .unwrap_or_else(|| panic!("{v}: no {name} in .symtab"));
                assert_eq!(got, Ok(want), "OpenSSL {v}: {name}");
            }
            // 3.3+: SSL_write_ex jumps to SSL_write_ex2, which is probed instead.
            let probed: Vec<(&str, String)> = OpensslTarget::inspect(lib.clone())
                .unwrap()
                .target()
                .unwrap()
                .attach
                .into_iter()
                .filter_map(|a| match a.point {
                    AttachPoint::Uprobe { symbol, .. } => Some((a.program, symbol)),
                    _ => None,
                })
                .filter(|(_, s)| s.starts_with("SSL_write_ex"))
                .collect();
            let want: Vec<(&str, String)> = if v == "3.2.1" {
                assert!(!write_ex_enters_ex2(&elf));
                vec![
                    ("rc_ssl_write_ex_entry", "SSL_write_ex".into()),
                    ("rc_ssl_write_ex_return", "SSL_write_ex".into()),
                ]
            } else {
                assert!(write_ex_enters_ex2(&elf), "OpenSSL {v}");
                vec![
                    ("rc_ssl_write_ex2_entry", "SSL_write_ex2".into()),
                    ("rc_ssl_write_ex_return", "SSL_write_ex2".into()),
                ]
            };
            assert_eq!(probed, want, "OpenSSL {v}");
            checked.push(v);
        }
        eprintln!("checked: {checked:?}");
    }

    /// Stripped executables the error-site route does not apply to are
    /// refused, saying why and pointing at --ssl-offsets.
    #[test]
    fn stripped_executables_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let refusal = |name: &str, src: &str| -> Option<String> {
            let exe = build(dir.path(), name, src, &["-O2"])?;
            let err = OpensslTarget::inspect(strip(&exe)).expect_err("refused");
            Some(err.to_string())
        };
        // 1.1.1: a version text, no function names in its error sites.
        if let Some(e) = refusal(
            "v111",
            "#include <stdio.h>\nint main(void) { puts(\"OpenSSL 1.1.1w  11 Sep 2023\"); return 0; }\n",
        ) {
            assert!(
                e.contains("stripped OpenSSL 1.1.1w (no SSL_write symbol): 1.1.x names no functions in its error sites")
                    && e.contains("--ssl-offsets SSL_write=ADDR,"),
                "{e}"
            );
        }
        // 3.x error-site strings but no version.
        let sites = "#include <stdio.h>\n\
            __attribute__((noinline)) void raise(const char *f) { puts(f); }\n\
            __attribute__((noinline)) int ssl_read_internal(int n) { if (n < 0) raise(__func__); return n; }\n\
            __attribute__((noinline)) int ssl_write_internal(int n) { if (n < 0) raise(__func__); return n; }\n\
            __attribute__((noinline)) int other(int n) { if (n > 3) raise(\"ssl_write_internal\"); return n; }\n";
        if let Some(e) = refusal(
            "noversion",
            &format!(
                "{sites}int main(int c, char **v) {{ (void)v; return ssl_read_internal(c) + ssl_write_internal(-c) + other(c); }}\n"
            ),
        ) {
            assert!(
                e.contains("with OpenSSL 3.x's error-site strings but no OpenSSL version in it")
                    && e.contains("--ssl-offsets"),
                "{e}"
            );
        }
        // A version, and a string referenced from two functions.
        if let Some(e) = refusal(
            "ambiguous",
            &format!(
                "{sites}int main(int c, char **v) {{ (void)v; puts(\"openssl-version\\0003.0.19\"); return ssl_read_internal(c) + ssl_write_internal(-c) + other(c); }}\n"
            ),
        ) {
            assert!(
                e.contains("stripped OpenSSL 3.0.19 (no SSL_write symbol): finding ssl_write_internal by its error-site string failed: the string \"ssl_write_internal\" is referenced from 2 functions (")
                    && e.contains("): ambiguous; give the addresses with --ssl-offsets"),
                "{e}"
            );
        }
        // Not OpenSSL at all: the missing symbol, as before.
        if let Some(e) = refusal("plain", "int main(void) { return 0; }\n") {
            assert!(e.starts_with("symbol SSL_write not found in "), "{e}");
        }
    }
}
