//! The WebSocket side of the ledger, followed through `/status` snapshots.
//!
//! The server lists each connected client's counts (`websocket.clients`:
//! entries numbered for it, written, queued, dropped by reason) and keeps
//! the final counts of the clients that have gone (`websocket.closed`), so
//! every client's ledger is exact, however many go between two snapshots.
//! In each snapshot the totals over all clients ever (`ws_sent`,
//! `ws_dropped_by_reason`) must be the sum of the clients' counts: the soak
//! connects no other WebSocket client.

use crate::probe::{ClientStat, WsStatus};
use std::net::SocketAddr;

#[derive(Debug)]
pub struct WsLedger {
    locals: Vec<SocketAddr>,
    /// Each client's counts in the last snapshot: while connected, then its
    /// final counts once gone.
    pub last: Vec<Option<ClientStat>>,
    /// The client is no longer connected (its final counts are in `last`).
    pub gone: Vec<bool>,
    /// Snapshots whose totals are not the sum of the clients' counts, or
    /// that lost a client.
    pub mismatches: Vec<String>,
}

impl WsLedger {
    /// Follows the clients at these addresses.
    pub fn new(locals: Vec<SocketAddr>) -> Self {
        let n = locals.len();
        Self {
            locals,
            last: vec![None; n],
            gone: vec![false; n],
            mismatches: Vec::new(),
        }
    }

    /// Takes a snapshot into account.
    pub fn observe(&mut self, s: &WsStatus) {
        for (i, local) in self.locals.iter().enumerate() {
            let live = s.clients.iter().find(|c| c.is(*local));
            let closed = s.closed.iter().find(|c| c.is(*local));
            match (live, closed) {
                (Some(c), None) => {
                    assert!(!self.gone[i], "client {local} listed again after it went");
                    self.last[i] = Some(c.clone());
                }
                (None, Some(c)) => {
                    if let Some(was) = self.last[i].as_ref().filter(|_| self.gone[i]) {
                        assert_eq!(was, c, "the final counts of {local} changed");
                    }
                    self.gone[i] = true;
                    self.last[i] = Some(c.clone());
                }
                (Some(_), Some(_)) => self
                    .mismatches
                    .push(format!("{local} both connected and closed in {s:?}")),
                (None, None) => self
                    .mismatches
                    .push(format!("{local} neither connected nor closed in {s:?}")),
            }
        }
        let all = || s.clients.iter().chain(&s.closed);
        let sum = |f: fn(&ClientStat) -> u64| all().map(f).sum::<u64>();
        let by_reason = [
            sum(|c| c.queue_full),
            sum(|c| c.share),
            sum(|c| c.max_rate),
            sum(|c| c.at_close),
        ];
        if s.closed_total != s.closed.len() as u64
            || s.sent != sum(|c| c.sent)
            || s.dropped != sum(|c| c.dropped)
            || s.by_reason != by_reason
            || s.spilled != sum(|c| c.spilled)
        {
            self.mismatches.push(format!(
                "totals are not the clients' sums (by reason {by_reason:?}) in {s:?}"
            ));
        }
    }

    /// The last counts of client `i` (final once it has gone).
    pub fn counts(&self, i: usize) -> &ClientStat {
        self.last[i]
            .as_ref()
            .unwrap_or_else(|| panic!("client {} never listed", self.locals[i]))
    }
}
