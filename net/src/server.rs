//! The mio event loop: listeners, connections, WebSocket fan-out of the
//! hub's batches, heartbeats, limits and timeouts. One thread; nothing here
//! blocks. The [`Hub`] it owns feeds the forwarder and the event file.
//!
//! - `listen`: accept, reads, writes, close;
//! - `requests`: HTTP requests, auth, API routes, the upgrade;
//! - `fanout`: batches to WebSocket clients, their input;
//! - `timers`: heartbeats and timeouts.

mod fanout;
mod listen;
mod requests;
mod timers;

use crate::access::AccessConfig;
use crate::config::{CaptureConfig, StartSettings};
use crate::conn::{Conn, QueueLimits, SpillBudget};
use crate::control::{Control, LiveSettings};
use crate::ecaptureq::{self, EcaptureqBatches};
use crate::eventfile::EventFileConfig;
use crate::forward::ForwardConfig;
use crate::http::RequestLimits;
use crate::hub::{Hub, HubConfig};
use crate::metrics::ServerMetrics;
use crate::publish::{BatchPoolConfig, CoalescedWake, Publisher, Wake};
use crate::ws;
use listen::bind;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use rcapture_core::event::EventKind;
use requests::Bucket;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const LISTEN: Token = Token(0);
const ECAPTUREQ: Token = Token(1);
const WAKER: Token = Token(2);
const FIRST_CONN: usize = 16;

/// Limits of the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub request: RequestLimits,
    /// A request must arrive whole within this time (slowloris).
    pub request_timeout: Duration,
    /// An HTTP connection with no request in progress is closed after this.
    pub idle_timeout: Duration,
    /// Requests per second per client address (burst: twice that).
    pub requests_per_sec: u32,
    pub client_queue: QueueLimits,
    /// Bytes a WebSocket client's spill may hold: the entries copied out of
    /// shared batches once its queue points into its share of the batch
    /// pool (see [`crate::conn`]). At most `client_queue.bytes` counts.
    pub client_spill_bytes: usize,
    /// Bytes every WebSocket client's spill may hold together: a client
    /// whose spill would grow past it drops entries (reason `share`).
    pub spill_budget_bytes: usize,
    /// A WebSocket client whose queue stays full this long is closed with 1008.
    pub stuck_deadline: Duration,
    /// Largest client WebSocket message.
    pub max_client_message: usize,
    /// Bytes of replies a client may leave unread: HTTP responses to
    /// pipelined requests, WebSocket pongs and text replies. A client that
    /// sends more while not reading is answered 429 (HTTP) or closed with
    /// 1008 (WebSocket), and counted.
    pub reply_backlog_bytes: usize,
    /// Connections kept for the API (at most a quarter of
    /// `max_connections`): WebSocket clients may hold the rest (beyond: 503).
    pub api_reserve: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            request: RequestLimits::default(),
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            requests_per_sec: 200,
            client_queue: QueueLimits {
                frames: 8192,
                bytes: 16 << 20,
            },
            client_spill_bytes: 4 << 20,
            spill_budget_bytes: 64 << 20,
            stuck_deadline: Duration::from_secs(10),
            max_client_message: 64 * 1024,
            reply_backlog_bytes: 1 << 20,
            api_reserve: 32,
        }
    }
}

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The API and stream address; `None` runs the loop without a
    /// listener (the CLI runs a [`Hub`] alone instead: [`Hub::standalone`]).
    pub listen: Option<SocketAddr>,
    pub ecaptureq: Option<SocketAddr>,
    pub heartbeat: Duration,
    pub auth_token: Option<String>,
    /// Which local users and browser origins may use the server.
    pub access: AccessConfig,
    pub limits: Limits,
    pub pool: BatchPoolConfig,
    pub start: StartSettings,
    pub initial: LiveSettings,
    /// Forwarding to a collector at start (changeable by `POST /config`).
    pub forward: Option<ForwardConfig>,
    /// Every event also written to a file.
    pub event_file: Option<EventFileConfig>,
}

impl ServerConfig {
    /// The outputs' part: what a [`Hub`] is started with.
    pub fn hub(&self) -> HubConfig {
        HubConfig {
            pool: self.pool,
            forward: self.forward.clone(),
            event_file: self.event_file.clone(),
        }
    }
}

/// Stops a running server from another thread.
#[derive(Clone)]
pub struct ServerHandle {
    stop: Arc<AtomicBool>,
    waker: Arc<CoalescedWake>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerHandle")
    }
}

impl ServerHandle {
    /// Asks the loop to deliver what it holds and return.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.waker.force();
    }
}
/// The event server.
pub struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    ecaptureq: Option<TcpListener>,
    conns: Vec<Option<Conn>>,
    open: usize,
    next_id: u64,
    /// The workers' batches and the other outputs.
    hub: Hub,
    cfg: ServerConfig,
    config: CaptureConfig,
    control: Arc<dyn Control>,
    metrics: ServerMetrics,
    buckets: HashMap<IpAddr, Bucket>,
    started: Instant,
    handle: ServerHandle,
    /// What the clients' spills may hold together.
    spill_budget: Arc<SpillBudget>,
    /// The `--ecaptureq` stream's batches (with that address).
    ecaptureq_batches: Option<EcaptureqBatches>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listen", &self.local_addr())
            .finish()
    }
}
impl Server {
    /// Binds the listeners; returns the server and one publisher per worker.
    pub fn bind(
        cfg: ServerConfig,
        control: Arc<dyn Control>,
        workers: usize,
    ) -> io::Result<(Server, Vec<Publisher>)> {
        let poll = Poll::new()?;
        let listener = match cfg.listen {
            Some(a) => {
                let mut l = bind(a)?;
                poll.registry()
                    .register(&mut l, LISTEN, Interest::READABLE)?;
                Some(l)
            }
            None => None,
        };
        let ecaptureq = match cfg.ecaptureq {
            Some(a) => {
                let mut l = bind(a)?;
                poll.registry()
                    .register(&mut l, ECAPTUREQ, Interest::READABLE)?;
                Some(l)
            }
            None => None,
        };
        let waker = Arc::new(CoalescedWake::new(Arc::new(Waker::new(
            poll.registry(),
            WAKER,
        )?)));
        let (hub, publishers) =
            Hub::start(cfg.hub(), workers, Arc::clone(&waker) as Arc<dyn Wake>)?;
        let config = CaptureConfig {
            live: cfg.initial,
            start: cfg.start.clone(),
        };
        let handle = ServerHandle {
            stop: Arc::new(AtomicBool::new(false)),
            waker,
        };
        let spill_budget = SpillBudget::new(cfg.limits.spill_budget_bytes);
        let ecaptureq_batches = cfg
            .ecaptureq
            .map(|_| EcaptureqBatches::new(workers.max(1) * cfg.pool.batches, cfg.pool));
        Ok((
            Server {
                poll,
                listener,
                ecaptureq,
                conns: Vec::new(),
                open: 0,
                next_id: 1,
                hub,
                cfg,
                config,
                control,
                metrics: ServerMetrics::new(),
                buckets: HashMap::new(),
                started: Instant::now(),
                handle,
                spill_budget,
                ecaptureq_batches,
            },
            publishers,
        ))
    }

    /// The address the API and stream listen on (the real port with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The `--ecaptureq` address, if any.
    pub fn ecaptureq_addr(&self) -> Option<SocketAddr> {
        self.ecaptureq.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// A handle to stop the loop.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Runs until stopped; then delivers what it holds (bounded) and returns.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut last_tick = Instant::now();
        let mut stop_at: Option<Instant> = None;
        let mut pace = crate::pace::FanoutPace::new(Instant::now());
        loop {
            let timeout = pace.timeout(
                Instant::now(),
                Duration::from_millis(if stop_at.is_some() { 10 } else { 100 }),
                self.handle.waker.is_pending(),
            );
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                return Err(e);
            }
            // A request sees every batch handed over before it (whatever
            // the pace): e.g. a forwarder replaced by POST /config gets the
            // events published before the request.
            if self.http_readable(&events) {
                self.fanout_round(&mut pace);
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTEN => self.accept(false),
                    ECAPTUREQ => self.accept(true),
                    WAKER => {}
                    Token(t) => self.conn_event(t - FIRST_CONN, ev.is_readable()),
                }
            }
            if pace.due(Instant::now()) {
                self.fanout_round(&mut pace);
            }
            self.flush_all();
            self.hub.reclaim();
            let clients = self.conns.iter().flatten().any(|c| {
                c.ws.as_ref()
                    .is_some_and(|w| w.filter.types.contains(&EventKind::Packet))
            });
            self.hub.want_packets(clients);
            let now = Instant::now();
            if now.duration_since(last_tick) >= Duration::from_millis(100) {
                last_tick = now;
                self.tick(now);
            }
            if self.handle.stop.load(Ordering::Acquire) {
                let deadline = *stop_at.get_or_insert(now + Duration::from_secs(2));
                let pending = self.conns.iter().flatten().any(|c| {
                    c.staged.pending() > 0 || c.ws.as_ref().is_some_and(|w| w.queued() > 0)
                });
                if !pending || now >= deadline {
                    break;
                }
            }
        }
        for i in 0..self.conns.len() {
            if let Some(c) = self.conns[i].as_mut() {
                if c.ws.is_some() && ecaptureq::closes_with_frame(c) {
                    ws::push_close(&mut c.staged.buf, 1001, "rcapture is stopping");
                }
                let _ = c.flush();
            }
            self.close(i, "server stopping");
        }
        self.hub.finish();
        Ok(())
    }
}
