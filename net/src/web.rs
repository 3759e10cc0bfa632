//! The web viewer: `GET /` serves a single page (HTML, script and style
//! embedded in the binary: no CDN, no build step) that opens the WebSocket
//! stream of the same server, decodes its `LogEntry` frames and shows them.
//!
//! The page holds no data, so it is served without `--auth-token` (the page
//! asks for the token and sends it on the stream and API calls) and to any
//! local user (the API answers such a user's page with its 403). The
//! browser checks (`Origin`, `Host`) still apply. A WebSocket upgrade on `/`
//! is not a page request: it stays the event stream (eCaptureQ).

use crate::api::ApiResponse;
use crate::http::Request;

/// The page.
pub const INDEX_HTML: &str = include_str!("web/index.html");
/// Its script (a separate resource: the policy forbids inline script).
pub const APP_JS: &str = include_str!("web/app.js");
/// Its style sheet.
pub const APP_CSS: &str = include_str!("web/app.css");

/// The paths of the page's resources and what each is.
const ASSETS: &[(&str, &str, &str)] = &[
    ("/", "text/html; charset=utf-8", INDEX_HTML),
    ("/web/app.js", "text/javascript; charset=utf-8", APP_JS),
    ("/web/app.css", "text/css; charset=utf-8", APP_CSS),
];

/// Whether `path` is one of the viewer's resources.
pub fn is_asset(path: &str) -> bool {
    ASSETS.iter().any(|(p, _, _)| *p == path)
}

/// The response to a request for one of the viewer's resources (see
/// [`is_asset`]): the resource for `GET` and `HEAD`, 405 otherwise.
pub fn serve(req: &Request) -> ApiResponse {
    let Some((_, content_type, body)) = ASSETS.iter().find(|(p, _, _)| *p == req.path) else {
        return ApiResponse::error(404, 3, &format!("unknown path {}", req.path));
    };
    if req.method != "GET" && req.method != "HEAD" {
        let mut r = ApiResponse::error(
            405,
            1,
            &format!(
                "method {} is not allowed on {} (allowed: GET, HEAD)",
                req.method, req.path
            ),
        );
        r.extra.push(("Allow", "GET, HEAD".into()));
        return r;
    }
    ApiResponse {
        status: 200,
        content_type,
        body: body.as_bytes().to_vec(),
        extra: security_headers(req.header("host")),
    }
}

/// The headers of every viewer resource: a policy that allows the page's
/// own script, style and stream and nothing else (no inline script, no
/// other site, no framing), no content sniffing, no referrer, no caching of
/// a page that changes with the binary.
pub fn security_headers(host: Option<&str>) -> Vec<(&'static str, String)> {
    // `'self'` covers ws: to the same host in CSP 3; the explicit source is
    // for browsers that do not apply that rule yet. Only a plain authority
    // is written into the header.
    let ws = host
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .map(|h| format!(" ws://{h} wss://{h}"))
        .unwrap_or_default();
    vec![
        (
            "Content-Security-Policy",
            format!(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 connect-src 'self'{ws}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
            ),
        ),
        ("X-Content-Type-Options", "nosniff".into()),
        ("X-Frame-Options", "DENY".into()),
        ("Referrer-Policy", "no-referrer".into()),
        ("Cross-Origin-Opener-Policy", "same-origin".into()),
        ("Cross-Origin-Resource-Policy", "same-origin".into()),
        ("Cache-Control", "no-cache".into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str, host: &str) -> Request {
        Request {
            method: method.into(),
            version: 1,
            path: path.into(),
            query: String::new(),
            headers: vec![("host".into(), host.into())],
            body: Vec::new(),
        }
    }

    #[test]
    fn the_page_refers_to_its_own_resources_only() {
        for (path, _, _) in ASSETS.iter().skip(1) {
            assert!(INDEX_HTML.contains(path), "{path}");
        }
        assert!(!INDEX_HTML.contains("<script>"), "no inline script");
        assert!(!INDEX_HTML.contains("http://") && !INDEX_HTML.contains("https://"));
        assert!(!APP_JS.contains("http://") && !APP_JS.contains("https://"));
    }

    #[test]
    fn policy_names_only_a_plain_host() {
        let r = serve(&req("GET", "/", "127.0.0.1:28256"));
        let csp = &r.extra[0].1;
        assert!(
            csp.contains("connect-src 'self' ws://127.0.0.1:28256 wss://127.0.0.1:28256;"),
            "{csp}"
        );
        let r = serve(&req("GET", "/", "x; script-src *"));
        let csp = &r.extra[0].1;
        assert!(csp.contains("connect-src 'self';"), "{csp}");
        assert_eq!(serve(&req("POST", "/web/app.js", "localhost")).status, 405);
    }
}
