//! The README's commands work as written: every `rcapture ...` and
//! `cargo run --release -- ...` line of a ```sh block of README.md (and of
//! the READMEs it links) is parsed by the real CLI parser, then run for real
//! (as root): started with substitutions that keep it local and safe, it
//! must print `rcapture: ready`, and SIGINT must end it with status 0.
//!
//! Substitutions (the flags stay, only their values change):
//! - `cargo run --release --` → the built binary (same program, no rebuild);
//! - no `--listen` → `--listen 127.0.0.1:0` (the default port may be busy);
//! - `--pid N` → a live Python process that has libssl.so.3 and
//!   libgnutls.so.30 mapped (for `rcapture gotls`: a live Go process,
//!   the test program of tests/support/gotls);
//! - `--libssl PATH` that does not exist here → that process's libssl.so.3;
//! - `--elfpath PATH` that does not exist here → that Go program;
//! - `--forward URL` → the same path and query on a local collector that
//!   answers every request 200;
//! - `--keylogfile`, `--event-file`, `--pcapfile` → files of the same name in a temp dir.

#[path = "../../src/cli.rs"]
#[allow(dead_code)]
mod cli;

use crate::testutil::{Proc, TempDir, bpf_available, stderr_lines};
use clap::Parser;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Lines of the README that are shell commands but not rcapture runs, and
/// why this test does not run them.
const NOT_RUN: &[(&str, &str)] = &[(
    ".ci/run",
    "the whole CI (installs packages, runs every test): this test is part of it",
)];

/// One command line found in a README.
#[derive(Debug, Clone)]
struct Found {
    file: PathBuf,
    line: usize,
    text: String,
    argv: Vec<String>,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and the README.md files it links to.
fn readmes() -> Vec<PathBuf> {
    let main = root().join("README.md");
    let text = std::fs::read_to_string(&main).expect("README.md");
    let mut v = vec![main];
    for (i, _) in text.match_indices("](") {
        let rest = &text[i + 2..];
        let Some(end) = rest.find(')') else { continue };
        let target = rest[..end].split('#').next().unwrap_or("");
        if target.ends_with("README.md") && !target.contains("://") {
            let p = root().join(target);
            if p.is_file() && !v.contains(&p) {
                v.push(p);
            }
        }
    }
    v
}

/// Splits one shell command line into words: single and double quotes,
/// backslash escapes, and a `#` comment at the start of a word.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => cur.extend(chars.next()),
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.extend(chars.next());
            }
            '#' if !in_word => break,
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Every rcapture command of the ```sh blocks of `file` (continuation
/// lines joined), as `rcapture ARGS...`; other commands are checked
/// against [`NOT_RUN`] or ignored when they are not rcapture's.
fn commands(file: &Path) -> Vec<Found> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut pending: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with("```") {
            in_sh = !in_sh && t == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let (start, mut joined) = pending.take().unwrap_or((n + 1, String::new()));
        if let Some(head) = line.strip_suffix('\\') {
            joined.push_str(head);
            joined.push(' ');
            pending = Some((start, joined));
            continue;
        }
        joined.push_str(line);
        let words = shell_words(&joined);
        let argv: Vec<String> = match words.first().map(String::as_str) {
            Some("rcapture") => words[1..].to_vec(),
            Some("cargo")
                if words.get(1..4) == Some(&["run".into(), "--release".into(), "--".into()]) =>
            {
                words[4..].to_vec()
            }
            _ => continue,
        };
        out.push(Found {
            file: file.to_path_buf(),
            line: start,
            text: joined.trim().to_string(),
            argv,
        });
    }
    out
}

fn all_commands() -> Vec<Found> {
    readmes().iter().flat_map(|f| commands(f)).collect()
}

/// The value following `flag` in `argv`, if any.
fn value_of<'a>(argv: &'a [String], flag: &str) -> Option<&'a str> {
    argv.iter()
        .position(|a| a == flag)
        .and_then(|i| argv.get(i + 1))
        .map(String::as_str)
}

#[test]
fn readme_commands_parse() {
    let found = all_commands();
    assert!(
        found.len() >= 8,
        "expected the README's rcapture commands, found {found:#?}"
    );
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for (cmd, why) in NOT_RUN {
        assert!(
            readme.contains(cmd),
            "{cmd} is listed as not run ({why}) but is no longer in README.md"
        );
    }
    let mut errors = Vec::new();
    for f in &found {
        let argv = std::iter::once("rcapture".to_string()).chain(f.argv.iter().cloned());
        if let Err(e) = cli::Cli::try_parse_from(argv) {
            errors.push(format!(
                "{}:{}: `{}`:\n{e}",
                f.file.display(),
                f.line,
                f.text
            ));
        }
    }
    assert!(
        errors.is_empty(),
        "README commands the CLI refuses:\n{}",
        errors.join("\n")
    );
}

/// A collector that answers every HTTP request `200 OK` (keep-alive).
fn collector() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().map_while(Result::ok) {
            std::thread::spawn(move || answer_all(s));
        }
    });
    port
}

fn answer_all(s: std::net::TcpStream) {
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err()
            || w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .is_err()
        {
            return;
        }
    }
}

/// A Python process with libssl.so.3 (its ssl module) and libgnutls.so.30
/// (loaded with ctypes) mapped, and the libssl's path.
fn ssl_process() -> (Proc, PathBuf) {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import ctypes, ssl, sys; ctypes.CDLL('libgnutls.so.30'); print(flush=True); sys.stdin.read()",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", child.id())).unwrap();
    let lib = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libssl.so.3"))
        .expect("python3's ssl module maps libssl.so.3")
        .into();
    (Proc(child), lib)
}

/// A Go process (the gotls test program, waiting on stdin) and its binary.
fn go_process() -> (Proc, PathBuf) {
    let exe = rcapture_testsupport::gobuild::gotls_test_prog(
        rcapture_testsupport::gobuild::GoVariant::Plain,
    );
    let mut child = Command::new(&exe)
        .args(["-wait", "-addr", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the Go test program");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    (Proc(child), exe)
}

/// The processes and files the substitutions point to.
struct Local<'a> {
    dir: &'a TempDir,
    pid: u32,
    libssl: &'a Path,
    go_pid: u32,
    go_exe: &'a Path,
    port: u16,
}

/// The command with its values made local (see the module docs).
fn substitute(argv: &[String], l: &Local<'_>) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len() + 2);
    let go = argv.first().is_some_and(|a| a == "gotls");
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        out.push(a.clone());
        let v = match a.as_str() {
            "--pid" | "--keylogfile" | "--event-file" | "--pcapfile" | "--forward" | "--libssl"
            | "--elfpath" => it.next(),
            _ => None,
        };
        let Some(v) = v else { continue };
        let port = l.port;
        out.push(match a.as_str() {
            "--pid" if go => l.go_pid.to_string(),
            "--pid" => l.pid.to_string(),
            "--libssl" | "--elfpath" if Path::new(v).exists() => v.clone(),
            "--libssl" => l.libssl.display().to_string(),
            "--elfpath" => l.go_exe.display().to_string(),
            "--forward" => {
                let rest = v.split_once("://").map_or(v.as_str(), |(_, r)| r);
                let path = rest.find('/').map_or("/", |i| &rest[i..]);
                format!("http://127.0.0.1:{port}{path}")
            }
            _ => {
                let name = Path::new(v).file_name().expect("a file name");
                l.dir.path(&name.to_string_lossy()).display().to_string()
            }
        });
    }
    if value_of(argv, "--listen").is_none() {
        out.extend(["--listen".into(), "127.0.0.1:0".into()]);
    }
    out
}

/// Starts `argv`, waits for `rcapture: ready` (or its exit), sends SIGINT
/// and waits for exit 0. `Err` says what went wrong, with stderr.
fn short_run(argv: &[String]) -> Result<(), String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rcapture"))
        .args(argv)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let rx = stderr_lines(&mut child);
    let mut child = Proc(child);
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => {
                let ready = l == "rcapture: ready";
                lines.push(l);
                if ready {
                    break;
                }
            }
            Err(_) => {
                let st = child.0.try_wait().ok().flatten();
                return Err(format!(
                    "no `rcapture: ready` (exit: {st:?}); stderr:\n  {}",
                    lines.join("\n  ")
                ));
            }
        }
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) };
    let st = child.0.wait().map_err(|e| format!("wait: {e}"))?;
    lines.extend(rx.iter());
    if st.success() {
        Ok(())
    } else {
        Err(format!(
            "exited with {st} after SIGINT; stderr:\n  {}",
            lines.join("\n  ")
        ))
    }
}

#[test]
fn readme_commands_run() {
    let Some(_bpf) = bpf_available("readme_commands_run") else {
        return;
    };
    let dir = TempDir::new("readme");
    let (python, libssl) = ssl_process();
    let (go, go_exe) = go_process();
    let local = Local {
        dir: &dir,
        pid: python.0.id(),
        libssl: &libssl,
        go_pid: go.0.id(),
        go_exe: &go_exe,
        port: collector(),
    };
    let mut failed = Vec::new();
    let found = all_commands();
    for f in &found {
        let argv = substitute(&f.argv, &local);
        let t = Instant::now();
        match short_run(&argv) {
            Ok(()) => eprintln!(
                "ran {}:{} in {:.1} s: rcapture {}",
                f.file.display(),
                f.line,
                t.elapsed().as_secs_f64(),
                argv.join(" ")
            ),
            Err(e) => failed.push(format!(
                "{}:{}: `{}`\n  run as: rcapture {}\n  {e}",
                f.file.display(),
                f.line,
                f.text,
                argv.join(" ")
            )),
        }
    }
    assert!(
        failed.is_empty(),
        "README commands that do not run:\n{}",
        failed.join("\n")
    );
}

/// fuzz/README.md names every target of fuzz/fuzz_targets, and each target
/// is a `[[bin]]` of fuzz/Cargo.toml (the list cannot drift again).
#[test]
fn fuzz_readme_lists_every_target() {
    let fuzz = root().join("fuzz");
    let readme = std::fs::read_to_string(fuzz.join("README.md")).unwrap();
    let cargo = std::fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
    let mut targets: Vec<String> = std::fs::read_dir(fuzz.join("fuzz_targets"))
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            Some(name.strip_suffix(".rs")?.to_string())
        })
        .collect();
    targets.sort();
    assert!(targets.len() >= 10, "{targets:?}");
    let bins = cargo.matches("[[bin]]").count();
    assert_eq!(bins, targets.len(), "fuzz/Cargo.toml bins vs {targets:?}");
    for t in &targets {
        assert!(
            readme.contains(&format!("`{t}`")),
            "fuzz/README.md does not name the target `{t}`"
        );
        assert!(
            cargo.contains(&format!("name = \"{t}\"")),
            "fuzz/Cargo.toml has no [[bin]] {t}"
        );
    }
}
