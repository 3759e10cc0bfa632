//! The web viewer's browser tests: node scripts in `tests/web/` that drive
//! Debian's chromium (headless, kept off the network) with playwright-core
//! from npm (`npm ci` there; no browser download). Without chromium, node or
//! the npm package the tests are skipped with a printed reason, unless
//! `RCAPTURE_REQUIRE_BPF=1` (CI), where that is a failure.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The browser used (Debian's package).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// `tests/web/` of the workspace: the scripts and their `package.json`.
pub fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/web")
}

/// Where the tests leave their screenshots and exports:
/// `target/web-artifacts/` (or under `CARGO_TARGET_DIR`).
pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("web-artifacts");
    std::fs::create_dir_all(&dir).expect("creating target/web-artifacts");
    dir
}

/// Whether the browser tests can run; otherwise prints why (or panics
/// under `RCAPTURE_REQUIRE_BPF=1`).
pub fn available(test: &str) -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let missing = if !Path::new(CHROMIUM).exists() {
        Some("Debian's chromium (apt-get install chromium)")
    } else if !node {
        Some("node (apt-get install nodejs npm)")
    } else if !web_dir().join("node_modules/playwright-core").exists() {
        Some("playwright-core (npm ci in tests/web)")
    } else {
        None
    };
    let Some(what) = missing else { return true };
    if std::env::var("RCAPTURE_REQUIRE_BPF").as_deref() == Ok("1") {
        panic!("{test}: needs {what} and RCAPTURE_REQUIRE_BPF=1 forbids skipping");
    }
    eprintln!("skipping test {test} - needs {what}");
    false
}

/// A running node script of `tests/web/`, given its configuration as one
/// JSON argument; killed at drop. It prints lines such as `ready` while it
/// runs, and one JSON report as its last line.
pub struct Script {
    child: Child,
    lines: mpsc::Receiver<String>,
    name: String,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script").field("name", &self.name).finish()
    }
}

impl Script {
    pub fn start(name: &str, cfg: &Value) -> Self {
        let mut child = Command::new("node")
            .arg(web_dir().join(name))
            .arg(cfg.to_string())
            .env("CHROMIUM", CHROMIUM)
            .current_dir(web_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting node {name}: {e}"));
        let out = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            name: name.to_string(),
        }
    }

    /// Waits for the line `want`; panics with the script's report if it
    /// ends (or says something else) first.
    pub fn wait_for(&mut self, want: &str, timeout: Duration) {
        match self.lines.recv_timeout(timeout) {
            Ok(l) if l == want => {}
            Ok(l) => panic!("{} said {l} before {want:?}", self.name),
            Err(e) => panic!("{}: no {want:?} line ({e})", self.name),
        }
    }

    /// The report (the JSON line the script ends with), asserting that it
    /// says ok.
    pub fn report(mut self, timeout: Duration) -> Value {
        let line = self
            .lines
            .recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("{}: no report ({e})", self.name));
        let status = self.child.wait().expect("waiting for node");
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{}: report {line:?} is not JSON: {e}", self.name));
        assert!(
            status.success() && v["ok"] == true,
            "{} failed ({status}): {}\nsteps done: {}",
            self.name,
            v["error"].as_str().unwrap_or("?"),
            v["steps"]
        );
        v
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
