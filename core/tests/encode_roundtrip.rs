//! Property tests: the allocation-free encoders against the prost types
//! (protobuf) and serde_json (NDJSON).

use proptest::prelude::*;
use prost::Message;
use rcapture_core::encode::{self, seq_prefix};
use rcapture_core::ndjson;
use rcapture_proto::{Heartbeat, LogBatch, LogEntry, LogType, log_entry::Payload};
use rcapture_testsupport::event::OwnedEvent as Owned;

fn small_u32() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), any::<u32>(), 0u32..200]
}

fn owned() -> impl Strategy<Value = Owned> {
    (
        (
            any::<i64>(),
            ".{0,80}",
            ".{0,40}",
            small_u32(),
            ".{0,40}",
            small_u32(),
            any::<i64>(),
            ".{0,16}",
        ),
        (
            small_u32(),
            prop::collection::vec(any::<u8>(), 0..2000),
            small_u32(),
            small_u32(),
            "[a-z]{0,8}",
            small_u32(),
            small_u32(),
            any::<i32>(),
        ),
    )
        .prop_map(
            |(
                (timestamp, uuid, src_ip, src_port, dst_ip, dst_port, pid, pname),
                (r#type, payload, tid, uid, module, fd, truncated, status),
            )| Owned {
                timestamp,
                uuid,
                src_ip,
                src_port,
                dst_ip,
                dst_port,
                pid,
                pname,
                r#type,
                payload,
                tid,
                uid,
                module,
                fd,
                truncated,
                status,
            },
        )
}

proptest! {
    #[test]
    fn event_entry_decodes_to_the_same_message(o in owned(), seq in prop_oneof![Just(0u64), any::<u64>()]) {
        let f = o.fields();
        let mut body = Vec::new();
        encode::encode_event_entry(&f, &mut body);
        prop_assert_eq!(body.len(), encode::event_entry_len(&f));
        let (prefix, n) = seq_prefix(seq);
        prop_assert_eq!(n, encode::seq_prefix_len(seq));
        let mut whole = prefix[..n].to_vec();
        whole.extend_from_slice(&body);
        let expected = LogEntry { log_type: LogType::Event as i32, payload: Some(Payload::EventPayload(o.prost())), seq };
        prop_assert_eq!(LogEntry::decode(whole.as_slice()).unwrap(), expected.clone());
        // Without seq the body is byte-identical to prost's own encoding.
        let no_seq = LogEntry { seq: 0, ..expected };
        prop_assert_eq!(body, no_seq.encode_to_vec());
    }

    #[test]
    fn heartbeat_and_run_log(ts in any::<i64>(), count in any::<i64>(), msg in ".{0,100}") {
        let mut b = Vec::new();
        encode::encode_heartbeat_entry(ts, count, &msg, &mut b);
        prop_assert_eq!(b.len(), encode::heartbeat_entry_len(ts, count, &msg));
        let hb = LogEntry { log_type: LogType::Heartbeat as i32, payload: Some(Payload::HeartbeatPayload(Heartbeat { timestamp: ts, count, message: msg.clone() })), seq: 0 };
        prop_assert_eq!(LogEntry::decode(b.as_slice()).unwrap(), hb);
        let mut b = Vec::new();
        encode::encode_run_log_entry(&msg, &mut b);
        prop_assert_eq!(b.len(), encode::run_log_entry_len(&msg));
        let rl = LogEntry { log_type: LogType::ProcessLog as i32, payload: Some(Payload::RunLog(msg)), seq: 0 };
        prop_assert_eq!(LogEntry::decode(b.as_slice()).unwrap(), rl);
    }

    #[test]
    fn batch_of_prefixed_entries(os in prop::collection::vec(owned(), 0..5)) {
        let mut batch = Vec::new();
        let mut expected = LogBatch::default();
        for (i, o) in os.iter().enumerate() {
            let f = o.fields();
            let seq = i as u64 + 1;
            let len = encode::seq_prefix_len(seq) + encode::event_entry_len(&f);
            encode::encode_batch_item_header(len, &mut batch);
            encode::encode_seq_prefix(seq, &mut batch);
            encode::encode_event_entry(&f, &mut batch);
            expected.entries.push(LogEntry { log_type: 2, payload: Some(Payload::EventPayload(o.prost())), seq });
        }
        prop_assert_eq!(LogBatch::decode(batch.as_slice()).unwrap(), expected);
    }

    #[test]
    fn ndjson_line_has_every_key_and_value(o in owned(), seq in any::<u64>()) {
        let f = o.fields();
        let mut line = Vec::new();
        ndjson::write_ndjson_line(&f, seq, &mut line);
        prop_assert!(line.len() <= ndjson::ndjson_line_max_len(&f));
        prop_assert_eq!(line.last(), Some(&b'\n'));
        prop_assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        let obj = v.as_object().unwrap();
        let keys: Vec<&str> = obj.keys().map(|k| k.as_str()).collect();
        let mut want = vec!["timestamp","uuid","src_ip","src_port","dst_ip","dst_port","pid","pname","type","length","payload","tid","uid","module","fd","truncated","status","seq"];
        want.sort_unstable();
        prop_assert_eq!(keys, want);
        prop_assert_eq!(obj["timestamp"].as_i64(), Some(o.timestamp));
        prop_assert_eq!(obj["uuid"].as_str(), Some(o.uuid.as_str()));
        prop_assert_eq!(obj["pname"].as_str(), Some(o.pname.as_str()));
        prop_assert_eq!(obj["src_ip"].as_str(), Some(o.src_ip.as_str()));
        prop_assert_eq!(obj["pid"].as_i64(), Some(o.pid));
        prop_assert_eq!(obj["length"].as_u64(), Some(o.payload.len() as u64));
        prop_assert_eq!(obj["seq"].as_u64(), Some(seq));
        use base64::Engine;
        let p = base64::engine::general_purpose::STANDARD.decode(obj["payload"].as_str().unwrap()).unwrap();
        prop_assert_eq!(p, o.payload);
    }
}
