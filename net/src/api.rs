//! The HTTP API routes of WIRE.md §4: `/config`, the upstream module routes,
//! `/status` and `/metrics`, with upstream's envelope, codes and statuses.

use crate::config::CaptureConfig;
use crate::control::Control;
use crate::http::{Request, envelope};
use crate::metrics::{MetricsView, ServerMetrics};
use serde_json::{Value, json};
use std::time::Instant;

/// A response to write.
#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub extra: Vec<(&'static str, String)>,
}

impl ApiResponse {
    /// A JSON envelope response.
    pub fn json(status: u16, code: u8, module: &str, msg: &str, data: Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: envelope(code, module, msg, data),
            extra: Vec::new(),
        }
    }

    /// An error: HTTP status, envelope code, message.
    pub fn error(status: u16, code: u8, msg: &str) -> Self {
        Self::json(status, code, "", msg, Value::Null)
    }
}

/// Everything a route may read or change.
pub struct ApiContext<'a> {
    pub control: &'a dyn Control,
    pub config: &'a mut CaptureConfig,
    pub metrics: &'a ServerMetrics,
    pub started: Instant,
    pub connections: usize,
    pub ws_clients: &'a [(String, u64)],
    pub publish_dropped: u64,
}

impl std::fmt::Debug for ApiContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiContext").finish_non_exhaustive()
    }
}

/// Upstream's module routes and the module each selects.
const MODULE_ROUTES: &[(&str, &str)] = &[
    ("/tls", "tls"),
    ("/openssl", "tls"),
    ("/gnutls", "gnutls"),
    ("/nss", "nss"),
    ("/nspr", "nss"),
    ("/gotls", "gotls"),
    ("/bash", "bash"),
    ("/mysqld", "mysqld"),
    ("/postgres", "postgres"),
];

/// Routes one request.
pub fn route(req: &Request, ctx: &mut ApiContext<'_>) -> ApiResponse {
    let path = req.path.as_str();
    let method = req.method.as_str();
    let allow = |allowed: &str| {
        let mut r = ApiResponse::error(
            405,
            1,
            &format!("method {method} is not allowed on {path} (allowed: {allowed})"),
        );
        r.extra.push(("Allow", allowed.to_string()));
        r
    };
    match path {
        "/config" => match method {
            "GET" => ApiResponse::json(200, 0, "", "ok", ctx.config.to_json()),
            "POST" => update_config(req, ctx, ""),
            _ => allow("GET, POST"),
        },
        "/status" => match method {
            "GET" => ApiResponse::json(200, 0, "", "ok", status(ctx)),
            _ => allow("GET"),
        },
        "/metrics" => match method {
            "GET" => {
                let capture = ctx.control.counters();
                let text = ctx.metrics.render(&MetricsView {
                    capture: &capture,
                    connections: ctx.connections,
                    ws_clients: ctx.ws_clients,
                    publish_dropped: ctx.publish_dropped,
                });
                ApiResponse {
                    status: 200,
                    content_type: "text/plain; version=0.0.4; charset=utf-8",
                    body: text.into_bytes(),
                    extra: Vec::new(),
                }
            }
            _ => allow("GET"),
        },
        _ => match MODULE_ROUTES.iter().find(|(p, _)| *p == path) {
            Some((_, module)) if method != "POST" => {
                let _ = module;
                allow("POST")
            }
            Some((_, "tls")) => update_config(req, ctx, "tls"),
            Some((_, module)) => ApiResponse::json(
                404,
                3,
                module,
                &format!("module {module} is not available in this build (available: tls)"),
                Value::Null,
            ),
            None => ApiResponse::error(404, 3, &format!("unknown path {path}")),
        },
    }
}

fn update_config(req: &Request, ctx: &mut ApiContext<'_>, module: &str) -> ApiResponse {
    let next = match ctx.config.patched(&req.body) {
        Ok(n) => n,
        Err(e) => return ApiResponse::json(400, e.code(), module, &e.to_string(), Value::Null),
    };
    if next.live != ctx.config.live
        && let Err(e) = ctx.control.apply(next.live)
    {
        return ApiResponse::json(
            500,
            2,
            module,
            &format!("applying the config failed: {e}"),
            Value::Null,
        );
    }
    *ctx.config = next;
    ApiResponse::json(200, 0, module, "ok", ctx.config.to_json())
}

fn status(ctx: &ApiContext<'_>) -> Value {
    let modules = ctx.control.modules();
    let c = ctx.control.counters();
    let ws_dropped: u64 = ctx.metrics.ws_dropped;
    json!({
        "ready": !modules.is_empty() && modules.iter().all(|m| m.attached),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": ctx.started.elapsed().as_secs(),
        "modules": modules.iter().map(|m| json!({"name": m.name, "probes": m.probes, "attached": m.attached})).collect::<Vec<_>>(),
        "counters": {
            "captured": c.captured,
            "lost_kernel": c.lost_kernel(),
            "truncated_bytes": c.truncated_bytes,
            "filtered": c.filtered,
            "ws_clients": ctx.ws_clients.len(),
            "ws_sent": ctx.metrics.ws_sent,
            "ws_dropped": ws_dropped,
            "server_queue_dropped": ctx.publish_dropped,
            "forward": Value::Null,
        },
    })
}
