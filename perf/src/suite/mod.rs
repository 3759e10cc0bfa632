//! The whole performance suite's summary (`perf-report`): criterion's
//! results, `tls.json` and `fanout.json` read back, a table of metrics with
//! their references, ratios and targets, written as `summary.json` and
//! `summary.md`.

pub mod criterion;
pub mod harness;
pub mod machine;
pub mod metrics;
pub mod render;
pub mod run;
pub mod table;

use std::path::Path;
use std::time::SystemTime;

/// Whether `path` was last written before `since` (an unreadable file counts
/// as older; without `since`, nothing is).
pub fn written_before(path: &Path, since: Option<SystemTime>) -> bool {
    let Some(since) = since else {
        return false;
    };
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_or(true, |t| t < since)
}
