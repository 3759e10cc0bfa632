//! `perf-report`: runs the whole performance suite — the criterion benches
//! (`cargo bench -p rcapture-benches`), `perf-tls` and `perf-fanout` — reads
//! back their machine-readable results and writes `summary.json` (every
//! metric, reference, ratio, target, the machine) and `summary.md` (the
//! short table), then prints the table.

use anyhow::{Context as _, bail};
use clap::Parser;
use rcapture_perf::suite;
use rcapture_perf::suite::criterion::{self, BenchSet};
use rcapture_perf::suite::harness::{self, FanoutReport, TlsReport};
use rcapture_perf::suite::machine::Machine;
use rcapture_perf::suite::metrics::{self, Inputs};
use rcapture_perf::suite::render::{Mode, Summary};
use rcapture_perf::suite::run::{self, Outcome, PartRun};
use rcapture_perf::suite::table::METRICS;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, SystemTime};

#[derive(Debug, Parser)]
#[command(
    about = "Runs rcapture's whole performance suite (criterion benches, perf-tls, perf-fanout) and writes summary.{json,md}"
)]
struct Args {
    /// Small sizes everywhere: a smoke test of the whole suite in a few
    /// minutes. Its results go to target/perf-report/quick unless --results is given.
    #[arg(long)]
    quick: bool,
    /// Where summary.{json,md} and the harnesses' tls.* and fanout.* go
    /// [default: perf/results; with --quick: target/perf-report/quick].
    #[arg(long)]
    results: Option<PathBuf>,
    /// What to skip: the parts benches, tls, fanout; and perf-tls's own
    /// none, floor, rcapture, bpftrace, sslsniff, capacity (passed to its --skip).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// perf-tls: SSL_write calls per scenario [default: perf-tls's 200000; --quick: 20000].
    #[arg(long)]
    calls: Option<u64>,
    /// perf-tls: rounds of the TLS scenarios [default: perf-tls's 5; --quick: 1].
    #[arg(long)]
    rounds: Option<u32>,
    /// Criterion warm-up per bench, seconds [default: 1; --quick: 0.3].
    #[arg(long)]
    warm_up_time: Option<f64>,
    /// Criterion measurement per bench, seconds [default: 3; --quick: 1].
    #[arg(long)]
    measurement_time: Option<f64>,
    /// Criterion samples per bench (at least 10) [default: criterion's 100; --quick: 20].
    #[arg(long)]
    sample_size: Option<u32>,
    /// Cargo features of rcapture-benches: zlib-rs runs the raw zlib-rs
    /// reference; add zlib-ng to compare it too (needs cmake). Empty for none.
    #[arg(long, default_value = "zlib-rs")]
    bench_features: String,
    /// One more argument for the criterion benches, e.g. a filter (repeatable).
    #[arg(long, allow_hyphen_values = true)]
    criterion_arg: Vec<String>,
    /// One more argument for perf-tls, e.g. --tls-arg=--keep (repeatable;
    /// replaces the mode's value of the same flag).
    #[arg(long, allow_hyphen_values = true)]
    tls_arg: Vec<String>,
    /// One more argument for perf-fanout, e.g. --fanout-arg=--clients=1,8
    /// (repeatable; replaces the mode's value of the same flag).
    #[arg(long, allow_hyphen_values = true)]
    fanout_arg: Vec<String>,
    /// Criterion's output directory for this run (CRITERION_HOME; only
    /// results written by this run are read) [default: target/perf-report/<mode>/criterion].
    #[arg(long)]
    criterion_home: Option<PathBuf>,
    /// The workspace whose benches run [default: the one this was built from].
    #[arg(long)]
    workspace: Option<PathBuf>,
    /// cargo [default: $CARGO, else cargo].
    #[arg(long)]
    cargo: Option<PathBuf>,
    /// Run nothing: summarise the results already in --results and --criterion-home.
    #[arg(long)]
    reuse: bool,
}

/// The parts perf-report runs itself.
const PARTS: [&str; 3] = ["benches", "tls", "fanout"];
/// Names perf-tls's --skip takes.
const TLS_SKIPS: [&str; 6] = [
    "none", "floor", "rcapture", "bpftrace", "sslsniff", "capacity",
];

/// Sizes of a mode: criterion options and the harnesses' arguments.
struct Sizes {
    warm_up: f64,
    measurement: f64,
    sample_size: Option<u32>,
    tls: &'static [(&'static str, &'static str)],
    fanout: &'static [(&'static str, &'static str)],
}

const FULL: Sizes = Sizes {
    warm_up: 1.0,
    measurement: 3.0,
    sample_size: None,
    tls: &[],
    fanout: &[],
};

const QUICK: Sizes = Sizes {
    warm_up: 0.3,
    measurement: 1.0,
    sample_size: Some(20),
    tls: &[
        ("--calls", "20000"),
        ("--rounds", "1"),
        ("--capacity-records", "400000"),
        ("--load-timeout", "60"),
        ("--drain-cap", "30"),
    ],
    fanout: &[
        ("--events", "20000"),
        ("--events-64", "5000"),
        ("--warmup", "2000"),
        ("--reps", "1"),
        ("--paced-load", "0"),
    ],
};

/// The mode's `(flag, value)` pairs, then `extra`; a pair whose flag `extra`
/// (or an explicit option in `overrides`) also sets is dropped.
fn harness_args(
    defaults: &[(&str, &str)],
    overrides: &[(&str, String)],
    extra: &[String],
) -> Vec<String> {
    let sets = |flag: &str| {
        overrides.iter().any(|(f, _)| *f == flag)
            || extra
                .iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
    };
    let mut out = Vec::new();
    for (flag, value) in defaults {
        if !sets(flag) {
            out.extend([flag.to_string(), value.to_string()]);
        }
    }
    for (flag, value) in overrides {
        if !extra
            .iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
        {
            out.extend([flag.to_string(), value.clone()]);
        }
    }
    out.extend(extra.iter().cloned());
    out
}

/// Where everything is.
struct Paths {
    workspace: PathBuf,
    results: PathBuf,
    criterion_home: PathBuf,
    perf_tls: PathBuf,
    perf_fanout: PathBuf,
    cargo: PathBuf,
}

impl Paths {
    fn new(args: &Args) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating perf-report")?;
        let bin_dir = exe.parent().unwrap_or(Path::new(".")).to_path_buf();
        // target/release/perf-report → target/
        let target = bin_dir.parent().unwrap_or(&bin_dir).to_path_buf();
        let mode_dir = target
            .join("perf-report")
            .join(if args.quick { "quick" } else { "full" });
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        Ok(Self {
            workspace: args
                .workspace
                .clone()
                .unwrap_or_else(|| manifest.parent().unwrap_or(manifest).to_path_buf()),
            results: args.results.clone().unwrap_or_else(|| {
                if args.quick {
                    target.join("perf-report").join("quick")
                } else {
                    manifest.join("results")
                }
            }),
            criterion_home: args
                .criterion_home
                .clone()
                .unwrap_or_else(|| mode_dir.join("criterion")),
            perf_tls: bin_dir.join("perf-tls"),
            perf_fanout: bin_dir.join("perf-fanout"),
            cargo: args
                .cargo
                .clone()
                .or_else(|| std::env::var_os("CARGO").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("cargo")),
        })
    }
}

fn bench_command(args: &Args, sizes: &Sizes, paths: &Paths) -> Command {
    let mut cmd = Command::new(&paths.cargo);
    cmd.current_dir(&paths.workspace)
        .env("CRITERION_HOME", &paths.criterion_home)
        .args(["bench", "-p", "rcapture-benches"]);
    if !args.bench_features.trim().is_empty() {
        cmd.args(["--features", args.bench_features.trim()]);
    }
    cmd.arg("--")
        .arg("--warm-up-time")
        .arg(args.warm_up_time.unwrap_or(sizes.warm_up).to_string())
        .arg("--measurement-time")
        .arg(
            args.measurement_time
                .unwrap_or(sizes.measurement)
                .to_string(),
        );
    if let Some(n) = args.sample_size.or(sizes.sample_size) {
        cmd.arg("--sample-size").arg(n.to_string());
    }
    cmd.arg("--noplot").args(&args.criterion_arg);
    cmd
}

fn tls_command(args: &Args, sizes: &Sizes, paths: &Paths) -> Command {
    let mut overrides = Vec::new();
    if let Some(c) = args.calls {
        overrides.push(("--calls", c.to_string()));
    }
    if let Some(r) = args.rounds {
        overrides.push(("--rounds", r.to_string()));
    }
    let mut cmd = Command::new(&paths.perf_tls);
    cmd.arg("--results").arg(&paths.results);
    // perf-tls's --skip adds up over repeats: never replaced.
    let skips: Vec<&str> = args
        .skip
        .iter()
        .map(String::as_str)
        .filter(|s| TLS_SKIPS.contains(s))
        .collect();
    if !skips.is_empty() {
        cmd.arg("--skip").arg(skips.join(","));
    }
    cmd.args(harness_args(sizes.tls, &overrides, &args.tls_arg));
    cmd
}

fn fanout_command(args: &Args, sizes: &Sizes, paths: &Paths) -> Command {
    let mut cmd = Command::new(&paths.perf_fanout);
    cmd.arg("--out")
        .arg(&paths.results)
        .args(harness_args(sizes.fanout, &[], &args.fanout_arg));
    cmd
}

/// Runs a harness binary that writes `file` into the results directory.
fn run_harness(part: &'static str, mut cmd: Command, file: &Path) -> PartRun {
    let started = SystemTime::now() - Duration::from_secs(1);
    let mut r = run::run_part(part, &mut cmd);
    if r.outcome == Outcome::Ran && suite::written_before(file, Some(started)) {
        r.outcome = Outcome::Failed;
        r.reason = Some(format!("exited 0 but did not write {}", file.display()));
    }
    r
}

/// A part's data, or why it has none.
fn part_data<T>(part: &PartRun, read: impl FnOnce() -> anyhow::Result<T>) -> Result<T, String> {
    match part.outcome {
        Outcome::Skipped => Err(format!(
            "{} skipped: {}",
            part.part,
            part.reason.as_deref().unwrap_or("")
        )),
        Outcome::Failed => Err(format!(
            "{} failed: {}",
            part.part,
            part.reason.as_deref().unwrap_or("")
        )),
        Outcome::Ran | Outcome::Reused => read().map_err(|e| format!("{e:#}")),
    }
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    for s in &args.skip {
        if !PARTS.contains(&s.as_str()) && !TLS_SKIPS.contains(&s.as_str()) {
            bail!(
                "--skip {s:?}: not one of {}, {}",
                PARTS.join(", "),
                TLS_SKIPS.join(", ")
            );
        }
    }
    let sizes = if args.quick { &QUICK } else { &FULL };
    let mode = if args.quick { Mode::Quick } else { Mode::Full };
    let paths = Paths::new(&args)?;
    let skip = |p: &str| args.skip.iter().any(|s| s == p);
    std::fs::create_dir_all(&paths.results)
        .with_context(|| format!("creating {}", paths.results.display()))?;
    let tls_file = paths.results.join("tls.json");
    let fanout_file = paths.results.join("fanout.json");
    let mut machine = Machine::start(&paths.workspace);
    eprintln!(
        "perf-report: {} run; results in {}",
        if args.quick { "quick" } else { "full" },
        paths.results.display()
    );

    let bench_started = SystemTime::now() - Duration::from_secs(1);
    let reused = |part| PartRun {
        part,
        outcome: Outcome::Reused,
        reason: Some("--reuse: earlier results, not run now".into()),
        command: Vec::new(),
        secs: 0.0,
    };
    let benches = if args.reuse {
        reused("benches")
    } else if skip("benches") {
        PartRun::skipped("benches", "--skip benches")
    } else {
        run::run_part("benches", &mut bench_command(&args, sizes, &paths))
    };
    let tls = if args.reuse {
        reused("tls")
    } else if skip("tls") {
        PartRun::skipped("tls", "--skip tls")
    } else if !machine.root {
        PartRun::skipped("tls", "not root (perf-tls loads BPF programs)")
    } else if !paths.perf_tls.exists() {
        PartRun::failed(
            "tls",
            format!(
                "{} missing: cargo build --release -p rcapture -p rcapture-perf",
                paths.perf_tls.display()
            ),
            Vec::new(),
        )
    } else {
        run_harness("tls", tls_command(&args, sizes, &paths), &tls_file)
    };
    let fanout = if args.reuse {
        reused("fanout")
    } else if skip("fanout") {
        PartRun::skipped("fanout", "--skip fanout")
    } else if !paths.perf_fanout.exists() {
        PartRun::failed(
            "fanout",
            format!(
                "{} missing: cargo build --release -p rcapture-perf",
                paths.perf_fanout.display()
            ),
            Vec::new(),
        )
    } else {
        run_harness("fanout", fanout_command(&args, sizes, &paths), &fanout_file)
    };
    machine.finish();

    // A failed bench run may still have finished some benches: read what it wrote.
    let since = (!args.reuse).then_some(bench_started);
    let bench_data: Result<BenchSet, String> = if benches.outcome == Outcome::Skipped {
        Err("benches skipped: --skip benches".into())
    } else {
        match criterion::load(&paths.criterion_home, since) {
            Ok(set) if set.is_empty() => Err(match &benches.reason {
                Some(r) if benches.outcome == Outcome::Failed => format!("benches failed: {r}"),
                _ => format!("no criterion results in {}", paths.criterion_home.display()),
            }),
            Ok(set) => Ok(set),
            Err(e) => Err(format!("{e:#}")),
        }
    };
    if let Ok(set) = &bench_data {
        for u in &set.unreadable {
            eprintln!("perf-report: {u}");
        }
    }
    let inputs = Inputs {
        benches: bench_data,
        tls: part_data::<TlsReport>(&tls, || harness::read_tls(&tls_file)),
        fanout: part_data::<FanoutReport>(&fanout, || harness::read_fanout(&fanout_file)),
    };
    let parts = [benches, tls, fanout];
    let metrics = metrics::evaluate_all(METRICS, &inputs);
    let summary = Summary::new(
        mode,
        std::env::args().collect(),
        &machine,
        &parts,
        &metrics,
        &inputs,
    );
    let md = summary.to_markdown();
    let json_path = paths.results.join("summary.json");
    let md_path = paths.results.join("summary.md");
    std::fs::write(&json_path, serde_json::to_string_pretty(&summary)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    println!("{md}");
    eprintln!(
        "perf-report: wrote {} and {}",
        json_path.display(),
        md_path.display()
    );
    Ok(if parts.iter().any(|p| p.outcome == Outcome::Failed) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_through_arguments_replace_the_modes() {
        let defaults = [("--calls", "20000"), ("--rounds", "1")];
        assert_eq!(
            harness_args(&defaults, &[], &[]),
            ["--calls", "20000", "--rounds", "1"]
        );
        // An explicit option replaces the mode's value...
        assert_eq!(
            harness_args(&defaults, &[("--calls", "500".into())], &[]),
            ["--rounds", "1", "--calls", "500"]
        );
        // ... and a pass-through argument replaces both.
        assert_eq!(
            harness_args(
                &defaults,
                &[("--calls", "500".into())],
                &["--calls=7".into(), "--keep".into()]
            ),
            ["--rounds", "1", "--calls=7", "--keep"]
        );
    }

    #[test]
    fn skipped_and_failed_parts_have_no_data() {
        let skipped = PartRun::skipped("tls", "not root (perf-tls loads BPF programs)");
        let r: Result<(), String> = part_data(&skipped, || Ok(()));
        assert_eq!(
            r,
            Err("tls skipped: not root (perf-tls loads BPF programs)".into())
        );
        let failed = PartRun::failed("fanout", "exit status: 1", Vec::new());
        assert_eq!(
            part_data(&failed, || Ok(())),
            Err("fanout failed: exit status: 1".into())
        );
        let ran = PartRun {
            outcome: Outcome::Ran,
            ..failed
        };
        assert_eq!(part_data(&ran, || Ok(5)), Ok(5));
        assert_eq!(
            part_data::<()>(&ran, || bail!("parsing x")),
            Err("parsing x".into())
        );
    }
}
