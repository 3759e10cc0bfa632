//! The harnesses' result files as their binaries write them: `tls.json`
//! (`perf-tls`, see `report::to_json`) and `fanout.json` (`perf-fanout`).
//! Only the fields the summary uses are read; numbers that a harness may
//! write as `null` (a rate over nothing) are `Option`s.

use anyhow::Context as _;
use serde::Deserialize;
use std::path::Path;

/// `tls.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct TlsReport {
    pub meta: TlsMeta,
    pub tls: Vec<TlsScenario>,
    #[serde(default)]
    pub capacity: Vec<CapacityRun>,
}

/// `tls.json` `meta`: the run's settings and machine.
#[derive(Debug, Clone, Deserialize)]
pub struct TlsMeta {
    pub calls: u64,
    pub rounds: u32,
    pub payload: usize,
    pub cpus: usize,
    pub loadavg: Option<f64>,
    #[serde(default)]
    pub kernel: String,
    #[serde(default)]
    pub openssl: Option<String>,
    #[serde(default)]
    pub unix_time: u64,
}

/// One scenario's median round (`tls.json` `tls[]`), with every round.
#[derive(Debug, Clone, Deserialize)]
pub struct TlsScenario {
    /// `no tracing`, `uprobe floor`, `rcapture`, `bpftrace`, `sslsniff`.
    pub scenario: String,
    pub outcome: String,
    pub writes_per_sec: Option<f64>,
    /// The median over rounds of CPU µs per write+read pair (perf-tls since
    /// it has a separate bpf_stats pass; older files only have `load`'s).
    #[serde(default)]
    pub median_cpu_us_per_pair: Option<f64>,
    pub load: Option<TlsLoad>,
    pub expected: Option<u64>,
    pub delivered: Option<u64>,
    pub reported_lost: Option<u64>,
    #[serde(default)]
    pub rounds: Vec<TlsRound>,
}

/// The load generator's own report of one round.
#[derive(Debug, Clone, Deserialize)]
pub struct TlsLoad {
    pub cpu_us_per_pair: Option<f64>,
}

/// One round of a scenario.
#[derive(Debug, Clone, Deserialize)]
pub struct TlsRound {
    pub outcome: String,
    pub expected: Option<u64>,
    pub delivered: Option<u64>,
}

impl TlsScenario {
    /// The worst round's delivered share of expected events, in % (a
    /// round without a count — it failed — counts as 0 %); `None` without rounds
    /// or when nothing was expected (no tracing).
    pub fn worst_delivered_pct(&self) -> Option<f64> {
        if self.rounds.is_empty() || self.rounds.iter().all(|r| r.expected.is_none()) {
            return None;
        }
        self.rounds
            .iter()
            .map(|r| match (r.expected, r.delivered) {
                (Some(e), Some(d)) if e > 0 => d as f64 * 100.0 / e as f64,
                _ => 0.0,
            })
            .reduce(f64::min)
    }
}

/// One kernel→user capacity run (`tls.json` `capacity[]`).
#[derive(Debug, Clone, Deserialize)]
pub struct CapacityRun {
    /// `same CPU (N)` or `ring CPU N → worker CPU M`.
    pub placement: String,
    /// `raw drain (no-op)`, `Worker + protobuf encode`, `Worker + text render`.
    pub consumer: String,
    /// `crossing` or `backlog` (`backlog (rcapture)` in older results).
    pub wakeup: String,
    pub lost: u64,
    pub per_worker_cpu_sec: Option<f64>,
    pub producer_ns_per_record: Option<f64>,
    #[serde(default)]
    pub stalled: bool,
}

/// `fanout.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct FanoutReport {
    pub payload_bytes: usize,
    pub entry_bytes: usize,
    pub batch: u64,
    pub window: u64,
    pub reps: usize,
    pub cpus: usize,
    pub full_load: Vec<FanoutRun>,
    #[serde(default)]
    pub paced: Vec<FanoutRun>,
}

/// One server × client count run (the median of its repetitions).
#[derive(Debug, Clone, Deserialize)]
pub struct FanoutRun {
    /// `rcapture`, `tokio`, `tokio-batched`.
    pub server: String,
    pub clients: usize,
    pub frames: u64,
    pub frames_per_s: Option<f64>,
    pub server_cpu_ns_per_frame: Option<f64>,
    pub server_allocations_per_frame: Option<f64>,
    pub drops: FanoutDrops,
}

/// What the clients found missing.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct FanoutDrops {
    pub missing: u64,
    pub seq_gaps: u64,
    pub idx_gaps: u64,
    pub lagged: u64,
}

impl FanoutDrops {
    pub fn total(&self) -> u64 {
        self.missing + self.seq_gaps + self.idx_gaps + self.lagged
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// Reads a `tls.json`.
pub fn read_tls(path: &Path) -> anyhow::Result<TlsReport> {
    read_json(path)
}

/// Reads a `fanout.json`.
pub fn read_fanout(path: &Path) -> anyhow::Result<FanoutReport> {
    read_json(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn reads_a_real_tls_json() {
        let t = read_tls(&fixture("tls.json")).unwrap();
        let names: Vec<&str> = t.tls.iter().map(|s| s.scenario.as_str()).collect();
        assert_eq!(
            names,
            [
                "no tracing",
                "uprobe floor",
                "rcapture",
                "bpftrace",
                "sslsniff"
            ]
        );
        assert_eq!(t.meta.rounds as usize, t.tls[2].rounds.len());
        assert!(t.tls[2].median_cpu_us_per_pair.is_some());
        assert!(!t.capacity.is_empty());
        // An older one, without the median CPU per pair.
        let t = read_tls(&fixture("tls-sslsniff-failed.json")).unwrap();
        assert!(t.tls.iter().all(|s| s.median_cpu_us_per_pair.is_none()));
        assert!(t.tls[4].writes_per_sec.is_none());
    }

    #[test]
    fn reads_a_real_fanout_json() {
        let f = read_fanout(&fixture("fanout.json")).unwrap();
        assert!(f.full_load.iter().any(|r| r.server == "rcapture"));
        assert!(f.full_load.iter().any(|r| r.server == "tokio-batched"));
    }

    fn round(expected: Option<u64>, delivered: Option<u64>) -> TlsRound {
        TlsRound {
            outcome: "ok".into(),
            expected,
            delivered,
        }
    }

    #[test]
    fn the_worst_round_decides_delivery() {
        let mut s = TlsScenario {
            scenario: "rcapture".into(),
            outcome: "ok".into(),
            writes_per_sec: Some(1.0),
            median_cpu_us_per_pair: None,
            load: None,
            expected: Some(100),
            delivered: Some(100),
            reported_lost: Some(0),
            rounds: vec![round(Some(100), Some(100)), round(Some(100), Some(97))],
        };
        assert_eq!(s.worst_delivered_pct(), Some(97.0));
        // A failed round (no counts) is a round that delivered nothing.
        s.rounds.push(round(None, None));
        assert_eq!(s.worst_delivered_pct(), Some(0.0));
        // No tracing expects nothing.
        s.rounds = vec![round(None, None)];
        assert_eq!(s.worst_delivered_pct(), None);
    }
}
