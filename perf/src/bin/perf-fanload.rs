//! `perf-fanload`: what WebSocket fan-out costs the traced program. One
//! `rcapture tls` runs system-wide with its event server on loopback; the
//! traced program is `tls-loadgen` (SSL_write/SSL_read over loopback TLS);
//! N `ws-reader` processes (tungstenite clients) read every event. Per round,
//! each client count N runs next to a run with no client (alternating which
//! comes first), and the ratio is the traced program's writer calls/s with N
//! clients ÷ with none. Also: rcapture's server thread CPU per delivered
//! frame, its wakeups, the workers' and the readers' CPU. Writes
//! `perf/results/fanload.{json,md}`.

use anyhow::{Context, bail};
use clap::Parser;
use rcapture_perf::fanload::{FanloadConfig, Phase, phase};
use rcapture_perf::tracer::{Spawned, tail};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    about = "The traced program's speed with N WebSocket clients reading every event, vs none"
)]
struct Args {
    /// Client counts (comma-separated); each is paired with a run with none.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// SSL_write calls per run (each makes two events: the write and the read).
    #[arg(long, default_value_t = 50_000)]
    calls: u64,
    /// Bytes per SSL_write.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Rounds (every pair once per round).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// libssl.so.3 to hook (default: the system one).
    #[arg(long)]
    libssl: Option<PathBuf>,
    /// Extra arguments for `rcapture tls` (repeatable), e.g. `--rcapture-arg=--heartbeat-secs=1`.
    #[arg(long = "rcapture-arg", allow_hyphen_values = true)]
    rcapture_args: Vec<String>,
    /// The rcapture binary (default: the one next to this program).
    #[arg(long)]
    rcapture: Option<PathBuf>,
    /// Where fanload.json and fanload.md go.
    #[arg(long, default_value = "perf/results")]
    out: PathBuf,
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name(name);
    if !p.exists() {
        bail!(
            "{} not found next to {} (cargo build --release -p rcapture -p rcapture-perf)",
            p.display(),
            exe.display()
        );
    }
    Ok(p)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

struct Pair {
    round: usize,
    none: Phase,
    with: Phase,
}

impl Pair {
    fn ratio(&self) -> f64 {
        self.with.load.writes_per_sec() / self.none.load.writes_per_sec().max(1e-9)
    }
    fn ns_per_frame(&self) -> f64 {
        self.with.server.run_ns as f64 / (self.with.frames.max(1) as f64)
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rcapture = match &args.rcapture {
        Some(p) => p.clone(),
        None => sibling("rcapture")?,
    };
    let cfg_bins = (sibling("tls-loadgen")?, sibling("ws-reader")?);
    let target = rcapture_ebpf::OpensslTarget::discover(args.libssl.as_deref(), None)?;
    let work = std::env::temp_dir().join(format!("rcapture-fanload.{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let err = work.join("rcapture.err");
    let port = free_port()?;
    let mut cmd = Command::new(&rcapture);
    cmd.arg("tls")
        .arg("--libssl")
        .arg(target.libssl())
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(&args.rcapture_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err)?);
    let mut rc = Spawned::spawn("rcapture", cmd)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&err)
        .unwrap_or_default()
        .contains("rcapture: ready")
    {
        if let Some(s) = rc.exited() {
            bail!("rcapture exited ({s}): {}", tail(&err, 800));
        }
        if Instant::now() > deadline {
            bail!("rcapture not ready: {}", tail(&err, 800));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let cfg = FanloadConfig {
        loadgen: cfg_bins.0,
        reader: cfg_bins.1,
        calls: args.calls,
        payload: args.payload,
        stream: format!("127.0.0.1:{port}").parse()?,
        rcapture_pid: rc.pid(),
        drain_cap: Duration::from_secs(30),
    };
    let load_start = rcapture_perf::sys::loadavg();
    let mut pairs = Vec::new();
    for round in 0..args.rounds {
        for &n in &args.clients {
            let none_first = (round + pairs.len()) % 2 == 0;
            let (a, b) = if none_first { (0, n) } else { (n, 0) };
            let pa = phase(&cfg, a).with_context(|| format!("round {round}, {a} clients"))?;
            let pb = phase(&cfg, b).with_context(|| format!("round {round}, {b} clients"))?;
            let (none, with) = if none_first { (pa, pb) } else { (pb, pa) };
            let p = Pair { round, none, with };
            eprintln!(
                "perf-fanload: round {round}, {n} clients: {:.0} vs {:.0} writes/s (ratio {:.3}), server {:.0} ns/frame, {} frames (min/client {} of {}), dropped {}",
                p.with.load.writes_per_sec(),
                p.none.load.writes_per_sec(),
                p.ratio(),
                p.ns_per_frame(),
                p.with.frames,
                p.with.min_frames,
                p.with.events(),
                p.with.ws_dropped
            );
            pairs.push(p);
        }
    }
    let stopped = rc.stop(Duration::from_secs(30));
    let ledger = std::fs::read_to_string(&err)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("rcapture: stopped by signal"))
        .map(str::to_owned)
        .next();
    let load_end = rcapture_perf::sys::loadavg();
    write_results(&args, &pairs, ledger, load_start, load_end, stopped.killed)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn write_results(
    args: &Args,
    pairs: &[Pair],
    ledger: Option<String>,
    load_start: Option<f64>,
    load_end: Option<f64>,
    killed: bool,
) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let mut summary = Vec::new();
    let mut md = String::new();
    writeln!(
        md,
        "Traced program under WebSocket fan-out: `tls-loadgen` ({} × `SSL_write` of {} B, the server thread `SSL_read`s: 2 events per call) traced by one `rcapture tls` (system-wide, text to /dev/null, event server on loopback); N `ws-reader` processes (tungstenite) read every event. Each N runs next to a run with no client, in the same rcapture run; ratio = writer calls/s with N ÷ with 0. {} rounds; {cpus} CPUs, load average {} at start, {} at end.\n",
        args.calls,
        args.payload,
        args.rounds,
        load_start.map_or("?".into(), |l| format!("{l:.2}")),
        load_end.map_or("?".into(), |l| format!("{l:.2}")),
    )?;
    md.push_str("| clients | ratio (median) | ratio range | writes/s with N (median) | writes/s with 0 (median) | server CPU ns/frame (median) | range | server wakeups per 1000 events | server CPU % | readers CPU ns/frame | reader wakeups per 1000 frames | workers CPU ns/event | frames delivered / expected | dropped |\n|---:|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for &n in &args.clients {
        let ps: Vec<&Pair> = pairs.iter().filter(|p| p.with.clients == n).collect();
        if ps.is_empty() {
            continue;
        }
        let col = |f: &dyn Fn(&Pair) -> f64| -> (f64, f64, f64) {
            let mut v: Vec<f64> = ps.iter().map(|p| f(p)).collect();
            let med = median(&mut v);
            (med, v[0], v[v.len() - 1])
        };
        let ratio = col(&|p| p.ratio());
        let ns = col(&|p| p.ns_per_frame());
        let with = col(&|p| p.with.load.writes_per_sec());
        let none = col(&|p| p.none.load.writes_per_sec());
        let wakeups =
            col(&|p| p.with.server.switches as f64 * 1e3 / (p.with.events().max(1) as f64));
        let reader_wakeups =
            col(&|p| p.with.readers.switches as f64 * 1e3 / (p.with.frames.max(1) as f64));
        let busy = col(&|p| p.with.server.run_ns as f64 / p.with.wall.as_nanos() as f64);
        let readers = col(&|p| p.with.readers.run_ns as f64 / (p.with.frames.max(1) as f64));
        let workers = col(&|p| p.with.workers.run_ns as f64 / (p.with.events().max(1) as f64));
        let frames: u64 = ps.iter().map(|p| p.with.frames).sum();
        let expected: u64 = ps.iter().map(|p| p.with.events() * n as u64).sum();
        let dropped: u64 = ps.iter().map(|p| p.with.ws_dropped).sum();
        writeln!(
            md,
            "| {n} | {:.3} | {:.3}–{:.3} | {:.0} | {:.0} | {:.0} | {:.0}–{:.0} | {:.1} | {:.0} % | {:.0} | {:.1} | {:.0} | {frames} / {expected} | {dropped} |",
            ratio.0,
            ratio.1,
            ratio.2,
            with.0,
            none.0,
            ns.0,
            ns.1,
            ns.2,
            wakeups.0,
            busy.0 * 100.0,
            readers.0,
            reader_wakeups.0,
            workers.0
        )?;
        summary.push(serde_json::json!({
            "clients": n,
            "ratio_median": ratio.0, "ratio_min": ratio.1, "ratio_max": ratio.2,
            "server_cpu_ns_per_frame_median": ns.0,
            "server_cpu_ns_per_frame_min": ns.1, "server_cpu_ns_per_frame_max": ns.2,
            "server_wakeups_per_1000_events_median": wakeups.0,
            "reader_wakeups_per_1000_frames_median": reader_wakeups.0,
            "readers_cpu_ns_per_frame_median": readers.0,
            "frames": frames, "expected_frames": expected, "ws_dropped": dropped,
        }));
    }
    md.push_str("\nFrames counted by the readers include heartbeats and other processes' TLS events (the capture is system-wide); server CPU and wakeups are the `rcapture-server` thread's (`/proc/PID/task/TID/schedstat`, voluntary context switches in `status`) from \"go\" until every reader has the run's events.\n");
    if let Some(l) = &ledger {
        writeln!(md, "\nrcapture's exit ledger: `{l}`")?;
    }
    let json = serde_json::json!({
        "harness": "perf-fanload",
        "args": {"clients": args.clients, "calls": args.calls, "payload": args.payload, "rounds": args.rounds, "rcapture_args": args.rcapture_args},
        "cpus": cpus,
        "loadavg_start": load_start,
        "loadavg_end": load_end,
        "summary": summary,
        "pairs": pairs.iter().map(|p| serde_json::json!({
            "round": p.round, "clients": p.with.clients, "ratio": p.ratio(),
            "server_cpu_ns_per_frame": p.ns_per_frame(),
            "with": p.with.to_json(), "none": p.none.to_json(),
        })).collect::<Vec<_>>(),
        "rcapture_ledger": ledger,
        "rcapture_killed": killed,
    });
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(
        args.out.join("fanload.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    std::fs::write(args.out.join("fanload.md"), &md)?;
    print!("{md}");
    Ok(())
}
