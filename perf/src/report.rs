//! Results: BPF program run-time statistics, `tls.json` and the `tls.md` table.

use crate::capacity::CapacityResult;
use crate::scenario::{ScenarioResult, Tracing};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::process::Command;

/// `a / b`, if `b` is a usable denominator.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

fn bpftool_progs() -> anyhow::Result<Vec<serde_json::Value>> {
    let out = Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()?;
    anyhow::ensure!(out.status.success(), "bpftool prog show: {}", out.status);
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Ids of every loaded BPF program (to tell a run's own programs apart).
pub fn bpf_prog_ids() -> anyhow::Result<HashSet<u64>> {
    Ok(bpftool_progs()?
        .iter()
        .filter_map(|p| p.get("id")?.as_u64())
        .collect())
}

/// Run count and time (`kernel.bpf_stats_enabled`) of the programs loaded
/// since `before` whose name starts with `prefix`.
pub fn bpf_prog_stats(prefix: &str, before: &HashSet<u64>) -> serde_json::Value {
    let Ok(progs) = bpftool_progs() else {
        return serde_json::Value::Null;
    };
    let mut list = Vec::new();
    for p in progs {
        let (Some(id), Some(name)) = (
            p.get("id").and_then(|v| v.as_u64()),
            p.get("name").and_then(|v| v.as_str()),
        ) else {
            continue;
        };
        if before.contains(&id) || !name.starts_with(prefix) {
            continue;
        }
        let cnt = p.get("run_cnt").and_then(|v| v.as_u64()).unwrap_or(0);
        let ns = p.get("run_time_ns").and_then(|v| v.as_u64()).unwrap_or(0);
        list.push(serde_json::json!({
            "id": id,
            "name": name,
            "type": p.get("type").cloned().unwrap_or_default(),
            "run_cnt": cnt,
            "run_time_ns": ns,
            "ns_per_run": if cnt > 0 { ns as f64 / cnt as f64 } else { 0.0 },
        }));
    }
    list.into()
}

/// Total BPF run time (ns) in a scenario's `bpf_stats`.
pub fn bpf_total_ns(r: &ScenarioResult) -> Option<u64> {
    let list = r.detail.get("bpf_stats")?.as_array()?;
    if list.is_empty() {
        return None;
    }
    Some(
        list.iter()
            .filter_map(|p| p.get("run_time_ns")?.as_u64())
            .sum(),
    )
}

fn rate(r: &ScenarioResult) -> Option<f64> {
    r.load.as_ref().map(|l| l.writes_per_sec())
}

/// Each scenario's median round by writer rate (failed rounds sort last), in first-seen order.
pub fn medians(results: &[ScenarioResult]) -> Vec<(&ScenarioResult, Vec<&ScenarioResult>)> {
    let mut order: Vec<Tracing> = Vec::new();
    for r in results {
        if !order.contains(&r.tracing) {
            order.push(r.tracing);
        }
    }
    order
        .into_iter()
        .map(|t| {
            let mut rounds: Vec<&ScenarioResult> =
                results.iter().filter(|r| r.tracing == t).collect();
            let mut sorted = rounds.clone();
            sorted.sort_by(|a, b| {
                let key = |r: &ScenarioResult| rate(r).unwrap_or(f64::NEG_INFINITY);
                key(b).total_cmp(&key(a))
            });
            let ok: Vec<_> = sorted
                .iter()
                .filter(|r| r.load.is_some())
                .copied()
                .collect();
            let median = if ok.is_empty() {
                sorted[0]
            } else {
                ok[ok.len() / 2]
            };
            rounds.shrink_to_fit();
            (median, rounds)
        })
        .collect()
}

fn find(medians: &[(&ScenarioResult, Vec<&ScenarioResult>)], t: Tracing) -> Option<f64> {
    medians
        .iter()
        .find(|(r, _)| r.tracing == t)
        .and_then(|(r, _)| rate(r))
}

fn round_json(r: &ScenarioResult) -> serde_json::Value {
    let calls = r.load.as_ref().map(|l| l.write_calls + l.read_calls);
    serde_json::json!({
        "outcome": r.outcome,
        "load": r.load.as_ref().map(|l| l.to_json()),
        "writes_per_sec": rate(r),
        "expected": r.expected,
        "delivered": r.delivered,
        "reported_lost": r.reported_lost,
        "bpf_ns_per_tls_call": bpf_total_ns(r).zip(calls).and_then(|(ns, c)| ratio(ns as f64, c as f64)),
        "detail": r.detail,
    })
}

/// The whole run as JSON.
/// The median CPU µs per write+read pair of a scenario's rounds.
fn median_cpu(rounds: &[&ScenarioResult]) -> Option<f64> {
    let mut v: Vec<f64> = rounds
        .iter()
        .filter_map(|r| r.load.as_ref().map(|l| l.cpu_us_per_pair()))
        .collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// The whole run as JSON. `stats_pass` holds one run per scenario made with
/// `bpf_stats` on; their BPF run times fill `bpf_ns_per_tls_call`.
pub fn to_json(
    meta: serde_json::Value,
    results: &[ScenarioResult],
    stats_pass: &[ScenarioResult],
    capacity: &[CapacityResult],
) -> serde_json::Value {
    let medians = medians(results);
    let none = find(&medians, Tracing::None);
    let floor = find(&medians, Tracing::Floor);
    let floor_cpu = medians
        .iter()
        .find(|(r, _)| r.tracing == Tracing::Floor)
        .and_then(|(_, rounds)| median_cpu(rounds));
    let tls: Vec<_> = medians
        .iter()
        .map(|(r, rounds)| {
            let median_rate = rate(r);
            let mut j = round_json(r);
            j["scenario"] = r.tracing.name().into();
            j["vs_no_tracing"] = median_rate.zip(none).and_then(|(a, b)| ratio(a, b)).into();
            j["vs_floor"] = median_rate.zip(floor).and_then(|(a, b)| ratio(a, b)).into();
            // CPU per pair is far less sensitive to other load than wall rates:
            // floor's median CPU per pair / this scenario's (1.0 = as cheap as the floor).
            let cpu = median_cpu(rounds);
            j["median_cpu_us_per_pair"] = cpu.into();
            j["cpu_vs_floor"] = floor_cpu.zip(cpu).and_then(|(f, c)| ratio(f, c)).into();
            if let Some(sp) = stats_pass.iter().find(|x| x.tracing == r.tracing) {
                let sj = round_json(sp);
                j["bpf_ns_per_tls_call"] = sj["bpf_ns_per_tls_call"].clone();
                j["stats_pass"] = sj;
            }
            j["delivered_pct"] = r
                .expected
                .zip(r.delivered)
                .and_then(|(e, d)| ratio(d as f64, e as f64))
                .map(|x| x * 100.0)
                .into();
            // Every round delivered everything it should have?
            j["all_rounds_complete"] = rounds
                .iter()
                .all(|x| x.expected.is_some() && x.expected == x.delivered)
                .into();
            j["rounds_writes_per_sec"] = rounds.iter().map(|x| rate(x)).collect::<Vec<_>>().into();
            j["rounds"] = rounds
                .iter()
                .map(|x| round_json(x))
                .collect::<Vec<_>>()
                .into();
            j
        })
        .collect();
    serde_json::json!({
        "meta": meta,
        "tls": tls,
        "capacity": capacity.iter().map(CapacityResult::to_json).collect::<Vec<_>>(),
    })
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "–".to_owned(), f)
}

fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// The Markdown tables of a run's JSON.
pub fn to_markdown(j: &serde_json::Value) -> String {
    let mut s = String::new();
    let m = &j["meta"];
    let f = |v: &serde_json::Value| v.as_f64();
    let _ = writeln!(
        s,
        "TLS load: {} × `SSL_write` of {} B (server thread `SSL_read`s), loopback, one process; {} CPUs, load average at start {}; median of {} rounds (all rounds in tls.json); vs floor by CPU = the floor's median CPU µs per pair / the scenario's; BPF ns/call from a separate pass with bpf_stats on ({}).\n",
        m["calls"],
        m["payload"],
        m["cpus"],
        m["loadavg"],
        m["rounds"],
        m["bpf_stats"].as_str().unwrap_or("?")
    );
    s.push_str("| scenario | writer calls/s | vs none | vs floor | CPU µs/pair (median) | vs floor by CPU | expected | delivered | delivered % | every round complete | lost (reported) | uprobe BPF ns/call | outcome |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|\n");
    for r in j["tls"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r["scenario"].as_str().unwrap_or("?"),
            opt(f(&r["writes_per_sec"]), si),
            opt(f(&r["vs_no_tracing"]), |x| format!("{:.0} %", x * 100.0)),
            opt(f(&r["vs_floor"]), |x| format!("{:.0} %", x * 100.0)),
            opt(f(&r["median_cpu_us_per_pair"]), |x| format!("{x:.1}")),
            opt(f(&r["cpu_vs_floor"]), |x| format!("{:.0} %", x * 100.0)),
            opt(f(&r["expected"]), |x| format!("{x:.0}")),
            opt(f(&r["delivered"]), |x| format!("{x:.0}")),
            opt(f(&r["delivered_pct"]), |x| format!("{x:.2} %")),
            if r["expected"].is_null() {
                "–"
            } else if r["all_rounds_complete"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            opt(f(&r["reported_lost"]), |x| format!("{x:.0}")),
            opt(f(&r["bpf_ns_per_tls_call"]), |x| format!("{x:.0}")),
            r["outcome"].as_str().unwrap_or("?").replace('|', "/"),
        );
    }
    if let Some(cap) = j["capacity"].as_array().filter(|c| !c.is_empty()) {
        s.push_str("\nKernel→user capacity: synthetic `rc_data` records (");
        let _ = write!(s, "{} B payload", cap[0]["payload"]);
        s.push_str(") from a raw tracepoint into one CPU's ring, drained by one worker.\n\n");
        s.push_str("| placement | consumer | wakeup | records | lost | wall s | records/s (wall) | worker CPU s | records/s per worker CPU s | producer ns/record |\n");
        s.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for c in cap {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {:.3} | {} | {:.3} | {} | {:.0} |",
                c["placement"].as_str().unwrap_or("?"),
                c["consumer"].as_str().unwrap_or("?"),
                c["wakeup"].as_str().unwrap_or("?"),
                c["consumed"],
                c["lost"],
                c["wall_secs"].as_f64().unwrap_or(0.0),
                opt(f(&c["per_sec_wall"]), si),
                c["worker_cpu_secs"].as_f64().unwrap_or(0.0),
                opt(f(&c["per_worker_cpu_sec"]), si),
                c["producer_ns_per_record"].as_f64().unwrap_or(0.0),
            );
        }
    }
    s
}
