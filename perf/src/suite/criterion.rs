//! Criterion's own machine-readable output: `<home>/<bench id>/new/benchmark.json`
//! (the id and its throughput) and `estimates.json` (time per iteration).

use super::written_before;
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

/// Work per iteration, as criterion stores it (`criterion::Throughput`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Throughput {
    Bits(u64),
    Bytes(u64),
    BytesDecimal(u64),
    Elements(u64),
    ElementsAndBytes { elements: u64, bytes: u64 },
}

#[derive(Debug, Deserialize)]
struct BenchmarkFile {
    full_id: String,
    throughput: Option<Throughput>,
}

#[derive(Debug, Deserialize)]
struct Interval {
    lower_bound: f64,
    upper_bound: f64,
}

#[derive(Debug, Deserialize)]
struct Estimate {
    point_estimate: f64,
    confidence_interval: Interval,
}

#[derive(Debug, Deserialize)]
struct EstimatesFile {
    mean: Estimate,
    slope: Option<Estimate>,
}

/// One benchmark's result: criterion's typical time per iteration (the
/// slope of the linear fit when it has one, else the mean — what criterion
/// prints as `time:`) and its throughput.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchResult {
    pub id: String,
    pub ns_per_iter: f64,
    /// 95 % confidence interval of `ns_per_iter`.
    pub ns_per_iter_ci: [f64; 2],
    /// "slope" or "mean".
    pub estimate: &'static str,
    pub throughput: Option<Throughput>,
}

impl BenchResult {
    /// Iterations per second.
    pub fn iters_per_sec(&self) -> Option<f64> {
        (self.ns_per_iter > 0.0).then(|| 1e9 / self.ns_per_iter)
    }

    /// Elements per second, if the bench counts elements.
    pub fn elements_per_sec(&self) -> Option<f64> {
        let n = match self.throughput? {
            Throughput::Elements(n) | Throughput::ElementsAndBytes { elements: n, .. } => n,
            _ => return None,
        };
        Some(n as f64 * self.iters_per_sec()?)
    }

    /// Bytes per second, if the bench counts bytes (or bits).
    pub fn bytes_per_sec(&self) -> Option<f64> {
        let n = match self.throughput? {
            Throughput::Bytes(n)
            | Throughput::BytesDecimal(n)
            | Throughput::ElementsAndBytes { bytes: n, .. } => n as f64,
            Throughput::Bits(n) => n as f64 / 8.0,
            Throughput::Elements(_) => return None,
        };
        Some(n * self.iters_per_sec()?)
    }
}

/// Every benchmark found under a criterion home, by full id (`group/function[/value]`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BenchSet {
    pub benches: BTreeMap<String, BenchResult>,
    /// Result directories that could not be read, with why.
    pub unreadable: Vec<String>,
    /// Results left from an earlier run, not read.
    pub stale: usize,
}

impl BenchSet {
    pub fn get(&self, id: &str) -> Option<&BenchResult> {
        self.benches.get(id)
    }

    pub fn is_empty(&self) -> bool {
        self.benches.is_empty()
    }
}

/// Reads one `new/` directory (holding `benchmark.json` and `estimates.json`).
pub fn read_result(new_dir: &Path) -> anyhow::Result<BenchResult> {
    let read = |name: &str| {
        let p = new_dir.join(name);
        std::fs::read(&p).with_context(|| format!("reading {}", p.display()))
    };
    let b: BenchmarkFile = serde_json::from_slice(&read("benchmark.json")?)
        .with_context(|| format!("parsing {}/benchmark.json", new_dir.display()))?;
    let e: EstimatesFile = serde_json::from_slice(&read("estimates.json")?)
        .with_context(|| format!("parsing {}/estimates.json", new_dir.display()))?;
    let (est, name) = match e.slope {
        Some(s) => (s, "slope"),
        None => (e.mean, "mean"),
    };
    Ok(BenchResult {
        id: b.full_id,
        ns_per_iter: est.point_estimate,
        ns_per_iter_ci: [
            est.confidence_interval.lower_bound,
            est.confidence_interval.upper_bound,
        ],
        estimate: name,
        throughput: b.throughput,
    })
}

/// Every benchmark under `home` (criterion's output directory) whose result
/// was written at or after `since` (all of them without `since`); older
/// ones are counted in `stale`. A missing `home` is an empty set.
pub fn load(home: &Path, since: Option<SystemTime>) -> anyhow::Result<BenchSet> {
    let mut set = BenchSet::default();
    if !home.exists() {
        return Ok(set);
    }
    let mut dirs = vec![home.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if !path.is_dir() {
                continue;
            }
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            match name {
                // Criterion's previous run, change estimates and HTML report: not this run's results.
                "base" | "change" | "report" => {}
                "new" if path.join("benchmark.json").exists() => match read_result(&path) {
                    Ok(_) if written_before(&path.join("estimates.json"), since) => set.stale += 1,
                    Ok(r) => {
                        set.benches.insert(r.id.clone(), r);
                    }
                    Err(e) => set.unreadable.push(format!("{e:#}")),
                },
                _ => dirs.push(path),
            }
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/criterion")
    }

    #[test]
    fn reads_every_bench_of_a_real_run() {
        let set = load(&fixtures(), None).unwrap();
        assert!(set.unreadable.is_empty(), "{:?}", set.unreadable);
        for id in [
            "pipeline_events/encode/256",
            "pipeline_bytes/encode/16384",
            "pipeline_bytes/memcpy/16384",
            "forward_post/protobuf",
            "forward_post/protobuf_gzip",
            "forward_pipeline/protobuf",
            "forward_pipeline/raw_deflate_level1",
            "gzip_backends/zlib-rs",
        ] {
            assert!(set.get(id).is_some(), "{id} missing from the fixture");
        }
        assert_eq!((set.benches.len(), set.stale), (38, 0));
        // The fixture's `base/` (criterion's previous run) holds a decoy of
        // 1 ns per iteration: it is not read as this run's result.
        let r = set.get("pipeline_events/encode/256").unwrap();
        assert!(r.ns_per_iter > 100.0, "{r:?}");
    }

    #[test]
    fn rates_follow_the_throughput_kind() {
        let r = BenchResult {
            id: "g/f".into(),
            ns_per_iter: 500.0,
            ns_per_iter_ci: [490.0, 510.0],
            estimate: "slope",
            throughput: Some(Throughput::Elements(100)),
        };
        assert_eq!(r.iters_per_sec(), Some(2e6));
        assert_eq!(r.elements_per_sec(), Some(2e8));
        assert_eq!(r.bytes_per_sec(), None);
        let b = BenchResult {
            throughput: Some(Throughput::Bytes(16384)),
            ..r.clone()
        };
        assert_eq!(b.bytes_per_sec(), Some(16384.0 * 2e6));
        assert_eq!(b.elements_per_sec(), None);
        let none = BenchResult {
            throughput: None,
            ns_per_iter: 0.0,
            ..r
        };
        assert_eq!(none.iters_per_sec(), None);
    }

    #[test]
    fn slope_is_preferred_to_the_mean() {
        let dir = std::env::temp_dir().join(format!("perf-report-crit.{}", std::process::id()));
        let new = dir.join("g/f/new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(
            new.join("benchmark.json"),
            r#"{"group_id":"g","function_id":"f","value_str":null,"throughput":{"Bytes":256},"full_id":"g/f","directory_name":"g/f","title":"g/f"}"#,
        )
        .unwrap();
        let est = |slope: &str| {
            format!(
                r#"{{"mean":{{"confidence_interval":{{"confidence_level":0.95,"lower_bound":9.0,"upper_bound":11.0}},"point_estimate":10.0,"standard_error":0.5}},"slope":{slope}}}"#
            )
        };
        std::fs::write(new.join("estimates.json"), est("null")).unwrap();
        let r = read_result(&new).unwrap();
        assert_eq!((r.ns_per_iter, r.estimate), (10.0, "mean"));
        std::fs::write(
            new.join("estimates.json"),
            est(r#"{"confidence_interval":{"confidence_level":0.95,"lower_bound":7.0,"upper_bound":9.0},"point_estimate":8.0,"standard_error":0.5}"#),
        )
        .unwrap();
        let r = read_result(&new).unwrap();
        assert_eq!(
            (r.ns_per_iter, r.estimate, r.ns_per_iter_ci),
            (8.0, "slope", [7.0, 9.0])
        );
        // Only results written since the run started are this run's.
        let future = SystemTime::now() + std::time::Duration::from_secs(60);
        let set = load(&dir, Some(future)).unwrap();
        assert_eq!((set.benches.len(), set.stale), (0, 1));
        let set = load(&dir, Some(SystemTime::UNIX_EPOCH)).unwrap();
        assert_eq!((set.benches.len(), set.stale), (1, 0));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
