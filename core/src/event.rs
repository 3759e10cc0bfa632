//! The event model of WIRE.md §2: records (or joined calls) → flat event fields.
//!
//! [`EventFields`] borrows everything: payloads from the record or join
//! buffer, text (uuid, addresses, name) from an [`EventScratch`] that the
//! worker owns and reuses. Nothing here allocates once the scratch is warm.

use crate::decode::Record;
use crate::keylog;
#[cfg(doc)]
use crate::records::{CONN_ACCEPT, CONN_CLOSE, CONN_CONNECT, DIR_RECV};
use crate::records::{DIR_SEND, FD_UNKNOWN, RecordHeader, RecordKind, Tuple};
use crate::textbuf::TextBuf;
use crate::tuple::{Endpoint, endpoints};

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

/// What a record says that no `Event` field carries (WIRE.md §2 maps
/// these kinds' `type` to 0): not encoded on the wire, shown by the text
/// output. An event decoded from the wire has [`Detail::None`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Detail {
    #[default]
    None,
    /// A bash record's `retval`: the command's exit status (type 1).
    Bash { retval: i32 },
    /// A mysqld query's SQL error number (the statement's, 0 = none):
    /// `type` is dispatch_command's return value, 0 for failed statements too.
    Query { sql_errno: u32 },
    /// A connection's `event`: [`CONN_CONNECT`], [`CONN_ACCEPT`] or [`CONN_CLOSE`].
    Conn { event: u8 },
    /// A tc packet's interface and `direction` ([`DIR_RECV`] ingress,
    /// [`DIR_SEND`] egress).
    Packet { ifindex: u32, direction: u8 },
}

/// The flat fields of one `Event` (WIRE.md §1), all borrowed, and the
/// [`Detail`] the text output shows besides.
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
    /// Not an `Event` field: not encoded.
    pub detail: Detail,
}

impl EventFields<'_> {
    /// `Event.length`: the payload length.
    pub fn length(&self) -> u32 {
        self.payload.len() as u32
    }
}

/// How many identities [`EventScratch`] keeps formatted text for. A
/// request/response connection alternates two identities (send and receive
/// differ in the uuid and in the address order); a few connections
/// interleaved on one CPU need a few more.
pub const IDENTITY_SLOTS: usize = 4;

/// The text fields formatted for one identity.
#[derive(Debug, Default)]
struct IdentityText {
    uuid: TextBuf<320>,
    src_ip: TextBuf<48>,
    dst_ip: TextBuf<48>,
    pname: TextBuf<64>,
    ports: (u16, u16),
    /// Identity the text fields above were formatted for; `None` = stale.
    key: Option<IdKey>,
}

/// Reusable text and payload space for building [`EventFields`].
///
/// The text fields (uuid, addresses, ports, name) depend only on a record's
/// identity ([`IdKey`]: kind, pid, tid, uid, comm, fd, direction, sock,
/// tuple, ifindex), so they are kept from one event to the next and only
/// formatted again for an identity not among the last [`IDENTITY_SLOTS`]
/// seen: a burst of calls on a few connections formats them once each.
#[derive(Debug, Default)]
pub struct EventScratch {
    slots: [IdentityText; IDENTITY_SLOTS],
    /// The slot the next new identity replaces (round robin).
    next: usize,
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

    /// The slot holding `key`'s text, formatting it into a replaced slot
    /// first when no slot holds it. Key-less records (key logs) always
    /// format, and leave their slot stale.
    #[inline]
    fn text_for(&mut self, rec: &Record<'_>, kind: RecordKind, key: Option<IdKey>) -> usize {
        if key.is_some()
            && let Some(i) = self.slots.iter().position(|t| t.key == key)
        {
            return i;
        }
        let i = self.next;
        self.next = (i + 1) % IDENTITY_SLOTS;
        let t = &mut self.slots[i];
        t.key = None;
        format_text(rec, kind, t);
        t.key = key;
        i
    }
}

/// Everything the cached text fields of an event are derived from. Fields a
/// kind does not use stay zero; equal keys give identical text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct IdKey {
    kind: u16,
    direction: u8,
    pid: u32,
    tid: u32,
    uid: u32,
    /// fd (data, conn) or ifindex (packet).
    num: u32,
    sock: u64,
    comm: [u8; 16],
    tuple: Tuple,
}

impl IdKey {
    /// The identity of a record whose text fields can be cached (`None` for
    /// key records, whose uuid is the client random).
    #[inline]
    fn of(rec: &Record<'_>, kind: RecordKind) -> Option<Self> {
        let h = rec.header();
        let mut k = Self {
            kind: kind as u16,
            pid: h.pid,
            tid: h.tid,
            uid: h.uid,
            comm: h.comm,
            ..Self::default()
        };
        match rec {
            Record::Data(v) => {
                k.direction = v.rec.direction;
                k.num = v.rec.fd;
                k.sock = v.rec.sock;
                k.tuple = v.rec.tuple;
            }
            Record::Conn(c) => {
                k.num = c.fd;
                k.tuple = c.tuple;
            }
            Record::Packet(v) => k.num = v.rec.ifindex,
            Record::Bash(_) | Record::Query(_) => {}
            Record::MasterSecret(_) | Record::GoTlsKey(_) => return None,
        }
        Some(k)
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
    let slot = s.text_for(rec, kind, IdKey::of(rec, kind));
    let mut r#type = 0;
    let mut fd = 0;
    let mut detail = Detail::None;
    let mut payload: &'s [u8] = rec.payload();
    match rec {
        Record::Data(v) => {
            r#type = u32::from(v.rec.direction);
            fd = v.rec.fd;
        }
        Record::MasterSecret(m) => {
            r#type = m.version;
            s.keylog.clear();
            keylog::master_secret_lines(m, &mut s.keylog);
            payload = &s.keylog;
        }
        Record::GoTlsKey(k) => {
            s.keylog.clear();
            keylog::gotls_line(k, &mut s.keylog);
            payload = &s.keylog;
        }
        Record::Bash(v) => {
            r#type = v.rec.bash_type;
            detail = Detail::Bash {
                retval: v.rec.retval,
            };
        }
        Record::Query(v) => {
            // mysqld's dispatch_command returns an int8: sign-extend to u32.
            if kind == RecordKind::MysqlQuery {
                r#type = i32::from(v.rec.retval as i8) as u32;
                detail = Detail::Query {
                    sql_errno: v.rec.sql_errno,
                };
            }
        }
        Record::Conn(c) => {
            fd = c.fd;
            detail = Detail::Conn { event: c.event };
        }
        Record::Packet(v) => {
            detail = Detail::Packet {
                ifindex: v.rec.ifindex,
                direction: v.rec.direction,
            }
        }
    }
    let t = &s.slots[slot];
    EventFields {
        timestamp: clock.to_unix_ns(h.ts_ns),
        uuid: t.uuid.as_str(),
        src_ip: t.src_ip.as_str(),
        src_port: u32::from(t.ports.0),
        dst_ip: t.dst_ip.as_str(),
        dst_port: u32::from(t.ports.1),
        pid: i64::from(h.pid),
        pname: t.pname.as_str(),
        r#type,
        payload,
        tid: h.tid,
        uid: h.uid,
        module: Module::of(kind).name(),
        fd: if fd == FD_UNKNOWN { 0 } else { fd },
        truncated,
        detail,
    }
}

/// Formats the identity-derived text fields (uuid, name, addresses, ports)
/// into the scratch, without `core::fmt` except for IPv6 addresses.
///
/// Overflow of a TextBuf keeps a prefix; every buffer is sized for the
/// longest text it can receive, so the results are never cut.
#[inline(never)]
fn format_text(rec: &Record<'_>, kind: RecordKind, s: &mut IdentityText) {
    let h = rec.header();
    s.uuid.clear();
    s.pname.clear();
    let _ = s.pname.push_lossy(comm(h));
    let pname = s.pname.as_str();
    let u = &mut s.uuid;
    let mut addrs = (Endpoint::LOCAL_ZERO, Endpoint::LOCAL_ZERO);
    match rec {
        Record::Data(v) => {
            let d = &v.rec;
            if kind == RecordKind::TlsData {
                u.push_str("sock:");
                id3(u, h.pid, h.tid, pname);
                u.push_str("_");
                u.push_int(d.fd as i32);
                u.push_str("_");
                u.push_int(d.direction);
                u.push_str("_");
                let (l, r) =
                    endpoints(&d.tuple).unwrap_or((Endpoint::UNSPECIFIED, Endpoint::UNSPECIFIED));
                push_endpoint(u, l);
                u.push_str("-");
                push_endpoint(u, r);
                u.push_str("_");
                u.push_int(d.sock);
            } else {
                id3(u, h.pid, h.tid, pname);
                u.push_str("_");
                u.push_int(d.direction);
            }
            addrs = directed(&d.tuple, d.direction, Endpoint::LOCAL_ZERO);
        }
        Record::MasterSecret(m) => {
            u.push_upper_hex(&m.client_random);
        }
        Record::GoTlsKey(k) => {
            u.push_upper_hex(&k.client_random);
        }
        Record::Bash(_) => id3(u, h.pid, h.uid, pname),
        Record::Query(_) => {
            u.push_int(h.pid);
            u.push_str("_");
            u.push_str(pname);
        }
        Record::Conn(c) => {
            id3(u, h.pid, h.tid, pname);
            u.push_str("_");
            u.push_int(c.fd as i32);
            addrs = endpoints(&c.tuple).unwrap_or((Endpoint::UNSPECIFIED, Endpoint::UNSPECIFIED));
        }
        Record::Packet(v) => id3(u, h.pid, v.rec.ifindex, pname),
    }
    s.src_ip.clear();
    s.dst_ip.clear();
    s.src_ip.push_ip(addrs.0.ip);
    s.dst_ip.push_ip(addrs.1.ip);
    s.ports = (addrs.0.port, addrs.1.port);
}

/// `A_B_NAME`: the common uuid head.
fn id3(u: &mut TextBuf<320>, a: u32, b: u32, name: &str) {
    u.push_int(a);
    u.push_str("_");
    u.push_int(b);
    u.push_str("_");
    u.push_str(name);
}

/// `IP:PORT`, IPv6 as `[IP]:PORT` (as `Endpoint`'s `Display`).
fn push_endpoint(u: &mut TextBuf<320>, e: Endpoint) {
    let v6 = e.ip.is_ipv6();
    if v6 {
        u.push_str("[");
    }
    u.push_ip(e.ip);
    u.push_str(if v6 { "]:" } else { ":" });
    u.push_int(e.port);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode;
    use crate::records::DIR_RECV;
    use crate::synth;

    fn v4(a: &str, b: &str) -> Tuple {
        synth::tuple(a.parse().unwrap(), b.parse().unwrap())
    }

    /// Records that differ in exactly one identity field each, plus other
    /// kinds, with the uuid each must get (built with `format!`).
    fn identities() -> Vec<(Vec<u8>, String)> {
        let t1 = v4("10.1.2.3:52814", "93.184.216.34:443");
        let t2 = v4("10.1.2.3:52815", "93.184.216.34:443");
        let t6 = synth::tuple(
            "[2001:db8::1]:40000".parse().unwrap(),
            "[::ffff:10.0.0.1]:443".parse().unwrap(),
        );
        let h = |kind, pid, tid, uid, comm: &str| synth::header(kind, pid, tid, uid, comm, 1);
        let tls = |hdr, fd, dir, sock, t| synth::single(synth::data(hdr, fd, dir, sock, t), b"x");
        let mut out = Vec::new();
        let base = h(RecordKind::TlsData, 10, 11, 0, "curl");
        for (raw, want) in [
            (
                tls(base, 5, DIR_SEND, 7, t1),
                "sock:10_11_curl_5_1_10.1.2.3:52814-93.184.216.34:443_7",
            ),
            (
                tls(base, 5, DIR_RECV, 7, t1),
                "sock:10_11_curl_5_0_10.1.2.3:52814-93.184.216.34:443_7",
            ),
            (
                tls(base, 6, DIR_SEND, 7, t1),
                "sock:10_11_curl_6_1_10.1.2.3:52814-93.184.216.34:443_7",
            ),
            (
                tls(base, u32::MAX, DIR_SEND, 7, t1),
                "sock:10_11_curl_-1_1_10.1.2.3:52814-93.184.216.34:443_7",
            ),
            (
                tls(base, 5, DIR_SEND, 8, t1),
                "sock:10_11_curl_5_1_10.1.2.3:52814-93.184.216.34:443_8",
            ),
            (
                tls(base, 5, DIR_SEND, 7, t2),
                "sock:10_11_curl_5_1_10.1.2.3:52815-93.184.216.34:443_7",
            ),
            (
                tls(base, 5, DIR_SEND, 7, t6),
                "sock:10_11_curl_5_1_[2001:db8::1]:40000-[::ffff:10.0.0.1]:443_7",
            ),
            (
                tls(base, 5, DIR_SEND, 7, Tuple::default()),
                "sock:10_11_curl_5_1_0.0.0.0:0-0.0.0.0:0_7",
            ),
            (
                tls(
                    h(RecordKind::TlsData, 12, 11, 0, "curl"),
                    5,
                    DIR_SEND,
                    7,
                    t1,
                ),
                "sock:12_11_curl_5_1_10.1.2.3:52814-93.184.216.34:443_7",
            ),
            (
                tls(
                    h(RecordKind::TlsData, 10, 13, 0, "curl"),
                    5,
                    DIR_SEND,
                    7,
                    t1,
                ),
                "sock:10_13_curl_5_1_10.1.2.3:52814-93.184.216.34:443_7",
            ),
            (
                tls(
                    h(RecordKind::TlsData, 10, 11, 0, "wget"),
                    5,
                    DIR_SEND,
                    7,
                    t1,
                ),
                "sock:10_11_wget_5_1_10.1.2.3:52814-93.184.216.34:443_7",
            ),
            (
                tls(
                    h(RecordKind::TlsData, 10, 11, 0, "cu\u{e9}l"),
                    5,
                    DIR_SEND,
                    7,
                    t1,
                ),
                "sock:10_11_cu\u{e9}l_5_1_10.1.2.3:52814-93.184.216.34:443_7",
            ),
            (
                tls(
                    h(RecordKind::GnutlsData, 10, 11, 0, "curl"),
                    5,
                    DIR_SEND,
                    7,
                    t1,
                ),
                "10_11_curl_1",
            ),
            (
                tls(
                    h(RecordKind::NssData, 10, 11, 0, "curl"),
                    5,
                    DIR_RECV,
                    7,
                    t1,
                ),
                "10_11_curl_0",
            ),
            (
                synth::single(
                    synth::bash(h(RecordKind::Bash, 10, 10, 0, "bash"), 0, 0),
                    b"ls",
                ),
                "10_0_bash",
            ),
            (
                synth::single(
                    synth::bash(h(RecordKind::Bash, 10, 10, 1000, "bash"), 0, 0),
                    b"ls",
                ),
                "10_1000_bash",
            ),
            (
                synth::single(
                    synth::query(h(RecordKind::MysqlQuery, 10, 11, 0, "mysqld"), -3),
                    b"q",
                ),
                "10_mysqld",
            ),
            (
                synth::single(
                    synth::query(h(RecordKind::PgQuery, 10, 11, 0, "postgres"), 0),
                    b"q",
                ),
                "10_postgres",
            ),
            (
                synth::single(
                    synth::packet(h(RecordKind::Packet, 10, 11, 0, "curl"), 2, 0),
                    b"p",
                ),
                "10_2_curl",
            ),
            (
                synth::single(
                    synth::packet(h(RecordKind::Packet, 10, 11, 0, "curl"), 3, 0),
                    b"p",
                ),
                "10_3_curl",
            ),
            (
                synth::conn(h(RecordKind::Conn, 10, 11, 0, "curl"), 5, 0, 7, t1),
                "10_11_curl_5",
            ),
            (
                synth::conn(h(RecordKind::Conn, 10, 11, 0, "curl"), 5, 0, 7, t6),
                "10_11_curl_5",
            ),
            (
                synth::master_secret(
                    h(RecordKind::MasterSecret, 10, 11, 0, "curl"),
                    0x0303,
                    0x0300_c02f,
                    [0xab; 32],
                    1,
                ),
                &"AB".repeat(32),
            ),
            (
                synth::master_secret(
                    h(RecordKind::MasterSecret, 10, 11, 0, "curl"),
                    0x0303,
                    0x0300_c02f,
                    [0x01; 32],
                    1,
                ),
                &"01".repeat(32),
            ),
        ] {
            out.push((raw, want.to_owned()));
        }
        out
    }

    #[test]
    fn cached_text_matches_fresh_text_for_alternating_identities() {
        let recs = identities();
        let clock = Clock::from_offset(0);
        let fresh: Vec<String> = recs
            .iter()
            .map(|(raw, want)| {
                let rec = decode(raw).unwrap();
                let mut fresh = EventScratch::new();
                let ev = event_fields(&rec, 0, &clock, &mut fresh);
                assert_eq!(&ev.uuid, want);
                format!("{ev:?}")
            })
            .collect();
        // One scratch across a sequence that repeats and alternates identities.
        let mut s = EventScratch::new();
        let mut x = 12345u32;
        for step in 0..2000 {
            let i = if step % 3 == 0 {
                step / 3 % recs.len()
            } else {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as usize % recs.len()
            };
            let rec = decode(&recs[i].0).unwrap();
            let ev = event_fields(&rec, 0, &clock, &mut s);
            assert_eq!(format!("{ev:?}"), fresh[i], "record {i} at step {step}");
        }
    }
}
