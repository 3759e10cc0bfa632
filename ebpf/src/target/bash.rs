//! The `bash` module: command lines typed into interactive bash (readline
//! linked into the binary, as Debian's `/usr/bin/bash` 5.2), their exit
//! status, and the shell's exit or exec.

use std::path::{Path, PathBuf};

use rcapture_core::records::RecordKind;

use super::{Elf, exe_of, version_after};
use crate::Error;
use crate::module::{Global, ModuleDesc, Target, TargetRequest};

/// The bash module.
pub static MODULE: ModuleDesc = ModuleDesc {
    name: "bash",
    about: "command lines of interactive bash shells, with their exit status",
    object: include_bytes!("../../obj/bash.bpf.o"),
    kinds: &[RecordKind::Bash],
    routes: &["/bash"],
    path_flag: "--bashpath",
    skipped: &[],
    resolve,
};

/// The bash probed without --bashpath or --pid.
pub const DEFAULT_BASH: &str = "/usr/bin/bash";

/// (program, function, return probe): every one must exist.
const PROBES: [(&str, &str, bool); 4] = [
    ("rc_bash_readline_entry", "readline", false),
    ("rc_bash_readline_return", "readline", true),
    ("rc_bash_exit_shell", "exit_shell", false),
    ("rc_bash_exec_builtin", "exec_builtin", false),
];

/// (object global, bash symbol, required): the addresses the programs read.
const GLOBALS: [(&str, &str, bool); 4] = [
    ("readline_addr", "readline", true),
    (
        "last_command_exit_value_addr",
        "last_command_exit_value",
        true,
    ),
    (
        "current_command_line_count_addr",
        "current_command_line_count",
        false,
    ),
    (
        "current_readline_prompt_addr",
        "current_readline_prompt",
        false,
    ),
];

fn resolve(req: &TargetRequest) -> Result<Target, Error> {
    let path = match (&req.path, req.pid) {
        (Some(path), _) => path.clone(),
        (None, Some(pid)) => exe_of(pid)?,
        (None, None) => PathBuf::from(DEFAULT_BASH),
    };
    inspect(&path)
}

/// Reads `path` and resolves the probes and globals, or names the missing symbol.
pub(crate) fn inspect(path: &Path) -> Result<Target, Error> {
    let elf = Elf::read(MODULE.name, path)?;
    if elf.symbol("readline").is_none() {
        let reason = if elf.symbol("zleentry").is_some() {
            Some(
                "symbol readline not found: this is zsh (it reads lines with zle), \
                  and the bash module probes bash only"
                    .to_owned(),
            )
        } else {
            elf.needed()
                .iter()
                .find(|n| n.starts_with("libreadline"))
                .map(|lib| {
                    format!(
                        "symbol readline not found: this bash uses the shared {lib}, which the \
                         bash module does not probe (it needs readline linked into bash)"
                    )
                })
        };
        if let Some(reason) = reason {
            return Err(Error::Unsupported {
                module: MODULE.name,
                path: path.to_path_buf(),
                reason,
            });
        }
    }
    let mut attach = Vec::with_capacity(PROBES.len());
    for (program, symbol, ret) in PROBES {
        attach.push(elf.uprobe(&MODULE, program, symbol, ret)?);
    }
    let mut globals = Vec::with_capacity(GLOBALS.len());
    let mut notes = Vec::new();
    for (global, symbol, required) in GLOBALS {
        match elf.symbol(symbol) {
            Some(vaddr) => globals.push((global, Global::U64(vaddr))),
            None if required => {
                return Err(Error::ModuleSymbol {
                    module: MODULE.name,
                    symbol: symbol.into(),
                    path: path.to_path_buf(),
                });
            }
            None => notes.push(format!(
                "{symbol} not in {}: {}",
                path.display(),
                match symbol {
                    "current_command_line_count" => {
                        "every line is taken as a whole command (a multi-line command's status may be sent early)"
                    }
                    _ => "lines read by commands (read -e) are taken as command lines",
                }
            )),
        }
    }
    let version =
        version_after(elf.bytes(), b"@(#)Bash version ").ok_or_else(|| Error::VersionNotFound {
            module: MODULE.name,
            path: path.to_path_buf(),
        })?;
    Ok(Target {
        module: &MODULE,
        path: path.to_path_buf(),
        version,
        attach,
        globals,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::AttachPoint;

    /// Debian's bash resolves: four probes at the functions' file offsets,
    /// the four globals at their `.dynsym` values, its version.
    #[test]
    fn system_bash_resolves() {
        let t = resolve(&TargetRequest::default())
            .unwrap_or_else(|e| panic!("resolving {DEFAULT_BASH}: {e}"));
        assert_eq!(t.path, Path::new(DEFAULT_BASH));
        assert!(t.version.starts_with('5'), "{}", t.version);
        assert_eq!(t.attach.len(), 4);
        assert_eq!(t.globals.len(), 4, "{:?}", t.notes);
        let elf = Elf::read("test", &t.path).expect("bash parses");
        for a in &t.attach {
            let AttachPoint::Uprobe { symbol, offset, .. } = &a.point else {
                panic!("{a:?}")
            };
            let vaddr = elf.symbol(symbol).expect("symbol");
            assert_eq!(Some(*offset), elf.file_offset(vaddr), "{symbol}");
        }
        let readline = t.globals.iter().find(|g| g.0 == "readline_addr");
        assert_eq!(
            readline.map(|g| g.1.clone()),
            elf.symbol("readline").map(Global::U64)
        );
    }

    /// A binary that is not bash is refused, naming the file and the symbol.
    #[test]
    fn a_binary_without_readline_is_refused() {
        let err = inspect(Path::new("/usr/bin/ls")).expect_err("ls is not bash");
        let msg = err.to_string();
        assert!(
            msg.contains("readline") && msg.contains("/usr/bin/ls") && msg.contains("bash"),
            "{msg}"
        );
    }

    /// zsh is named as such (it has no readline).
    #[test]
    fn zsh_is_refused_as_zsh() {
        let zsh = Path::new("/usr/bin/zsh");
        if !zsh.exists() {
            eprintln!("skipping test - no {}", zsh.display());
            return;
        }
        let msg = inspect(zsh).expect_err("zsh is not bash").to_string();
        assert!(
            msg.contains("this is zsh") && msg.contains("/usr/bin/zsh"),
            "{msg}"
        );
    }

    /// --pid probes the executable of that process.
    #[test]
    fn pid_gives_its_executable() {
        let me = std::process::id();
        let Err(err) = resolve(&TargetRequest {
            path: None,
            pid: Some(me),
            symbols: Vec::new(),
        }) else {
            panic!("the test binary is not bash");
        };
        let exe = std::env::current_exe().expect("current_exe");
        let name = exe
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(err.to_string().contains(&name), "{err}");
    }
}
