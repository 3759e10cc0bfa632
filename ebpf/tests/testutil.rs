//! Helpers: privilege gate, a real `openssl s_server`, ring draining and a
//! minimal record parser (offsets from `include/records.h`).

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use rcapture_core::ring::RecordRing as _;
use rcapture_ebpf::{Capture, CpuRing};

/// Tests that load probes run one at a time (they would see each other's events).
static BPF_LOCK: Mutex<()> = Mutex::new(());

/// Returns a guard when BPF tests can run; None (after printing why) when
/// not root, panicking instead if `RCAPTURE_REQUIRE_BPF=1`.
pub fn require_bpf() -> Option<MutexGuard<'static, ()>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        if std::env::var("RCAPTURE_REQUIRE_BPF").as_deref() == Ok("1") {
            panic!("RCAPTURE_REQUIRE_BPF=1 but not root: BPF tests cannot run");
        }
        eprintln!("skipping test - needs root");
        return None;
    }
    Some(BPF_LOCK.lock().unwrap_or_else(|e| e.into_inner()))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A self-signed certificate and key in a temporary directory.
pub struct Cert {
    pub dir: tempfile::TempDir,
}

impl Cert {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=localhost", "-keyout"])
            .arg(dir.path().join("key.pem"))
            .arg("-out")
            .arg(dir.path().join("cert.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run openssl req");
        assert!(status.success(), "openssl req failed");
        Self { dir }
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }
}

/// `openssl s_server` on a free port; killed on drop.
pub struct Server {
    child: Child,
    /// Held open: without `-www`, s_server ends the session at EOF on stdin.
    _stdin: Option<ChildStdin>,
    pub port: u16,
}

impl Server {
    /// `extra`: e.g. `["-www"]` (not `-quiet`: it hides the ACCEPT line).
    pub fn start(cert: &Cert, extra: &[&str]) -> Self {
        let port = free_port();
        let mut child = Command::new("openssl")
            .arg("s_server")
            .args(["-accept", &port.to_string(), "-cert"])
            .arg(cert.cert())
            .arg("-key")
            .arg(cert.key())
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn openssl s_server");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        // Reads (and discards) the server's output so it never blocks.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(line) if line.starts_with("ACCEPT") => {
                        let _receiver_may_be_gone = ready_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        if ready_rx.recv_timeout(Duration::from_secs(20)).is_err() {
            let _kill_result_irrelevant = child.kill();
            panic!("openssl s_server did not print ACCEPT within 20 s");
        }
        Self {
            child,
            _stdin: stdin,
            port,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _kill_result_irrelevant = self.child.kill();
        let _wait_result_irrelevant = self.child.wait();
    }
}

/// Every record currently in the rings, as (cpu, bytes).
pub fn drain(rings: &mut [CpuRing]) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    for ring in rings {
        let cpu = ring.cpu();
        ring.drain(&mut |rec| out.push((cpu, rec.to_vec())));
    }
    out
}

/// Every record in the rings once `probes` are detached, asserting that
/// the kernel side lost none.
pub fn drain_lossless(probes: &Capture, rings: &mut [CpuRing]) -> Vec<(u32, Vec<u8>)> {
    let records = drain(rings);
    let counters = probes.counters().expect("counters");
    eprintln!("{} records; counters per CPU: {counters:?}", records.len());
    assert!(
        counters.iter().all(|c| c.lost == 0),
        "records lost: {counters:?}"
    );
    records
}

/// The `struct rc_data` records of `kind` that `keep` accepts, grouped by
/// call — (cpu, tid, call_seq) — each call's records in ring order.
pub fn calls_of(
    records: &[(u32, Vec<u8>)],
    kind: u16,
    keep: impl Fn(&Data) -> bool,
) -> BTreeMap<(u32, u32, u32), Vec<Data>> {
    let mut calls: BTreeMap<(u32, u32, u32), Vec<Data>> = BTreeMap::new();
    for (cpu, r) in records {
        if hdr(r).kind != kind {
            continue;
        }
        let d = data(r);
        if keep(&d) {
            calls
                .entry((*cpu, d.hdr.tid, d.call_seq))
                .or_default()
                .push(d);
        }
    }
    calls
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(b[off..off + 2].try_into().expect("2 bytes"))
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

pub const KIND_TLS_DATA: u16 = 1;
pub const KIND_MASTER_SECRET: u16 = 2;
pub const KIND_GOTLS_DATA: u16 = 5;
pub const KIND_GOTLS_KEY: u16 = 6;
pub const KIND_MYSQL_QUERY: u16 = 8;
pub const KIND_PG_QUERY: u16 = 9;
pub const F_FIRST: u16 = 1;
pub const F_LAST: u16 = 2;

/// `struct rc_hdr`.
#[derive(Debug, Clone)]
pub struct Hdr {
    pub kind: u16,
    pub flags: u16,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
}

pub fn hdr(b: &[u8]) -> Hdr {
    assert!(b.len() >= 40, "record shorter than rc_hdr");
    let comm = &b[24..40];
    let end = comm.iter().position(|&c| c == 0).unwrap_or(comm.len());
    Hdr {
        kind: u16_at(b, 0),
        flags: u16_at(b, 2),
        pid: u32_at(b, 16),
        tid: u32_at(b, 20),
        comm: String::from_utf8_lossy(&comm[..end]).into_owned(),
    }
}

/// `struct rc_data` and its payload.
#[derive(Debug, Clone)]
pub struct Data {
    pub hdr: Hdr,
    pub total_len: u32,
    pub offset: u32,
    pub call_seq: u32,
    pub sock: u64,
    pub fd: u32,
    pub direction: u8,
    pub family: u16,
    pub sport: u16,
    pub dport: u16,
    pub payload: Vec<u8>,
}

pub fn data(b: &[u8]) -> Data {
    assert!(b.len() >= 112, "rc_data shorter than 112 bytes");
    let len = u32_at(b, 48) as usize;
    assert_eq!(
        b.len(),
        112 + len,
        "record size != sizeof(rc_data) + chunk.len"
    );
    Data {
        hdr: hdr(b),
        total_len: u32_at(b, 40),
        offset: u32_at(b, 44),
        call_seq: u32_at(b, 52),
        sock: u64_at(b, 56),
        fd: u32_at(b, 64),
        direction: b[68],
        family: u16_at(b, 72),
        sport: u16_at(b, 74),
        dport: u16_at(b, 76),
        payload: b[112..].to_vec(),
    }
}

/// `struct rc_query` and its payload.
#[derive(Debug, Clone)]
pub struct Query {
    pub hdr: Hdr,
    pub uid: u32,
    pub total_len: u32,
    pub offset: u32,
    pub call_seq: u32,
    pub retval: i32,
    pub sql_errno: u32,
    pub payload: Vec<u8>,
}

pub fn query(b: &[u8]) -> Query {
    assert!(b.len() >= 64, "rc_query shorter than 64 bytes");
    let len = u32_at(b, 48) as usize;
    assert_eq!(
        b.len(),
        64 + len,
        "record size != sizeof(rc_query) + chunk.len"
    );
    Query {
        hdr: hdr(b),
        uid: u32_at(b, 4),
        total_len: u32_at(b, 40),
        offset: u32_at(b, 44),
        call_seq: u32_at(b, 52),
        retval: u32_at(b, 56) as i32,
        sql_errno: u32_at(b, 60),
        payload: b[64..].to_vec(),
    }
}

/// A call being joined: its (cpu, tid, call_seq), first record, payload, flags.
type JoiningCall = ((u32, u32, u32), Query, Vec<u8>, Vec<u16>);

/// The query records of `kind`, joined per call (cpu, tid, call_seq) in
/// ring order: (first record, whole payload, flags of every record).
pub fn joined_queries(records: &[(u32, Vec<u8>)], kind: u16) -> Vec<(Query, Vec<u8>, Vec<u16>)> {
    let mut calls: Vec<JoiningCall> = Vec::new();
    for (cpu, r) in records.iter().filter(|(_, r)| hdr(r).kind == kind) {
        let q = query(r);
        let key = (*cpu, q.hdr.tid, q.call_seq);
        match calls.iter_mut().find(|c| c.0 == key) {
            Some(c) => {
                assert_eq!(q.offset as usize, c.2.len(), "chunks in order, no gap");
                c.2.extend_from_slice(&q.payload);
                c.3.push(q.hdr.flags);
            }
            None => {
                assert_eq!(q.offset, 0, "a call starts at offset 0: {q:?}");
                let flags = vec![q.hdr.flags];
                let payload = q.payload.clone();
                calls.push((key, q, payload, flags));
            }
        }
    }
    calls.into_iter().map(|(_, q, p, f)| (q, p, f)).collect()
}

/// `struct rc_master_secret`: (hdr, version, cipher_id, client_random).
pub fn master_secret(b: &[u8]) -> (Hdr, u32, u32, [u8; 32]) {
    assert_eq!(b.len(), 456, "rc_master_secret is 456 bytes");
    let client_random = b[48..80].try_into().expect("32 bytes");
    (hdr(b), u32_at(b, 40), u32_at(b, 44), client_random)
}

/// `struct rc_gotls_key`: label, client random and secret (their lengths applied).
#[derive(Debug, Clone)]
pub struct GoKey {
    pub label: String,
    pub client_random: [u8; 32],
    pub secret: Vec<u8>,
}

pub fn gotls_key(b: &[u8]) -> GoKey {
    assert_eq!(b.len(), 176, "rc_gotls_key is 176 bytes");
    let (label_len, secret_len) = (u32_at(b, 40) as usize, u32_at(b, 44) as usize);
    assert!(
        label_len <= 32 && secret_len <= 64,
        "{label_len} {secret_len}"
    );
    GoKey {
        label: String::from_utf8_lossy(&b[48..48 + label_len]).into_owned(),
        client_random: b[80..112].try_into().expect("32 bytes"),
        secret: b[112..112 + secret_len].to_vec(),
    }
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn python() -> &'static Path {
    Path::new("/usr/bin/python3")
}
