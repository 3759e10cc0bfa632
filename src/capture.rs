//! The one capture pipeline of every subcommand: resolve the modules'
//! targets, load them on one ring buffer per CPU, run one pinned worker per
//! CPU, write text or a key log, serve the event stream and API, and on
//! SIGINT, SIGTERM or SIGHUP (its terminal went) stop the probes, drain,
//! flush, detach and exit 0 with the ledger.

use crate::cli::{CaptureArgs, OutputMode, ServerArgs};
use crate::control::CaptureControl;
use crate::discover::{Discovery, Finder, Found, HoldGuard, Shared};
use crate::forward_args::{event_file_config, forward_config};
use anyhow::{Context, bail};
use rcapture_core::event::Clock;
use rcapture_core::output::{FramePoolConfig, OutputStats, StreamOutput};
use rcapture_core::worker::{EventSink, LiveFilter, Worker, WorkerConfig};
use rcapture_ebpf::libwatch::LibWatch;
use rcapture_ebpf::module::{self, Target, TargetRequest};
use rcapture_ebpf::{
    Capture, CaptureOptions, Interface, PacketCapture, error_chain, packet_target,
};
use rcapture_net::access::AccessConfig;
use rcapture_net::config::StartSettings;
use rcapture_net::control::LiveSettings;
use rcapture_net::eventfile::EventFileConfig;
use rcapture_net::eventfile::rotate::open_with_mode;
use rcapture_net::forward::config::ForwardConfig;
use rcapture_net::pcapng::{PcapConfig, PcapInterface, PcapOutput, PcapStats};
use rcapture_net::publish::Publisher;
use rcapture_net::{Hub, Limits, Server, ServerConfig};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The server settings, validated.
fn server_config(
    a: &ServerArgs,
    forward: Option<ForwardConfig>,
    event_file: Option<EventFileConfig>,
    start: StartSettings,
    initial: LiveSettings,
) -> anyhow::Result<Option<ServerConfig>> {
    let listen: Option<SocketAddr> = match a.listen.as_str() {
        "none" => None,
        s => Some(
            s.parse()
                .with_context(|| format!("--listen {s:?} is not IP:PORT or `none`"))?,
        ),
    };
    if listen.is_none() && a.ecaptureq.is_some() {
        bail!("--ecaptureq needs the server: remove --listen none");
    }
    if listen.is_none() && forward.is_none() && event_file.is_none() {
        return Ok(None);
    }
    let auth_token = crate::secrets::auth_token(a)?;
    for addr in listen.into_iter().chain(a.ecaptureq) {
        if !addr.ip().is_loopback() && auth_token.is_none() && !a.insecure {
            bail!(
                "listening on {addr}, which is not a loopback address, needs --auth-token TOKEN (or --insecure to serve it unauthenticated)"
            );
        }
    }
    for o in &a.allow_origin {
        let rest = o
            .strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"));
        if rest.is_none_or(|r| r.is_empty() || r.trim_end_matches('/').contains('/')) {
            bail!("--allow-origin {o:?} is not an origin such as http://host:port");
        }
    }
    if a.heartbeat_secs == 0 {
        bail!("--heartbeat-secs must be at least 1");
    }
    let mut limits = Limits {
        max_connections: a.max_connections.max(1),
        requests_per_sec: a.max_requests_per_sec.max(1),
        stuck_deadline: Duration::from_secs(a.slow_client_secs),
        ..Limits::default()
    };
    limits.client_queue.frames = a.client_queue_frames.max(1);
    limits.client_queue.bytes = a.client_queue_bytes.max(1024);
    limits.client_spill_bytes = a.client_spill_bytes;
    limits.spill_budget_bytes = a.spill_budget_bytes;
    Ok(Some(ServerConfig {
        listen,
        ecaptureq: a.ecaptureq,
        heartbeat: Duration::from_secs(a.heartbeat_secs),
        auth_token,
        access: AccessConfig {
            insecure: a.insecure,
            allow_uids: a.allow_uid.clone(),
            allow_gids: a.allow_gid.clone(),
            allow_origins: a.allow_origin.clone(),
        },
        limits,
        pool: Default::default(),
        start,
        initial,
        forward,
        event_file,
    }))
}

/// What `-m pcap` captures and where it writes, checked.
struct PcapSetup {
    capture: PacketCapture,
    config: PcapConfig,
}

/// The `-m pcap` flags: required with it, refused without it.
fn pcap_setup(args: &CaptureArgs, clock: Clock) -> anyhow::Result<Option<PcapSetup>> {
    let p = &args.pcap;
    if args.mode != OutputMode::Pcap {
        if p.pcapfile.is_some() || !p.ifname.is_empty() || p.pcap_filter.is_some() {
            bail!("--pcapfile, -i/--ifname and --pcap-filter are only used with -m pcap");
        }
        return Ok(None);
    }
    let Some(path) = p.pcapfile.clone() else {
        bail!("-m pcap needs --pcapfile FILE");
    };
    if p.ifname.is_empty() {
        bail!("-m pcap needs -i IFACE (the interface whose packets are captured)");
    }
    let mut interfaces: Vec<Interface> = Vec::with_capacity(p.ifname.len());
    for name in &p.ifname {
        if interfaces.iter().any(|i| &i.name == name) {
            bail!("-i {name} is given twice");
        }
        interfaces.push(Interface::lookup(name).with_context(|| format!("-i {name}"))?);
    }
    let mut config = PcapConfig::new(
        path,
        interfaces
            .iter()
            .map(|i| PcapInterface {
                name: i.name.clone(),
                ifindex: i.ifindex,
            })
            .collect(),
        p.snaplen,
    );
    config.max_bytes = p.pcap_max_bytes;
    config.mode = args.file_mode;
    config.hold = Duration::from_millis(p.pcap_hold_ms);
    config.clock = clock;
    Ok(Some(PcapSetup {
        capture: PacketCapture {
            interfaces,
            snap_len: p.snaplen,
            filter: p.pcap_filter.clone().unwrap_or_default(),
        },
        config,
    }))
}

/// Resolves the target of the subcommand's module and of every `--modules`
/// one; with `-m pcap` the conn module captures the packets too. `tls`
/// with neither a path nor a pid finds every OpenSSL in use: its first file
/// is among the targets, the others come back in the [`Discovered`].
fn targets(
    primary: &str,
    req: TargetRequest,
    args: &CaptureArgs,
    packets: Option<&PacketCapture>,
) -> anyhow::Result<(Vec<Target>, Option<Discovered>)> {
    let (mut t, d) = module_targets(primary, req, args)?;
    if let Some(p) = packets {
        t.retain(|t| t.module.name != "conn");
        t.push(packet_target(p)?);
    }
    Ok((t, d))
}

/// The `tls` files found at start-up beyond the first, and what knows them.
#[derive(Debug)]
struct Discovered {
    finder: Finder,
    /// The first tls target, when it was found through a process.
    first: Option<Found>,
    rest: Vec<(Found, Target)>,
}

/// Discovery applies to `tls` given neither a file nor a process.
fn discovers(name: &str, req: &TargetRequest) -> bool {
    name == "tls" && req.path.is_none() && req.pid.is_none() && req.symbols.is_empty()
}

fn discover_tls(req: &TargetRequest) -> anyhow::Result<(Target, Discovered)> {
    let desc = module::module("tls").context("the tls module")?;
    let mut finder = Finder::default();
    let system = (desc.resolve)(req);
    if let Ok(t) = &system {
        finder.system(t);
    }
    let mut rest = finder.scan(None);
    let (first, found) = match system {
        Ok(t) => (t, None),
        Err(e) if rest.is_empty() => return Err(e.into()),
        Err(e) => {
            eprintln!("rcapture: note: module tls: {e}");
            let (f, t) = rest.remove(0);
            (t, Some(f))
        }
    };
    Ok((
        first,
        Discovered {
            finder,
            first: found,
            rest,
        },
    ))
}

fn module_targets(
    primary: &str,
    req: TargetRequest,
    args: &CaptureArgs,
) -> anyhow::Result<(Vec<Target>, Option<Discovered>)> {
    let mut wanted = vec![(primary, req)];
    for extra in &args.modules {
        if wanted.iter().any(|(n, _)| *n == extra.name) {
            bail!("--modules: module {} is already captured", extra.name);
        }
        wanted.push((extra.name.as_str(), args.request(extra.path.clone())));
    }
    let mut discovered = None;
    let mut targets = Vec::with_capacity(wanted.len());
    for (name, req) in wanted {
        let desc = module::module(name).with_context(|| {
            format!(
                "unknown module {name:?} (available: {})",
                module::module_names()
            )
        })?;
        if discovers(name, &req) {
            let (t, d) = discover_tls(&req)?;
            targets.push(t);
            discovered = Some(d);
        } else {
            targets.push((desc.resolve)(&req)?);
        }
    }
    Ok((targets, discovered))
}

/// Runs a capture of `primary` (the subcommand's module, with `req` its
/// target request) and of the `--modules` ones.
pub fn run(primary: &str, req: TargetRequest, args: CaptureArgs) -> anyhow::Result<()> {
    let keylog_path = match (args.mode, &args.keylogfile) {
        (OutputMode::Keylog, None) => bail!("-m keylog needs --keylogfile FILE"),
        (OutputMode::Keylog, Some(p)) => Some(p.clone()),
        (_, Some(_)) => bail!("--keylogfile is only used with -m keylog"),
        (_, None) => None,
    };
    if args.max_payload == 0 {
        bail!("--max-payload must be at least 1 byte");
    }
    if args.per_cpu_map_size < 4 {
        bail!("--per-cpu-map-size must be at least 4 KiB");
    }
    let initial = LiveSettings {
        pid: args.pid,
        uid: args.uid,
        hex: args.hex,
    };
    let start = StartSettings {
        per_cpu_map_size: args.per_cpu_map_size as u64,
        truncate_size: u64::from(args.max_payload),
    };
    let forward = forward_config(&args.forward)?;
    let event_file = event_file_config(&args.forward, args.file_mode);
    let server_cfg = server_config(&args.server, forward, event_file, start, initial)?;
    if args.mode == OutputMode::None && server_cfg.is_none() {
        bail!(
            "-m none with --listen none and neither --forward nor --event-file would output nothing"
        );
    }
    // Signals are routed to a dedicated iterator before any thread starts.
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("installing SIGINT/SIGTERM/SIGHUP handlers")?;

    let clock = Clock::now();
    let pcap = pcap_setup(&args, clock)?;
    let (targets, discovered) = targets(primary, req, &args, pcap.as_ref().map(|p| &p.capture))?;
    let opts = CaptureOptions {
        max_payload: args.max_payload,
        ring_bytes_per_cpu: args.per_cpu_map_size * 1024,
        pid: args.pid,
        uid: args.uid,
    };
    let mut probes = Capture::load(&targets, &opts)?;
    for w in probes.warnings() {
        eprintln!("rcapture: warning: {w}");
    }
    for t in &targets {
        for n in &t.notes {
            eprintln!("rcapture: note: module {}: {n}", t.module.name);
        }
    }
    // The other OpenSSL copies found at start-up, each on its own: one
    // that fails is a note, not the end of the capture.
    let mut discovered = discovered;
    if let Some(d) = discovered.as_mut() {
        if let (Some(f), Some(t)) = (
            d.first.take(),
            targets.iter().find(|t| t.module.name == "tls"),
        ) {
            let n = probes
                .modules()
                .iter()
                .find(|m| m.name == "tls")
                .map_or(0, |m| m.probes);
            d.finder.attached(&f, t, Ok(n), false);
        }
        for (f, t) in std::mem::take(&mut d.rest) {
            let r = probes
                .add_target(&t)
                .map(|(info, warnings)| {
                    for w in warnings {
                        eprintln!("rcapture: warning: {w}");
                    }
                    info.probes
                })
                .map_err(|e| e.to_string());
            d.finder.attached(&f, &t, r, false);
        }
    }
    let discovery_shared = discovered.as_ref().map(|d| Arc::clone(&d.finder.shared));
    let rings = probes.take_rings();
    let probes = Arc::new(Mutex::new(probes));
    let workers = rings.len();
    let hex = Arc::new(AtomicBool::new(args.hex));
    let pool = FramePoolConfig::default();
    let mut output = match (&keylog_path, args.mode) {
        (Some(path), _) => {
            let mut opts = std::fs::OpenOptions::new();
            opts.create(true).append(true);
            let file = open_with_mode(&mut opts, path, args.file_mode)
                .with_context(|| format!("opening key log file {}", path.display()))?;
            Some(StreamOutput::keylog(Box::new(file), workers, pool))
        }
        (None, OutputMode::None | OutputMode::Pcap) => None,
        (None, _) => Some(StreamOutput::text(
            Box::new(std::io::stdout()),
            Arc::clone(&hex),
            workers,
            pool,
        )),
    };
    let output_stats = output.as_ref().map_or_else(
        || Arc::new(OutputStats::default()),
        |o| Arc::clone(&o.stats),
    );
    let mut pcap_out = match pcap {
        Some(p) => {
            let path = p.config.path.clone();
            Some(
                PcapOutput::start(p.config, workers)
                    .with_context(|| format!("starting the pcapng output {}", path.display()))?,
            )
        }
        None => None,
    };
    let pcap_stats = pcap_out.as_ref().map(|p| Arc::clone(&p.stats));
    let filter = Arc::new(LiveFilter::new(args.pid, args.uid));
    let stop = Arc::new(AtomicBool::new(false));
    let config = WorkerConfig {
        // A packet is one call of up to --snaplen bytes.
        max_payload: (args.max_payload as usize).max(if pcap_out.is_some() {
            args.pcap.snaplen as usize
        } else {
            0
        }),
        ..WorkerConfig::default()
    };

    let taken = match (output.as_mut(), pcap_out.as_mut()) {
        (Some(o), _) => Some(std::mem::take(&mut o.sinks)),
        (None, Some(p)) => Some(std::mem::take(&mut p.sinks)),
        (None, None) => None,
    };
    let mut sinks: Vec<Vec<Box<dyn EventSink>>> = match taken {
        Some(s) => s.into_iter().map(|s| vec![s]).collect(),
        None => (0..workers).map(|_| Vec::new()).collect(),
    };
    let mut worker_list = Vec::with_capacity(workers);
    let mut stats = Vec::with_capacity(workers);
    let mut server = None;
    let mut hub = None;
    if let Some(cfg) = server_cfg {
        // With a listener the server owns the hub; without one the hub feeds
        // the forwarder and the event file alone, and no event loop runs.
        let publishers: Vec<Publisher> = if cfg.listen.is_some() {
            // The control needs the worker counters, which exist once the workers do;
            // so the workers are built first, then the server, then the threads.
            let outputs = (&hex, &output_stats, &pcap_stats);
            let (srv, publishers) =
                build_server(cfg, &probes, &filter, outputs, workers, &discovery_shared)?;
            server = Some(srv);
            publishers
        } else {
            let (h, publishers) = Hub::standalone(cfg.hub(), workers)?;
            hub = Some(h);
            publishers
        };
        for (s, p) in sinks.iter_mut().zip(publishers) {
            s.push(Box::new(p));
        }
    }
    for (ring, sinks) in rings.into_iter().zip(sinks) {
        let worker = Worker::new(ring, config, clock, Arc::clone(&filter), sinks);
        stats.push(worker.stats());
        worker_list.push(worker);
    }
    let mut server_thread: Option<(Box<dyn Fn()>, _)> = None;
    if let Some(hub) = hub {
        let handle = hub.handle();
        server_thread = Some((
            Box::new(move || handle.stop()),
            std::thread::Builder::new()
                .name("rcapture-hub".into())
                .spawn(move || hub.run())
                .context("starting the output hub thread")?,
        ));
    }
    if let Some((srv, ctl)) = server {
        ctl.set_workers(stats.clone());
        if let Some(a) = srv.local_addr() {
            eprintln!("rcapture: listening on {a}");
        }
        if let Some(a) = srv.ecaptureq_addr() {
            eprintln!("rcapture: eCaptureQ stream on {a}");
        }
        let handle = srv.handle();
        server_thread = Some((
            Box::new(move || handle.stop()),
            std::thread::Builder::new()
                .name("rcapture-server".into())
                .spawn(move || srv.run())
                .context("starting the server thread")?,
        ));
    }
    let mut threads = Vec::with_capacity(workers);
    for worker in worker_list {
        let stop = Arc::clone(&stop);
        threads.push(
            std::thread::Builder::new()
                .name("rcapture-worker".into())
                .spawn(move || worker.run(&stop))
                .context("starting a worker thread")?,
        );
    }
    for m in lock(&probes).modules() {
        for f in &m.files {
            eprintln!(
                "rcapture: module {}: probing {} (version {}) with {} probes",
                m.name,
                f.path.display(),
                f.version,
                f.probes
            );
        }
    }
    // Libraries and executables processes start using from now on.
    let discovery_stop = Arc::new(AtomicBool::new(false));
    let mut discovery_thread = None;
    if let Some(d) = discovered {
        // Before the watch can stop anything: the guard resumes held
        // processes should this process die or its discovery thread stall.
        let guard = match HoldGuard::spawn() {
            Ok(g) => Some(g),
            Err(e) => {
                eprintln!(
                    "rcapture: warning: module tls: no hold guard ({e}): processes held while rcapture is killed stay stopped until sent SIGCONT"
                );
                None
            }
        };
        let watch = match LibWatch::load(std::process::id()) {
            Ok(w) => Some(w),
            Err(e) => {
                eprintln!(
                    "rcapture: warning: module tls: libraries started later are found only by the /proc scan every 2 s (and their first calls may be missed): {}",
                    error_chain(&e)
                );
                None
            }
        };
        let watching = watch.is_some();
        let disc = Discovery::new(d.finder, watch, Arc::clone(&probes), guard);
        let stop = Arc::clone(&discovery_stop);
        discovery_thread = Some(
            std::thread::Builder::new()
                .name("rcapture-discover".into())
                .spawn(move || disc.run(&stop))
                .context("starting the library discovery thread")?,
        );
        let files = lock(&probes)
            .modules()
            .iter()
            .find(|m| m.name == "tls")
            .map_or(0, |m| m.files.len());
        eprintln!(
            "rcapture: module tls: {files} OpenSSL file(s) at start-up{}",
            if watching {
                "; watching mmap and exec for the ones processes start using"
            } else {
                ""
            }
        );
    }
    let (probe_count, ring_count) = {
        let p = lock(&probes);
        (p.probe_count(), p.ring_count())
    };
    eprintln!("rcapture: {probe_count} probes, {ring_count} ring buffers, {workers} workers");
    eprintln!("rcapture: ready");

    let sig = signals.forever().next();
    // No more attaching; every process the watch holds is resumed.
    discovery_stop.store(true, Ordering::Release);
    if let Some(t) = discovery_thread
        && t.join().is_err()
    {
        eprintln!("rcapture: the library discovery thread panicked");
    }
    // Stop new records first (a flag the probes read: at once), then let
    // the workers drain what is already in the rings, flush every output,
    // and only then detach (handed to the kernel: no waiting).
    if let Err(e) = lock(&probes).stop_capture() {
        eprintln!("rcapture: stopping the probes: {e}; detaching them now");
        lock(&probes).detach();
    }
    stop.store(true, Ordering::Release);
    for t in threads {
        if t.join().is_err() {
            eprintln!("rcapture: a worker thread panicked");
        }
    }
    let out_stats = match output {
        Some(o) => o.finish().context("writing the output")?,
        None => output_stats,
    };
    let pcap_done = pcap_out
        .map(|p| p.finish().context("writing the pcapng file"))
        .transpose()?;
    let out_stats = match &pcap_done {
        // What the pcapng output wrote and dropped, in events.
        Some(p) => {
            let s = OutputStats::default();
            s.delivered.store(
                p.packets_written + p.secrets - p.secrets_dropped,
                Ordering::Relaxed,
            );
            s.dropped
                .store(p.packets_dropped + p.secrets_dropped, Ordering::Relaxed);
            s.behind.store(p.packets_behind, Ordering::Relaxed);
            Arc::new(s)
        }
        None => out_stats,
    };
    std::io::stdout().flush().ok();
    if let Some((stop, t)) = server_thread {
        stop();
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("rcapture: the server failed: {e}"),
            Err(_) => eprintln!("rcapture: the server thread panicked"),
        }
    }

    let kernel = lock(&probes).counters().unwrap_or_default();
    lock(&probes).detach();
    let lost: u64 = kernel.iter().map(|c| c.lost).sum();
    let sum = |f: fn(&rcapture_core::worker::WorkerStats) -> &std::sync::atomic::AtomicU64| -> u64 {
        stats.iter().map(|s| f(s).load(Ordering::Relaxed)).sum()
    };
    eprintln!(
        "rcapture: stopped by signal {}: {} events, {} written, {} lost in kernel ring buffers, \
         {} output drops ({} while the output was behind), {} calls truncated ({} bytes), \
         {} incomplete calls, {} orphan records ({} bytes), {} calls evicted, \
         {} malformed records, {} filtered",
        sig.unwrap_or(0),
        sum(|s| &s.events),
        out_stats.delivered.load(Ordering::Relaxed),
        lost,
        out_stats.dropped.load(Ordering::Relaxed),
        out_stats.behind.load(Ordering::Relaxed),
        sum(|s| &s.truncated_events),
        sum(|s| &s.truncated_bytes),
        sum(|s| &s.incomplete_calls),
        sum(|s| &s.orphan_records),
        sum(|s| &s.orphan_bytes),
        sum(|s| &s.evicted_calls),
        sum(|s| &s.decode_errors),
        sum(|s| &s.filtered),
    );
    if let (Some(p), Some(path)) = (pcap_done, &args.pcap.pcapfile) {
        eprintln!(
            "rcapture: pcapng {}: {} packets written of {} ({} dropped, {} while the writer was behind, \
             {} written before their hold), {} key log lines in DSBs ({} repeats left out, {} secrets dropped), \
             {} bytes, {} rotations",
            path.display(),
            p.packets_written,
            p.packets,
            p.packets_dropped,
            p.packets_behind,
            p.packets_early,
            p.secret_lines_written,
            p.duplicate_lines,
            p.secrets_dropped,
            p.bytes,
            p.files_rotated,
        );
    }
    Ok(())
}

fn lock(p: &Mutex<Capture>) -> std::sync::MutexGuard<'_, Capture> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

type Built = ((Server, Arc<CaptureControl>), Vec<Publisher>);

fn build_server(
    cfg: ServerConfig,
    probes: &Arc<Mutex<Capture>>,
    filter: &Arc<LiveFilter>,
    (hex, output, pcap): (&Arc<AtomicBool>, &Arc<OutputStats>, &Option<Arc<PcapStats>>),
    workers: usize,
    discovery: &Option<Arc<Shared>>,
) -> anyhow::Result<Built> {
    let ctl = Arc::new(CaptureControl {
        discovery: discovery.clone(),
        probes: Arc::clone(probes),
        filter: Arc::clone(filter),
        hex: Arc::clone(hex),
        output: Arc::clone(output),
        pcap: pcap.clone(),
        workers: Mutex::new(Vec::new()),
    });
    let (srv, publishers) = Server::bind(cfg, Arc::clone(&ctl) as _, workers)?;
    Ok(((srv, ctl), publishers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn server_of(flags: &[&str]) -> ServerConfig {
        let argv = ["rcapture", "tls"].iter().chain(flags).copied();
        let (_, _, args) = Cli::try_parse_from(argv)
            .expect("parses")
            .command
            .into_parts();
        let start = StartSettings {
            per_cpu_map_size: 1024,
            truncate_size: 16384,
        };
        server_config(&args.server, None, None, start, LiveSettings::default())
            .expect("valid")
            .expect("the server runs")
    }

    /// The access flags reach the server; a bad origin is refused.
    #[test]
    fn access_flags_set_the_server_policy() {
        let d = server_of(&[]).access;
        assert_eq!(d, AccessConfig::default(), "root only by default");
        let a = server_of(&[
            "--allow-uid",
            "1000,65534",
            "--allow-uid",
            "7",
            "--allow-gid",
            "100",
            "--allow-origin",
            "http://ui.example:8080",
            "--insecure",
        ])
        .access;
        assert_eq!(
            (a.allow_uids, a.allow_gids, a.allow_origins, a.insecure),
            (
                vec![1000, 65534, 7],
                vec![100],
                vec!["http://ui.example:8080".to_string()],
                true
            )
        );
        let argv = ["rcapture", "tls", "--allow-origin", "ui.example"];
        let (_, _, args) = Cli::try_parse_from(argv)
            .expect("parses")
            .command
            .into_parts();
        let start = StartSettings {
            per_cpu_map_size: 1024,
            truncate_size: 16384,
        };
        let e = server_config(&args.server, None, None, start, LiveSettings::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an origin"), "{e}");
    }

    /// The WebSocket spill limits reach the server: the defaults, and each
    /// flag on its own.
    #[test]
    fn spill_flags_set_the_server_limits() {
        let d = server_of(&[]).limits;
        assert_eq!(
            (d.client_spill_bytes, d.spill_budget_bytes),
            (4 << 20, 64 << 20)
        );
        let l = server_of(&[
            "--client-spill-bytes",
            "65536",
            "--spill-budget-bytes",
            "1048576",
        ])
        .limits;
        assert_eq!(
            (l.client_spill_bytes, l.spill_budget_bytes),
            (65536, 1 << 20)
        );
        assert!(
            Cli::try_parse_from(["rcapture", "tls", "--spill-budget-bytes", "lots"]).is_err(),
            "a non-number is refused"
        );
    }

    /// The contract's name `http_proxy` and the older `http-proxy` both
    /// select the proxy format.
    #[test]
    fn forward_format_takes_the_contract_name_and_the_alias() {
        for name in ["http_proxy", "http-proxy"] {
            let argv = ["rcapture", "tls", "--forward", "http://127.0.0.1:1/"];
            let argv = argv.into_iter().chain(["--forward-format", name]);
            let (_, _, a) = Cli::try_parse_from(argv)
                .expect("parses")
                .command
                .into_parts();
            assert_eq!(
                a.forward.forward_format,
                crate::cli::ForwardFormatArg::HttpProxy
            );
        }
    }

    fn parts(flags: &[&str]) -> (&'static str, TargetRequest, CaptureArgs) {
        let argv = ["rcapture", "tls"].iter().chain(flags).copied();
        Cli::try_parse_from(argv)
            .expect("parses")
            .command
            .into_parts()
    }

    /// A module named twice (the subcommand's and in --modules) is refused
    /// before anything is loaded.
    #[test]
    fn a_module_is_captured_once() {
        let (m, req, a) = parts(&["--modules", "tls"]);
        let e = targets(m, req, &a, None).unwrap_err().to_string();
        assert_eq!(e, "--modules: module tls is already captured");
    }

    /// `-m none` with no server, forwarder or event file would output nothing:
    /// refused before loading, saying so.
    #[test]
    fn mode_none_needs_another_output() {
        let (m, req, a) = parts(&["-m", "none", "--listen", "none"]);
        let e = run(m, req, a).unwrap_err().to_string();
        assert!(e.contains("would output nothing"), "{e}");
        let (m, req, a) = parts(&["-m", "none", "--keylogfile", "k"]);
        let e = run(m, req, a).unwrap_err().to_string();
        assert!(e.contains("only used with -m keylog"), "{e}");
    }
}
