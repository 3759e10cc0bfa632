//! Forwarding configuration (WIRE.md §4 `event_forward`, §5): raw JSON or CLI
//! flags → a validated [`ForwardConfig`], with an error naming each bad field.

use super::retry::RetryPolicy;
use crate::config::{ConfigError, integer};
use rcapture_core::event::{EventKind, Module};
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// Body format of forwarded batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardFormat {
    /// One `LogBatch`, `application/x-protobuf`.
    Protobuf,
    /// NDJSON lines of WIRE.md §5, `application/x-ndjson`.
    Json,
    /// Each captured HTTP/1.x request re-sent through the proxy at the URL.
    HttpProxy,
}

impl ForwardFormat {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Protobuf => "protobuf",
            Self::Json => "json",
            Self::HttpProxy => "http_proxy",
        }
    }

    /// The format with this wire name.
    pub fn from_name(s: &str) -> Option<Self> {
        [Self::Protobuf, Self::Json, Self::HttpProxy]
            .into_iter()
            .find(|f| f.name() == s)
    }
}

/// A collector URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorUrl {
    /// `http` or `https`.
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, as given (at least `/`).
    pub path_and_query: String,
    /// The URL as given.
    pub raw: String,
}

impl CollectorUrl {
    /// Parses `http(s)://HOST[:PORT][/PATH][?QUERY]`; the query is kept as
    /// is. The URL goes into the request line and `Host` header of every
    /// request: at most [`MAX_URL_BYTES`], visible ASCII only (no space,
    /// CR, LF or other control character: percent-encode them), a host
    /// name of letters, digits, `-`, `.` and `_` or an IP address, a port
    /// of digits.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.len() > MAX_URL_BYTES {
            return Err(format!(
                "url is {} bytes long, over the {MAX_URL_BYTES}-byte limit",
                raw.len()
            ));
        }
        if let Some(b) = raw.bytes().find(|b| !b.is_ascii_graphic()) {
            return Err(format!(
                "url {raw:?} contains the byte {b:#04x}: only visible ASCII is allowed (percent-encode spaces, control and non-ASCII characters)"
            ));
        }
        if raw.contains('#') {
            return Err(format!("url {raw:?} has a #fragment, which is never sent"));
        }
        let (tls, rest) = if let Some(r) = raw.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = raw.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(format!("url {raw:?} must start with http:// or https://"));
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() || authority.contains('@') {
            return Err(format!(
                "url {raw:?} has no host (user info is not supported)"
            ));
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (h, after) = v6
                    .split_once(']')
                    .ok_or_else(|| format!("url {raw:?}: unclosed [ in the host"))?;
                (h.to_string(), after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            },
        };
        check_host(&host, authority.starts_with('['))
            .map_err(|why| format!("url {raw:?}: host {host:?} {why}"))?;
        let port = match port {
            Some(p) => p
                .parse()
                .ok()
                .filter(|_| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    format!("url {raw:?}: port {p:?} is not a number from 1 to 65535")
                })?,
            None if tls => 443,
            None => 80,
        };
        if port == 0 {
            return Err(format!("url {raw:?}: port 0 is not a valid destination"));
        }
        let path_and_query = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok(Self {
            tls,
            host,
            port,
            path_and_query,
            raw: raw.to_string(),
        })
    }

    /// `host:port` for the Host header (IPv6 bracketed, default ports omitted).
    pub fn host_header(&self) -> String {
        let h = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if (self.tls && self.port == 443) || (!self.tls && self.port == 80) {
            h
        } else {
            format!("{h}:{}", self.port)
        }
    }
}

/// Longest collector URL accepted.
pub const MAX_URL_BYTES: usize = 8 * 1024;
/// Most `event_forward.headers` accepted.
pub const MAX_HEADERS: usize = 64;
/// Longest header name and value accepted.
pub const MAX_HEADER_NAME: usize = 256;
pub const MAX_HEADER_VALUE: usize = 8 * 1024;

/// Why `host` is not a host name or IP address (`bracketed`: it was
/// written `[...]`, an IPv6 address).
fn check_host(host: &str, bracketed: bool) -> Result<(), &'static str> {
    if bracketed {
        return host
            .parse::<std::net::Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| "is not an IPv6 address");
    }
    if host.is_empty() || host.len() > 253 {
        return Err("must be 1 to 253 characters long");
    }
    let name_ok = host.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !name_ok {
        return Err(
            "is not a host name (letters, digits, - and _ in dot-separated labels) or an IPv4 address",
        );
    }
    Ok(())
}

/// A validated forwarding setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    pub url: CollectorUrl,
    pub format: ForwardFormat,
    /// Modules forwarded (empty = all).
    pub modules: Vec<Module>,
    /// Event kinds forwarded (empty = all but `packet`, which is sent only
    /// when named).
    pub types: Vec<EventKind>,
    pub batch_size: usize,
    pub batch_timeout: Duration,
    pub gzip: bool,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// `http_proxy` only: which captured requests (`http`, `https`; empty = all).
    pub protocols: Vec<String>,
    /// CA bundle for `https://` collectors (default: the system's roots).
    pub ca_file: Option<PathBuf>,
    /// Bytes of encoded batches waiting to be sent before the oldest are dropped.
    pub queue_bytes: usize,
    /// Loop batches the forwarder may hold before its batcher takes them;
    /// beyond, offered events are dropped and counted. The event server
    /// sets it to half its workers' batch pools, so a forwarder that falls
    /// behind (gzip short of CPU) cannot take every batch from the other
    /// outputs. Not part of `event_forward`.
    pub intake_batches: usize,
    /// Backoff between delivery attempts.
    pub retry: RetryPolicy,
    /// Connect, read and write timeout of the collector connection.
    pub io_timeout: Duration,
    /// Requests in flight at once, each on its own keep-alive connection
    /// (1: one after the other, in order; more: they may complete out of
    /// order, `seq` tells the order).
    pub concurrency: usize,
}

/// Requests in flight by default: two, so the collector's round trip
/// overlaps the next request (`forward_pipeline`: 1.8–2× the events of
/// one at a time against a local sink), as collectors' own clients do
/// (Fluent Bit's http output runs two workers; Vector's http sink grows
/// its concurrency from one). WIRE.md §5 orders entries within a batch.
/// `http_proxy` replays one captured request at a time, in order (its
/// requests carry no `seq`): see [`ForwardConfig::default_concurrency`].
pub const DEFAULT_CONCURRENCY: usize = 2;

/// `intake_batches` of a forwarder started on its own.
pub const INTAKE_BATCHES: usize = 256;

/// Largest `concurrency` accepted.
pub const MAX_CONCURRENCY: usize = 16;

/// Largest batch_size accepted.
pub const MAX_BATCH_SIZE: usize = 100_000;

impl ForwardConfig {
    /// Defaults of WIRE.md §5 for a URL.
    pub fn new(url: CollectorUrl, format: ForwardFormat) -> Self {
        Self {
            url,
            format,
            modules: Vec::new(),
            types: Vec::new(),
            batch_size: 100,
            batch_timeout: Duration::from_millis(1000),
            gzip: false,
            headers: Vec::new(),
            protocols: Vec::new(),
            ca_file: None,
            queue_bytes: 64 << 20,
            intake_batches: INTAKE_BATCHES,
            retry: RetryPolicy::default(),
            io_timeout: Duration::from_secs(10),
            concurrency: Self::default_concurrency(format),
        }
    }

    /// Requests in flight unless `concurrency` is given: one for
    /// `http_proxy` (captured requests are replayed in the order they
    /// were made), [`DEFAULT_CONCURRENCY`] for the batch formats.
    pub fn default_concurrency(format: ForwardFormat) -> usize {
        match format {
            ForwardFormat::HttpProxy => 1,
            _ => DEFAULT_CONCURRENCY,
        }
    }

    /// The `event_forward` object of `GET /config`.
    pub fn to_json(this: Option<&Self>) -> Value {
        let Some(c) = this else {
            return json!({"enabled": false});
        };
        let headers: Map<String, Value> = c
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "enabled": true,
            "url": c.url.raw,
            "format": c.format.name(),
            "modules": c.modules.iter().map(|m| m.name()).collect::<Vec<_>>(),
            "types": c.types.iter().map(|t| t.name()).collect::<Vec<_>>(),
            "batch_size": c.batch_size,
            "batch_timeout_ms": c.batch_timeout.as_millis() as u64,
            "gzip": c.gzip,
            "concurrency": c.concurrency,
            "headers": headers,
            "filter": {"protocols": c.protocols},
        })
    }

    /// Applies an `event_forward` object to the current setup: `Ok(None)`
    /// when forwarding ends up disabled. Fields not given keep their value
    /// (or their default when forwarding was off).
    pub fn patched(current: Option<&Self>, v: &Value) -> Result<Option<Self>, ConfigError> {
        let obj = v.as_object().ok_or_else(|| {
            ConfigError::Decode(format!("event_forward must be an object, got {v}"))
        })?;
        let enabled = match obj.get("enabled") {
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(ConfigError::Decode(format!(
                    "event_forward.enabled must be true or false, got {other}"
                )));
            }
            None => current.is_some() || obj.contains_key("url"),
        };
        if !enabled {
            return Ok(None);
        }
        let url = match obj.get("url") {
            Some(Value::String(s)) => CollectorUrl::parse(s)
                .map_err(|e| ConfigError::Check(format!("event_forward.{e}")))?,
            Some(other) => {
                return Err(ConfigError::Decode(format!(
                    "event_forward.url must be a string, got {other}"
                )));
            }
            None => match current {
                Some(c) => c.url.clone(),
                None => {
                    return Err(ConfigError::Check(
                        "event_forward.url is required to enable forwarding".into(),
                    ));
                }
            },
        };
        let mut c = match current {
            Some(c) => Self { url, ..c.clone() },
            None => Self::new(url, ForwardFormat::Protobuf),
        };
        let format_before = current.map(|c| c.format);
        for (k, v) in obj {
            let field = |what: &str| {
                ConfigError::Decode(format!("event_forward.{k} must be {what}, got {v}"))
            };
            match k.as_str() {
                "enabled" | "url" => {}
                "format" => {
                    let s = v.as_str().ok_or_else(|| field("a string"))?;
                    c.format = ForwardFormat::from_name(s).ok_or_else(|| {
                        ConfigError::Check(format!(
                            "event_forward.format: unknown format {s:?} (known: protobuf, json, http_proxy)"
                        ))
                    })?;
                }
                "modules" => {
                    let arr = v
                        .as_array()
                        .ok_or_else(|| field("an array of module names"))?;
                    c.modules = arr
                        .iter()
                        .map(|m| {
                            let s = m
                                .as_str()
                                .ok_or_else(|| field("an array of module names"))?;
                            Module::from_name(s).ok_or_else(|| {
                                ConfigError::Check(format!(
                                    "event_forward.modules: unknown module {s:?}"
                                ))
                            })
                        })
                        .collect::<Result<_, _>>()?;
                }
                "types" => {
                    let arr = v
                        .as_array()
                        .ok_or_else(|| field("an array of event types"))?;
                    c.types = arr
                        .iter()
                        .map(|t| {
                            let s = t.as_str().ok_or_else(|| field("an array of event types"))?;
                            EventKind::from_name(s).ok_or_else(|| {
                                let known: Vec<_> =
                                    EventKind::ALL.iter().map(|k| k.name()).collect();
                                ConfigError::Check(format!(
                                    "event_forward.types: unknown type {s:?} (known: {})",
                                    known.join(", ")
                                ))
                            })
                        })
                        .collect::<Result<_, _>>()?;
                }
                "batch_size" => {
                    let n = integer(v, &format!("event_forward.{k}"), 1, MAX_BATCH_SIZE as u64)?;
                    c.batch_size = n as usize;
                }
                "batch_timeout_ms" => {
                    let n = integer(v, &format!("event_forward.{k}"), 1, 3_600_000)?;
                    c.batch_timeout = Duration::from_millis(n);
                }
                "gzip" => c.gzip = v.as_bool().ok_or_else(|| field("true or false"))?,
                "concurrency" => {
                    let n = integer(v, &format!("event_forward.{k}"), 1, MAX_CONCURRENCY as u64)?;
                    c.concurrency = n as usize;
                }
                "headers" => {
                    let o = v.as_object().ok_or_else(|| field("an object of strings"))?;
                    if o.len() > MAX_HEADERS {
                        return Err(ConfigError::Check(format!(
                            "event_forward.headers: {} headers, over the limit of {MAX_HEADERS}",
                            o.len()
                        )));
                    }
                    c.headers = o
                        .iter()
                        .map(|(hk, hv)| {
                            let hv = hv.as_str().ok_or_else(|| field("an object of strings"))?;
                            check_header(hk, hv)?;
                            Ok((hk.clone(), hv.to_string()))
                        })
                        .collect::<Result<_, ConfigError>>()?;
                }
                "filter" => {
                    let o = v.as_object().ok_or_else(|| field("an object"))?;
                    if let Some(p) = o.get("protocols") {
                        let arr = p.as_array().ok_or_else(|| {
                            ConfigError::Decode(format!(
                                "event_forward.filter.protocols must be an array, got {p}"
                            ))
                        })?;
                        c.protocols = arr
                            .iter()
                            .map(|x| match x.as_str() {
                                Some(s @ ("http" | "https")) => Ok(s.to_string()),
                                Some(s) => Err(ConfigError::Check(format!(
                                    "event_forward.filter.protocols: unknown protocol {s:?} (known: http, https)"
                                ))),
                                None => Err(ConfigError::Decode(format!(
                                    "event_forward.filter.protocols items must be strings, got {x}"
                                ))),
                            })
                            .collect::<Result<_, _>>()?;
                    }
                }
                other => {
                    return Err(ConfigError::Decode(format!(
                        "unknown event_forward key {other:?} (known: enabled, url, format, modules, types, batch_size, batch_timeout_ms, gzip, concurrency, headers, filter)"
                    )));
                }
            }
        }
        // A new format without a `concurrency` takes that format's default.
        if !obj.contains_key("concurrency") && format_before != Some(c.format) {
            c.concurrency = Self::default_concurrency(c.format);
        }
        Ok(Some(c))
    }
}

/// Refuses header names/values that would break the request.
pub fn check_header(name: &str, value: &str) -> Result<(), ConfigError> {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token || name.len() > MAX_HEADER_NAME {
        let shown: String = name.chars().take(64).collect();
        return Err(ConfigError::Check(format!(
            "event_forward.headers: {shown:?} is not a valid header name (a token of at most {MAX_HEADER_NAME} bytes)"
        )));
    }
    if value.len() > MAX_HEADER_VALUE {
        return Err(ConfigError::Check(format!(
            "event_forward.headers: the value of {name} is {} bytes long, over the {MAX_HEADER_VALUE}-byte limit",
            value.len()
        )));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(ConfigError::Check(format!(
            "event_forward.headers: the value of {name} contains a line break"
        )));
    }
    if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(ConfigError::Check(format!(
            "event_forward.headers: the value of {name} contains a control character"
        )));
    }
    let lower = name.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "content-length" | "transfer-encoding" | "host" | "connection" | "content-encoding"
    ) {
        return Err(ConfigError::Check(format!(
            "event_forward.headers: {name} is set by rcapture and cannot be overridden"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parts_and_query_kept() {
        let u = CollectorUrl::parse(
            "http://127.0.0.1:8123/?query=INSERT%20INTO%20rcapture.events%20FORMAT%20JSONEachRow",
        )
        .unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("127.0.0.1", 8123, false));
        assert_eq!(
            u.path_and_query,
            "/?query=INSERT%20INTO%20rcapture.events%20FORMAT%20JSONEachRow"
        );
        let u = CollectorUrl::parse("https://[::1]/events").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.host_header().as_str()),
            ("::1", 443, "[::1]")
        );
        assert!(CollectorUrl::parse("ftp://x").is_err());
        for bad in [
            "http://c/x\r\nX-Injected: 1",
            "http://c\r\nX-Injected: 1/",
            "http://c/a b",
            "http://c d/",
            "http://c:+80/",
            "http://c/\u{e9}",
            "http://c/#frag",
            "http://[::1/",
            "http://[zz]/",
            "http://a..b/",
            "http://a;b/",
        ] {
            assert!(CollectorUrl::parse(bad).is_err(), "{bad:?}");
        }
        let long = format!("http://c/{}", "a".repeat(MAX_URL_BYTES));
        assert_eq!(
            CollectorUrl::parse(&long).unwrap_err(),
            format!("url is {} bytes long, over the 8192-byte limit", long.len())
        );
        assert!(CollectorUrl::parse("http://x:99999/").is_err());
    }

    /// `types` selects event kinds (packets only when named); a bad name is
    /// refused, naming the known ones.
    #[test]
    fn event_forward_types() {
        let v: Value = serde_json::from_str(
            r#"{"enabled": true, "url": "http://c/", "types": ["packet", "conn"]}"#,
        )
        .unwrap();
        let c = ForwardConfig::patched(None, &v).unwrap().unwrap();
        assert_eq!(c.types, [EventKind::Packet, EventKind::Conn]);
        assert_eq!(
            ForwardConfig::to_json(Some(&c))["types"],
            json!(["packet", "conn"])
        );
        let v: Value =
            serde_json::from_str(r#"{"enabled": true, "url": "http://c/", "types": ["frames"]}"#)
                .unwrap();
        let e = ForwardConfig::patched(None, &v).unwrap_err().to_string();
        assert!(
            e.contains("unknown type \"frames\" (known: data, masterkey, conn, packet"),
            "{e}"
        );
    }

    #[test]
    fn event_forward_object() {
        let v: Value = serde_json::from_str(r#"{"enabled": true, "url": "http://c:8080/events", "format": "json", "modules": ["tls"], "batch_size": 5, "batch_timeout_ms": 200, "gzip": true, "concurrency": 3, "headers": {"Authorization": "Bearer x"}, "filter": {"protocols": ["http"]}}"#).unwrap();
        let c = ForwardConfig::patched(None, &v).unwrap().unwrap();
        assert_eq!(
            (c.format, c.batch_size, c.gzip, c.concurrency),
            (ForwardFormat::Json, 5, true, 3)
        );
        for (bad, code, msg) in [
            (
                json!(0),
                5,
                "event_forward.concurrency: 0 is out of range 1..=16",
            ),
            (
                json!(17),
                5,
                "event_forward.concurrency: 17 is out of range 1..=16",
            ),
            (
                json!("2"),
                4,
                "event_forward.concurrency must be a number, got \"2\"",
            ),
        ] {
            let e = ForwardConfig::patched(Some(&c), &json!({ "concurrency": bad })).unwrap_err();
            assert_eq!((e.code(), e.to_string()), (code, msg.to_string()));
        }
        assert_eq!(
            ForwardConfig::patched(Some(&c), &ForwardConfig::to_json(Some(&c))).unwrap(),
            Some(c.clone())
        );
        assert_eq!(
            ForwardConfig::patched(Some(&c), &json!({"enabled": false})).unwrap(),
            None
        );
        // Requests in flight by default: two for the batch formats, one
        // for http_proxy (replayed in order); a format change without a
        // `concurrency` takes the new format's default, a given one stays.
        let url = json!("http://c/");
        let on = |c: Option<&ForwardConfig>, v: Value| {
            ForwardConfig::patched(c, &v).unwrap().unwrap().concurrency
        };
        assert_eq!(on(None, json!({"url": url})), 2);
        assert_eq!(on(None, json!({"url": url, "format": "http_proxy"})), 1);
        assert_eq!(on(Some(&c), json!({"format": "http_proxy"})), 1);
        assert_eq!(
            on(Some(&c), json!({"format": "json"})),
            3,
            "unchanged format"
        );
        assert_eq!(
            on(Some(&c), json!({"format": "http_proxy", "concurrency": 4})),
            4
        );
        let e = ForwardConfig::patched(
            None,
            &json!({"enabled": true, "url": "http://c/", "batch_size": "5"}),
        )
        .unwrap_err();
        assert_eq!(
            (e.code(), e.to_string()),
            (
                4,
                "event_forward.batch_size must be a number, got \"5\"".to_string()
            )
        );
        let e = ForwardConfig::patched(
            None,
            &json!({"enabled": true, "url": "http://c/", "batch_size": 0}),
        )
        .unwrap_err();
        assert_eq!(e.code(), 5);
        assert_eq!(
            ForwardConfig::patched(None, &json!({"enabled": true}))
                .unwrap_err()
                .code(),
            5
        );
        assert_eq!(
            ForwardConfig::patched(
                None,
                &json!({"enabled": true, "url": "http://c/", "headers": {"Host": "x"}})
            )
            .unwrap_err()
            .code(),
            5
        );
    }
}
