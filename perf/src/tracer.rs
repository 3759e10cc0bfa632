//! The tracers run as child processes — `rcapture tls`, `bpftrace`, BCC's
//! `sslsniff` — and the guard that stops each of them on every path.

use crate::sys;
use anyhow::{Context, bail};
use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A child process that is interrupted, then killed, when dropped.
#[derive(Debug)]
pub struct Spawned {
    name: String,
    child: Child,
}

/// How a child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// Its exit status, if it exited by itself within the grace time.
    pub status: Option<ExitStatus>,
    /// True if it had to be killed (SIGKILL).
    pub killed: bool,
}

impl Spawned {
    /// Spawns `cmd` (killed with the harness if the harness dies).
    pub fn spawn(name: &str, mut cmd: Command) -> anyhow::Result<Self> {
        sys::kill_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
        })
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child itself (pipes).
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The exit status if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGINT, then up to `grace` for it to exit, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) -> Stopped {
        if let Some(status) = self.exited() {
            return Stopped {
                status: Some(status),
                killed: false,
            };
        }
        if let Err(e) = sys::signal(self.pid(), libc::SIGINT) {
            eprintln!("perf: cannot interrupt {}: {e}", self.name);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Stopped {
                    status: Some(status),
                    killed: false,
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "perf: {} did not exit {:?} after SIGINT: killing it",
            self.name, grace
        );
        if let Err(e) = self.child.kill() {
            eprintln!("perf: cannot kill {}: {e}", self.name);
        }
        let _ = self.child.wait();
        Stopped {
            status: None,
            killed: true,
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.stop(Duration::from_secs(5));
        }
    }
}

/// The external tracers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcTracer {
    /// `rcapture tls`, text to a file.
    Rcapture,
    /// `bpftrace` printing every payload.
    Bpftrace,
    /// BCC `sslsniff`.
    Sslsniff,
}

/// Where a tracer's programs and files are.
#[derive(Debug, Clone)]
pub struct TracerPaths {
    /// `rcapture` binary.
    pub rcapture: PathBuf,
    /// `bpftrace` binary.
    pub bpftrace: PathBuf,
    /// BCC sslsniff script (from `peers-setup.sh`).
    pub sslsniff: PathBuf,
    /// The libssl every tracer hooks.
    pub libssl: PathBuf,
    /// Directory for output files.
    pub work_dir: PathBuf,
}

/// A running external tracer with its output files.
#[derive(Debug)]
pub struct RunningTracer {
    /// Which tracer.
    pub kind: ProcTracer,
    /// The process.
    pub proc: Spawned,
    /// Its stdout (the captured events).
    pub out: PathBuf,
    /// Its stderr (readiness, ledgers, loss messages).
    pub err: PathBuf,
}

/// What a tracer delivered, read from its files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Data events of the load process found in its output.
    pub events: u64,
    /// Losses it reported itself, if it reports them.
    pub reported_lost: Option<u64>,
    /// Its own summary line, if any (rcapture's ledger).
    pub summary: Option<String>,
}

impl ProcTracer {
    /// Its name in the results.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rcapture => "rcapture",
            Self::Bpftrace => "bpftrace",
            Self::Sslsniff => "sslsniff",
        }
    }

    /// Starts it for load process `pid` and waits until its probes are attached.
    pub fn start(
        self,
        paths: &TracerPaths,
        pid: u32,
        ready_within: Duration,
    ) -> anyhow::Result<RunningTracer> {
        let out = paths.work_dir.join(format!("{}.out", self.name()));
        let err = paths.work_dir.join(format!("{}.err", self.name()));
        let mut cmd = match self {
            Self::Rcapture => {
                // System-wide, as deployed; events of the load process are counted.
                let mut c = Command::new(&paths.rcapture);
                c.arg("tls").arg("--libssl").arg(&paths.libssl);
                c
            }
            Self::Bpftrace => {
                let script = paths.work_dir.join("payloads.bt");
                std::fs::write(&script, bpftrace_script(&paths.libssl, pid))
                    .with_context(|| format!("writing {}", script.display()))?;
                let mut c = Command::new(&paths.bpftrace);
                // str() copies at most BPFTRACE_STRLEN bytes (0.17: at most 200).
                c.env("BPFTRACE_STRLEN", "200").arg(&script);
                c
            }
            Self::Sslsniff => {
                let mut c = Command::new(&paths.sslsniff);
                c.env("PYTHONUNBUFFERED", "1")
                    .args(["--no-gnutls", "--no-nss", "-p"])
                    .arg(pid.to_string());
                c
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(File::create(&out).with_context(|| format!("creating {}", out.display()))?)
            .stderr(File::create(&err).with_context(|| format!("creating {}", err.display()))?);
        let mut proc = Spawned::spawn(self.name(), cmd)?;
        let (marker_file, marker) = match self {
            Self::Rcapture => (&err, "rcapture: ready"),
            Self::Bpftrace => (&out, "perf: bpftrace ready"),
            Self::Sslsniff => (&out, "FUNC "),
        };
        let deadline = Instant::now() + ready_within;
        loop {
            if file_contains(marker_file, marker) {
                break;
            }
            if let Some(status) = proc.exited() {
                bail!(
                    "{} exited ({status}) before it was ready: {}",
                    self.name(),
                    tail(&err, 800)
                );
            }
            if Instant::now() > deadline {
                proc.stop(Duration::from_secs(2));
                bail!(
                    "{} not ready within {ready_within:?}: {}",
                    self.name(),
                    tail(&err, 800)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Attachment is reported just before the last probe is live in some tools.
        std::thread::sleep(Duration::from_millis(200));
        Ok(RunningTracer {
            kind: self,
            proc,
            out,
            err,
        })
    }
}

impl RunningTracer {
    /// Waits until its output stops growing (peers print asynchronously), at most `cap`.
    pub fn wait_quiet(&mut self, quiet: Duration, cap: Duration) -> Duration {
        let start = Instant::now();
        let mut last = file_len(&self.out);
        let mut since = Instant::now();
        while start.elapsed() < cap && self.proc.exited().is_none() {
            std::thread::sleep(Duration::from_millis(100));
            let now = file_len(&self.out);
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                break;
            }
        }
        start.elapsed()
    }

    /// Stops it (SIGINT, grace, SIGKILL) and counts the events of `pid` it delivered.
    ///
    /// sslsniff gets at most 5 s: its Python loop swallows the KeyboardInterrupt
    /// raised inside a perf-buffer callback, so while busy it never exits on SIGINT.
    pub fn finish(mut self, pid: u32, grace: Duration) -> anyhow::Result<(Delivered, Stopped)> {
        let grace = match self.kind {
            ProcTracer::Sslsniff => grace.min(Duration::from_secs(5)),
            _ => grace,
        };
        let stopped = self.proc.stop(grace);
        let delivered = match self.kind {
            ProcTracer::Rcapture => count_rcapture(&self.out, &self.err, pid)?,
            ProcTracer::Bpftrace => count_bpftrace(&self.out)?,
            ProcTracer::Sslsniff => count_sslsniff(&self.out, &self.err, pid)?,
        };
        Ok((delivered, stopped))
    }
}

/// The bpftrace program: every SSL_write payload at entry, every SSL_read
/// payload at return (buffer saved at entry), of process `pid` only.
///
/// bpftrace 0.17 cannot compare an `int32` cast (LLVM assertion) nor pass a
/// variable length to `str()` at a uretprobe (verifier: "R2 min value is
/// negative"), so the read side masks the return value and prints the
/// buffer up to its first NUL (the load's payload has none).
pub fn bpftrace_script(libssl: &Path, pid: u32) -> String {
    let lib = libssl.display();
    format!(
        r#"BEGIN {{ printf("perf: bpftrace ready\n"); }}
uprobe:{lib}:SSL_write /pid == {pid}/ {{ printf("W %d %s\n", arg2, str(arg1, arg2)); }}
uprobe:{lib}:SSL_read /pid == {pid}/ {{ @buf[tid] = arg1; }}
uretprobe:{lib}:SSL_read /pid == {pid}/ {{
    $r = retval & 0xffffffff;
    if ($r > 0 && $r < 0x80000000) {{ printf("R %d %s\n", $r, str(@buf[tid])); }}
    delete(@buf[tid]);
}}
END {{ clear(@buf); }}
"#
    )
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn file_contains(p: &Path, needle: &str) -> bool {
    std::fs::read(p).is_ok_and(|b| memchr_find(&b, needle.as_bytes()))
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The last `n` bytes of a file, as text.
pub fn tail(p: &Path, n: usize) -> String {
    let b = std::fs::read(p).unwrap_or_default();
    let from = b.len().saturating_sub(n);
    String::from_utf8_lossy(&b[from..]).trim().to_owned()
}

fn lines(p: &Path) -> anyhow::Result<impl Iterator<Item = Vec<u8>>> {
    let f = File::open(p).with_context(|| format!("opening {}", p.display()))?;
    Ok(BufReader::with_capacity(1 << 20, f)
        .split(b'\n')
        .map_while(Result::ok))
}

/// Header lines `… tls pid=PID … send|recv N bytes` of rcapture's text output,
/// and its exit ledger.
fn count_rcapture(out: &Path, err: &Path, pid: u32) -> anyhow::Result<Delivered> {
    let tag = format!(" pid={pid} ");
    let mut events = 0;
    for l in lines(out)? {
        if l.first().is_some_and(u8::is_ascii_digit)
            && l.ends_with(b" bytes")
            && memchr_find(&l, tag.as_bytes())
            && (memchr_find(&l, b" send ") || memchr_find(&l, b" recv "))
        {
            events += 1;
        }
    }
    let summary = std::fs::read_to_string(err)
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("rcapture: stopped by signal"))
        .map(str::to_owned);
    let reported_lost = summary
        .as_deref()
        .and_then(|s| ledger_number(s, "lost in kernel"));
    Ok(Delivered {
        events,
        reported_lost,
        summary,
    })
}

/// The number before `label` in a `…: N events, M written, L lost in kernel …` ledger.
pub fn ledger_number(ledger: &str, label: &str) -> Option<u64> {
    let at = ledger.find(label)?;
    ledger[..at].split_whitespace().last()?.parse().ok()
}

fn count_bpftrace(out: &Path) -> anyhow::Result<Delivered> {
    let mut events = 0;
    let mut lost = 0;
    for l in lines(out)? {
        if l.starts_with(b"W ") || l.starts_with(b"R ") {
            events += 1;
        } else if l.starts_with(b"Lost ") {
            // "Lost N events"
            lost += String::from_utf8_lossy(&l)
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(Delivered {
        events,
        reported_lost: Some(lost),
        summary: None,
    })
}

fn count_sslsniff(out: &Path, err: &Path, pid: u32) -> anyhow::Result<Delivered> {
    let pid = pid.to_string();
    let mut events = 0;
    for l in lines(out)? {
        if l.starts_with(b"READ/RECV") || l.starts_with(b"WRITE/SEND") {
            let l = String::from_utf8_lossy(&l);
            if l.split_whitespace().nth(3) == Some(pid.as_str()) {
                events += 1;
            }
        }
    }
    // BCC: "Possibly lost N samples" per perf buffer overflow.
    let lost = std::fs::read_to_string(err)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("Possibly lost "))
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Ok(Delivered {
        events,
        reported_lost: Some(lost),
        summary: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_numbers_are_read() {
        let l = "rcapture: stopped by signal 2: 400004 events, 400004 written, 0 lost in kernel \
                 ring buffers, 0 output drops, 0 calls truncated (0 bytes), 0 incomplete calls";
        assert_eq!(ledger_number(l, "events"), Some(400_004));
        assert_eq!(ledger_number(l, "written"), Some(400_004));
        assert_eq!(ledger_number(l, "lost in kernel"), Some(0));
        assert_eq!(ledger_number(l, "nothing"), None);
    }
}
