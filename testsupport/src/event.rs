//! An event with owned fields: borrowed as the encoders' [`EventFields`],
//! and built as the prost [`Event`] that decoding the encoded entry gives.

use rcapture_core::event::{Detail, EventFields};
use rcapture_proto::Event;

/// Every field of an event, owned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct OwnedEvent {
    pub timestamp: i64,
    pub uuid: String,
    pub src_ip: String,
    pub src_port: u32,
    pub dst_ip: String,
    pub dst_port: u32,
    pub pid: i64,
    pub pname: String,
    pub r#type: u32,
    pub payload: Vec<u8>,
    pub tid: u32,
    pub uid: u32,
    pub module: String,
    pub fd: u32,
    pub truncated: u32,
}

impl OwnedEvent {
    /// The event as the encoders take it.
    pub fn fields(&self) -> EventFields<'_> {
        EventFields {
            timestamp: self.timestamp,
            uuid: &self.uuid,
            src_ip: &self.src_ip,
            src_port: self.src_port,
            dst_ip: &self.dst_ip,
            dst_port: self.dst_port,
            pid: self.pid,
            pname: &self.pname,
            r#type: self.r#type,
            payload: &self.payload,
            tid: self.tid,
            uid: self.uid,
            module: &self.module,
            fd: self.fd,
            truncated: self.truncated,
            detail: Detail::None,
        }
    }

    /// The prost `Event` a client decodes from the encoded entry
    /// (`length` is the payload's).
    pub fn prost(&self) -> Event {
        Event {
            timestamp: self.timestamp,
            uuid: self.uuid.clone(),
            src_ip: self.src_ip.clone(),
            src_port: self.src_port,
            dst_ip: self.dst_ip.clone(),
            dst_port: self.dst_port,
            pid: self.pid,
            pname: self.pname.clone(),
            r#type: self.r#type,
            length: self.payload.len() as u32,
            payload: self.payload.clone(),
            tid: self.tid,
            uid: self.uid,
            module: self.module.clone(),
            fd: self.fd,
            truncated: self.truncated,
        }
    }
}
