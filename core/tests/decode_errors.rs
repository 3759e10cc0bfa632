//! Every decoder error path: short, unknown, oversized, inconsistent records
//! give a typed error (never a panic, never an out-of-bounds read).

use rcapture_core::decode::{DecodeError, decode};
use rcapture_core::records::{CHUNK_MAX, FLAG_FIRST, FLAG_LAST, RecordKind, Tuple};
use rcapture_core::synth;

fn data_raw(payload: &[u8]) -> Vec<u8> {
    let h = synth::header(RecordKind::TlsData, 1, 1, 0, "t", 1);
    synth::single(synth::data(h, 3, 1, 0, Tuple::default()), payload)
}

fn set_u32(raw: &mut [u8], off: usize, v: u32) {
    raw[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

#[test]
fn too_short_for_header() {
    for n in [0, 1, 39] {
        assert_eq!(
            decode(&vec![0; n]),
            Err(DecodeError::TooShort { len: n, need: 40 })
        );
    }
}

#[test]
fn unknown_kind() {
    let mut raw = data_raw(b"x");
    for k in [0u16, 13, 0xffff] {
        raw[..2].copy_from_slice(&k.to_ne_bytes());
        assert_eq!(decode(&raw), Err(DecodeError::UnknownKind { kind: k }));
    }
}

#[test]
fn short_fixed_part_for_every_kind() {
    for kind in RecordKind::ALL {
        let mut raw = vec![0u8; kind.fixed_size() - 1];
        raw[..2].copy_from_slice(&(kind as u16).to_ne_bytes());
        assert_eq!(
            decode(&raw),
            Err(DecodeError::ShortFixed {
                kind,
                len: kind.fixed_size() - 1,
                need: kind.fixed_size()
            }),
            "{kind:?}"
        );
    }
}

#[test]
fn fixed_size_kinds_reject_trailing_bytes() {
    let h = synth::header(RecordKind::Conn, 1, 1, 0, "t", 1);
    let mut raw = synth::conn(h, 1, 0, 0, Tuple::default());
    raw.push(0);
    assert_eq!(
        decode(&raw),
        Err(DecodeError::Oversized {
            kind: RecordKind::Conn,
            len: 97,
            need: 96
        })
    );
    let h = synth::header(RecordKind::MasterSecret, 1, 1, 0, "t", 1);
    let mut raw = synth::master_secret(h, 0x303, 0, [1; 32], 1);
    raw.extend_from_slice(&[0; 8]);
    assert!(matches!(
        decode(&raw),
        Err(DecodeError::Oversized {
            kind: RecordKind::MasterSecret,
            ..
        })
    ));
    let h = synth::header(RecordKind::GnutlsSecret, 1, 1, 0, "t", 1);
    let mut raw = synth::gnutls_secret(h, 0x304, 32, [1; 32], 1, false);
    raw.push(1);
    assert!(matches!(
        decode(&raw),
        Err(DecodeError::Oversized {
            kind: RecordKind::GnutlsSecret,
            len: 513,
            need: 512
        })
    ));
    let h = synth::header(RecordKind::GotlsKey, 1, 1, 0, "t", 1);
    let mut raw = synth::gotls_key(h, "X", [1; 32], &[1]);
    raw.push(1);
    assert!(matches!(
        decode(&raw),
        Err(DecodeError::Oversized {
            kind: RecordKind::GotlsKey,
            ..
        })
    ));
}

#[test]
fn payload_length_must_match_chunk() {
    let mut raw = data_raw(b"hello");
    raw.push(b'!');
    assert_eq!(
        decode(&raw),
        Err(DecodeError::LengthMismatch {
            kind: RecordKind::TlsData,
            actual: 6,
            declared: 5
        })
    );
    raw.truncate(raw.len() - 2);
    assert_eq!(
        decode(&raw),
        Err(DecodeError::LengthMismatch {
            kind: RecordKind::TlsData,
            actual: 4,
            declared: 5
        })
    );
}

#[test]
fn chunk_larger_than_record_limit() {
    let mut raw = data_raw(b"");
    set_u32(&mut raw, 40, u32::MAX); // total_len
    set_u32(&mut raw, 48, CHUNK_MAX as u32 + 1); // len
    assert_eq!(
        decode(&raw),
        Err(DecodeError::ChunkTooLarge {
            kind: RecordKind::TlsData,
            len: CHUNK_MAX as u32 + 1,
            max: CHUNK_MAX
        })
    );
}

#[test]
fn chunk_out_of_range_including_overflow() {
    let mut raw = data_raw(b"abcd");
    set_u32(&mut raw, 40, 3); // total_len < len
    assert_eq!(
        decode(&raw),
        Err(DecodeError::ChunkOutOfRange {
            kind: RecordKind::TlsData,
            offset: 0,
            len: 4,
            total: 3
        })
    );
    raw[2..4].copy_from_slice(&0u16.to_ne_bytes());
    set_u32(&mut raw, 40, u32::MAX);
    set_u32(&mut raw, 44, u32::MAX - 1); // offset + len overflows u32
    assert!(matches!(
        decode(&raw),
        Err(DecodeError::ChunkOutOfRange { .. })
    ));
}

#[test]
fn first_flag_must_match_offset() {
    let mut raw = data_raw(b"ab");
    set_u32(&mut raw, 40, 10);
    set_u32(&mut raw, 44, 4); // offset 4 with FIRST set
    assert_eq!(
        decode(&raw),
        Err(DecodeError::BadFlags {
            kind: RecordKind::TlsData,
            flags: FLAG_FIRST | FLAG_LAST,
            offset: 4
        })
    );
    let mut raw = data_raw(b"ab");
    raw[2..4].copy_from_slice(&FLAG_LAST.to_ne_bytes()); // offset 0 without FIRST
    assert!(matches!(
        decode(&raw),
        Err(DecodeError::BadFlags { offset: 0, .. })
    ));
}

#[test]
fn bad_field_values() {
    let mut raw = data_raw(b"x");
    raw[68] = 2; // direction
    assert_eq!(
        decode(&raw),
        Err(DecodeError::BadField {
            kind: RecordKind::TlsData,
            field: "direction",
            value: 2
        })
    );
    let mut raw = data_raw(b"x");
    raw[72..74].copy_from_slice(&7u16.to_ne_bytes()); // tuple.family
    assert_eq!(
        decode(&raw),
        Err(DecodeError::BadField {
            kind: RecordKind::TlsData,
            field: "tuple.family",
            value: 7
        })
    );

    let h = synth::header(RecordKind::Bash, 1, 1, 0, "bash", 1);
    let raw = synth::single(synth::bash(h, 3, 0), b"x");
    assert!(matches!(
        decode(&raw),
        Err(DecodeError::BadField {
            field: "bash_type",
            value: 3,
            ..
        })
    ));

    let h = synth::header(RecordKind::Packet, 1, 1, 0, "t", 1);
    let raw = synth::single(synth::packet(h, 1, 9), b"x");
    assert!(matches!(
        decode(&raw),
        Err(DecodeError::BadField {
            field: "direction",
            ..
        })
    ));

    let h = synth::header(RecordKind::Conn, 1, 1, 0, "t", 1);
    let raw = synth::conn(h, 1, 3, 0, Tuple::default());
    assert!(matches!(
        decode(&raw),
        Err(DecodeError::BadField { field: "event", .. })
    ));
    let mut raw = synth::conn(h, 1, 0, 0, Tuple::default());
    raw[56..58].copy_from_slice(&1u16.to_ne_bytes());
    assert!(matches!(
        decode(&raw),
        Err(DecodeError::BadField {
            field: "tuple.family",
            ..
        })
    ));

    let h = synth::header(RecordKind::MasterSecret, 1, 1, 0, "t", 1);
    let mut raw = synth::master_secret(h, 0x303, 0, [1; 32], 1);
    set_u32(&mut raw, 80, 49);
    assert!(matches!(
        decode(&raw),
        Err(DecodeError::BadField {
            field: "master_key_len",
            value: 49,
            ..
        })
    ));

    let h = synth::header(RecordKind::GotlsKey, 1, 1, 0, "t", 1);
    let mut raw = synth::gotls_key(h, "X", [1; 32], &[1]);
    set_u32(&mut raw, 40, 33);
    assert!(matches!(
        decode(&raw),
        Err(DecodeError::BadField {
            field: "label_len",
            ..
        })
    ));
    let mut raw = synth::gotls_key(h, "X", [1; 32], &[1]);
    set_u32(&mut raw, 44, 65);
    assert!(matches!(
        decode(&raw),
        Err(DecodeError::BadField {
            field: "secret_len",
            ..
        })
    ));

    let h = synth::header(RecordKind::GnutlsSecret, 1, 1, 0, "t", 1);
    for (hash_len, ok) in [(0, true), (32, true), (48, true), (64, false), (31, false)] {
        let raw = synth::gnutls_secret(h, 0x304, hash_len, [1; 32], 1, false);
        assert_eq!(
            decode(&raw).err(),
            (!ok).then_some(DecodeError::BadField {
                kind: RecordKind::GnutlsSecret,
                field: "hash_len",
                value: u64::from(hash_len)
            }),
            "hash_len {hash_len}"
        );
    }
}

#[test]
fn errors_name_what_was_wrong() {
    let msg = DecodeError::ChunkOutOfRange {
        kind: RecordKind::TlsData,
        offset: 8,
        len: 4,
        total: 10,
    }
    .to_string();
    assert_eq!(
        msg,
        "TlsData chunk at offset 8 with 4 bytes runs past the call's 10 bytes"
    );
}

#[test]
fn every_truncation_of_valid_records_is_an_error_not_a_panic() {
    let h = |k| synth::header(k, 1, 2, 3, "x", 4);
    let samples = vec![
        data_raw(b"payload"),
        synth::single(synth::bash(h(RecordKind::Bash), 0, 0), b"ls"),
        synth::single(synth::query(h(RecordKind::PgQuery), 0), b"select"),
        synth::single(synth::packet(h(RecordKind::Packet), 1, 0), b"pkt"),
        synth::conn(h(RecordKind::Conn), 1, 0, 0, Tuple::default()),
        synth::master_secret(h(RecordKind::MasterSecret), 0x304, 0x1301, [2; 32], 3),
        synth::gotls_key(h(RecordKind::GotlsKey), "CLIENT_RANDOM", [2; 32], &[3; 48]),
        synth::gnutls_secret(h(RecordKind::GnutlsSecret), 0x304, 48, [2; 32], 3, true),
    ];
    for raw in samples {
        assert!(decode(&raw).is_ok());
        for n in 0..raw.len() {
            assert!(decode(&raw[..n]).is_err(), "prefix of {n} bytes accepted");
        }
    }
}
