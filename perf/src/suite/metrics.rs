//! The summary's metrics: one table ([`METRICS`]) saying, per metric, which
//! bench id or harness row is measured, what it is compared with and the
//! target; and their evaluation against a run's results. A metric whose
//! input is absent is "not run", with the reason — never a number.

use super::criterion::BenchSet;
use super::harness::{FanoutReport, TlsReport};
use crate::report::ratio;
use serde::Serialize;

/// The part of the suite a metric comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// `cargo bench -p rcapture-benches` (criterion).
    Benches,
    /// `perf-tls` (`tls.json`).
    Tls,
    /// `perf-fanout` (`fanout.json`).
    Fanout,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::Benches, Part::Tls, Part::Fanout];

    pub fn name(self) -> &'static str {
        match self {
            Part::Benches => "benches",
            Part::Tls => "tls",
            Part::Fanout => "fanout",
        }
    }
}

/// What a metric's numbers count. A metric and its reference share a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "&'static str")]
pub enum Unit {
    EventsPerSec,
    BytesPerSec,
    /// Iterations of a bench that handles one batch per iteration.
    BatchesPerSec,
    CallsPerSec,
    FramesPerSec,
    RecordsPerWorkerCpuSec,
    CpuUsPerPair,
    CpuNsPerFrame,
    ProducerNsPerRecord,
    Percent,
    AllocsPerFrame,
}

impl From<Unit> for &'static str {
    fn from(u: Unit) -> Self {
        u.label()
    }
}

impl Unit {
    pub fn label(self) -> &'static str {
        match self {
            Unit::EventsPerSec => "events/s",
            Unit::BytesPerSec => "B/s",
            Unit::BatchesPerSec => "batches/s",
            Unit::CallsPerSec => "calls/s",
            Unit::FramesPerSec => "frames/s",
            Unit::RecordsPerWorkerCpuSec => "records/s per worker CPU s",
            Unit::CpuUsPerPair => "CPU µs per write+read pair",
            Unit::CpuNsPerFrame => "server CPU ns/frame",
            Unit::ProducerNsPerRecord => "producer ns/record",
            Unit::Percent => "%",
            Unit::AllocsPerFrame => "allocations/frame",
        }
    }

    /// `v` with its unit, for the Markdown table.
    pub fn format(self, v: f64) -> String {
        match self {
            Unit::BytesPerSec => format!("{}B/s", si(v)),
            Unit::EventsPerSec
            | Unit::BatchesPerSec
            | Unit::CallsPerSec
            | Unit::FramesPerSec
            | Unit::RecordsPerWorkerCpuSec => {
                let n = si(v);
                // `4.80 M events/s`, `512 events/s`.
                let sep = if n.ends_with(' ') { "" } else { " " };
                format!("{n}{sep}{}", self.label())
            }
            Unit::CpuUsPerPair => format!("{v:.1} µs/pair"),
            Unit::CpuNsPerFrame => format!("{v:.0} ns/frame"),
            Unit::ProducerNsPerRecord => format!("{v:.0} ns/record"),
            Unit::Percent => format!("{v:.2} %"),
            Unit::AllocsPerFrame => format!("{v:.4} allocations/frame"),
        }
    }
}

/// `v` scaled with an SI prefix, ending in a space then the prefix: `1.93 M`, `512 `.
fn si(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2} G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0} ")
    }
}

/// A number taken from a run's results.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Probe {
    /// Criterion: elements per second of a bench id (its throughput counts elements).
    BenchElements(&'static str),
    /// Criterion: bytes per second of a bench id (its throughput counts bytes).
    BenchBytes(&'static str),
    /// Criterion: iterations per second of a bench id; compares benches that
    /// do different things to the same input once per iteration.
    BenchIters(&'static str),
    /// perf-tls: writer calls/s of a scenario's median round.
    TlsWriteRate(&'static str),
    /// perf-tls: process CPU µs per write+read pair, the median over a
    /// scenario's rounds (older tls.json: its median round's).
    TlsCpuPerPair(&'static str),
    /// perf-tls: delivered % of expected events in a scenario's worst round.
    TlsWorstDelivered(&'static str),
    /// perf-tls capacity: records/s per worker CPU second.
    CapacityPerWorkerCpu(CapacityRow),
    /// perf-tls capacity: the producer's CPU ns per record.
    CapacityProducerNs(CapacityRow),
    /// perf-fanout, full load: server CPU ns per delivered frame.
    FanoutCpuPerFrame(FanoutRow),
    /// perf-fanout, full load: frames/s.
    FanoutFramesPerSec(FanoutRow),
    /// perf-fanout, full load: the server thread's allocations per frame.
    FanoutAllocsPerFrame(FanoutRow),
}

/// A capacity run: placement label prefix (`same CPU`, `ring CPU`), consumer, wakeup prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapacityRow {
    pub placement: &'static str,
    pub consumer: &'static str,
    pub wakeup: &'static str,
}

/// A fan-out run: server and client count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanoutRow {
    pub server: &'static str,
    pub clients: usize,
}

/// A run's results, each part loaded or the reason it has none.
#[derive(Debug)]
pub struct Inputs {
    pub benches: Result<BenchSet, String>,
    pub tls: Result<TlsReport, String>,
    pub fanout: Result<FanoutReport, String>,
}

impl Probe {
    pub fn part(self) -> Part {
        match self {
            Probe::BenchElements(_) | Probe::BenchBytes(_) | Probe::BenchIters(_) => Part::Benches,
            Probe::TlsWriteRate(_)
            | Probe::TlsCpuPerPair(_)
            | Probe::TlsWorstDelivered(_)
            | Probe::CapacityPerWorkerCpu(_)
            | Probe::CapacityProducerNs(_) => Part::Tls,
            Probe::FanoutCpuPerFrame(_)
            | Probe::FanoutFramesPerSec(_)
            | Probe::FanoutAllocsPerFrame(_) => Part::Fanout,
        }
    }

    /// Where the number comes from, for the JSON and the table.
    pub fn source(self) -> String {
        match self {
            Probe::BenchElements(id) | Probe::BenchBytes(id) | Probe::BenchIters(id) => {
                id.to_owned()
            }
            Probe::TlsWriteRate(s) | Probe::TlsCpuPerPair(s) | Probe::TlsWorstDelivered(s) => {
                format!("tls.json {s}")
            }
            Probe::CapacityPerWorkerCpu(c) | Probe::CapacityProducerNs(c) => format!(
                "tls.json capacity {}, {}, {}",
                c.placement, c.consumer, c.wakeup
            ),
            Probe::FanoutCpuPerFrame(f)
            | Probe::FanoutFramesPerSec(f)
            | Probe::FanoutAllocsPerFrame(f) => {
                format!("fanout.json {} {} clients", f.server, f.clients)
            }
        }
    }

    /// The number, or why there is none.
    pub fn eval(self, inputs: &Inputs) -> Result<f64, String> {
        match self {
            Probe::BenchElements(id) | Probe::BenchBytes(id) | Probe::BenchIters(id) => {
                let set = inputs.benches.as_ref().map_err(Clone::clone)?;
                let r = set
                    .get(id)
                    .ok_or_else(|| format!("no criterion result for {id}"))?;
                let v = match self {
                    Probe::BenchElements(_) => r.elements_per_sec(),
                    Probe::BenchBytes(_) => r.bytes_per_sec(),
                    _ => r.iters_per_sec(),
                };
                v.ok_or_else(|| format!("{id}: its throughput is {:?}", r.throughput))
            }
            Probe::TlsWriteRate(s) | Probe::TlsCpuPerPair(s) | Probe::TlsWorstDelivered(s) => {
                let t = inputs.tls.as_ref().map_err(Clone::clone)?;
                let row = t
                    .tls
                    .iter()
                    .find(|r| r.scenario == s)
                    .ok_or_else(|| format!("scenario {s:?} not in tls.json"))?;
                let v = match self {
                    Probe::TlsWriteRate(_) => row.writes_per_sec,
                    Probe::TlsCpuPerPair(_) => row
                        .median_cpu_us_per_pair
                        .or_else(|| row.load.as_ref().and_then(|l| l.cpu_us_per_pair)),
                    _ => row.worst_delivered_pct(),
                };
                v.ok_or_else(|| format!("{s}: {}", row.outcome))
            }
            Probe::CapacityPerWorkerCpu(c) | Probe::CapacityProducerNs(c) => {
                let t = inputs.tls.as_ref().map_err(Clone::clone)?;
                let run = t
                    .capacity
                    .iter()
                    .find(|r| {
                        r.placement.starts_with(c.placement)
                            && r.consumer == c.consumer
                            && r.wakeup.starts_with(c.wakeup)
                    })
                    .ok_or_else(|| {
                        format!(
                            "no capacity run {}, {}, {} in tls.json",
                            c.placement, c.consumer, c.wakeup
                        )
                    })?;
                if run.stalled {
                    return Err(format!("capacity run {} stalled", run.consumer));
                }
                match self {
                    Probe::CapacityPerWorkerCpu(_) => run.per_worker_cpu_sec,
                    _ => run.producer_ns_per_record,
                }
                .ok_or_else(|| format!("capacity run {}: no value", run.consumer))
            }
            Probe::FanoutCpuPerFrame(f)
            | Probe::FanoutFramesPerSec(f)
            | Probe::FanoutAllocsPerFrame(f) => {
                let fan = inputs.fanout.as_ref().map_err(Clone::clone)?;
                let run = fan
                    .full_load
                    .iter()
                    .find(|r| r.server == f.server && r.clients == f.clients)
                    .ok_or_else(|| {
                        format!(
                            "no {} run with {} clients in fanout.json",
                            f.server, f.clients
                        )
                    })?;
                if run.frames == 0 {
                    return Err(format!(
                        "{} with {} clients: no frames",
                        f.server, f.clients
                    ));
                }
                match self {
                    Probe::FanoutCpuPerFrame(_) => run.server_cpu_ns_per_frame,
                    Probe::FanoutFramesPerSec(_) => run.frames_per_s,
                    _ => run.server_allocations_per_frame,
                }
                .ok_or_else(|| format!("{} with {} clients: no value", f.server, f.clients))
            }
        }
    }
}

/// What a metric is compared with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reference {
    pub label: &'static str,
    pub probe: Probe,
}

/// Whether a target bounds the value itself or its ratio to the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum On {
    Value,
    Ratio,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    #[serde(rename = ">=")]
    AtLeast,
    #[serde(rename = "<=")]
    AtMost,
}

/// A target from the issues: `on` `op` `bound` (a ratio bound is a fraction: 0.4 = 40 %).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Target {
    pub on: On,
    pub op: Op,
    pub bound: f64,
}

impl Target {
    pub const fn value_at_least(bound: f64) -> Self {
        Self {
            on: On::Value,
            op: Op::AtLeast,
            bound,
        }
    }
    pub const fn value_at_most(bound: f64) -> Self {
        Self {
            on: On::Value,
            op: Op::AtMost,
            bound,
        }
    }
    pub const fn ratio_at_least(bound: f64) -> Self {
        Self {
            on: On::Ratio,
            op: Op::AtLeast,
            bound,
        }
    }

    pub fn met(self, x: f64) -> bool {
        match self.op {
            Op::AtLeast => x >= self.bound,
            Op::AtMost => x <= self.bound,
        }
    }

    /// `≥ 5.00 M events/s`, `ratio ≥ 40 %`.
    pub fn text(self, unit: Unit) -> String {
        let op = match self.op {
            Op::AtLeast => "≥",
            Op::AtMost => "≤",
        };
        match self.on {
            On::Value => format!("{op} {}", unit.format(self.bound)),
            On::Ratio => format!("ratio {op} {}", percent(self.bound)),
        }
    }
}

/// A fraction as a percentage: `0.4` → `40 %`.
pub fn percent(x: f64) -> String {
    if x != 0.0 && x.abs() < 0.1 {
        format!("{:.1} %", x * 100.0)
    } else {
        format!("{:.0} %", x * 100.0)
    }
}

/// One row of [`METRICS`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricSpec {
    /// Stable name in `summary.json`.
    pub key: &'static str,
    pub label: &'static str,
    pub unit: Unit,
    pub measured: Probe,
    pub reference: Option<Reference>,
    pub target: Option<Target>,
    /// Said when the metric has no number (e.g. the cargo feature a bench needs).
    pub hint: Option<&'static str>,
}

/// Whether a metric met its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Met,
    Missed,
    /// Measured, compared, but the issues set no target.
    NoTarget,
    /// No number: the part was skipped or failed, or the bench/row is absent.
    NotRun,
}

/// A target as recorded in `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct TargetOut {
    #[serde(flatten)]
    pub target: Target,
    pub text: String,
}

/// One evaluated metric.
#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    pub key: &'static str,
    pub label: &'static str,
    pub part: Part,
    pub unit: Unit,
    pub measured: Option<f64>,
    pub measured_source: String,
    pub reference: Option<f64>,
    pub reference_label: Option<&'static str>,
    pub reference_source: Option<String>,
    /// measured / reference.
    pub ratio: Option<f64>,
    pub target: Option<TargetOut>,
    /// measured / bound, for a target on the value.
    pub of_target: Option<f64>,
    pub status: Status,
    /// Why a number is missing.
    pub note: Option<String>,
}

/// Evaluates one metric against a run's results.
pub fn evaluate(spec: &MetricSpec, inputs: &Inputs) -> Metric {
    let measured = spec.measured.eval(inputs);
    let reference = spec.reference.map(|r| r.probe.eval(inputs));
    let value = measured.as_ref().ok().copied();
    let ref_value = reference.as_ref().and_then(|r| r.as_ref().ok()).copied();
    let r = value.zip(ref_value).and_then(|(a, b)| ratio(a, b));
    let mut notes = Vec::new();
    if let Err(e) = &measured {
        notes.push(e.clone());
    }
    match (&measured, &reference) {
        // The same reason twice (a whole part without results) is said once.
        (Err(a), Some(Err(b))) if a == b => {}
        (_, Some(Err(e))) => notes.push(format!("reference: {e}")),
        _ => {}
    }
    let status = match (value, spec.target) {
        (None, _) => Status::NotRun,
        (Some(_), None) => Status::NoTarget,
        (Some(v), Some(t)) => match t.on {
            On::Value => Some(v),
            On::Ratio => r,
        }
        .map_or(Status::NotRun, |x| {
            if t.met(x) {
                Status::Met
            } else {
                Status::Missed
            }
        }),
    };
    if !notes.is_empty()
        && let Some(h) = spec.hint
    {
        notes.push(h.to_owned());
    }
    Metric {
        key: spec.key,
        label: spec.label,
        part: spec.measured.part(),
        unit: spec.unit,
        measured: value,
        measured_source: spec.measured.source(),
        reference: ref_value,
        reference_label: spec.reference.map(|r| r.label),
        reference_source: spec.reference.map(|r| r.probe.source()),
        ratio: r,
        target: spec.target.map(|t| TargetOut {
            target: t,
            text: t.text(spec.unit),
        }),
        of_target: match spec.target {
            Some(t) if t.on == On::Value => value.and_then(|v| ratio(v, t.bound)),
            _ => None,
        },
        status,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    }
}

/// Evaluates every metric of `specs`.
pub fn evaluate_all(specs: &[MetricSpec], inputs: &Inputs) -> Vec<Metric> {
    specs.iter().map(|s| evaluate(s, inputs)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_bound_the_value_or_the_ratio() {
        let t = Target::ratio_at_least(0.40);
        assert!(t.met(0.40) && t.met(0.9) && !t.met(0.3999));
        assert_eq!(t.text(Unit::BytesPerSec), "ratio ≥ 40 %");
        let t = Target::value_at_least(5e6);
        assert!(t.met(5e6) && !t.met(4.99e6));
        assert_eq!(t.text(Unit::EventsPerSec), "≥ 5.00 M events/s");
        let t = Target::value_at_most(0.0);
        assert!(t.met(0.0) && !t.met(0.0001));
    }

    #[test]
    fn units_format_with_si_prefixes() {
        assert_eq!(Unit::EventsPerSec.format(4_803_207.6), "4.80 M events/s");
        assert_eq!(Unit::EventsPerSec.format(512.0), "512 events/s");
        assert_eq!(Unit::BytesPerSec.format(18.35e9), "18.35 GB/s");
        assert_eq!(Unit::CallsPerSec.format(28_884.1), "28.9 k calls/s");
        assert_eq!(Unit::CpuNsPerFrame.format(230.2), "230 ns/frame");
        assert_eq!(percent(0.5683), "57 %");
        assert_eq!(percent(0.039), "3.9 %");
        assert_eq!(percent(2.72), "272 %");
    }
}
