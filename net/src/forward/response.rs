//! HTTP/1.1 message framing without I/O: a collector's (or proxy's)
//! response head, and the body that follows it — skipped by
//! Content-Length, chunked coding, or to the end of the connection.

use super::retry::parse_retry_after;
use std::time::Duration;

/// Why a response or chunked body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("malformed response head: {0}")]
    Head(httparse::Error),
    #[error("response head larger than {0} bytes")]
    HeadTooLarge(usize),
    #[error("Content-Length {0:?} is not a number")]
    ContentLength(String),
    #[error("bad chunked coding at body byte {0}")]
    Chunked(u64),
}

/// How the body after a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

/// What the client needs of a response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// Bytes of the head (status line through the empty line).
    pub head_len: usize,
    pub body: BodyKind,
    /// The connection can carry another request after this body.
    pub keep_alive: bool,
    pub retry_after: Option<Duration>,
}

/// Heads larger than this are refused.
pub const MAX_HEAD: usize = 64 * 1024;

/// Parses a response head from the start of `buf`: `Ok(None)` until it is complete.
pub fn parse_head(buf: &[u8]) -> Result<Option<ResponseHead>, FramingError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    let head_len = match r.parse(buf).map_err(FramingError::Head)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial if buf.len() > MAX_HEAD => {
            return Err(FramingError::HeadTooLarge(MAX_HEAD));
        }
        httparse::Status::Partial => return Ok(None),
    };
    let status = r.code.unwrap_or(0);
    let mut keep_alive = r.version == Some(1);
    let mut length = None;
    let mut chunked = false;
    let mut retry_after = None;
    for h in r.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(parse_length(h.value).ok_or_else(|| {
                FramingError::ContentLength(String::from_utf8_lossy(h.value).into_owned())
            })?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = has_token(h.value, "chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            if has_token(h.value, "close") {
                keep_alive = false;
            } else if has_token(h.value, "keep-alive") {
                keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("retry-after") {
            retry_after = parse_retry_after(h.value);
        }
    }
    let body = if (100..200).contains(&status) || status == 204 || status == 304 {
        BodyKind::Empty
    } else if chunked {
        BodyKind::Chunked
    } else if let Some(n) = length {
        BodyKind::Length(n)
    } else {
        keep_alive = false;
        BodyKind::UntilClose
    };
    Ok(Some(ResponseHead {
        status,
        head_len,
        body,
        keep_alive,
        retry_after,
    }))
}

/// A Content-Length value (no allocation).
pub fn parse_length(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// Whether a comma-separated header value holds `token` (case-insensitive).
pub fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size { n: u64, digits: u8, ext: bool },
    SizeLf { n: u64 },
    Data(u64),
    DataCr,
    DataLf,
    Trailer { len: usize },
    TrailerLf { len: usize },
    Done,
}

/// Streams over a body, telling where it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodySkip {
    kind: BodyKind,
    remaining: u64,
    chunk: Chunk,
    /// Body bytes seen (for error positions).
    seen: u64,
}

impl BodySkip {
    pub fn new(kind: BodyKind) -> Self {
        Self {
            kind,
            remaining: match kind {
                BodyKind::Length(n) => n,
                _ => 0,
            },
            chunk: Chunk::Size {
                n: 0,
                digits: 0,
                ext: false,
            },
            seen: 0,
        }
    }

    /// The body ends when the connection does.
    pub fn until_close(&self) -> bool {
        self.kind == BodyKind::UntilClose
    }

    /// Consumes body bytes from `buf`: `(bytes that belong to the body,
    /// whether the body is complete)`. `UntilClose` never completes here.
    pub fn feed(&mut self, buf: &[u8]) -> Result<(usize, bool), FramingError> {
        match self.kind {
            BodyKind::Empty => Ok((0, true)),
            BodyKind::UntilClose => Ok((buf.len(), false)),
            BodyKind::Length(_) => {
                let n = (buf.len() as u64).min(self.remaining);
                self.remaining -= n;
                self.seen += n;
                Ok((n as usize, self.remaining == 0))
            }
            BodyKind::Chunked => self.feed_chunked(buf),
        }
    }

    fn feed_chunked(&mut self, buf: &[u8]) -> Result<(usize, bool), FramingError> {
        let mut i = 0;
        while i < buf.len() && self.chunk != Chunk::Done {
            let b = buf[i];
            let bad = Err(FramingError::Chunked(self.seen));
            self.chunk = match self.chunk {
                Chunk::Size { n, digits, ext } => match b {
                    b'\r' | b'\n' if digits == 0 => return bad,
                    b'\r' => Chunk::SizeLf { n },
                    b'\n' => after_size(n),
                    b';' | b' ' | b'\t' => Chunk::Size {
                        n,
                        digits,
                        ext: true,
                    },
                    _ if ext => Chunk::Size { n, digits, ext },
                    _ => match (b as char).to_digit(16) {
                        Some(d) if digits < 15 => Chunk::Size {
                            n: n << 4 | u64::from(d),
                            digits: digits + 1,
                            ext,
                        },
                        _ => return bad,
                    },
                },
                Chunk::SizeLf { n } if b == b'\n' => after_size(n),
                Chunk::Data(rem) => {
                    let take = ((buf.len() - i) as u64).min(rem);
                    i += take as usize;
                    self.seen += take;
                    self.chunk = if rem == take {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(rem - take)
                    };
                    continue;
                }
                Chunk::DataCr if b == b'\r' => Chunk::DataLf,
                Chunk::DataCr | Chunk::DataLf if b == b'\n' => Chunk::Size {
                    n: 0,
                    digits: 0,
                    ext: false,
                },
                Chunk::Trailer { len } => match b {
                    b'\r' => Chunk::TrailerLf { len },
                    b'\n' if len == 0 => Chunk::Done,
                    b'\n' => Chunk::Trailer { len: 0 },
                    _ => Chunk::Trailer { len: len + 1 },
                },
                Chunk::TrailerLf { len } if b == b'\n' => {
                    if len == 0 {
                        Chunk::Done
                    } else {
                        Chunk::Trailer { len: 0 }
                    }
                }
                _ => return bad,
            };
            i += 1;
            self.seen += 1;
        }
        Ok((i, self.chunk == Chunk::Done))
    }
}

fn after_size(n: u64) -> Chunk {
    if n == 0 {
        Chunk::Trailer { len: 0 }
    } else {
        Chunk::Data(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let h = parse_head(b"HTTP/1.1 503 Busy\r\nRetry-After: 2\r\nContent-Length: 4\r\n\r\nbusy")
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.status, h.head_len, h.body, h.keep_alive, h.retry_after),
            (
                503,
                56,
                BodyKind::Length(4),
                true,
                Some(Duration::from_secs(2))
            )
        );
        let h = parse_head(b"HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.body, h.keep_alive), (BodyKind::UntilClose, false));
        let h = parse_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!((h.body, h.keep_alive), (BodyKind::Chunked, false));
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nX: y").unwrap(), None);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(parse_head(b"HTTX 200\r\n\r\n").is_err());
    }

    #[test]
    fn chunked_any_split() {
        let body =
            b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let end = body.len() - 4;
        for split in 0..body.len() {
            let mut s = BodySkip::new(BodyKind::Chunked);
            let (a, done) = s.feed(&body[..split]).unwrap();
            assert_eq!(a, split.min(end));
            if done {
                assert_eq!(a, end);
                continue;
            }
            let (b, done) = s.feed(&body[split..]).unwrap();
            assert!(done);
            assert_eq!(a + b, end, "split {split}");
        }
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"4\r\nWikiXX",
            b"11111111111111111\r\n",
        ] {
            assert!(
                BodySkip::new(BodyKind::Chunked).feed(bad).is_err(),
                "{bad:?}"
            );
        }
        let mut s = BodySkip::new(BodyKind::Length(3));
        assert_eq!(s.feed(b"ab").unwrap(), (2, false));
        assert_eq!(s.feed(b"cd").unwrap(), (1, true));
    }
}
