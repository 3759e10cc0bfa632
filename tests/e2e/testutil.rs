//! Helpers: privilege checks, a temp dir, TLS servers, the rcapture process.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Serialises the BPF tests of this binary: every running rcapture sees every
/// process's TLS traffic, so parallel tests would see each other's (1 MiB)
/// events and timings.
static BPF_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A guard holding the BPF test lock when BPF tests can run; otherwise
/// prints why and returns `None` (or panics when `RCAPTURE_REQUIRE_BPF=1`).
pub fn bpf_available(test: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return Some(BPF_TESTS.lock().unwrap_or_else(|e| e.into_inner()));
    }
    if std::env::var("RCAPTURE_REQUIRE_BPF").as_deref() == Ok("1") {
        panic!("{test}: needs root for BPF and RCAPTURE_REQUIRE_BPF=1 forbids skipping");
    }
    eprintln!("skipping test {test} - needs root for BPF");
    None
}

/// A directory removed at drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "rcapture-e2e-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// A self-signed certificate and key in `dir`.
pub fn make_cert(dir: &TempDir) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.path("cert.pem"), dir.path("key.pem"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("running openssl req");
    assert!(st.success());
    (cert, key)
}

pub fn support(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(name)
}

/// A child killed at drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// The Python TLS HTTP server; returns it and its port.
pub fn python_server(dir: &TempDir, tls12: bool) -> (Proc, u16) {
    let (cert, key) = make_cert(dir);
    let mut cmd = Command::new("python3");
    cmd.arg(support("tls_server.py")).arg(&cert).arg(&key);
    if tls12 {
        cmd.arg("--tls12");
    }
    spawn_with_port(&mut cmd, "python3 TLS server")
}

/// Starts a helper that prints its port as its first stdout line; returns
/// it (killed at drop) and the port.
pub fn spawn_with_port(cmd: &mut Command, what: &str) -> (Proc, u16) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{what} printed {line:?}"));
    (Proc(child), port)
}

/// `program` (tshark or dumpcap) writing the loopback traffic of TCP `port`
/// to `file`, returned once it captures.
pub fn capture_loopback(program: &str, port: u16, file: &Path) -> Child {
    let mut cap = Command::new(program)
        .args(["-i", "lo", "-f", &format!("tcp port {port}"), "-w"])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    let mut lines = BufReader::new(cap.stderr.take().unwrap()).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("Capturing on") => break,
            Some(Ok(_)) => continue,
            other => panic!("{program} did not start capturing: {other:?}"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    // dumpcap announces the interface a moment before its filter is live.
    std::thread::sleep(Duration::from_secs(1));
    cap
}

/// A running `rcapture` whose stderr said `rcapture: ready`.
pub struct Rcapture {
    child: Proc,
    /// Reads stdout as it comes (like a terminal); `None`: nobody reads it
    /// until [`Rcapture::stop`].
    stdout_reader: Option<std::thread::JoinHandle<String>>,
    stderr_lines: mpsc::Receiver<String>,
    pub stderr: Vec<String>,
    /// The API/stream address announced on stderr (`--listen 127.0.0.1:0` by default).
    pub addr: Option<String>,
}

/// How [`Rcapture::stop_like_ecaptureq`] ended.
pub struct EcaptureqStop {
    /// It exited before the SIGKILL.
    pub exited_by_itself: bool,
    /// ... with status 0.
    pub success: bool,
    /// From SIGINT to its exit (or to the SIGKILL).
    pub took: Duration,
    pub stderr: Vec<String>,
}

impl Rcapture {
    /// Starts rcapture with its stdout read continuously.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with(args, &[], true)
    }

    /// [`Rcapture::start`] with these environment variables set.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_with(args, env, true)
    }

    /// Starts rcapture with a stdout pipe nobody reads before `stop`.
    pub fn start_unread_stdout(args: &[&str]) -> Self {
        Self::start_with(args, &[], false)
    }

    fn start_with(args: &[&str], env: &[(&str, &str)], read_stdout: bool) -> Self {
        let mut all: Vec<&str> = args.to_vec();
        if !args.contains(&"--listen") {
            all.extend(["--listen", "127.0.0.1:0"]);
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_rcapture"))
            .args(&all)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting rcapture");
        let rx = stderr_lines(&mut child);
        let stdout_reader = read_stdout.then(|| {
            let mut out = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                let mut s = Vec::new();
                out.read_to_end(&mut s).ok();
                String::from_utf8_lossy(&s).into_owned()
            })
        });
        let mut me = Self {
            child: Proc(child),
            stdout_reader,
            stderr_lines: rx,
            stderr: Vec::new(),
            addr: None,
        };
        loop {
            match me.stderr_lines.recv_timeout(Duration::from_secs(60)) {
                Ok(l) => {
                    let ready = l == "rcapture: ready";
                    if let Some(a) = l.strip_prefix("rcapture: listening on ") {
                        me.addr = Some(a.to_string());
                    }
                    me.stderr.push(l);
                    if ready {
                        break;
                    }
                }
                Err(_) => panic!("rcapture never became ready; stderr: {:#?}", me.stderr),
            }
        }
        me
    }

    /// eCaptureQ's stop (src-tauri/src/services/capture.rs): SIGINT, and
    /// SIGKILL if it has not exited one second later.
    pub fn stop_like_ecaptureq(mut self) -> EcaptureqStop {
        let t0 = std::time::Instant::now();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid() as i32, libc::SIGINT) };
        let mut status = None;
        while t0.elapsed() < Duration::from_secs(1) {
            if let Some(st) = self.child.0.try_wait().unwrap() {
                status = Some(st);
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let took = t0.elapsed();
        if status.is_none() {
            self.child.0.kill().ok();
            self.child.0.wait().ok();
        }
        if let Some(t) = self.stdout_reader.take() {
            t.join().ok();
        }
        while let Ok(l) = self.stderr_lines.recv_timeout(Duration::from_secs(5)) {
            self.stderr.push(l);
        }
        EcaptureqStop {
            exited_by_itself: status.is_some(),
            success: status.is_some_and(|s| s.success()),
            took,
            stderr: std::mem::take(&mut self.stderr),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// SIGINT, then wait: returns stdout; asserts exit status 0.
    pub fn stop(self) -> String {
        self.stop_with_stderr().0
    }

    /// SIGINT, then wait: returns stdout and every stderr line; asserts exit status 0.
    pub fn stop_with_stderr(self) -> (String, Vec<String>) {
        self.stop_by(libc::SIGINT)
    }

    /// Signal `sig`, then wait: returns stdout and every stderr line;
    /// asserts exit status 0.
    pub fn stop_by(mut self, sig: libc::c_int) -> (String, Vec<String>) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid() as i32, sig) };
        let out = match self.stdout_reader.take() {
            Some(r) => r.join().expect("stdout reader"),
            None => {
                let mut s = Vec::new();
                self.child
                    .0
                    .stdout
                    .take()
                    .unwrap()
                    .read_to_end(&mut s)
                    .unwrap();
                String::from_utf8_lossy(&s).into_owned()
            }
        };
        let st = self.child.0.wait().unwrap();
        while let Ok(l) = self.stderr_lines.recv_timeout(Duration::from_secs(5)) {
            self.stderr.push(l);
        }
        assert!(
            st.success(),
            "rcapture exited with {st}; stderr: {:#?}",
            self.stderr
        );
        (out, std::mem::take(&mut self.stderr))
    }
}

/// One event block of the text output.
#[derive(Debug, Clone)]
pub struct Block {
    pub header: String,
    pub body: String,
}

impl Block {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.header
            .split(' ')
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
    }
    pub fn pid(&self) -> u32 {
        self.field("pid").unwrap().parse().unwrap()
    }
    /// `send`, `recv`, `masterkey`...
    pub fn what(&self) -> &str {
        self.header.split(' ').rev().nth(2).unwrap()
    }
    pub fn addrs(&self) -> &str {
        self.header.split(' ').find(|w| w.contains("->")).unwrap()
    }
}

/// Splits text output into blocks at header lines.
pub fn blocks(out: &str) -> Vec<Block> {
    let is_header = |l: &str| {
        l.len() > 31
            && l.as_bytes()[4] == b'-'
            && l.as_bytes()[10] == b'T'
            && l.contains(" pid=")
            && l.contains(" comm=")
    };
    let mut v: Vec<Block> = Vec::new();
    for line in out.split_inclusive('\n') {
        if is_header(line) {
            v.push(Block {
                header: line.trim_end().to_string(),
                body: String::new(),
            });
        } else if let Some(b) = v.last_mut() {
            b.body.push_str(line);
        }
    }
    v
}

/// Runs a command to completion, asserting success; returns stdout.
pub fn run_ok(cmd: &mut Command) -> (u32, String) {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (pid, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The child's stderr, line by line, read on a thread of its own.
pub fn stderr_lines(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let err = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}
