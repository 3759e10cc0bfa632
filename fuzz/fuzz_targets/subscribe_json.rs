//! Fuzzes stream filters from subscribe frames and query strings: never
//! panics; an accepted filter round-trips through its JSON form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rcapture_net::filter::{ClientFilter, parse_subscribe};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(f) = parse_subscribe(text) {
        assert_eq!(ClientFilter::from_json(&f.to_json()).unwrap(), f);
    }
    if let Ok(f) = ClientFilter::from_query(text) {
        assert_eq!(ClientFilter::from_json(&f.to_json()).unwrap(), f);
    }
});
