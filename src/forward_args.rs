//! `--forward*` flags → a validated `ForwardConfig` (same checks as the
//! `event_forward` object of `POST /config`).

use crate::cli::{EventFileFormatArg, ForwardArgs, ForwardFormatArg};
use anyhow::{Context, bail};
use rcapture_net::eventfile::{EventFileConfig, EventFileFormat};
use rcapture_net::forward::config::ForwardConfig;
use serde_json::{Map, Value, json};

/// The forwarding setup of the flags, if `--forward` is given.
pub fn forward_config(a: &ForwardArgs) -> anyhow::Result<Option<ForwardConfig>> {
    let Some(url) = &a.forward else {
        return Ok(None);
    };
    let mut headers = Map::new();
    for (h, from) in crate::secrets::forward_headers(a)? {
        let Some((k, v)) = h.split_once(':') else {
            // The line is not echoed: it may hold a secret.
            bail!("{from}: a header is `Name: value`, and this line has no colon");
        };
        headers.insert(k.trim().to_string(), Value::String(v.trim().to_string()));
    }
    let format = match a.forward_format {
        ForwardFormatArg::Protobuf => "protobuf",
        ForwardFormatArg::Json => "json",
        ForwardFormatArg::HttpProxy => "http_proxy",
    };
    let mut v = json!({
        "enabled": true,
        "url": url,
        "format": format,
        "modules": a.forward_modules,
        "types": a.forward_types,
        "batch_size": a.batch_size,
        "batch_timeout_ms": a.batch_timeout_ms,
        "gzip": a.gzip,
        "headers": headers,
    });
    if let Some(n) = a.forward_concurrency {
        v["concurrency"] = n.into();
    }
    let mut cfg = ForwardConfig::patched(None, &v)
        .map_err(|e| anyhow::anyhow!("{e} (from the --forward flags)"))?
        .context("--forward given but forwarding ended up disabled")?;
    if let Some(ca) = &a.forward_ca {
        if !ca.is_file() {
            bail!("--forward-ca {}: no such file", ca.display());
        }
        cfg.ca_file = Some(ca.clone());
    }
    if a.forward_queue_bytes < 64 * 1024 {
        bail!("--forward-queue-bytes must be at least 65536");
    }
    cfg.queue_bytes = a.forward_queue_bytes;
    Ok(Some(cfg))
}

/// The event file of the flags, if `--event-file` is given; its files
/// get `mode`.
pub fn event_file_config(a: &ForwardArgs, mode: u32) -> Option<EventFileConfig> {
    let path = a.event_file.clone()?;
    let format = match a.event_file_format {
        EventFileFormatArg::Protobuf => EventFileFormat::Protobuf,
        EventFileFormatArg::Json => EventFileFormat::Json,
    };
    let mut cfg = EventFileConfig::new(path, format, a.event_file_max_bytes);
    cfg.mode = mode;
    Some(cfg)
}
