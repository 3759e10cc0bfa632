//! The `http_proxy` format: a captured HTTP/1.x request (one event's
//! payload) rewritten in absolute form for a forward proxy such as
//! mitmproxy or Burp Suite (WIRE.md §5).
//!
//! `GET /path HTTP/1.1` + `Host: example.com` captured from TLS becomes
//! `GET https://example.com/path HTTP/1.1`; from a plaintext capture,
//! `http://`. The proxy then shows the request with the URL the client
//! really used, and replays it to the right port with the right
//! security. (A regular-mode proxy accepts both schemes in absolute form:
//! mitmproxy and Burp forward `https://` requests over TLS themselves.)
//! The original headers and body follow unchanged; the version becomes
//! `HTTP/1.1`.

use super::response::{BodyKind, BodySkip, has_token, parse_length};

/// Why a captured request cannot be re-sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request head is incomplete (no empty line after {0} bytes of headers)")]
    HeadIncomplete(usize),
    #[error("malformed request head: {0}")]
    Head(httparse::Error),
    #[error("request has no Host header, so no absolute URL can be formed")]
    NoHost,
    #[error("Host header {0:?} cannot be the authority of a URL")]
    BadHost(String),
    #[error("request target {0:?} cannot be re-sent through a proxy")]
    Target(String),
    #[error("Content-Length {0:?} is not a number")]
    ContentLength(String),
    #[error("body is truncated: Content-Length {declared}, {captured} bytes captured")]
    BodyTruncated { declared: u64, captured: usize },
    #[error("chunked body is incomplete or malformed")]
    Chunked,
    #[error("request has {0} headers; at most 128 are read")]
    TooManyHeaders(usize),
}

/// Whether a payload starts like an HTTP/1.x request line
/// (`METHOD SP target SP HTTP/1.x`): only such payloads are forwarded,
/// and a parse error after that is reported, not taken for "other data".
pub fn looks_like_request(payload: &[u8]) -> bool {
    let Some(sp) = payload.iter().take(21).position(|&b| b == b' ') else {
        return false;
    };
    if sp == 0
        || !payload[..sp]
            .iter()
            .all(|&b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
    {
        return false;
    }
    let line_end = payload
        .iter()
        .take(16 * 1024)
        .position(|&b| b == b'\n')
        .unwrap_or(payload.len().min(16 * 1024));
    let line = payload[..line_end].trim_ascii_end();
    line.len() >= 9 && line[line.len() - 9..line.len() - 1] == *b" HTTP/1."
}

/// Which scheme the absolute URL gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

const MAX_HEADERS: usize = 128;

/// Appends to `out` the first request of `payload` in absolute form, with
/// `extra` headers (e.g. `Proxy-Authorization`) after the original ones.
/// Returns how many payload bytes the request took (a payload can hold
/// pipelined requests). On error `out` is left as it was.
pub fn write_absolute_form(
    payload: &[u8],
    scheme: Scheme,
    extra: &[(String, String)],
    out: &mut Vec<u8>,
) -> Result<usize, RequestError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(payload) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(RequestError::HeadIncomplete(payload.len())),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(RequestError::TooManyHeaders(
                payload.windows(2).filter(|w| w == b"\r\n").count(),
            ));
        }
        Err(e) => return Err(RequestError::Head(e)),
    };
    let method = req.method.unwrap_or("GET");
    let target = req.path.unwrap_or("/");
    let mut host = None;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("host") {
            host.get_or_insert(h.value);
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let bad =
                || RequestError::ContentLength(String::from_utf8_lossy(h.value).trim().into());
            let n = parse_length(h.value).ok_or_else(bad)?;
            if length.is_some_and(|l| l != n) {
                return Err(bad());
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = has_token(h.value, "chunked");
        }
    }
    let absolute = target.starts_with("http://") || target.starts_with("https://");
    if !absolute && !target.starts_with('/') {
        return Err(RequestError::Target(target.to_string()));
    }
    let host = match host.map(<[u8]>::trim_ascii) {
        Some(h) if !h.is_empty() && !absolute => {
            // RFC 3986 authority characters only (reg-name, IP literal,
            // port, pct-encoding): anything else would make the request
            // line invalid (found by the http_proxy fuzz target).
            if !h
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b))
            {
                return Err(RequestError::BadHost(String::from_utf8_lossy(h).into()));
            }
            h
        }
        _ if absolute => &b""[..],
        _ => return Err(RequestError::NoHost),
    };
    let rest = &payload[head_len..];
    let body_len = if chunked {
        let mut skip = BodySkip::new(BodyKind::Chunked);
        match skip.feed(rest) {
            Ok((n, true)) => n,
            _ => return Err(RequestError::Chunked),
        }
    } else {
        let declared = length.unwrap_or(0);
        if (rest.len() as u64) < declared {
            return Err(RequestError::BodyTruncated {
                declared,
                captured: rest.len(),
            });
        }
        declared as usize
    };
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    if !absolute {
        out.extend_from_slice(scheme.name().as_bytes());
        out.extend_from_slice(b"://");
        out.extend_from_slice(host);
    }
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in req.headers.iter() {
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    for (k, v) in extra {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&rest[..body_len]);
    Ok(head_len + body_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(p: &[u8], scheme: Scheme) -> Result<(String, usize), RequestError> {
        let mut out = b"KEEP".to_vec();
        let r = write_absolute_form(p, scheme, &[("X-Extra".into(), "1".into())], &mut out);
        match r {
            Ok(n) => Ok((String::from_utf8(out[4..].to_vec()).unwrap(), n)),
            Err(e) => {
                assert_eq!(out, b"KEEP");
                Err(e)
            }
        }
    }

    #[test]
    fn refuses_a_host_that_cannot_be_a_url_authority() {
        for host in [&b"example.com\x91"[..], b"a b", b"h/x", b"h?q", b"h@u"] {
            let mut p = b"GET /a HTTP/1.1\r\nHost: ".to_vec();
            p.extend_from_slice(host);
            p.extend_from_slice(b"\r\n\r\n");
            assert!(
                matches!(one(&p, Scheme::Http), Err(RequestError::BadHost(_))),
                "{host:?}"
            );
        }
        assert!(one(b"GET /a HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n", Scheme::Http).is_ok());
    }

    #[test]
    fn rewrites_origin_form() {
        let p = b"POST /a/b?c=1 HTTP/1.0\r\nHost: example.com:8443\r\nContent-Length: 3\r\nX-U: z\r\n\r\nabcGET / HTTP/1.1\r\n";
        let (s, n) = one(p, Scheme::Https).unwrap();
        assert_eq!(
            s,
            "POST https://example.com:8443/a/b?c=1 HTTP/1.1\r\nHost: example.com:8443\r\nContent-Length: 3\r\nX-U: z\r\nX-Extra: 1\r\n\r\nabc"
        );
        assert_eq!(&p[n..], b"GET / HTTP/1.1\r\n");
        let (s, _) = one(b"GET http://h/x HTTP/1.1\r\n\r\n", Scheme::Https).unwrap();
        assert!(s.starts_with("GET http://h/x HTTP/1.1\r\n"), "{s}");
        let c = b"PUT /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let (s, n) = one(c, Scheme::Http).unwrap();
        assert_eq!(n, c.len());
        assert!(s.starts_with("PUT http://h/u HTTP/1.1\r\n") && s.ends_with("0\r\n\r\n"));
    }

    #[test]
    fn malformed_requests_say_why() {
        let cases: [(&[u8], &str); 7] = [
            (
                b"GET / HTTP/1.1\r\nHost: h\r\n",
                "request head is incomplete (no empty line after 25 bytes of headers)",
            ),
            (
                b"GET / HTTP/1.1\r\n\r\n",
                "request has no Host header, so no absolute URL can be formed",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc",
                "body is truncated: Content-Length 10, 3 bytes captured",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n",
                "Content-Length \"x\" is not a number",
            ),
            (
                b"CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n",
                "request target \"h:443\" cannot be re-sent through a proxy",
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
                "chunked body is incomplete or malformed",
            ),
            (
                b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
                "malformed request head: invalid header name",
            ),
        ];
        for (p, want) in cases {
            assert!(looks_like_request(p), "{p:?}");
            assert_eq!(one(p, Scheme::Https).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn detection() {
        assert!(looks_like_request(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
        assert!(looks_like_request(b"M-SEARCH * HTTP/1.1\n"));
        assert!(!looks_like_request(b"HTTP/1.1 200 OK\r\n\r\n"));
        assert!(!looks_like_request(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        assert!(!looks_like_request(b"get / HTTP/1.1\r\n"));
        assert!(!looks_like_request(b"SELECT 1 FROM t"));
        assert!(!looks_like_request(b""));
    }
}
