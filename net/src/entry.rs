//! Borrowed decoding of an encoded event `LogEntry` body back into
//! [`EventFields`], without allocating: the forwarder's NDJSON and
//! http_proxy formats and the JSON event file start from the bytes the
//! workers encoded once.

use prost::encoding::WireType;
use rcapture_core::event::EventFields;

/// Why an entry body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("truncated protobuf at byte {0}")]
    Truncated(usize),
    #[error("field {field} has wire type {wire} where {expected} was expected")]
    WireType { field: u32, wire: u8, expected: u8 },
    #[error("field {0} is not UTF-8")]
    Utf8(u32),
    #[error("not an event entry (no event payload)")]
    NotEvent,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A varint read in place (prost's `decode_varint` through `Buf` cost
    /// a third of a rewrite of the `--ecaptureq` stream); the same
    /// values and errors.
    #[inline]
    fn varint(&mut self) -> Result<u64, EntryError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let mut v = 0u64;
        for (i, &b) in rest.iter().take(10).enumerate() {
            if i == 9 && b > 1 {
                break; // over 64 bits
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.pos += i + 1;
                return Ok(v);
            }
        }
        Err(EntryError::Truncated(self.pos))
    }

    fn bytes(&mut self) -> Result<&'a [u8], EntryError> {
        let n = self.varint()? as usize;
        let end = self
            .pos
            .checked_add(n)
            .ok_or(EntryError::Truncated(self.pos))?;
        let b = self
            .buf
            .get(self.pos..end)
            .ok_or(EntryError::Truncated(self.pos))?;
        self.pos = end;
        Ok(b)
    }

    fn skip(&mut self, wire: u8) -> Result<(), EntryError> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.advance(8),
            2 => self.bytes().map(|_| ()),
            5 => self.advance(4),
            w => Err(EntryError::WireType {
                field: 0,
                wire: w,
                expected: 0,
            }),
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), EntryError> {
        if self.pos + n > self.buf.len() {
            return Err(EntryError::Truncated(self.pos));
        }
        self.pos += n;
        Ok(())
    }

    fn key(&mut self) -> Result<(u32, u8), EntryError> {
        let k = self.varint()?;
        Ok(((k >> 3) as u32, (k & 7) as u8))
    }
}

fn want(field: u32, wire: u8, expected: WireType) -> Result<(), EntryError> {
    if wire != expected as u8 {
        return Err(EntryError::WireType {
            field,
            wire,
            expected: expected as u8,
        });
    }
    Ok(())
}

fn text(field: u32, b: &[u8]) -> Result<&str, EntryError> {
    std::str::from_utf8(b).map_err(|_| EntryError::Utf8(field))
}

/// Reads an event `LogEntry` (with or without `seq`) into borrowed fields.
pub fn event_fields_of(body: &[u8]) -> Result<EventFields<'_>, EntryError> {
    let mut r = Reader { buf: body, pos: 0 };
    let mut event: Option<&[u8]> = None;
    while r.pos < body.len() {
        let (field, wire) = r.key()?;
        if field == 2 {
            want(2, wire, WireType::LengthDelimited)?;
            event = Some(r.bytes()?);
        } else {
            r.skip(wire)?;
        }
    }
    let ev = event.ok_or(EntryError::NotEvent)?;
    let mut r = Reader { buf: ev, pos: 0 };
    let mut f = EventFields::default();
    while r.pos < ev.len() {
        let (field, wire) = r.key()?;
        match field {
            2 | 3 | 5 | 8 | 11 | 14 => {
                want(field, wire, WireType::LengthDelimited)?;
                let b = r.bytes()?;
                match field {
                    2 => f.uuid = text(field, b)?,
                    3 => f.src_ip = text(field, b)?,
                    5 => f.dst_ip = text(field, b)?,
                    8 => f.pname = text(field, b)?,
                    11 => f.payload = b,
                    _ => f.module = text(field, b)?,
                }
            }
            1 | 4 | 6 | 7 | 9 | 10 | 12 | 13 | 15 | 16 => {
                want(field, wire, WireType::Varint)?;
                let v = r.varint()?;
                match field {
                    1 => f.timestamp = v as i64,
                    4 => f.src_port = v as u32,
                    6 => f.dst_port = v as u32,
                    7 => f.pid = v as i64,
                    9 => f.r#type = v as u32,
                    10 => {} // length: derived from the payload
                    12 => f.tid = v as u32,
                    13 => f.uid = v as u32,
                    15 => f.fd = v as u32,
                    _ => f.truncated = v as u32,
                }
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcapture_core::encode;
    use rcapture_core::event::Detail;

    #[test]
    fn round_trip_and_errors() {
        let f = EventFields {
            timestamp: -5,
            uuid: "u",
            src_ip: "::1",
            src_port: 1,
            dst_ip: "1.2.3.4",
            dst_port: 443,
            pid: 42,
            pname: "curl",
            r#type: 1,
            payload: b"GET / HTTP/1.1\r\n\r\n",
            tid: 43,
            uid: 1000,
            module: "tls",
            fd: 5,
            truncated: 7,
            detail: Detail::None,
        };
        let mut b = Vec::new();
        encode::encode_seq_prefix(9, &mut b);
        encode::encode_event_entry(&f, &mut b);
        assert_eq!(event_fields_of(&b).unwrap(), f);
        for n in 0..b.len() {
            let _ = event_fields_of(&b[..n]); // never panics
        }
        assert_eq!(
            event_fields_of(&b[..b.len() - 1]).unwrap_err(),
            EntryError::Truncated(6)
        );
        // Varints against prost's decoder: every length, the 64-bit limit.
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut b = Vec::new();
            prost::encoding::encode_varint(v, &mut b);
            let mut r = Reader { buf: &b, pos: 0 };
            assert_eq!((r.varint(), r.pos), (Ok(v), b.len()));
            let mut r = Reader {
                buf: &b[..b.len() - 1],
                pos: 0,
            };
            assert_eq!(r.varint(), Err(EntryError::Truncated(0)));
        }
        let over = [0xff; 9]
            .iter()
            .chain(&[0x02])
            .copied()
            .collect::<Vec<u8>>();
        assert!(Reader { buf: &over, pos: 0 }.varint().is_err());
        let mut hb = Vec::new();
        encode::encode_heartbeat_entry(1, 0, "heartbeat:0", &mut hb);
        assert_eq!(event_fields_of(&hb).unwrap_err(), EntryError::NotEvent);
    }
}
