//! A fixed-capacity, stack-allocated UTF-8 buffer for `fmt::Write`.
//!
//! Used to format uuids, addresses and names on the hot path without a heap
//! allocation. Writing past the capacity fails with `fmt::Error` and keeps
//! what fit (always on a char boundary).

use std::fmt;

/// A string of at most `N` bytes, stored inline.
#[derive(Clone)]
pub struct TextBuf<const N: usize> {
    len: usize,
    bytes: [u8; N],
}

impl<const N: usize> TextBuf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self {
            len: 0,
            bytes: [0; N],
        }
    }

    /// Empties the buffer.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in (see `write_str`), so the
        // prefix is valid UTF-8; fall back to "" rather than panic.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }

    /// Appends `bytes` as text: valid UTF-8 as is, each invalid sequence as U+FFFD.
    pub fn push_lossy(&mut self, bytes: &[u8]) -> fmt::Result {
        use fmt::Write;
        for chunk in bytes.utf8_chunks() {
            self.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                self.write_char(char::REPLACEMENT_CHARACTER)?;
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
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = N - self.len;
        if s.len() <= room {
            self.bytes[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
            self.len += s.len();
            return Ok(());
        }
        let mut cut = room;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        self.bytes[self.len..self.len + cut].copy_from_slice(&s.as_bytes()[..cut]);
        self.len += cut;
        Err(fmt::Error)
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

    #[test]
    fn overflow_keeps_char_boundary() {
        let mut b = TextBuf::<5>::new();
        assert!(write!(b, "ab\u{e9}\u{e9}").is_err());
        assert_eq!(b.as_str(), "ab\u{e9}");
    }

    #[test]
    fn lossy_replaces_invalid() {
        let mut b = TextBuf::<32>::new();
        b.push_lossy(b"cu\xffrl").unwrap();
        assert_eq!(b.as_str(), "cu\u{fffd}rl");
    }
}
