//! The TLS load: a server thread and a client over loopback in one process,
//! linked to the system libssl, making an exactly known number of calls.
//!
//! The client makes `calls` `SSL_write`s of `payload` bytes; the server thread
//! `SSL_read`s until it has every byte. Both count every call they make and
//! every call that moved bytes, so what a tracer delivered can be compared
//! exactly. The calls go straight to libssl (`SSL_write`/`SSL_read`, or the
//! `_ex` forms), not through `std::io` wrappers that could retry or batch.

use anyhow::{Context, bail};
use foreign_types_shared::ForeignTypeRef as _;
use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslAcceptor, SslConnector, SslMethod, SslRef, SslStream, SslVerifyMode};
use openssl::x509::{X509, X509NameBuilder};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

/// Which libssl calls move the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// `SSL_write` / `SSL_read` (what every tracer hooks).
    Plain,
    /// `SSL_write_ex` / `SSL_read_ex`.
    Ex,
}

/// What one run did, exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    /// The process that made the calls.
    pub pid: u32,
    /// The API used.
    pub api: Api,
    /// Payload bytes per write.
    pub payload: usize,
    /// `SSL_write*` calls made.
    pub write_calls: u64,
    /// `SSL_write*` calls that wrote bytes.
    pub write_ok: u64,
    /// `SSL_read*` calls made.
    pub read_calls: u64,
    /// `SSL_read*` calls that read bytes.
    pub read_ok: u64,
    /// Plaintext bytes read by the server.
    pub read_bytes: u64,
    /// From the first write to the return of the last one.
    pub write_secs: f64,
    /// From the first write to the server having read everything.
    pub total_secs: f64,
    /// CPU time of the process (both threads, user + system, uprobe traps
    /// included) over the same span.
    pub cpu_secs: f64,
}

impl LoadReport {
    /// Writer calls per second.
    pub fn writes_per_sec(&self) -> f64 {
        self.write_calls as f64 / self.write_secs.max(1e-9)
    }

    /// Calls that moved bytes: what a complete tracer delivers as events.
    pub fn data_calls(&self) -> u64 {
        self.write_ok + self.read_ok
    }

    /// Process CPU microseconds per write+read pair (robust to other load on the machine).
    pub fn cpu_us_per_pair(&self) -> f64 {
        self.cpu_secs * 1e6 / (self.write_calls.max(1) as f64)
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "pid": self.pid,
            "api": match self.api { Api::Plain => "plain", Api::Ex => "ex" },
            "payload": self.payload,
            "write_calls": self.write_calls,
            "write_ok": self.write_ok,
            "read_calls": self.read_calls,
            "read_ok": self.read_ok,
            "read_bytes": self.read_bytes,
            "write_secs": self.write_secs,
            "total_secs": self.total_secs,
            "cpu_secs": self.cpu_secs,
            "cpu_us_per_pair": self.cpu_us_per_pair(),
            "writes_per_sec": self.writes_per_sec(),
        })
    }

    /// Parses [`LoadReport::to_json`] output.
    pub fn from_json(v: &serde_json::Value) -> anyhow::Result<Self> {
        let u = |k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_u64)
                .with_context(|| format!("load report: no integer {k:?} in {v}"))
        };
        let f = |k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_f64)
                .with_context(|| format!("load report: no number {k:?} in {v}"))
        };
        Ok(Self {
            pid: u32::try_from(u("pid")?)?,
            api: if v.get("api").and_then(|a| a.as_str()) == Some("ex") {
                Api::Ex
            } else {
                Api::Plain
            },
            payload: usize::try_from(u("payload")?)?,
            write_calls: u("write_calls")?,
            write_ok: u("write_ok")?,
            read_calls: u("read_calls")?,
            read_ok: u("read_ok")?,
            read_bytes: u("read_bytes")?,
            write_secs: f("write_secs")?,
            total_secs: f("total_secs")?,
            cpu_secs: f("cpu_secs")?,
        })
    }
}

/// A connected client/server pair, handshake done, ready to run.
#[derive(Debug)]
pub struct TlsPair {
    client: SslStream<TcpStream>,
    server: SslStream<TcpStream>,
}

fn self_signed() -> anyhow::Result<(PKey<Private>, X509)> {
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(openssl::ec::EcKey::generate(&group)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", "localhost")?;
    let name = name.build();
    let mut cert = X509::builder()?;
    cert.set_version(2)?;
    cert.set_subject_name(&name)?;
    cert.set_issuer_name(&name)?;
    cert.set_pubkey(&key)?;
    cert.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
    cert.set_not_after(Asn1Time::days_from_now(1)?.as_ref())?;
    cert.sign(&key, MessageDigest::sha256())?;
    Ok((key, cert.build()))
}

impl TlsPair {
    /// Listens on 127.0.0.1:0, connects, and completes a TLS 1.3 handshake.
    pub fn connect() -> anyhow::Result<Self> {
        let (key, cert) = self_signed().context("making a self-signed certificate")?;
        let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())?;
        acceptor.set_private_key(&key)?;
        acceptor.set_certificate(&cert)?;
        let acceptor = acceptor.build();
        let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let server = std::thread::spawn(move || -> anyhow::Result<SslStream<TcpStream>> {
            let (tcp, _) = listener.accept()?;
            tcp.set_nodelay(true)?;
            acceptor
                .accept(tcp)
                .map_err(|e| anyhow::anyhow!("server handshake: {e}"))
        });
        let mut connector = SslConnector::builder(SslMethod::tls())?;
        connector.set_verify(SslVerifyMode::NONE);
        let connector = connector.build();
        let tcp = TcpStream::connect(addr).context("connecting to the server")?;
        tcp.set_nodelay(true)?;
        let client = connector
            .configure()?
            .verify_hostname(false)
            .connect("localhost", tcp)
            .map_err(|e| anyhow::anyhow!("client handshake: {e}"))?;
        let server = server
            .join()
            .map_err(|_| anyhow::anyhow!("server thread panicked"))??;
        Ok(Self { client, server })
    }

    /// Makes `calls` writes of `payload` bytes and reads them all back.
    pub fn run(self, calls: u64, payload: usize, api: Api) -> anyhow::Result<LoadReport> {
        if payload == 0 {
            bail!("payload must be at least 1 byte");
        }
        let total = calls * payload as u64;
        let Self { client, server } = self;
        let start = Instant::now();
        let cpu0 = crate::sys::process_cpu_secs();
        let reader = std::thread::Builder::new()
            .name("tls-server".into())
            .spawn(move || read_all(&server, total, api))?;
        let msg: Vec<u8> = (0..payload)
            .map(|i| {
                if i + 1 == payload {
                    b'\n'
                } else {
                    const TEXT: &[u8] = b"rcapture perf load: abcdefghijklmnopqrstuvwxyz ";
                    TEXT[i % TEXT.len()]
                }
            })
            .collect();
        let mut write_ok = 0;
        for _ in 0..calls {
            match ssl_write(client.ssl(), &msg, api) {
                n if n == payload => write_ok += 1,
                n => bail!("SSL_write wrote {n} of {payload} bytes"),
            }
        }
        let write_secs = start.elapsed().as_secs_f64();
        let (read_calls, read_ok, read_bytes) = reader
            .join()
            .map_err(|_| anyhow::anyhow!("server thread panicked"))??;
        let total_secs = start.elapsed().as_secs_f64();
        let cpu_secs = crate::sys::process_cpu_secs() - cpu0;
        Ok(LoadReport {
            pid: std::process::id(),
            api,
            payload,
            write_calls: calls,
            write_ok,
            read_calls,
            read_ok,
            read_bytes,
            write_secs,
            total_secs,
            cpu_secs,
        })
    }
}

fn read_all(
    server: &SslStream<TcpStream>,
    total: u64,
    api: Api,
) -> anyhow::Result<(u64, u64, u64)> {
    let mut buf = vec![0u8; 16 * 1024];
    let (mut calls, mut ok, mut bytes) = (0u64, 0u64, 0u64);
    while bytes < total {
        calls += 1;
        match ssl_read(server.ssl(), &mut buf, api) {
            0 => bail!("SSL_read failed after {bytes} of {total} bytes"),
            n => {
                ok += 1;
                bytes += n as u64;
            }
        }
    }
    Ok((calls, ok, bytes))
}

/// One libssl write call; the bytes written (0 on failure).
fn ssl_write(ssl: &SslRef, buf: &[u8], api: Api) -> usize {
    let len = buf.len().min(i32::MAX as usize);
    match api {
        Api::Plain => {
            // SAFETY: `ssl` is a live SSL object owned by its stream for the whole
            // call, and `buf` is valid for `len` bytes.
            let n =
                unsafe { openssl_sys::SSL_write(ssl.as_ptr(), buf.as_ptr().cast(), len as i32) };
            usize::try_from(n).unwrap_or(0)
        }
        Api::Ex => {
            let mut written = 0usize;
            // SAFETY: as above; `written` is a valid place for the count.
            let rc = unsafe {
                openssl_sys::SSL_write_ex(ssl.as_ptr(), buf.as_ptr().cast(), len, &mut written)
            };
            if rc == 1 { written } else { 0 }
        }
    }
}

/// One libssl read call; the bytes read (0 on failure or close).
fn ssl_read(ssl: &SslRef, buf: &mut [u8], api: Api) -> usize {
    let len = buf.len().min(i32::MAX as usize);
    match api {
        Api::Plain => {
            // SAFETY: `ssl` is a live SSL object; `buf` is writable for `len` bytes.
            let n =
                unsafe { openssl_sys::SSL_read(ssl.as_ptr(), buf.as_mut_ptr().cast(), len as i32) };
            usize::try_from(n).unwrap_or(0)
        }
        Api::Ex => {
            let mut read = 0usize;
            // SAFETY: as above; `read` is a valid place for the count.
            let rc = unsafe {
                openssl_sys::SSL_read_ex(ssl.as_ptr(), buf.as_mut_ptr().cast(), len, &mut read)
            };
            if rc == 1 { read } else { 0 }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trips_through_json() {
        let r = LoadReport {
            pid: 7,
            api: Api::Plain,
            payload: 64,
            write_calls: 10,
            write_ok: 10,
            read_calls: 11,
            read_ok: 10,
            read_bytes: 640,
            write_secs: 0.5,
            total_secs: 0.6,
            cpu_secs: 0.7,
        };
        assert_eq!(LoadReport::from_json(&r.to_json()).unwrap(), r);
        assert_eq!(r.data_calls(), 20);
        assert_eq!(r.writes_per_sec(), 20.0);
    }

    #[test]
    fn a_short_load_counts_every_call() {
        let pair = TlsPair::connect().expect("loopback TLS pair");
        let r = pair.run(100, 64, Api::Ex).expect("load");
        assert_eq!((r.write_calls, r.write_ok), (100, 100));
        assert_eq!(r.read_bytes, 6400);
        assert_eq!(r.read_ok, r.read_calls);
    }
}
