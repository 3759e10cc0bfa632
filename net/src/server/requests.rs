//! HTTP requests on a connection: parsing, the per-address rate limit,
//! authentication, the API routes, the WebSocket upgrade, half-closed
//! clients, unread responses, request timeouts.

use super::Server;
use super::timers::push_heartbeat;
use crate::access::{self, Refusal};
use crate::api::{self, ApiContext, ApiResponse};
use crate::conn::WsStream;
use crate::filter::ClientFilter;
use crate::http::{self, Parsed, Request, parse_request};
use crate::metrics::ClientReport;
use crate::{web, ws};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) struct Bucket {
    tokens: f64,
    pub(super) last: Instant,
}

impl Server {
    pub(super) fn rate_ok(&mut self, ip: IpAddr, now: Instant) -> bool {
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

    pub(super) fn respond(&mut self, i: usize, r: ApiResponse, keep_alive: bool) {
        self.respond_head(i, r, keep_alive, false);
    }

    /// Writes a response; for `HEAD` (`head`) without its body.
    pub(super) fn respond_head(&mut self, i: usize, r: ApiResponse, keep_alive: bool, head: bool) {
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

    pub(super) fn http_input(&mut self, i: usize) {
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
            let upgrade = req.header_has_token("upgrade", "websocket");
            let stream_only = self.conns[i].as_ref().is_some_and(|c| c.stream_only);
            if !upgrade && !stream_only && web::is_asset(&req.path) {
                self.serve_page(i, &req);
                continue;
            }
            if let Some((why, r)) = self.refusal(i, &req) {
                self.metrics.refused[why.index()] += 1;
                self.respond(i, r, false);
                return;
            }
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

    /// A resource of the web viewer ([`crate::web`]): it holds no data, so
    /// neither the token nor the local-user check applies; the browser
    /// checks (`Origin`, `Host`) do.
    fn serve_page(&mut self, i: usize, req: &Request) {
        let Some(peer) = self.conns.get(i).and_then(Option::as_ref).map(|c| c.peer) else {
            return;
        };
        if let Some((why, r)) = self.cfg.access.check_request(req, peer, self.local_addr()) {
            self.metrics.refused[why.index()] += 1;
            self.respond(i, r, false);
            return;
        }
        let head = req.method == "HEAD";
        self.respond_head(i, web::serve(req), req.keep_alive(), head);
    }

    /// The access checks of one request (see [`crate::access`]).
    pub(super) fn refusal(&self, i: usize, req: &Request) -> Option<(Refusal, ApiResponse)> {
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

    pub(super) fn ws_client_list(&self) -> Vec<ClientReport> {
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

    pub(super) fn api(&mut self, req: &Request) -> ApiResponse {
        let ws_clients = self.ws_client_list();
        let mut ctx = ApiContext {
            control: &*self.control,
            config: &mut self.config,
            metrics: &self.metrics,
            started: self.started,
            connections: self.open,
            ws_clients: &ws_clients,
            publish_dropped: self.hub.publish_dropped(),
            forwarder: &mut self.hub.forwarder,
            forward_intake: self.hub.forward_intake,
            forward_totals: &mut self.hub.forward_totals,
            event_file: self.hub.event_file.as_ref(),
        };
        api::route(req, &mut ctx)
    }

    /// A 503 when the WebSocket clients hold their share of the connections:
    /// all but the API's reserve (`api_reserve`, at most a quarter).
    pub(super) fn ws_share_full(&self) -> Option<ApiResponse> {
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

    pub(super) fn upgrade(&mut self, i: usize, req: &Request) {
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
}

/// Connection hooks of the HTTP side: half-closed clients, unread
/// responses, requests that do not arrive in time.
impl Server {
    /// The client of HTTP connection `i` has shut down its side: its
    /// requests already read are answered, then the connection closes.
    /// False if the connection must close now (WebSocket, lingering, failed).
    pub(super) fn half_closed(&mut self, i: usize) -> bool {
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
    pub(super) fn reply_backlog_full(&mut self, i: usize) -> bool {
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
    pub(super) fn request_timed_out(&mut self, i: usize, now: Instant) {
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
