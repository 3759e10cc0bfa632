//! One TLS scenario: start the load generator, start a tracer (or the floor,
//! or nothing), run the load, stop the tracer, count what it delivered.

use crate::floor::{Floor, FloorHits};
use crate::loadgen::LoadReport;
use crate::tracer::{Delivered, ProcTracer, Spawned, TracerPaths};
use anyhow::{Context, bail};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// What is attached while the load runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracing {
    /// Nothing: the baseline.
    None,
    /// `bpf/floor.bpf.o`: eight counting uprobes.
    Floor,
    /// An external tracer.
    Proc(ProcTracer),
}

impl Tracing {
    /// The scenario's name in the results.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "no tracing",
            Self::Floor => "uprobe floor",
            Self::Proc(p) => p.name(),
        }
    }

    /// Name prefix of its BPF programs (for `bpf_stats`), if it loads any we can tell apart.
    fn prog_prefix(self) -> Option<&'static str> {
        match self {
            Self::Floor => Some("floor_"),
            Self::Proc(ProcTracer::Rcapture) => Some("rc_"),
            _ => None,
        }
    }
}

/// Scenario settings shared by every run.
#[derive(Debug, Clone)]
pub struct ScenarioConfig {
    /// The `tls-loadgen` binary.
    pub loadgen: PathBuf,
    /// SSL_write calls.
    pub calls: u64,
    /// Bytes per write.
    pub payload: usize,
    /// Cap on the load's wall time.
    pub load_timeout: Duration,
    /// Cap on the wait for a peer's output to stop growing after the load.
    pub drain_cap: Duration,
    /// Cap on a tracer's start-up.
    pub ready_within: Duration,
    /// Tracers' paths and work directory.
    pub paths: TracerPaths,
}

/// How a scenario went.
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    /// Which tracing.
    pub tracing: Tracing,
    /// `ok`, or what went wrong.
    pub outcome: String,
    /// The load's own report (none if it did not finish).
    pub load: Option<LoadReport>,
    /// Events the tracer should deliver (data calls; hooked calls for the floor).
    pub expected: Option<u64>,
    /// Events it delivered.
    pub delivered: Option<u64>,
    /// Losses the tracer reported itself.
    pub reported_lost: Option<u64>,
    /// Everything else worth keeping (ledger, hits, drain time, BPF run time).
    pub detail: serde_json::Value,
}

impl ScenarioResult {
    fn failed(tracing: Tracing, outcome: String) -> Self {
        Self {
            tracing,
            outcome,
            load: None,
            expected: None,
            delivered: None,
            reported_lost: None,
            detail: serde_json::Value::Null,
        }
    }
}

/// The load generator process, waiting for "go".
struct Load {
    proc: Spawned,
    lines: Receiver<String>,
    pid: u32,
}

fn start_load(cfg: &ScenarioConfig) -> anyhow::Result<Load> {
    let mut cmd = Command::new(&cfg.loadgen);
    cmd.arg("--wait")
        .arg("--calls")
        .arg(cfg.calls.to_string())
        .arg("--payload")
        .arg(cfg.payload.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut proc = Spawned::spawn("tls-loadgen", cmd)?;
    let stdout = proc
        .child_mut()
        .stdout
        .take()
        .context("tls-loadgen stdout")?;
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let ready = recv_json(&lines, Duration::from_secs(30)).context("tls-loadgen handshake")?;
    let pid = ready
        .get("pid")
        .and_then(serde_json::Value::as_u64)
        .and_then(|p| u32::try_from(p).ok())
        .with_context(|| format!("tls-loadgen ready line without pid: {ready}"))?;
    Ok(Load { proc, lines, pid })
}

fn recv_json(lines: &Receiver<String>, timeout: Duration) -> anyhow::Result<serde_json::Value> {
    match lines.recv_timeout(timeout) {
        Ok(l) => serde_json::from_str(&l).with_context(|| format!("not JSON: {l:?}")),
        Err(RecvTimeoutError::Timeout) => bail!("timed out after {timeout:?}"),
        Err(RecvTimeoutError::Disconnected) => bail!("it exited"),
    }
}

enum Active {
    None,
    Floor(Floor),
    Proc(crate::tracer::RunningTracer),
}

/// Runs one scenario; failures are reported in the result, never left running.
pub fn run(cfg: &ScenarioConfig, tracing: Tracing) -> ScenarioResult {
    match run_inner(cfg, tracing) {
        Ok(r) => r,
        Err(e) => ScenarioResult::failed(tracing, format!("error: {e:#}")),
    }
}

fn run_inner(cfg: &ScenarioConfig, tracing: Tracing) -> anyhow::Result<ScenarioResult> {
    let mut load = start_load(cfg)?;
    let before = tracing.prog_prefix().map(|_| crate::report::bpf_prog_ids());
    let mut active = match tracing {
        Tracing::None => Active::None,
        Tracing::Floor => Active::Floor(Floor::attach(&cfg.paths.libssl)?),
        Tracing::Proc(p) => Active::Proc(p.start(&cfg.paths, load.pid, cfg.ready_within)?),
    };
    let started = Instant::now();
    {
        let stdin = load
            .proc
            .child_mut()
            .stdin
            .as_mut()
            .context("tls-loadgen stdin")?;
        stdin.write_all(b"go\n")?;
        stdin.flush()?;
    }
    let report = recv_json(&load.lines, cfg.load_timeout).and_then(|v| LoadReport::from_json(&v));
    let load_wall = started.elapsed();
    let outcome = match &report {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("load did not finish: {e:#}"),
    };
    load.proc.stop(Duration::from_secs(2));

    let bpf = match (tracing.prog_prefix(), &before) {
        (Some(prefix), Some(Ok(before))) => crate::report::bpf_prog_stats(prefix, before),
        _ => serde_json::Value::Null,
    };
    let report = report.ok();
    let mut detail =
        serde_json::json!({ "load_wall_secs": load_wall.as_secs_f64(), "bpf_stats": bpf });
    let (expected, delivered, reported_lost) = match active {
        Active::None => (None, None, None),
        Active::Floor(ref floor) => {
            let hits: FloorHits = floor.hits()?;
            detail["floor_hits"] = hits.to_json();
            let expected = report.as_ref().map(|r| 2 * (r.write_calls + r.read_calls));
            (expected, Some(hits.entries() + hits.returns()), Some(0))
        }
        Active::Proc(ref mut t) => {
            if t.kind != ProcTracer::Rcapture {
                let waited = t.wait_quiet(Duration::from_secs(1), cfg.drain_cap);
                detail["drain_wait_secs"] = waited.as_secs_f64().into();
            }
            (report.as_ref().map(LoadReport::data_calls), None, None)
        }
    };
    let (delivered, reported_lost) = match std::mem::replace(&mut active, Active::None) {
        Active::Proc(t) => {
            let grace = Duration::from_secs(30);
            let (d, stopped): (Delivered, _) = t.finish(load.pid, grace)?;
            detail["tracer_killed"] = stopped.killed.into();
            detail["tracer_exit"] = stopped.status.map(|s| s.to_string()).into();
            if let Some(s) = &d.summary {
                detail["ledger"] = s.clone().into();
            }
            (Some(d.events), d.reported_lost)
        }
        _ => (delivered, reported_lost),
    };
    Ok(ScenarioResult {
        tracing,
        outcome,
        load: report,
        expected,
        delivered,
        reported_lost,
        detail,
    })
}
