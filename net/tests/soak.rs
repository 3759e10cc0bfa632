//! Soak and faults (issue 6, item 4): the data plane under a high event
//! rate for a minute, riding out the faults it must survive, with an exact
//! ledger at the end.
//!
//! - Two real [`Worker`](rcapture_core::worker::Worker)s, each on its own
//!   thread, decode, join and encode synthesized BPF records (events of 64 B
//!   to 40 kB, a split call joined back) replayed from memory into the real
//!   [`Server`]. No BPF is loaded, so no root is needed: the test runs under
//!   plain `cargo test --workspace`.
//! - Eight WebSocket clients over real TCP: six read all the time and follow
//!   `seq`; two stop reading (after 3 s and after 8 s): their queues fill,
//!   their drops are counted and the server closes them (1008) once they stay
//!   full past the slow-client deadline; then they read what their sockets
//!   still hold. A stalled client may keep only its share of the workers'
//!   batch buffers (the rest of its queue is copied out), so it never makes
//!   the server drop events for everybody.
//! - Forwarding to a collector (threads of this test) that flaps: up 4 s,
//!   then down — port closed, 503s, connections reset, 400s — in turn.
//! - A `POST /config` every second: the live pid filter on and off (the
//!   filtered events are their own counter), `is_hex`, `uid`, and an
//!   unchanged `event_forward`. Every answer must be 200.
//! - The process's RSS, sampled every second, must stay under a bound made
//!   of the configured pool sizes (printed with the figures).
//!
//! At the end (producers stopped, collector up, slow clients reading again)
//! every output balances exactly: replayed = captured + filtered; captured
//! = taken by the server + dropped before it; for each WebSocket client,
//! from its own counts in `/status` (kept by the server once it has gone):
//! numbered for it (every event taken, for a client connected throughout)
//! = received + dropped for it, by reason (queue full, its share of the
//! batch pool held with its spill full, max_rate, queued when it went),
//! received = written by the server, and the totals over
//! all clients by reason are the clients' sums in every snapshot; for the
//! forwarder, taken = received by the collector + dropped + refused (400),
//! with nothing in flight, and `/metrics` shows what `/status` does. Then
//! the server stops (the forwarder with its bounded wait) and every thread
//! must have ended without a panic.
//!
//! Environment: `RCAPTURE_SOAK_SECS` (default 60) is how long events are
//! produced — longer on demand; `RCAPTURE_SOAK_RATE` caps the events per
//! second of both workers together (default 150000, enough to overload the
//! server on a small machine; 0 = no cap); `RCAPTURE_SOAK_VERBOSE` prints a
//! progress line every second instead of every ten. Run with `--nocapture`
//! to see the figures.

#[path = "soak/collector.rs"]
mod collector;
#[path = "soak/figures.rs"]
mod figures;
#[path = "soak/ledger.rs"]
mod ledger;
#[path = "soak/probe.rs"]
mod probe;
#[path = "soak/replay.rs"]
mod replay;
#[path = "soak/wire.rs"]
mod wire;
#[path = "soak/wsclient.rs"]
mod wsclient;

use collector::Collector;
use figures::{CollectorEnd, RssBudget, print_figures};
use ledger::WsLedger;
use probe::{Metrics, Status, http, rss};
use rcapture_core::event::Module;
use rcapture_core::worker::EventSink;
use rcapture_net::config::StartSettings;
use rcapture_net::control::LiveSettings;
use rcapture_net::forward::{CollectorUrl, ForwardConfig, ForwardFormat};
use rcapture_net::publish::BatchPoolConfig;
use rcapture_net::{Limits, Server, ServerConfig};
use replay::{Producers, SoakControl, Stopped, UID, tls_pid};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wire::ModuleCounts;
use wsclient::{Behaviour, Live, Report, WsClient};

const WORKERS: usize = 2;
const READERS: usize = 6;
const MIB: u64 = 1 << 20;
/// How long the end may take to settle before the ledger is checked anyway.
const DRAIN_LIMIT: Duration = Duration::from_secs(90);

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// The clients: six readers and two that stop reading.
fn behaviours() -> Vec<(String, Behaviour)> {
    let staller = |s| Behaviour::Staller {
        after: Duration::from_secs(s),
    };
    (0..READERS)
        .map(|i| (format!("reader-{i}"), Behaviour::Reader))
        .chain([
            ("staller-a".to_string(), staller(3)),
            ("staller-b".to_string(), staller(8)),
        ])
        .collect()
}

/// The `POST /config` bodies sent in turn, one a second, and the pid each
/// leaves in force (`None`: unchanged).
fn config_posts() -> [(String, Option<u32>); 4] {
    [
        (
            format!(r#"{{"pid": {}, "is_hex": true}}"#, tls_pid(0)),
            Some(tls_pid(0)),
        ),
        (
            format!(r#"{{"pid": 0, "uid": {UID}, "is_hex": false}}"#),
            Some(0),
        ),
        (
            r#"{"uid": 0, "event_forward": {"enabled": true, "batch_size": 500}}"#.into(),
            None,
        ),
        (r#"{"is_hex": true, "pid": 0}"#.into(), Some(0)),
    ]
}

/// Everything running during the soak.
struct Soak {
    addr: std::net::SocketAddr,
    handle: rcapture_net::ServerHandle,
    server: JoinHandle<std::io::Result<()>>,
    collector: Collector,
    control: Arc<SoakControl>,
    behaviours: Vec<(String, Behaviour)>,
    lives: Vec<Arc<Live>>,
    clients: Vec<JoinHandle<Report>>,
    ledger: WsLedger,
    rss_base: u64,
    rss_max: u64,
    budget: RssBudget,
}

/// Counts and events of the run, for the figures and the checks.
#[derive(Debug, Default)]
struct Run {
    production: Duration,
    drain: Duration,
    /// Longest time the server took no event while the workers produced.
    server_idle: Duration,
    config_posts: u64,
    config_failures: Vec<String>,
}

impl Soak {
    fn start(rate: u64) -> (Soak, Producers) {
        let collector = Collector::start();
        let control = Arc::new(SoakControl::new());
        let limits = Limits::default();
        let pool = BatchPoolConfig::default();
        let mut fwd = ForwardConfig::new(
            CollectorUrl::parse(&format!("http://{}/ingest", collector.addr)).unwrap(),
            ForwardFormat::Protobuf,
        );
        fwd.batch_size = 500;
        fwd.batch_timeout = Duration::from_millis(200);
        fwd.queue_bytes = 16 << 20;
        let cfg = ServerConfig {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ecaptureq: None,
            heartbeat: Duration::from_secs(1),
            auth_token: None,
            access: Default::default(),
            limits,
            pool,
            start: StartSettings {
                per_cpu_map_size: 8192,
                truncate_size: 1 << 20,
            },
            initial: LiveSettings::default(),
            forward: Some(fwd.clone()),
            event_file: None,
        };
        let (srv, publishers) = Server::bind(cfg, Arc::clone(&control) as _, WORKERS).unwrap();
        let addr = srv.local_addr().unwrap();
        let handle = srv.handle();
        let server = std::thread::Builder::new()
            .name("soak-server".into())
            .spawn(move || srv.run())
            .unwrap();

        // Every client upgraded and past its first heartbeat before any event.
        let behaviours = behaviours();
        let connected: Vec<WsClient> = behaviours
            .iter()
            .map(|(name, _)| WsClient::connect(addr, name))
            .collect();
        let mut ledger = WsLedger::new(connected.iter().map(|c| c.local).collect());
        let m = Metrics::get(addr);
        assert_eq!(m.ws_clients, behaviours.len() as u64, "{m:?}");
        ledger.observe(&Status::get(addr).ws);
        let lives = connected.iter().map(|c| Arc::clone(&c.live)).collect();
        let rss_base = rss();
        let budget = RssBudget::new(&pool, &limits, &fwd, behaviours.len());

        let t0 = Instant::now();
        let clients = connected
            .into_iter()
            .zip(&behaviours)
            .map(|(c, (_, b))| c.spawn(*b, t0))
            .collect();
        let sinks: Vec<Box<dyn EventSink>> = publishers
            .into_iter()
            .map(|p| Box::new(p) as Box<dyn EventSink>)
            .collect();
        let producers = Producers::start(sinks, &control, rate / WORKERS as u64);
        let soak = Soak {
            addr,
            handle,
            server,
            collector,
            control,
            behaviours,
            lives,
            clients,
            ledger,
            rss_base,
            rss_max: rss_base,
            budget,
        };
        (soak, producers)
    }

    fn sample_rss(&mut self) -> u64 {
        let r = rss();
        self.rss_max = self.rss_max.max(r);
        r
    }

    /// Once a second for `run`: a config change, a `/metrics` snapshot, an
    /// RSS sample; a client the server has closed reads its socket dry.
    fn produce(&mut self, run: Duration, verbose: bool) -> Run {
        let t0 = Instant::now();
        let posts = config_posts();
        let mut out = Run::default();
        let mut tick = 0u64;
        let mut pid = 0;
        let mut taken = (0, Instant::now());
        while t0.elapsed() < run {
            tick += 1;
            std::thread::sleep(
                (t0 + Duration::from_secs(tick)).saturating_duration_since(Instant::now()),
            );
            let (body, sets_pid) = &posts[tick as usize % posts.len()];
            let (status, reply) = http(self.addr, "POST", "/config", body);
            out.config_posts += 1;
            pid = sets_pid.unwrap_or(pid);
            let ok = status == 200
                && serde_json::from_str::<serde_json::Value>(&reply)
                    .is_ok_and(|v| v["code"] == 0 && v["data"]["pid"] == pid);
            if !ok {
                out.config_failures
                    .push(format!("{body} -> {status} {reply}"));
            }
            let m = Metrics::get(self.addr);
            self.ledger.observe(&Status::get(self.addr).ws);
            if m.received != taken.0 {
                taken = (m.received, Instant::now());
            }
            out.server_idle = out.server_idle.max(taken.1.elapsed());
            for (live, gone) in self.lives.iter().zip(&self.ledger.gone) {
                if *gone {
                    live.resume.store(true, Relaxed);
                }
            }
            let r = self.sample_rss();
            if verbose || tick.is_multiple_of(10) {
                eprintln!(
                    "soak t={:>3}s: captured {} filtered {} server took {} dropped before it {}; ws sent {} dropped {:?} spilled {}; collector {} ({:?}); rss {} MiB",
                    t0.elapsed().as_secs(),
                    m.captured,
                    m.filtered,
                    m.received,
                    m.server_queue_dropped,
                    m.ws_sent,
                    m.ws_dropped_by,
                    m.ws_spilled,
                    self.collector.counts().received.load(Relaxed),
                    self.collector.phase(),
                    r / MIB
                );
            }
        }
        out.production = t0.elapsed();
        out
    }

    /// With the producers stopped, the collector up and every client
    /// reading: waits until every count has settled (or `DRAIN_LIMIT`).
    /// Returns the last snapshots.
    fn drain(&mut self, run: &mut Run) -> (Metrics, Status) {
        self.collector.settle();
        for live in &self.lives {
            live.resume.store(true, Relaxed);
        }
        let started = Instant::now();
        loop {
            let m = Metrics::get(self.addr);
            let st = Status::get(self.addr);
            self.ledger.observe(&st.ws);
            let f = st.forward.as_ref().expect("forwarding is on");
            self.sample_rss();
            let p = m.received;
            let server = m.captured == p + m.server_queue_dropped;
            let clients = self.lives.iter().enumerate().all(|(i, live)| {
                let c = self.ledger.counts(i);
                if self.ledger.gone[i] {
                    live.done.load(Relaxed)
                } else {
                    c.queued == 0 && c.seq == p && live.events.load(Relaxed) == c.sent
                }
            });
            let forward = f.settled() == p
                && f.queue_bytes == 0
                && self.collector.counts().received.load(Relaxed) == f.sent_events;
            if (server && clients && forward) || started.elapsed() > DRAIN_LIMIT {
                run.drain = started.elapsed();
                // Snapshots taken once the clients' counts are read too:
                // nothing the server wrote can be missing from them.
                let m = Metrics::get(self.addr);
                let st = Status::get(self.addr);
                self.ledger.observe(&st.ws);
                return (m, st);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the server and collects every thread's end.
    fn stop(self) -> Stopping {
        let settled: Vec<u64> = self.lives.iter().map(|l| l.events.load(Relaxed)).collect();
        self.handle.stop();
        let server = join_within(self.server, Duration::from_secs(30));
        // Each stream ends with the server's close; past that, give up.
        let end = Instant::now() + Duration::from_secs(20);
        let reports = self
            .clients
            .into_iter()
            .zip(&self.lives)
            .map(|(t, live)| {
                while !t.is_finished() && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(10));
                }
                live.quit.store(true, Relaxed);
                t.join().ok()
            })
            .collect();
        let collector = CollectorEnd::of(self.collector.counts(), self.collector.errors());
        let collector_panics = self.collector.stop();
        Stopping {
            server,
            reports,
            settled,
            collector,
            collector_panics,
            behaviours: self.behaviours,
            ledger: self.ledger,
            control: self.control,
            rss_base: self.rss_base,
            rss_max: self.rss_max,
            budget: self.budget,
        }
    }
}

/// The soak after the server stopped.
struct Stopping {
    server: Option<std::thread::Result<std::io::Result<()>>>,
    reports: Vec<Option<Report>>,
    /// Events each client had when the ledger settled.
    settled: Vec<u64>,
    collector: CollectorEnd,
    collector_panics: usize,
    behaviours: Vec<(String, Behaviour)>,
    ledger: WsLedger,
    control: Arc<SoakControl>,
    rss_base: u64,
    rss_max: u64,
    budget: RssBudget,
}

/// Joins a thread if it ends within `d`.
fn join_within<T>(t: JoinHandle<T>, d: Duration) -> Option<std::thread::Result<T>> {
    let end = Instant::now() + d;
    while !t.is_finished() {
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Some(t.join())
}

#[test]
fn soak_slow_clients_flapping_collector_live_config() {
    let secs = env_u64("RCAPTURE_SOAK_SECS", 60).max(5);
    let rate = env_u64("RCAPTURE_SOAK_RATE", 150_000);
    let verbose = std::env::var_os("RCAPTURE_SOAK_VERBOSE").is_some();
    let started = Instant::now();

    let (mut soak, producers) = Soak::start(rate);
    let mut run = soak.produce(Duration::from_secs(secs), verbose);
    let stopped = producers.stop(Duration::from_secs(30));
    let (m, st) = soak.drain(&mut run);
    let end = soak.stop();

    print_figures(&end, &run, &stopped, &m, &st, secs, rate, started.elapsed());
    check(&end, &run, &stopped, &m, &st, secs);
}

fn check(end: &Stopping, run: &Run, stopped: &Stopped, m: &Metrics, st: &Status, secs: u64) {
    // ---- No panic; every thread ended.
    assert_eq!(stopped.panicked, 0, "worker threads panicked");
    assert_eq!(end.collector_panics, 0, "collector threads panicked");
    match &end.server {
        Some(Ok(Ok(()))) => {}
        Some(Ok(Err(e))) => panic!("the server failed: {e}"),
        Some(Err(_)) => panic!("the server thread panicked"),
        None => panic!("the server did not stop"),
    }
    let reports: Vec<&Report> = end
        .reports
        .iter()
        .zip(&end.behaviours)
        .map(|(r, (name, _))| {
            r.as_ref()
                .unwrap_or_else(|| panic!("client {name} panicked"))
        })
        .collect();

    // ---- Capture: replayed = captured + filtered; captured = taken by the
    // server + dropped before it.
    let sum = |f| end.control.sum(f);
    assert_eq!(
        sum(|w| &w.events) + sum(|w| &w.filtered),
        stopped.events,
        "every replayed event is captured or filtered"
    );
    assert_eq!(sum(|w| &w.records), stopped.records, "records decoded");
    assert_eq!(sum(|w| &w.decode_errors), 0, "malformed records");
    assert_eq!(sum(|w| &w.incomplete_calls), 0, "incomplete calls");
    assert_eq!(
        (m.captured, m.filtered),
        (sum(|w| &w.events), sum(|w| &w.filtered)),
        "/metrics shows the workers' counts"
    );
    assert!(m.filtered > 0, "the pid filter was on part of the time");
    let p = m.received;
    assert!(p > 0, "the server took events");
    assert_eq!(
        m.captured,
        p + m.server_queue_dropped,
        "captured = taken by the server + dropped before it"
    );

    // ---- Every module's events were taken by the server, under the
    // module's own label (each round holds them all).
    let taken: ModuleCounts = std::array::from_fn(|i| {
        let name = Module::ALL[i].name();
        m.received_by_module.get(name).copied().unwrap_or(0)
    });
    assert_eq!(
        taken.iter().sum::<u64>(),
        p,
        "ecapture_events_total by module: {:?}",
        m.received_by_module
    );
    assert!(
        taken.iter().all(|&n| n > 0),
        "events of every module taken: {:?}",
        m.received_by_module
    );
    // What a consumer got of each module is at most what was taken; the
    // sums are its whole count, so a consumer that got every event got
    // exactly the server's count of each module.
    let by_module = |name: &str, got: &ModuleCounts, total: u64| {
        assert_eq!(got.iter().sum::<u64>(), total, "{name}: events by module");
        for (i, (g, t)) in got.iter().zip(&taken).enumerate() {
            assert!(
                g <= t,
                "{name}: {} {} events of {t} taken",
                g,
                Module::ALL[i].name()
            );
        }
    };

    // ---- WebSocket: for each client, from its own counts (final ones for
    // a client that has gone): numbered = received + dropped for it, by
    // reason; received = written whole by the server.
    let ledger = &end.ledger;
    assert_eq!(
        ledger.mismatches,
        Vec::<String>::new(),
        "WebSocket totals = the clients' sums"
    );
    let mut received = 0;
    for (i, (r, (name, b))) in reports.iter().zip(&end.behaviours).enumerate() {
        let c = ledger.counts(i);
        received += r.events;
        assert_eq!(r.error, None, "{name}: stream error");
        assert_eq!(
            r.events, end.settled[i],
            "{name}: events after the ledger settled"
        );
        assert!(r.eof, "{name}: the stream ended");
        assert_eq!(
            r.events + r.gaps,
            r.last_seq,
            "{name}: seq accounts for every entry"
        );
        assert!(r.sampled > 0, "{name}: entries decoded in full");
        by_module(name, &r.modules, r.events);
        assert!(r.heartbeats >= 2, "{name}: heartbeats");
        if let Behaviour::Staller { .. } = b {
            assert!(r.stalled_at.is_some(), "{name} stopped reading");
        }
        assert_eq!(
            c.dropped,
            c.queue_full + c.share + c.max_rate + c.at_close,
            "{name}: drops by reason: {c:?}"
        );
        assert_eq!(c.max_rate, 0, "{name}: no max_rate: {c:?}");
        assert_eq!(c.queued, 0, "{name}: nothing left queued: {c:?}");
        assert_eq!(
            r.events, c.sent,
            "{name}: received = written whole by the server: {c:?}"
        );
        assert_eq!(
            c.seq,
            r.events + c.dropped,
            "{name}: numbered for it = received + dropped for it: {c:?}"
        );
        assert!(r.last_seq <= c.seq, "{name}: seq {} > {c:?}", r.last_seq);
        if ledger.gone[i] {
            // Closed before the end: only a client that stopped reading.
            assert!(
                matches!(b, Behaviour::Staller { .. }),
                "{name} was closed: {r:?} {c:?}"
            );
            assert_eq!(c.closed.as_deref(), Some("too slow"), "{name}: {c:?}");
            if let Some((code, reason)) = &r.close {
                assert_eq!(*code, 1008, "{name}: {reason}");
                assert_eq!(
                    r.partial_tail, 0,
                    "{name}: a frame cut before the close frame"
                );
            }
            assert!(
                c.queue_full + c.share > 0,
                "{name}: dropped while it did not read: {c:?}"
            );
            assert!(c.seq <= p, "{name}: numbered {} > {p}", c.seq);
        } else {
            assert_eq!(c.seq, p, "{name}: numbered every event the server took");
            assert_eq!(c.at_close, 0, "{name}: {c:?}");
            assert_eq!(
                m.client_dropped.get(&c.client),
                Some(&c.dropped),
                "{name}: /metrics shows its drops"
            );
            assert_eq!(
                r.close.as_ref().map(|c| c.0),
                Some(1001),
                "{name}: closed at the stop"
            );
            assert_eq!(r.partial_tail, 0, "{name}: a cut frame");
            if *b == Behaviour::Reader {
                assert!(r.events > 0, "{name} received events");
                assert!(
                    r.modules.iter().all(|&n| n > 0),
                    "{name} received events of every module: {:?}",
                    r.modules
                );
            } else {
                assert!(c.dropped > 0, "{name} had drops");
            }
        }
    }
    let ws = &st.ws;
    assert_eq!(received, ws.sent, "every entry written was received");
    assert_eq!(m.ws_sent, ws.sent, "/metrics and /status: sent");
    assert_eq!(
        ["queue_full", "share", "max_rate", "closed"].map(|r| m.ws_dropped_by.get(r).copied()),
        ws.by_reason.map(Some),
        "/metrics and /status: dropped by reason"
    );
    assert_eq!(m.ws_spilled, ws.spilled, "/metrics and /status: spilled");
    assert_eq!(
        m.ws_closed_clients, ws.closed_total,
        "/metrics and /status: closed clients"
    );
    // A client that stopped reading is closed once it has been stuck for
    // the slow-client deadline (whatever it dropped for: queue full or its
    // share), plus the 2 s a closing client gets and some slack.
    let closed_by = Limits::default().stuck_deadline + Duration::from_secs(5);
    for (i, (name, b)) in end.behaviours.iter().enumerate() {
        if let Behaviour::Staller { after } = b
            && *after + closed_by < run.production
        {
            assert!(
                ledger.gone[i],
                "{name} stopped reading at {after:?} and was still served at {:?}",
                run.production
            );
        }
    }
    if secs >= 20 {
        assert!(ledger.gone.iter().any(|g| *g), "a slow client was closed");
    }
    // Stalled clients never kept the workers' batch buffers: the server
    // went on taking events all along (before, two stalled clients held the
    // whole pool until the slow-client deadline closed them, 10 s).
    assert!(
        run.server_idle < Duration::from_secs(5),
        "the server took no event for {:?} while the workers produced",
        run.server_idle
    );

    // ---- Forwarder: taken = received by the collector + dropped + refused.
    let f = st.forward.as_ref().expect("forwarding is on");
    assert!(
        f.enabled && f.retired == 0,
        "the unchanged event_forward kept the forwarder: {f:?}"
    );
    assert_eq!(
        [
            m.fwd("sent_events_total"),
            m.fwd("sent_batches_total"),
            m.fwd("failed_events_total"),
            m.fwd("failed_batches_total"),
            m.fwd("retries_total"),
            m.fwd("dropped_events_total"),
            m.fwd("queue_bytes"),
            m.fwd("enabled"),
        ],
        [
            f.sent_events,
            f.sent_batches,
            f.failed_events,
            f.failed_batches,
            f.retries,
            f.dropped_events,
            f.queue_bytes,
            1
        ],
        "/metrics shows the forwarder's /status counters"
    );
    let c = &end.collector;
    assert_eq!(c.errors, Vec::<String>::new(), "collector errors");
    assert_eq!(c.duplicates, 0, "entries delivered twice");
    assert_eq!(
        f.sent_events, c.received,
        "sent = received by the collector"
    );
    assert_eq!(f.failed_events, c.rejected, "refused = answered 400");
    assert_eq!(f.queue_bytes, 0, "nothing left in the queue");
    assert_eq!(
        c.received + f.dropped_events + f.failed_events,
        p,
        "collector {} + dropped {} + refused {} = taken by the server",
        c.received,
        f.dropped_events,
        f.failed_events
    );
    assert!(c.seq_gaps <= f.dropped_events, "seq gaps are drops");
    assert!(c.received > 0 && c.sampled > 0, "the collector got batches");
    by_module("collector", &c.modules, c.received);
    assert!(
        c.modules.iter().all(|&n| n > 0),
        "the collector got events of every module: {:?}",
        c.modules
    );
    assert!(c.outages.iter().sum::<u64>() > 0, "the collector flapped");
    assert!(f.retries > 0, "the forwarder retried");

    // ---- Config and RSS.
    assert_eq!(run.config_failures, Vec::<String>::new(), "POST /config");
    assert!(run.config_posts + 1 >= secs, "a POST /config every second");
    assert_eq!(
        m.http.keys().copied().collect::<Vec<_>>(),
        [200],
        "every HTTP answer was 200"
    );
    let bound = end.rss_base + end.budget.total();
    assert!(
        end.rss_max <= bound,
        "RSS reached {} MiB, over the bound {} MiB",
        end.rss_max / MIB,
        bound / MIB
    );
}
