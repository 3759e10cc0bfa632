//! `summary.json` (everything) and `summary.md` (the short table).

use super::criterion::BenchResult;
use super::machine::Machine;
use super::metrics::{Inputs, Metric, Part, Status, percent};
use super::run::{Outcome, PartRun};
use serde::Serialize;
use std::fmt::Write as _;

/// Quick (smoke test) or full run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Quick,
    Full,
}

/// One criterion bench in `summary.json`, with its rates.
#[derive(Debug, Serialize)]
pub struct BenchOut<'a> {
    #[serde(flatten)]
    pub result: &'a BenchResult,
    pub elements_per_sec: Option<f64>,
    pub bytes_per_sec: Option<f64>,
}

/// `summary.json`.
#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    /// Bumped when a field changes meaning.
    pub schema: u32,
    pub mode: Mode,
    /// perf-report's own command line.
    pub command: Vec<String>,
    pub machine: &'a Machine,
    pub parts: &'a [PartRun],
    pub metrics: &'a [Metric],
    /// Every criterion bench of the run, by id.
    pub benches: Vec<BenchOut<'a>>,
    /// The harnesses' settings as they recorded them.
    pub tls_settings: Option<serde_json::Value>,
    pub fanout_settings: Option<serde_json::Value>,
}

impl<'a> Summary<'a> {
    pub fn new(
        mode: Mode,
        command: Vec<String>,
        machine: &'a Machine,
        parts: &'a [PartRun],
        metrics: &'a [Metric],
        inputs: &'a Inputs,
    ) -> Self {
        let benches = inputs.benches.as_ref().ok();
        let tls = inputs.tls.as_ref().ok();
        let fanout = inputs.fanout.as_ref().ok();
        Self {
            schema: 1,
            mode,
            command,
            machine,
            parts,
            metrics,
            benches: benches
                .into_iter()
                .flat_map(|b| b.benches.values())
                .map(|r| BenchOut {
                    result: r,
                    elements_per_sec: r.elements_per_sec(),
                    bytes_per_sec: r.bytes_per_sec(),
                })
                .collect(),
            tls_settings: tls.map(|t| {
                serde_json::json!({
                    "calls": t.meta.calls,
                    "rounds": t.meta.rounds,
                    "payload": t.meta.payload,
                    "cpus": t.meta.cpus,
                    "loadavg": t.meta.loadavg,
                    "kernel": t.meta.kernel,
                    "openssl": t.meta.openssl,
                    "unix_time": t.meta.unix_time,
                })
            }),
            fanout_settings: fanout.map(|f| {
                let mut clients: Vec<usize> = f.full_load.iter().map(|r| r.clients).collect();
                clients.dedup();
                let drops: u64 = f.full_load.iter().map(|r| r.drops.total()).sum();
                serde_json::json!({
                    "payload_bytes": f.payload_bytes,
                    "entry_bytes": f.entry_bytes,
                    "batch": f.batch,
                    "window": f.window,
                    "reps": f.reps,
                    "cpus": f.cpus,
                    "client_counts": clients,
                    "drops": drops,
                })
            }),
        }
    }

    /// The short Markdown report.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let m = self.machine;
        s.push_str("# rcapture performance summary\n\n");
        s.push_str(match self.mode {
            Mode::Quick => {
                "**Quick run** — small sizes, a smoke test of the whole suite: its numbers are not measurements.\n\n"
            }
            Mode::Full => "**Full run.**\n\n",
        });
        let _ = writeln!(
            s,
            "{} → {}; commit `{}`{}; {} CPUs{}; kernel {}; load average (1 min) {} at start, {} at end.\n",
            m.started,
            m.finished,
            m.git_commit
                .as_deref()
                .map_or("?", |c| &c[..c.len().min(12)]),
            if m.git_dirty == Some(true) {
                " with uncommitted changes"
            } else {
                ""
            },
            m.cpus,
            m.cpu_model
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default(),
            m.kernel.as_deref().unwrap_or("?"),
            load1(m.loadavg_start),
            load1(m.loadavg_end),
        );
        s.push_str("| part | outcome | time |\n|---|---|---:|\n");
        for p in self.parts {
            let outcome = match p.outcome {
                Outcome::Ran => "ran".to_owned(),
                Outcome::Skipped => "skipped".to_owned(),
                Outcome::Failed => "**failed**".to_owned(),
                Outcome::Reused => "earlier results".to_owned(),
            };
            let _ = writeln!(
                s,
                "| {} | {}{} | {} |",
                p.part,
                outcome,
                p.reason
                    .as_deref()
                    .map(|r| format!(": {}", cell(r)))
                    .unwrap_or_default(),
                if matches!(p.outcome, Outcome::Ran | Outcome::Failed) && p.secs > 0.0 {
                    format!("{:.0} s", p.secs)
                } else {
                    "–".to_owned()
                },
            );
        }
        s.push_str("\n| metric | measured | reference | ratio | target | met? |\n");
        s.push_str("|---|---:|---|---:|---|---|\n");
        for x in self.metrics {
            let measured = x
                .measured
                .map_or("not run".to_owned(), |v| x.unit.format(v));
            let reference = match x.reference_label {
                None => "–".to_owned(),
                Some(label) => format!(
                    "{label}: {}",
                    x.reference
                        .map_or("not run".to_owned(), |v| x.unit.format(v))
                ),
            };
            let met = match x.status {
                Status::Met => "yes".to_owned(),
                Status::Missed => match x.of_target {
                    Some(f) => format!("**no** ({} of target)", percent(f)),
                    None => "**no**".to_owned(),
                },
                Status::NoTarget => "–".to_owned(),
                Status::NotRun => "not run".to_owned(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                cell(x.label),
                measured,
                cell(&reference),
                x.ratio.map_or("–".to_owned(), percent),
                x.target.as_ref().map_or("–", |t| t.text.as_str()),
                met,
            );
        }
        let unmapped = self.unmapped_groups();
        if !unmapped.is_empty() {
            let _ = writeln!(
                s,
                "\nAlso run, without a row here (numbers in `summary.json`): {}.",
                unmapped.join(", ")
            );
        }
        // Metrics of a part that did not run are explained by the parts table above.
        let part_ran = |p: Part| {
            self.parts
                .iter()
                .any(|r| r.part == p.name() && matches!(r.outcome, Outcome::Ran | Outcome::Reused))
        };
        let notes: Vec<&Metric> = self
            .metrics
            .iter()
            .filter(|x| x.note.is_some() && part_ran(x.part))
            .collect();
        if !notes.is_empty() {
            s.push_str("\nNo number:\n\n");
            for x in notes {
                // The first line of each reason (a child's error may be a whole traceback; summary.json has it all).
                let note = x.note.as_deref().unwrap_or_default();
                let first: Vec<&str> = note
                    .split("; ")
                    .map(|part| part.lines().next().unwrap_or(""))
                    .collect();
                let _ = writeln!(s, "- {}: {}", x.label, first.join("; "));
            }
        }
        s.push_str(
            "\nratio = measured / reference. `summary.json` has each metric's source (criterion \
             bench id or harness row), every criterion bench of the run and each part's command.\n",
        );
        s
    }
}

impl Summary<'_> {
    /// Bench groups with ids no metric uses, as `group (n)`: a new bench shows up here until it has a row.
    fn unmapped_groups(&self) -> Vec<String> {
        let used: Vec<&str> = self
            .metrics
            .iter()
            .filter(|m| m.part == Part::Benches)
            .flat_map(|m| {
                [
                    Some(m.measured_source.as_str()),
                    m.reference_source.as_deref(),
                ]
            })
            .flatten()
            .collect();
        let mut groups: Vec<(String, usize)> = Vec::new();
        for b in &self.benches {
            if used.contains(&b.result.id.as_str()) {
                continue;
            }
            let group = b.result.id.split('/').next().unwrap_or("").to_owned();
            match groups.iter_mut().find(|(g, _)| *g == group) {
                Some((_, n)) => *n += 1,
                None => groups.push((group, 1)),
            }
        }
        groups
            .into_iter()
            .map(|(g, n)| format!("{g} ({n})"))
            .collect()
    }
}

fn load1(l: Option<[f64; 3]>) -> String {
    l.map_or("?".to_owned(), |l| format!("{:.2}", l[0]))
}

/// Text safe inside a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "/").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::metrics::{Inputs, evaluate_all};
    use crate::suite::table::METRICS;
    use crate::suite::{criterion, harness};
    use std::path::Path;

    fn machine() -> Machine {
        Machine {
            cpus: 2,
            cpu_model: Some("AMD EPYC".into()),
            kernel: Some("6.18.44".into()),
            loadavg_start: Some([4.17, 3.0, 2.0]),
            loadavg_end: Some([10.0, 5.0, 3.0]),
            started: "2026-11-26T09:08:06Z".into(),
            finished: "2026-11-26T09:12:51Z".into(),
            git_commit: Some("61e8d544e39fdeadbeef".into()),
            git_dirty: Some(true),
            root: true,
        }
    }

    #[test]
    fn the_markdown_table_of_a_real_run() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let inputs = Inputs {
            benches: Ok(criterion::load(&dir.join("criterion"), None).unwrap()),
            tls: Ok(harness::read_tls(&dir.join("tls-sslsniff-failed.json")).unwrap()),
            fanout: Err("fanout failed: exit status: 1: Error: x | y".into()),
        };
        let metrics = evaluate_all(METRICS, &inputs);
        let m = machine();
        let ran = |part, secs| PartRun {
            part,
            outcome: Outcome::Ran,
            reason: None,
            command: vec!["cmd".into()],
            secs,
        };
        let parts = [
            ran("benches", 249.4),
            ran("tls", 29.0),
            PartRun::failed("fanout", "exit status: 1: Error: x | y", Vec::new()),
        ];
        let s = Summary::new(
            Mode::Quick,
            vec!["perf-report".into(), "--quick".into()],
            &m,
            &parts,
            &metrics,
            &inputs,
        );
        let md = s.to_markdown();
        assert!(md.contains("**Quick run**"), "{md}");
        assert!(
            md.contains("commit `61e8d544e39f` with uncommitted changes; 2 CPUs (AMD EPYC)"),
            "{md}"
        );
        assert!(md.contains("| benches | ran | 249 s |"), "{md}");
        assert!(md.contains("| tls | ran | 29 s |"), "{md}");
        assert!(
            md.contains("| fanout | **failed**: exit status: 1: Error: x / y | – |"),
            "{md}"
        );
        assert!(md.contains("| metric | measured | reference | ratio | target | met? |"));
        assert!(
            md.contains(
                "| encode, 16 KiB payload, vs memcpy | 20.18 GB/s | memcpy of the 16 KiB payload: 38.87 GB/s | 52 % | ratio ≥ 40 % | yes |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| encode, 256 B payload | 4.06 M events/s | – | – | ≥ 5.00 M events/s | **no** (81 % of target) |"),
            "{md}"
        );
        assert!(
            md.contains("| fan-out to 64 clients, server allocations | not run | – | – | ≤ 0.0000 allocations/frame | not run |"),
            "{md}"
        );
        assert!(
            md.contains("Also run, without a row here (numbers in `summary.json`): forward_body (4), forward_post (1), gzip_backends (6), ndjson_256 (2), pipeline_bytes (6), pipeline_events (3), stages_256 (4).\n"),
            "{md}"
        );
        // The sslsniff traceback is cut to its first line.
        assert!(md.contains("- TLS load under rcapture, vs BCC sslsniff: reference: sslsniff: error: sslsniff exited (exit status: 1) before it was ready: cannot attach uprobe, Invalid argument\n"), "{md}");
        assert!(!md.contains("Traceback"));
        // A part that did not run is explained once, in the parts table.
        assert!(!md.contains("- fan-out"), "{md}");

        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["mode"], "quick");
        assert_eq!(j["parts"][2]["outcome"], "failed");
        let m0 = &j["metrics"][0];
        assert_eq!(m0["key"], "encode_256_events_per_s");
        assert_eq!(m0["unit"], "events/s");
        assert_eq!(m0["status"], "missed");
        assert_eq!(m0["target"]["on"], "value");
        assert_eq!(m0["target"]["op"], ">=");
        assert_eq!(m0["target"]["bound"], 5e6);
        assert_eq!(j["benches"].as_array().unwrap().len(), 38);
        assert_eq!(j["tls_settings"]["calls"], 20000);
        assert!(j["fanout_settings"].is_null());
    }
}
