//! The NDJSON line of WIRE.md §5: one flat object per event, every key
//! present, int64 as JSON numbers, `payload` as base64, plus `seq`.
//!
//! Written into a caller's reusable `Vec<u8>`; no allocation once its
//! capacity suffices ([`ndjson_line_max_len`] bounds the line).

use crate::event::EventFields;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Upper bound of the line length for an event (escaping at most 6× per byte).
pub fn ndjson_line_max_len(e: &EventFields<'_>) -> usize {
    // 184 bytes of keys, quotes and punctuation, and twelve numbers of at
    // most 21 bytes each (a u64 has 20 digits, an i64 a sign and 19).
    184 + 12 * 21
        + 6 * (e.uuid.len() + e.src_ip.len() + e.dst_ip.len() + e.pname.len() + e.module.len())
        + e.payload.len().div_ceil(3) * 4
}

/// Appends one line (with its trailing `\n`) for `e` numbered `seq`.
pub fn write_ndjson_line(e: &EventFields<'_>, seq: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"timestamp\":");
    num(out, e.timestamp);
    out.extend_from_slice(b",\"uuid\":");
    string(out, e.uuid);
    out.extend_from_slice(b",\"src_ip\":");
    string(out, e.src_ip);
    out.extend_from_slice(b",\"src_port\":");
    num(out, e.src_port);
    out.extend_from_slice(b",\"dst_ip\":");
    string(out, e.dst_ip);
    out.extend_from_slice(b",\"dst_port\":");
    num(out, e.dst_port);
    out.extend_from_slice(b",\"pid\":");
    num(out, e.pid);
    out.extend_from_slice(b",\"pname\":");
    string(out, e.pname);
    out.extend_from_slice(b",\"type\":");
    num(out, e.r#type);
    out.extend_from_slice(b",\"length\":");
    num(out, e.length());
    out.extend_from_slice(b",\"payload\":\"");
    let start = out.len();
    let b64 = e.payload.len().div_ceil(3) * 4;
    out.resize(start + b64, 0);
    let n = STANDARD
        .encode_slice(e.payload, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + n);
    out.extend_from_slice(b"\",\"tid\":");
    num(out, e.tid);
    out.extend_from_slice(b",\"uid\":");
    num(out, e.uid);
    out.extend_from_slice(b",\"module\":");
    string(out, e.module);
    out.extend_from_slice(b",\"fd\":");
    num(out, e.fd);
    out.extend_from_slice(b",\"truncated\":");
    num(out, e.truncated);
    out.extend_from_slice(b",\"status\":");
    num(out, e.status);
    out.extend_from_slice(b",\"seq\":");
    num(out, seq);
    out.extend_from_slice(b"}\n");
}

fn num(out: &mut Vec<u8>, v: impl itoa::Integer) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(v).as_bytes());
}

/// Appends `s` as a JSON string literal.
pub fn string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 15)]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every number at its longest (signs included) and empty strings: the
    /// line still fits the bound (the fuzzer found the bound 7 bytes short
    /// once `status` was added).
    #[test]
    fn the_bound_holds_for_the_longest_numbers() {
        for (ts, pid, status) in [
            (i64::MIN, i64::MIN, i32::MIN),
            (i64::MAX, i64::MAX, i32::MAX),
        ] {
            let e = EventFields {
                timestamp: ts,
                src_port: u32::MAX,
                dst_port: u32::MAX,
                pid,
                r#type: u32::MAX,
                tid: u32::MAX,
                uid: u32::MAX,
                fd: u32::MAX,
                truncated: u32::MAX,
                status,
                ..EventFields::default()
            };
            let mut line = Vec::new();
            write_ndjson_line(&e, u64::MAX, &mut line);
            assert!(
                line.len() <= ndjson_line_max_len(&e),
                "{} > {}: {}",
                line.len(),
                ndjson_line_max_len(&e),
                String::from_utf8_lossy(&line)
            );
        }
    }
}
