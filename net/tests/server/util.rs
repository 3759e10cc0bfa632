//! Helpers: a server on its own thread with a recording [`Control`], raw HTTP
//! and WebSocket clients, a tungstenite client, and synthetic events.

use prost::Message;
use rcapture_core::event::{EventFields, EventKind};
use rcapture_core::worker::EventSink;
use rcapture_net::config::StartSettings;
use rcapture_net::control::{CaptureCounters, Control, LiveSettings, ModuleStatus};
use rcapture_net::publish::Publisher;
use rcapture_net::{Limits, Server, ServerConfig, ServerHandle};
use rcapture_proto::{Event, LogEntry, LogType, log_entry::Payload};
use rcapture_testsupport::event::OwnedEvent;
use serde_json::Value;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message as WsMessage, WebSocket};

/// Generous timeout for anything the server should do "now" (loaded CI machine).
pub const WAIT: Duration = Duration::from_secs(10);

/// A [`Control`] that records every applied [`LiveSettings`].
#[derive(Debug, Default)]
pub struct TestControl {
    pub applied: Mutex<Vec<LiveSettings>>,
    pub counters: Mutex<CaptureCounters>,
}

impl Control for TestControl {
    fn modules(&self) -> Vec<ModuleStatus> {
        vec![ModuleStatus {
            name: "tls",
            probes: 4,
            attached: true,
            routes: &["/tls", "/openssl"],
            ..ModuleStatus::default()
        }]
    }
    fn counters(&self) -> CaptureCounters {
        self.counters.lock().unwrap().clone()
    }
    fn apply(&self, settings: LiveSettings) -> Result<(), String> {
        self.applied.lock().unwrap().push(settings);
        Ok(())
    }
}

/// The configuration tests start from: loopback port 0, no periodic heartbeat.
pub fn config() -> ServerConfig {
    ServerConfig {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        ecaptureq: None,
        heartbeat: Duration::from_secs(3600),
        auth_token: None,
        access: Default::default(),
        limits: Limits::default(),
        pool: Default::default(),
        start: StartSettings {
            per_cpu_map_size: 8192,
            truncate_size: 1 << 20,
        },
        initial: LiveSettings::default(),
        forward: None,
        event_file: None,
    }
}

/// A server running on its own thread; stopped (and checked) at drop.
pub struct TestServer {
    pub addr: SocketAddr,
    pub ecaptureq: Option<SocketAddr>,
    pub control: Arc<TestControl>,
    pub publishers: Vec<Publisher>,
    handle: ServerHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl TestServer {
    pub fn start() -> Self {
        Self::with(config())
    }

    pub fn with(cfg: ServerConfig) -> Self {
        let control = Arc::new(TestControl::default());
        let (srv, publishers) = Server::bind(cfg, Arc::clone(&control) as _, 2).unwrap();
        let addr = srv.local_addr().expect("a listener");
        assert_ne!(addr.port(), 0, "the real port is reported");
        let ecaptureq = srv.ecaptureq_addr();
        let handle = srv.handle();
        let thread = Some(std::thread::spawn(move || srv.run()));
        Self {
            addr,
            ecaptureq,
            control,
            publishers,
            handle,
            thread,
        }
    }

    /// Publishes events through worker 0 and flushes (one drain batch).
    pub fn publish(&mut self, evs: &[TestEvent]) {
        let p = &mut self.publishers[0];
        for e in evs {
            p.event(&e.fields(), e.kind);
        }
        p.flush();
    }

    pub fn get(&self, path: &str) -> Response {
        request(
            self.addr,
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
    }

    pub fn post(&self, path: &str, body: &str) -> Response {
        request(
            self.addr,
            format!(
                "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
    }

    /// Asserts the server still answers `GET /status` with 200 / code 0.
    pub fn assert_serving(&self, after: &str) {
        let r = self.get("/status");
        assert_eq!(
            (r.status, r.code()),
            (200, 0),
            "after {after}: GET /status gave {r:?}"
        );
    }

    /// `/status` `data`.
    pub fn status(&self) -> Value {
        let r = self.get("/status");
        assert_eq!(r.status, 200, "{r:?}");
        r.json()["data"].clone()
    }

    /// `/status` counters.
    pub fn counters(&self) -> Value {
        let r = self.get("/status");
        assert_eq!(r.status, 200, "{r:?}");
        r.json()["data"]["counters"].clone()
    }

    /// The value of an unlabelled series in `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200);
        metric_value(&r.text(), name)
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{}", r.text()))
    }

    /// Polls `cond` on `/status` counters until it holds (or fails after [`WAIT`]).
    pub fn wait_counters(&self, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + WAIT;
        loop {
            let c = self.counters();
            if cond(&c) {
                return c;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}: {c}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.stop();
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if !std::thread::panicking() {
                assert!(
                    matches!(r, Ok(Ok(()))),
                    "server run ended with {:?}",
                    r.map(|x| x.map_err(|e| e.to_string()))
                );
            }
        }
    }
}

/// Finds `name value` (no labels) in exposition text.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

/// Sum of every series of `name`, whatever its labels (`None`: no series).
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = l.strip_prefix(name) else {
            continue;
        };
        let value = if let Some(labelled) = rest.strip_prefix('{') {
            labelled.rsplit_once("} ").map(|(_, v)| v)
        } else {
            rest.strip_prefix(' ')
        };
        if let Some(v) = value.and_then(|v| v.trim().parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// The value of one series written exactly as `series` (name and labels).
pub fn series_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

/// The `/status` `websocket.clients` entry of the client whose socket is
/// `local` (the server names clients `ADDR#ID`).
pub fn ws_client_status(status: &Value, local: SocketAddr) -> Option<Value> {
    let prefix = format!("{local}#");
    status["websocket"]["clients"]
        .as_array()?
        .iter()
        .find(|c| c["client"].as_str().is_some_and(|n| n.starts_with(&prefix)))
        .cloned()
}

/// One HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }
    /// The envelope's `code`.
    pub fn code(&self) -> i64 {
        self.json()["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("no envelope code: {}", self.text()))
    }
    /// The envelope's `msg`.
    pub fn msg(&self) -> String {
        self.json()["msg"].as_str().unwrap_or_default().to_string()
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

/// Sends raw bytes on a new connection and reads one response.
pub fn request(addr: SocketAddr, raw: &[u8]) -> Response {
    let mut s = connect(addr);
    // The server may answer (and close) before it has read everything.
    let _ = s.write_all(raw);
    read_response(&mut s).unwrap_or_else(|e| panic!("no response: {e}"))
}

/// Reads one response (head, then `Content-Length` bytes), byte-exact so
/// the next response on a keep-alive connection stays in the socket.
pub fn read_response(s: &mut TcpStream) -> io::Result<Response> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut b)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("closed after {:?}", String::from_utf8_lossy(&buf)),
            ));
        }
        buf.push(b[0]);
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    r.parse(&buf)
        .map_err(|e| io::Error::other(format!("bad response {e}: {buf:?}")))?;
    let headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let status = r.code.unwrap();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// True once the peer has closed (EOF or reset) within `within`.
pub fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 4096];
    let end = Instant::now() + within;
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
        if Instant::now() >= end {
            return false;
        }
    }
}

/// A synthetic event with owned fields, and its kind.
#[derive(Debug, Clone)]
pub struct TestEvent {
    pub event: OwnedEvent,
    pub kind: EventKind,
}

impl std::ops::Deref for TestEvent {
    type Target = OwnedEvent;
    fn deref(&self) -> &OwnedEvent {
        &self.event
    }
}

impl std::ops::DerefMut for TestEvent {
    fn deref_mut(&mut self) -> &mut OwnedEvent {
        &mut self.event
    }
}

impl TestEvent {
    /// A TLS data event numbered `i` (every field distinct and non-zero).
    pub fn tls(i: u64) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        let pid = 4000 + (i % 7) as i64;
        let event = OwnedEvent {
            timestamp: now,
            uuid: format!(
                "sock:{pid}_{}_curl_5_1_10.0.0.1:5{i:04}-93.184.216.34:443_0",
                pid + 1
            ),
            src_ip: "10.0.0.1".into(),
            src_port: 50000 + (i % 10000) as u32,
            dst_ip: "93.184.216.34".into(),
            dst_port: 443,
            pid,
            pname: "curl".into(),
            r#type: (i % 2) as u32,
            payload: format!("GET /item/{i} HTTP/1.1\r\nHost: example\r\n\r\n").into_bytes(),
            tid: pid as u32 + 1,
            uid: 1000,
            module: "tls".into(),
            fd: 5,
            truncated: (i % 3) as u32,
            status: 0,
        };
        Self {
            event,
            kind: EventKind::Data,
        }
    }

    pub fn with_pid(mut self, pid: i64) -> Self {
        self.pid = pid;
        self
    }

    pub fn with_module(mut self, module: &'static str, kind: EventKind) -> Self {
        self.module = module.into();
        self.kind = kind;
        self
    }

    pub fn with_payload(mut self, payload: Vec<u8>) -> Self {
        self.payload = payload;
        self
    }

    pub fn fields(&self) -> EventFields<'_> {
        self.event.fields()
    }

    /// The `Event` a client must decode.
    pub fn expected(&self) -> Event {
        self.event.prost()
    }
}

/// A decoded event entry: (seq, event).
pub fn as_event(entry: &LogEntry) -> Option<(u64, &Event)> {
    match &entry.payload {
        Some(Payload::EventPayload(e)) => {
            assert_eq!(entry.log_type, LogType::Event as i32, "{entry:?}");
            Some((entry.seq, e))
        }
        _ => None,
    }
}

pub type Ws = WebSocket<TcpStream>;

/// Connects a tungstenite client to `path` (with query) with extra headers.
pub fn ws_connect(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(Ws, tungstenite::handshake::client::Response), tungstenite::Error> {
    let mut req = format!("ws://{addr}{path}").into_client_request()?;
    for (k, v) in headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let s = connect(addr);
    match tungstenite::client::client(req, s) {
        Ok(x) => Ok(x),
        Err(tungstenite::HandshakeError::Failure(e)) => Err(e),
        Err(tungstenite::HandshakeError::Interrupted(_)) => {
            panic!("blocking handshake interrupted")
        }
    }
}

/// Connects with `Origin: http://localhost/` (as eCaptureQ) and reads the first heartbeat.
pub fn ws_ready(addr: SocketAddr, path: &str) -> Ws {
    let (mut ws, _) = ws_connect(addr, path, &[("Origin", "http://localhost/")])
        .unwrap_or_else(|e| panic!("upgrade on {path}: {e}"));
    let hb = next_entry(&mut ws);
    assert_eq!(hb.log_type, LogType::Heartbeat as i32, "{hb:?}");
    ws
}

/// The next binary message, decoded.
pub fn next_entry(ws: &mut Ws) -> LogEntry {
    loop {
        match ws.read().expect("reading the stream") {
            WsMessage::Binary(b) => return LogEntry::decode(&b[..]).expect("a LogEntry"),
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            other => panic!("expected a binary entry, got {other:?}"),
        }
    }
}

/// The next event entry (heartbeats skipped): (seq, event).
pub fn next_event(ws: &mut Ws) -> (u64, Event) {
    loop {
        let e = next_entry(ws);
        if let Some((seq, ev)) = as_event(&e) {
            return (seq, ev.clone());
        }
    }
}

/// The next text message.
pub fn next_text(ws: &mut Ws) -> Value {
    loop {
        match ws.read().expect("reading the stream") {
            WsMessage::Text(t) => return serde_json::from_str(&t).expect("JSON text message"),
            WsMessage::Binary(b) => {
                let e = LogEntry::decode(&b[..]).unwrap();
                assert!(
                    as_event(&e).is_none(),
                    "unexpected event before reply: {e:?}"
                );
            }
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Asserts nothing but heartbeats arrives within `d`.
pub fn assert_no_event(ws: &mut Ws, d: Duration) {
    ws.get_mut().set_read_timeout(Some(d)).unwrap();
    loop {
        match ws.read() {
            Ok(WsMessage::Binary(b)) => {
                let e = LogEntry::decode(&b[..]).unwrap();
                assert!(as_event(&e).is_none(), "unexpected event: {e:?}");
            }
            Ok(other) => panic!("unexpected message {other:?}"),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break;
            }
            Err(e) => panic!("stream failed: {e}"),
        }
    }
    ws.get_mut().set_read_timeout(Some(WAIT)).unwrap();
}

/// A hand-driven WebSocket client for protocol violations.
pub struct RawWs {
    pub sock: TcpStream,
    buf: Vec<u8>,
    pub head: String,
}

pub const HANDSHAKE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

impl RawWs {
    /// Upgrades `path`; asserts 101.
    pub fn connect(addr: SocketAddr, path: &str) -> Self {
        Self::on(connect(addr), path)
    }

    pub fn on(mut sock: TcpStream, path: &str) -> Self {
        write!(
            sock,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {HANDSHAKE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        Self::on_upgraded(sock)
    }

    /// Reads the 101 response of an upgrade already sent on `sock`.
    pub fn on_upgraded(mut sock: TcpStream) -> Self {
        let mut buf = Vec::new();
        let mut b = [0u8; 4096];
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = sock.read(&mut b).unwrap();
            assert!(n > 0, "closed during handshake: {buf:?}");
            buf.extend_from_slice(&b[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(
            head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
                || head.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "RFC 6455's sample accept key: {head}"
        );
        buf.drain(..end);
        Self { sock, buf, head }
    }

    /// Reads one server frame: (fin, opcode, payload). Asserts it is unmasked.
    pub fn read_frame(&mut self) -> io::Result<(bool, u8, Vec<u8>)> {
        let mut b = vec![0u8; 64 * 1024];
        loop {
            if let Some((fin, op, payload, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Ok((fin, op, payload));
            }
            let n = self.sock.read(&mut b)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&b[..n]);
        }
    }

    /// Reads frames until a close frame; returns (code, reason) and the entries before it.
    pub fn read_until_close(&mut self) -> io::Result<((u16, String), Vec<LogEntry>)> {
        let mut entries = Vec::new();
        loop {
            let (fin, op, p) = self.read_frame()?;
            assert!(fin, "server frames are final");
            match op {
                0x2 => entries.push(LogEntry::decode(&p[..]).expect("a LogEntry")),
                0x8 => {
                    assert!(p.len() >= 2, "close frame carries a status");
                    let code = u16::from_be_bytes([p[0], p[1]]);
                    let reason = String::from_utf8_lossy(&p[2..]).into_owned();
                    return Ok(((code, reason), entries));
                }
                0x1 | 0x9 | 0xA => {}
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }
}

/// A client frame (masked).
pub fn masked_frame(op: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut v = vec![if fin { 0x80 } else { 0 } | op];
    let n = payload.len();
    if n < 126 {
        v.push(0x80 | n as u8);
    } else if n <= 0xffff {
        v.push(0x80 | 126);
        v.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        v.push(0x80 | 127);
        v.extend_from_slice(&(n as u64).to_be_bytes());
    }
    v.extend_from_slice(&mask);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    v
}

/// Parses one unmasked server frame: (fin, opcode, payload, bytes used).
fn parse_server_frame(b: &[u8]) -> Option<(bool, u8, Vec<u8>, usize)> {
    if b.len() < 2 {
        return None;
    }
    assert_eq!(b[1] & 0x80, 0, "server frames are not masked");
    assert_eq!(b[0] & 0x70, 0, "no RSV bits without an extension");
    let (len, at) = match b[1] & 0x7f {
        126 => (u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize, 4),
        127 => (
            u64::from_be_bytes(b.get(2..10)?.try_into().unwrap()) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let end = at + len;
    (b.len() >= end).then(|| (b[0] & 0x80 != 0, b[0] & 0x0f, b[at..end].to_vec(), end))
}
