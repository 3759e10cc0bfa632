//! The wire schema of rcapture (package `event`, WIRE.md §1) as prost types.
//!
//! These owned types are what clients and tests use; the hot path in
//! `rcapture-core` writes the same bytes without building them.
//!
//! ```
//! use prost::Message;
//! use rcapture_proto::{Event, LogEntry, LogType, log_entry::Payload};
//! let entry = LogEntry {
//!     log_type: LogType::Event as i32,
//!     payload: Some(Payload::EventPayload(Event { pid: 42, ..Default::default() })),
//!     seq: 1,
//! };
//! let bytes = entry.encode_to_vec();
//! assert_eq!(LogEntry::decode(bytes.as_slice()).unwrap(), entry);
//! ```
#![allow(missing_debug_implementations)]

include!(concat!(env!("OUT_DIR"), "/event.rs"));

pub use prost;

/// The schema source, as compiled into these types.
pub const EVENT_PROTO: &str = include_str!("../event.proto");
