//! Synthetic raw records, byte-exact as the kernel writes them.
//!
//! For tests, benches, fuzz seeds and replay: build a fixed part with
//! [`RecordBuilder`], then split a payload into records like the BPF side
//! does ([`split_call`]).

use crate::records::{
    BashRecord, CHUNK_MAX, Chunk, ConnRecord, DataRecord, FAMILY_INET, FAMILY_INET6, FLAG_FIRST,
    FLAG_LAST, GoTlsKeyRecord, MasterSecretRecord, PacketRecord, QueryRecord, RecordHeader,
    RecordKind, Tuple,
};
use bytemuck::Zeroable;
use std::net::{IpAddr, SocketAddr};

/// A header with the given identity.
pub fn header(
    kind: RecordKind,
    pid: u32,
    tid: u32,
    uid: u32,
    comm: &str,
    ts_ns: u64,
) -> RecordHeader {
    let mut c = [0u8; 16];
    let n = comm.len().min(15);
    c[..n].copy_from_slice(&comm.as_bytes()[..n]);
    RecordHeader {
        kind: kind as u16,
        flags: FLAG_FIRST | FLAG_LAST,
        uid,
        ts_ns,
        pid,
        tid,
        comm: c,
    }
}

/// A binary tuple from two socket addresses of the same family.
pub fn tuple(src: SocketAddr, dst: SocketAddr) -> Tuple {
    let mut t = Tuple::zeroed();
    let put = |ip: IpAddr, out: &mut [u8; 16]| match ip {
        IpAddr::V4(v) => out[..4].copy_from_slice(&v.octets()),
        IpAddr::V6(v) => out.copy_from_slice(&v.octets()),
    };
    t.family = if src.is_ipv4() {
        FAMILY_INET
    } else {
        FAMILY_INET6
    };
    t.sport = src.port();
    t.dport = dst.port();
    put(src.ip(), &mut t.saddr);
    put(dst.ip(), &mut t.daddr);
    t
}

/// A payload-carrying fixed part: its header and chunk can be set generically.
pub trait ChunkedRecord: bytemuck::Pod {
    fn hdr_mut(&mut self) -> &mut RecordHeader;
    fn chunk_mut(&mut self) -> &mut Chunk;
}

macro_rules! chunked {
    ($($t:ty),*) => {$(
        impl ChunkedRecord for $t {
            fn hdr_mut(&mut self) -> &mut RecordHeader { &mut self.hdr }
            fn chunk_mut(&mut self) -> &mut Chunk { &mut self.chunk }
        }
    )*};
}
chunked!(DataRecord, BashRecord, QueryRecord, PacketRecord);

/// Splits one call's `payload` into records as the kernel does: chunks of at
/// most `chunk_max` bytes, at most `limit` bytes in all, `total_len` =
/// `payload.len()`. Each record is appended to `out` as its own `Vec<u8>`.
pub fn split_call<T: ChunkedRecord>(
    mut fixed: T,
    payload: &[u8],
    call_seq: u32,
    chunk_max: usize,
    limit: usize,
    out: &mut Vec<Vec<u8>>,
) {
    let chunk_max = chunk_max.clamp(1, CHUNK_MAX);
    let sent = payload.len().min(limit);
    let mut off = 0;
    loop {
        let len = (sent - off).min(chunk_max);
        let mut flags = 0;
        if off == 0 {
            flags |= FLAG_FIRST;
        }
        if off + len >= sent {
            flags |= FLAG_LAST;
        }
        fixed.hdr_mut().flags = flags;
        *fixed.chunk_mut() = Chunk {
            total_len: payload.len() as u32,
            offset: off as u32,
            len: len as u32,
            call_seq,
        };
        let mut rec = bytemuck::bytes_of(&fixed).to_vec();
        rec.extend_from_slice(&payload[off..off + len]);
        out.push(rec);
        off += len;
        if off >= sent {
            break;
        }
    }
}

/// One record holding the whole `payload` (which must fit in one chunk).
pub fn single<T: ChunkedRecord>(fixed: T, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1);
    split_call(fixed, payload, 0, CHUNK_MAX, usize::MAX, &mut out);
    out.swap_remove(0)
}

/// A TLS data fixed part (kind may be any of the four data kinds).
pub fn data(hdr: RecordHeader, fd: u32, direction: u8, sock: u64, tuple: Tuple) -> DataRecord {
    DataRecord {
        hdr,
        chunk: Chunk::default(),
        sock,
        fd,
        direction,
        _pad: [0; 3],
        tuple,
    }
}

/// A bash fixed part.
pub fn bash(hdr: RecordHeader, bash_type: u32, retval: i32) -> BashRecord {
    BashRecord {
        hdr,
        chunk: Chunk::default(),
        bash_type,
        retval,
    }
}

/// A query fixed part (MySQL or PostgreSQL, by `hdr.kind`).
pub fn query(hdr: RecordHeader, retval: i32) -> QueryRecord {
    QueryRecord {
        hdr,
        chunk: Chunk::default(),
        retval,
        sql_errno: 0,
    }
}

/// A packet fixed part.
pub fn packet(hdr: RecordHeader, ifindex: u32, direction: u8) -> PacketRecord {
    PacketRecord {
        hdr,
        chunk: Chunk::default(),
        ifindex,
        direction,
        _pad: [0; 3],
    }
}

/// A connection record.
pub fn conn(hdr: RecordHeader, fd: u32, event: u8, sock: u64, tuple: Tuple) -> Vec<u8> {
    let r = ConnRecord {
        hdr,
        sock,
        fd,
        event,
        _pad: [0; 3],
        tuple,
    };
    bytemuck::bytes_of(&r).to_vec()
}

/// An OpenSSL master-secret record for TLS 1.2 (`master_key` set) or 1.3.
pub fn master_secret(
    hdr: RecordHeader,
    version: u32,
    cipher_id: u32,
    client_random: [u8; 32],
    fill: u8,
) -> Vec<u8> {
    let mut m = MasterSecretRecord::zeroed();
    m.hdr = hdr;
    m.version = version;
    m.cipher_id = cipher_id;
    m.client_random = client_random;
    m.master_key_len = 48;
    m.master_key = [fill; 48];
    m.handshake_secret = [fill.wrapping_add(1); 64];
    m.handshake_traffic_hash = [fill.wrapping_add(2); 64];
    m.client_app_traffic_secret = [fill.wrapping_add(3); 64];
    m.server_app_traffic_secret = [fill.wrapping_add(4); 64];
    m.exporter_master_secret = [fill.wrapping_add(5); 64];
    bytemuck::bytes_of(&m).to_vec()
}

/// A Go key-log record.
pub fn gotls_key(
    hdr: RecordHeader,
    label: &str,
    client_random: [u8; 32],
    secret: &[u8],
) -> Vec<u8> {
    let mut k = GoTlsKeyRecord::zeroed();
    k.hdr = hdr;
    let l = label.len().min(32);
    k.label[..l].copy_from_slice(&label.as_bytes()[..l]);
    k.label_len = l as u32;
    let s = secret.len().min(64);
    k.secret[..s].copy_from_slice(&secret[..s]);
    k.secret_len = s as u32;
    k.client_random = client_random;
    bytemuck::bytes_of(&k).to_vec()
}
