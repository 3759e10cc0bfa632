//! The table of the summary's metrics: which bench id or harness row is
//! measured, what it is compared with, and the issues' target. A new bench
//! id is one more row here; until it has one, the summary lists it under
//! "Also run, without a row here".

use super::metrics::{CapacityRow, FanoutRow, MetricSpec, Probe, Reference, Target, Unit};

const fn m(key: &'static str, label: &'static str, unit: Unit, measured: Probe) -> MetricSpec {
    MetricSpec {
        key,
        label,
        unit,
        measured,
        reference: None,
        target: None,
        hint: None,
    }
}

impl MetricSpec {
    const fn vs(mut self, label: &'static str, probe: Probe) -> Self {
        self.reference = Some(Reference { label, probe });
        self
    }
    const fn target(mut self, t: Target) -> Self {
        self.target = Some(t);
        self
    }
    const fn hint(mut self, h: &'static str) -> Self {
        self.hint = Some(h);
        self
    }
}

const ZLIB_RS: Probe = Probe::BenchBytes("gzip_backends/zlib-rs");
const NEEDS_ZLIB_RS: &str = "the raw zlib-rs bench needs --bench-features zlib-rs";

const fn cap(placement: &'static str, consumer: &'static str, wakeup: &'static str) -> CapacityRow {
    CapacityRow {
        placement,
        consumer,
        wakeup,
    }
}

const fn fan(server: &'static str, clients: usize) -> FanoutRow {
    FanoutRow { server, clients }
}

/// Every metric of the summary, in table order. Ids are criterion's
/// `group/function[/value]` (see `benches/benches/*.rs`); a new bench is one
/// more row here.
pub const METRICS: &[MetricSpec] = &[
    // benches/encode.rs: decode → join → event fields → protobuf encode.
    m(
        "encode_256_events_per_s",
        "encode, 256 B payload",
        Unit::EventsPerSec,
        Probe::BenchElements("pipeline_events/encode/256"),
    )
    .target(Target::value_at_least(5e6)),
    m(
        "encode_16k_vs_memcpy",
        "encode, 16 KiB payload, vs memcpy",
        Unit::BytesPerSec,
        Probe::BenchBytes("pipeline_bytes/encode/16384"),
    )
    .vs(
        "memcpy of the 16 KiB payload",
        Probe::BenchBytes("pipeline_bytes/memcpy/16384"),
    )
    .target(Target::ratio_at_least(0.40)),
    // benches/forward.rs `forward_pipeline`: the real Forwarder (batcher,
    // compressor with gzip, sender threads) POSTing to a loopback HTTP/1.1
    // sink that answers 200.
    m(
        "forward_pipeline_protobuf_events_per_s",
        "forward, real Forwarder → HTTP sink, protobuf, no gzip (defaults: 2 requests in flight)",
        Unit::EventsPerSec,
        Probe::BenchElements("forward_pipeline/protobuf"),
    )
    .target(Target::value_at_least(2e6)),
    m(
        "forward_pipeline_protobuf_1_in_flight_events_per_s",
        "forward, real Forwarder → HTTP sink, protobuf, no gzip, --forward-concurrency 1",
        Unit::EventsPerSec,
        Probe::BenchElements("forward_pipeline/protobuf_concurrency1"),
    ),
    m(
        "forward_pipeline_gzip_vs_raw_deflate",
        "forward, real Forwarder → HTTP sink, protobuf + gzip, batch_size 100, vs raw deflate of the same body",
        Unit::BatchesPerSec,
        Probe::BenchIters("forward_pipeline/protobuf_gzip"),
    )
    .vs(
        "raw deflate (flate2 on zlib-rs, the forwarder's level 1) of the batch body",
        Probe::BenchIters("forward_pipeline/raw_deflate_level1"),
    )
    .target(Target::ratio_at_least(0.70)),
    m(
        "forward_pipeline_gzip_batch1000_vs_raw_deflate",
        "forward, real Forwarder → HTTP sink, protobuf + gzip, batch_size 1000, vs raw deflate (events/s, same bytes per event)",
        Unit::EventsPerSec,
        Probe::BenchElements("forward_pipeline/protobuf_gzip_batch1000"),
    )
    .vs(
        "raw deflate (flate2 on zlib-rs, the forwarder's level 1) of a 100-event batch body",
        Probe::BenchElements("forward_pipeline/raw_deflate_level1"),
    )
    .target(Target::ratio_at_least(0.70)),
    // benches/forward.rs `forward_post`: the forwarder's steps on one thread
    // (batch → body → one vectored write to a loopback sink, no response).
    m(
        "forward_post_protobuf_events_per_s",
        "forward steps, one thread (body + POST), protobuf, no gzip",
        Unit::EventsPerSec,
        Probe::BenchElements("forward_post/protobuf"),
    )
    .target(Target::value_at_least(2e6)),
    m(
        "forward_post_json_events_per_s",
        "forward steps, one thread (body + POST), NDJSON, no gzip",
        Unit::EventsPerSec,
        Probe::BenchElements("forward_post/json"),
    ),
    // The steps on one thread cost what they cost beside the deflate
    // (copy, order, encode, CRC-32, the write): the gzip target is
    // the real Forwarder's, whose threads share them (rows above).
    m(
        "forward_post_gzip_vs_zlib_rs",
        "forward steps, one thread (body + POST), protobuf + gzip, vs zlib-rs direct on the same body",
        Unit::BatchesPerSec,
        Probe::BenchIters("forward_post/protobuf_gzip"),
    )
    .vs(
        "zlib-rs deflate of the batch body",
        Probe::BenchIters("gzip_backends/zlib-rs"),
    )
    .hint(NEEDS_ZLIB_RS),
    m(
        "gzip_flate2_zlib_rs_vs_zlib_rs",
        "gzip backend: flate2 on zlib-rs (the forwarder's), vs zlib-rs direct",
        Unit::BytesPerSec,
        Probe::BenchBytes("gzip_backends/flate2_zlib-rs"),
    )
    .vs("zlib-rs direct", ZLIB_RS)
    .hint(NEEDS_ZLIB_RS),
    m(
        "gzip_miniz_oxide_vs_zlib_rs",
        "gzip backend: miniz_oxide, vs zlib-rs direct",
        Unit::BytesPerSec,
        Probe::BenchBytes("gzip_backends/miniz_oxide"),
    )
    .vs("zlib-rs direct", ZLIB_RS)
    .hint(NEEDS_ZLIB_RS),
    m(
        "gzip_flate2_zlib_ng_vs_zlib_rs",
        "gzip backend: flate2 on zlib-ng, vs zlib-rs direct",
        Unit::BytesPerSec,
        Probe::BenchBytes("gzip_backends/flate2_zlib-ng"),
    )
    .vs("zlib-rs direct", ZLIB_RS)
    .hint("needs --bench-features zlib-rs,zlib-ng (cmake)"),
    // perf-tls: real capture under TLS load.
    m(
        "tls_rcapture_vs_no_tracing",
        "TLS load under rcapture, vs no tracing",
        Unit::CallsPerSec,
        Probe::TlsWriteRate("rcapture"),
    )
    .vs("no tracing", Probe::TlsWriteRate("no tracing")),
    m(
        "tls_rcapture_vs_floor",
        "TLS load under rcapture, vs the uprobe floor",
        Unit::CallsPerSec,
        Probe::TlsWriteRate("rcapture"),
    )
    .vs("uprobe floor", Probe::TlsWriteRate("uprobe floor")),
    m(
        "tls_rcapture_cpu_vs_floor",
        "TLS load CPU under rcapture, vs the uprobe floor (lower is better)",
        Unit::CpuUsPerPair,
        Probe::TlsCpuPerPair("rcapture"),
    )
    .vs("uprobe floor", Probe::TlsCpuPerPair("uprobe floor")),
    m(
        "tls_rcapture_vs_bpftrace",
        "TLS load under rcapture, vs bpftrace",
        Unit::CallsPerSec,
        Probe::TlsWriteRate("rcapture"),
    )
    .vs("bpftrace", Probe::TlsWriteRate("bpftrace")),
    m(
        "tls_rcapture_vs_sslsniff",
        "TLS load under rcapture, vs BCC sslsniff",
        Unit::CallsPerSec,
        Probe::TlsWriteRate("rcapture"),
    )
    .vs("sslsniff", Probe::TlsWriteRate("sslsniff")),
    m(
        "tls_rcapture_delivered_pct",
        "rcapture events delivered, worst round",
        Unit::Percent,
        Probe::TlsWorstDelivered("rcapture"),
    )
    .target(Target::value_at_least(100.0)),
    m(
        "capacity_encode_vs_raw_drain",
        "ring → Worker + protobuf encode, same CPU, vs a bare drain",
        Unit::RecordsPerWorkerCpuSec,
        Probe::CapacityPerWorkerCpu(cap("same CPU", "Worker + protobuf encode", "crossing")),
    )
    .vs(
        "raw drain",
        Probe::CapacityPerWorkerCpu(cap("same CPU", "raw drain (no-op)", "crossing")),
    ),
    m(
        "capacity_backlog_wakeup_producer",
        "BPF producer cost, backlog wakeups (rcapture's former policy), vs wake on crossing (its policy)",
        Unit::ProducerNsPerRecord,
        Probe::CapacityProducerNs(cap("ring CPU", "Worker + protobuf encode", "backlog")),
    )
    .vs(
        "crossing",
        Probe::CapacityProducerNs(cap("ring CPU", "Worker + protobuf encode", "crossing")),
    ),
    // perf-fanout: WebSocket fan-out, rcapture's event loop vs tokio.
    m(
        "fanout_1_cpu_vs_tokio_batched",
        "fan-out to 1 client, vs tokio-batched (lower is better)",
        Unit::CpuNsPerFrame,
        Probe::FanoutCpuPerFrame(fan("rcapture", 1)),
    )
    .vs(
        "tokio-batched",
        Probe::FanoutCpuPerFrame(fan("tokio-batched", 1)),
    ),
    m(
        "fanout_8_cpu_vs_tokio_batched",
        "fan-out to 8 clients, vs tokio-batched (lower is better)",
        Unit::CpuNsPerFrame,
        Probe::FanoutCpuPerFrame(fan("rcapture", 8)),
    )
    .vs(
        "tokio-batched",
        Probe::FanoutCpuPerFrame(fan("tokio-batched", 8)),
    ),
    m(
        "fanout_64_cpu_vs_tokio_batched",
        "fan-out to 64 clients, vs tokio-batched (lower is better)",
        Unit::CpuNsPerFrame,
        Probe::FanoutCpuPerFrame(fan("rcapture", 64)),
    )
    .vs(
        "tokio-batched",
        Probe::FanoutCpuPerFrame(fan("tokio-batched", 64)),
    ),
    m(
        "fanout_64_cpu_vs_tokio",
        "fan-out to 64 clients, vs tokio send per message (lower is better)",
        Unit::CpuNsPerFrame,
        Probe::FanoutCpuPerFrame(fan("rcapture", 64)),
    )
    .vs("tokio", Probe::FanoutCpuPerFrame(fan("tokio", 64))),
    m(
        "fanout_64_frames_vs_tokio_batched",
        "fan-out to 64 clients, frames/s, vs tokio-batched",
        Unit::FramesPerSec,
        Probe::FanoutFramesPerSec(fan("rcapture", 64)),
    )
    .vs(
        "tokio-batched",
        Probe::FanoutFramesPerSec(fan("tokio-batched", 64)),
    ),
    m(
        "fanout_64_server_allocs_per_frame",
        "fan-out to 64 clients, server allocations",
        Unit::AllocsPerFrame,
        Probe::FanoutAllocsPerFrame(fan("rcapture", 64)),
    )
    .target(Target::value_at_most(0.0)),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::metrics::{Inputs, Metric, Part, Status, evaluate, evaluate_all};
    use crate::suite::{criterion, harness};
    use std::path::{Path, PathBuf};

    /// perf/tests/fixtures: the results of a real `perf-report --quick` run
    /// (criterion's output, tls.json, fanout.json), and the tls.json of an
    /// earlier one whose sslsniff failed to attach.
    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
    }

    /// The quick run's results.
    fn fixture_inputs() -> Inputs {
        let dir = fixtures();
        Inputs {
            benches: Ok(criterion::load(&dir.join("criterion"), None).unwrap()),
            tls: Ok(harness::read_tls(&dir.join("tls.json")).unwrap()),
            fanout: Ok(harness::read_fanout(&dir.join("fanout.json")).unwrap()),
        }
    }

    fn by_key<'a>(ms: &'a [Metric], key: &str) -> &'a Metric {
        ms.iter()
            .find(|m| m.key == key)
            .unwrap_or_else(|| panic!("no metric {key}"))
    }

    fn by_spec(key: &str) -> &'static MetricSpec {
        METRICS.iter().find(|m| m.key == key).unwrap()
    }

    /// `a` equals `b` to 1e-9 relative.
    fn close(a: Option<f64>, b: f64) {
        let a = a.expect("a number");
        assert!(((a - b) / b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn every_key_is_unique() {
        let mut keys: Vec<&str> = METRICS.iter().map(|m| m.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), METRICS.len());
    }

    // Expected numbers computed by hand (python) from the fixture files:
    // rate = throughput per iteration × 1e9 / (slope, else mean, point estimate in ns).
    #[test]
    fn bench_metrics_of_a_real_run() {
        let ms = evaluate_all(METRICS, &fixture_inputs());

        let m = by_key(&ms, "encode_256_events_per_s");
        close(m.measured, 4_064_733.526366506);
        close(m.of_target, 0.8129467052733012);
        assert_eq!(
            (m.status, m.ratio, m.unit),
            (Status::Missed, None, Unit::EventsPerSec)
        );
        assert_eq!(m.measured_source, "pipeline_events/encode/256");

        let m = by_key(&ms, "encode_16k_vs_memcpy");
        close(m.measured, 20_177_903_684.808_92);
        close(m.reference, 38_867_898_462.894_67);
        close(m.ratio, 0.5191405885777901);
        assert_eq!((m.status, m.of_target), (Status::Met, None));

        // The real Forwarder: events/s against an absolute target; gzip
        // against raw deflate of the same body (the ratio of iteration rates).
        let m = by_key(&ms, "forward_pipeline_protobuf_events_per_s");
        close(m.measured, 1_167_491.4351444794);
        close(m.of_target, 0.5837457175722397);
        assert_eq!(m.status, Status::Missed);
        let m = by_key(&ms, "forward_pipeline_gzip_vs_raw_deflate");
        close(m.ratio, 0.3963285051007469);
        assert_eq!(m.unit, Unit::BatchesPerSec);
        assert_eq!(m.status, Status::Missed);

        let m = by_key(&ms, "forward_post_protobuf_events_per_s");
        close(m.measured, 2_460_920.7278175624);
        assert_eq!(m.status, Status::Met);
        let m = by_key(&ms, "forward_post_json_events_per_s");
        close(m.measured, 425_606.87921340094);
        assert_eq!(m.status, Status::NoTarget);
        let m = by_key(&ms, "forward_post_gzip_vs_zlib_rs");
        close(m.ratio, 0.5308463053865653);
        assert_eq!((m.status, m.of_target), (Status::NoTarget, None));

        let m = by_key(&ms, "gzip_flate2_zlib_rs_vs_zlib_rs");
        close(m.ratio, 1.0441946378585962);
        assert_eq!((m.status, m.note.as_deref()), (Status::NoTarget, None));

        // Not built with zlib-ng: no number, and the hint says how to get one.
        let m = by_key(&ms, "gzip_flate2_zlib_ng_vs_zlib_rs");
        assert_eq!(
            (m.status, m.measured, m.ratio),
            (Status::NotRun, None, None)
        );
        assert!(m.reference.is_some());
        let note = m.note.as_deref().unwrap();
        assert!(
            note.contains("no criterion result for gzip_backends/flate2_zlib-ng"),
            "{note}"
        );
        assert!(note.contains("zlib-ng (cmake)"), "{note}");
    }

    #[test]
    fn harness_metrics_of_a_real_run() {
        let ms = evaluate_all(METRICS, &fixture_inputs());

        let m = by_key(&ms, "tls_rcapture_vs_floor");
        close(m.measured, 33_061.35771087418);
        close(m.reference, 28_610.766004077854);
        close(m.ratio, 33_061.35771087418 / 28_610.766004077854);
        let m = by_key(&ms, "tls_rcapture_cpu_vs_floor");
        close(m.ratio, 28.1469281 / 23.939858799999996);
        let m = by_key(&ms, "tls_rcapture_vs_sslsniff");
        close(m.ratio, 33_061.35771087418 / 19_325.141421988836);
        assert_eq!((m.status, m.note.as_deref()), (Status::NoTarget, None));

        let m = by_key(&ms, "tls_rcapture_delivered_pct");
        assert_eq!((m.measured, m.status), (Some(100.0), Status::Met));

        let m = by_key(&ms, "capacity_encode_vs_raw_drain");
        close(m.ratio, 6_759_329.388330254 / 12_477_152.287565231);
        let m = by_key(&ms, "capacity_backlog_wakeup_producer");
        close(m.ratio, 250.3599648112604 / 225.891054862444);

        let m = by_key(&ms, "fanout_8_cpu_vs_tokio_batched");
        close(m.ratio, 324.1725125 / 231.13580625);
        let m = by_key(&ms, "fanout_64_cpu_vs_tokio");
        close(m.ratio, 713.219275 / 6314.73275625);
        let m = by_key(&ms, "fanout_64_frames_vs_tokio_batched");
        close(m.ratio, 1_080_968.3207471631 / 2_431_205.470382493);
        // 0.002 allocations per frame in that (short) run: missed, not rounded to 0.
        let m = by_key(&ms, "fanout_64_server_allocs_per_frame");
        assert_eq!((m.measured, m.status), (Some(0.002), Status::Missed));
    }

    #[test]
    fn an_older_tls_json_with_a_failed_peer() {
        // perf-tls before `median_cpu_us_per_pair`, its sslsniff failing to attach.
        let mut inputs = fixture_inputs();
        inputs.tls = Ok(harness::read_tls(&fixtures().join("tls-sslsniff-failed.json")).unwrap());
        let ms = evaluate_all(METRICS, &inputs);
        // The median round's own CPU per pair is used.
        let m = by_key(&ms, "tls_rcapture_cpu_vs_floor");
        close(m.ratio, 22.10156385 / 23.611107399999998);
        // The failed peer: measured stands, no reference, no ratio.
        let m = by_key(&ms, "tls_rcapture_vs_sslsniff");
        close(m.measured, 28_884.105867099315);
        assert_eq!(
            (m.reference, m.ratio, m.status),
            (None, None, Status::NoTarget)
        );
        assert!(
            m.note
                .as_deref()
                .unwrap()
                .starts_with("reference: sslsniff: error: sslsniff exited")
        );

        // A newer file has the median over rounds, which wins.
        for row in &mut inputs.tls.as_mut().unwrap().tls {
            row.median_cpu_us_per_pair = match row.scenario.as_str() {
                "rcapture" => Some(30.0),
                "uprobe floor" => Some(20.0),
                _ => None,
            };
        }
        let m = evaluate(by_spec("tls_rcapture_cpu_vs_floor"), &inputs);
        assert_eq!(
            (m.measured, m.reference, m.ratio),
            (Some(30.0), Some(20.0), Some(1.5))
        );
    }

    #[test]
    fn parts_without_results_are_not_run_never_numbers() {
        let inputs = Inputs {
            benches: Err("benches skipped: --skip benches".into()),
            tls: Err("tls skipped: not root (perf-tls loads BPF programs)".into()),
            fanout: Err("fanout failed: exit status: 1".into()),
        };
        for m in evaluate_all(METRICS, &inputs) {
            assert_eq!(m.status, Status::NotRun, "{}", m.key);
            assert_eq!(
                (m.measured, m.reference, m.ratio, m.of_target),
                (None, None, None, None)
            );
            let want = match m.part {
                Part::Benches => "benches skipped",
                Part::Tls => "not root",
                Part::Fanout => "fanout failed",
            };
            assert!(
                m.note.as_deref().unwrap().contains(want),
                "{}: {:?}",
                m.key,
                m.note
            );
        }
    }

    #[test]
    fn a_bench_id_absent_from_the_run_is_not_run() {
        let mut inputs = fixture_inputs();
        inputs
            .benches
            .as_mut()
            .unwrap()
            .benches
            .remove("pipeline_bytes/memcpy/16384");
        let m = evaluate(&METRICS[1], &inputs);
        assert_eq!(m.key, "encode_16k_vs_memcpy");
        // The measured value stands; the ratio target cannot be judged.
        assert!(m.measured.is_some());
        assert_eq!((m.ratio, m.status), (None, Status::NotRun));
        assert_eq!(
            m.note.as_deref(),
            Some("reference: no criterion result for pipeline_bytes/memcpy/16384")
        );
    }
}
