//! Listeners and connections: accept (with the connection limit), reads
//! dispatched to HTTP or WebSocket input, writes, close.

use super::{FIRST_CONN, Server};
use crate::access::PeerAccess;
use crate::conn::{Conn, Flush};
use crate::http;
use crate::metrics::ClientReport;
use mio::net::TcpListener;
use mio::{Interest, Token};
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

pub(super) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on {addr}: {e} (choose another address with --listen, or --listen none)"),
        )
    })
}

impl Server {
    pub(super) fn accept(&mut self, stream_only: bool) {
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
    pub(super) fn close(&mut self, i: usize, why: &'static str) {
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

    pub(super) fn conn_event(&mut self, i: usize, readable: bool) {
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

    pub(super) fn flush_one(&mut self, i: usize) {
        let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if c.flush() == Flush::Close {
            self.close(i, "peer gone");
        }
    }

    pub(super) fn flush_all(&mut self) {
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
}
