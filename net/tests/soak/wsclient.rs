//! The soak's WebSocket clients: real TCP, a real upgrade and RFC 6455
//! framing parsed by hand (cheap enough to follow every event). A reader
//! follows `seq` and counts what it gets; a staller stops reading after a
//! while and resumes only when told (or never, if the server closes it).

use crate::wire::{self, Entry, ModuleCounts, module_index};
use prost::Message;
use rcapture_proto::{LogEntry, log_entry::Payload};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a client behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Reads continuously.
    Reader,
    /// Reads, then stops reading this long after the start until resumed.
    Staller { after: Duration },
}

/// What the test sees of a running client, and how it steers it.
#[derive(Debug, Default)]
pub struct Live {
    /// Event entries received (whole frames).
    pub events: AtomicU64,
    /// Highest `seq` received.
    pub last_seq: AtomicU64,
    /// Start reading again (a staller).
    pub resume: AtomicBool,
    /// The connection ended (EOF or error); the thread is returning.
    pub done: AtomicBool,
    /// Give up now (the test is failing or over).
    pub quit: AtomicBool,
}

/// What a client saw, once its connection ended.
#[derive(Debug, Clone)]
pub struct Report {
    /// The client's own address: the server names it `ADDR#ID`.
    pub local: SocketAddr,
    pub events: u64,
    /// Those events by module.
    pub modules: ModuleCounts,
    pub payload_bytes: u64,
    /// Entries missing between the ones received (`seq` gaps).
    pub gaps: u64,
    pub last_seq: u64,
    pub heartbeats: u64,
    /// Entries fully decoded with prost (samples), all consistent.
    pub sampled: u64,
    /// The close frame's status and reason, if one arrived.
    pub close: Option<(u16, String)>,
    /// The stream ended with EOF (after or without a close frame).
    pub eof: bool,
    /// Bytes of a frame cut short by the end of the stream.
    pub partial_tail: usize,
    /// When a staller stopped and resumed reading (since the start).
    pub stalled_at: Option<Duration>,
    pub resumed_at: Option<Duration>,
    /// The first protocol or I/O problem seen.
    pub error: Option<String>,
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// An upgraded connection that has received its first heartbeat.
#[derive(Debug)]
pub struct WsClient {
    pub name: String,
    pub local: SocketAddr,
    pub live: Arc<Live>,
    sock: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` received and not yet parsed.
    have: usize,
}

impl WsClient {
    /// Connects to `/ws`, checks the 101 and the first heartbeat.
    pub fn connect(addr: SocketAddr, name: &str) -> WsClient {
        let mut sock = TcpStream::connect(addr).expect("connect to the server");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let local = sock.local_addr().unwrap();
        let upgrade = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Origin: http://localhost/\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        sock.write_all(upgrade.as_bytes()).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = sock.read(&mut chunk).expect("reading the upgrade response");
            assert!(n > 0, "{name}: closed during the upgrade");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101 "), "{name}: {head}");
        let accept = tungstenite::handshake::derive_accept_key(KEY.as_bytes()).to_ascii_lowercase();
        assert!(
            head.contains(&format!("sec-websocket-accept: {accept}")),
            "{name}: {head}"
        );
        let have = buf.len() - end;
        buf.copy_within(end.., 0);
        buf.resize(1 << 20, 0);
        let mut c = WsClient {
            name: name.to_string(),
            local,
            live: Arc::new(Live::default()),
            sock,
            buf,
            have,
        };
        let mut state = State::default();
        while state.heartbeats == 0 {
            let open = c.fill().expect("reading the first heartbeat");
            assert!(open, "{name}: closed before the first heartbeat");
            c.parse(&mut state);
            assert!(state.error.is_none(), "{name}: {:?}", state.error);
        }
        assert_eq!(state.events, 0, "{name}: events before any was captured");
        c
    }

    /// Reads what the socket has after the `have` bytes kept; `Ok(false)` on EOF.
    fn fill(&mut self) -> io::Result<bool> {
        if self.buf.len() - self.have < 64 * 1024 {
            // A frame larger than the buffer (the 40 kB events fit easily).
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self.sock.read(&mut self.buf[self.have..])?;
        self.have += n;
        Ok(n > 0)
    }

    /// Parses the whole frames buffered into `st`, keeping a partial one.
    fn parse(&mut self, st: &mut State) {
        let mut pos = 0;
        while let Some((b0, payload, used)) = frame(&self.buf[pos..self.have]) {
            pos += used;
            let op = b0 & 0x0f;
            if b0 & 0x80 == 0 || b0 & 0x70 != 0 {
                st.fail(format!(
                    "frame header {b0:#04x}: not final, or RSV bits set"
                ));
                continue;
            }
            match op {
                0x2 => st.entry(payload),
                0x8 => {
                    let code = payload
                        .get(..2)
                        .map_or(1005, |b| u16::from_be_bytes([b[0], b[1]]));
                    let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or(&[]));
                    st.close = Some((code, reason.into_owned()));
                }
                0x9 | 0xA => {}
                other => st.fail(format!("unexpected opcode {other:#x}")),
            }
        }
        self.buf.copy_within(pos..self.have, 0);
        self.have -= pos;
    }

    /// Runs the client on its own thread until its connection ends.
    pub fn spawn(mut self, behaviour: Behaviour, t0: Instant) -> JoinHandle<Report> {
        std::thread::Builder::new()
            .name(format!("soak-{}", self.name))
            .spawn(move || {
                self.sock
                    .set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let mut st = State {
                    heartbeats: 1,
                    ..State::default()
                };
                let live = Arc::clone(&self.live);
                let mut eof = false;
                while !live.quit.load(Relaxed) {
                    if let Behaviour::Staller { after } = behaviour
                        && t0.elapsed() >= after
                        && !live.resume.load(Relaxed)
                    {
                        st.stalled_at.get_or_insert(t0.elapsed());
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    if st.stalled_at.is_some() {
                        st.resumed_at.get_or_insert(t0.elapsed());
                    }
                    match self.fill() {
                        Ok(true) => {}
                        Ok(false) => {
                            eof = true;
                            break;
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock
                                    | io::ErrorKind::TimedOut
                                    | io::ErrorKind::Interrupted
                            ) => {}
                        Err(e) => {
                            st.fail(format!("read: {e}"));
                            break;
                        }
                    }
                    self.parse(&mut st);
                    live.events.store(st.events, Relaxed);
                    live.last_seq.store(st.last_seq, Relaxed);
                }
                live.done.store(true, Relaxed);
                // A frame cut by the close is not an entry the client got.
                st.partial_tail = self.have;
                Report {
                    local: self.local,
                    events: st.events,
                    modules: st.modules,
                    payload_bytes: st.payload_bytes,
                    gaps: st.gaps,
                    last_seq: st.last_seq,
                    heartbeats: st.heartbeats,
                    sampled: st.sampled,
                    close: st.close,
                    eof,
                    partial_tail: st.partial_tail,
                    stalled_at: st.stalled_at,
                    resumed_at: st.resumed_at,
                    error: st.error,
                }
            })
            .expect("spawn a client thread")
    }
}

/// A reader's running tally.
#[derive(Debug, Default)]
struct State {
    events: u64,
    modules: ModuleCounts,
    payload_bytes: u64,
    gaps: u64,
    last_seq: u64,
    heartbeats: u64,
    sampled: u64,
    close: Option<(u16, String)>,
    stalled_at: Option<Duration>,
    resumed_at: Option<Duration>,
    partial_tail: usize,
    error: Option<String>,
}

impl State {
    fn fail(&mut self, e: String) {
        self.error.get_or_insert(e);
    }

    fn entry(&mut self, b: &[u8]) {
        if self.close.is_some() {
            return self.fail("an entry after the close frame".into());
        }
        match wire::entry(b) {
            Ok(Entry::Event {
                seq,
                payload_len,
                module,
            }) => {
                if seq <= self.last_seq {
                    return self.fail(format!("seq {seq} after {}", self.last_seq));
                }
                self.gaps += seq - self.last_seq - 1;
                self.last_seq = seq;
                self.events += 1;
                self.modules[module_index(module)] += 1;
                self.payload_bytes += payload_len as u64;
                // Every 1024th entry is decoded in full as a cross-check.
                if self.events % 1024 == 1 {
                    match LogEntry::decode(b) {
                        Ok(LogEntry {
                            seq: s,
                            payload: Some(Payload::EventPayload(e)),
                            ..
                        }) if s == seq && e.module == module.name() => self.sampled += 1,
                        Ok(e) => self.fail(format!(
                            "prost sees {e:?}, the scanner seq {seq}, module {module:?}"
                        )),
                        Err(e) => self.fail(format!("prost cannot decode an entry: {e}")),
                    }
                }
            }
            Ok(Entry::Heartbeat) => self.heartbeats += 1,
            Ok(Entry::Log) => self.fail("unexpected run log entry".into()),
            Err(e) => self.fail(format!("bad entry: {e}")),
        }
    }
}

/// One unmasked server frame at the start of `b`: (first header byte,
/// payload, bytes used). A masked frame is refused.
fn frame(b: &[u8]) -> Option<(u8, &[u8], usize)> {
    if b.len() < 2 {
        return None;
    }
    assert_eq!(b[1] & 0x80, 0, "server frames are not masked");
    let (len, at): (usize, usize) = match b[1] & 0x7f {
        126 => (u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize, 4),
        127 => (
            u64::from_be_bytes(b.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let end = at.checked_add(len)?;
    (b.len() >= end).then(|| (b[0], &b[at..end], end))
}
