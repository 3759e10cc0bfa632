//! Allocation-free protobuf encoding of `LogEntry` (WIRE.md §1, §3).
//!
//! Writes straight from borrowed [`EventFields`] into a caller's buffer, in
//! prost's field order and omission rules (byte-identical to prost). Lengths are computed first
//! ([`event_entry_len`]) so pooled buffers can be sized exactly. Fields equal
//! to their proto3 default are omitted, as prost does; oneof members are
//! always written (presence). `seq` is a separate prefix ([`encode_seq_prefix`]):
//! prefix + body decode as one `LogEntry`, so one encoded body can be shared
//! by consumers that each number it differently.

use crate::event::EventFields;
use bytes::BufMut;
use bytes::buf::UninitSlice;
use prost::encoding::{WireType, key_len};

/// `LogType` values.
pub const LOG_TYPE_HEARTBEAT: u64 = 0;
/// See [`LOG_TYPE_HEARTBEAT`].
pub const LOG_TYPE_PROCESS_LOG: u64 = 1;
/// See [`LOG_TYPE_HEARTBEAT`].
pub const LOG_TYPE_EVENT: u64 = 2;

const SEQ_TAG: u32 = 5;

/// Length of `v` as a varint (prost's formula, branch-free).
#[inline(always)]
fn varint_len(v: u64) -> usize {
    ((((v | 1).leading_zeros() ^ 63) * 9 + 73) / 64) as usize
}

#[inline(always)]
fn varint_field_len(tag: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(tag) + varint_len(v)
    }
}

#[inline(always)]
fn bytes_field_len(tag: u32, b: &[u8]) -> usize {
    if b.is_empty() {
        0
    } else {
        message_field_len(tag, b.len())
    }
}

#[inline(always)]
fn message_field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + varint_len(len as u64) + len
}

/// Where the field writers below put bytes: a stack buffer ([`Stack`]) on
/// the fast path, the caller's `BufMut` otherwise.
trait Out {
    fn byte(&mut self, b: u8);
    fn slice(&mut self, b: &[u8]);

    #[inline(always)]
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.byte(v as u8 | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }

    #[inline(always)]
    fn key(&mut self, tag: u32, wire_type: WireType) {
        self.varint(u64::from(tag << 3 | wire_type as u32));
    }

    #[inline(always)]
    fn varint_field(&mut self, tag: u32, v: u64) {
        if v != 0 {
            self.key(tag, WireType::Varint);
            self.varint(v);
        }
    }

    /// Key and length of a length-delimited field (the bytes follow).
    #[inline(always)]
    fn len_header(&mut self, tag: u32, len: usize) {
        self.key(tag, WireType::LengthDelimited);
        self.varint(len as u64);
    }

    #[inline(always)]
    fn bytes_field(&mut self, tag: u32, b: &[u8]) {
        if !b.is_empty() {
            self.len_header(tag, b.len());
            self.slice(b);
        }
    }
}

/// A small inline buffer; callers size `N` for what they write (writing
/// past it panics, which the size checks in this module rule out).
struct Stack<const N: usize> {
    n: usize,
    b: [u8; N],
}

impl<const N: usize> Stack<N> {
    #[inline(always)]
    fn new() -> Self {
        Self { n: 0, b: [0; N] }
    }

    #[inline(always)]
    fn bytes(&self) -> &[u8] {
        &self.b[..self.n]
    }
}

impl<const N: usize> Out for Stack<N> {
    #[inline(always)]
    fn byte(&mut self, b: u8) {
        self.b[self.n] = b;
        self.n += 1;
    }

    #[inline(always)]
    fn slice(&mut self, b: &[u8]) {
        self.b[self.n..self.n + b.len()].copy_from_slice(b);
        self.n += b.len();
    }

    /// Unrolled for the common short values (ports, lengths, pids).
    #[inline(always)]
    fn varint(&mut self, v: u64) {
        if v < 0x80 {
            self.byte(v as u8);
        } else if v < 0x4000 {
            self.slice(&[v as u8 | 0x80, (v >> 7) as u8]);
        } else {
            let mut v = v;
            while v >= 0x80 {
                self.byte(v as u8 | 0x80);
                v >>= 7;
            }
            self.byte(v as u8);
        }
    }
}

/// Writes into a `BufMut`'s spare capacity (`chunk_mut`), which the caller
/// checked is long enough; the `BufMut` is advanced afterwards.
struct Spare<'a> {
    n: usize,
    b: &'a mut UninitSlice,
}

impl Out for Spare<'_> {
    #[inline(always)]
    fn byte(&mut self, b: u8) {
        self.b.write_byte(self.n, b);
        self.n += 1;
    }

    #[inline(always)]
    fn slice(&mut self, b: &[u8]) {
        self.b[self.n..self.n + b.len()].copy_from_slice(b);
        self.n += b.len();
    }

    #[inline(always)]
    fn varint(&mut self, v: u64) {
        if v < 0x80 {
            self.byte(v as u8);
        } else if v < 0x4000 {
            self.byte(v as u8 | 0x80);
            self.byte((v >> 7) as u8);
        } else {
            let mut s = Stack::<10>::new();
            s.varint(v);
            self.slice(s.bytes());
        }
    }
}

/// Writes straight into a `BufMut` (the fallback for oversized text fields).
struct Direct<'a, B: BufMut>(&'a mut B);

impl<B: BufMut> Out for Direct<'_, B> {
    #[inline]
    fn byte(&mut self, b: u8) {
        self.0.put_u8(b);
    }

    #[inline]
    fn slice(&mut self, b: &[u8]) {
        self.0.put_slice(b);
    }

    #[inline]
    fn varint(&mut self, v: u64) {
        let mut s = Stack::<10>::new();
        s.varint(v);
        self.0.put_slice(s.bytes());
    }
}

/// Encoded length of the `Event` message body.
#[inline]
pub fn event_len(e: &EventFields<'_>) -> usize {
    varint_field_len(1, e.timestamp as u64)
        + bytes_field_len(2, e.uuid.as_bytes())
        + bytes_field_len(3, e.src_ip.as_bytes())
        + varint_field_len(4, u64::from(e.src_port))
        + bytes_field_len(5, e.dst_ip.as_bytes())
        + varint_field_len(6, u64::from(e.dst_port))
        + varint_field_len(7, e.pid as u64)
        + bytes_field_len(8, e.pname.as_bytes())
        + varint_field_len(9, u64::from(e.r#type))
        + varint_field_len(10, u64::from(e.length()))
        + bytes_field_len(11, e.payload)
        + varint_field_len(12, u64::from(e.tid))
        + varint_field_len(13, u64::from(e.uid))
        + bytes_field_len(14, e.module.as_bytes())
        + varint_field_len(15, u64::from(e.fd))
        + varint_field_len(16, u64::from(e.truncated))
}

/// `LogEntry` head and `Event` fields 1–10, then the key and length of
/// field 11 (payload) when there is one. `body_len` is [`event_len`].
#[inline(always)]
fn put_event_head(e: &EventFields<'_>, body_len: usize, o: &mut impl Out) {
    o.varint_field(1, LOG_TYPE_EVENT);
    o.len_header(2, body_len);
    o.varint_field(1, e.timestamp as u64);
    o.bytes_field(2, e.uuid.as_bytes());
    o.bytes_field(3, e.src_ip.as_bytes());
    o.varint_field(4, u64::from(e.src_port));
    o.bytes_field(5, e.dst_ip.as_bytes());
    o.varint_field(6, u64::from(e.dst_port));
    o.varint_field(7, e.pid as u64);
    o.bytes_field(8, e.pname.as_bytes());
    o.varint_field(9, u64::from(e.r#type));
    o.varint_field(10, u64::from(e.length()));
    if !e.payload.is_empty() {
        o.len_header(11, e.payload.len());
    }
}

/// `Event` fields 12–16.
#[inline(always)]
fn put_event_tail(e: &EventFields<'_>, o: &mut impl Out) {
    o.varint_field(12, u64::from(e.tid));
    o.varint_field(13, u64::from(e.uid));
    o.bytes_field(14, e.module.as_bytes());
    o.varint_field(15, u64::from(e.fd));
    o.varint_field(16, u64::from(e.truncated));
}

/// Text bytes (uuid, addresses, name) the stack head has room for.
const HEAD_TEXT: usize = 384;
/// Everything in the head but its text: 7 varint fields (key ≤ 2 bytes,
/// value ≤ 10) and 6 length headers (entry, 4 strings, payload; ≤ 1 + 10).
const HEAD_FIXED: usize = 7 * 12 + 6 * 11;
/// Module name bytes the stack tail has room for.
const TAIL_TEXT: usize = 32;
/// Everything in the tail but the module name: 4 varint fields and the
/// module's length header.
const TAIL_FIXED: usize = 4 * 12 + 11;

/// Exact encoded length of an event `LogEntry` without `seq`.
#[inline]
pub fn event_entry_len(e: &EventFields<'_>) -> usize {
    entry_len_of_body(event_len(e))
}

#[inline(always)]
fn entry_len_of_body(body_len: usize) -> usize {
    varint_field_len(1, LOG_TYPE_EVENT) + message_field_len(2, body_len)
}

/// Writes an event `LogEntry` (without `seq`); exactly [`event_entry_len`] bytes.
///
/// When `buf` has that much contiguous spare capacity (the callers reserve
/// [`event_entry_len`] first), the entry is written straight into it: the
/// payload is copied once, nothing else is copied twice. Otherwise keys,
/// varints and text are assembled on the stack and handed to `buf` as three
/// slices (head, payload, tail). (`chunk_mut` of a full `Vec` or `BytesMut`
/// grows it by 64 bytes; that only happens when the caller did not reserve.)
pub fn encode_event_entry(e: &EventFields<'_>, buf: &mut impl BufMut) {
    let body_len = event_len(e);
    let total = entry_len_of_body(body_len);
    #[cfg(debug_assertions)]
    let start_room = buf.remaining_mut();
    let spare = buf.chunk_mut();
    if spare.len() >= total {
        let mut o = Spare { n: 0, b: spare };
        put_event_head(e, body_len, &mut o);
        o.slice(e.payload);
        put_event_tail(e, &mut o);
        let n = o.n;
        debug_assert_eq!(n, total);
        // SAFETY: `Spare` wrote (initialised) exactly the first `n` bytes of
        // `chunk_mut()` (its writes are bounds-checked against that chunk),
        // and nothing touched `buf` in between.
        unsafe { buf.advance_mut(n) };
    } else {
        encode_event_entry_slow(e, body_len, buf);
    }
    #[cfg(debug_assertions)]
    debug_assert_eq!(start_room - buf.remaining_mut(), total);
}

/// [`encode_event_entry`] when `buf` lacks the contiguous room: via the
/// stack, or field by field for oversized text.
#[cold]
#[inline(never)]
fn encode_event_entry_slow(e: &EventFields<'_>, body_len: usize, buf: &mut impl BufMut) {
    if e.uuid.len() + e.src_ip.len() + e.dst_ip.len() + e.pname.len() <= HEAD_TEXT
        && e.module.len() <= TAIL_TEXT
    {
        let mut head = Stack::<{ HEAD_TEXT + HEAD_FIXED }>::new();
        put_event_head(e, body_len, &mut head);
        buf.put_slice(head.bytes());
        buf.put_slice(e.payload);
        let mut tail = Stack::<{ TAIL_TEXT + TAIL_FIXED }>::new();
        put_event_tail(e, &mut tail);
        buf.put_slice(tail.bytes());
    } else {
        let mut o = Direct(buf);
        put_event_head(e, body_len, &mut o);
        o.slice(e.payload);
        put_event_tail(e, &mut o);
    }
}

/// Length of the `seq` prefix (0 for seq 0).
pub fn seq_prefix_len(seq: u64) -> usize {
    varint_field_len(SEQ_TAG, seq)
}

/// Largest possible `seq` prefix.
pub const MAX_SEQ_PREFIX: usize = 11;

/// Writes `LogEntry.seq` as a prefix; written before an entry body, the two
/// decode as one `LogEntry`.
#[inline]
pub fn encode_seq_prefix(seq: u64, buf: &mut impl BufMut) {
    let (b, n) = seq_prefix(seq);
    buf.put_slice(&b[..n]);
}

/// The `seq` prefix in a small inline array (for vectored writes).
pub fn seq_prefix(seq: u64) -> ([u8; MAX_SEQ_PREFIX], usize) {
    let mut s = Stack::<MAX_SEQ_PREFIX>::new();
    s.varint_field(SEQ_TAG, seq);
    (s.b, s.n)
}

fn heartbeat_len(ts_secs: i64, count: i64, message: &str) -> usize {
    varint_field_len(1, ts_secs as u64)
        + varint_field_len(2, count as u64)
        + bytes_field_len(3, message.as_bytes())
}

/// Exact length of a heartbeat `LogEntry`.
pub fn heartbeat_entry_len(ts_secs: i64, count: i64, message: &str) -> usize {
    message_field_len(3, heartbeat_len(ts_secs, count, message))
}

/// Writes a heartbeat `LogEntry` (`log_type` 0 is the default, so omitted).
pub fn encode_heartbeat_entry(ts_secs: i64, count: i64, message: &str, buf: &mut impl BufMut) {
    let mut o = Direct(buf);
    o.len_header(3, heartbeat_len(ts_secs, count, message));
    o.varint_field(1, ts_secs as u64);
    o.varint_field(2, count as u64);
    o.bytes_field(3, message.as_bytes());
}

/// Exact length of a process-log `LogEntry`.
pub fn run_log_entry_len(message: &str) -> usize {
    varint_field_len(1, LOG_TYPE_PROCESS_LOG) + message_field_len(4, message.len())
}

/// Writes a process-log `LogEntry` (`run_log`).
pub fn encode_run_log_entry(message: &str, buf: &mut impl BufMut) {
    let mut o = Direct(buf);
    o.varint_field(1, LOG_TYPE_PROCESS_LOG);
    o.len_header(4, message.len());
    o.slice(message.as_bytes());
}

/// Writes the `LogBatch.entries` key and length; the entry bytes follow.
pub fn encode_batch_item_header(entry_len: usize, buf: &mut impl BufMut) {
    Direct(buf).len_header(1, entry_len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Detail;
    use prost::Message;
    use rcapture_proto::{Event, LogEntry, LogType, log_entry::Payload};

    fn prost_entry(e: &EventFields<'_>) -> Vec<u8> {
        LogEntry {
            log_type: LogType::Event as i32,
            payload: Some(Payload::EventPayload(Event {
                timestamp: e.timestamp,
                uuid: e.uuid.to_owned(),
                src_ip: e.src_ip.to_owned(),
                src_port: e.src_port,
                dst_ip: e.dst_ip.to_owned(),
                dst_port: e.dst_port,
                pid: e.pid,
                pname: e.pname.to_owned(),
                r#type: e.r#type,
                length: e.length(),
                payload: e.payload.to_vec(),
                tid: e.tid,
                uid: e.uid,
                module: e.module.to_owned(),
                fd: e.fd,
                truncated: e.truncated,
            })),
            seq: 0,
        }
        .encode_to_vec()
    }

    /// Every write path (spare capacity, stack, direct) gives prost's bytes.
    #[test]
    fn every_path_matches_prost() {
        let long = "u".repeat(HEAD_TEXT + 1);
        let long_module = "m".repeat(TAIL_TEXT + 1);
        let big = vec![7u8; 20_000];
        let base = EventFields {
            timestamp: 1_764_000_000_123_456_789,
            uuid: "sock:1_2_curl_5_1_10.0.0.1:1-10.0.0.2:443_7",
            src_ip: "10.0.0.1",
            src_port: 1,
            dst_ip: "10.0.0.2",
            dst_port: 443,
            pid: 1,
            pname: "curl",
            r#type: 1,
            payload: b"GET / HTTP/1.1\r\n",
            tid: 2,
            uid: 1000,
            module: "tls",
            fd: 5,
            truncated: 0,
            detail: Detail::None,
        };
        let cases = [
            base,
            EventFields::default(),
            EventFields {
                timestamp: i64::MIN,
                pid: -1,
                src_port: u32::MAX,
                dst_port: 0x3fff,
                r#type: 0x4000,
                tid: 0x7f,
                uid: 0x80,
                fd: u32::MAX,
                truncated: u32::MAX,
                payload: &big,
                ..base
            },
            EventFields {
                uuid: &long,
                ..base
            },
            EventFields {
                module: &long_module,
                payload: &[],
                ..base
            },
        ];
        for e in &cases {
            let want = prost_entry(e);
            assert_eq!(event_entry_len(e), want.len());
            let mut reserved = Vec::with_capacity(event_entry_len(e));
            encode_event_entry(e, &mut reserved);
            assert_eq!(reserved, want);
            let mut unreserved = Vec::new();
            encode_event_entry(e, &mut unreserved);
            assert_eq!(unreserved, want);
            let mut appended = vec![9u8; 3];
            appended.reserve_exact(want.len() - 1);
            encode_event_entry(e, &mut appended);
            assert_eq!(appended[3..], want[..]);
            let mut slice = vec![0u8; want.len()];
            encode_event_entry(e, &mut &mut slice[..]);
            assert_eq!(slice, want);
        }
    }
}
