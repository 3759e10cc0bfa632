//! rcapture's data plane: record layouts and decoders, the event model,
//! allocation-free encoders (protobuf `LogEntry`, NDJSON), call reassembly.
//!
//! ```
//! use rcapture_core::{decode::decode, event::{Clock, EventScratch, event_fields}, encode};
//! use rcapture_core::records::{BashRecord, RecordKind, FLAG_FIRST, FLAG_LAST};
//!
//! // A bash record as the kernel writes it: fixed part, then the command line.
//! let mut rec = BashRecord::default();
//! rec.hdr.kind = RecordKind::Bash as u16;
//! rec.hdr.flags = FLAG_FIRST | FLAG_LAST;
//! rec.hdr.pid = 42;
//! rec.hdr.comm[..4].copy_from_slice(b"bash");
//! rec.chunk.total_len = 2;
//! rec.chunk.len = 2;
//! let mut raw = bytemuck::bytes_of(&rec).to_vec();
//! raw.extend_from_slice(b"ls");
//!
//! let record = decode(&raw).unwrap();
//! let mut scratch = EventScratch::new();
//! let ev = event_fields(&record, 0, &Clock::from_offset(0), &mut scratch);
//! assert_eq!((ev.uuid, ev.module, ev.payload), ("42_0_bash", "bash", &b"ls"[..]));
//! let mut frame = Vec::with_capacity(encode::event_entry_len(&ev));
//! encode::encode_event_entry(&ev, &mut frame);
//! assert_eq!(frame.len(), encode::event_entry_len(&ev));
//! ```

pub mod decode;
pub mod encode;
pub mod event;
pub mod join;
pub mod keylog;
pub mod ndjson;
pub mod output;
pub mod records;
pub mod ring;
pub mod synth;
pub mod sys;
pub mod text;
pub mod textbuf;
pub mod tuple;
pub mod worker;
