//! `#[repr(C)]` mirrors of `ebpf/include/records.h`, with compile-time layout checks.
//!
//! Every type here is `Pod`: no implicit padding, any bit pattern valid. The
//! decoders in [`crate::decode`] copy these fixed parts out of a record with
//! `bytemuck::pod_read_unaligned` and borrow the payload that follows.

use bytemuck::{Pod, Zeroable};
use std::mem::{offset_of, size_of};

/// Record kinds, `rc_hdr.kind` (`enum rc_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum RecordKind {
    /// OpenSSL `SSL_read`/`SSL_write` plaintext ([`DataRecord`]).
    TlsData = 1,
    /// OpenSSL 3.0 secrets ([`MasterSecretRecord`]).
    MasterSecret = 2,
    /// GnuTLS plaintext ([`DataRecord`]).
    GnutlsData = 3,
    /// NSS/NSPR plaintext ([`DataRecord`]).
    NssData = 4,
    /// Go crypto/tls plaintext ([`DataRecord`]).
    GotlsData = 5,
    /// Go crypto/tls key log arguments ([`GoTlsKeyRecord`]).
    GotlsKey = 6,
    /// bash command line or status ([`BashRecord`]).
    Bash = 7,
    /// MySQL/MariaDB query ([`QueryRecord`]).
    MysqlQuery = 8,
    /// PostgreSQL query ([`QueryRecord`]).
    PgQuery = 9,
    /// Connection opened or closed ([`ConnRecord`]).
    Conn = 10,
    /// tc packet ([`PacketRecord`]).
    Packet = 11,
    /// GnuTLS session secrets ([`GnutlsSecretRecord`]).
    GnutlsSecret = 12,
}

impl RecordKind {
    /// Every kind, in numeric order.
    pub const ALL: [RecordKind; 12] = [
        Self::TlsData,
        Self::MasterSecret,
        Self::GnutlsData,
        Self::NssData,
        Self::GotlsData,
        Self::GotlsKey,
        Self::Bash,
        Self::MysqlQuery,
        Self::PgQuery,
        Self::Conn,
        Self::Packet,
        Self::GnutlsSecret,
    ];

    /// The kind with this numeric value, if any.
    pub fn from_u16(v: u16) -> Option<Self> {
        Self::ALL.get(usize::from(v).wrapping_sub(1)).copied()
    }

    /// Size of the fixed part of this kind's record (payload follows it).
    pub fn fixed_size(self) -> usize {
        match self {
            Self::TlsData | Self::GnutlsData | Self::NssData | Self::GotlsData => {
                size_of::<DataRecord>()
            }
            Self::MasterSecret => size_of::<MasterSecretRecord>(),
            Self::GotlsKey => size_of::<GoTlsKeyRecord>(),
            Self::Bash => size_of::<BashRecord>(),
            Self::MysqlQuery | Self::PgQuery => size_of::<QueryRecord>(),
            Self::Conn => size_of::<ConnRecord>(),
            Self::Packet => size_of::<PacketRecord>(),
            Self::GnutlsSecret => size_of::<GnutlsSecretRecord>(),
        }
    }

    /// Whether records of this kind carry a [`Chunk`] and a payload.
    pub fn has_payload(self) -> bool {
        !matches!(
            self,
            Self::MasterSecret | Self::GotlsKey | Self::Conn | Self::GnutlsSecret
        )
    }
}

/// `RC_F_FIRST`: first record of a payload.
pub const FLAG_FIRST: u16 = 0x1;
/// `RC_F_LAST`: last record of a payload.
pub const FLAG_LAST: u16 = 0x2;
/// `RC_CHUNK_MAX`: largest payload slice in one record.
pub const CHUNK_MAX: usize = 16384;
/// `RC_DIR_RECV`.
pub const DIR_RECV: u8 = 0;
/// `RC_DIR_SEND`.
pub const DIR_SEND: u8 = 1;
/// `AF_INET` as carried in [`Tuple::family`].
pub const FAMILY_INET: u16 = 2;
/// `AF_INET6` as carried in [`Tuple::family`].
pub const FAMILY_INET6: u16 = 10;
/// `RC_CONN_CONNECT`, `RC_CONN_ACCEPT`, `RC_CONN_CLOSE`.
pub const CONN_CONNECT: u8 = 0;
/// See [`CONN_CONNECT`].
pub const CONN_ACCEPT: u8 = 1;
/// See [`CONN_CONNECT`].
pub const CONN_CLOSE: u8 = 2;
/// `RC_BASH_READLINE`: [`BashRecord::bash_type`] of a command line
/// (`retval` = the line's index in its command: 0 first, n continuation).
pub const BASH_READLINE: u32 = 0;
/// `RC_BASH_RETVAL`: the exit status (`retval`) of the command read last,
/// whose lines (joined by `\n`) are the payload.
pub const BASH_RETVAL: u32 = 1;
/// `RC_BASH_EXIT_EXEC`: the shell exits (`retval` = its exit status) or
/// execs (`retval` = `$?`); the payload is the command that did it, if any.
pub const BASH_EXIT_EXEC: u32 = 2;
/// `rc_data.fd` when the fd is unknown.
pub const FD_UNKNOWN: u32 = u32::MAX;

/// `struct rc_hdr`: 40 bytes at offset 0 of every record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct RecordHeader {
    pub kind: u16,
    pub flags: u16,
    pub uid: u32,
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub comm: [u8; 16],
}

/// `struct rc_chunk`: where a record's payload bytes sit in the whole call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct Chunk {
    pub total_len: u32,
    pub offset: u32,
    pub len: u32,
    pub call_seq: u32,
}

/// `struct rc_tuple`: a connection's addresses (local = src).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct Tuple {
    pub family: u16,
    pub sport: u16,
    pub dport: u16,
    pub _pad: u16,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}

/// `struct rc_data`: TLS plaintext of OpenSSL, GnuTLS, NSS and Go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct DataRecord {
    pub hdr: RecordHeader,
    pub chunk: Chunk,
    pub sock: u64,
    pub fd: u32,
    pub direction: u8,
    pub _pad: [u8; 3],
    pub tuple: Tuple,
}

/// `struct rc_master_secret`: OpenSSL and BoringSSL secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct MasterSecretRecord {
    pub hdr: RecordHeader,
    pub version: u32,
    pub cipher_id: u32,
    pub client_random: [u8; 32],
    pub master_key_len: u32,
    pub master_key: [u8; 48],
    pub handshake_secret: [u8; 64],
    pub handshake_traffic_hash: [u8; 64],
    pub client_app_traffic_secret: [u8; 64],
    pub server_app_traffic_secret: [u8; 64],
    pub exporter_master_secret: [u8; 64],
    /// What the two handshake fields hold: [`MS_HS_DERIVE`] (OpenSSL: the
    /// handshake secret and transcript hash) or [`MS_HS_TRAFFIC`]
    /// (BoringSSL: the client and server handshake traffic secrets).
    pub hs_form: u8,
    pub _pad: [u8; 3],
}

/// `RC_MS_HS_DERIVE`: the handshake traffic secrets are derived from
/// `handshake_secret` and `handshake_traffic_hash`.
pub const MS_HS_DERIVE: u8 = 0;
/// `RC_MS_HS_TRAFFIC`: `handshake_secret` and `handshake_traffic_hash` are
/// the client and server handshake traffic secrets themselves.
pub const MS_HS_TRAFFIC: u8 = 1;

/// `struct rc_gnutls_secret`: GnuTLS session secrets at `gnutls_handshake` return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct GnutlsSecretRecord {
    pub hdr: RecordHeader,
    /// Wire version: 0x0301–0x0304, DTLS 0xfeff/0xfefd (0 unknown).
    pub version: u32,
    /// PRF hash length: 32 (SHA-256), 48 (SHA-384), 0 unknown.
    pub hash_len: u32,
    pub client_random: [u8; 32],
    /// TLS 1.2 master secret (`CLIENT_RANDOM`).
    pub master_secret: [u8; 48],
    /// `CLIENT_EARLY_TRAFFIC_SECRET` (0-RTT only).
    pub early_secret: [u8; 64],
    /// `CLIENT_HANDSHAKE_TRAFFIC_SECRET`.
    pub client_hs: [u8; 64],
    /// `SERVER_HANDSHAKE_TRAFFIC_SECRET`.
    pub server_hs: [u8; 64],
    /// `CLIENT_TRAFFIC_SECRET_0`.
    pub client_ap: [u8; 64],
    /// `SERVER_TRAFFIC_SECRET_0`.
    pub server_ap: [u8; 64],
    /// `EXPORTER_SECRET`.
    pub exporter: [u8; 64],
}

/// `struct rc_gotls_key`: arguments of Go's `(*Config).writeKeyLog`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct GoTlsKeyRecord {
    pub hdr: RecordHeader,
    pub label_len: u32,
    pub secret_len: u32,
    pub label: [u8; 32],
    pub client_random: [u8; 32],
    pub secret: [u8; 64],
}

/// `struct rc_bash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct BashRecord {
    pub hdr: RecordHeader,
    pub chunk: Chunk,
    pub bash_type: u32,
    pub retval: i32,
}

/// `struct rc_query`: MySQL/MariaDB and PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct QueryRecord {
    pub hdr: RecordHeader,
    pub chunk: Chunk,
    pub retval: i32,
    /// mysqld: the statement's SQL error number (0 = none); 0 for postgres.
    pub sql_errno: u32,
}

/// `struct rc_conn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct ConnRecord {
    pub hdr: RecordHeader,
    pub sock: u64,
    pub fd: u32,
    pub event: u8,
    pub _pad: [u8; 3],
    pub tuple: Tuple,
}

/// `struct rc_packet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct PacketRecord {
    pub hdr: RecordHeader,
    pub chunk: Chunk,
    pub ifindex: u32,
    pub direction: u8,
    pub _pad: [u8; 3],
}

/// Most tests of a packet filter (`RC_PKT_TESTS_MAX`).
pub const PKT_TESTS_MAX: usize = 32;
/// [`PacketTest::op`]: IP protocol (IPv4 protocol / IPv6 next header) == value.
pub const PT_PROTO: u8 = 1;
/// [`PacketTest::op`]: IPv4 (value 2) or IPv6 (value 10).
pub const PT_FAMILY: u8 = 2;
/// [`PacketTest::op`]: TCP/UDP source or destination port == value.
pub const PT_PORT: u8 = 3;
/// [`PacketTest::op`]: TCP/UDP source port == value.
pub const PT_SPORT: u8 = 4;
/// [`PacketTest::op`]: TCP/UDP destination port == value.
pub const PT_DPORT: u8 = 5;
/// [`PacketTest::op`]: source or destination address == addr (family in value).
pub const PT_HOST: u8 = 6;
/// [`PacketTest::op`]: source address == addr.
pub const PT_SHOST: u8 = 7;
/// [`PacketTest::op`]: destination address == addr.
pub const PT_DHOST: u8 = 8;

/// `struct rc_pkt_test`: one test of the packet filter (a load-time global
/// array in disjunctive normal form, see records.h); the loader writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct PacketTest {
    /// `PT_*`.
    pub op: u8,
    /// Non-zero: the test's result is inverted.
    pub negate: u8,
    /// Non-zero: the last test of its conjunction.
    pub last: u8,
    pub _pad: u8,
    /// Protocol, family or port (host order).
    pub value: u32,
    /// IPv4: the first 4 bytes.
    pub addr: [u8; 16],
}

/// `struct rc_filter`: the live filter map value (0 = any); the loader
/// (rcapture-ebpf) writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct FilterValue {
    /// Only this thread group id, or 0.
    pub pid: u32,
    /// Only this uid, or 0.
    pub uid: u32,
    /// Non-zero: no new call is captured (shutdown).
    pub stopped: u32,
    pub _pad: u32,
}

/// `struct rc_counters`: one CPU's kernel-side counters; the loader
/// (rcapture-ebpf) reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct KernelCounters {
    /// Records written to the ring buffer.
    pub emitted: u64,
    /// Records that could not be written (ring full or unreadable user memory).
    pub lost: u64,
    /// Payload bytes of the lost records.
    pub lost_bytes: u64,
    /// TLS calls skipped by the live filter.
    pub filtered: u64,
}

/// Offset of the payload's [`Chunk`] in every record kind that has one.
pub const CHUNK_OFFSET: usize = size_of::<RecordHeader>();

/// `(C struct name, size, [(field, offset)])`.
pub type LayoutRow = (&'static str, usize, Vec<(&'static str, usize)>);

/// `(type name, size, [(field, offset)])` for every struct of records.h: the
/// layout test compares this table with what a C compiler says.
pub fn layout_table() -> Vec<LayoutRow> {
    macro_rules! t {
        ($c:literal, $t:ty, [$($f:ident),*]) => {
            ($c, size_of::<$t>(), vec![$((stringify!($f), offset_of!($t, $f))),*])
        };
    }
    vec![
        t!(
            "rc_hdr",
            RecordHeader,
            [kind, flags, uid, ts_ns, pid, tid, comm]
        ),
        t!("rc_chunk", Chunk, [total_len, offset, len, call_seq]),
        t!(
            "rc_tuple",
            Tuple,
            [family, sport, dport, _pad, saddr, daddr]
        ),
        t!(
            "rc_data",
            DataRecord,
            [hdr, chunk, sock, fd, direction, _pad, tuple]
        ),
        t!(
            "rc_master_secret",
            MasterSecretRecord,
            [
                hdr,
                version,
                cipher_id,
                client_random,
                master_key_len,
                master_key,
                handshake_secret,
                handshake_traffic_hash,
                client_app_traffic_secret,
                server_app_traffic_secret,
                exporter_master_secret,
                hs_form,
                _pad
            ]
        ),
        t!(
            "rc_gnutls_secret",
            GnutlsSecretRecord,
            [
                hdr,
                version,
                hash_len,
                client_random,
                master_secret,
                early_secret,
                client_hs,
                server_hs,
                client_ap,
                server_ap,
                exporter
            ]
        ),
        t!(
            "rc_gotls_key",
            GoTlsKeyRecord,
            [hdr, label_len, secret_len, label, client_random, secret]
        ),
        t!("rc_bash", BashRecord, [hdr, chunk, bash_type, retval]),
        t!("rc_query", QueryRecord, [hdr, chunk, retval, sql_errno]),
        t!("rc_conn", ConnRecord, [hdr, sock, fd, event, _pad, tuple]),
        t!(
            "rc_packet",
            PacketRecord,
            [hdr, chunk, ifindex, direction, _pad]
        ),
        t!(
            "rc_pkt_test",
            PacketTest,
            [op, negate, last, _pad, value, addr]
        ),
        t!("rc_filter", FilterValue, [pid, uid, stopped, _pad]),
        t!(
            "rc_counters",
            KernelCounters,
            [emitted, lost, lost_bytes, filtered]
        ),
    ]
}

const _: () = {
    assert!(size_of::<RecordHeader>() == 40);
    assert!(offset_of!(RecordHeader, ts_ns) == 8);
    assert!(offset_of!(RecordHeader, comm) == 24);
    assert!(size_of::<Chunk>() == 16);
    assert!(size_of::<Tuple>() == 40);
    assert!(offset_of!(Tuple, saddr) == 8);
    assert!(size_of::<DataRecord>() == 112);
    assert!(offset_of!(DataRecord, chunk) == CHUNK_OFFSET);
    assert!(offset_of!(DataRecord, sock) == 56);
    assert!(offset_of!(DataRecord, fd) == 64);
    assert!(offset_of!(DataRecord, direction) == 68);
    assert!(offset_of!(DataRecord, tuple) == 72);
    assert!(size_of::<MasterSecretRecord>() == 456);
    assert!(offset_of!(MasterSecretRecord, client_random) == 48);
    assert!(offset_of!(MasterSecretRecord, master_key) == 84);
    assert!(offset_of!(MasterSecretRecord, exporter_master_secret) == 388);
    assert!(size_of::<GnutlsSecretRecord>() == 512);
    assert!(offset_of!(GnutlsSecretRecord, client_random) == 48);
    assert!(offset_of!(GnutlsSecretRecord, exporter) == 448);
    assert!(size_of::<GoTlsKeyRecord>() == 176);
    assert!(offset_of!(GoTlsKeyRecord, secret) == 112);
    assert!(size_of::<BashRecord>() == 64);
    assert!(offset_of!(BashRecord, chunk) == CHUNK_OFFSET);
    assert!(size_of::<QueryRecord>() == 64);
    assert!(offset_of!(QueryRecord, chunk) == CHUNK_OFFSET);
    assert!(size_of::<ConnRecord>() == 96);
    assert!(offset_of!(ConnRecord, tuple) == 56);
    assert!(size_of::<PacketRecord>() == 64);
    assert!(offset_of!(PacketRecord, chunk) == CHUNK_OFFSET);
    assert!(size_of::<PacketTest>() == 24);
    assert!(size_of::<FilterValue>() == 16);
    assert!(size_of::<KernelCounters>() == 32);
};
