//! `perf-tls`: the TLS load with no tracing, the uprobe floor, `rcapture tls`,
//! bpftrace and BCC sslsniff side by side, then the kernel→user capacity of
//! one ring and worker; writes `perf/results/tls.{json,md}` and prints the table.

use anyhow::{Context, bail};
use clap::Parser;
use rcapture_perf::capacity::{self, CapacityConfig, Consumer, Placement, Wakeup};
use rcapture_perf::report;
use rcapture_perf::scenario::{self, ScenarioConfig, Tracing};
use rcapture_perf::sys;
use rcapture_perf::tracer::{ProcTracer, TracerPaths};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    about = "rcapture's end-to-end TLS performance run, side by side with the floor and peers"
)]
struct Args {
    /// SSL_write calls per scenario.
    #[arg(long, default_value_t = 200_000)]
    calls: u64,
    /// Bytes per SSL_write.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Rounds of the TLS scenarios (interleaved); the table shows each scenario's median round.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Scenarios to skip: none, floor, rcapture, bpftrace, sslsniff, capacity (comma-separated).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// The rcapture binary (default: next to this one).
    #[arg(long)]
    rcapture: Option<PathBuf>,
    /// The tls-loadgen binary (default: next to this one).
    #[arg(long)]
    loadgen: Option<PathBuf>,
    /// bpftrace.
    #[arg(long, default_value = "bpftrace")]
    bpftrace: PathBuf,
    /// BCC sslsniff, as printed by /work/shared/tools/peers-setup.sh.
    #[arg(long, default_value = "/usr/local/lib/rcapture-peers/sslsniff")]
    sslsniff: PathBuf,
    /// libssl.so.3 to hook (default: the system one).
    #[arg(long)]
    libssl: Option<PathBuf>,
    /// Cap on each scenario's load (seconds).
    #[arg(long, default_value_t = 180)]
    load_timeout: u64,
    /// Cap on waiting for a peer's output to settle after the load (seconds).
    #[arg(long, default_value_t = 120)]
    drain_cap: u64,
    /// Records per capacity run.
    #[arg(long, default_value_t = 4_000_000)]
    capacity_records: u64,
    /// Records per trigger in the capacity runs.
    #[arg(long, default_value_t = 256)]
    capacity_batch: u32,
    /// Payload bytes per synthetic record.
    #[arg(long, default_value_t = 256)]
    capacity_payload: u32,
    /// Wakeup policy of the capacity generator (rcapture's rc_output policy is
    /// `crossing`; one extra row always measures `backlog`, its former one).
    #[arg(long, value_enum, default_value = "crossing")]
    capacity_wakeup: Wakeup,
    /// Ring size of the capacity runs (MiB).
    #[arg(long, default_value_t = 32)]
    ring_mib: usize,
    /// Skip the pass with kernel.bpf_stats_enabled=1 after the rounds (no per-program run times).
    #[arg(long)]
    no_bpf_stats: bool,
    /// Where tls.json and tls.md go.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    results: PathBuf,
    /// Keep the tracers' output files (in /tmp/rcapture-perf.PID).
    #[arg(long)]
    keep: bool,
}

/// Restores kernel.bpf_stats_enabled on every path.
struct BpfStats(Option<String>);

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Some(old) = &self.0
            && let Err(e) = std::fs::write(BPF_STATS, old)
        {
            eprintln!("perf: cannot restore {BPF_STATS}: {e}");
        }
    }
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().unwrap_or(Path::new(".")).join(name))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("perf-tls loads BPF programs: run it as root");
    }
    let skip = |s: &str| args.skip.iter().any(|k| k == s);
    let rcapture = match &args.rcapture {
        Some(p) => p.clone(),
        None => sibling("rcapture")?,
    };
    let loadgen = match &args.loadgen {
        Some(p) => p.clone(),
        None => sibling("tls-loadgen")?,
    };
    if !loadgen.exists() {
        bail!(
            "{} missing: cargo build --release -p rcapture-perf",
            loadgen.display()
        );
    }
    if !skip("rcapture") && !rcapture.exists() {
        bail!(
            "{} missing: cargo build --release -p rcapture",
            rcapture.display()
        );
    }
    let target = rcapture_ebpf::OpensslTarget::discover(args.libssl.as_deref(), None)?;
    let work_dir = std::env::temp_dir().join(format!("rcapture-perf.{}", std::process::id()));
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("creating {}", work_dir.display()))?;
    let loadavg = sys::loadavg();
    let cpus = aya::util::online_cpus().map_err(|(p, e)| anyhow::anyhow!("{p}: {e}"))?;

    let cfg = ScenarioConfig {
        loadgen,
        calls: args.calls,
        payload: args.payload,
        load_timeout: Duration::from_secs(args.load_timeout),
        drain_cap: Duration::from_secs(args.drain_cap),
        ready_within: Duration::from_secs(90),
        paths: TracerPaths {
            rcapture,
            bpftrace: args.bpftrace.clone(),
            sslsniff: args.sslsniff.clone(),
            libssl: target.libssl().to_path_buf(),
            work_dir: work_dir.clone(),
        },
    };
    let all = [
        ("none", Tracing::None),
        ("floor", Tracing::Floor),
        ("rcapture", Tracing::Proc(ProcTracer::Rcapture)),
        ("bpftrace", Tracing::Proc(ProcTracer::Bpftrace)),
        ("sslsniff", Tracing::Proc(ProcTracer::Sslsniff)),
    ];
    let mut results = Vec::new();
    for round in 1..=args.rounds.max(1) {
        // Odd rounds run the scenarios forward, even rounds backward, so that
        // drifting background load does not favour one scenario.
        let mut order = all.to_vec();
        if round % 2 == 0 {
            order.reverse();
        }
        for (key, tracing) in order {
            if skip(key) {
                continue;
            }
            eprintln!("perf: round {round}: {} ...", tracing.name());
            let r = scenario::run(&cfg, tracing);
            eprintln!(
                "perf: {}: {} ({} writes/s, delivered {:?} of {:?})",
                tracing.name(),
                r.outcome,
                r.load.as_ref().map_or(0.0, |l| l.writes_per_sec()).round(),
                r.delivered,
                r.expected
            );
            results.push(r);
        }
    }

    // BPF run times come from a separate pass: bpf_stats adds two clock reads
    // to every program run (~50–80 ns here), which would weigh on rcapture
    // (more programs, and one on every syscall) more than on the floor.
    let mut stats_pass = Vec::new();
    if !args.no_bpf_stats {
        let _stats = match sys::set_sysctl(BPF_STATS, "1") {
            Ok(old) => Some(BpfStats(Some(old))),
            Err(e) => {
                eprintln!("perf: cannot enable {BPF_STATS}: {e}");
                None
            }
        };
        if _stats.is_some() {
            for (key, tracing) in all
                .iter()
                .filter(|(k, _)| matches!(*k, "floor" | "rcapture"))
            {
                if skip(key) {
                    continue;
                }
                eprintln!("perf: bpf_stats pass: {} ...", tracing.name());
                stats_pass.push(scenario::run(&cfg, *tracing));
            }
        }
    }

    let mut cap = Vec::new();
    if !skip("capacity") {
        let ccfg = CapacityConfig {
            records: args.capacity_records,
            batch: args.capacity_batch,
            payload: args.capacity_payload,
            ring_bytes: args.ring_mib << 20,
            wakeup: args.capacity_wakeup,
        };
        let mut placements = vec![Placement::SameCpu(cpus[0])];
        if cpus.len() > 1 {
            placements.push(Placement::Split {
                trigger: cpus[1],
                worker: cpus[0],
            });
        }
        let mut runs = Vec::new();
        for &p in &placements {
            for c in [
                Consumer::RawDrain,
                Consumer::WorkerEncode,
                Consumer::WorkerText,
            ] {
                runs.push((ccfg, p, c));
            }
        }
        if ccfg.wakeup != Wakeup::Backlog {
            // The producer-side cost of the backlog policy (rcapture's former one), for comparison.
            let p = *placements.last().unwrap_or(&placements[0]);
            let backlog = CapacityConfig {
                wakeup: Wakeup::Backlog,
                ..ccfg
            };
            runs.push((backlog, p, Consumer::WorkerEncode));
        }
        for (ccfg, p, c) in runs {
            eprintln!("perf: capacity {p:?} {c:?} {:?} ...", ccfg.wakeup);
            match capacity::run(&ccfg, p, c) {
                Ok(r) => cap.push(r),
                Err(e) => eprintln!("perf: capacity {p:?} {c:?} failed: {e:#}"),
            }
        }
    }

    let meta = serde_json::json!({
        "calls": args.calls,
        "rounds": args.rounds.max(1),
        "payload": args.payload,
        "cpus": cpus.len(),
        "loadavg": loadavg,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "libssl": target.libssl(),
        "openssl": target.version(),
        "bpf_stats": if args.no_bpf_stats { "off" } else { "separate pass (floor, rcapture); off in the rounds" },
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    });
    let json = report::to_json(meta, &results, &stats_pass, &cap);
    let md = report::to_markdown(&json);
    std::fs::create_dir_all(&args.results)?;
    std::fs::write(
        args.results.join("tls.json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )?;
    std::fs::write(args.results.join("tls.md"), &md)?;
    println!("{md}");
    if args.keep {
        eprintln!("perf: tracer outputs kept in {}", work_dir.display());
    } else if let Err(e) = std::fs::remove_dir_all(&work_dir) {
        eprintln!("perf: cannot remove {}: {e}", work_dir.display());
    }
    Ok(())
}
