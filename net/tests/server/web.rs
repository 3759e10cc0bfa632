//! The web viewer (`GET /`): served without the token and with its
//! policy, next to the stream on `/` (the page in a browser: `tests/web.rs`).

use crate::util::*;
use std::io::{Read, Write};

fn token_config() -> rcapture_net::ServerConfig {
    let mut cfg = config();
    cfg.auth_token = Some("web-token".into());
    cfg.ecaptureq = Some("127.0.0.1:0".parse().unwrap());
    cfg
}

#[test]
fn the_page_is_served_without_the_token_under_a_strict_policy() {
    let s = TestServer::with(token_config());
    let page = s.get("/");
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.text().contains("<script src=\"/web/app.js\""));
    let csp = page.header("content-security-policy").unwrap();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self' ws://localhost wss://localhost",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{part} in {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    for (path, ty) in [
        ("/web/app.js", "text/javascript; charset=utf-8"),
        ("/web/app.css", "text/css; charset=utf-8"),
    ] {
        let r = s.get(path);
        assert_eq!(
            (r.status, r.header("content-type")),
            (200, Some(ty)),
            "{path}"
        );
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert!(r.body.len() > 1000, "{path}");
    }
    // HEAD: the same headers, no body.
    let mut c = connect(s.addr);
    c.write_all(b"HEAD / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut head = String::new();
    c.read_to_string(&mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let length = format!("\r\nContent-Length: {}\r\n", page.body.len());
    assert!(head.contains(&length), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "no body: {head}");
    let post = s.post("/", "{}");
    assert_eq!(post.status, 405, "{post:?}");
    assert_eq!(post.header("allow"), Some("GET, HEAD"));

    // The data still needs the token; the stream on `/` stays the stream.
    assert_eq!(s.get("/status").status, 401);
    assert!(ws_connect(s.addr, "/", &[("Origin", "http://localhost/")]).is_err());
    let mut ws = ws_ready(s.addr, "/?token=web-token");
    let mut s = s;
    let ev = TestEvent::tls(1);
    s.publish(std::slice::from_ref(&ev));
    assert_eq!(next_event(&mut ws).1, ev.expected());

    // A page of another site, or a rebinding name, gets no page either.
    let other = request(
        s.addr,
        b"GET / HTTP/1.1\r\nHost: evil.example:28256\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(other.status, 403, "{other:?}");
    // The eCaptureQ address serves the stream only.
    let eq = request(
        s.ecaptureq.unwrap(),
        b"GET / HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer web-token\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(eq.status, 404, "{eq:?}");
}
