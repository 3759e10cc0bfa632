//! gzip bodies (RFC 1952) from one reused deflate state: no allocation per
//! body once the output buffer has grown to size.
//!
//! The member is built here: header, raw deflate, then the trailer with a
//! CRC-32 computed in one pass over the input by `crc32fast` (about 5 % of
//! the cost of deflating it at level 1; zlib-rs's own CRC, which flate2's
//! `Crc` and `Compress::new_gzip` use, runs at half its speed here:
//! `gzip_backends/crc32*` in `benches/benches/forward.rs`).

use flate2::{Compress, Compression, FlushCompress, Status};

/// A reusable gzip encoder.
#[derive(Debug)]
pub struct GzipEncoder {
    deflate: Compress,
}

impl Default for GzipEncoder {
    fn default() -> Self {
        Self::new()
    }
}

/// gzip member header: magic, CM=deflate, no flags, mtime 0, XFL 0, OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// The trailer: CRC-32 and size of the input.
const TRAILER: usize = 8;

impl GzipEncoder {
    /// The compression level: the fastest (1; zlib-rs runs its "quick"
    /// strategy). The forwarder runs on the capture host, whose CPU it
    /// shares with the traffic it captures: it favours CPU over ratio.
    pub const LEVEL: u32 = 1;

    /// An encoder at [`LEVEL`](Self::LEVEL), 32 KiB window.
    pub fn new() -> Self {
        Self {
            deflate: Compress::new(Compression::new(Self::LEVEL), false),
        }
    }

    /// The room [`compress`](Self::compress) reserves for an input of
    /// `len` bytes: the member's worst case (incompressible input costs up
    /// to 9 bits a byte at the fastest level, plus block headers), so `out`
    /// grows at most once.
    pub fn max_len(len: usize) -> usize {
        HEADER.len() + len + len.div_ceil(8) + 64 + TRAILER
    }

    /// Replaces `out` with the gzip member of `input`.
    pub fn compress(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), flate2::CompressError> {
        out.clear();
        out.reserve(Self::max_len(input.len()));
        out.extend_from_slice(&HEADER);
        let crc = crc32fast::hash(input);
        self.deflate.reset();
        let start_in = self.deflate.total_in();
        loop {
            let done = (self.deflate.total_in() - start_in) as usize;
            let status = self
                .deflate
                .compress_vec(&input[done..], out, FlushCompress::Finish)?;
            if status == Status::StreamEnd {
                break;
            }
            // Only if the bound was short (it is not).
            out.reserve(4096);
        }
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&(input.len() as u32).to_le_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    #[test]
    fn round_trips_and_reuses() {
        let mut g = GzipEncoder::new();
        let mut out = Vec::new();
        let mut noise = 12345u32;
        let mut next = || {
            noise = noise.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (noise >> 16) as u8
        };
        let big: Vec<u8> = (0..300_000)
            .map(|i| if i % 3 == 0 { next() } else { b'a' })
            .collect();
        let random: Vec<u8> = (0..100_000).map(|_| next()).collect();
        for input in [&b""[..], b"hello hello hello", &big, &random, &big] {
            g.compress(input, &mut out).unwrap();
            assert!(out.len() <= GzipEncoder::max_len(input.len()));
            assert_eq!(&out[..3], [0x1f, 0x8b, 8], "a gzip member");
            let mut d = GzDecoder::new(&out[..]);
            let mut back = Vec::new();
            d.read_to_end(&mut back).unwrap();
            assert_eq!(back, input);
            assert!(d.into_inner().is_empty(), "one member, nothing after it");
        }
    }
}
