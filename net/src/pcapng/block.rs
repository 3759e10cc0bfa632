//! pcapng blocks (draft-ietf-opsawg-pcapng), little-endian: each block is
//! `type u32, total_len u32, body (padded to 4), total_len u32`.
//!
//! Written: a Section Header Block, one Interface Description Block per
//! interface (link type Ethernet, `if_name`, `if_tsresol` = nanoseconds),
//! Decryption Secrets Blocks (TLS key log) and Enhanced Packet Blocks with
//! `epb_flags` (direction) and a comment naming the process.

/// Section Header Block.
pub const SHB: u32 = 0x0A0D_0D0A;
/// Interface Description Block.
pub const IDB: u32 = 0x0000_0001;
/// Enhanced Packet Block.
pub const EPB: u32 = 0x0000_0006;
/// Decryption Secrets Block.
pub const DSB: u32 = 0x0000_000A;
/// `secrets_type` of a TLS key log ("TLSK").
pub const SECRETS_TLS_KEYLOG: u32 = 0x544c_534b;
/// LINKTYPE_ETHERNET (also what Linux's loopback device carries at tc).
pub const LINKTYPE_ETHERNET: u16 = 1;

const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const OPT_ENDOFOPT: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_TSRESOL: u16 = 9;
const EPB_FLAGS: u16 = 2;

/// `epb_flags` direction bits: inbound.
pub const FLAG_INBOUND: u32 = 1;
/// `epb_flags` direction bits: outbound.
pub const FLAG_OUTBOUND: u32 = 2;

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

fn option_len(value_len: usize) -> usize {
    4 + value_len + pad4(value_len)
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_padded(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes);
    out.extend_from_slice(&[0; 3][..pad4(bytes.len())]);
}

fn put_option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    put_u16(out, code);
    put_u16(out, value.len() as u16);
    put_padded(out, value);
}

/// Starts a block of `total` bytes; the caller writes the body and then
/// [`end`].
fn begin(out: &mut Vec<u8>, kind: u32, total: usize) {
    put_u32(out, kind);
    put_u32(out, total as u32);
}

fn end(out: &mut Vec<u8>, total: usize) {
    put_u32(out, total as u32);
}

/// A Section Header Block: version 1.0, section length unknown, and the
/// writing application.
pub fn shb(out: &mut Vec<u8>, application: &str) {
    let app = application.as_bytes();
    let total = 12 + 16 + option_len(app.len()) + 4;
    begin(out, SHB, total);
    put_u32(out, BYTE_ORDER_MAGIC);
    put_u16(out, 1);
    put_u16(out, 0);
    out.extend_from_slice(&(-1i64).to_le_bytes());
    put_option(out, SHB_USERAPPL, app);
    put_option(out, OPT_ENDOFOPT, &[]);
    end(out, total);
}

/// An Interface Description Block: Ethernet, `snaplen`, the interface's
/// name and nanosecond timestamps.
pub fn idb(out: &mut Vec<u8>, name: &str, snaplen: u32) {
    let name = name.as_bytes();
    let total = 12 + 8 + option_len(name.len()) + option_len(1) + 4;
    begin(out, IDB, total);
    put_u16(out, LINKTYPE_ETHERNET);
    put_u16(out, 0);
    put_u32(out, snaplen);
    put_option(out, IF_NAME, name);
    put_option(out, IF_TSRESOL, &[9]);
    put_option(out, OPT_ENDOFOPT, &[]);
    end(out, total);
}

/// Bytes of a Decryption Secrets Block holding `keylog_len` bytes.
pub fn dsb_len(keylog_len: usize) -> usize {
    12 + 8 + keylog_len + pad4(keylog_len)
}

/// A Decryption Secrets Block of NSS key log lines.
pub fn dsb(out: &mut Vec<u8>, keylog: &[u8]) {
    let total = dsb_len(keylog.len());
    begin(out, DSB, total);
    put_u32(out, SECRETS_TLS_KEYLOG);
    put_u32(out, keylog.len() as u32);
    put_padded(out, keylog);
    end(out, total);
}

/// Bytes of an Enhanced Packet Block of `data_len` bytes, with flags and a
/// comment of `comment_len` bytes (none if 0).
pub fn epb_len(data_len: usize, comment_len: usize) -> usize {
    let comment = if comment_len > 0 {
        option_len(comment_len)
    } else {
        0
    };
    12 + 20 + data_len + pad4(data_len) + option_len(4) + comment + 4
}

/// The packet as an Enhanced Packet Block.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Index of its interface's IDB.
    pub interface: u32,
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The bytes captured.
    pub data: &'a [u8],
    /// The packet's length on the wire (≥ `data.len()`).
    pub orig_len: u32,
    /// [`FLAG_INBOUND`] or [`FLAG_OUTBOUND`].
    pub flags: u32,
    /// A comment (e.g. the process), or empty.
    pub comment: &'a [u8],
}

/// Appends `p` as an Enhanced Packet Block.
pub fn epb(out: &mut Vec<u8>, p: &Packet<'_>) {
    let total = epb_len(p.data.len(), p.comment.len());
    begin(out, EPB, total);
    put_u32(out, p.interface);
    put_u32(out, (p.ts_ns >> 32) as u32);
    put_u32(out, p.ts_ns as u32);
    put_u32(out, p.data.len() as u32);
    put_u32(out, p.orig_len.max(p.data.len() as u32));
    put_padded(out, p.data);
    put_option(out, EPB_FLAGS, &p.flags.to_le_bytes());
    if !p.comment.is_empty() {
        put_option(out, OPT_COMMENT, p.comment);
    }
    put_option(out, OPT_ENDOFOPT, &[]);
    end(out, total);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every block is `type, len, …, len` with both lengths equal to its size.
    fn check_framing(b: &[u8]) -> Vec<u32> {
        let mut kinds = Vec::new();
        let mut at = 0;
        while at < b.len() {
            let kind = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
            let len = u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap()) as usize;
            assert!(len.is_multiple_of(4));
            let tail = u32::from_le_bytes(b[at + len - 4..at + len].try_into().unwrap());
            assert_eq!(tail as usize, len);
            kinds.push(kind);
            at += len;
        }
        assert_eq!(at, b.len());
        kinds
    }

    /// The MODULES.md §7 DSB: a 938-byte key log gives a 960-byte block
    /// starting `0a000000 c0030000 4b534c54 aa030000`, as editcap writes it.
    #[test]
    fn dsb_matches_editcap() {
        let keys = vec![b'k'; 938];
        let mut out = Vec::new();
        dsb(&mut out, &keys);
        assert_eq!(out.len(), 960);
        assert_eq!(dsb_len(938), 960);
        assert_eq!(
            &out[..16],
            &[
                0x0a, 0, 0, 0, 0xc0, 3, 0, 0, 0x4b, 0x53, 0x4c, 0x54, 0xaa, 3, 0, 0
            ]
        );
        assert_eq!(&out[954..956], &[0, 0]);
    }

    #[test]
    fn blocks_are_framed_and_sized() {
        let mut out = Vec::new();
        shb(&mut out, "rcapture 0.1.0");
        idb(&mut out, "lo", 262144);
        let p = Packet {
            interface: 0,
            ts_ns: 0x0001_0002_0003_0004,
            data: &[1, 2, 3, 4, 5],
            orig_len: 60,
            flags: FLAG_OUTBOUND,
            comment: b"pid=42 comm=curl",
        };
        let before = out.len();
        epb(&mut out, &p);
        assert_eq!(out.len() - before, epb_len(5, 16));
        let e = &out[before..];
        assert_eq!(&e[8..12], &[0, 0, 0, 0]);
        assert_eq!(&e[12..20], &[2, 0, 1, 0, 4, 0, 3, 0]);
        assert_eq!(&e[20..28], &[5, 0, 0, 0, 60, 0, 0, 0]);
        let before = out.len();
        epb(
            &mut out,
            &Packet {
                comment: b"",
                flags: FLAG_INBOUND,
                ..p
            },
        );
        assert_eq!(out.len() - before, epb_len(5, 0));
        dsb(&mut out, b"CLIENT_RANDOM 00 11\n");
        assert_eq!(check_framing(&out), [SHB, IDB, EPB, EPB, DSB]);
        // The SHB's byte-order magic and version.
        assert_eq!(&out[8..14], &[0x4d, 0x3c, 0x2b, 0x1a, 1, 0]);
    }
}
