//! The mio event loop: listeners, connections, fan-out of worker batches,
//! heartbeats, limits and timeouts. One thread; nothing here blocks.

use crate::access::{self, AccessConfig, PeerAccess, Refusal};
use crate::api::{self, ApiContext, ApiResponse};
use crate::config::{CaptureConfig, StartSettings};
use crate::conn::{Conn, DropReason, Flush, QueueLimits, SpillBudget, WsStream};
use crate::control::{Control, LiveSettings};
use crate::ecaptureq::{self, EcaptureqBatches};
use crate::eventfile::{EventFile, EventFileConfig};
use crate::filter::{ClientFilter, parse_subscribe};
use crate::forward::{ForwardConfig, Forwarder};
use crate::http::{self, Parsed, Request, RequestLimits, parse_request};
use crate::metrics::{ClientReport, ForwardTotals, ServerMetrics};
use crate::publish::{Batch, BatchPoolConfig, CoalescedWake, PublishStats, Publisher, Wake};
use crate::ws;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use rcapture_core::encode;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    /// The API and stream address; `None` runs the loop for the other
    /// consumers (forwarder, event file) without a listener.
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

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The event server.
pub struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    ecaptureq: Option<TcpListener>,
    conns: Vec<Option<Conn>>,
    open: usize,
    next_id: u64,
    rx: Receiver<Batch>,
    returns: Vec<SyncSender<Batch>>,
    slots: Vec<Arc<Batch>>,
    cfg: ServerConfig,
    config: CaptureConfig,
    control: Arc<dyn Control>,
    metrics: ServerMetrics,
    publish: Arc<PublishStats>,
    buckets: HashMap<IpAddr, Bucket>,
    started: Instant,
    handle: ServerHandle,
    forwarder: Option<Forwarder>,
    /// The final counts of the forwarders `POST /config` replaced or disabled.
    forward_totals: ForwardTotals,
    event_file: Option<EventFile>,
    /// What the clients' spills may hold together.
    spill_budget: Arc<SpillBudget>,
    /// `intake_batches` of every forwarder the server starts.
    forward_intake: usize,
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

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on {addr}: {e} (choose another address with --listen, or --listen none)"),
        )
    })
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
        let (tx, rx) = sync_channel(workers.max(1) * cfg.pool.batches);
        let publish = Arc::new(PublishStats::default());
        let mut returns = Vec::with_capacity(workers);
        let mut publishers = Vec::with_capacity(workers);
        for w in 0..workers {
            let (free_tx, free_rx) = sync_channel(cfg.pool.batches);
            for _ in 0..cfg.pool.batches {
                let _ = free_tx.send(Batch {
                    worker: w,
                    buf: Vec::with_capacity(cfg.pool.batch_bytes + 64 * 1024),
                    entries: Vec::with_capacity(cfg.pool.batch_entries),
                });
            }
            returns.push(free_tx);
            publishers.push(Publisher::new(
                w,
                tx.clone(),
                free_rx,
                Arc::clone(&waker) as Arc<dyn Wake>,
                Arc::clone(&publish),
                cfg.pool,
            ));
        }
        // Half of every worker's batches at most wait in the forwarder's
        // intake: the rest stay for the clients and the event file.
        let forward_intake =
            (cfg.pool.batches * returns.len() / 2).clamp(4, crate::forward::config::INTAKE_BATCHES);
        let forwarder = match cfg.forward.clone() {
            Some(mut f) => {
                f.intake_batches = forward_intake;
                Some(
                    Forwarder::start(f)
                        .map_err(|e| io::Error::other(format!("starting the forwarder: {e}")))?,
                )
            }
            None => None,
        };
        let event_file = match cfg.event_file.clone() {
            Some(f) => {
                let path = f.path.clone();
                Some(EventFile::start(f).map_err(|e| {
                    io::Error::new(e.kind(), format!("event file {}: {e}", path.display()))
                })?)
            }
            None => None,
        };
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
                rx,
                returns,
                // Every batch in flight comes from a worker pool, so this many
                // slots always suffice: the slot table never grows.
                slots: (0..workers.max(1) * cfg.pool.batches)
                    .map(|_| {
                        Arc::new(Batch {
                            worker: usize::MAX,
                            buf: Vec::new(),
                            entries: Vec::new(),
                        })
                    })
                    .collect(),
                cfg,
                config,
                control,
                metrics: ServerMetrics::new(),
                publish,
                buckets: HashMap::new(),
                started: Instant::now(),
                handle,
                forwarder,
                forward_totals: ForwardTotals::default(),
                spill_budget,
                forward_intake,
                event_file,
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
            self.reclaim();
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
        self.forward_totals.wait_retiring();
        if let Some(f) = self.forwarder.take() {
            self.forward_totals
                .retire(f.shutdown(Duration::from_secs(5)));
        }
        if let Some(s) = self.forward_totals.with(None) {
            eprintln!(
                "rcapture: forwarded {} events in {} batches; {} failed batches ({} events), {} retries, {} events dropped{}",
                s.sent_events,
                s.sent_batches,
                s.failed_batches,
                s.failed_events,
                s.retries,
                s.dropped_events,
                s.last_error
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            );
        }
        if let Some(f) = self.event_file.take() {
            match f.shutdown() {
                Ok(s) => eprintln!(
                    "rcapture: event file: {} events written ({} bytes, {} rotations), {} dropped",
                    s.written_events, s.bytes, s.files_rotated, s.dropped_events
                ),
                Err(e) => eprintln!("rcapture: event file: closing failed: {e}"),
            }
        }
        Ok(())
    }

    fn accept(&mut self, stream_only: bool) {
        loop {
            let l = if stream_only {
                match self.ecaptureq.as_ref() {
                    Some(l) => l,
                    None => return,
                }
            } else {
                match self.listener.as_ref() {
                    Some(l) => l,
                    None => return,
                }
            };
            let (mut sock, peer) = match l.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("rcapture: accept failed: {e}");
                    return;
                }
            };
            if self.open >= self.cfg.limits.max_connections {
                let mut out = Vec::new();
                let body = http::envelope(
                    6,
                    "",
                    &format!(
                        "too many connections (limit {})",
                        self.cfg.limits.max_connections
                    ),
                    serde_json::Value::Null,
                );
                http::write_response(
                    &mut out,
                    (503, "Service Unavailable"),
                    "application/json",
                    &[],
                    &body,
                    false,
                    false,
                );
                let _ = io::Write::write(&mut sock, &out);
                continue;
            }
            let idx = match self.conns.iter().position(Option::is_none) {
                Some(i) => i,
                None => {
                    self.conns.push(None);
                    self.conns.len() - 1
                }
            };
            if self
                .poll
                .registry()
                .register(
                    &mut sock,
                    Token(idx + FIRST_CONN),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                continue;
            }
            let _ = sock.set_nodelay(true);
            let access = match sock.local_addr() {
                Ok(local) => self.cfg.access.check_peer(peer, local),
                Err(e) => PeerAccess::Refused(format!("the server's own address is unknown: {e}")),
            };
            let now = Instant::now();
            let mut c = Conn::new(sock, peer, stream_only, now, self.next_id);
            if let PeerAccess::Refused(why) = access {
                c.refused = Some(why);
            }
            // The first request must come within the request timeout too:
            // a connection that never sends one does not keep its slot.
            c.request_started = Some(now);
            self.conns[idx] = Some(c);
            self.next_id += 1;
            self.open += 1;
        }
    }

    /// Closes connection `i`; `why` names the end of a WebSocket client
    /// whose close was not decided before (the peer went, a timeout).
    fn close(&mut self, i: usize, why: &'static str) {
        if let Some(mut c) = self.conns.get_mut(i).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut c.sock);
            self.open -= 1;
            if let Some(mut w) = c.ws {
                // Entries still queued when a connection goes (peer gone,
                // timeout, shutdown) are lost to that client: count them.
                w.abandon();
                // Nothing allocated: a client going is no reason to.
                self.metrics.client_closed(ClientReport {
                    name: std::mem::take(&mut w.name),
                    counts: w.counts,
                    queued: 0,
                    spill_bytes: 0,
                    closed: Some(w.closing.unwrap_or(why)),
                });
            }
        }
    }

    fn conn_event(&mut self, i: usize, readable: bool) {
        if readable {
            let limit = self.cfg.limits.request.max_header_bytes
                + self.cfg.limits.request.max_body_bytes
                + 64 * 1024;
            let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else {
                return;
            };
            let alive = c.read_available(limit);
            c.last_activity = Instant::now();
            if c.ws.is_some() {
                self.ws_input(i);
            } else {
                self.http_input(i);
            }
            if !alive && !self.half_closed(i) {
                self.close(i, "peer gone");
                return;
            }
        }
        self.flush_one(i);
    }

    fn flush_one(&mut self, i: usize) {
        let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if c.flush() == Flush::Close {
            self.close(i, "peer gone");
        }
    }

    fn flush_all(&mut self) {
        for i in 0..self.conns.len() {
            let busy = self.conns[i].as_ref().is_some_and(|c| {
                c.staged.pending() > 0
                    || c.ws.as_ref().is_some_and(|w| w.queued() > 0)
                    || c.close_after_flush
            });
            if busy {
                self.flush_one(i);
            }
        }
    }

    fn rate_ok(&mut self, ip: IpAddr, now: Instant) -> bool {
        let rate = f64::from(self.cfg.limits.requests_per_sec.max(1));
        let b = self
            .buckets
            .entry(crate::peer::rate_class(ip))
            .or_insert(Bucket {
                tokens: 2.0 * rate,
                last: now,
            });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(2.0 * rate);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn respond(&mut self, i: usize, r: ApiResponse, keep_alive: bool) {
        self.respond_head(i, r, keep_alive, false);
    }

    /// Writes a response; for `HEAD` (`head`) without its body.
    fn respond_head(&mut self, i: usize, r: ApiResponse, keep_alive: bool, head: bool) {
        *self.metrics.http_responses.entry(r.status).or_default() += 1;
        let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        http::write_response(
            &mut c.staged.buf,
            (r.status, http::reason(r.status)),
            r.content_type,
            &r.extra,
            &r.body,
            keep_alive,
            head,
        );
        if !keep_alive {
            c.close_after_flush = true;
        }
    }

    fn http_input(&mut self, i: usize) {
        loop {
            let now = Instant::now();
            let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else {
                return;
            };
            if c.close_after_flush || c.rbuf.is_empty() {
                if c.rbuf.is_empty() {
                    c.request_started = None;
                }
                return;
            }
            c.request_started.get_or_insert(now);
            let parsed = parse_request(&c.rbuf, self.cfg.limits.request);
            let (req, used) = match parsed {
                Ok(Parsed::Partial) => return,
                Ok(Parsed::AwaitingBody { expect_continue }) => {
                    if expect_continue && !c.continue_sent {
                        c.staged.buf.extend_from_slice(http::CONTINUE);
                        c.continue_sent = true;
                    }
                    return;
                }
                Ok(Parsed::Complete(r, n)) => (r, n),
                Err(e) => {
                    let (status, _) = e.status();
                    c.rbuf.clear();
                    self.respond(i, ApiResponse::error(status, 1, &e.to_string()), false);
                    return;
                }
            };
            c.rbuf.drain(..used);
            c.request_started = None;
            c.continue_sent = false;
            if self.reply_backlog_full(i) {
                return;
            }
            let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else {
                return;
            };
            let peer = c.peer.ip();
            if !self.rate_ok(peer, now) {
                let mut r = ApiResponse::error(
                    429,
                    6,
                    &format!(
                        "rate limited: more than {} requests per second from {peer}",
                        self.cfg.limits.requests_per_sec
                    ),
                );
                r.extra.push(("Retry-After", "1".into()));
                self.respond(i, r, req.keep_alive());
                continue;
            }
            if let Some((why, r)) = self.refusal(i, &req) {
                self.metrics.refused[why.index()] += 1;
                self.respond(i, r, false);
                return;
            }
            let upgrade = req.header_has_token("upgrade", "websocket");
            let stream_only = self.conns[i].as_ref().is_some_and(|c| c.stream_only);
            if upgrade && (stream_only || req.path == "/" || req.path == "/ws") {
                self.upgrade(i, &req);
                return;
            }
            if stream_only {
                self.respond(
                    i,
                    ApiResponse::error(
                        404,
                        3,
                        "this address serves only the WebSocket event stream",
                    ),
                    false,
                );
                return;
            }
            let head = req.method == "HEAD";
            let r = if head {
                self.api(&Request {
                    method: "GET".into(),
                    ..req.clone()
                })
            } else {
                self.api(&req)
            };
            self.respond_head(i, r, req.keep_alive(), head);
        }
    }

    /// The access checks of one request (see [`crate::access`]).
    fn refusal(&self, i: usize, req: &Request) -> Option<(Refusal, ApiResponse)> {
        let c = self.conns.get(i).and_then(Option::as_ref)?;
        if let Some(why) = &c.refused {
            return Some((Refusal::LocalUser, ApiResponse::error(403, 1, why)));
        }
        if let Some(r) = access::check_token(self.cfg.auth_token.as_deref(), req) {
            return Some((Refusal::Token, r));
        }
        let listen = if c.stream_only {
            self.ecaptureq_addr()
        } else {
            self.local_addr()
        };
        self.cfg.access.check_request(req, c.peer, listen)
    }

    fn ws_client_list(&self) -> Vec<ClientReport> {
        self.conns
            .iter()
            .flatten()
            .filter_map(|c| {
                c.ws.as_ref().map(|w| ClientReport {
                    name: w.name.clone(),
                    counts: w.counts,
                    queued: w.queued() as u64,
                    spill_bytes: w.spill_capacity() as u64,
                    closed: None,
                })
            })
            .collect()
    }

    fn api(&mut self, req: &Request) -> ApiResponse {
        let ws_clients = self.ws_client_list();
        let mut ctx = ApiContext {
            control: &*self.control,
            config: &mut self.config,
            metrics: &self.metrics,
            started: self.started,
            connections: self.open,
            ws_clients: &ws_clients,
            publish_dropped: self.publish.dropped.load(Ordering::Relaxed),
            forwarder: &mut self.forwarder,
            forward_intake: self.forward_intake,
            forward_totals: &mut self.forward_totals,
            event_file: self.event_file.as_ref(),
        };
        api::route(req, &mut ctx)
    }

    /// A 503 when the WebSocket clients hold their share of the connections:
    /// all but the API's reserve (`api_reserve`, at most a quarter).
    fn ws_share_full(&self) -> Option<ApiResponse> {
        let l = &self.cfg.limits;
        let reserve = l.api_reserve.min(l.max_connections / 4);
        let ws_max = l.max_connections.saturating_sub(reserve).max(1);
        let clients = self.conns.iter().flatten().filter(|c| c.ws.is_some());
        (clients.count() >= ws_max).then(|| {
            let msg = format!(
                "too many WebSocket clients (limit {ws_max}: {reserve} of the {} connections are kept for the API)",
                l.max_connections
            );
            ApiResponse::error(503, 6, &msg)
        })
    }

    fn upgrade(&mut self, i: usize, req: &Request) {
        if let Some(r) = self.ws_share_full() {
            self.respond(i, r, false);
            return;
        }
        let filter = match ClientFilter::from_query(&req.query) {
            Ok(f) => f,
            Err(e) => {
                self.respond(
                    i,
                    ApiResponse::error(400, 5, &format!("bad stream filter: {e}")),
                    false,
                );
                return;
            }
        };
        let up = match ws::accept_upgrade(req) {
            Ok(u) => u,
            Err(e) => {
                self.respond(i, ApiResponse::error(400, 1, &e), false);
                return;
            }
        };
        let now = Instant::now();
        let heartbeat = self.cfg.heartbeat;
        let limits = self.cfg.limits.client_queue;
        let spill = self.cfg.limits.client_spill_bytes;
        let budget = Arc::clone(&self.spill_budget);
        let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        c.staged.buf.extend_from_slice(&up.response);
        let name = format!("{}#{}", c.peer, c.id);
        let mut w = WsStream::new(name, filter, limits, spill, budget, up.deflate, now);
        push_heartbeat(&mut c.staged.buf, &mut w);
        w.next_heartbeat = now + heartbeat;
        c.ws = Some(w);
        c.request_started = None;
        // Frames the client sent right behind the upgrade request.
        self.ws_input(i);
    }

    fn ws_input(&mut self, i: usize) {
        let max = self.cfg.limits.max_client_message;
        let backlog = self.cfg.limits.reply_backlog_bytes;
        let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let Some(w) = c.ws.as_mut() else { return };
        loop {
            if c.close_after_flush {
                c.rbuf.clear();
                return;
            }
            let (frame, used) = match ws::read_frame(&c.rbuf, max) {
                Ok(Some(x)) => x,
                Ok(None) => return,
                Err(e) => {
                    w.clear();
                    w.closing = Some("protocol error");
                    ws::push_close(&mut c.staged.buf, e.code, &e.reason);
                    c.close_after_flush = true;
                    c.hard_deadline = Some(Instant::now() + Duration::from_secs(2));
                    c.rbuf.clear();
                    return;
                }
            };
            c.rbuf.drain(..used);
            if frame.opcode != ws::OP_CLOSE
                && frame.opcode != ws::OP_PONG
                && c.staged.pending() > w.staged_allowance(backlog)
            {
                self.metrics.backlog_closed[1] += 1;
                let reason = format!("client not reading: over {backlog} bytes of replies unsent");
                return c.close_ws(ws::CLOSE_POLICY, &reason, "not reading its replies");
            }
            let message = match frame.opcode {
                ws::OP_PING => {
                    ws::push_frame(&mut c.staged.buf, ws::OP_PONG, &frame.payload);
                    None
                }
                ws::OP_PONG => None,
                ws::OP_CLOSE => {
                    let code = match ws::close_code(&frame.payload) {
                        Ok(code) => code,
                        Err(e) => return c.close_ws(e.code, &e.reason, "protocol error"),
                    };
                    w.clear();
                    w.closing = Some("closed by the client");
                    ws::push_close(&mut c.staged.buf, code, "");
                    c.close_after_flush = true;
                    c.hard_deadline = Some(Instant::now() + Duration::from_secs(2));
                    None
                }
                0 => match w.fragment.as_mut() {
                    Some((_, _, buf)) if buf.len() + frame.payload.len() <= max => {
                        buf.extend_from_slice(&frame.payload);
                        if frame.fin { w.fragment.take() } else { None }
                    }
                    Some(_) => Some((0xff, false, Vec::new())),
                    None => Some((0xfe, false, Vec::new())),
                },
                op if w.fragment.is_some() => {
                    return c.close_ws(
                        ws::CLOSE_PROTOCOL,
                        &format!("a new message (opcode {op:#x}) inside a fragmented one"),
                        "protocol error",
                    );
                }
                op => {
                    if frame.fin {
                        Some((op, frame.rsv1, frame.payload))
                    } else {
                        w.fragment = Some((op, frame.rsv1, frame.payload));
                        None
                    }
                }
            };
            let Some((op, compressed, payload)) = message else {
                continue;
            };
            let fail = |c: &mut Conn, code: u16, reason: &str| {
                if let Some(w) = c.ws.as_mut() {
                    w.clear();
                    w.closing = Some("protocol error");
                }
                ws::push_close(&mut c.staged.buf, code, reason);
                c.close_after_flush = true;
                c.hard_deadline = Some(Instant::now() + Duration::from_secs(2));
            };
            let payload = if compressed {
                match w.deflate.as_mut().map(|d| d.decompress(&payload, max)) {
                    Some(Ok(p)) => p,
                    Some(Err(e)) => return fail(c, e.code, &e.reason),
                    None => {
                        return fail(
                            c,
                            ws::CLOSE_PROTOCOL,
                            "compressed frame without permessage-deflate",
                        );
                    }
                }
            } else {
                payload
            };
            match op {
                0xff => return fail(c, ws::CLOSE_TOO_BIG, "fragmented message exceeds the limit"),
                0xfe => {
                    return fail(
                        c,
                        ws::CLOSE_PROTOCOL,
                        "continuation frame without a message",
                    );
                }
                ws::OP_TEXT => {
                    let reply = match std::str::from_utf8(&payload)
                        .map_err(|_| "text message is not UTF-8".to_string())
                        .and_then(parse_subscribe)
                    {
                        Ok(f) => {
                            let v = serde_json::json!({"op": "subscribed", "filter": f.to_json()});
                            w.filter = f;
                            v
                        }
                        Err(e) => serde_json::json!({"op": "error", "message": e}),
                    };
                    let text = reply.to_string();
                    ws::push_frame(&mut c.staged.buf, ws::OP_TEXT, text.as_bytes());
                }
                _ => {
                    let text = serde_json::json!({"op": "error", "message": "binary messages are not understood; send a subscribe text message"}).to_string();
                    ws::push_frame(&mut c.staged.buf, ws::OP_TEXT, text.as_bytes());
                }
            }
        }
    }

    /// Takes the workers' batches (see [`crate::pace`]).
    fn fanout_round(&mut self, pace: &mut crate::pace::FanoutPace) {
        self.handle.waker.start_round();
        let before = self.metrics.received;
        self.take_batches();
        pace.took(Instant::now(), self.metrics.received != before);
    }

    /// Whether a connection that is not a WebSocket stream has input.
    fn http_readable(&self, events: &Events) -> bool {
        events.iter().any(|ev| match ev.token() {
            Token(t) if t >= FIRST_CONN && ev.is_readable() => self
                .conns
                .get(t - FIRST_CONN)
                .and_then(Option::as_ref)
                .is_some_and(|c| c.ws.is_none()),
            _ => false,
        })
    }

    /// Moves worker batches into slots and offers every entry to every client.
    fn take_batches(&mut self) {
        let share = self.client_share();
        crate::conn::start_deflate_round(&mut self.conns);
        while let Ok(batch) = self.rx.try_recv() {
            let now = Instant::now();
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(0);
            for m in &batch.entries {
                self.metrics.event(m, (wall - m.timestamp) as f64 / 1e9);
            }
            let slot = self.store(batch);
            let rc = Arc::clone(&self.slots[slot]);
            if let Some(f) = &self.forwarder {
                f.offer(&rc);
            }
            if let Some(f) = &self.event_file {
                f.offer(&rc);
            }
            let eq = ecaptureq::for_clients(&mut self.ecaptureq_batches, &self.conns, &rc);
            for ci in 0..self.conns.len() {
                let Some(c) = self.conns[ci].as_mut() else {
                    continue;
                };
                if c.close_after_flush {
                    continue;
                }
                let Some(w) = c.ws.as_mut() else { continue };
                let rc = match (&eq, c.stream_only) {
                    (_, false) => &rc,
                    (Some(eq), true) => eq,
                    (None, true) => {
                        // Every batch of the eCaptureQ pool is still held.
                        w.drop_batch(&rc, DropReason::Share);
                        continue;
                    }
                };
                for idx in 0..rc.entries.len() {
                    // Drops are counted by the client, with their reason.
                    w.offer(rc, idx, &mut c.staged, now, share);
                }
            }
        }
    }

    /// How many distinct batches one WebSocket client's queue may point
    /// into. While the server holds less than half of the batch slots
    /// (workers × pool), a quarter of a worker's pool: clients that keep up
    /// share the same few batches and never copy. Once it holds half, the
    /// workers' pools are at risk, and the share becomes half a worker's pool
    /// split between the clients being served (at least 1 each), so the
    /// clients together give the slots back. What a client queues beyond its
    /// share is copied out or dropped for it alone (see [`crate::conn`]); a
    /// client gives back what it holds over a smaller share at its next
    /// batch, as far as its spill allows; one that cannot is not reading,
    /// and the slow-client deadline closes it.
    fn client_share(&self) -> usize {
        let pool = self.cfg.pool.batches;
        let held = self
            .slots
            .iter()
            .filter(|s| Arc::strong_count(s) > 1 || !s.entries.is_empty())
            .count();
        if held * 2 < self.slots.len().max(1) {
            return (pool / 4).max(1);
        }
        let clients = self
            .conns
            .iter()
            .flatten()
            .filter(|c| c.ws.is_some() && !c.close_after_flush)
            .count();
        (pool / 2 / clients.max(1)).max(1)
    }

    /// Puts a batch into a free slot (the slot's own storage is reused).
    fn store(&mut self, batch: Batch) -> usize {
        let free = self
            .slots
            .iter_mut()
            .position(|s| Arc::get_mut(s).is_some_and(|b| b.entries.is_empty()));
        match free {
            Some(i) => {
                if let Some(b) = Arc::get_mut(&mut self.slots[i]) {
                    *b = batch;
                }
                i
            }
            None => {
                self.slots.push(Arc::new(batch));
                self.slots.len() - 1
            }
        }
    }

    /// Returns every batch no client holds any more to its worker.
    fn reclaim(&mut self) {
        for s in &mut self.slots {
            if let Some(b) = Arc::get_mut(s)
                && !b.entries.is_empty()
            {
                let done = std::mem::replace(
                    b,
                    Batch {
                        worker: usize::MAX,
                        buf: Vec::new(),
                        entries: Vec::new(),
                    },
                );
                if let Some(tx) = self.returns.get(done.worker) {
                    // The worker's pool has room for every batch it owns.
                    let _ = tx.try_send(done);
                }
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        let limits = self.cfg.limits;
        let heartbeat = self.cfg.heartbeat;
        let mut to_close = Vec::new();
        let mut too_slow = Vec::new();
        for (i, slot) in self.conns.iter_mut().enumerate() {
            let Some(c) = slot.as_mut() else { continue };
            if c.hard_deadline.is_some_and(|d| now >= d) {
                to_close.push(i);
                continue;
            }
            match c.ws.as_mut() {
                Some(w) => {
                    if now >= w.next_heartbeat && !c.close_after_flush {
                        push_heartbeat(&mut c.staged.buf, w);
                        w.next_heartbeat = now + heartbeat;
                    }
                    if w.queued() == 0 {
                        w.release_spill(now);
                    }
                    if w.full_since
                        .is_some_and(|t| now.duration_since(t) >= limits.stuck_deadline)
                        && !c.close_after_flush
                    {
                        w.clear();
                        w.closing = Some("too slow");
                        ws::push_close(
                            &mut c.staged.buf,
                            ws::CLOSE_POLICY,
                            "client too slow: send queue full",
                        );
                        c.close_after_flush = true;
                        c.hard_deadline = Some(now + Duration::from_secs(2));
                    }
                }
                None => {
                    let slow = c
                        .request_started
                        .is_some_and(|t| now.duration_since(t) >= limits.request_timeout);
                    let idle = c.request_started.is_none()
                        && c.staged.pending() == 0
                        && now.duration_since(c.last_activity) >= limits.idle_timeout;
                    if slow && !c.close_after_flush {
                        too_slow.push(i);
                    } else if slow || idle {
                        to_close.push(i);
                    }
                }
            }
        }
        for i in to_close {
            self.close(i, "timed out");
        }
        for i in too_slow {
            self.request_timed_out(i, now);
        }
        ecaptureq::tick(&mut self.ecaptureq_batches, &self.conns);
        self.buckets
            .retain(|_, b| now.duration_since(b.last) < Duration::from_secs(60));
    }
}

/// Connection hooks of the HTTP side: half-closed clients, unread
/// responses, requests that do not arrive in time.
impl Server {
    /// The client of HTTP connection `i` has shut down its side: its
    /// requests already read are answered, then the connection closes.
    /// False if the connection must close now (WebSocket, lingering, failed).
    fn half_closed(&mut self, i: usize) -> bool {
        let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return false;
        };
        if c.ws.is_some() || !c.read_closed || c.lingering() {
            return false;
        }
        c.close_after_flush = true;
        c.hard_deadline
            .get_or_insert(Instant::now() + crate::conn::LINGER_TIME);
        true
    }

    /// Before a pipelined request is served: if the client has left more
    /// than `reply_backlog_bytes` of responses unread, it gets a 429 and the
    /// connection closes (counted). Returns true then.
    fn reply_backlog_full(&mut self, i: usize) -> bool {
        let cap = self.cfg.limits.reply_backlog_bytes;
        let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return true;
        };
        if !c.reply_backlog_full(cap) {
            return false;
        }
        c.rbuf.clear();
        c.hard_deadline = Some(Instant::now() + Duration::from_secs(2));
        self.metrics.backlog_closed[0] += 1;
        let msg = format!(
            "too many pipelined requests: over {cap} bytes of responses unread; read the responses before sending more"
        );
        self.respond(i, ApiResponse::error(429, 6, &msg), false);
        true
    }

    /// A request did not arrive whole within `request_timeout`: 408, then
    /// the connection closes (lingering).
    fn request_timed_out(&mut self, i: usize, now: Instant) {
        let timeout = self.cfg.limits.request_timeout;
        let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        c.rbuf.clear();
        c.request_started = None;
        c.hard_deadline = Some(now + crate::conn::LINGER_TIME);
        let msg = format!("request not received within {} s", timeout.as_secs_f64());
        self.respond(i, ApiResponse::error(408, 1, &msg), false);
    }
}

fn push_heartbeat(out: &mut Vec<u8>, w: &mut WsStream) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut msg = rcapture_core::textbuf::TextBuf::<32>::new();
    // "heartbeat:" and an i64 always fit in 32 bytes.
    let _ = std::fmt::Write::write_fmt(&mut msg, format_args!("heartbeat:{}", w.heartbeats));
    let msg = msg.as_str();
    let len = encode::heartbeat_entry_len(secs, w.heartbeats, msg);
    let mut h = [0u8; ws::MAX_HEADER];
    let n = ws::frame_header(ws::OP_BINARY, false, len, &mut h);
    out.extend_from_slice(&h[..n]);
    encode::encode_heartbeat_entry(secs, w.heartbeats, msg, out);
    w.heartbeats += 1;
}
