//! Bounds-checked decoding of raw ring-buffer records into borrowed views.
//!
//! [`decode`] never panics and never reads out of bounds: a short, oversized
//! or inconsistent record is a [`DecodeError`] naming what was wrong.

use crate::records::{
    BASH_EXIT_EXEC, BashRecord, CHUNK_MAX, Chunk, ConnRecord, DataRecord, FAMILY_INET,
    FAMILY_INET6, FLAG_FIRST, GnutlsSecretRecord, GoTlsKeyRecord, MasterSecretRecord, PacketRecord,
    QueryRecord, RecordHeader, RecordKind, Tuple,
};
use bytemuck::{Pod, pod_read_unaligned};
use std::mem::size_of;

/// Why a record was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the common header.
    #[error("record of {len} bytes is shorter than the {need}-byte record header")]
    TooShort { len: usize, need: usize },
    /// `rc_hdr.kind` is not a known kind.
    #[error("unknown record kind {kind}")]
    UnknownKind { kind: u16 },
    /// Fewer bytes than the fixed part of its kind.
    #[error("{kind:?} record of {len} bytes is shorter than its {need}-byte fixed part")]
    ShortFixed {
        kind: RecordKind,
        len: usize,
        need: usize,
    },
    /// A fixed-size kind with bytes after its fixed part.
    #[error("{kind:?} record of {len} bytes is longer than its {need}-byte fixed size")]
    Oversized {
        kind: RecordKind,
        len: usize,
        need: usize,
    },
    /// The payload bytes present differ from `chunk.len`.
    #[error("{kind:?} record carries {actual} payload bytes but its chunk declares {declared}")]
    LengthMismatch {
        kind: RecordKind,
        actual: usize,
        declared: u32,
    },
    /// `chunk.len` above `RC_CHUNK_MAX`.
    #[error("{kind:?} chunk of {len} bytes exceeds the {max}-byte record limit")]
    ChunkTooLarge {
        kind: RecordKind,
        len: u32,
        max: usize,
    },
    /// `chunk.offset + chunk.len` beyond `chunk.total_len`.
    #[error(
        "{kind:?} chunk at offset {offset} with {len} bytes runs past the call's {total} bytes"
    )]
    ChunkOutOfRange {
        kind: RecordKind,
        offset: u32,
        len: u32,
        total: u32,
    },
    /// `RC_F_FIRST` set on a record that does not start at offset 0 (or vice versa).
    #[error("{kind:?} record flags {flags:#x} disagree with chunk offset {offset}")]
    BadFlags {
        kind: RecordKind,
        flags: u16,
        offset: u32,
    },
    /// A field with a value outside its domain.
    #[error("{kind:?} field {field} has invalid value {value}")]
    BadField {
        kind: RecordKind,
        field: &'static str,
        value: u64,
    },
}

/// A fixed part plus the payload bytes that follow it in the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WithPayload<'a, T> {
    /// The fixed part, copied out of the record.
    pub rec: T,
    /// This record's payload bytes (borrowed), or a whole joined call.
    pub payload: &'a [u8],
}

/// A decoded record: fixed parts by value, payloads borrowed.
///
/// The secret variants are large (456 and 512 bytes); they are still kept inline:
/// boxing would allocate per record, and the copy is one memcpy.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// TLS plaintext (OpenSSL, GnuTLS, NSS, Go); the module is `rec.hdr.kind`.
    Data(WithPayload<'a, DataRecord>),
    /// OpenSSL 3.0 secrets.
    MasterSecret(MasterSecretRecord),
    /// Go key log arguments.
    GoTlsKey(GoTlsKeyRecord),
    /// GnuTLS session secrets.
    GnutlsSecret(GnutlsSecretRecord),
    /// bash.
    Bash(WithPayload<'a, BashRecord>),
    /// MySQL or PostgreSQL query; the module is `rec.hdr.kind`.
    Query(WithPayload<'a, QueryRecord>),
    /// Connection event.
    Conn(ConnRecord),
    /// tc packet.
    Packet(WithPayload<'a, PacketRecord>),
}

impl<'a> Record<'a> {
    /// The common header.
    pub fn header(&self) -> &RecordHeader {
        match self {
            Record::Data(v) => &v.rec.hdr,
            Record::MasterSecret(r) => &r.hdr,
            Record::GoTlsKey(r) => &r.hdr,
            Record::GnutlsSecret(r) => &r.hdr,
            Record::Bash(v) => &v.rec.hdr,
            Record::Query(v) => &v.rec.hdr,
            Record::Conn(r) => &r.hdr,
            Record::Packet(v) => &v.rec.hdr,
        }
    }

    /// The record kind (validated by [`decode`]).
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::MasterSecret(_) => RecordKind::MasterSecret,
            Record::GoTlsKey(_) => RecordKind::GotlsKey,
            Record::GnutlsSecret(_) => RecordKind::GnutlsSecret,
            Record::Conn(_) => RecordKind::Conn,
            Record::Bash(_) => RecordKind::Bash,
            Record::Packet(_) => RecordKind::Packet,
            Record::Data(v) => RecordKind::from_u16(v.rec.hdr.kind).unwrap_or(RecordKind::TlsData),
            Record::Query(v) => {
                RecordKind::from_u16(v.rec.hdr.kind).unwrap_or(RecordKind::MysqlQuery)
            }
        }
    }

    /// The chunk of payload-carrying kinds.
    pub fn chunk(&self) -> Option<&Chunk> {
        match self {
            Record::Data(v) => Some(&v.rec.chunk),
            Record::Bash(v) => Some(&v.rec.chunk),
            Record::Query(v) => Some(&v.rec.chunk),
            Record::Packet(v) => Some(&v.rec.chunk),
            Record::MasterSecret(_)
            | Record::GoTlsKey(_)
            | Record::GnutlsSecret(_)
            | Record::Conn(_) => None,
        }
    }

    /// The payload bytes (empty for kinds without one).
    pub fn payload(&self) -> &'a [u8] {
        match self {
            Record::Data(v) => v.payload,
            Record::Bash(v) => v.payload,
            Record::Query(v) => v.payload,
            Record::Packet(v) => v.payload,
            Record::MasterSecret(_)
            | Record::GoTlsKey(_)
            | Record::GnutlsSecret(_)
            | Record::Conn(_) => &[],
        }
    }

    /// The same record with another payload (a joined call's bytes).
    pub fn with_payload<'b>(&self, payload: &'b [u8]) -> Record<'b> {
        match *self {
            Record::Data(v) => Record::Data(WithPayload {
                rec: v.rec,
                payload,
            }),
            Record::Bash(v) => Record::Bash(WithPayload {
                rec: v.rec,
                payload,
            }),
            Record::Query(v) => Record::Query(WithPayload {
                rec: v.rec,
                payload,
            }),
            Record::Packet(v) => Record::Packet(WithPayload {
                rec: v.rec,
                payload,
            }),
            Record::MasterSecret(r) => Record::MasterSecret(r),
            Record::GoTlsKey(r) => Record::GoTlsKey(r),
            Record::GnutlsSecret(r) => Record::GnutlsSecret(r),
            Record::Conn(r) => Record::Conn(r),
        }
    }

    /// Bytes of the original call that this record (or joined call) lacks.
    pub fn missing_bytes(&self) -> u32 {
        match self.chunk() {
            Some(c) => c.total_len.saturating_sub(self.payload().len() as u32),
            None => 0,
        }
    }
}

/// Decodes one raw record.
pub fn decode(bytes: &[u8]) -> Result<Record<'_>, DecodeError> {
    let need = size_of::<RecordHeader>();
    if bytes.len() < need {
        return Err(DecodeError::TooShort {
            len: bytes.len(),
            need,
        });
    }
    let hdr: RecordHeader = pod_read_unaligned(&bytes[..need]);
    let kind = RecordKind::from_u16(hdr.kind).ok_or(DecodeError::UnknownKind { kind: hdr.kind })?;
    let fixed = kind.fixed_size();
    if bytes.len() < fixed {
        return Err(DecodeError::ShortFixed {
            kind,
            len: bytes.len(),
            need: fixed,
        });
    }
    if !kind.has_payload() && bytes.len() != fixed {
        return Err(DecodeError::Oversized {
            kind,
            len: bytes.len(),
            need: fixed,
        });
    }
    match kind {
        RecordKind::TlsData
        | RecordKind::GnutlsData
        | RecordKind::NssData
        | RecordKind::GotlsData => {
            let v = with_payload::<DataRecord>(kind, bytes, |r| r.chunk)?;
            check_dir(kind, v.rec.direction)?;
            check_tuple(kind, &v.rec.tuple)?;
            Ok(Record::Data(v))
        }
        RecordKind::Bash => {
            let v = with_payload::<BashRecord>(kind, bytes, |r| r.chunk)?;
            if v.rec.bash_type > BASH_EXIT_EXEC {
                return Err(bad(kind, "bash_type", u64::from(v.rec.bash_type)));
            }
            Ok(Record::Bash(v))
        }
        RecordKind::MysqlQuery | RecordKind::PgQuery => {
            Ok(Record::Query(with_payload::<QueryRecord>(
                kind,
                bytes,
                |r| r.chunk,
            )?))
        }
        RecordKind::Packet => {
            let v = with_payload::<PacketRecord>(kind, bytes, |r| r.chunk)?;
            check_dir(kind, v.rec.direction)?;
            Ok(Record::Packet(v))
        }
        RecordKind::MasterSecret => {
            let r: MasterSecretRecord = pod_read_unaligned(bytes);
            if r.master_key_len as usize > r.master_key.len() {
                return Err(bad(kind, "master_key_len", u64::from(r.master_key_len)));
            }
            Ok(Record::MasterSecret(r))
        }
        RecordKind::GotlsKey => {
            let r: GoTlsKeyRecord = pod_read_unaligned(bytes);
            if r.label_len as usize > r.label.len() {
                return Err(bad(kind, "label_len", u64::from(r.label_len)));
            }
            if r.secret_len as usize > r.secret.len() {
                return Err(bad(kind, "secret_len", u64::from(r.secret_len)));
            }
            Ok(Record::GoTlsKey(r))
        }
        RecordKind::GnutlsSecret => {
            let r: GnutlsSecretRecord = pod_read_unaligned(bytes);
            if !matches!(r.hash_len, 0 | 32 | 48) {
                return Err(bad(kind, "hash_len", u64::from(r.hash_len)));
            }
            Ok(Record::GnutlsSecret(r))
        }
        RecordKind::Conn => {
            let r: ConnRecord = pod_read_unaligned(bytes);
            if r.event > 2 {
                return Err(bad(kind, "event", u64::from(r.event)));
            }
            check_tuple(kind, &r.tuple)?;
            Ok(Record::Conn(r))
        }
    }
}

fn bad(kind: RecordKind, field: &'static str, value: u64) -> DecodeError {
    DecodeError::BadField { kind, field, value }
}

fn check_dir(kind: RecordKind, dir: u8) -> Result<(), DecodeError> {
    if dir > 1 {
        return Err(bad(kind, "direction", u64::from(dir)));
    }
    Ok(())
}

fn check_tuple(kind: RecordKind, t: &Tuple) -> Result<(), DecodeError> {
    match t.family {
        0 | FAMILY_INET | FAMILY_INET6 => Ok(()),
        f => Err(bad(kind, "tuple.family", u64::from(f))),
    }
}

fn with_payload<T: Pod>(
    kind: RecordKind,
    bytes: &[u8],
    chunk_of: impl Fn(&T) -> Chunk,
) -> Result<WithPayload<'_, T>, DecodeError> {
    let fixed = size_of::<T>();
    let rec: T = pod_read_unaligned(&bytes[..fixed]);
    let payload = &bytes[fixed..];
    let c = chunk_of(&rec);
    if c.len as usize > CHUNK_MAX {
        return Err(DecodeError::ChunkTooLarge {
            kind,
            len: c.len,
            max: CHUNK_MAX,
        });
    }
    if payload.len() != c.len as usize {
        return Err(DecodeError::LengthMismatch {
            kind,
            actual: payload.len(),
            declared: c.len,
        });
    }
    if u64::from(c.offset) + u64::from(c.len) > u64::from(c.total_len) {
        return Err(DecodeError::ChunkOutOfRange {
            kind,
            offset: c.offset,
            len: c.len,
            total: c.total_len,
        });
    }
    let flags: u16 = pod_read_unaligned(&bytes[2..4]);
    if (flags & FLAG_FIRST != 0) != (c.offset == 0) {
        return Err(DecodeError::BadFlags {
            kind,
            flags,
            offset: c.offset,
        });
    }
    Ok(WithPayload { rec, payload })
}
