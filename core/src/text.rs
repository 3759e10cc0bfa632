//! The text output of WIRE.md §8: one block per event, a blank line between.
//!
//! `2026-11-26T05:08:48.123456789Z tls pid=4242 tid=4242 comm=curl fd=5
//! 127.0.0.1:52814->127.0.0.1:8443 send 79 bytes`, then the payload with
//! printable ASCII, newline and tab as is, CRLF shown as a line end (a
//! newline), a backslash as `\\` and other bytes (a lone CR included) as
//! `\xNN`, or a hex dump with `--hex`. Rendered into a reusable buffer; no
//! allocation.

use crate::event::{EventFields, EventKind};

/// How payloads are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadStyle {
    /// Printable ASCII as is, other bytes escaped.
    #[default]
    Escaped,
    /// `hexdump -C`-like lines.
    Hex,
}

/// Appends the block of one event to `out`.
///
/// bash events name the user and say what happened instead of an address:
/// `… bash pid=4242 tid=4242 uid=1000 comm=bash line 7 bytes` with the
/// command line as payload, `… status 1` (the exit status of the command
/// read before) and `… exit/exec 3` (the shell exits with, or execs after,
/// that status), those two without a payload block.
pub fn write_text(e: &EventFields<'_>, kind: EventKind, style: PayloadStyle, out: &mut Vec<u8>) {
    write_rfc3339_nanos(e.timestamp, out);
    out.push(b' ');
    out.extend_from_slice(e.module.as_bytes());
    out.extend_from_slice(b" pid=");
    push_i64(out, e.pid);
    out.extend_from_slice(b" tid=");
    push_u64(out, u64::from(e.tid));
    if kind == EventKind::Bash {
        out.extend_from_slice(b" uid=");
        push_u64(out, u64::from(e.uid));
    }
    out.extend_from_slice(b" comm=");
    out.extend_from_slice(e.pname.as_bytes());
    if kind == EventKind::Bash {
        let what: &[u8] = match e.r#type {
            0 => return payload_block(e, "line", style, out),
            1 => b" status ",
            _ => b" exit/exec ",
        };
        out.extend_from_slice(what);
        escaped(e.payload, out);
        out.extend_from_slice(b"\n\n");
        return;
    }
    let what = match kind {
        EventKind::Data if e.r#type == 1 => "send",
        EventKind::Data => "recv",
        other => other.name(),
    };
    let addr = |ip: &str, port: u32, out: &mut Vec<u8>| {
        let v6 = ip.contains(':');
        if v6 {
            out.push(b'[');
        }
        out.extend_from_slice(ip.as_bytes());
        out.extend_from_slice(if v6 { b"]:" } else { b":" });
        push_u64(out, u64::from(port));
    };
    out.extend_from_slice(b" fd=");
    push_u64(out, u64::from(e.fd));
    out.push(b' ');
    addr(e.src_ip, e.src_port, out);
    out.extend_from_slice(b"->");
    addr(e.dst_ip, e.dst_port, out);
    payload_block(e, what, style, out);
}

/// ` WHAT N bytes[ (M more bytes not captured)]`, the line end, the payload
/// and the blank line that ends the block.
fn payload_block(e: &EventFields<'_>, what: &str, style: PayloadStyle, out: &mut Vec<u8>) {
    out.push(b' ');
    out.extend_from_slice(what.as_bytes());
    out.push(b' ');
    push_u64(out, u64::from(e.length()));
    out.extend_from_slice(b" bytes");
    if e.truncated > 0 {
        out.extend_from_slice(b" (");
        push_u64(out, u64::from(e.truncated));
        out.extend_from_slice(b" more bytes not captured)");
    }
    out.push(b'\n');
    match style {
        PayloadStyle::Escaped => escaped(e.payload, out),
        PayloadStyle::Hex => hex_dump(e.payload, out),
    }
    if out.last() != Some(&b'\n') {
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// Bytes shown as they are: printable ASCII except `\\`, newline and tab.
#[inline]
fn plain(b: u8) -> bool {
    matches!(b, b'\n' | b'\t' | 0x20..=0x7e) && b != b'\\'
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Whether any byte of `w` may need escaping: below 0x20 (newline and tab
/// included, sorted out byte by byte), above 0x7e, or a backslash. Exact
/// SWAR tests (Bit Twiddling Hacks: hasless, hasmore, haszero).
#[inline]
fn word_needs_care(w: u64) -> bool {
    let below = w.wrapping_sub(LO * 0x20) & !w & HI;
    // hasmore(w, 0x7e): adding 127 - 0x7e = 1 sets the top bit of bytes > 0x7e.
    let above = (w.wrapping_add(LO) | w) & HI;
    let x = w ^ (LO * u64::from(b'\\'));
    let backslash = x.wrapping_sub(LO) & !x & HI;
    below | above | backslash != 0
}

fn escaped(p: &[u8], out: &mut Vec<u8>) {
    out.reserve(p.len());
    let mut start = 0; // first byte not copied yet
    let mut i = 0;
    while i < p.len() {
        // Runs of plain text, eight bytes at a time.
        while let Some(w) = p.get(i..i + 8) {
            let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            if word_needs_care(w) {
                break;
            }
            i += 8;
        }
        let Some(&b) = p.get(i) else { break };
        i += 1;
        if plain(b) {
            continue;
        }
        out.extend_from_slice(&p[start..i - 1]);
        if b == b'\r' && p.get(i) == Some(&b'\n') {
            // CRLF is a line end: the newline that follows is copied as is.
            start = i;
            continue;
        }
        if b == b'\\' {
            out.extend_from_slice(b"\\\\");
        } else {
            out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX_DIGITS[usize::from(b >> 4)],
                HEX_DIGITS[usize::from(b & 15)],
            ]);
        }
        start = i;
    }
    out.extend_from_slice(&p[start..]);
}

/// Appends the decimal digits of `v` (no `core::fmt`: this runs per event).
fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

/// Appends `v` as exactly `N` decimal digits (`v < 10^N`).
fn push_padded<const N: usize>(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [b'0'; N];
    for d in buf.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&buf);
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn hex_dump(p: &[u8], out: &mut Vec<u8>) {
    for (n, line) in p.chunks(16).enumerate() {
        let off = n * 16;
        for shift in (0..8).rev() {
            out.push(HEX_DIGITS[(off >> (shift * 4)) & 15]);
        }
        out.push(b' ');
        for i in 0..16 {
            if i == 8 {
                out.push(b' ');
            }
            match line.get(i) {
                Some(&b) => out.extend_from_slice(&[
                    b' ',
                    HEX_DIGITS[usize::from(b >> 4)],
                    HEX_DIGITS[usize::from(b & 15)],
                ]),
                None => out.extend_from_slice(b"   "),
            }
        }
        out.extend_from_slice(b"  |");
        for &b in line {
            out.push(if (0x20..=0x7e).contains(&b) { b } else { b'.' });
        }
        out.extend_from_slice(b"|\n");
    }
}

/// Appends `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` for Unix-epoch nanoseconds.
pub fn write_rfc3339_nanos(unix_ns: i64, out: &mut Vec<u8>) {
    let secs = unix_ns.div_euclid(1_000_000_000);
    let nanos = unix_ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if (0..=9999).contains(&y) {
        push_padded::<4>(out, y as u64);
    } else {
        // Outside RFC 3339's range: as `{y:04}` would print it.
        push_i64(out, y);
    }
    out.push(b'-');
    push_padded::<2>(out, u64::from(m));
    out.push(b'-');
    push_padded::<2>(out, u64::from(d));
    out.push(b'T');
    push_padded::<2>(out, (sod / 3600) as u64);
    out.push(b':');
    push_padded::<2>(out, (sod % 3600 / 60) as u64);
    out.push(b':');
    push_padded::<2>(out, (sod % 60) as u64);
    out.push(b'.');
    push_padded::<9>(out, nanos as u64);
    out.push(b'Z');
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(payload: &[u8]) -> EventFields<'_> {
        EventFields {
            timestamp: 1_764_134_928_123_456_789,
            uuid: "u",
            src_ip: "127.0.0.1",
            src_port: 52814,
            dst_ip: "127.0.0.1",
            dst_port: 8443,
            pid: 4242,
            pname: "curl",
            r#type: 1,
            payload,
            tid: 4242,
            module: "tls",
            fd: 5,
            ..Default::default()
        }
    }

    /// A bash line names the uid and carries the line; a status and an
    /// exit show their number in the header and have no payload block.
    #[test]
    fn bash_line_status_and_exit() {
        let bash = |r#type, payload| EventFields {
            module: "bash",
            pname: "bash",
            uid: 1000,
            r#type,
            ..ev(payload)
        };
        let mut out = Vec::new();
        for (t, p) in [(0, &b"echo hi; (exit 7)"[..]), (1, b"7"), (2, b"3")] {
            write_text(
                &bash(t, p),
                EventKind::Bash,
                PayloadStyle::Escaped,
                &mut out,
            );
        }
        let head = "2025-11-26T05:28:48.123456789Z bash pid=4242 tid=4242 uid=1000 comm=bash";
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "{head} line 17 bytes\necho hi; (exit 7)\n\n{head} status 7\n\n{head} exit/exec 3\n\n"
            )
        );
    }

    #[test]
    fn wire_example_line() {
        let mut out = Vec::new();
        write_text(
            &ev(b"GET / HTTP/1.1\r\n\x00\\"),
            EventKind::Data,
            PayloadStyle::Escaped,
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2025-11-26T05:28:48.123456789Z tls pid=4242 tid=4242 comm=curl fd=5 \
             127.0.0.1:52814->127.0.0.1:8443 send 18 bytes\nGET / HTTP/1.1\n\\x00\\\\\n\n"
        );
    }

    /// CRLF ends a line; a CR alone (also at the end, or before CR) stays
    /// escaped, as do other control bytes.
    #[test]
    fn crlf_is_a_line_end_and_a_lone_cr_is_escaped() {
        let mut out = Vec::new();
        escaped(
            b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nx\ry\r\r\n\x1b[2J\r",
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\nA: b\n\nx\\x0dy\\x0d\n\\x1b[2J\\x0d"
        );
    }

    #[test]
    fn ipv6_truncated_and_hex() {
        let mut e = ev(b"0123456789abcdefXY");
        e.src_ip = "::1";
        e.r#type = 0;
        e.truncated = 7;
        let mut out = Vec::new();
        write_text(&e, EventKind::Data, PayloadStyle::Hex, &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.contains(" [::1]:52814->127.0.0.1:8443 recv 18 bytes (7 more bytes not captured)\n"),
            "{s}"
        );
        assert!(
            s.contains(
                "00000000  30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66  |0123456789abcdef|\n"
            ),
            "{s}"
        );
        assert!(
            s.ends_with("00000010  58 59                                             |XY|\n\n"),
            "{s}"
        );
    }

    /// The byte-by-byte definition `escaped` must match.
    fn escaped_slow(p: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, &b) in p.iter().enumerate() {
            if b == b'\r' && p.get(i + 1) == Some(&b'\n') {
                continue;
            }
            if plain(b) {
                out.push(b);
            } else if b == b'\\' {
                out.extend_from_slice(b"\\\\");
            } else {
                out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            }
        }
        out
    }

    #[test]
    fn escaping_matches_the_bytewise_definition() {
        // Every byte value at every position of a word, in plain context.
        for b in 0..=255u8 {
            for pos in 0..17 {
                let mut p = b"abcdefghijklmnopqrstuvwxyz".to_vec();
                p.insert(pos, b);
                let mut out = Vec::new();
                escaped(&p, &mut out);
                assert_eq!(out, escaped_slow(&p), "byte {b:#x} at {pos}");
            }
        }
        // Random mixes of lengths 0..100.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for n in 0..2000 {
            let p: Vec<u8> = (0..n % 100)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // mostly printable, sometimes anything
                    if x.is_multiple_of(5) {
                        x as u8
                    } else {
                        0x20 + (x % 95) as u8
                    }
                })
                .collect();
            let mut out = Vec::new();
            escaped(&p, &mut out);
            assert_eq!(out, escaped_slow(&p), "{p:?}");
        }
    }

    #[test]
    fn integers_match_display() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut vals = vec![0, 1, 9, 10, 99, 100, u64::from(u32::MAX), u64::MAX];
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            vals.push(x >> (x % 64));
        }
        for v in vals {
            let mut out = Vec::new();
            push_u64(&mut out, v);
            assert_eq!(out, v.to_string().into_bytes());
            let i = v as i64;
            out.clear();
            push_i64(&mut out, i);
            assert_eq!(out, i.to_string().into_bytes());
            out.clear();
            push_padded::<9>(&mut out, v % 1_000_000_000);
            assert_eq!(out, format!("{:09}", v % 1_000_000_000).into_bytes());
        }
        let mut out = Vec::new();
        push_i64(&mut out, i64::MIN);
        assert_eq!(out, i64::MIN.to_string().into_bytes());
    }

    #[test]
    fn dates_before_and_after_the_epoch_and_far_years() {
        for ns in [
            -1i64,
            -86_400_000_000_000,
            i64::MIN,
            i64::MAX,
            9_000_000_000_000_000_000,
        ] {
            let mut out = Vec::new();
            write_rfc3339_nanos(ns, &mut out);
            let secs = ns.div_euclid(1_000_000_000);
            let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
            let sod = secs.rem_euclid(86_400);
            let want = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
                sod / 3600,
                sod % 3600 / 60,
                sod % 60,
                ns.rem_euclid(1_000_000_000)
            );
            assert_eq!(String::from_utf8(out).unwrap(), want, "{ns}");
        }
    }

    #[test]
    fn dates() {
        let mut out = Vec::new();
        write_rfc3339_nanos(0, &mut out);
        write_rfc3339_nanos(951_782_400_000_000_001, &mut out); // 2000-02-29
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1970-01-01T00:00:00.000000000Z2000-02-29T00:00:00.000000001Z"
        );
    }
}
