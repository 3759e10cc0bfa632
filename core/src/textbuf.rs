//! A fixed-capacity, stack-allocated UTF-8 buffer.
//!
//! Used to format uuids, addresses and names on the hot path without a heap
//! allocation and (for integers and IPv4 addresses) without `core::fmt`.
//! Writing past the capacity fails and keeps what fit (always on a char
//! boundary).
//!
//! Invariant: `bytes[..len]` is always valid UTF-8, because the only thing
//! ever copied in is a char-boundary prefix of a `&str` (see [`TextBuf::push_str`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// A string of at most `N` bytes, stored inline.
#[derive(Clone)]
pub struct TextBuf<const N: usize> {
    len: usize,
    bytes: [u8; N],
}

/// `"00"`..`"FF"`: two upper-case hex digits per byte value.
const HEX_PAIRS: &str = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F\
202122232425262728292A2B2C2D2E2F303132333435363738393A3B3C3D3E3F\
404142434445464748494A4B4C4D4E4F505152535455565758595A5B5C5D5E5F\
606162636465666768696A6B6C6D6E6F707172737475767778797A7B7C7D7E7F\
808182838485868788898A8B8C8D8E8F909192939495969798999A9B9C9D9E9F\
A0A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7B8B9BABBBCBDBEBF\
C0C1C2C3C4C5C6C7C8C9CACBCCCDCECFD0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF\
E0E1E2E3E4E5E6E7E8E9EAEBECEDEEEFF0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFF";

impl<const N: usize> TextBuf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self {
            len: 0,
            bytes: [0; N],
        }
    }

    /// Empties the buffer.
    #[inline]
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Bytes written so far.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The text written so far.
    #[inline]
    pub fn as_str(&self) -> &str {
        let b = &self.bytes[..self.len];
        debug_assert!(std::str::from_utf8(b).is_ok());
        // SAFETY: `push_str` is the only writer of `bytes`/`len`, and it
        // copies a char-boundary prefix of a `&str` (valid UTF-8) right after
        // the current text, so `bytes[..len]` is a concatenation of valid
        // UTF-8 strings, which is valid UTF-8 (module invariant).
        unsafe { std::str::from_utf8_unchecked(b) }
    }

    /// Appends `s` without going through `fmt`. If it does not fit, keeps
    /// the longest prefix that fits on a char boundary and returns `false`.
    #[inline]
    pub fn push_str(&mut self, s: &str) -> bool {
        let room = N - self.len;
        if s.len() <= room {
            self.bytes[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
            self.len += s.len();
            return true;
        }
        let mut cut = room;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        self.bytes[self.len..self.len + cut].copy_from_slice(&s.as_bytes()[..cut]);
        self.len += cut;
        false
    }

    /// Appends the decimal form of an integer (itoa, no `fmt`).
    #[inline]
    pub fn push_int(&mut self, v: impl itoa::Integer) -> bool {
        let mut b = itoa::Buffer::new();
        self.push_str(b.format(v))
    }

    /// Appends a dotted-quad IPv4 address (as its `Display`, without `fmt`).
    pub fn push_ipv4(&mut self, ip: Ipv4Addr) -> bool {
        let [a, b, c, d] = ip.octets();
        self.push_int(a)
            && self.push_str(".")
            && self.push_int(b)
            && self.push_str(".")
            && self.push_int(c)
            && self.push_str(".")
            && self.push_int(d)
    }

    /// Appends an address as `IpAddr`'s `Display` does (IPv4 without `fmt`;
    /// IPv6, with its zero compression and embedded-IPv4 forms, through it).
    pub fn push_ip(&mut self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v) => self.push_ipv4(v),
            IpAddr::V6(v) => fmt::Write::write_fmt(self, format_args!("{v}")).is_ok(),
        }
    }

    /// Appends each byte as two upper-case hex digits.
    pub fn push_upper_hex(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            let i = 2 * usize::from(b);
            if !self.push_str(&HEX_PAIRS[i..i + 2]) {
                return false;
            }
        }
        true
    }

    /// Appends `bytes` as text: valid UTF-8 as is, each invalid sequence as
    /// U+FFFD. Errors (keeping a prefix) if it does not fit.
    pub fn push_lossy(&mut self, bytes: &[u8]) -> fmt::Result {
        if let Ok(s) = std::str::from_utf8(bytes) {
            return if self.push_str(s) {
                Ok(())
            } else {
                Err(fmt::Error)
            };
        }
        for chunk in bytes.utf8_chunks() {
            if !self.push_str(chunk.valid()) {
                return Err(fmt::Error);
            }
            if !chunk.invalid().is_empty() && !self.push_str("\u{fffd}") {
                return Err(fmt::Error);
            }
        }
        Ok(())
    }
}

impl<const N: usize> Default for TextBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for TextBuf<N> {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.push_str(s) {
            Ok(())
        } else {
            Err(fmt::Error)
        }
    }
}

impl<const N: usize> fmt::Debug for TextBuf<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for TextBuf<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write;
    use std::net::Ipv6Addr;

    #[test]
    fn overflow_keeps_char_boundary() {
        let mut b = TextBuf::<5>::new();
        assert!(write!(b, "ab\u{e9}\u{e9}").is_err());
        assert_eq!(b.as_str(), "ab\u{e9}");
        let mut b = TextBuf::<5>::new();
        assert!(!b.push_str("ab\u{e9}\u{e9}"));
        assert_eq!(b.as_str(), "ab\u{e9}");
    }

    #[test]
    fn lossy_replaces_invalid() {
        let mut b = TextBuf::<32>::new();
        b.push_lossy(b"cu\xffrl").unwrap();
        assert_eq!(b.as_str(), "cu\u{fffd}rl");
        let mut b = TextBuf::<4>::new();
        assert!(b.push_lossy(b"a\xffbc").is_err());
        assert_eq!(b.as_str(), "a\u{fffd}");
    }

    #[test]
    fn integers_match_display() {
        let mut b = TextBuf::<64>::new();
        for v in [0i64, 7, -1, 10, 99, 100, i64::MIN, i64::MAX] {
            b.clear();
            assert!(b.push_int(v));
            assert_eq!(b.as_str(), v.to_string());
        }
        b.clear();
        assert!(b.push_int(u64::MAX));
        assert_eq!(b.as_str(), u64::MAX.to_string());
    }

    #[test]
    fn addresses_match_display() {
        let mut b = TextBuf::<48>::new();
        let v4 = [
            Ipv4Addr::new(0, 0, 0, 0),
            Ipv4Addr::new(127, 0, 0, 1),
            Ipv4Addr::new(255, 255, 255, 255),
            Ipv4Addr::new(93, 184, 216, 34),
            Ipv4Addr::new(10, 100, 9, 200),
        ];
        for ip in v4 {
            b.clear();
            assert!(b.push_ip(IpAddr::V4(ip)));
            assert_eq!(b.as_str(), ip.to_string());
        }
        let v6: [Ipv6Addr; 4] = [
            "::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            "::ffff:10.0.0.1".parse().unwrap(),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
        ];
        for ip in v6 {
            b.clear();
            assert!(b.push_ip(IpAddr::V6(ip)));
            assert_eq!(b.as_str(), ip.to_string());
        }
    }

    #[test]
    fn upper_hex() {
        let mut b = TextBuf::<8>::new();
        assert!(b.push_upper_hex(&[0x00, 0xab, 0x7f, 0xff]));
        assert_eq!(b.as_str(), "00AB7FFF");
        assert!(!b.push_upper_hex(&[1]));
        assert_eq!(b.as_str(), "00AB7FFF");
    }
}
