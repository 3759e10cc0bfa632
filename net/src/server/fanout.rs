//! WebSocket fan-out: every batch the hub takes is offered to every
//! client (by its filter, within its share of the batch slots); the
//! clients' own messages are read by [`crate::ws::message`].

use super::{FIRST_CONN, Server};
use crate::conn::{Conn, DropReason};
use crate::ecaptureq::{self, EcaptureqBatches};
use crate::metrics::ServerMetrics;
use crate::publish::Batch;
use crate::ws;
use mio::{Events, Token};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

impl Server {
    /// Reads a WebSocket client's frames ([`ws::message::client_input`]);
    /// a close it asks for or a protocol error it makes ends the connection
    /// once the answers are written.
    pub(super) fn ws_input(&mut self, i: usize) {
        let max = self.cfg.limits.max_client_message;
        let backlog = self.cfg.limits.reply_backlog_bytes;
        let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let Some(w) = c.ws.as_mut() else { return };
        if c.close_after_flush {
            c.rbuf.clear();
            return;
        }
        let limits = ws::message::InputLimits {
            max_message: max,
            backlog,
            unsent_allowance: w.staged_allowance(backlog),
        };
        let closing = ws::message::client_input(
            &mut c.rbuf,
            &mut c.staged,
            &mut w.assembly,
            w.deflate.as_mut(),
            &mut w.filter,
            limits,
        );
        if let Some(why) = closing {
            if why == ws::message::NOT_READING {
                self.metrics.backlog_closed[1] += 1;
            }
            w.clear();
            w.closing = Some(why);
            c.close_after_flush = true;
            c.hard_deadline = Some(Instant::now() + Duration::from_secs(2));
            c.rbuf.clear();
        }
    }

    /// Takes the workers' batches (see [`crate::pace`]).
    pub(super) fn fanout_round(&mut self, pace: &mut crate::pace::FanoutPace) {
        self.handle.waker.start_round();
        let before = self.metrics.received;
        self.take_batches();
        pace.took(Instant::now(), self.metrics.received != before);
    }

    /// Whether a connection that is not a WebSocket stream has input.
    pub(super) fn http_readable(&self, events: &Events) -> bool {
        events.iter().any(|ev| match ev.token() {
            Token(t) if t >= FIRST_CONN && ev.is_readable() => self
                .conns
                .get(t - FIRST_CONN)
                .and_then(Option::as_ref)
                .is_some_and(|c| c.ws.is_none()),
            _ => false,
        })
    }

    /// Has the hub take the workers' batches: the forwarder and the event
    /// file get each one, and so does every WebSocket client ([`fan_out`]).
    pub(super) fn take_batches(&mut self) {
        let share = self.client_share();
        crate::conn::start_deflate_round(&mut self.conns);
        let (conns, metrics) = (&mut self.conns, &mut self.metrics);
        let eq = &mut self.ecaptureq_batches;
        self.hub
            .take(|batch| fan_out(conns, metrics, eq, batch, share));
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
    pub(super) fn client_share(&self) -> usize {
        let pool = self.cfg.pool.batches;
        let (held, slots) = self.hub.held();
        if held * 2 < slots.max(1) {
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
}

/// Counts a batch's entries in the metrics and offers each to every client
/// (drops are counted by the client, with their reason); clients of the
/// `--ecaptureq` address get the batch rewritten for them.
fn fan_out(
    conns: &mut [Option<Conn>],
    metrics: &mut ServerMetrics,
    eq_batches: &mut Option<EcaptureqBatches>,
    batch: &Arc<Batch>,
    share: usize,
) {
    let now = Instant::now();
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    for m in &batch.entries {
        metrics.event(m, (wall - m.timestamp) as f64 / 1e9);
    }
    let eq = ecaptureq::for_clients(eq_batches, conns, batch);
    for c in conns.iter_mut().flatten() {
        if c.close_after_flush {
            continue;
        }
        let Some(w) = c.ws.as_mut() else { continue };
        let rc = match (&eq, c.stream_only) {
            (_, false) => batch,
            (Some(eq), true) => eq,
            (None, true) => {
                // Every batch of the eCaptureQ pool is still held.
                w.drop_batch(batch, DropReason::Share);
                continue;
            }
        };
        for idx in 0..rc.entries.len() {
            w.offer(rc, idx, &mut c.staged, now, share);
        }
    }
}
