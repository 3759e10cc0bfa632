//! The HTTP API routes of WIRE.md §4: `/config`, the upstream module routes,
//! `/status` and `/metrics`, with upstream's envelope, codes and statuses.

use crate::config::CaptureConfig;
use crate::conn::{ClientCounts, DropReason};
use crate::control::Control;
use crate::eventfile::EventFile;
use crate::forward::{ForwardConfig, ForwardStats, Forwarder};
use crate::http::{Request, envelope};
use crate::metrics::{ClientReport, ForwardTotals, MetricsView, ServerMetrics};
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
    /// Each connected WebSocket client.
    pub ws_clients: &'a [ClientReport],
    pub publish_dropped: u64,
    /// The forwarder in use (replaced by `POST /config` `event_forward`).
    pub forwarder: &'a mut Option<Forwarder>,
    /// `intake_batches` of a forwarder started here.
    pub forward_intake: usize,
    /// The final counts of the forwarders replaced or disabled.
    pub forward_totals: &'a mut ForwardTotals,
    pub event_file: Option<&'a EventFile>,
}

impl std::fmt::Debug for ApiContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiContext").finish_non_exhaustive()
    }
}

/// Upstream's module routes and the module each selects: a route of a
/// module that is not loaded gets a 404 naming it. The routes of the loaded
/// modules come from [`Control::modules`].
const UPSTREAM_ROUTES: &[(&str, &str)] = &[
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
            "GET" => ApiResponse::json(200, 0, "", "ok", config_json(ctx)),
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
                let event_file = ctx.event_file.map(EventFile::stats);
                let text = ctx.metrics.render(&MetricsView {
                    capture: &capture,
                    connections: ctx.connections,
                    ws_clients: ctx.ws_clients,
                    publish_dropped: ctx.publish_dropped,
                    forward: forward_totals(ctx),
                    forward_enabled: ctx.forwarder.is_some(),
                    event_file: event_file.as_ref(),
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
        _ => {
            let modules = ctx.control.modules();
            if let Some(m) = modules.iter().find(|m| m.routes.contains(&path)) {
                return if method == "POST" {
                    update_config(req, ctx, m.name)
                } else {
                    allow("POST")
                };
            }
            match UPSTREAM_ROUTES.iter().find(|(p, _)| *p == path) {
                Some(_) if method != "POST" => allow("POST"),
                Some((_, module)) => {
                    let loaded: Vec<&str> = modules.iter().map(|m| m.name).collect();
                    ApiResponse::json(
                        404,
                        3,
                        module,
                        &format!(
                            "module {module} is not loaded (loaded: {})",
                            loaded.join(", ")
                        ),
                        Value::Null,
                    )
                }
                None => ApiResponse::error(404, 3, &format!("unknown path {path}")),
            }
        }
    }
}

fn update_config(req: &Request, ctx: &mut ApiContext<'_>, module: &str) -> ApiResponse {
    let fail = |e: crate::config::ConfigError| {
        ApiResponse::json(400, e.code(), module, &e.to_string(), Value::Null)
    };
    let next = match ctx.config.patched(&req.body) {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    // `patched` accepted the body, so it is a JSON object.
    let mut body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let current = ctx.forwarder.as_ref().map(Forwarder::config);
    if let Some(v) = body.get_mut("event_forward")
        && let Err(msg) = unredact(v, current)
    {
        return ApiResponse::json(400, 5, module, &msg, Value::Null);
    }
    let forward = match body.get("event_forward") {
        Some(v) => match ForwardConfig::patched(current, v) {
            Ok(f) => Some(f),
            Err(e) => return fail(e),
        },
        None => None,
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
    if let Some(wanted) = forward
        && wanted.as_ref() != ctx.forwarder.as_ref().map(Forwarder::config)
    {
        if let Some(old) = ctx.forwarder.take() {
            // The old setup flushes what it holds, briefly, on a thread of
            // its own: the loop does not wait. Its counts stay in the totals.
            ctx.forward_totals
                .retire_in_background(old, std::time::Duration::from_millis(500));
        }
        if let Some(mut cfg) = wanted {
            cfg.intake_batches = ctx.forward_intake;
            match Forwarder::start(cfg) {
                Ok(f) => *ctx.forwarder = Some(f),
                Err(e) => {
                    return ApiResponse::json(
                        500,
                        2,
                        module,
                        &format!("starting the forwarder failed: {e}"),
                        Value::Null,
                    );
                }
            }
        }
    }
    ApiResponse::json(200, 0, module, "ok", config_json(ctx))
}

/// What `GET /config` shows instead of a forward header's value (a
/// collector credential). Posting it back keeps the value in use.
pub const REDACTED: &str = "<redacted>";

fn config_json(ctx: &ApiContext<'_>) -> Value {
    let mut v = ctx.config.to_json();
    let mut f = ForwardConfig::to_json(ctx.forwarder.as_ref().map(Forwarder::config));
    if let Some(h) = f.get_mut("headers").and_then(Value::as_object_mut) {
        for value in h.values_mut() {
            *value = REDACTED.into();
        }
    }
    v["event_forward"] = f;
    v
}

/// Puts the values in use back for the headers of an `event_forward` patch
/// that say [`REDACTED`] (a `GET /config` posted back).
fn unredact(patch: &mut Value, current: Option<&ForwardConfig>) -> Result<(), String> {
    let Some(h) = patch.get_mut("headers").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    for (name, value) in h.iter_mut() {
        if value.as_str() != Some(REDACTED) {
            continue;
        }
        let known = current.and_then(|c| {
            c.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        });
        match known {
            Some(v) => *value = v.into(),
            None => {
                return Err(format!(
                    "event_forward.headers: {name} is {REDACTED:?}, but no header {name} is in use to keep: give its value"
                ));
            }
        }
    }
    Ok(())
}

/// The forwarders' counters: the replaced ones' and the running one's.
fn forward_totals(ctx: &ApiContext<'_>) -> Option<ForwardStats> {
    ctx.forward_totals
        .with(ctx.forwarder.as_ref().map(Forwarder::stats))
}

fn forward_json(ctx: &ApiContext<'_>) -> Value {
    let Some(s) = forward_totals(ctx) else {
        return Value::Null;
    };
    json!({
        "enabled": ctx.forwarder.is_some(),
        "retired": ctx.forward_totals.retired_count,
        "sent_events": s.sent_events,
        "sent_batches": s.sent_batches,
        "failed_batches": s.failed_batches,
        "failed_events": s.failed_events,
        "retries": s.retries,
        "dropped_events": s.dropped_events,
        "skipped_events": s.skipped_events,
        "malformed_requests": s.malformed_requests,
        "queue_bytes": s.queue_bytes,
        "last_error": s.last_error,
    })
}

fn by_reason(c: &ClientCounts) -> Value {
    DropReason::ALL
        .iter()
        .map(|r| (r.name().to_string(), Value::from(c.dropped_for(*r))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn client_json(c: &ClientReport) -> Value {
    let mut v = json!({
        "client": c.name,
        "seq": c.counts.seq,
        "sent": c.counts.sent,
        "queued": c.queued,
        "dropped": c.counts.dropped_total(),
        "dropped_by_reason": by_reason(&c.counts),
        "spilled": c.counts.spilled,
        "spill_bytes": c.spill_bytes,
    });
    if let Some(why) = c.closed {
        v["closed"] = why.into();
    }
    v
}

fn status(ctx: &ApiContext<'_>) -> Value {
    let modules = ctx.control.modules();
    let c = ctx.control.counters();
    let ws = ctx.metrics.ws_totals(ctx.ws_clients);
    json!({
        "ready": !modules.is_empty() && modules.iter().all(|m| m.attached),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": ctx.started.elapsed().as_secs(),
        "modules": modules.iter().map(|m| json!({
            "name": m.name,
            "target": m.target,
            "version": m.version,
            "probes": m.probes,
            "attached": m.attached,
            "routes": m.routes,
            "skipped": m.skipped.iter().map(|(k, n)| (k.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "objects": m.objects,
            "files": m.files.iter().map(|f| json!({
                "path": f.path,
                "process_path": f.process_path,
                "mount_ns": f.mount_ns,
                "version": f.version,
                "dev_ino": f.dev_ino,
                "probes": f.probes,
                "processes": f.processes,
                "attached_at": f.attached_at,
                "object": f.object,
            })).collect::<Vec<_>>(),
            "discovery": m.discovery.as_ref().map_or(Value::Null, |d| json!({
                "watching": d.watching,
                "attached_later": d.attached_later,
                "refused": d.refused,
                "held": d.held,
                "resumed": d.resumed,
                "timeouts": d.timeouts,
                "hold_us_last": d.hold_us_last,
                "hold_us_max": d.hold_us_max,
                "hold_us_total": d.hold_us_total,
                "events_lost": d.events_lost,
                "signals_failed": d.signals_failed,
                "executables_checked": d.executables_checked,
                "last_scan_secs_ago": d.last_scan_secs_ago,
            })),
        })).collect::<Vec<_>>(),
        "counters": {
            "captured": c.captured,
            "lost_kernel": c.lost_kernel(),
            "truncated_events": c.truncated_events,
            "truncated_bytes": c.truncated_bytes,
            "filtered": c.filtered,
            "malformed": c.malformed,
            "incomplete_calls": c.incomplete_calls,
            "orphan_records": c.orphan_records,
            "orphan_bytes": c.orphan_bytes,
            "evicted_calls": c.evicted_calls,
            "output_dropped": c.output_dropped,
            "pcap": c.pcap.as_ref().map_or(Value::Null, |p| json!({
                "packets": p.packets,
                "packets_written": p.packets_written,
                "packets_dropped": p.packets_dropped,
                "packets_behind": p.packets_behind,
                "packets_early": p.packets_early,
                "secrets": p.secrets,
                "secrets_dropped": p.secrets_dropped,
                "secret_lines_written": p.secret_lines_written,
                "secret_lines_dropped": p.secret_lines_dropped,
                "duplicate_lines": p.duplicate_lines,
                "bytes": p.bytes,
                "files_rotated": p.files_rotated,
                "last_error": p.last_error,
            })),
            "ws_clients": ctx.ws_clients.len(),
            "ws_sent": ws.sent,
            "ws_dropped": ws.dropped_total(),
            "ws_dropped_by_reason": by_reason(&ws),
            "ws_spilled": ws.spilled,
            "ws_spill_bytes": ctx.ws_clients.iter().map(|c| c.spill_bytes).sum::<u64>(),
            "server_queue_dropped": ctx.publish_dropped,
            "forward": forward_json(ctx),
            "event_file": ctx.event_file.map_or(Value::Null, |f| {
                let s = f.stats();
                json!({"written_events": s.written_events, "dropped_events": s.dropped_events,
                       "bytes": s.bytes, "files_rotated": s.files_rotated, "last_error": s.last_error})
            }),
        },
        "websocket": {
            "clients": ctx.ws_clients.iter().map(client_json).collect::<Vec<_>>(),
            "closed": ctx.metrics.ws_recent_closed.iter().map(client_json).collect::<Vec<_>>(),
            "closed_total": ctx.metrics.ws_closed_clients,
        },
    })
}
