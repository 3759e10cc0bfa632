//! WebSocket protocol pieces (RFC 6455, RFC 7692) without I/O.
//!
//! tungstenite validates the upgrade and computes the accept key, and parses
//! client frame headers; rcapture writes server frames itself so one encoded
//! entry can be sent to every client with only a per-client header and `seq`
//! prefix in front (vectored writes, no copy of the body).

pub mod message;

use crate::http::Request;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::io::Cursor;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// Opcodes used by the server.
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Close codes.
pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_PROTOCOL: u16 = 1002;
pub const CLOSE_POLICY: u16 = 1008;
pub const CLOSE_TOO_BIG: u16 = 1009;

/// Largest server frame header.
pub const MAX_HEADER: usize = 10;

/// Writes a server (unmasked, final) frame header for `len` payload bytes;
/// returns its length.
pub fn frame_header(opcode: u8, rsv1: bool, len: usize, out: &mut [u8; MAX_HEADER]) -> usize {
    out[0] = 0x80 | if rsv1 { 0x40 } else { 0 } | opcode;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if len <= u16::MAX as usize {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// Appends a whole server frame.
pub fn push_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    let mut h = [0u8; MAX_HEADER];
    let n = frame_header(opcode, false, payload.len(), &mut h);
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(payload);
}

/// Appends a close frame with a status code and reason.
pub fn push_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut p = Vec::with_capacity(2 + reason.len());
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(&reason.as_bytes()[..reason.len().min(123)]);
    push_frame(out, OP_CLOSE, &p);
}

/// A negotiated upgrade.
#[derive(Debug)]
pub struct Upgrade {
    /// The 101 response to write.
    pub response: Vec<u8>,
    /// permessage-deflate was negotiated.
    pub deflate: bool,
}

/// Validates a WebSocket upgrade (tungstenite) and builds the 101 response.
pub fn accept_upgrade(req: &Request) -> Result<Upgrade, String> {
    let version = if req.version == 0 {
        tungstenite::http::Version::HTTP_10
    } else {
        tungstenite::http::Version::HTTP_11
    };
    let mut b = tungstenite::http::Request::builder()
        .method(req.method.as_str())
        .version(version)
        .uri(if req.path.is_empty() {
            "/"
        } else {
            req.path.as_str()
        });
    for (k, v) in &req.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    let hreq = b
        .body(())
        .map_err(|e| format!("bad upgrade request: {e}"))?;
    let resp = tungstenite::handshake::server::create_response(&hreq)
        .map_err(|e| format!("bad WebSocket upgrade: {e}"))?;
    let deflate = req
        .headers
        .iter()
        .filter(|(k, _)| k == "sec-websocket-extensions")
        .flat_map(|(_, v)| v.split(','))
        .any(|ext| ext.split(';').next().map(str::trim) == Some("permessage-deflate"));
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    for (k, v) in resp.headers() {
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"X-Rcapture-Protocol: 1\r\n");
    if deflate {
        out.extend_from_slice(
            b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n",
        );
    }
    out.extend_from_slice(b"\r\n");
    Ok(Upgrade {
        response: out,
        deflate,
    })
}

/// A client frame, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFrame {
    pub fin: bool,
    pub rsv1: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// A client frame that breaks the protocol: the connection is closed with `code`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct FrameError {
    pub code: u16,
    pub reason: String,
}

fn ferr(code: u16, reason: impl Into<String>) -> FrameError {
    FrameError {
        code,
        reason: reason.into(),
    }
}

/// Reads one client frame from the start of `buf`: `Ok(None)` if incomplete.
pub fn read_frame(
    buf: &[u8],
    max_payload: usize,
) -> Result<Option<(ClientFrame, usize)>, FrameError> {
    let mut cur = Cursor::new(buf);
    let (h, len) = match FrameHeader::parse(&mut cur) {
        Ok(Some(x)) => x,
        Ok(None) => return Ok(None),
        Err(e) => return Err(ferr(CLOSE_PROTOCOL, format!("bad frame header: {e}"))),
    };
    let Some(mask) = h.mask else {
        return Err(ferr(CLOSE_PROTOCOL, "client frames must be masked"));
    };
    if h.rsv2 || h.rsv3 {
        return Err(ferr(CLOSE_PROTOCOL, "reserved bits set"));
    }
    let opcode = match h.opcode {
        OpCode::Data(Data::Continue) => 0,
        OpCode::Data(Data::Text) => OP_TEXT,
        OpCode::Data(Data::Binary) => OP_BINARY,
        OpCode::Control(Control::Close) => OP_CLOSE,
        OpCode::Control(Control::Ping) => OP_PING,
        OpCode::Control(Control::Pong) => OP_PONG,
        OpCode::Data(Data::Reserved(op)) | OpCode::Control(Control::Reserved(op)) => {
            return Err(ferr(CLOSE_PROTOCOL, format!("reserved opcode {op:#x}")));
        }
    };
    if h.rsv1 && (opcode == 0 || opcode >= OP_CLOSE) {
        // RFC 7692 §6.1: only the first frame of a data message is marked.
        return Err(ferr(
            CLOSE_PROTOCOL,
            "RSV1 set on a control or continuation frame",
        ));
    }
    if opcode >= OP_CLOSE && (len > 125 || !h.is_final) {
        return Err(ferr(
            CLOSE_PROTOCOL,
            "control frames must be final and at most 125 bytes",
        ));
    }
    if len > max_payload as u64 {
        return Err(ferr(
            CLOSE_TOO_BIG,
            format!("frame of {len} bytes exceeds the {max_payload}-byte limit"),
        ));
    }
    let start = cur.position() as usize;
    let end = start + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    let mut payload = buf[start..end].to_vec();
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
    Ok(Some((
        ClientFrame {
            fin: h.is_final,
            rsv1: h.rsv1,
            opcode,
            payload,
        },
        end,
    )))
}

/// The status code of a client's close frame, to echo (RFC 6455 §5.5.1,
/// §7.4): none for an empty payload (answered 1000). A 1-byte payload, a
/// code no endpoint may send (below 1000, 1004–1006, 1015, the unassigned
/// 1016–2999, 5000 and up) or a reason that is not UTF-8 is a protocol
/// error.
pub fn close_code(payload: &[u8]) -> Result<u16, FrameError> {
    let (code, reason) = match payload {
        [] => return Ok(CLOSE_NORMAL),
        [_] => return Err(ferr(CLOSE_PROTOCOL, "close frame of 1 byte")),
        [a, b, reason @ ..] => (u16::from_be_bytes([*a, *b]), reason),
    };
    if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
        return Err(ferr(CLOSE_PROTOCOL, format!("invalid close code {code}")));
    }
    if std::str::from_utf8(reason).is_err() {
        return Err(ferr(CLOSE_PROTOCOL, "close reason is not UTF-8"));
    }
    Ok(code)
}

/// permessage-deflate state of one connection (no context takeover either way).
pub struct Deflate {
    comp: Compress,
    decomp: Decompress,
}

impl std::fmt::Debug for Deflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deflate")
    }
}

impl Default for Deflate {
    fn default() -> Self {
        Self {
            comp: Compress::new(Compression::fast(), false),
            decomp: Decompress::new(false),
        }
    }
}

impl Deflate {
    /// Compresses one message into `out` (appended), without the final
    /// `00 00 ff ff` (RFC 7692 §7.2.1); the context is reset afterwards.
    pub fn compress(&mut self, parts: &[&[u8]], out: &mut Vec<u8>) {
        for (i, p) in parts.iter().enumerate() {
            let flush = if i + 1 == parts.len() {
                FlushCompress::Sync
            } else {
                FlushCompress::None
            };
            let mut input = *p;
            loop {
                out.reserve(input.len() / 2 + 64);
                let before_in = self.comp.total_in();
                let res = self.comp.compress_vec(input, out, flush);
                let used = (self.comp.total_in() - before_in) as usize;
                input = &input[used..];
                let done = input.is_empty() && out.len() < out.capacity();
                if res.is_err() || done {
                    break;
                }
            }
        }
        if out.ends_with(&[0, 0, 0xff, 0xff]) {
            out.truncate(out.len() - 4);
        }
        self.comp.reset();
    }

    /// Inflates one client message (limit in bytes).
    pub fn decompress(&mut self, data: &[u8], limit: usize) -> Result<Vec<u8>, FrameError> {
        let mut input = Vec::with_capacity(data.len() + 4);
        input.extend_from_slice(data);
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(data.len() * 2 + 64);
        let mut pos = 0;
        loop {
            let (in_before, out_before) = (self.decomp.total_in(), self.decomp.total_out());
            out.reserve(4096);
            let st = self
                .decomp
                .decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync)
                .map_err(|e| ferr(CLOSE_PROTOCOL, format!("bad compressed message: {e}")))?;
            let used = (self.decomp.total_in() - in_before) as usize;
            let produced = self.decomp.total_out() - out_before;
            pos += used;
            if out.len() > limit {
                return Err(ferr(
                    CLOSE_TOO_BIG,
                    format!("message exceeds the {limit}-byte limit"),
                ));
            }
            let drained = pos >= input.len() && out.len() < out.capacity();
            if st == Status::StreamEnd || drained || (used == 0 && produced == 0) {
                break;
            }
        }
        self.decomp.reset(false);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(op: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut v = vec![if fin { 0x80 } else { 0 } | op];
        assert!(payload.len() < 126);
        v.push(0x80 | payload.len() as u8);
        v.extend_from_slice(&mask);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        v
    }

    #[test]
    fn reads_masked_and_rejects_unmasked_oversized_truncated() {
        let f = masked(OP_TEXT, true, b"hello");
        assert_eq!(read_frame(&f[..3], 100).unwrap(), None);
        assert_eq!(read_frame(&f[..f.len() - 1], 100).unwrap(), None);
        let (fr, n) = read_frame(&f, 100).unwrap().unwrap();
        assert_eq!(
            (fr.payload.as_slice(), fr.opcode, n),
            (&b"hello"[..], OP_TEXT, f.len())
        );
        let mut unmasked = Vec::new();
        push_frame(&mut unmasked, OP_TEXT, b"x");
        assert_eq!(read_frame(&unmasked, 100).unwrap_err().code, CLOSE_PROTOCOL);
        assert_eq!(
            read_frame(&masked(OP_TEXT, true, &[0; 50]), 10)
                .unwrap_err()
                .code,
            CLOSE_TOO_BIG
        );
        assert_eq!(
            read_frame(&masked(OP_PING, false, b""), 10)
                .unwrap_err()
                .code,
            CLOSE_PROTOCOL
        );
    }

    #[test]
    fn close_codes() {
        let close = |code: u16, reason: &[u8]| {
            let mut p = code.to_be_bytes().to_vec();
            p.extend_from_slice(reason);
            close_code(&p).map_err(|e| e.code)
        };
        assert_eq!(close_code(b""), Ok(CLOSE_NORMAL));
        assert_eq!(close_code(b"\x03").unwrap_err().code, CLOSE_PROTOCOL);
        for ok in [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert_eq!(close(ok, b"bye"), Ok(ok));
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert_eq!(close(bad, b""), Err(CLOSE_PROTOCOL), "{bad}");
        }
        assert_eq!(close(1000, b"\xff\xfe"), Err(CLOSE_PROTOCOL));
        let mut rsv1_ping = masked(OP_PING, true, b"");
        rsv1_ping[0] |= 0x40;
        assert_eq!(read_frame(&rsv1_ping, 10).unwrap_err().code, CLOSE_PROTOCOL);
    }

    #[test]
    fn deflate_round_trip() {
        let mut d = Deflate::default();
        let mut out = Vec::new();
        d.compress(&[b"abc", &[7u8; 5000][..]], &mut out);
        assert!(out.len() < 200);
        let back = d.decompress(&out, 1 << 20).unwrap();
        let mut want = b"abc".to_vec();
        want.extend_from_slice(&[7u8; 5000]);
        assert_eq!(back.len(), want.len(), "decompressed length");
        assert!(back == want, "decompressed bytes differ");
        // A second message on the same state (no context takeover).
        out.clear();
        d.compress(&[b"xyz"], &mut out);
        assert_eq!(d.decompress(&out, 100).unwrap(), b"xyz");
    }

    #[test]
    fn frame_headers() {
        let mut h = [0; MAX_HEADER];
        assert_eq!(frame_header(OP_BINARY, false, 125, &mut h), 2);
        assert_eq!(frame_header(OP_BINARY, false, 126, &mut h), 4);
        assert_eq!(&h[..4], &[0x82, 126, 0, 126]);
        assert_eq!(frame_header(OP_BINARY, true, 70000, &mut h), 10);
        assert_eq!(h[0], 0xC2);
    }
}
