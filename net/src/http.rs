//! HTTP/1.1 requests from byte slices (httparse) and responses into buffers.
//!
//! No I/O here: the event loop feeds what it read and writes what comes back.
//! Limits are enforced while parsing: header bytes (→ 431), body bytes (→ 413).

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

    /// Whether the client wants the connection kept open.
    pub fn keep_alive(&self) -> bool {
        !self.header_has_token("connection", "close")
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
}

impl HttpError {
    /// The status code and reason phrase.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Self::Malformed(_) => (400, "Bad Request"),
            Self::HeadersTooLarge { .. } => (431, "Request Header Fields Too Large"),
            Self::BodyTooLarge { .. } => (413, "Content Too Large"),
        }
    }
}

/// Result of feeding bytes.
#[derive(Debug)]
pub enum Parsed {
    /// More bytes needed.
    Partial,
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
    if req.version != Some(1) {
        return Err(HttpError::Malformed("only HTTP/1.1 is served".into()));
    }
    let method = req.method.unwrap_or("").to_string();
    let target = req.path.unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut hs = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let v = std::str::from_utf8(h.value)
            .map_err(|_| HttpError::Malformed(format!("header {} is not UTF-8", h.name)))?;
        hs.push((h.name.to_ascii_lowercase(), v.trim().to_string()));
    }
    let mut r = Request {
        method,
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
    let len: u64 = match r.header("content-length") {
        None => 0,
        Some(v) => v
            .parse()
            .map_err(|_| HttpError::Malformed(format!("Content-Length {v:?} is not a number")))?,
    };
    if len > limits.max_body_bytes as u64 {
        return Err(HttpError::BodyTooLarge {
            len,
            limit: limits.max_body_bytes,
        });
    }
    let total = head_len + len as usize;
    if buf.len() < total {
        return Ok(Parsed::Partial);
    }
    r.body = buf[head_len..total].to_vec();
    Ok(Parsed::Complete(r, total))
}

/// Appends a whole response.
pub fn write_response(
    out: &mut Vec<u8>,
    status: (u16, &str),
    content_type: &str,
    extra_headers: &[(&str, String)],
    body: &[u8],
    keep_alive: bool,
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
    out.extend_from_slice(body);
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
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
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
                matches!(parse_request(&req[..cut], l), Ok(Parsed::Partial)),
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
            parse_request(b"GET / HTTP/1.0\r\n\r\n", l)
                .unwrap_err()
                .status()
                .0,
            400
        );
    }
}
