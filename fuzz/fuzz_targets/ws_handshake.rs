//! Fuzzes the WebSocket upgrade: any parsed request either is refused with
//! a message or yields a 101 response with the accept key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rcapture_net::http::{Parsed, RequestLimits, parse_request};
use rcapture_net::ws::accept_upgrade;

fuzz_target!(|data: &[u8]| {
    if let Ok(Parsed::Complete(req, _)) = parse_request(data, RequestLimits::default()) {
        match accept_upgrade(&req) {
            Ok(up) => {
                assert!(up.response.starts_with(b"HTTP/1.1 101 "));
                assert!(up.response.ends_with(b"\r\n\r\n"));
            }
            Err(msg) => assert!(!msg.is_empty()),
        }
    }
});
