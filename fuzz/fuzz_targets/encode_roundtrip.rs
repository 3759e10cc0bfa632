//! Fuzzes the protobuf and NDJSON encoders with arbitrary event fields: prost must decode the same values, serde_json the same line.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use rcapture_core::{encode, ndjson};
use rcapture_proto::{LogEntry, LogType, log_entry::Payload};
use rcapture_testsupport::event::OwnedEvent;
use serde_json::{Value, json};

#[derive(Debug, Arbitrary)]
struct Input {
    event: OwnedEvent,
    seq: u64,
}

fuzz_target!(|input: Input| {
    let Input { event: f, seq } = input;
    let ev = f.fields();
    let mut frame = Vec::new();
    encode::encode_seq_prefix(seq, &mut frame);
    encode::encode_event_entry(&ev, &mut frame);
    assert_eq!(
        frame.len(),
        encode::seq_prefix_len(seq) + encode::event_entry_len(&ev)
    );
    let want = LogEntry {
        log_type: LogType::Event as i32,
        payload: Some(Payload::EventPayload(f.prost())),
        seq,
    };
    let got = LogEntry::decode(frame.as_slice()).expect("prost decodes the entry");
    assert_eq!(got, want);
    // prost's own encoding of the same entry has the same length (field order may differ: seq).
    assert_eq!(frame.len(), want.encoded_len());

    let mut line = Vec::with_capacity(ndjson::ndjson_line_max_len(&ev));
    let cap = line.capacity();
    ndjson::write_ndjson_line(&ev, seq, &mut line);
    assert!(line.len() <= cap, "ndjson_line_max_len underestimated");
    assert_eq!(line.iter().position(|&b| b == b'\n'), Some(line.len() - 1));
    let v: Value = serde_json::from_slice(&line).expect("NDJSON line parses");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&f.payload);
    let want = json!({
        "timestamp": f.timestamp, "uuid": f.uuid, "src_ip": f.src_ip, "src_port": f.src_port,
        "dst_ip": f.dst_ip, "dst_port": f.dst_port, "pid": f.pid, "pname": f.pname,
        "type": f.r#type, "length": f.payload.len(), "payload": b64, "tid": f.tid,
        "uid": f.uid, "module": f.module, "fd": f.fd, "truncated": f.truncated,
        "status": f.status, "seq": seq,
    });
    assert_eq!(v, want);
    assert_eq!(
        v.as_object().map(|o| o.len()),
        Some(18),
        "every key, no more"
    );
});
