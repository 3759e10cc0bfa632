//! The `postgres` module (PostgreSQL's server): every query text the
//! backends parse, `pg_parse_query` (shared/spec/MODULES.md §5).

use std::fs;
use std::path::{Path, PathBuf};

use rcapture_core::records::RecordKind;

use super::{Elf, find_executable, version_after};
use crate::Error;
use crate::module::{ModuleDesc, Target, TargetRequest};

/// The PostgreSQL server module.
pub static MODULE: ModuleDesc = ModuleDesc {
    name: "postgres",
    about: "PostgreSQL server queries (simple protocol and extended-protocol Parse): pg_parse_query",
    object: include_bytes!("../../obj/postgres.bpf.o"),
    kinds: &[RecordKind::PgQuery],
    routes: &["/postgres"],
    path_flag: "--postgres",
    skipped: &[],
    resolve,
};

/// Debian installs each major version under /usr/lib/postgresql/N.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// Exported, and called for every simple query and every Parse message
/// (exec_simple_query, eCapture's hook, is static: not in `.dynsym`).
const PARSE_SYMBOL: &str = "pg_parse_query";

fn resolve(req: &TargetRequest) -> Result<Target, Error> {
    let path = find_executable(&MODULE, "PostgreSQL server", &default_paths(), req)?;
    let elf = Elf::read(MODULE.name, &path)?;
    let version = version_after(elf.bytes(), b"postgres (PostgreSQL) ")
        .unwrap_or_else(|| "unknown: no `postgres (PostgreSQL) X.Y` string".into());
    if elf.symbol(PARSE_SYMBOL).is_none() {
        return Err(Error::UnknownLayout {
            module: MODULE.name,
            path,
            version,
            what: format!("symbol {PARSE_SYMBOL} not found (it must be exported)"),
        });
    }
    let attach = vec![elf.uprobe(&MODULE, "rc_pg_parse_query", PARSE_SYMBOL, false)?];
    let notes = req.pid.and_then(postmaster_note).into_iter().collect();
    Ok(Target {
        module: &MODULE,
        path,
        version,
        attach,
        globals: Vec::new(),
        notes,
    })
}

/// The newest `/usr/lib/postgresql/N/bin/postgres` first.
fn default_paths() -> Vec<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(DEBIAN_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((n, e.path().join("bin/postgres")))
        })
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    let mut paths: Vec<PathBuf> = versions.into_iter().map(|(_, p)| p).collect();
    paths.push(PathBuf::from("/usr/lib/postgresql/15/bin/postgres"));
    paths.dedup();
    paths
}

/// A backend sets its process title (`postgres: USER DB … idle`); the
/// postmaster keeps its command line. A --pid of the postmaster captures
/// nothing: the queries run in the backends it forks, one per connection.
fn postmaster_note(pid: u32) -> Option<String> {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if cmdline.starts_with(b"postgres: ") {
        return None;
    }
    let uid = process_uid(Path::new(&format!("/proc/{pid}/status")))?;
    Some(format!(
        "pid {pid} is the postmaster: queries run in the backend processes it forks \
         (one per connection), which --pid {pid} leaves out; to capture every \
         backend, filter by the server's user instead: --uid {uid}"
    ))
}

fn process_uid(status: &Path) -> Option<u32> {
    fs::read_to_string(status)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The supported system (Debian 12, postgresql-15) resolves.
    #[test]
    fn debian_postgres_resolves() {
        let Some(path) = default_paths().into_iter().find(|p| p.exists()) else {
            assert!(
                std::env::var_os("RCAPTURE_REQUIRE_BPF").is_none(),
                "no PostgreSQL server under {DEBIAN_ROOT} (postgresql not installed)"
            );
            eprintln!("skipping: no PostgreSQL server under {DEBIAN_ROOT}");
            return;
        };
        let t = resolve(&TargetRequest {
            path: Some(path),
            pid: None,
            symbols: Vec::new(),
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(t.version.starts_with(|c: char| c.is_ascii_digit()), "{t:?}");
        assert_eq!(t.attach.len(), 1);
    }

    #[test]
    fn another_binary_is_refused() {
        let err = resolve(&TargetRequest {
            path: Some(PathBuf::from("/usr/bin/bash")),
            pid: None,
            symbols: Vec::new(),
        })
        .expect_err("bash has no pg_parse_query");
        let msg = err.to_string();
        assert!(
            msg.contains("/usr/bin/bash")
                && msg.contains("version unknown")
                && msg.contains("pg_parse_query not found"),
            "{msg}"
        );
    }
}
