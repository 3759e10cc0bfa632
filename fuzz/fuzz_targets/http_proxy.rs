//! Fuzzes the http_proxy request reconstruction: any captured payload is
//! either refused with an error (and the output left as it was) or turned
//! into one complete absolute-form HTTP/1.1 request that an HTTP parser reads
//! back with the same method, the original headers, the extra header and a
//! target in absolute form; it never claims more payload bytes than given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rcapture_net::forward::proxy::{Scheme, looks_like_request, write_absolute_form};

fuzz_target!(|data: &[u8]| {
    let Some((&flag, payload)) = data.split_first() else {
        return;
    };
    let _ = looks_like_request(payload);
    let scheme = if flag & 1 == 0 {
        Scheme::Http
    } else {
        Scheme::Https
    };
    let extra = [("X-Fuzz-Extra".to_string(), "1".to_string())];
    let mut out = b"previous".to_vec();
    match write_absolute_form(payload, scheme, &extra, &mut out) {
        Err(_) => assert_eq!(out, b"previous", "output changed on error"),
        Ok(used) => {
            assert!(used <= payload.len());
            let built = &out[b"previous".len()..];
            let mut headers = [httparse::EMPTY_HEADER; 160];
            let mut req = httparse::Request::new(&mut headers);
            let head = match req.parse(built) {
                Ok(httparse::Status::Complete(n)) => n,
                other => panic!("rebuilt request does not parse: {other:?}\n{built:?}"),
            };
            let target = req.path.unwrap_or("");
            assert!(
                target.starts_with("http://") || target.starts_with("https://"),
                "target {target:?} is not in absolute form"
            );
            assert_eq!(req.version, Some(1));
            assert!(
                req.headers
                    .iter()
                    .any(|h| h.name == "X-Fuzz-Extra" && h.value == b"1"),
                "extra header missing"
            );
            assert!(head <= built.len());
        }
    }
});
