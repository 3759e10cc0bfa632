//! Fuzzes the client WebSocket frame reader and permessage-deflate inflater:
//! never panics; accepted frames stay within the limit and the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rcapture_net::ws::{Deflate, read_frame};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut d = Deflate::default();
    while let Ok(Some((frame, used))) = read_frame(rest, 4096) {
        assert!(used <= rest.len() && used > 0);
        assert!(frame.payload.len() <= 4096);
        if frame.rsv1 {
            if let Ok(p) = d.decompress(&frame.payload, 1 << 16) {
                assert!(p.len() <= 1 << 16);
            }
        }
        rest = &rest[used..];
    }
});
