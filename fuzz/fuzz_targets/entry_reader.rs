//! Fuzzes the borrowed LogEntry reader used by the forwarder and event file:
//! never panics; what it reads re-encodes to an entry it reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rcapture_core::encode;
use rcapture_net::entry::event_fields_of;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = event_fields_of(data) {
        let mut b = Vec::new();
        encode::encode_event_entry(&f, &mut b);
        assert_eq!(event_fields_of(&b).unwrap(), f);
    }
});
