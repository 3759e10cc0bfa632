//! A small protobuf scanner for the soak's readers (and the whole-path
//! allocation proof's): the top-level fields of a `LogEntry`, an `Event`'s
//! length checks and its module, without allocating (the readers see every
//! event; a full prost decode is used on samples).

use rcapture_core::event::Module;

/// Events counted per module, in [`Module::ALL`]'s order.
pub type ModuleCounts = [u64; Module::ALL.len()];

/// `m`'s place in [`ModuleCounts`].
pub fn module_index(m: Module) -> usize {
    Module::ALL
        .iter()
        .position(|&x| x == m)
        .expect("every module is in Module::ALL")
}

/// Reads a varint at `*pos`.
fn varint(b: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

/// One field: (number, varint value or 0, length-delimited bytes or empty).
type Field<'a> = (u64, u64, &'a [u8]);

/// Calls `f` for each field of a message (varint and length-delimited only,
/// as in rcapture's schema).
fn fields<'a>(b: &'a [u8], mut f: impl FnMut(Field<'a>)) -> Result<(), String> {
    let mut pos = 0;
    while pos < b.len() {
        let key = varint(b, &mut pos)?;
        match key & 7 {
            0 => {
                let v = varint(b, &mut pos)?;
                f((key >> 3, v, &[]));
            }
            2 => {
                let n = varint(b, &mut pos)? as usize;
                let end = pos.checked_add(n).filter(|&e| e <= b.len());
                let end = end.ok_or_else(|| format!("field {} runs past the end", key >> 3))?;
                f((key >> 3, 0, &b[pos..end]));
                pos = end;
            }
            w => return Err(format!("field {}: unexpected wire type {w}", key >> 3)),
        }
    }
    Ok(())
}

/// What a reader needs of one `LogEntry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// An event entry: its `seq`, payload length and module.
    Event {
        seq: u64,
        payload_len: usize,
        module: Module,
    },
    Heartbeat,
    /// A run log entry (the server sends none).
    Log,
}

/// Scans one encoded `LogEntry`; checks an event's `length` equals its
/// payload's, that it has a uuid and that its module is one of WIRE.md's.
pub fn entry(b: &[u8]) -> Result<Entry, String> {
    let (mut log_type, mut seq, mut event, mut heartbeat, mut log) = (0, 0, None, false, false);
    fields(b, |(n, v, bytes)| match n {
        1 => log_type = v,
        2 => event = Some(bytes),
        3 => heartbeat = true,
        4 => log = true,
        5 => seq = v,
        _ => {}
    })?;
    match (log_type, event, heartbeat, log) {
        (2, Some(ev), false, false) => {
            if seq == 0 {
                return Err("event entry without seq".into());
            }
            let (mut length, mut payload, mut module, mut uuid) = (None, 0, &[][..], false);
            fields(ev, |(n, v, bytes)| match n {
                2 => uuid = !bytes.is_empty(),
                10 => length = Some(v),
                11 => payload = bytes.len(),
                14 => module = bytes,
                _ => {}
            })?;
            // proto3 leaves zero out: no `length` field is length 0.
            if length.unwrap_or(0) != payload as u64 {
                return Err(format!("length {length:?} but {payload} payload bytes"));
            }
            if !uuid {
                return Err("event without a uuid".into());
            }
            let module = std::str::from_utf8(module)
                .ok()
                .and_then(Module::from_name)
                .ok_or_else(|| format!("module {:?}", String::from_utf8_lossy(module)))?;
            Ok(Entry::Event {
                seq,
                payload_len: payload,
                module,
            })
        }
        (0, None, true, false) if seq == 0 => Ok(Entry::Heartbeat),
        (1, None, false, true) => Ok(Entry::Log),
        _ => Err(format!(
            "unexpected LogEntry shape: log_type {log_type}, seq {seq}, event {}, heartbeat {heartbeat}",
            event.is_some()
        )),
    }
}

/// The entries of a `LogBatch` body (field 1, repeated `LogEntry`).
pub fn batch_entries(b: &[u8], mut f: impl FnMut(&[u8])) -> Result<(), String> {
    let mut bad = None;
    fields(b, |(n, _, bytes)| {
        if n == 1 {
            f(bytes);
        } else if bad.is_none() {
            bad = Some(n);
        }
    })?;
    match bad {
        Some(n) => Err(format!("LogBatch has a field {n}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use rcapture_proto::{Event, LogBatch, LogEntry, LogType, log_entry::Payload};

    #[test]
    fn scans_what_prost_encodes() {
        let ev = LogEntry {
            log_type: LogType::Event as i32,
            payload: Some(Payload::EventPayload(Event {
                uuid: "u".into(),
                module: "tls".into(),
                length: 3,
                payload: b"abc".to_vec(),
                ..Default::default()
            })),
            seq: 300,
        };
        let b = ev.encode_to_vec();
        assert_eq!(
            entry(&b),
            Ok(Entry::Event {
                seq: 300,
                payload_len: 3,
                module: Module::Tls,
            })
        );
        let batch = LogBatch {
            entries: vec![ev.clone(), ev],
        }
        .encode_to_vec();
        let mut n = 0;
        batch_entries(&batch, |e| {
            assert!(matches!(entry(e), Ok(Entry::Event { seq: 300, .. })));
            n += 1;
        })
        .unwrap();
        assert_eq!(n, 2);
        assert!(entry(&b[..b.len() - 1]).is_err());
        for module in ["", "openssl"] {
            let mut e = LogEntry::decode(&b[..]).unwrap();
            if let Some(Payload::EventPayload(event)) = &mut e.payload {
                event.module = module.into();
            }
            assert_eq!(entry(&e.encode_to_vec()), Err(format!("module {module:?}")));
        }
    }
}
