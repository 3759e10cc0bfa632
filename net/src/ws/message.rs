//! WebSocket message assembly on a connection's buffers: client frames in,
//! control replies and subscribe answers out (RFC 6455 §5.4, §5.5, RFC 7692).
//!
//! [`client_input`] reads what a client sent (`rbuf`), answers into the bytes
//! the connection writes next (`out`) and says when the connection must
//! close; it does no I/O, so it is tested from byte slices.

use super::{
    CLOSE_POLICY, CLOSE_PROTOCOL, CLOSE_TOO_BIG, Deflate, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT,
    close_code, push_close, push_frame, read_frame,
};
use crate::conn::Staged;
use crate::filter::{ClientFilter, parse_subscribe};

/// A fragmented client message being assembled.
#[derive(Debug, Default)]
pub struct Assembly {
    /// Opcode, compressed (RSV1 of the first frame), bytes so far.
    fragment: Option<(u8, bool, Vec<u8>)>,
}

/// Why a client's input closes its connection (the `closed` reason of
/// `/status`).
pub const CLOSED_BY_CLIENT: &str = "closed by the client";
pub const PROTOCOL_ERROR: &str = "protocol error";
pub const NOT_READING: &str = "not reading its replies";

/// Bounds of one client's input.
#[derive(Debug, Clone, Copy)]
pub struct InputLimits {
    /// Largest message: a frame, a message assembled or inflated.
    pub max_message: usize,
    /// Bytes of replies the client may leave unread (named in the close).
    pub backlog: usize,
    /// Bytes `out` may hold unsent when a frame other than a close or a
    /// pong arrives; past it the connection is closed with 1008 (the
    /// backlog, and a deflate client's compressed event frames on top).
    pub unsent_allowance: usize,
}

/// Markers of the two fragment errors, told apart once a message is whole.
const TOO_BIG: u8 = 0xff;
const NO_MESSAGE: u8 = 0xfe;

/// Reads every complete client frame at the start of `rbuf` (removing it)
/// and appends the answers to `out`: a pong per ping, the close handshake,
/// a `subscribed` or `error` text message per client message (a valid
/// subscribe replaces `filter`). Messages (whole or assembled, inflated with
/// `deflate` when compressed) may hold `limits.max_message` bytes.
///
/// Returns why the connection must close once `out` is written, if it must:
/// a close frame is then the last thing in `out`, and what is left in `rbuf`
/// is not to be read.
pub fn client_input(
    rbuf: &mut Vec<u8>,
    staged: &mut Staged,
    asm: &mut Assembly,
    mut deflate: Option<&mut Deflate>,
    filter: &mut ClientFilter,
    limits: InputLimits,
) -> Option<&'static str> {
    let max = limits.max_message;
    loop {
        let (frame, used) = match read_frame(rbuf, max) {
            Ok(Some(x)) => x,
            Ok(None) => return None,
            Err(e) => {
                push_close(&mut staged.buf, e.code, &e.reason);
                return Some(PROTOCOL_ERROR);
            }
        };
        rbuf.drain(..used);
        if frame.opcode != OP_CLOSE
            && frame.opcode != OP_PONG
            && staged.pending() > limits.unsent_allowance
        {
            let reason = format!(
                "client not reading: over {} bytes of replies unsent",
                limits.backlog
            );
            push_close(&mut staged.buf, CLOSE_POLICY, &reason);
            return Some(NOT_READING);
        }
        let out = &mut staged.buf;
        let message = match frame.opcode {
            OP_PING => {
                push_frame(out, OP_PONG, &frame.payload);
                None
            }
            OP_PONG => None,
            OP_CLOSE => {
                return match close_code(&frame.payload) {
                    Ok(code) => {
                        push_close(out, code, "");
                        Some(CLOSED_BY_CLIENT)
                    }
                    Err(e) => {
                        push_close(out, e.code, &e.reason);
                        Some(PROTOCOL_ERROR)
                    }
                };
            }
            0 => match asm.fragment.as_mut() {
                Some((_, _, buf)) if buf.len() + frame.payload.len() <= max => {
                    buf.extend_from_slice(&frame.payload);
                    if frame.fin { asm.fragment.take() } else { None }
                }
                Some(_) => Some((TOO_BIG, false, Vec::new())),
                None => Some((NO_MESSAGE, false, Vec::new())),
            },
            op if asm.fragment.is_some() => {
                let reason = format!("a new message (opcode {op:#x}) inside a fragmented one");
                push_close(out, CLOSE_PROTOCOL, &reason);
                return Some(PROTOCOL_ERROR);
            }
            op => {
                if frame.fin {
                    Some((op, frame.rsv1, frame.payload))
                } else {
                    asm.fragment = Some((op, frame.rsv1, frame.payload));
                    None
                }
            }
        };
        let Some((op, compressed, payload)) = message else {
            continue;
        };
        let mut fail = |code: u16, reason: &str| {
            push_close(out, code, reason);
            Some(PROTOCOL_ERROR)
        };
        let payload = if compressed {
            match deflate.as_deref_mut().map(|d| d.decompress(&payload, max)) {
                Some(Ok(p)) => p,
                Some(Err(e)) => return fail(e.code, &e.reason),
                None => {
                    return fail(
                        CLOSE_PROTOCOL,
                        "compressed frame without permessage-deflate",
                    );
                }
            }
        } else {
            payload
        };
        match op {
            TOO_BIG => return fail(CLOSE_TOO_BIG, "fragmented message exceeds the limit"),
            NO_MESSAGE => return fail(CLOSE_PROTOCOL, "continuation frame without a message"),
            OP_TEXT => {
                let reply = match std::str::from_utf8(&payload)
                    .map_err(|_| "text message is not UTF-8".to_string())
                    .and_then(parse_subscribe)
                {
                    Ok(f) => {
                        let v = serde_json::json!({"op": "subscribed", "filter": f.to_json()});
                        *filter = f;
                        v
                    }
                    Err(e) => serde_json::json!({"op": "error", "message": e}),
                };
                push_frame(out, OP_TEXT, reply.to_string().as_bytes());
            }
            _ => {
                let text = serde_json::json!({"op": "error", "message": "binary messages are not understood; send a subscribe text message"}).to_string();
                push_frame(out, OP_TEXT, text.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::{CLOSE_NORMAL, OP_BINARY};

    /// The server frames in `out` (unmasked, final): opcode and payload.
    fn read_server_frames(mut out: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut frames = Vec::new();
        while !out.is_empty() {
            let (len, at) = match out[1] {
                126 => (usize::from(u16::from_be_bytes([out[2], out[3]])), 4),
                127 => panic!("no test frame is that long"),
                n => (usize::from(n), 2),
            };
            frames.push((out[0] & 0x0f, out[at..at + len].to_vec()));
            out = &out[at + len..];
        }
        frames
    }

    /// A masked client frame (any length), RSV1 set when `rsv1`.
    fn masked(op: u8, fin: bool, rsv1: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [9, 8, 7, 6];
        let mut v = vec![if fin { 0x80 } else { 0 } | if rsv1 { 0x40 } else { 0 } | op];
        match payload.len() {
            n if n < 126 => v.push(0x80 | n as u8),
            n => {
                v.push(0x80 | 126);
                v.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        v.extend_from_slice(&mask);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        v
    }

    /// What one feed ended with: the closing reason, the frames answered
    /// (opcode, payload), the bytes left unread.
    type Fed = (Option<&'static str>, Vec<(u8, Vec<u8>)>, usize);

    struct Client {
        out: Staged,
        asm: Assembly,
        deflate: Option<Deflate>,
        filter: ClientFilter,
    }

    impl Client {
        fn new(deflate: bool) -> Self {
            Self {
                out: Staged::default(),
                asm: Assembly::default(),
                deflate: deflate.then(Deflate::default),
                filter: ClientFilter::default(),
            }
        }

        /// Feeds `input`.
        fn feed(&mut self, input: &[u8]) -> Fed {
            let mut rbuf = input.to_vec();
            self.out = Staged::default();
            let limits = InputLimits {
                max_message: 64,
                backlog: 4096,
                unsent_allowance: 4096,
            };
            let why = client_input(
                &mut rbuf,
                &mut self.out,
                &mut self.asm,
                self.deflate.as_mut(),
                &mut self.filter,
                limits,
            );
            (why, read_server_frames(&self.out.buf), rbuf.len())
        }
    }

    fn close_code(payload: &[u8]) -> u16 {
        u16::from_be_bytes([payload[0], payload[1]])
    }

    #[test]
    fn pings_are_answered_and_partial_frames_wait() {
        let mut c = Client::new(false);
        let mut input = masked(OP_PING, true, false, b"are you there");
        input.extend_from_slice(&masked(OP_PONG, true, false, b"x"));
        let half = masked(OP_PING, true, false, b"later");
        input.extend_from_slice(&half[..4]);
        let (why, frames, left) = c.feed(&input);
        assert_eq!(why, None);
        assert_eq!(frames, vec![(OP_PONG, b"are you there".to_vec())]);
        assert_eq!(left, 4, "the partial frame stays in the buffer");
    }

    #[test]
    fn fragmented_subscribe_replaces_the_filter() {
        let mut c = Client::new(false);
        let msg = br#"{"op":"subscribe","filter":{"pids":[7]}}"#;
        let mut input = masked(OP_TEXT, false, false, &msg[..10]);
        input.extend_from_slice(&masked(OP_PING, true, false, b""));
        input.extend_from_slice(&masked(0, true, false, &msg[10..]));
        let (why, frames, _) = c.feed(&input);
        assert_eq!(why, None);
        assert_eq!(
            frames[0].0, OP_PONG,
            "a ping between fragments is answered first"
        );
        let reply: serde_json::Value = serde_json::from_slice(&frames[1].1).unwrap();
        assert_eq!(reply["op"], "subscribed");
        assert_eq!(c.filter.pids, vec![7]);
    }

    #[test]
    fn bad_messages_get_error_replies_and_keep_the_connection() {
        let mut c = Client::new(false);
        let mut input = masked(OP_TEXT, true, false, b"{");
        input.extend_from_slice(&masked(OP_TEXT, true, false, &[0xff, 0xfe]));
        input.extend_from_slice(&masked(OP_BINARY, true, false, b"\x01"));
        let (why, frames, _) = c.feed(&input);
        assert_eq!(why, None);
        let msgs: Vec<String> = frames
            .iter()
            .map(|(op, p)| {
                assert_eq!(*op, OP_TEXT);
                let v: serde_json::Value = serde_json::from_slice(p).unwrap();
                assert_eq!(v["op"], "error");
                v["message"].as_str().unwrap().to_string()
            })
            .collect();
        assert!(msgs[0].starts_with("invalid JSON"), "{msgs:?}");
        assert_eq!(msgs[1], "text message is not UTF-8");
        assert!(msgs[2].starts_with("binary messages"), "{msgs:?}");
        assert_eq!(c.filter, ClientFilter::default());
    }

    #[test]
    fn close_is_echoed_and_ends_the_input() {
        let mut c = Client::new(false);
        let mut input = masked(OP_CLOSE, true, false, &1001u16.to_be_bytes());
        input.extend_from_slice(&masked(OP_PING, true, false, b"after"));
        let (why, frames, left) = c.feed(&input);
        assert_eq!(why, Some(CLOSED_BY_CLIENT));
        assert_eq!(frames.len(), 1, "nothing answered after the close");
        assert_eq!((frames[0].0, close_code(&frames[0].1)), (OP_CLOSE, 1001));
        assert!(left > 0, "the rest is not read");
        let (why, frames, _) = c.feed(&masked(OP_CLOSE, true, false, b""));
        assert_eq!(
            (why, close_code(&frames[0].1)),
            (Some(CLOSED_BY_CLIENT), CLOSE_NORMAL)
        );
    }

    #[test]
    fn protocol_errors_close_with_their_code() {
        let cases: [(Vec<u8>, u16, &str); 6] = [
            (
                [
                    masked(OP_TEXT, false, false, b"a"),
                    masked(OP_TEXT, true, false, b"b"),
                ]
                .concat(),
                CLOSE_PROTOCOL,
                "a new message (opcode 0x1) inside a fragmented one",
            ),
            (
                masked(OP_CLOSE, true, false, &1005u16.to_be_bytes()),
                CLOSE_PROTOCOL,
                "invalid close code 1005",
            ),
            (
                masked(0, true, false, b"x"),
                CLOSE_PROTOCOL,
                "continuation frame without a message",
            ),
            (
                [
                    masked(OP_TEXT, false, false, &[b'a'; 40]),
                    masked(0, true, false, &[b'a'; 40]),
                ]
                .concat(),
                CLOSE_TOO_BIG,
                "fragmented message exceeds the limit",
            ),
            (
                masked(OP_TEXT, true, true, b"x"),
                CLOSE_PROTOCOL,
                "compressed frame without permessage-deflate",
            ),
            (
                masked(OP_TEXT, true, false, &[b'a'; 65]),
                CLOSE_TOO_BIG,
                "exceeds",
            ),
        ];
        for (input, code, reason) in cases {
            let (why, frames, _) = Client::new(false).feed(&input);
            assert_eq!(why, Some(PROTOCOL_ERROR), "{reason}");
            let (op, p) = &frames[frames.len() - 1];
            assert_eq!((*op, close_code(p)), (OP_CLOSE, code), "{reason}");
            assert!(
                String::from_utf8_lossy(&p[2..]).contains(reason),
                "{reason}"
            );
        }
    }

    #[test]
    fn a_client_not_reading_its_replies_is_closed_with_1008() {
        let mut staged = Staged::default();
        staged.buf.extend_from_slice(&[0; 90]);
        let limits = InputLimits {
            max_message: 64,
            backlog: 80,
            unsent_allowance: 100,
        };
        let mut input = masked(OP_PING, true, false, &[1; 20]);
        input.extend_from_slice(&masked(OP_PONG, true, false, b""));
        input.extend_from_slice(&masked(OP_PING, true, false, b""));
        let mut rbuf = input;
        let (mut asm, mut filter) = (Assembly::default(), ClientFilter::default());
        let why = client_input(&mut rbuf, &mut staged, &mut asm, None, &mut filter, limits);
        assert_eq!(why, Some(NOT_READING));
        let frames = read_server_frames(&staged.buf[90..]);
        assert_eq!(frames[0], (OP_PONG, vec![1; 20]), "within the allowance");
        let (op, p) = &frames[1];
        assert_eq!((*op, close_code(p)), (OP_CLOSE, CLOSE_POLICY));
        assert!(String::from_utf8_lossy(p).contains("over 80 bytes"));
    }

    #[test]
    fn compressed_messages_are_inflated_within_the_limit() {
        let mut c = Client::new(true);
        let mut z = Vec::new();
        Deflate::default().compress(&[br#"{"op":"subscribe","filter":{"uids":[0]}}"#], &mut z);
        let (why, frames, _) = c.feed(&masked(OP_TEXT, true, true, &z));
        assert_eq!(why, None);
        assert!(String::from_utf8_lossy(&frames[0].1).contains("subscribed"));
        assert_eq!(c.filter.uids, vec![0]);
        z.clear();
        Deflate::default().compress(&[&[b' '; 200][..]], &mut z);
        let (why, frames, _) = c.feed(&masked(OP_TEXT, true, true, &z));
        assert_eq!(why, Some(PROTOCOL_ERROR));
        assert_eq!(close_code(&frames[0].1), CLOSE_TOO_BIG);
    }
}
