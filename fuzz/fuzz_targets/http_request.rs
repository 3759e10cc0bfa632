//! Fuzzes the HTTP/1.1 request parser: never panics; a complete request
//! never claims more bytes than it was given, and its body respects the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rcapture_net::http::{Parsed, RequestLimits, parse_request};

fuzz_target!(|data: &[u8]| {
    let limits = RequestLimits { max_header_bytes: 2048, max_body_bytes: 4096 };
    match parse_request(data, limits) {
        Ok(Parsed::Complete(req, used)) => {
            assert!(used <= data.len());
            assert!(req.body.len() <= limits.max_body_bytes);
            assert!(!req.method.is_empty());
            // Parsing the same bytes again gives the same request.
            match parse_request(&data[..used], limits) {
                Ok(Parsed::Complete(again, n)) => assert_eq!((again, n), (req, used)),
                other => panic!("re-parse of a complete request gave {other:?}"),
            }
        }
        Ok(Parsed::Partial | Parsed::AwaitingBody { .. }) => assert!(data.len() <= limits.max_header_bytes + limits.max_body_bytes + 64 * 1024),
        Err(e) => assert!(matches!(e.status().0, 400 | 413 | 417 | 431)),
    }
});
