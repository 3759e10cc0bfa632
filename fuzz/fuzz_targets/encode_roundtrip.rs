//! Fuzzes the protobuf and NDJSON encoders with arbitrary event fields: prost must decode the same values, serde_json the same line.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use rcapture_core::event::EventFields;
use rcapture_core::{encode, ndjson};
use rcapture_proto::{Event, LogEntry, LogType, log_entry::Payload};
use serde_json::{Value, json};

#[derive(Debug, Arbitrary)]
struct Fields {
    timestamp: i64,
    uuid: String,
    src_ip: String,
    src_port: u32,
    dst_ip: String,
    dst_port: u32,
    pid: i64,
    pname: String,
    r#type: u32,
    payload: Vec<u8>,
    tid: u32,
    uid: u32,
    module: String,
    fd: u32,
    truncated: u32,
    seq: u64,
}

fuzz_target!(|f: Fields| {
    let ev = EventFields {
        timestamp: f.timestamp,
        uuid: &f.uuid,
        src_ip: &f.src_ip,
        src_port: f.src_port,
        dst_ip: &f.dst_ip,
        dst_port: f.dst_port,
        pid: f.pid,
        pname: &f.pname,
        r#type: f.r#type,
        payload: &f.payload,
        tid: f.tid,
        uid: f.uid,
        module: &f.module,
        fd: f.fd,
        truncated: f.truncated,
    };
    let mut frame = Vec::new();
    encode::encode_seq_prefix(f.seq, &mut frame);
    encode::encode_event_entry(&ev, &mut frame);
    assert_eq!(
        frame.len(),
        encode::seq_prefix_len(f.seq) + encode::event_entry_len(&ev)
    );
    let want = LogEntry {
        log_type: LogType::Event as i32,
        payload: Some(Payload::EventPayload(Event {
            timestamp: f.timestamp,
            uuid: f.uuid.clone(),
            src_ip: f.src_ip.clone(),
            src_port: f.src_port,
            dst_ip: f.dst_ip.clone(),
            dst_port: f.dst_port,
            pid: f.pid,
            pname: f.pname.clone(),
            r#type: f.r#type,
            length: f.payload.len() as u32,
            payload: f.payload.clone(),
            tid: f.tid,
            uid: f.uid,
            module: f.module.clone(),
            fd: f.fd,
            truncated: f.truncated,
        })),
        seq: f.seq,
    };
    let got = LogEntry::decode(frame.as_slice()).expect("prost decodes the entry");
    assert_eq!(got, want);
    // prost's own encoding of the same entry has the same length (field order may differ: seq).
    assert_eq!(frame.len(), want.encoded_len());

    let mut line = Vec::with_capacity(ndjson::ndjson_line_max_len(&ev));
    let cap = line.capacity();
    ndjson::write_ndjson_line(&ev, f.seq, &mut line);
    assert!(line.len() <= cap, "ndjson_line_max_len underestimated");
    assert_eq!(line.iter().position(|&b| b == b'\n'), Some(line.len() - 1));
    let v: Value = serde_json::from_slice(&line).expect("NDJSON line parses");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&f.payload);
    let want = json!({
        "timestamp": f.timestamp, "uuid": f.uuid, "src_ip": f.src_ip, "src_port": f.src_port,
        "dst_ip": f.dst_ip, "dst_port": f.dst_port, "pid": f.pid, "pname": f.pname,
        "type": f.r#type, "length": f.payload.len(), "payload": b64, "tid": f.tid,
        "uid": f.uid, "module": f.module, "fd": f.fd, "truncated": f.truncated, "seq": f.seq,
    });
    assert_eq!(v, want);
    assert_eq!(
        v.as_object().map(|o| o.len()),
        Some(17),
        "every key, no more"
    );
});
