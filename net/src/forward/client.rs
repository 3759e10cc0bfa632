//! A blocking HTTP/1.1 client for one collector (or proxy): one persistent
//! keep-alive connection, plain or rustls, with connect/read/write
//! timeouts; it writes a prepared request and reads the response head,
//! skipping the body.

use super::config::CollectorUrl;
use super::response::{BodyKind, BodySkip, FramingError, MAX_HEAD, parse_head};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("{what} {addr}: {source}")]
    Io {
        what: &'static str,
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("{addr} closed the connection {when}")]
    Closed { addr: String, when: &'static str },
    #[error("response from {addr}: {source}")]
    Framing {
        addr: String,
        #[source]
        source: FramingError,
    },
}

impl SendError {
    /// No byte of a response was read (a stale keep-alive connection fails
    /// this way; the request is then sent once more on a new connection).
    fn before_response(&self) -> bool {
        match self {
            Self::Io { what, .. } => *what != "reading the response from",
            Self::Closed { when, .. } => *when == "before responding",
            _ => false,
        }
    }
}

/// The part of a response the sender acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub retry_after: Option<Duration>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            Self::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(buf),
            Self::Tls(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write_vectored(bufs),
            Self::Tls(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            Self::Tls(s) => s.flush(),
        }
    }
}

/// Lets another thread break a blocked request (shutdown past its deadline).
#[derive(Debug, Clone, Default)]
pub struct Canceller(Arc<Mutex<Option<TcpStream>>>);

impl Canceller {
    fn set(&self, s: Option<TcpStream>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = s;
    }

    /// Shuts the current connection down; a blocked read or write returns.
    pub fn cancel(&self) {
        if let Some(s) = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            // Already closed is as good as closed now.
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// One collector's connection.
pub struct HttpClient {
    host: String,
    port: u16,
    /// `host:port` for messages.
    addr: String,
    tls: Option<Arc<ClientConfig>>,
    timeout: Duration,
    conn: Option<Stream>,
    /// The connection has carried a request before.
    reused: bool,
    rbuf: Vec<u8>,
    canceller: Canceller,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

const READ_CHUNK: usize = 16 * 1024;

impl HttpClient {
    /// A client for `url`'s host and port (`tls` for `https://`); connects on first use.
    pub fn new(url: &CollectorUrl, tls: Option<Arc<ClientConfig>>, timeout: Duration) -> Self {
        Self {
            host: url.host.clone(),
            port: url.port,
            addr: if url.host.contains(':') {
                format!("[{}]:{}", url.host, url.port)
            } else {
                format!("{}:{}", url.host, url.port)
            },
            tls,
            timeout,
            conn: None,
            reused: false,
            rbuf: Vec::new(),
            canceller: Canceller::default(),
        }
    }

    /// The handle that breaks a blocked request.
    pub fn canceller(&self) -> Canceller {
        self.canceller.clone()
    }

    /// Closes the connection (the next request opens a new one).
    pub fn disconnect(&mut self) {
        self.conn = None;
        self.reused = false;
        self.canceller.set(None);
    }

    /// Sends `head` + `body` and reads the response. A request on a reused
    /// connection that fails before any response byte is sent once more on
    /// a new connection (the server may have closed an idle connection).
    /// `head_method`: the request is a HEAD, whose response has no body.
    pub fn send(
        &mut self,
        head: &[u8],
        body: &[u8],
        head_method: bool,
    ) -> Result<Response, SendError> {
        let reused = self.conn.is_some() && self.reused;
        match self.send_once(head, body, head_method) {
            Err(e) if reused && e.before_response() => {
                self.disconnect();
                self.send_once(head, body, head_method)
            }
            r => r,
        }
    }

    fn send_once(
        &mut self,
        head: &[u8],
        body: &[u8],
        head_method: bool,
    ) -> Result<Response, SendError> {
        if self.conn.is_none() {
            self.conn = Some(self.connect()?);
            self.reused = false;
        }
        let r = self.exchange(head, body, head_method);
        match &r {
            Ok((_, true)) => self.reused = true,
            _ => self.disconnect(),
        }
        r.map(|(resp, _)| resp)
    }

    fn connect(&mut self) -> Result<Stream, SendError> {
        let connect_err = |source| SendError::Connect {
            addr: self.addr.clone(),
            source,
        };
        let addrs = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(connect_err)?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the name resolved to no address");
        let mut sock = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, self.timeout) {
                Ok(s) => {
                    sock = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let sock = sock.ok_or_else(|| connect_err(last))?;
        let setup = || -> io::Result<()> {
            sock.set_nodelay(true)?;
            sock.set_read_timeout(Some(self.timeout))?;
            sock.set_write_timeout(Some(self.timeout))
        };
        setup().map_err(connect_err)?;
        self.canceller.set(sock.try_clone().ok());
        let Some(cfg) = &self.tls else {
            return Ok(Stream::Plain(sock));
        };
        let name = ServerName::try_from(self.host.clone())
            .map_err(|e| connect_err(io::Error::new(io::ErrorKind::InvalidInput, e.to_string())))?;
        let conn = ClientConnection::new(Arc::clone(cfg), name)
            .map_err(|e| connect_err(io::Error::other(e)))?;
        let mut tls = StreamOwned::new(conn, sock);
        // Handshake now, so certificate errors read as connect errors.
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).map_err(connect_err)?;
        }
        Ok(Stream::Tls(Box::new(tls)))
    }

    /// One request/response on the open connection: the response and
    /// whether the connection can be reused.
    fn exchange(
        &mut self,
        head: &[u8],
        body: &[u8],
        head_method: bool,
    ) -> Result<(Response, bool), SendError> {
        let addr = &self.addr;
        let Some(conn) = self.conn.as_mut() else {
            return Err(SendError::Closed {
                addr: addr.clone(),
                when: "before the request",
            });
        };
        let io_err = |what, source| SendError::Io {
            what,
            addr: addr.clone(),
            source,
        };
        write_all2(conn, head, body).map_err(|e| io_err("writing the request to", e))?;
        conn.flush()
            .map_err(|e| io_err("writing the request to", e))?;

        if self.rbuf.len() < READ_CHUNK {
            self.rbuf.resize(READ_CHUNK, 0);
        }
        let rbuf = &mut self.rbuf;
        let mut filled = 0;
        let mut got_any = false;
        let h = loop {
            let parsed = parse_head(&rbuf[..filled]).map_err(|source| SendError::Framing {
                addr: addr.clone(),
                source,
            })?;
            if let Some(h) = parsed {
                if (100..200).contains(&h.status) && h.status != 101 {
                    rbuf.copy_within(h.head_len..filled, 0);
                    filled -= h.head_len;
                    continue;
                }
                break h;
            }
            if filled == rbuf.len() {
                if rbuf.len() >= MAX_HEAD {
                    return Err(SendError::Framing {
                        addr: addr.clone(),
                        source: FramingError::HeadTooLarge(MAX_HEAD),
                    });
                }
                let n = rbuf.len() * 2;
                rbuf.resize(n, 0);
            }
            let n = read(conn, &mut rbuf[filled..]).map_err(|e| {
                io_err(
                    if got_any {
                        "reading the response from"
                    } else {
                        "waiting for the response from"
                    },
                    e,
                )
            })?;
            if n == 0 {
                return Err(SendError::Closed {
                    addr: addr.clone(),
                    when: if got_any {
                        "in the response head"
                    } else {
                        "before responding"
                    },
                });
            }
            got_any = true;
            filled += n;
        };
        let mut keep_alive = h.keep_alive;
        let mut skip = BodySkip::new(if head_method { BodyKind::Empty } else { h.body });
        let mut pos = h.head_len;
        loop {
            let (used, done) =
                skip.feed(&rbuf[pos..filled])
                    .map_err(|source| SendError::Framing {
                        addr: addr.clone(),
                        source,
                    })?;
            pos += used;
            if done {
                break;
            }
            let n =
                read(conn, &mut rbuf[..]).map_err(|e| io_err("reading the response from", e))?;
            if n == 0 {
                if skip.until_close() {
                    keep_alive = false;
                    break;
                }
                return Err(SendError::Closed {
                    addr: addr.clone(),
                    when: "in the response body",
                });
            }
            pos = 0;
            filled = n;
        }
        if pos < filled {
            // Bytes past the response: the stream is out of step.
            keep_alive = false;
        }
        Ok((
            Response {
                status: h.status,
                retry_after: h.retry_after,
            },
            keep_alive,
        ))
    }
}

fn read(s: &mut Stream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match s.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
            }
            r => return r,
        }
    }
}

/// Writes `a` then `b`, vectored where the stream takes it.
fn write_all2(s: &mut Stream, a: &[u8], b: &[u8]) -> io::Result<()> {
    let (mut a, mut b) = (a, b);
    while !a.is_empty() || !b.is_empty() {
        let n = match s.write_vectored(&[IoSlice::new(a), IoSlice::new(b)]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
            }
            Err(e) => return Err(e),
        };
        let from_a = n.min(a.len());
        a = &a[from_a..];
        b = &b[n - from_a..];
    }
    Ok(())
}
