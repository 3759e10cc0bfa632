//! The traced program's speed under WebSocket fan-out: one `rcapture tls`
//! (system-wide, its event server on loopback), `tls-loadgen` as the traced
//! program, and N `ws-reader` processes (independent tungstenite clients)
//! reading every event. One phase = N readers connected, one load run,
//! every reader caught up; CPU time of rcapture's threads and of the readers
//! is read from `/proc/PID/task/TID/schedstat` (nanoseconds run) around it.

use crate::loadgen::LoadReport;
use crate::tracer::Spawned;
use anyhow::{Context, bail};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// CPU nanoseconds a thread has run, and its voluntary context switches: a
/// thread that sleeps (`epoll_wait`, `read`) and is woken counts one per
/// wakeup (preemptions by other load are not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadCpu {
    pub run_ns: u64,
    pub switches: u64,
}

impl ThreadCpu {
    fn add(&mut self, o: ThreadCpu) {
        self.run_ns += o.run_ns;
        self.switches += o.switches;
    }

    fn since(self, before: ThreadCpu) -> ThreadCpu {
        ThreadCpu {
            run_ns: self.run_ns.saturating_sub(before.run_ns),
            switches: self.switches.saturating_sub(before.switches),
        }
    }
}

/// The threads of process `pid` whose name starts with `comm` (all if empty), summed.
pub fn threads_cpu(pid: u32, comm: &str) -> ThreadCpu {
    let mut sum = ThreadCpu::default();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return sum;
    };
    for t in dir.flatten() {
        let p = t.path();
        let name = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if !name.trim_end().starts_with(comm) {
            continue;
        }
        let run_ns = std::fs::read_to_string(p.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let status = std::fs::read_to_string(p.join("status")).unwrap_or_default();
        let switches = status
            .lines()
            .filter(|l| l.starts_with("voluntary_ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        sum.add(ThreadCpu { run_ns, switches });
    }
    sum
}

/// A child process whose stdout lines arrive on a channel.
struct LineChild {
    proc: Spawned,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl LineChild {
    fn spawn(name: &str, mut cmd: Command) -> anyhow::Result<Self> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut proc = Spawned::spawn(name, cmd)?;
        let stdout = proc.child_mut().stdout.take().context("child stdout")?;
        let stdin = proc.child_mut().stdin.take();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self { proc, stdin, lines })
    }

    fn send(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("child stdin closed")?;
        stdin.write_all(line.as_bytes())?;
        stdin.write_all(b"\n")?;
        stdin.flush()?;
        Ok(())
    }

    fn json(&self, timeout: Duration) -> anyhow::Result<serde_json::Value> {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => serde_json::from_str(&l).with_context(|| format!("not JSON: {l:?}")),
            Err(RecvTimeoutError::Timeout) => bail!("no answer within {timeout:?}"),
            Err(RecvTimeoutError::Disconnected) => bail!("it exited"),
        }
    }
}

/// Binaries and settings of the measurement.
#[derive(Debug, Clone)]
pub struct FanloadConfig {
    pub loadgen: PathBuf,
    pub reader: PathBuf,
    /// SSL_write calls per phase.
    pub calls: u64,
    pub payload: usize,
    /// The event stream of the running rcapture.
    pub stream: SocketAddr,
    /// rcapture's pid (its threads are measured).
    pub rcapture_pid: u32,
    /// How long readers may take to catch up after the load.
    pub drain_cap: Duration,
}

/// One phase's numbers.
#[derive(Debug, Clone)]
pub struct Phase {
    pub clients: usize,
    pub load: LoadReport,
    /// The readers' frames received during the phase, summed.
    pub frames: u64,
    /// The fewest one reader received.
    pub min_frames: u64,
    pub server: ThreadCpu,
    pub workers: ThreadCpu,
    pub readers: ThreadCpu,
    /// From "go" to every reader caught up.
    pub wall: Duration,
    /// Events dropped for WebSocket clients during the phase (`/status`).
    pub ws_dropped: u64,
}

impl Phase {
    /// Events the traced program made (each counted once).
    pub fn events(&self) -> u64 {
        self.load.data_calls()
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "clients": self.clients,
            "writes_per_sec": self.load.writes_per_sec(),
            "load_cpu_us_per_pair": self.load.cpu_us_per_pair(),
            "events": self.events(),
            "frames": self.frames,
            "min_frames_per_client": self.min_frames,
            "server_cpu_ns": self.server.run_ns,
            "server_wakeups": self.server.switches,
            "worker_cpu_ns": self.workers.run_ns,
            "readers_cpu_ns": self.readers.run_ns,
            "readers_wakeups": self.readers.switches,
            "wall_secs": self.wall.as_secs_f64(),
            "ws_dropped": self.ws_dropped,
            "load": self.load.to_json(),
        })
    }
}

/// `GET /status`'s `ws_dropped` (0 if unreadable).
fn ws_dropped(addr: SocketAddr) -> u64 {
    let get = || -> anyhow::Result<u64> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        let json = body.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        let v: serde_json::Value = serde_json::from_str(json)?;
        let n = v
            .pointer("/data/stream/ws_dropped")
            .or_else(|| find_key(&v, "ws_dropped"))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        Ok(n)
    };
    get().unwrap_or(0)
}

fn find_key<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m
            .get(key)
            .or_else(|| m.values().find_map(|x| find_key(x, key))),
        _ => None,
    }
}

fn reader_frames(r: &mut LineChild) -> anyhow::Result<u64> {
    r.send("count")?;
    let v = r.json(Duration::from_secs(5))?;
    v.get("frames")
        .and_then(serde_json::Value::as_u64)
        .with_context(|| format!("reader answered {v}"))
}

/// Runs one phase with `clients` readers.
pub fn phase(cfg: &FanloadConfig, clients: usize) -> anyhow::Result<Phase> {
    let url = format!("ws://{}/ws", cfg.stream);
    let mut readers = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut cmd = Command::new(&cfg.reader);
        cmd.arg("--url").arg(&url);
        readers.push(LineChild::spawn("ws-reader", cmd)?);
    }
    for r in &readers {
        let v = r
            .json(Duration::from_secs(10))
            .context("ws-reader connect")?;
        if v.get("connected").is_none() {
            bail!("ws-reader: {v}");
        }
    }
    let mut cmd = Command::new(&cfg.loadgen);
    cmd.arg("--wait")
        .arg("--calls")
        .arg(cfg.calls.to_string())
        .arg("--payload")
        .arg(cfg.payload.to_string());
    let mut load = LineChild::spawn("tls-loadgen", cmd)?;
    load.json(Duration::from_secs(30))
        .context("tls-loadgen handshake")?;
    // Let the handshake's events reach the readers before counting.
    std::thread::sleep(Duration::from_millis(300));
    let mut before = Vec::with_capacity(clients);
    for r in &mut readers {
        before.push(reader_frames(r)?);
    }
    let dropped0 = ws_dropped(cfg.stream);
    let reader_pids: Vec<u32> = readers.iter().map(|r| r.proc.pid()).collect();
    let readers_cpu = |pids: &[u32]| {
        let mut t = ThreadCpu::default();
        for &p in pids {
            t.add(threads_cpu(p, ""));
        }
        t
    };
    let (s0, w0, r0) = (
        threads_cpu(cfg.rcapture_pid, "rcapture-server"),
        threads_cpu(cfg.rcapture_pid, "rcapture-worker"),
        readers_cpu(&reader_pids),
    );
    let started = Instant::now();
    load.send("go")?;
    let report = LoadReport::from_json(&load.json(Duration::from_secs(600))?)?;
    let expected = report.data_calls();
    // Wait until every reader has the load's events (or stops moving).
    let deadline = Instant::now() + cfg.drain_cap;
    let mut last = Vec::new();
    let mut still = Instant::now();
    let counts = loop {
        let mut now_counts = Vec::with_capacity(clients);
        for r in &mut readers {
            now_counts.push(reader_frames(r)?);
        }
        let caught_up = now_counts
            .iter()
            .zip(&before)
            .all(|(n, b)| n - b >= expected);
        if now_counts != last {
            last.clone_from(&now_counts);
            still = Instant::now();
        }
        if caught_up || Instant::now() >= deadline || still.elapsed() >= Duration::from_millis(500)
        {
            break now_counts;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let wall = started.elapsed();
    let (s1, w1, r1) = (
        threads_cpu(cfg.rcapture_pid, "rcapture-server"),
        threads_cpu(cfg.rcapture_pid, "rcapture-worker"),
        readers_cpu(&reader_pids),
    );
    let ws_dropped = ws_dropped(cfg.stream).saturating_sub(dropped0);
    let got: Vec<u64> = counts.iter().zip(&before).map(|(n, b)| n - b).collect();
    drop(readers);
    load.proc.stop(Duration::from_secs(2));
    Ok(Phase {
        clients,
        load: report,
        frames: got.iter().sum(),
        min_frames: got.iter().copied().min().unwrap_or(0),
        server: s1.since(s0),
        workers: w1.since(w0),
        readers: r1.since(r0),
        wall,
        ws_dropped,
    })
}
