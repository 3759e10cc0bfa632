//! Helpers of the forwarding tests: real collector processes
//! (`tests/support/collector.py`, mitmdump, clickhouse-server), synthetic
//! batches, temp dirs, waiting.

use rcapture_core::encode;
use rcapture_core::event::{Detail, EventFields, EventKind, Module};
use rcapture_net::publish::{Batch, EntryMeta};
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("net/ has a parent")
        .to_path_buf()
}

pub fn support(file: &str) -> PathBuf {
    repo_root().join("tests/support").join(file)
}

/// Whether a missing tool fails the test (CI) or skips it.
pub fn require_tools() -> bool {
    std::env::var("RCAPTURE_REQUIRE_BPF").is_ok_and(|v| v == "1")
}

/// Returns false (after printing why) when `tool` is missing and skipping is allowed.
pub fn have_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            !require_tools(),
            "{tool} is not installed and RCAPTURE_REQUIRE_BPF=1"
        );
        eprintln!("skipping test - {tool} is not installed");
    }
    found
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "rcapture-fwd-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (by its pid) on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Waits until something accepts connections on `port`.
pub fn wait_port(port: u16, timeout: Duration) -> bool {
    wait_for(timeout, || TcpStream::connect(("127.0.0.1", port)).is_ok())
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `tests/support/collector.py` process.
pub struct Collector {
    pub port: u16,
    pub out: PathBuf,
    _proc: Proc,
}

impl Collector {
    /// Starts the collector writing to `dir/name.jsonl` with extra `args`.
    pub fn start(dir: &TempDir, name: &str, args: &[&str]) -> Collector {
        let out = dir.path(&format!("{name}.jsonl"));
        let mut child = Command::new("python3")
            .arg(support("collector.py"))
            .arg(&out)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3 tests/support/collector.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("collector prints its port");
        let port = line.trim().parse().expect("a port number");
        Collector {
            port,
            out,
            _proc: Proc(child),
        }
    }

    /// The requests recorded so far.
    pub fn records(&self) -> Vec<serde_json::Value> {
        read_jsonl(&self.out)
    }
}

pub fn read_jsonl(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The value of header `name` in a recorded request.
pub fn header<'a>(rec: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    rec["headers"].as_array()?.iter().find_map(|h| {
        (h[0].as_str()?.eq_ignore_ascii_case(name))
            .then(|| h[1].as_str())
            .flatten()
    })
}

/// A recorded request's body.
pub fn body(rec: &serde_json::Value) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(rec["body"].as_str().expect("body"))
        .expect("base64 body")
}

/// A synthetic TLS data event.
pub fn event<'a>(ts: i64, uuid: &'a str, module: &'a str, payload: &'a [u8]) -> EventFields<'a> {
    EventFields {
        timestamp: ts,
        uuid,
        src_ip: "127.0.0.1",
        src_port: 52814,
        dst_ip: "127.0.0.1",
        dst_port: 8443,
        pid: 4242,
        pname: "curl",
        r#type: 1,
        payload,
        tid: 4243,
        uid: 1000,
        module,
        fd: 5,
        truncated: 0,
        detail: Detail::None,
    }
}

/// Encodes events as the workers do: one batch of `LogEntry` bodies without seq.
pub fn batch(events: &[EventFields<'_>]) -> Arc<Batch> {
    let mut buf = Vec::new();
    let mut entries = Vec::new();
    for e in events {
        let start = buf.len();
        encode::encode_event_entry(e, &mut buf);
        entries.push(EntryMeta {
            start: start as u32,
            end: buf.len() as u32,
            module: Module::from_name(e.module).expect("a module name"),
            kind: EventKind::Data,
            pid: e.pid as u32,
            uid: e.uid,
            timestamp: e.timestamp,
            payload_len: e.length(),
        });
    }
    Arc::new(Batch {
        worker: 0,
        buf,
        entries,
    })
}

/// A CA and a certificate for 127.0.0.1 signed by it (openssl CLI):
/// returns (ca.pem, cert.pem, key.pem).
pub fn make_certs(dir: &TempDir) -> (PathBuf, PathBuf, PathBuf) {
    let ca = dir.path("ca.pem");
    let cakey = dir.path("ca.key");
    let cert = dir.path("cert.pem");
    let key = dir.path("key.pem");
    let csr = dir.path("cert.csr");
    let ext = dir.path("ext.cnf");
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext.cnf");
    let run = |args: &[&str]| {
        let ok = Command::new("openssl")
            .args(args)
            .current_dir(&dir.0)
            .stderr(Stdio::null())
            .status()
            .expect("run openssl")
            .success();
        assert!(ok, "openssl {args:?} failed");
    };
    let p = |x: &PathBuf| x.to_str().expect("utf-8 path").to_string();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=rcapture test CA",
        "-keyout",
        &p(&cakey),
        "-out",
        &p(&ca),
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p(&key),
        "-out",
        &p(&csr),
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        &p(&csr),
        "-CA",
        &p(&ca),
        "-CAkey",
        &p(&cakey),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p(&ext),
        "-out",
        &p(&cert),
    ]);
    (ca, cert, key)
}
