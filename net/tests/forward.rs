//! Forwarding to collectors (WIRE.md §5) against real processes:
//! `tests/support/collector.py`, mitmdump and clickhouse-server. Batches
//! are built the way workers build them, from synthetic events; no root.

#[path = "forward/batches.rs"]
mod batches;
#[path = "forward/clickhouse.rs"]
mod clickhouse;
#[path = "forward/delivery.rs"]
mod delivery;
#[path = "forward/proxy.rs"]
mod proxy;
#[path = "forward/support.rs"]
mod support;

use rcapture_net::forward::retry::RetryPolicy;
use rcapture_net::forward::{CollectorUrl, ForwardConfig, ForwardFormat};
use std::time::Duration;

/// A config for `url` with quick retries (tests wait less).
fn config(url: &str, format: ForwardFormat) -> ForwardConfig {
    let mut c = ForwardConfig::new(CollectorUrl::parse(url).expect("a valid URL"), format);
    c.retry = RetryPolicy {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(400),
    };
    c.io_timeout = Duration::from_secs(5);
    c
}
