//! The text output of WIRE.md §8: one block per event, a blank line between.
//!
//! Each block starts with a header line: the time (RFC 3339, nanoseconds),
//! the module, who (pid, tid or uid, comm) and what happened; then, for the
//! kinds that carry one, the payload. Per event kind:
//!
//! - data: `… tls pid=4242 tid=4242 comm=curl fd=5
//!   127.0.0.1:52814->127.0.0.1:8443 send 79 bytes`, then the payload.
//! - masterkey: `… tls pid=4242 tid=4242 comm=curl masterkey TLS1.3
//!   client_random=HEX` (the version when `type` carries one), then the
//!   key log lines.
//! - bash: `… bash pid=7 uid=0 comm=bash readline: ls -l` (type 0),
//!   `status=N: COMMAND` (type 1, N the command's exit status),
//!   `exit/exec: COMMAND` (type 2; ` status=N` when not 0). Continuation
//!   lines of a multi-line command are indented by four spaces.
//! - query: `… mysqld pid=9 tid=10 comm=mysqld query (ret=N)` (with
//!   ` error=E` when the statement failed with SQL error E; postgres: no
//!   return value), then the SQL text.
//! - conn: `… tls pid=4242 tid=4242 comm=curl fd=5 connect
//!   127.0.0.1:52814->127.0.0.1:8443` (`accept`, `close`); no payload.
//! - packet: `… tls pid=0 comm=swapper/0 ifindex=2 ingress 60 bytes`
//!   (`egress`), then a hex dump of the frame.
//!
//! Every header has `pid=` and `comm=`: a reader can find the blocks.
//!
//! Payloads are shown with printable ASCII, newline and tab as is, CRLF as
//! a line end (a newline), a backslash as `\\` and other bytes (a lone CR
//! included) as `\xNN`, or as a hex dump with `--hex` ([`PayloadStyle::Hex`],
//! data, bash and query; a bash header then ends in `N bytes` and the dump
//! follows). A header notes bytes of the call that were not captured.
//! Rendered into a reusable buffer; no allocation and no `core::fmt`.

use crate::event::{Detail, EventFields, EventKind};
use crate::records::{CONN_ACCEPT, CONN_CLOSE, CONN_CONNECT, DIR_SEND};

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
pub fn write_text(e: &EventFields<'_>, kind: EventKind, style: PayloadStyle, out: &mut Vec<u8>) {
    write_rfc3339_nanos(e.timestamp, out);
    out.push(b' ');
    out.extend_from_slice(e.module.as_bytes());
    match kind {
        EventKind::Data => data(e, style, out),
        EventKind::MasterKey => masterkey(e, out),
        EventKind::Bash => bash(e, style, out),
        EventKind::Query => query(e, style, out),
        EventKind::Conn => conn(e, out),
        EventKind::Packet => packet(e, out),
    }
    if out.last() != Some(&b'\n') {
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// ` pid=P tid=T comm=C`.
fn pid_tid_comm(e: &EventFields<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b" pid=");
    push_i64(out, e.pid);
    out.extend_from_slice(b" tid=");
    push_u64(out, u64::from(e.tid));
    comm(e, out);
}

/// ` comm=C`: a process sets its own name (prctl), so control bytes, a
/// space, a backslash and non-ASCII are shown as `\xNN` — a name cannot
/// end the header line or forge another.
fn comm(e: &EventFields<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b" comm=");
    for &b in e.pname.as_bytes() {
        if b.is_ascii_graphic() && b != b'\\' {
            out.push(b);
        } else {
            out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX_DIGITS[usize::from(b >> 4)],
                HEX_DIGITS[usize::from(b & 15)],
            ]);
        }
    }
}

/// `SRC->DST`, IPv6 addresses in brackets.
fn src_dst(e: &EventFields<'_>, out: &mut Vec<u8>) {
    endpoint(e.src_ip, e.src_port, out);
    out.extend_from_slice(b"->");
    endpoint(e.dst_ip, e.dst_port, out);
}

fn endpoint(ip: &str, port: u32, out: &mut Vec<u8>) {
    let v6 = ip.contains(':');
    if v6 {
        out.push(b'[');
    }
    out.extend_from_slice(ip.as_bytes());
    out.extend_from_slice(if v6 { b"]:" } else { b":" });
    push_u64(out, u64::from(port));
}

/// ` N bytes`, and what was not captured.
fn length(e: &EventFields<'_>, out: &mut Vec<u8>) {
    out.push(b' ');
    push_u64(out, u64::from(e.length()));
    out.extend_from_slice(b" bytes");
    not_captured(e, out);
}

/// ` (N more bytes not captured)` when the call was cut.
fn not_captured(e: &EventFields<'_>, out: &mut Vec<u8>) {
    if e.truncated > 0 {
        out.extend_from_slice(b" (");
        push_u64(out, u64::from(e.truncated));
        out.extend_from_slice(b" more bytes not captured)");
    }
}

/// The payload on the lines after the header.
fn body(p: &[u8], style: PayloadStyle, out: &mut Vec<u8>) {
    out.push(b'\n');
    match style {
        PayloadStyle::Escaped => escaped(p, out),
        PayloadStyle::Hex => hex_dump(p, out),
    }
}

fn data(e: &EventFields<'_>, style: PayloadStyle, out: &mut Vec<u8>) {
    pid_tid_comm(e, out);
    out.extend_from_slice(b" fd=");
    push_u64(out, u64::from(e.fd));
    out.push(b' ');
    src_dst(e, out);
    out.extend_from_slice(if e.r#type == u32::from(DIR_SEND) {
        b" send"
    } else {
        b" recv"
    });
    length(e, out);
    body(e.payload, style, out);
}

fn masterkey(e: &EventFields<'_>, out: &mut Vec<u8>) {
    pid_tid_comm(e, out);
    out.extend_from_slice(b" masterkey");
    match e.r#type {
        0 => {}
        0x0300 => out.extend_from_slice(b" SSL3.0"),
        v @ 0x0301..=0x0304 => {
            out.extend_from_slice(b" TLS1.");
            push_u64(out, u64::from(v - 0x0301));
        }
        v => {
            out.extend_from_slice(b" version=0x");
            for shift in (0..4).rev() {
                out.push(HEX_DIGITS[(v >> (shift * 4)) as usize & 15]);
            }
        }
    }
    // The uuid of a key event is its client random (upper-case hex).
    out.extend_from_slice(b" client_random=");
    out.extend_from_slice(e.uuid.as_bytes());
    // Key log lines are ASCII and stay as they are; anything else in them
    // (a label read from a traced process) is escaped all the same.
    body(e.payload, PayloadStyle::Escaped, out);
}

fn bash(e: &EventFields<'_>, style: PayloadStyle, out: &mut Vec<u8>) {
    out.extend_from_slice(b" pid=");
    push_i64(out, e.pid);
    out.extend_from_slice(b" uid=");
    push_u64(out, u64::from(e.uid));
    comm(e, out);
    let retval = match e.detail {
        Detail::Bash { retval } => Some(retval),
        _ => None,
    };
    let status = |out: &mut Vec<u8>| {
        out.extend_from_slice(b"status=");
        match retval {
            Some(r) => push_i64(out, i64::from(r)),
            None => out.push(b'?'),
        }
    };
    out.push(b' ');
    match e.r#type {
        0 => out.extend_from_slice(b"readline"),
        1 => status(out),
        2 => {
            out.extend_from_slice(b"exit/exec");
            if retval.is_some_and(|r| r != 0) {
                out.push(b' ');
                status(out);
            }
        }
        t => {
            out.extend_from_slice(b"type=");
            push_u64(out, u64::from(t));
            out.push(b' ');
            status(out);
        }
    }
    match style {
        PayloadStyle::Hex => {
            length(e, out);
            body(e.payload, style, out);
        }
        PayloadStyle::Escaped => {
            not_captured(e, out);
            if !e.payload.is_empty() {
                out.extend_from_slice(b": ");
                indented(e.payload, out);
            }
        }
    }
}

/// `p` escaped, each line after the first indented by four spaces (a
/// command's continuation lines under the header that holds its first).
fn indented(p: &[u8], out: &mut Vec<u8>) {
    let (p, line_end) = match p {
        [rest @ .., b'\r', b'\n'] | [rest @ .., b'\n'] => (rest, true),
        _ => (p, false),
    };
    let mut lines = p.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        if lines.peek().is_some() {
            // CRLF is a line end, as in `escaped`.
            escaped(line.strip_suffix(b"\r").unwrap_or(line), out);
            out.extend_from_slice(b"\n    ");
        } else {
            escaped(line, out);
        }
    }
    if line_end {
        out.push(b'\n');
    }
}

fn query(e: &EventFields<'_>, style: PayloadStyle, out: &mut Vec<u8>) {
    pid_tid_comm(e, out);
    out.extend_from_slice(b" query");
    // mysqld's return value is `type` (an int8 sign-extended); postgres has none.
    if e.module != "postgres" {
        out.extend_from_slice(b" (ret=");
        push_i64(out, i64::from(e.r#type as i32));
        if let Detail::Query { sql_errno } = e.detail
            && sql_errno != 0
        {
            out.extend_from_slice(b" error=");
            push_u64(out, u64::from(sql_errno));
        }
        out.push(b')');
    }
    not_captured(e, out);
    body(e.payload, style, out);
}

fn conn(e: &EventFields<'_>, out: &mut Vec<u8>) {
    pid_tid_comm(e, out);
    out.extend_from_slice(b" fd=");
    push_u64(out, u64::from(e.fd));
    out.push(b' ');
    match e.detail {
        Detail::Conn {
            event: CONN_CONNECT,
        } => out.extend_from_slice(b"connect"),
        Detail::Conn { event: CONN_ACCEPT } => out.extend_from_slice(b"accept"),
        Detail::Conn { event: CONN_CLOSE } => out.extend_from_slice(b"close"),
        Detail::Conn { event } => {
            out.extend_from_slice(b"event=");
            push_u64(out, u64::from(event));
        }
        _ => out.extend_from_slice(b"conn"),
    }
    out.push(b' ');
    src_dst(e, out);
    out.push(b'\n');
}

fn packet(e: &EventFields<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b" pid=");
    push_i64(out, e.pid);
    comm(e, out);
    match e.detail {
        Detail::Packet { ifindex, direction } => {
            out.extend_from_slice(b" ifindex=");
            push_u64(out, u64::from(ifindex));
            out.extend_from_slice(if direction == DIR_SEND {
                b" egress"
            } else {
                b" ingress"
            });
        }
        _ => out.extend_from_slice(b" packet"),
    }
    length(e, out);
    // A frame is binary: always a hex dump.
    body(e.payload, PayloadStyle::Hex, out);
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
    use crate::decode::decode;
    use crate::event::{Clock, EventScratch, event_fields};
    use crate::records::{DIR_RECV, QueryRecord, RecordHeader, RecordKind, Tuple};
    use crate::synth;

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

    const T: &str = "2025-11-26T05:28:48.123456789Z";

    /// The block of a raw record, through the event model as the workers
    /// render it (`truncated` bytes of the call not captured).
    fn render(raw: &[u8], truncated: u32, style: PayloadStyle) -> String {
        let rec = decode(raw).unwrap();
        let mut s = EventScratch::new();
        let clock = Clock::from_offset(1_764_134_928_123_456_788);
        let ev = event_fields(&rec, truncated, &clock, &mut s);
        let mut out = Vec::new();
        write_text(&ev, EventKind::of(rec.kind()), style, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn hdr(kind: RecordKind, pid: u32, tid: u32, uid: u32, comm: &str) -> RecordHeader {
        synth::header(kind, pid, tid, uid, comm, 1)
    }

    fn t4() -> Tuple {
        synth::tuple(
            "10.1.2.3:52814".parse().unwrap(),
            "93.184.216.34:443".parse().unwrap(),
        )
    }

    /// Every TLS library's data reads as OpenSSL's, under its own module;
    /// without a known connection the addresses are 127.0.0.1:0.
    #[test]
    fn data_of_every_library() {
        for (kind, module) in [
            (RecordKind::TlsData, "tls"),
            (RecordKind::GnutlsData, "gnutls"),
            (RecordKind::NssData, "nss"),
            (RecordKind::GotlsData, "gotls"),
        ] {
            let raw = synth::single(
                synth::data(hdr(kind, 10, 11, 0, "curl"), 5, DIR_SEND, 7, t4()),
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            );
            assert_eq!(
                render(&raw, 0, PayloadStyle::Escaped),
                format!(
                    "{T} {module} pid=10 tid=11 comm=curl fd=5 10.1.2.3:52814->93.184.216.34:443 \
                     send 27 bytes\nGET / HTTP/1.1\nHost: x\n\n\n"
                )
            );
            let raw = synth::single(
                synth::data(
                    hdr(kind, 10, 11, 0, "curl"),
                    u32::MAX,
                    DIR_RECV,
                    0,
                    Tuple::default(),
                ),
                b"HTTP/1.1 200 OK\r\n",
            );
            assert_eq!(
                render(&raw, 3, PayloadStyle::Hex),
                format!(
                    "{T} {module} pid=10 tid=11 comm=curl fd=0 127.0.0.1:0->127.0.0.1:0 recv 17 bytes \
                     (3 more bytes not captured)\n\
                     00000000  48 54 54 50 2f 31 2e 31  20 32 30 30 20 4f 4b 0d  |HTTP/1.1 200 OK.|\n\
                     00000010  0a                                                |.|\n\n"
                )
            );
        }
    }

    #[test]
    fn masterkey_tls12_and_tls13() {
        let raw = synth::master_secret(
            hdr(RecordKind::MasterSecret, 10, 11, 0, "curl"),
            0x0303,
            0x0300_c02f,
            [0xab; 32],
            1,
        );
        assert_eq!(
            render(&raw, 0, PayloadStyle::Hex),
            format!(
                "{T} tls pid=10 tid=11 comm=curl masterkey TLS1.2 client_random={}\n\
                 CLIENT_RANDOM {} {}\n\n",
                "AB".repeat(32),
                "ab".repeat(32),
                "01".repeat(48)
            )
        );
        let raw = synth::master_secret(
            hdr(RecordKind::MasterSecret, 10, 11, 0, "curl"),
            0x0304,
            0x0300_1301,
            [0xab; 32],
            1,
        );
        let text = render(&raw, 0, PayloadStyle::Escaped);
        let (head, lines) = text.split_once('\n').unwrap();
        assert_eq!(
            head,
            format!(
                "{T} tls pid=10 tid=11 comm=curl masterkey TLS1.3 client_random={}",
                "AB".repeat(32)
            )
        );
        let labels: Vec<&str> = lines
            .lines()
            .take_while(|l| !l.is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                assert_eq!(f.len(), 3, "{l:?}");
                assert_eq!(f[1], "ab".repeat(32));
                assert_eq!(f[2].len(), 64, "{l:?}");
                f[0]
            })
            .collect();
        assert_eq!(
            labels,
            [
                "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
                "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                "CLIENT_TRAFFIC_SECRET_0",
                "SERVER_TRAFFIC_SECRET_0",
                "EXPORTER_SECRET",
            ]
        );
        assert!(text.ends_with("\n\n"), "{text:?}");
    }

    /// A Go key carries no version (its label tells it); an unknown
    /// version is shown as a number.
    #[test]
    fn masterkey_gotls_and_unknown_versions() {
        let raw = synth::gotls_key(
            hdr(RecordKind::GotlsKey, 20, 21, 0, "goclient"),
            "CLIENT_TRAFFIC_SECRET_0",
            [0x01; 32],
            &[0x5a; 32],
        );
        assert_eq!(
            render(&raw, 0, PayloadStyle::Escaped),
            format!(
                "{T} gotls pid=20 tid=21 comm=goclient masterkey client_random={}\n\
                 CLIENT_TRAFFIC_SECRET_0 {} {}\n\n",
                "01".repeat(32),
                "01".repeat(32),
                "5a".repeat(32)
            )
        );
        let ev = EventFields {
            r#type: 0xfe_fd,
            uuid: "CR",
            module: "gnutls",
            ..ev(b"CLIENT_RANDOM x y\n")
        };
        let mut out = Vec::new();
        write_text(&ev, EventKind::MasterKey, PayloadStyle::Escaped, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2025-11-26T05:28:48.123456789Z gnutls pid=4242 tid=4242 comm=curl \
             masterkey version=0xfefd client_random=CR\nCLIENT_RANDOM x y\n\n"
        );
    }

    #[test]
    fn bash_readline_status_exit() {
        let bash = |t, retval, line: &[u8]| {
            synth::single(
                synth::bash(hdr(RecordKind::Bash, 77, 77, 1000, "bash"), t, retval),
                line,
            )
        };
        let cases: [(u32, i32, &[u8], &str); 7] = [
            (0, 0, b"ls -la /tmp", "readline: ls -la /tmp"),
            (1, 2, b"ls /nonexistent", "status=2: ls /nonexistent"),
            (1, 0, b"", "status=0"),
            (2, 0, b"exec ls", "exit/exec: exec ls"),
            (2, 5, b"exit 5", "exit/exec status=5: exit 5"),
            // Continuation lines are indented; CRLF is a line end, a
            // trailing line end is dropped, other bytes are escaped.
            (
                0,
                0,
                b"for i in 1 2; do\r\n\techo $i\n\ndone \\ \x1b[m\n",
                "readline: for i in 1 2; do\n    \techo $i\n    \n    done \\\\ \\x1b[m",
            ),
            (0, 0, b"a\r\r\n", "readline: a\\x0d"),
        ];
        for (t, retval, line, want) in cases {
            assert_eq!(
                render(&bash(t, retval, line), 0, PayloadStyle::Escaped),
                format!("{T} bash pid=77 uid=1000 comm=bash {want}\n\n"),
                "{line:?}"
            );
        }
        assert_eq!(
            render(&bash(0, 0, b"ls"), 300, PayloadStyle::Escaped),
            format!(
                "{T} bash pid=77 uid=1000 comm=bash readline (300 more bytes not captured): ls\n\n"
            )
        );
        assert_eq!(
            render(&bash(1, 1, b"false"), 0, PayloadStyle::Hex),
            format!(
                "{T} bash pid=77 uid=1000 comm=bash status=1 5 bytes\n\
                 00000000  66 61 6c 73 65                                    |false|\n\n"
            )
        );
    }

    #[test]
    fn queries_of_mysqld_and_postgres() {
        let raw = synth::single(
            synth::query(hdr(RecordKind::MysqlQuery, 9, 10, 0, "mysqld"), -3),
            b"SELECT 'a\\b'\n  FROM t\x00",
        );
        assert_eq!(
            render(&raw, 0, PayloadStyle::Escaped),
            format!(
                "{T} mysqld pid=9 tid=10 comm=mysqld query (ret=-3)\nSELECT 'a\\\\b'\n  FROM t\\x00\n\n"
            )
        );
        let failed = QueryRecord {
            sql_errno: 1146,
            ..synth::query(hdr(RecordKind::MysqlQuery, 9, 10, 0, "mysqld"), 0)
        };
        assert_eq!(
            render(
                &synth::single(failed, b"SELECT * FROM nosuch"),
                0,
                PayloadStyle::Escaped
            ),
            format!(
                "{T} mysqld pid=9 tid=10 comm=mysqld query (ret=0 error=1146)\nSELECT * FROM nosuch\n\n"
            )
        );
        let raw = synth::single(
            synth::query(hdr(RecordKind::MysqlQuery, 9, 10, 0, "mysqld"), 0),
            b"SELECT 1",
        );
        assert_eq!(
            render(&raw, 5, PayloadStyle::Hex),
            format!(
                "{T} mysqld pid=9 tid=10 comm=mysqld query (ret=0) (5 more bytes not captured)\n\
                 00000000  53 45 4c 45 43 54 20 31                           |SELECT 1|\n\n"
            )
        );
        let raw = synth::single(
            synth::query(hdr(RecordKind::PgQuery, 12, 12, 0, "postgres"), 0),
            b"INSERT INTO t VALUES (1);",
        );
        assert_eq!(
            render(&raw, 0, PayloadStyle::Escaped),
            format!(
                "{T} postgres pid=12 tid=12 comm=postgres query\nINSERT INTO t VALUES (1);\n\n"
            )
        );
    }

    #[test]
    fn connections() {
        let t6 = synth::tuple(
            "[2001:db8::1]:40000".parse().unwrap(),
            "[::ffff:10.0.0.1]:443".parse().unwrap(),
        );
        for (event, tuple, want) in [
            (
                CONN_CONNECT,
                t4(),
                "connect 10.1.2.3:52814->93.184.216.34:443",
            ),
            (
                CONN_ACCEPT,
                t6,
                "accept [2001:db8::1]:40000->[::ffff:10.0.0.1]:443",
            ),
            (CONN_CLOSE, Tuple::default(), "close 0.0.0.0:0->0.0.0.0:0"),
        ] {
            let raw = synth::conn(hdr(RecordKind::Conn, 10, 11, 0, "curl"), 5, event, 1, tuple);
            for style in [PayloadStyle::Escaped, PayloadStyle::Hex] {
                assert_eq!(
                    render(&raw, 0, style),
                    format!("{T} tls pid=10 tid=11 comm=curl fd=5 {want}\n\n")
                );
            }
        }
    }

    /// A packet is binary: a hex dump in either style.
    #[test]
    fn packets() {
        let frame: Vec<u8> = (0..20).collect();
        for (direction, style, want) in [
            (DIR_RECV, PayloadStyle::Escaped, "ingress"),
            (DIR_SEND, PayloadStyle::Hex, "egress"),
        ] {
            let raw = synth::single(
                synth::packet(hdr(RecordKind::Packet, 0, 0, 0, "swapper/0"), 2, direction),
                &frame,
            );
            assert_eq!(
                render(&raw, 0, style),
                format!(
                    "{T} tls pid=0 comm=swapper/0 ifindex=2 {want} 20 bytes\n\
                     00000000  00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f  |................|\n\
                     00000010  10 11 12 13                                       |....|\n\n"
                )
            );
        }
    }

    /// Events decoded from the wire have no detail, and hand-made ones may
    /// hold values no record decodes to: the blocks still read.
    #[test]
    fn kinds_without_detail_or_with_unknown_values() {
        let e = EventFields {
            r#type: 1,
            ..ev(b"ls")
        };
        let mut out = Vec::new();
        for (kind, e) in [
            (EventKind::Bash, e),
            (EventKind::Conn, e),
            (EventKind::Packet, e),
            (
                EventKind::Bash,
                EventFields {
                    r#type: 9,
                    detail: Detail::Bash { retval: -1 },
                    ..e
                },
            ),
            (
                EventKind::Conn,
                EventFields {
                    detail: Detail::Conn { event: 7 },
                    ..e
                },
            ),
        ] {
            write_text(&e, kind, PayloadStyle::Escaped, &mut out);
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "{T} tls pid=4242 uid=0 comm=curl status=?: ls\n\n\
                 {T} tls pid=4242 tid=4242 comm=curl fd=5 conn 127.0.0.1:52814->127.0.0.1:8443\n\n\
                 {T} tls pid=4242 comm=curl packet 2 bytes\n\
                 00000000  6c 73                                             |ls|\n\n\
                 {T} tls pid=4242 uid=0 comm=curl type=9 status=-1: ls\n\n\
                 {T} tls pid=4242 tid=4242 comm=curl fd=5 event=7 127.0.0.1:52814->127.0.0.1:8443\n\n"
            )
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

    /// A process name with a newline cannot forge a header line.
    #[test]
    fn comm_is_escaped() {
        let mut f = ev(b"x");
        f.pname = "x\n2026 tls pid=1 a b";
        let mut out = Vec::new();
        write_text(&f, EventKind::Data, PayloadStyle::Escaped, &mut out);
        let text = String::from_utf8(out).unwrap();
        let header = text.lines().next().unwrap();
        assert!(
            header.contains(" comm=x\\x0a2026\\x20tls\\x20pid=1\\x20a\\x20b "),
            "{header}"
        );
    }
}
