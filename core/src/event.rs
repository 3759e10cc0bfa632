//! The event model of WIRE.md §2: records (or joined calls) → flat event fields.
//!
//! [`EventFields`] borrows everything: payloads from the record or join
//! buffer, text (uuid, addresses, name) from an [`EventScratch`] that the
//! worker owns and reuses. Nothing here allocates once the scratch is warm.

use crate::decode::Record;
use crate::keylog;
use crate::records::{DIR_SEND, FD_UNKNOWN, RecordHeader, RecordKind, Tuple};
use crate::textbuf::TextBuf;
use crate::tuple::{Endpoint, endpoints, write_tuple};
use std::fmt::Write;

/// Capture modules (`Event.module`, filters, metric labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Module {
    Tls,
    Gnutls,
    Nss,
    Gotls,
    Bash,
    Mysqld,
    Postgres,
}

impl Module {
    /// Every module.
    pub const ALL: [Module; 7] = [
        Self::Tls,
        Self::Gnutls,
        Self::Nss,
        Self::Gotls,
        Self::Bash,
        Self::Mysqld,
        Self::Postgres,
    ];

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::Gnutls => "gnutls",
            Self::Nss => "nss",
            Self::Gotls => "gotls",
            Self::Bash => "bash",
            Self::Mysqld => "mysqld",
            Self::Postgres => "postgres",
        }
    }

    /// The module with this wire name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }

    /// The module a record kind belongs to (connections and packets are the
    /// OpenSSL module's, as upstream's `tls` module captures them).
    pub fn of(kind: RecordKind) -> Module {
        match kind {
            RecordKind::TlsData
            | RecordKind::MasterSecret
            | RecordKind::Conn
            | RecordKind::Packet => Self::Tls,
            RecordKind::GnutlsData => Self::Gnutls,
            RecordKind::NssData => Self::Nss,
            RecordKind::GotlsData | RecordKind::GotlsKey => Self::Gotls,
            RecordKind::Bash => Self::Bash,
            RecordKind::MysqlQuery => Self::Mysqld,
            RecordKind::PgQuery => Self::Postgres,
        }
    }
}

/// Event kinds (filter `types`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Data,
    MasterKey,
    Conn,
    Packet,
    Bash,
    Query,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 6] = [
        Self::Data,
        Self::MasterKey,
        Self::Conn,
        Self::Packet,
        Self::Bash,
        Self::Query,
    ];

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::MasterKey => "masterkey",
            Self::Conn => "conn",
            Self::Packet => "packet",
            Self::Bash => "bash",
            Self::Query => "query",
        }
    }

    /// The kind with this wire name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The event kind of a record kind.
    pub fn of(kind: RecordKind) -> EventKind {
        match kind {
            RecordKind::TlsData
            | RecordKind::GnutlsData
            | RecordKind::NssData
            | RecordKind::GotlsData => Self::Data,
            RecordKind::MasterSecret | RecordKind::GotlsKey => Self::MasterKey,
            RecordKind::Bash => Self::Bash,
            RecordKind::MysqlQuery | RecordKind::PgQuery => Self::Query,
            RecordKind::Conn => Self::Conn,
            RecordKind::Packet => Self::Packet,
        }
    }
}

/// Converts kernel `CLOCK_BOOTTIME` nanoseconds to Unix-epoch nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    boot_to_unix_ns: i64,
}

impl Clock {
    /// A clock with a known offset (`unix = boot + offset`).
    pub fn from_offset(boot_to_unix_ns: i64) -> Self {
        Self { boot_to_unix_ns }
    }

    /// Measures the offset now (`CLOCK_REALTIME` − `CLOCK_BOOTTIME`).
    pub fn now() -> Self {
        let boot1 = crate::sys::clock_ns(libc::CLOCK_BOOTTIME);
        let real = crate::sys::clock_ns(libc::CLOCK_REALTIME);
        let boot2 = crate::sys::clock_ns(libc::CLOCK_BOOTTIME);
        Self::from_offset(real - (boot1 + (boot2 - boot1) / 2))
    }

    /// Unix-epoch nanoseconds of a kernel boot-time stamp.
    pub fn to_unix_ns(&self, boot_ns: u64) -> i64 {
        (boot_ns as i64).saturating_add(self.boot_to_unix_ns)
    }
}

/// The flat fields of one `Event` (WIRE.md §1), all borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventFields<'a> {
    pub timestamp: i64,
    pub uuid: &'a str,
    pub src_ip: &'a str,
    pub src_port: u32,
    pub dst_ip: &'a str,
    pub dst_port: u32,
    pub pid: i64,
    pub pname: &'a str,
    pub r#type: u32,
    pub payload: &'a [u8],
    pub tid: u32,
    pub uid: u32,
    pub module: &'a str,
    pub fd: u32,
    pub truncated: u32,
}

impl EventFields<'_> {
    /// `Event.length`: the payload length.
    pub fn length(&self) -> u32 {
        self.payload.len() as u32
    }
}

/// Reusable text and payload space for building [`EventFields`].
#[derive(Debug, Default)]
pub struct EventScratch {
    uuid: TextBuf<320>,
    src_ip: TextBuf<48>,
    dst_ip: TextBuf<48>,
    pname: TextBuf<64>,
    /// Key log lines of a master-secret event.
    keylog: Vec<u8>,
}

impl EventScratch {
    /// Scratch space with its key-log buffer pre-sized.
    pub fn new() -> Self {
        Self {
            keylog: Vec::with_capacity(keylog::MAX_KEYLOG_BYTES),
            ..Self::default()
        }
    }
}

/// Builds the event of a record (or a joined call, whose `payload` is the
/// whole captured call). `truncated` is the bytes of the call not captured.
pub fn event_fields<'s, 'r: 's>(
    rec: &Record<'r>,
    truncated: u32,
    clock: &Clock,
    s: &'s mut EventScratch,
) -> EventFields<'s> {
    let kind = rec.kind();
    let h = rec.header();
    s.uuid.clear();
    s.pname.clear();
    // Overflow of a TextBuf keeps a prefix; every buffer is sized for the
    // longest text it can receive, so the results below are never cut.
    let _ = s.pname.push_lossy(comm(h));
    s.keylog.clear();
    let payload: &'r [u8] = rec.payload();
    let mut r#type = 0;
    let mut fd = 0;
    let mut addrs = (Endpoint::LOCAL_ZERO, Endpoint::LOCAL_ZERO);
    match rec {
        Record::Data(v) => {
            let d = &v.rec;
            r#type = u32::from(d.direction);
            fd = d.fd;
            if kind == RecordKind::TlsData {
                let _ = write!(
                    s.uuid,
                    "sock:{}_{}_{}_{}_{}_",
                    h.pid, h.tid, s.pname, d.fd as i32, d.direction
                );
                let _ = write_tuple(&d.tuple, &mut s.uuid);
                let _ = write!(s.uuid, "_{}", d.sock);
            } else {
                let _ = write!(s.uuid, "{}_{}_{}_{}", h.pid, h.tid, s.pname, d.direction);
            }
            addrs = directed(&d.tuple, d.direction, Endpoint::LOCAL_ZERO);
        }
        Record::MasterSecret(m) => {
            r#type = m.version;
            let _ = write_upper_hex(&mut s.uuid, &m.client_random);
            keylog::master_secret_lines(m, &mut s.keylog);
        }
        Record::GoTlsKey(k) => {
            r#type = 0;
            let _ = write_upper_hex(&mut s.uuid, &k.client_random);
            keylog::gotls_line(k, &mut s.keylog);
        }
        Record::Bash(v) => {
            r#type = v.rec.bash_type;
            let _ = write!(s.uuid, "{}_{}_{}", h.pid, h.uid, s.pname);
        }
        Record::Query(v) => {
            // mysqld's dispatch_command returns an int8: sign-extend to u32.
            r#type = if kind == RecordKind::MysqlQuery {
                i32::from(v.rec.retval as i8) as u32
            } else {
                0
            };
            let _ = write!(s.uuid, "{}_{}", h.pid, s.pname);
        }
        Record::Conn(c) => {
            fd = c.fd;
            let _ = write!(s.uuid, "{}_{}_{}_{}", h.pid, h.tid, s.pname, c.fd as i32);
            addrs = endpoints(&c.tuple).unwrap_or((Endpoint::UNSPECIFIED, Endpoint::UNSPECIFIED));
        }
        Record::Packet(v) => {
            let _ = write!(s.uuid, "{}_{}_{}", h.pid, v.rec.ifindex, s.pname);
        }
    }
    s.src_ip.clear();
    s.dst_ip.clear();
    let _ = write!(s.src_ip, "{}", addrs.0.ip);
    let _ = write!(s.dst_ip, "{}", addrs.1.ip);
    let payload: &'s [u8] = match kind {
        RecordKind::MasterSecret | RecordKind::GotlsKey => &s.keylog,
        _ => payload,
    };
    EventFields {
        timestamp: clock.to_unix_ns(h.ts_ns),
        uuid: s.uuid.as_str(),
        src_ip: s.src_ip.as_str(),
        src_port: u32::from(addrs.0.port),
        dst_ip: s.dst_ip.as_str(),
        dst_port: u32::from(addrs.1.port),
        pid: i64::from(h.pid),
        pname: s.pname.as_str(),
        r#type,
        payload,
        tid: h.tid,
        uid: h.uid,
        module: Module::of(kind).name(),
        fd: if fd == FD_UNKNOWN { 0 } else { fd },
        truncated,
    }
}

/// Source and destination of data flowing in `direction` on a connection
/// whose tuple is local→remote: a send goes local→remote, a receive
/// remote→local. Unknown tuples give `fallback` on both sides.
pub fn directed(t: &Tuple, direction: u8, fallback: Endpoint) -> (Endpoint, Endpoint) {
    match endpoints(t) {
        Some((local, remote)) if direction == DIR_SEND => (local, remote),
        Some((local, remote)) => (remote, local),
        None => (fallback, fallback),
    }
}

/// The comm bytes up to the first NUL.
pub fn comm(h: &RecordHeader) -> &[u8] {
    let end = memchr::memchr(0, &h.comm).unwrap_or(h.comm.len());
    &h.comm[..end]
}

fn write_upper_hex(out: &mut impl Write, bytes: &[u8]) -> std::fmt::Result {
    for b in bytes {
        write!(out, "{b:02X}")?;
    }
    Ok(())
}
