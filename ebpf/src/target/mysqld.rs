//! The `mysqld` module (MariaDB's server, `mariadbd`): the queries
//! `dispatch_command` receives, with its return value and the statement's
//! SQL error number (shared/spec/MODULES.md §4).

use std::path::PathBuf;

use rcapture_core::records::RecordKind;

use super::{Elf, find_executable};
use crate::Error;
use crate::module::{Global, ModuleDesc, Target, TargetRequest};

/// The MariaDB/MySQL server module.
pub static MODULE: ModuleDesc = ModuleDesc {
    name: "mysqld",
    about: "MariaDB server (mariadbd) queries: COM_QUERY and COM_STMT_PREPARE SQL, return value, SQL error number",
    object: include_bytes!("../../obj/mysqld.bpf.o"),
    kinds: &[RecordKind::MysqlQuery],
    routes: &["/mysqld"],
    path_flag: "--mysqld",
    skipped: &[],
    resolve,
};

/// Where the server is looked for without --mysqld or --pid.
const DEFAULT_PATHS: [&str; 2] = ["/usr/sbin/mariadbd", "/usr/sbin/mysqld"];

/// `dispatch_command(enum_server_command, THD *, char *, unsigned int, …)`
/// as MariaDB 10.5 and later mangle it (10.5 has two bools after the
/// length, 10.6+ one): the probes read the first four arguments.
const DISPATCH_PREFIX: &str = "_Z16dispatch_command19enum_server_commandP3THDPcj";

/// The exported accessor whose code gives the Diagnostics_area offsets.
const ERROR_ACCESSOR: &str = "thd_get_error_number";

fn resolve(req: &TargetRequest) -> Result<Target, Error> {
    let defaults: Vec<PathBuf> = DEFAULT_PATHS.iter().map(PathBuf::from).collect();
    let path = find_executable(&MODULE, "MariaDB server", &defaults, req)?;
    let elf = Elf::read(MODULE.name, &path)?;
    let version =
        mariadb_version(elf.bytes()).unwrap_or_else(|| "unknown: no MariaDB version string".into());
    let dispatch = dispatch_symbol(&elf).map_err(|what| Error::UnknownLayout {
        module: MODULE.name,
        path: path.clone(),
        version: version.clone(),
        what,
    })?;
    let attach = vec![
        elf.uprobe(&MODULE, "rc_mysql_dispatch_entry", &dispatch, false)?,
        elf.uprobe(&MODULE, "rc_mysql_dispatch_return", &dispatch, true)?,
    ];
    let mut globals = Vec::new();
    let mut notes = Vec::new();
    let accessor = elf
        .symbol(ERROR_ACCESSOR)
        .and_then(|va| elf.bytes_at(va, 16));
    match accessor.and_then(error_offsets) {
        Some((da, errno)) => {
            globals.push(("thd_da_off", Global::U32(da)));
            globals.push(("da_errno_off", Global::U32(errno)));
        }
        None => notes.push(format!(
            "{ERROR_ACCESSOR} {} in {}: queries are captured without their SQL error number",
            if accessor.is_some() {
                "has unknown code"
            } else {
                "is not exported"
            },
            path.display()
        )),
    }
    Ok(Target {
        module: &MODULE,
        path,
        version,
        attach,
        globals,
        notes,
    })
}

/// The one `dispatch_command` with the known argument layout, or why not.
fn dispatch_symbol(elf: &Elf) -> Result<String, String> {
    // eCapture's search: any mangled name containing dispatch_command.
    let found = elf.symbols_matching(|n| {
        n.find("dispatch_command")
            .is_some_and(|at| at > 0 && n.len() > at + "dispatch_command".len())
    });
    let known: Vec<&str> = found
        .iter()
        .copied()
        .filter(|n| n.starts_with(DISPATCH_PREFIX))
        .collect();
    match (known.as_slice(), found.is_empty()) {
        ([one], _) => Ok((*one).to_owned()),
        ([], true) => {
            Err("symbol dispatch_command not found (no exported name contains it)".into())
        }
        ([], false) => Err(format!(
            "dispatch_command has an argument layout the probes do not know: {} \
             (known: {DISPATCH_PREFIX}…, MariaDB 10.5 and later)",
            found.join(", ")
        )),
        (many, _) => Err(format!(
            "several dispatch_command symbols: {}",
            many.join(", ")
        )),
    }
}

/// `10.11.19-MariaDB`: a NUL-delimited `X.Y.Z-MariaDB` string.
pub(crate) fn mariadb_version(bytes: &[u8]) -> Option<String> {
    const SUFFIX: &[u8] = b"-MariaDB\0";
    memchr::memmem::find_iter(bytes, SUFFIX).find_map(|at| {
        let start = bytes[..at]
            .iter()
            .rposition(|b| !(b.is_ascii_digit() || *b == b'.'))
            .map_or(0, |p| p + 1);
        let number = std::str::from_utf8(&bytes[start..at]).ok()?;
        let delimited = start == 0 || bytes[start - 1] == 0;
        let parts: Vec<&str> = number.split('.').collect();
        (delimited
            && parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
        .then(|| format!("{number}-MariaDB"))
    })
}

/// The Diagnostics_area offsets from `thd_get_error_number`'s first two
/// instructions: `mov disp(%rdi),%rax` (THD → its Diagnostics_area *) then
/// `mov disp(%rax),%eax` (→ sql_errno), each with an 8- or 32-bit
/// displacement.
pub(crate) fn error_offsets(code: &[u8]) -> Option<(u32, u32)> {
    // mov disp(%rdi),%rax: REX.W 8b, ModRM 0x47 (disp8) or 0x87 (disp32).
    let (da, rest) = match code {
        [0x48, 0x8b, 0x47, d, rest @ ..] => (u32::from(*d), rest),
        [0x48, 0x8b, 0x87, a, b, c, d, rest @ ..] => (
            u32::try_from(i32::from_le_bytes([*a, *b, *c, *d])).ok()?,
            rest,
        ),
        _ => return None,
    };
    // mov disp(%rax),%eax: 8b, ModRM 0x40 (disp8) or 0x80 (disp32).
    let errno = match rest {
        [0x8b, 0x40, d, ..] => u32::from(*d),
        [0x8b, 0x80, a, b, c, d, ..] => u32::try_from(i32::from_le_bytes([*a, *b, *c, *d])).ok()?,
        _ => return None,
    };
    (da != 0).then_some((da, errno))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn accessor_code_is_decoded() {
        // Debian's mariadbd 10.11.19 (objdump of thd_get_error_number).
        let code = [0x48, 0x8b, 0x87, 0xe0, 0x62, 0, 0, 0x8b, 0x40, 0x08, 0xc3];
        assert_eq!(error_offsets(&code), Some((0x62e0, 8)));
        let short = [0x48, 0x8b, 0x47, 0x10, 0x8b, 0x80, 0x00, 0x01, 0, 0];
        assert_eq!(error_offsets(&short), Some((0x10, 0x100)));
        // Anything else (e.g. a function prologue) is not guessed at.
        assert_eq!(error_offsets(&[0x55, 0x48, 0x89, 0xe5]), None);
        assert_eq!(error_offsets(&[0x48, 0x8b, 0x87, 0xe0, 0x62]), None);
    }

    #[test]
    fn version_string_is_found() {
        let blob = b"x\0MariaDB 10.11.19\0 10.2.2-MariaDB is old\0\x0010.11.19-MariaDB\0";
        assert_eq!(mariadb_version(blob).as_deref(), Some("10.11.19-MariaDB"));
        assert_eq!(mariadb_version(b"\0a10.1-MariaDB\0"), None);
    }

    /// The supported system (Debian 12, mariadb-server-core 10.11) resolves:
    /// its dispatch_command and accessor are found and decoded.
    #[test]
    fn debian_mariadbd_resolves() {
        let path = Path::new(DEFAULT_PATHS[0]);
        if !path.exists() {
            assert!(
                std::env::var_os("RCAPTURE_REQUIRE_BPF").is_none(),
                "{} missing (mariadb-server-core not installed)",
                path.display()
            );
            eprintln!("skipping: no {}", path.display());
            return;
        }
        let t = resolve(&TargetRequest {
            path: Some(path.to_path_buf()),
            pid: None,
            symbols: Vec::new(),
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(t.version.ends_with("-MariaDB"), "{t:?}");
        assert_eq!(t.attach.len(), 2);
        assert!(
            t.globals
                .iter()
                .any(|(n, v)| *n == "thd_da_off" && *v != Global::U32(0)),
            "{t:?}"
        );
        assert!(t.notes.is_empty(), "{:?}", t.notes);
    }

    /// A binary without dispatch_command (here: the postgres server or
    /// bash) is refused with an error naming the file, its version and
    /// the symbol.
    #[test]
    fn another_binary_is_refused() {
        let path = Path::new("/usr/bin/bash");
        let err = resolve(&TargetRequest {
            path: Some(path.to_path_buf()),
            pid: None,
            symbols: Vec::new(),
        })
        .expect_err("bash has no dispatch_command");
        let msg = err.to_string();
        assert!(
            msg.contains("/usr/bin/bash")
                && msg.contains("version unknown")
                && msg.contains("dispatch_command not found"),
            "{msg}"
        );
    }
}
