//! Allocation-free protobuf encoding of `LogEntry` (WIRE.md §1, §3).
//!
//! Writes straight from borrowed [`EventFields`] with prost's encoding
//! primitives into a caller's buffer. Lengths are computed first
//! ([`event_entry_len`]) so pooled buffers can be sized exactly. Fields equal
//! to their proto3 default are omitted, as prost does; oneof members are
//! always written (presence). `seq` is a separate prefix ([`encode_seq_prefix`]):
//! prefix + body decode as one `LogEntry`, so one encoded body can be shared
//! by consumers that each number it differently.

use crate::event::EventFields;
use bytes::BufMut;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

/// `LogType` values.
pub const LOG_TYPE_HEARTBEAT: u64 = 0;
/// See [`LOG_TYPE_HEARTBEAT`].
pub const LOG_TYPE_PROCESS_LOG: u64 = 1;
/// See [`LOG_TYPE_HEARTBEAT`].
pub const LOG_TYPE_EVENT: u64 = 2;

const SEQ_TAG: u32 = 5;

fn varint_field_len(tag: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(v)
    }
}

fn bytes_field_len(tag: u32, b: &[u8]) -> usize {
    if b.is_empty() {
        0
    } else {
        message_field_len(tag, b.len())
    }
}

fn message_field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn put_varint(tag: u32, v: u64, buf: &mut impl BufMut) {
    if v != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(v, buf);
    }
}

fn put_bytes(tag: u32, b: &[u8], buf: &mut impl BufMut) {
    if !b.is_empty() {
        put_len_delimited(tag, b, buf);
    }
}

fn put_len_delimited(tag: u32, b: &[u8], buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(b.len() as u64, buf);
    buf.put_slice(b);
}

/// Encoded length of the `Event` message body.
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

fn encode_event(e: &EventFields<'_>, buf: &mut impl BufMut) {
    put_varint(1, e.timestamp as u64, buf);
    put_bytes(2, e.uuid.as_bytes(), buf);
    put_bytes(3, e.src_ip.as_bytes(), buf);
    put_varint(4, u64::from(e.src_port), buf);
    put_bytes(5, e.dst_ip.as_bytes(), buf);
    put_varint(6, u64::from(e.dst_port), buf);
    put_varint(7, e.pid as u64, buf);
    put_bytes(8, e.pname.as_bytes(), buf);
    put_varint(9, u64::from(e.r#type), buf);
    put_varint(10, u64::from(e.length()), buf);
    put_bytes(11, e.payload, buf);
    put_varint(12, u64::from(e.tid), buf);
    put_varint(13, u64::from(e.uid), buf);
    put_bytes(14, e.module.as_bytes(), buf);
    put_varint(15, u64::from(e.fd), buf);
    put_varint(16, u64::from(e.truncated), buf);
}

/// Exact encoded length of an event `LogEntry` without `seq`.
pub fn event_entry_len(e: &EventFields<'_>) -> usize {
    varint_field_len(1, LOG_TYPE_EVENT) + message_field_len(2, event_len(e))
}

/// Writes an event `LogEntry` (without `seq`); exactly [`event_entry_len`] bytes.
pub fn encode_event_entry(e: &EventFields<'_>, buf: &mut impl BufMut) {
    put_varint(1, LOG_TYPE_EVENT, buf);
    encode_key(2, WireType::LengthDelimited, buf);
    encode_varint(event_len(e) as u64, buf);
    encode_event(e, buf);
}

/// Length of the `seq` prefix (0 for seq 0).
pub fn seq_prefix_len(seq: u64) -> usize {
    varint_field_len(SEQ_TAG, seq)
}

/// Largest possible `seq` prefix.
pub const MAX_SEQ_PREFIX: usize = 11;

/// Writes `LogEntry.seq` as a prefix; written before an entry body, the two
/// decode as one `LogEntry`.
pub fn encode_seq_prefix(seq: u64, buf: &mut impl BufMut) {
    put_varint(SEQ_TAG, seq, buf);
}

/// The `seq` prefix in a small inline array (for vectored writes).
pub fn seq_prefix(seq: u64) -> ([u8; MAX_SEQ_PREFIX], usize) {
    let mut out = [0u8; MAX_SEQ_PREFIX];
    let n = seq_prefix_len(seq);
    encode_seq_prefix(seq, &mut &mut out[..]);
    (out, n)
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
    encode_key(3, WireType::LengthDelimited, buf);
    encode_varint(heartbeat_len(ts_secs, count, message) as u64, buf);
    put_varint(1, ts_secs as u64, buf);
    put_varint(2, count as u64, buf);
    put_bytes(3, message.as_bytes(), buf);
}

/// Exact length of a process-log `LogEntry`.
pub fn run_log_entry_len(message: &str) -> usize {
    varint_field_len(1, LOG_TYPE_PROCESS_LOG) + message_field_len(4, message.len())
}

/// Writes a process-log `LogEntry` (`run_log`).
pub fn encode_run_log_entry(message: &str, buf: &mut impl BufMut) {
    put_varint(1, LOG_TYPE_PROCESS_LOG, buf);
    put_len_delimited(4, message.as_bytes(), buf);
}

/// Length of one `LogBatch.entries` element wrapping an entry of `entry_len` bytes.
pub fn batch_item_len(entry_len: usize) -> usize {
    message_field_len(1, entry_len)
}

/// Writes the `LogBatch.entries` key and length; the entry bytes follow.
pub fn encode_batch_item_header(entry_len: usize, buf: &mut impl BufMut) {
    encode_key(1, WireType::LengthDelimited, buf);
    encode_varint(entry_len as u64, buf);
}
