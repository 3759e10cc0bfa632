//! A capture of a database module (`mysqld`, `postgres`) with every output
//! on at once: text on stdout, a JSON event file, the forwarder (NDJSON to
//! `tests/support/collector.py`) and a WebSocket client on `/ws` — and the
//! query events each of them got.

use crate::outputs::{collected, start_collector};
use crate::server::{WsClient, compile_schemas, unhex};
use crate::testutil::{Block, Proc, Rcapture, TempDir, blocks};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A running capture and its outputs.
pub(crate) struct QueryCapture {
    rc: Rcapture,
    ws: WsClient,
    _collector: Proc,
    collector_out: PathBuf,
    event_file: PathBuf,
    _dir: TempDir,
}

/// What every output got, once the capture stopped.
pub(crate) struct Outputs {
    /// Text blocks of stdout.
    pub text: Vec<Block>,
    /// Events of the JSON event file.
    pub event_file: Vec<Value>,
    /// Events the collector received (NDJSON).
    pub forwarded: Vec<Value>,
    /// `event_payload`s the WebSocket client decoded (payload as hex).
    pub websocket: Vec<Value>,
    pub stderr: Vec<String>,
}

impl QueryCapture {
    /// `rcapture ARGS… --event-file … --forward …` with a WebSocket client
    /// attached; `None` (after printing why) when Python lacks the
    /// WebSocket client's modules and skipping is allowed.
    pub(crate) fn start(tag: &str, args: &[&str]) -> Option<Self> {
        let dir = TempDir::new(tag);
        let (_, ext) = compile_schemas(&dir)?;
        let collector_out = dir.path("collector.jsonl");
        let (collector, url) = start_collector(&collector_out);
        let event_file = dir.path("events.json");
        let ev = event_file.to_str().unwrap().to_owned();
        let mut all: Vec<&str> = args.to_vec();
        all.extend([
            "--event-file",
            &ev,
            "--event-file-format",
            "json",
            "--forward",
            &url,
            "--forward-format",
            "json",
            "--batch-timeout-ms",
            "100",
        ]);
        let rc = Rcapture::start(&all);
        let addr = rc.addr.clone().expect("the announced API address");
        let ws = WsClient::start(tag, &format!("ws://{addr}/ws"), &ext, "event_pb2", false);
        Some(Self {
            rc,
            ws,
            _collector: collector,
            collector_out,
            event_file,
            _dir: dir,
        })
    }

    /// Waits until the WebSocket client and the collector both have an
    /// event whose payload is `last` (the last query sent), then stops
    /// rcapture and reads every output.
    pub(crate) fn finish(self, last: &str) -> Outputs {
        let is_last =
            |e: &Value| unhex(e["event_payload"]["payload"].as_str().unwrap()) == last.as_bytes();
        let websocket: Vec<Value> = self
            .ws
            .events_until(|seen| seen.iter().any(is_last))
            .into_iter()
            .map(|e| e["event_payload"].clone())
            .collect();
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut forwarded = collected(&self.collector_out);
        while !forwarded.iter().any(|e| payload(e) == last.as_bytes()) && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
            forwarded = collected(&self.collector_out);
        }
        drop(self.ws); // before rcapture closes the stream under it
        let (stdout, stderr) = self.rc.stop_with_stderr();
        let event_file = std::fs::read_to_string(&self.event_file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON event line"))
            .collect();
        Outputs {
            text: blocks(&stdout),
            event_file,
            forwarded,
            websocket,
            stderr,
        }
    }
}

/// A JSON event's payload (base64 in the event file and NDJSON).
pub(crate) fn payload(e: &Value) -> Vec<u8> {
    STANDARD
        .decode(e["payload"].as_str().unwrap_or(""))
        .expect("a base64 payload")
}

impl Outputs {
    /// The event file's event whose payload is `sql`, checked against the
    /// other outputs: the same query reached stdout, the WebSocket client
    /// and the collector with the same pid and type.
    pub(crate) fn query(&self, module: &str, sql: &str) -> (&Value, &Block) {
        let short = &sql[..sql.len().min(60)];
        let e = self
            .event_file
            .iter()
            .find(|e| payload(e) == sql.as_bytes())
            .unwrap_or_else(|| {
                let seen: Vec<String> = self
                    .event_file
                    .iter()
                    .map(|e| {
                        String::from_utf8_lossy(&payload(e))
                            .chars()
                            .take(60)
                            .collect()
                    })
                    .collect();
                panic!(
                    "no event of {short:?} in the event file; seen {seen:#?}; stderr {:#?}",
                    self.stderr
                )
            });
        assert_eq!(e["module"], module, "{short}");
        assert_eq!(e["length"].as_u64(), Some(sql.len() as u64), "{short}");
        assert_eq!(e["truncated"], 0, "{short}: captured whole");
        let pid = e["pid"].as_u64().unwrap();
        let ws = self
            .websocket
            .iter()
            .find(|w| unhex(w["payload"].as_str().unwrap()) == sql.as_bytes())
            .unwrap_or_else(|| panic!("{short}: not on the WebSocket"));
        assert_eq!(
            (ws["pid"].as_u64(), &ws["type"], &ws["module"]),
            (Some(pid), &e["type"], &e["module"])
        );
        let fw = self
            .forwarded
            .iter()
            .find(|f| payload(f) == sql.as_bytes())
            .unwrap_or_else(|| panic!("{short}: not forwarded"));
        assert_eq!((fw["pid"].as_u64(), &fw["type"]), (Some(pid), &e["type"]));
        let block = self
            .text
            .iter()
            .find(|b| b.body.trim_end_matches('\n') == sql)
            .unwrap_or_else(|| panic!("{short}: not in the text output"));
        assert_eq!(u64::from(block.pid()), pid, "{}", block.header);
        assert!(
            block.header.contains(&format!(" {module} ")),
            "{}",
            block.header
        );
        (e, block)
    }
}
