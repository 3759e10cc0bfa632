//! HTTP/1.1 requests from byte slices (httparse) and responses into buffers.
//!
//! No I/O here: the event loop feeds what it read and writes what comes back.
//! Limits are enforced while parsing: header bytes (→ 431), body bytes (→ 413).
//! Framing follows RFC 9112 strictly (§6.3): one `Content-Length` of digits
//! only (copies must agree), no `Transfer-Encoding` (not implemented → 400,
//! so no request can smuggle another); HTTP/1.0 and 1.1; origin-form and
//! absolute-form targets (§3.2); `Expect: 100-continue` (→ 100, other
//! expectations → 417).

use serde_json::{Value, json};

/// Size limits of a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: 8 * 1024,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// A parsed request (owned: the API is not a hot path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The minor version: `0` for HTTP/1.0, `1` for HTTP/1.1.
    pub version: u8,
    pub path: String,
    pub query: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header of this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header contains `token` (case-insensitive).
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// The value of `key` in the query string.
    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// Whether the client wants the connection kept open: HTTP/1.1 unless
    /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`
    /// (RFC 9112 §9.3).
    pub fn keep_alive(&self) -> bool {
        if self.version == 0 {
            self.header_has_token("connection", "keep-alive")
        } else {
            !self.header_has_token("connection", "close")
        }
    }
}

/// A request that cannot be served, with its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("request headers exceed {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("request body of {len} bytes exceeds the {limit}-byte limit")]
    BodyTooLarge { len: u64, limit: usize },
    #[error("Expect: {0:?} is not supported (only 100-continue)")]
    ExpectationFailed(String),
}

impl HttpError {
    /// The status code and reason phrase.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Self::Malformed(_) => (400, "Bad Request"),
            Self::HeadersTooLarge { .. } => (431, "Request Header Fields Too Large"),
            Self::BodyTooLarge { .. } => (413, "Content Too Large"),
            Self::ExpectationFailed(_) => (417, "Expectation Failed"),
        }
    }
}

/// Result of feeding bytes.
#[derive(Debug)]
pub enum Parsed {
    /// More bytes needed.
    Partial,
    /// The head is complete and valid, the body is not there yet; with
    /// `Expect: 100-continue` the client waits for `100 Continue` first.
    AwaitingBody { expect_continue: bool },
    /// A request and the bytes it used.
    Complete(Request, usize),
}

/// Parses one request from the start of `buf`.
pub fn parse_request(buf: &[u8], limits: RequestLimits) -> Result<Parsed, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_header_bytes {
                return Err(HttpError::HeadersTooLarge {
                    limit: limits.max_header_bytes,
                });
            }
            return Ok(Parsed::Partial);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::HeadersTooLarge {
                limit: limits.max_header_bytes,
            });
        }
        Err(e) => return Err(HttpError::Malformed(e.to_string())),
    };
    if head_len > limits.max_header_bytes {
        return Err(HttpError::HeadersTooLarge {
            limit: limits.max_header_bytes,
        });
    }
    let version = match req.version {
        Some(v @ (0 | 1)) => v,
        _ => {
            return Err(HttpError::Malformed(
                "only HTTP/1.0 and 1.1 are served".into(),
            ));
        }
    };
    let method = req.method.unwrap_or("").to_string();
    let mut hs = Vec::with_capacity(req.headers.len() + 1);
    for h in req.headers.iter() {
        let v = std::str::from_utf8(h.value)
            .map_err(|_| HttpError::Malformed(format!("header {} is not UTF-8", h.name)))?;
        hs.push((h.name.to_ascii_lowercase(), v.trim().to_string()));
    }
    let target = origin_form(req.path.unwrap_or(""), &mut hs)?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut r = Request {
        method,
        version,
        path: path.to_string(),
        query: query.to_string(),
        headers: hs,
        body: Vec::new(),
    };
    if r.header("transfer-encoding").is_some() {
        return Err(HttpError::Malformed(
            "Transfer-Encoding is not supported: send the body with Content-Length".into(),
        ));
    }
    let len = content_length(&r)?;
    if len > limits.max_body_bytes as u64 {
        return Err(HttpError::BodyTooLarge {
            len,
            limit: limits.max_body_bytes,
        });
    }
    let expect_continue = match r.header("expect") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("100-continue") => version == 1,
        Some(v) => return Err(HttpError::ExpectationFailed(v.to_string())),
    };
    let total = head_len + len as usize;
    if buf.len() < total {
        return Ok(Parsed::AwaitingBody { expect_continue });
    }
    r.body = buf[head_len..total].to_vec();
    Ok(Parsed::Complete(r, total))
}

/// The origin-form (`/path?query`) of a request target. An absolute-form
/// target (`http://host/path`, RFC 9112 §3.2.2) gives its path, and its
/// authority replaces the `Host` header; any other form is refused.
fn origin_form<'a>(
    target: &'a str,
    headers: &mut Vec<(String, String)>,
) -> Result<&'a str, HttpError> {
    if target.starts_with('/') {
        return Ok(target);
    }
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &target[7..]
    } else if lower.starts_with("https://") {
        &target[8..]
    } else {
        return Err(HttpError::Malformed(format!(
            "request target {target:?} is neither /path nor http://host/path"
        )));
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.is_empty() || authority.contains('@') {
        return Err(HttpError::Malformed(format!(
            "request target {target:?} has no host (or user info)"
        )));
    }
    headers.retain(|(k, _)| k != "host");
    headers.push(("host".into(), authority.to_string()));
    // `http://host` means `/`; `http://host?q` keeps its query (its path
    // is empty, as the router's `/`).
    Ok(if path.is_empty() { "/" } else { path })
}

/// The body length: every `Content-Length` (lists included) must be digits
/// only and all must agree (RFC 9112 §6.3: anything else is a framing
/// error, refused so that no second request can hide in the body).
fn content_length(r: &Request) -> Result<u64, HttpError> {
    let mut len = None;
    for v in r
        .headers
        .iter()
        .filter(|(k, _)| k == "content-length")
        .flat_map(|(_, v)| v.split(','))
    {
        let v = v.trim();
        let n: u64 = (!v.is_empty() && v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit()))
            .then(|| v.parse().ok())
            .flatten()
            .ok_or_else(|| HttpError::Malformed(format!("Content-Length {v:?} is not a number")))?;
        if len.is_some_and(|l| l != n) {
            return Err(HttpError::Malformed(format!(
                "conflicting Content-Length values {} and {n}",
                len.unwrap_or_default()
            )));
        }
        len = Some(n);
    }
    Ok(len.unwrap_or(0))
}

/// `100 Continue`: the client may send the body it announced.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Appends a whole response (without its body when answering `HEAD`:
/// the same headers, `Content-Length` included, RFC 9110 §9.3.2).
pub fn write_response(
    out: &mut Vec<u8>,
    status: (u16, &str),
    content_type: &str,
    extra_headers: &[(&str, String)],
    body: &[u8],
    keep_alive: bool,
    head: bool,
) {
    use std::io::Write;
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {}\r\n",
        status.0,
        status.1,
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    for (k, v) in extra_headers {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head {
        out.extend_from_slice(body);
    }
}

/// Upstream's JSON envelope: `{"code","module_type","msg","data"}`.
pub fn envelope(code: u8, module_type: &str, msg: &str, data: Value) -> Vec<u8> {
    let v = json!({"code": code, "module_type": module_type, "msg": msg, "data": data});
    let mut b = serde_json::to_vec(&v).unwrap_or_default();
    b.push(b'\n');
    b
}

/// Reason phrase of the statuses the API uses.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_in_pieces_and_enforces_limits() {
        let l = RequestLimits::default();
        let req = b"POST /config?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcdGET";
        for cut in 0..req.len() - 7 {
            assert!(
                matches!(
                    parse_request(&req[..cut], l),
                    Ok(Parsed::Partial | Parsed::AwaitingBody { .. })
                ),
                "{cut}"
            );
        }
        let Ok(Parsed::Complete(r, n)) = parse_request(req, l) else {
            panic!()
        };
        assert_eq!(
            (
                r.method.as_str(),
                r.path.as_str(),
                r.query.as_str(),
                &r.body[..],
                n
            ),
            ("POST", "/config", "x=1", &b"abcd"[..], req.len() - 3)
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(
            parse_request(big.as_bytes(), l).unwrap_err().status().0,
            431
        );
        let body = b"POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n";
        assert_eq!(parse_request(body, l).unwrap_err().status().0, 413);
        assert_eq!(
            parse_request(b"GARBAGE\r\n\r\n", l).unwrap_err().status().0,
            400
        );
        assert_eq!(
            parse_request(b"GET / HTTP/2.0\r\n\r\n", l)
                .unwrap_err()
                .status()
                .0,
            400
        );
    }

    fn status_of(raw: &str) -> u16 {
        match parse_request(raw.as_bytes(), RequestLimits::default()) {
            Ok(_) => 200,
            Err(e) => e.status().0,
        }
    }

    #[test]
    fn framing_is_strict() {
        for bad in [
            "POST / HTTP/1.1\r\nContent-Length: +9\r\n\r\n123456789",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            "POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\nabcd",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 0x3\r\n\r\nabc",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "GET example.com:80 HTTP/1.1\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(status_of(bad), 400, "{bad:?}");
        }
        assert_eq!(
            status_of("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
            200
        );
        assert_eq!(
            status_of("POST / HTTP/1.1\r\nExpect: magic\r\nContent-Length: 1\r\n\r\n"),
            417
        );
        let l = RequestLimits::default();
        let head = "POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n";
        assert!(matches!(
            parse_request(head.as_bytes(), l),
            Ok(Parsed::AwaitingBody {
                expect_continue: true
            })
        ));
        let Ok(Parsed::Complete(r, _)) = parse_request(
            b"GET http://127.0.0.1:9/status?x=1 HTTP/1.1\r\nHost: other\r\n\r\n",
            l,
        ) else {
            panic!("absolute-form")
        };
        assert_eq!(
            (r.path.as_str(), r.query.as_str(), r.header("host")),
            ("/status", "x=1", Some("127.0.0.1:9"))
        );
        let Ok(Parsed::Complete(r, _)) = parse_request(b"GET / HTTP/1.0\r\n\r\n", l) else {
            panic!("HTTP/1.0")
        };
        assert!(!r.keep_alive() && r.version == 0);
    }

    #[test]
    fn every_status_the_server_sends_has_its_reason() {
        for s in [
            200, 400, 401, 403, 404, 405, 408, 413, 415, 417, 429, 431, 500, 503,
        ] {
            assert_ne!(reason(s), "Unknown", "{s}");
        }
    }
}
