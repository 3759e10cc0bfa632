//! The `--ecaptureq` stream's flavour: eCaptureQ's meaning of `Event.type`
//! and of the addresses.
//!
//! eCaptureQ (the GUI of eCapture) reads `Event.type` of TLS data as
//! upstream eCapture v2's HTTP classification (`pkg/event_processor`'s
//! `ParserType`): 0 unknown, 1 HTTP request, 2 HTTP/2 request, 3 HTTP
//! response, 4 HTTP/2 response; and it shows src → dst as upstream sends
//! them, client → server whichever way the data went. WIRE.md's stream
//! (`/`, `/ws`) keeps `type` = direction and src = the sender.
//!
//! So each worker batch is rewritten once for all the eCaptureQ clients
//! ([`EcaptureqBatches::rewrite`]), only while one is connected, into
//! batches of its own pool that are reused: TLS data entries are read back
//! ([`crate::entry::event_fields_of`]) and encoded again with the label and
//! the orientation; other entries are copied as they are. Nothing is
//! allocated per event once the pool has its batches.
//!
//! Which end is the client is known from an HTTP message: a request is sent
//! by the client, a response by the server. It is remembered per
//! connection (a fixed table of recent connections), so the other data of
//! that connection (bodies, later frames) is oriented too; data of a
//! connection without an HTTP message seen keeps the sender → receiver
//! order. On a connection that began with the HTTP/2 client preface, the
//! client's data is labelled 2 and the server's 4, as upstream's parser
//! kept per connection does.

use crate::conn::Conn;
use crate::entry::event_fields_of;
use crate::publish::{Batch, BatchPoolConfig, EntryMeta};
use rcapture_core::encode;
use rcapture_core::event::{EventFields, EventKind};
use std::sync::Arc;

/// `Event.type` on the eCaptureQ stream (upstream's `ParserType`).
pub mod label {
    /// Not HTTP, or not recognised (`ParserTypeNull`).
    pub const UNKNOWN: u32 = 0;
    pub const HTTP_REQUEST: u32 = 1;
    pub const HTTP2_REQUEST: u32 = 2;
    pub const HTTP_RESPONSE: u32 = 3;
    pub const HTTP2_RESPONSE: u32 = 4;
}

/// What a payload is, on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http {
    /// Not recognised.
    Other,
    /// An HTTP/1.x request line and a complete header section.
    Request,
    /// An HTTP/1.x status line and a complete header section.
    Response,
    /// Starts with the HTTP/2 client connection preface.
    Http2Preface,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Longest first line looked at.
const MAX_LINE: usize = 8 * 1024;
/// Longest header section looked for (a longer one is not recognised).
const MAX_HEAD: usize = 64 * 1024;

/// Classifies a payload as upstream's parsers detect it (Go's
/// `http.ReadRequest` / `http.ReadResponse` succeeding on it, or the HTTP/2
/// preface): the first line, then the end of the header section.
pub fn classify(p: &[u8]) -> Http {
    if p.starts_with(H2_PREFACE) {
        return Http::Http2Preface;
    }
    let Some(nl) = memchr::memchr(b'\n', &p[..p.len().min(MAX_LINE)]) else {
        return Http::Other;
    };
    let line = p[..nl].strip_suffix(b"\r").unwrap_or(&p[..nl]);
    let kind = if line.starts_with(b"HTTP/") {
        if !status_line(line) {
            return Http::Other;
        }
        Http::Response
    } else if request_line(line) {
        Http::Request
    } else {
        return Http::Other;
    };
    // The header section ends with an empty line (right after the first
    // line when there are no headers).
    let end = p.len().min(MAX_HEAD);
    // A line feed followed by another, or by CR LF.
    let ends = memchr::memchr_iter(b'\n', &p[nl..end]).any(|i| {
        let rest = &p[nl + i + 1..end];
        rest.starts_with(b"\n") || rest.starts_with(b"\r\n")
    });
    if ends { kind } else { Http::Other }
}

/// `HTTP/1.D`.
fn http1_version(v: &[u8]) -> bool {
    matches!(v, [b'H', b'T', b'T', b'P', b'/', b'1', b'.', d] if d.is_ascii_digit())
}

/// `METHOD SP TARGET SP HTTP/1.D`, METHOD a token.
fn request_line(line: &[u8]) -> bool {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    !method.is_empty()
        && method.iter().all(|&b| is_tchar(b))
        && !target.is_empty()
        && target.iter().all(|&b| b.is_ascii_graphic())
        && http1_version(version)
}

/// `HTTP/1.D SP DDD [SP reason]`.
fn status_line(line: &[u8]) -> bool {
    let (version, rest) = line.split_at(line.len().min(8));
    let code = rest.strip_prefix(b" ").unwrap_or(&[]);
    http1_version(version)
        && code.len() >= 3
        && code[..3].iter().all(u8::is_ascii_digit)
        && (code.len() == 3 || code[3] == b' ')
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// One connection whose client end is known.
#[derive(Debug, Clone, Copy, Default)]
struct Role {
    /// [`conn_key`] of the connection; 0 = empty.
    key: u64,
    /// [`endpoint_key`] of its client end.
    client: u64,
    /// It began with the HTTP/2 preface.
    http2: bool,
}

/// Connections remembered (direct-mapped by key).
const ROLES: usize = 1024;

/// One step of a multiply-rotate hash over 64-bit words.
fn mix(h: u64, x: u64) -> u64 {
    (h ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29)
}

/// An endpoint (address text, at most 45 bytes, and port), 8 bytes a step.
fn endpoint_key(ip: &str, port: u32) -> u64 {
    let mut h = mix(
        0x243f_6a88_85a3_08d3,
        u64::from(port) | (ip.len() as u64) << 32,
    );
    let mut words = ip.as_bytes().chunks_exact(8);
    for w in &mut words {
        h = mix(h, u64::from_le_bytes(w.try_into().unwrap_or_default()));
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    mix(h, u64::from_le_bytes(tail))
}

/// The same for both directions of one connection of one process, from
/// the [`endpoint_key`]s of its two ends.
fn conn_key(f: &EventFields<'_>, a: u64, b: u64) -> u64 {
    let h = mix(mix(0x1319_8a2e_0370_7344, f.pid as u64), u64::from(f.fd));
    mix(mix(h, a.min(b)), a.max(b)) | 1
}

/// Rewrites worker batches for the eCaptureQ clients.
#[derive(Debug)]
pub struct EcaptureqBatches {
    /// Rewritten batches; one is reused once no client holds it.
    slots: Vec<Arc<Batch>>,
    /// Most batches at once (as many as the workers' pools hold).
    cap: usize,
    pool: BatchPoolConfig,
    roles: Box<[Role]>,
}

impl EcaptureqBatches {
    /// Holds at most `cap` rewritten batches at once; each is sized as a
    /// worker batch of `pool`. Nothing is allocated before the first rewrite
    /// but the connection table.
    pub fn new(cap: usize, pool: BatchPoolConfig) -> Self {
        Self {
            slots: Vec::new(),
            cap: cap.max(1),
            pool,
            roles: vec![Role::default(); ROLES].into_boxed_slice(),
        }
    }

    /// `src` in eCaptureQ's meaning, in a batch of this pool; `None` when
    /// every batch of the pool is still held by a client (the caller counts
    /// the entries as dropped for them).
    pub fn rewrite(&mut self, src: &Batch) -> Option<Arc<Batch>> {
        let i = self.free_slot()?;
        let roles = &mut self.roles;
        let dst = Arc::get_mut(&mut self.slots[i])?;
        dst.worker = src.worker;
        dst.buf.clear();
        dst.entries.clear();
        // A relabelled entry grows by 2 bytes at most (type 0 → 3 or 4).
        dst.buf.reserve(src.buf.len() + 2 * src.entries.len());
        for (idx, m) in src.entries.iter().enumerate() {
            let body = src.body(idx);
            let start = dst.buf.len();
            match event_fields_of(body) {
                Ok(f) if m.kind == EventKind::Data => {
                    encode::encode_event_entry(&relabel(f, roles), &mut dst.buf)
                }
                // Other kinds keep their WIRE.md meaning; an entry that does
                // not read back (never: the workers encoded it) is sent as is.
                _ => dst.buf.extend_from_slice(body),
            }
            dst.entries.push(EntryMeta {
                start: start as u32,
                end: dst.buf.len() as u32,
                ..*m
            });
        }
        Some(Arc::clone(&self.slots[i]))
    }

    /// Frees the batches no client holds (called while no eCaptureQ client
    /// is connected).
    pub fn release_idle(&mut self) {
        self.slots.retain(|s| Arc::strong_count(s) > 1);
    }

    fn free_slot(&mut self) -> Option<usize> {
        if let Some(i) = self.slots.iter().position(|s| Arc::strong_count(s) == 1) {
            return Some(i);
        }
        if self.slots.len() >= self.cap {
            return None;
        }
        let bytes = self.pool.batch_bytes + 64 * 1024 + 2 * self.pool.batch_entries;
        self.slots.push(Arc::new(Batch {
            worker: usize::MAX,
            buf: Vec::with_capacity(bytes),
            entries: Vec::with_capacity(self.pool.batch_entries),
        }));
        Some(self.slots.len() - 1)
    }
}

/// The batch the eCaptureQ clients get for `batch`: rewritten once for all
/// of them while one is connected; `None` when none is (or the pool is
/// spent: see [`EcaptureqBatches::rewrite`]).
pub fn for_clients(
    eq: &mut Option<EcaptureqBatches>,
    conns: &[Option<Conn>],
    batch: &Batch,
) -> Option<Arc<Batch>> {
    let eq = eq.as_mut()?;
    if !conns.iter().flatten().any(is_client) {
        return None;
    }
    eq.rewrite(batch)
}

/// Frees the pool's idle batches while no eCaptureQ client is connected.
pub fn tick(eq: &mut Option<EcaptureqBatches>, conns: &[Option<Conn>]) {
    if let Some(eq) = eq.as_mut()
        && !conns.iter().flatten().any(is_client)
    {
        eq.release_idle();
    }
}

/// A WebSocket client of the `--ecaptureq` address, still served.
fn is_client(c: &Conn) -> bool {
    c.stream_only && c.ws.is_some() && !c.close_after_flush
}

/// Whether the server says goodbye with a close frame (1001) at shutdown:
/// not on the `--ecaptureq` stream, whose sockets are just closed, as
/// upstream's are when it exits. eCaptureQ reconnects (every 300 ms) after
/// a connection lost without a close frame, never after a clean close, so
/// a restarted rcapture gets its eCaptureQ back.
pub fn closes_with_frame(c: &Conn) -> bool {
    !c.stream_only
}

/// A TLS data event (type = direction, src = sender) in eCaptureQ's
/// meaning; learns and uses the client end of its connection.
fn relabel<'a>(mut f: EventFields<'a>, roles: &mut [Role]) -> EventFields<'a> {
    let src = endpoint_key(f.src_ip, f.src_port);
    let dst = endpoint_key(f.dst_ip, f.dst_port);
    let key = conn_key(&f, src, dst);
    let slot = &mut roles[(key % roles.len() as u64) as usize];
    let (label, client) = match classify(f.payload) {
        Http::Request => (label::HTTP_REQUEST, Some((src, false))),
        Http::Response => (label::HTTP_RESPONSE, Some((dst, false))),
        Http::Http2Preface => (label::HTTP2_REQUEST, Some((src, true))),
        Http::Other if slot.key == key && slot.http2 => {
            let l = if slot.client == src {
                label::HTTP2_REQUEST
            } else {
                label::HTTP2_RESPONSE
            };
            (l, None)
        }
        Http::Other => (label::UNKNOWN, None),
    };
    if let Some((client, http2)) = client {
        // An HTTP/1 message on a connection that began as HTTP/2 (or the
        // same key reused) starts over.
        *slot = Role { key, client, http2 };
    }
    f.r#type = label;
    if slot.key == key && slot.client == dst && src != dst {
        std::mem::swap(&mut f.src_ip, &mut f.dst_ip);
        std::mem::swap(&mut f.src_port, &mut f.dst_port);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http1_requests_and_responses_are_recognised() {
        use Http::*;
        let cases: &[(&[u8], Http)] = &[
            (
                b"GET /hello HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
                Request,
            ),
            (
                b"POST /p?q=1 HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
                Request,
            ),
            (b"M-SEARCH * HTTP/1.1\r\n\r\n", Request),
            (b"get / HTTP/1.1\r\n\r\n", Request),
            (b"GET / HTTP/1.1\nHost: x\n\n", Request),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Response),
            (b"HTTP/1.0 204\r\n\r\n", Response),
            (b"HTTP/1.1 404 Not Found\r\nServer: s\r\n\r\nbody", Response),
            (
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04",
                Http2Preface,
            ),
            // Incomplete header sections, other versions, not HTTP.
            (b"GET / HTTP/1.1\r\nHost: x\r\n", Other),
            (b"GET / HTTP/1.1", Other),
            (b"GET / HTTP/2\r\n\r\n", Other),
            (b"GET  / HTTP/1.1\r\n\r\n", Other),
            (b"G(T / HTTP/1.1\r\n\r\n", Other),
            (b"HTTP/2 200\r\n\r\n", Other),
            (b"HTTP/1.1 20\r\n\r\n", Other),
            (b"HTTP/1.1 2000\r\n\r\n", Other),
            (b"hello from the test server\r\n\r\n", Other),
            (b"\x17\x03\x03\x00\x10binary", Other),
            (b"", Other),
        ];
        for (p, want) in cases {
            assert_eq!(classify(p), *want, "{:?}", String::from_utf8_lossy(p));
        }
        // A header section longer than looked for is not recognised.
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD + 10, b'a');
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(classify(&long), Other);
    }

    fn ev<'a>(src: (&'a str, u32), dst: (&'a str, u32), payload: &'a [u8]) -> EventFields<'a> {
        EventFields {
            src_ip: src.0,
            src_port: src.1,
            dst_ip: dst.0,
            dst_port: dst.1,
            pid: 42,
            fd: 5,
            module: "tls",
            payload,
            ..EventFields::default()
        }
    }

    fn addrs(f: &EventFields<'_>) -> (u32, u32, u32) {
        (f.r#type, f.src_port, f.dst_port)
    }

    /// Client 40000 → server 443: every event of the connection is shown
    /// client → server once a request or a response has been seen.
    #[test]
    fn connections_are_oriented_client_to_server() {
        let mut roles = vec![Role::default(); 8];
        let (c, s) = (("127.0.0.1", 40000), ("127.0.0.1", 443));
        // Before any HTTP message: the sender's order, unknown.
        assert_eq!(
            addrs(&relabel(ev(s, c, b"xx"), &mut roles)),
            (0, 443, 40000)
        );
        // The response (received by the client: server → client) teaches it.
        let r = relabel(ev(s, c, b"HTTP/1.1 200 OK\r\n\r\n"), &mut roles);
        assert_eq!(addrs(&r), (3, 40000, 443));
        assert_eq!((r.src_ip, r.dst_ip), ("127.0.0.1", "127.0.0.1"));
        assert_eq!(
            addrs(&relabel(ev(s, c, b"body"), &mut roles)),
            (0, 40000, 443)
        );
        assert_eq!(
            addrs(&relabel(ev(c, s, b"more"), &mut roles)),
            (0, 40000, 443)
        );
        let q = relabel(ev(c, s, b"GET / HTTP/1.1\r\n\r\n"), &mut roles);
        assert_eq!(addrs(&q), (1, 40000, 443));
        // The server's side of the same exchange (another process): its
        // request arrives client → server as well.
        let mut srv = ev(c, s, b"GET / HTTP/1.1\r\n\r\n");
        srv.pid = 7;
        assert_eq!(addrs(&relabel(srv, &mut roles)), (1, 40000, 443));
        // IPv6 addresses move with their ports.
        let (c6, s6) = (("::1", 40001), ("::2", 8443));
        let r = relabel(ev(s6, c6, b"HTTP/1.1 200 OK\r\n\r\n"), &mut roles);
        assert_eq!(
            (r.src_ip, r.src_port, r.dst_ip, r.dst_port),
            ("::1", 40001, "::2", 8443)
        );
    }

    /// After the HTTP/2 preface, the client's frames are 2 and the
    /// server's 4.
    #[test]
    fn http2_connections_label_both_sides() {
        let mut roles = vec![Role::default(); 8];
        let (c, s) = (("10.0.0.1", 50000), ("10.0.0.2", 443));
        let frame = b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x01";
        assert_eq!(
            addrs(&relabel(ev(s, c, frame), &mut roles)),
            (0, 443, 50000)
        );
        assert_eq!(
            addrs(&relabel(ev(c, s, H2_PREFACE), &mut roles)),
            (2, 50000, 443)
        );
        assert_eq!(
            addrs(&relabel(ev(s, c, frame), &mut roles)),
            (4, 50000, 443)
        );
        assert_eq!(
            addrs(&relabel(ev(c, s, frame), &mut roles)),
            (2, 50000, 443)
        );
    }

    fn batch(events: &[EventFields<'_>], kinds: &[EventKind]) -> Batch {
        let mut b = Batch {
            worker: 0,
            buf: Vec::new(),
            entries: Vec::new(),
        };
        for (f, &kind) in events.iter().zip(kinds) {
            let start = b.buf.len() as u32;
            encode::encode_event_entry(f, &mut b.buf);
            b.entries.push(EntryMeta {
                start,
                end: b.buf.len() as u32,
                module: rcapture_core::event::Module::Tls,
                kind,
                pid: f.pid as u32,
                uid: 0,
                timestamp: 0,
                payload_len: f.length(),
            });
        }
        b
    }

    /// A batch is rewritten into a reused batch of the pool: data entries
    /// relabelled, other kinds as they were; a batch still held is not
    /// reused, and the pool does not grow past its cap.
    #[test]
    fn batches_are_rewritten_into_a_reused_pool() {
        let (c, s) = (("127.0.0.1", 40000), ("127.0.0.1", 443));
        let mut req = ev(c, s, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        req.r#type = 1;
        let resp = ev(s, c, b"HTTP/1.1 200 OK\r\n\r\nhi");
        let mut key = ev(("127.0.0.1", 0), ("127.0.0.1", 0), b"CLIENT_RANDOM 00 11\n");
        key.r#type = 0x0304;
        let src = batch(
            &[req, resp, key],
            &[EventKind::Data, EventKind::Data, EventKind::MasterKey],
        );
        let pool = BatchPoolConfig {
            batches: 2,
            batch_bytes: 1024,
            batch_entries: 8,
        };
        let mut eq = EcaptureqBatches::new(2, pool);
        let a = eq.rewrite(&src).expect("a free batch");
        let got: Vec<_> = (0..3)
            .map(|i| event_fields_of(a.body(i)).unwrap())
            .collect();
        assert_eq!(addrs(&got[0]), (1, 40000, 443));
        assert_eq!(addrs(&got[1]), (3, 40000, 443));
        assert_eq!(got[1].payload, b"HTTP/1.1 200 OK\r\n\r\nhi");
        assert_eq!(got[2], key, "a master key keeps its meaning");
        assert_eq!(a.entries[2].kind, EventKind::MasterKey);
        let ptr = Arc::as_ptr(&a);
        let b = eq.rewrite(&src).expect("the second batch of the pool");
        assert_ne!(Arc::as_ptr(&b), ptr, "a held batch is not reused");
        assert!(eq.rewrite(&src).is_none(), "the pool is capped");
        drop(a);
        let again = eq.rewrite(&src).expect("the released batch");
        assert_eq!(Arc::as_ptr(&again), ptr);
        drop((b, again));
        eq.release_idle();
        assert!(eq.slots.is_empty());
    }
}
