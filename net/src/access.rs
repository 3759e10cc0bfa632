//! Who may use the server: local users by uid/gid (the owner of a
//! loopback client's socket, [`crate::peer`]), browsers by `Origin`/`Host`
//! (cross-site requests, DNS rebinding) and `Content-Type`, remote clients
//! by the bearer token (compared in constant time).
//!
//! The server serves every process's decrypted TLS and can redirect it
//! anywhere (`POST /config` `event_forward`), so the defaults are strict:
//! root only, loopback names only, JSON bodies only.

use crate::api::ApiResponse;
use crate::http::Request;
use crate::peer;
use std::net::{IpAddr, SocketAddr};

/// Who is allowed besides root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessConfig {
    /// Every local user may connect (the old, open behaviour).
    pub insecure: bool,
    /// Local users allowed besides root.
    pub allow_uids: Vec<u32>,
    /// Local users in any of these groups (primary or supplementary) allowed.
    pub allow_gids: Vec<u32>,
    /// Browser origins allowed besides loopback ones (`http://host:port`);
    /// their hosts are also allowed as `Host`.
    pub allow_origins: Vec<String>,
}

/// Why a request was refused (the `reason` of
/// `ecapture_server_refused_requests_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A local user not allowed by `--allow-uid`/`--allow-gid`.
    LocalUser,
    /// A missing or wrong `--auth-token`.
    Token,
    /// An `Origin` that is not a loopback one or allowed.
    Origin,
    /// A `Host` that is not a loopback name or allowed (DNS rebinding).
    Host,
    /// A `POST` whose body is not declared JSON (a cross-site form).
    ContentType,
}

impl Refusal {
    pub const ALL: [Refusal; 5] = [
        Refusal::LocalUser,
        Refusal::Token,
        Refusal::Origin,
        Refusal::Host,
        Refusal::ContentType,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Refusal::LocalUser => "local_user",
            Refusal::Token => "token",
            Refusal::Origin => "origin",
            Refusal::Host => "host",
            Refusal::ContentType => "content_type",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// What the accept-time check found out about a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAccess {
    /// Allowed (root, an allowed user, `--insecure`), or not a loopback peer
    /// (then the token decides).
    Allowed,
    /// A local user who may not: the 403 message to send.
    Refused(String),
}

impl AccessConfig {
    /// Decides for a connection just accepted from `peer` on `local`: one
    /// `sock_diag` lookup for a loopback peer, nothing otherwise.
    pub fn check_peer(&self, peer: SocketAddr, local: SocketAddr) -> PeerAccess {
        if self.insecure || !peer::is_loopback(peer.ip()) {
            return PeerAccess::Allowed;
        }
        let uid = match peer::peer_uid(peer, local) {
            Ok(uid) => uid,
            Err(e) => {
                return PeerAccess::Refused(format!(
                    "the local user of connection {peer} is not known ({e}), and rcapture's server serves every process's plaintext only to root and the users of --allow-uid/--allow-gid (or to everyone with --insecure)"
                ));
            }
        };
        if uid == 0 || self.allow_uids.contains(&uid) {
            return PeerAccess::Allowed;
        }
        if !self.allow_gids.is_empty()
            && peer::groups_of(uid)
                .iter()
                .any(|g| self.allow_gids.contains(g))
        {
            return PeerAccess::Allowed;
        }
        PeerAccess::Refused(format!(
            "uid {uid} may not use rcapture's server: it serves every process's plaintext; start rcapture with --allow-uid {uid} (or --allow-gid GROUP_ID of one of its groups, or --insecure for every local user)"
        ))
    }

    /// The browser checks of one request from `peer`: `Origin` (every peer),
    /// `Host` (loopback peers: DNS rebinding), and a JSON `Content-Type` on
    /// `POST`. `listen` is the listener's own address (its IP is a valid `Host`).
    pub fn check_request(
        &self,
        req: &Request,
        peer: SocketAddr,
        listen: Option<SocketAddr>,
    ) -> Option<(Refusal, ApiResponse)> {
        if let Some(origin) = req.header("origin")
            && !self.origin_allowed(origin, listen)
        {
            return Some((
                Refusal::Origin,
                ApiResponse::error(
                    403,
                    1,
                    &format!(
                        "Origin {origin} is not allowed: only pages on localhost, 127.0.0.0/8, [::1] or the listen address (start rcapture with --allow-origin {origin} to allow it)"
                    ),
                ),
            ));
        }
        // Every browser sends a Host; a request without one (HTTP/1.0) is
        // not a page's.
        if peer::is_loopback(peer.ip())
            && let Some(host) = req.header("host")
            && !self.host_allowed(host, listen)
        {
            return Some((
                Refusal::Host,
                ApiResponse::error(
                    403,
                    1,
                    &format!(
                        "Host {host:?} is not allowed: only localhost, 127.0.0.0/8, [::1] or the listen address (a page whose name resolves here is refused; --allow-origin http://NAME:PORT allows NAME)"
                    ),
                ),
            ));
        }
        if req.method == "POST" && !is_json(req.header("content-type")) {
            return Some((
                Refusal::ContentType,
                ApiResponse::error(
                    415,
                    1,
                    &format!(
                        "POST {} needs Content-Type: application/json (got {}); other bodies are refused so that a web page cannot post a form here",
                        req.path,
                        req.header("content-type")
                            .map_or("none".to_string(), |c| format!("{c:?}"))
                    ),
                ),
            ));
        }
        None
    }

    /// A loopback origin, one of `--allow-origin`, or the listen address
    /// itself (the viewer's page served from it; an IP cannot be rebound).
    fn origin_allowed(&self, origin: &str, listen: Option<SocketAddr>) -> bool {
        let origin = origin.trim();
        if self
            .allow_origins
            .iter()
            .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
        {
            return true;
        }
        let Some(rest) = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
        else {
            return false;
        };
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') {
            return false;
        }
        let host = host_of(authority);
        loopback_name(host) || is_listen_ip(host, listen)
    }

    fn host_allowed(&self, host_header: &str, listen: Option<SocketAddr>) -> bool {
        let host = host_of(host_header.trim());
        if loopback_name(host) {
            return true;
        }
        if is_listen_ip(host, listen) {
            return true;
        }
        self.allow_origins.iter().any(|o| {
            let rest = o
                .strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"))
                .unwrap_or(o);
            host_of(rest.trim_end_matches('/')).eq_ignore_ascii_case(host)
        })
    }
}

/// `host` of `host[:port]` or `[v6][:port]`.
fn host_of(authority: &str) -> &str {
    match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    }
}

/// Whether `host` is the IP the server listens on (not a wildcard).
fn is_listen_ip(host: &str, listen: Option<SocketAddr>) -> bool {
    matches!((listen, host.parse::<IpAddr>()), (Some(l), Ok(ip)) if !l.ip().is_unspecified() && l.ip() == ip)
}

/// `localhost`, an address of 127.0.0.0/8 or `::1`.
fn loopback_name(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(peer::is_loopback)
}

fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|c| {
        c.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    })
}

/// `Authorization: Bearer TOKEN`, or `?token=` on a WebSocket upgrade (a
/// browser cannot set headers there); `None` when allowed.
pub fn check_token(token: Option<&str>, req: &Request) -> Option<ApiResponse> {
    let token = token?;
    let bearer = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let upgrade = req.header_has_token("upgrade", "websocket");
    let query = req.query_param("token").filter(|_| upgrade);
    let ok = bearer.is_some_and(|b| same(b, token)) || query.is_some_and(|q| same(q, token));
    if ok {
        return None;
    }
    let msg = if bearer.is_some() || query.is_some() {
        "invalid token"
    } else if req.query_param("token").is_some() {
        "?token= is only accepted on the WebSocket upgrade: send Authorization: Bearer TOKEN"
    } else {
        "missing token: send Authorization: Bearer TOKEN (or ?token= on the WebSocket upgrade)"
    };
    let mut r = ApiResponse::error(401, 1, msg);
    r.extra.push(("WWW-Authenticate", "Bearer".into()));
    Some(r)
}

/// Equal, in a time that depends on the lengths only.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_equality() {
        assert!(same("secret", "secret"));
        assert!(!same("secret", "secreT"));
        assert!(!same("secret", "secret2"));
        assert!(!same("", "x"));
        assert!(same("", ""));
    }

    #[test]
    fn loopback_names() {
        let a = AccessConfig::default();
        for ok in [
            "http://localhost:8080",
            "http://127.0.0.1",
            "https://127.9.0.1:1",
            "http://[::1]:3000",
        ] {
            assert!(a.origin_allowed(ok, None), "{ok}");
        }
        for bad in [
            "null",
            "http://evil.example",
            "http://localhost.evil.example",
            "http://127.0.0.1.evil.example:80",
            "file://",
        ] {
            assert!(!a.origin_allowed(bad, None), "{bad}");
        }
        let listen = Some("10.1.2.3:28256".parse().unwrap());
        assert!(a.host_allowed("10.1.2.3:28256", listen));
        assert!(a.host_allowed("LOCALHOST:1", None));
        assert!(!a.host_allowed("evil.example:28256", listen));
        assert!(!a.host_allowed("", listen));
        let b = AccessConfig {
            allow_origins: vec!["http://ui.example:8080".into()],
            ..AccessConfig::default()
        };
        assert!(b.origin_allowed("http://ui.example:8080", None));
        // The page served from the listen address may use it; a wildcard
        // listen address names no origin.
        assert!(a.origin_allowed("http://10.1.2.3:28256", listen));
        assert!(!a.origin_allowed("http://10.1.2.4:28256", listen));
        let any = Some("0.0.0.0:28256".parse().unwrap());
        assert!(!a.origin_allowed("http://0.0.0.0:28256", any));
        assert!(b.host_allowed("ui.example:28256", None));
    }
}
