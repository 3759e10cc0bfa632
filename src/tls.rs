//! `rcapture tls`: load the OpenSSL probes, run one pinned worker per CPU,
//! write text or a key log, and on SIGINT/SIGTERM detach, drain and exit 0.

use crate::cli::{TlsArgs, TlsMode};
use anyhow::{Context, bail};
use rcapture_core::event::Clock;
use rcapture_core::output::{FramePoolConfig, StreamOutput};
use rcapture_core::text::PayloadStyle;
use rcapture_core::worker::{LiveFilter, Worker, WorkerConfig};
use rcapture_ebpf::{OpensslTarget, TlsProbeOptions, TlsProbes};
use signal_hook::consts::{SIGINT, SIGTERM};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub fn run(args: TlsArgs) -> anyhow::Result<()> {
    let keylog_path = match (args.mode, &args.keylogfile) {
        (TlsMode::Keylog, None) => bail!("-m keylog needs --keylogfile FILE"),
        (TlsMode::Keylog, Some(p)) => Some(p.clone()),
        (TlsMode::Text, Some(_)) => bail!("--keylogfile is only used with -m keylog"),
        (TlsMode::Text, None) => None,
    };
    if args.max_payload == 0 {
        bail!("--max-payload must be at least 1 byte");
    }
    if args.per_cpu_map_size < 4 {
        bail!("--per-cpu-map-size must be at least 4 KiB");
    }
    // Signals are routed to a dedicated iterator before any thread starts.
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing SIGINT/SIGTERM handlers")?;

    let target = OpensslTarget::discover(args.libssl.as_deref(), args.pid)?;
    let opts = TlsProbeOptions {
        max_payload: args.max_payload,
        ring_bytes_per_cpu: args.per_cpu_map_size * 1024,
        pid: args.pid,
        uid: args.uid,
    };
    let mut probes = TlsProbes::load(&target, &opts)?;
    for w in probes.warnings() {
        eprintln!("rcapture: warning: {w}");
    }
    let rings = probes.take_rings();
    let workers = rings.len();
    let pool = FramePoolConfig::default();
    let mut output = match &keylog_path {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening key log file {}", path.display()))?;
            StreamOutput::keylog(Box::new(file), workers, pool)
        }
        None => {
            let style = if args.hex {
                PayloadStyle::Hex
            } else {
                PayloadStyle::Escaped
            };
            StreamOutput::text(Box::new(std::io::stdout()), style, workers, pool)
        }
    };
    let filter = Arc::new(LiveFilter::new(args.pid, args.uid));
    let clock = Clock::now();
    let stop = Arc::new(AtomicBool::new(false));
    let config = WorkerConfig {
        max_payload: args.max_payload as usize,
        ..WorkerConfig::default()
    };
    let mut stats = Vec::with_capacity(workers);
    let mut threads = Vec::with_capacity(workers);
    for (ring, sink) in rings.into_iter().zip(std::mem::take(&mut output.sinks)) {
        let cpu = rcapture_core::ring::RecordRing::cpu(&ring);
        let worker = Worker::new(ring, config, clock, Arc::clone(&filter), vec![sink]);
        stats.push(worker.stats());
        let stop = Arc::clone(&stop);
        threads.push(
            std::thread::Builder::new()
                .name(format!("rcapture-cpu{cpu}"))
                .spawn(move || worker.run(&stop))
                .context("starting a worker thread")?,
        );
    }
    eprintln!(
        "rcapture: probing {} (OpenSSL {}) with {} probes, {} workers",
        target.libssl().display(),
        target.version(),
        probes.probe_count(),
        workers
    );
    eprintln!("rcapture: ready");

    let sig = signals.forever().next();
    // Stop new records first, then let the workers drain what is already in the rings.
    probes.detach();
    stop.store(true, Ordering::Release);
    for t in threads {
        if t.join().is_err() {
            eprintln!("rcapture: a worker thread panicked");
        }
    }
    let out_stats = output.finish().context("writing the output")?;
    std::io::stdout().flush().ok();

    let kernel = probes.counters().unwrap_or_default();
    let lost: u64 = kernel.iter().map(|c| c.lost).sum();
    let sum = |f: fn(&rcapture_core::worker::WorkerStats) -> &std::sync::atomic::AtomicU64| -> u64 {
        stats.iter().map(|s| f(s).load(Ordering::Relaxed)).sum()
    };
    eprintln!(
        "rcapture: stopped by signal {}: {} events, {} written, {} lost in kernel ring buffers, \
         {} output drops, {} calls truncated ({} bytes), {} incomplete calls, {} malformed records, {} filtered",
        sig.unwrap_or(0),
        sum(|s| &s.events),
        out_stats.delivered.load(Ordering::Relaxed),
        lost,
        out_stats.dropped.load(Ordering::Relaxed),
        sum(|s| &s.truncated_events),
        sum(|s| &s.truncated_bytes),
        sum(|s| &s.incomplete_calls),
        sum(|s| &s.decode_errors),
        sum(|s| &s.filtered),
    );
    Ok(())
}
