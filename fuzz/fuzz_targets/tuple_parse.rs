//! Fuzzes `parse_tuple` on arbitrary text: whatever parses must re-format and re-parse to the same endpoints.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rcapture_core::tuple::parse_tuple;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((src, dst)) = parse_tuple(text) else {
        return;
    };
    let again = format!("{src}-{dst}");
    let reparsed = parse_tuple(&again)
        .unwrap_or_else(|e| panic!("{text:?} parsed, but its re-format {again:?} did not: {e}"));
    assert_eq!(reparsed, (src, dst), "{text:?} -> {again:?}");
});
