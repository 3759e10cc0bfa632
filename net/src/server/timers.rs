//! The loop's timers: heartbeats, spill release, slow clients, request
//! and idle timeouts, hard deadlines (every 100 ms).

use super::Server;
use crate::conn::WsStream;
use crate::ecaptureq;
use crate::ws;
use rcapture_core::encode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

impl Server {
    pub(super) fn tick(&mut self, now: Instant) {
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

pub(super) fn push_heartbeat(out: &mut Vec<u8>, w: &mut WsStream) {
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
