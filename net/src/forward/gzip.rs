//! gzip bodies (RFC 1952) from one reused deflate state: no allocation per
//! body once the output buffer has grown to size.

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

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

impl GzipEncoder {
    /// An encoder at flate2's fast level (forwarding favours CPU over ratio).
    pub fn new() -> Self {
        Self {
            deflate: Compress::new(Compression::fast(), false),
        }
    }

    /// Replaces `out` with the gzip member of `input`.
    pub fn compress(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), flate2::CompressError> {
        out.clear();
        out.extend_from_slice(&HEADER);
        self.deflate.reset();
        let mut crc = Crc::new();
        crc.update(input);
        let start_in = self.deflate.total_in();
        loop {
            // Room for the worst case of what is left (deflate's bound is
            // a few bytes per 16 KiB block over the input).
            let done = (self.deflate.total_in() - start_in) as usize;
            let rest = &input[done..];
            out.reserve(rest.len() + rest.len() / 1000 + 64);
            let status = self
                .deflate
                .compress_vec(rest, out, FlushCompress::Finish)?;
            if status == Status::StreamEnd {
                break;
            }
        }
        out.extend_from_slice(&crc.sum().to_le_bytes());
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
        let big: Vec<u8> = (0..300_000)
            .map(|i| {
                noise = noise.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if i % 3 == 0 {
                    (noise >> 16) as u8
                } else {
                    b'a'
                }
            })
            .collect();
        for input in [&b""[..], b"hello hello hello", &big] {
            g.compress(input, &mut out).unwrap();
            let mut back = Vec::new();
            GzDecoder::new(&out[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, input);
        }
    }
}
