//! Fuzzes `decode` on arbitrary bytes; every accepted record must become an event whose protobuf and NDJSON forms round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use rcapture_core::decode::decode;
use rcapture_core::event::{Clock, EventScratch, event_fields};
use rcapture_core::{encode, ndjson};
use rcapture_proto::{LogEntry, LogType, log_entry::Payload};

fuzz_target!(|data: &[u8]| {
    let Ok(rec) = decode(data) else { return };
    assert!(rec.payload().len() <= data.len());
    let mut scratch = EventScratch::new();
    let ev = event_fields(
        &rec,
        rec.missing_bytes(),
        &Clock::from_offset(0),
        &mut scratch,
    );
    let mut frame = Vec::new();
    encode::encode_seq_prefix(9, &mut frame);
    encode::encode_event_entry(&ev, &mut frame);
    assert_eq!(
        frame.len(),
        encode::seq_prefix_len(9) + encode::event_entry_len(&ev)
    );
    let entry = LogEntry::decode(frame.as_slice()).expect("encoded entry decodes with prost");
    assert_eq!(entry.log_type, LogType::Event as i32);
    assert_eq!(entry.seq, 9);
    let Some(Payload::EventPayload(e)) = entry.payload else {
        panic!("not an event entry: {:?}", entry.payload)
    };
    assert_eq!(e.payload, ev.payload);
    assert_eq!(e.length as usize, ev.payload.len());
    assert_eq!(e.uuid, ev.uuid);
    assert_eq!(e.pname, ev.pname);
    assert_eq!(
        (e.src_ip.as_str(), e.dst_ip.as_str()),
        (ev.src_ip, ev.dst_ip)
    );
    assert_eq!(e.module, ev.module);
    assert_eq!(e.pid, i64::from(rec.header().pid));
    assert_eq!(e.truncated, rec.missing_bytes());
    let mut line = Vec::with_capacity(ndjson::ndjson_line_max_len(&ev));
    let cap = line.capacity();
    ndjson::write_ndjson_line(&ev, 9, &mut line);
    assert!(line.len() <= cap, "ndjson_line_max_len underestimated");
    let v: serde_json::Value = serde_json::from_slice(&line).expect("NDJSON line parses");
    assert_eq!(v["uuid"].as_str(), Some(ev.uuid));
    assert_eq!(v["pname"].as_str(), Some(ev.pname));
});
