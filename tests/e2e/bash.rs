//! `rcapture bash` against a real interactive bash on a pseudo-terminal
//! (`tests/support/bash_pty.py`): each command line typed, whole (a
//! multi-line loop, a 20 000-byte line), with the shell's pid and uid, the
//! exit status of each command, and the shell's exit; the same events on a
//! WebSocket client and at a forwarding collector.

use crate::outputs::{collected, collector, forward_json};
use crate::server::{WsClient, compile_schemas, marker, unhex};
use crate::testutil::{Block, Rcapture, TempDir, blocks, bpf_available, support};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The user the typed-into shell runs as (not rcapture's root).
const NOBODY: u32 = 65534;

/// Types `lines` into `bash --norc --noprofile -i` running as `uid`; returns
/// the shell's pid and its exit status.
fn type_into_bash(lines: &[String], uid: u32) -> (u32, i32) {
    let mut child = Command::new("python3")
        .arg(support("bash_pty.py"))
        .args(["--uid", &uid.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting bash_pty.py");
    let json = serde_json::to_string(lines).unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(json.as_bytes())
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let pid = out.next().and_then(Result::ok).and_then(|l| l.parse().ok());
    let status = out
        .last()
        .and_then(Result::ok)
        .and_then(|l| l.strip_prefix("exit ").and_then(|s| s.parse().ok()));
    let done = child.wait_with_output().expect("bash_pty.py");
    let terminal = String::from_utf8_lossy(&done.stderr);
    match (pid, status) {
        (Some(pid), Some(status)) if done.status.success() => (pid, status),
        _ => panic!(
            "bash_pty.py failed ({}); the terminal showed:\n{terminal}",
            done.status
        ),
    }
}

/// What a bash block says: `line`, `status` or `exit/exec`.
fn verb(b: &Block) -> &str {
    let after_comm = b.header.split_once(" comm=").map_or("", |x| x.1);
    after_comm.split(' ').nth(1).unwrap_or("")
}

/// The number after `status` / `exit/exec`.
fn number(b: &Block) -> i32 {
    let n = b.header.rsplit(' ').next().unwrap_or("");
    n.parse()
        .unwrap_or_else(|_| panic!("no number in {:?}", b.header))
}

/// The command line of a `line` block (the payload, its block's blank line removed).
fn line(b: &Block) -> &str {
    b.body.strip_suffix("\n\n").unwrap_or(&b.body)
}

#[test]
fn bash_lines_statuses_and_exit_are_captured() {
    let Some(_serial) = bpf_available("bash_lines_statuses_and_exit_are_captured") else {
        return;
    };
    let m = marker("BASH");
    let long = format!("echo {m}-LONG-{}-END", "z".repeat(20_000));
    let lines: Vec<String> = vec![
        format!("echo {m}-A; (exit 7)"),
        "for i in 1 2; do".into(),
        format!("echo {m}-LOOP-$i"),
        "done; (exit 4)".into(),
        long.clone(),
        "exit 3".into(),
    ];
    let rc = Rcapture::start(&["bash"]);
    let (bash_pid, exit_status) = type_into_bash(&lines, NOBODY);
    assert_eq!(exit_status, 3, "bash exited with `exit 3`");
    // The last events come right before bash exits; give the workers a moment.
    std::thread::sleep(Duration::from_millis(300));
    let out = rc.stop();

    let mine: Vec<Block> = blocks(&out)
        .into_iter()
        .filter(|b| b.header.contains(" bash pid=") && b.pid() == bash_pid)
        .collect();
    let summary: Vec<String> = mine
        .iter()
        .map(|b| match verb(b) {
            "line" => format!("line {}", line(b).chars().take(60).collect::<String>()),
            _ => format!("{} {}", verb(b), number(b)),
        })
        .collect();
    for b in &mine {
        assert_eq!(
            b.field("tid"),
            Some(bash_pid.to_string().as_str()),
            "{}",
            b.header
        );
        assert_eq!(
            b.field("uid"),
            Some(NOBODY.to_string().as_str()),
            "{}",
            b.header
        );
        assert_eq!(b.field("comm"), Some("bash"), "{}", b.header);
    }
    let want: Vec<String> = [
        format!("line echo {m}-A; (exit 7)"),
        "status 7".into(),
        "line for i in 1 2; do".into(),
        format!("line echo {m}-LOOP-$i"),
        "line done; (exit 4)".into(),
        "status 4".into(),
        format!("line {}", long.chars().take(60).collect::<String>()),
        "status 0".into(),
        "line exit 3".into(),
        "status 3".into(),
        "exit/exec 3".into(),
    ]
    .into();
    assert_eq!(
        summary, want,
        "bash {bash_pid}'s events; all output:\n{out}"
    );
    // The long line (two kernel records) arrived whole, with its length.
    let long_block = &mine[6];
    assert_eq!(line(long_block), long);
    assert!(
        long_block
            .header
            .ends_with(&format!(" line {} bytes", long.len())),
        "{}",
        long_block.header
    );
}

/// `--uid` keeps one user's shells: a root shell typing at the same time is not shown.
#[test]
fn bash_uid_filter_keeps_one_user() {
    let Some(_serial) = bpf_available("bash_uid_filter_keeps_one_user") else {
        return;
    };
    let m = marker("BASH-UID");
    let rc = Rcapture::start(&["bash", "--uid", &NOBODY.to_string()]);
    let root_line = format!("echo {m}-ROOT");
    let nobody_line = format!("echo {m}-NOBODY");
    let root = std::thread::spawn(move || type_into_bash(&[root_line, "exit".into()], 0));
    let (nobody_pid, _) = type_into_bash(&[nobody_line.clone(), "exit".into()], NOBODY);
    let (root_pid, _) = root.join().expect("root shell");
    std::thread::sleep(Duration::from_millis(300));
    let out = rc.stop();
    let shown = blocks(&out);
    assert!(
        shown
            .iter()
            .any(|b| b.pid() == nobody_pid && verb(b) == "line" && line(b) == nobody_line),
        "nobody's shell {nobody_pid} is shown:\n{out}"
    );
    assert!(
        !shown.iter().any(|b| b.pid() == root_pid) && !out.contains(&format!("{m}-ROOT")),
        "root's shell {root_pid} is filtered out:\n{out}"
    );
}

/// The events of one typed line and its status, as `(type, payload)`, from
/// JSON events with `pid`, `type` and a payload decoded by `payload`.
fn of_pid(events: &[Value], pid: u32, payload: impl Fn(&Value) -> Vec<u8>) -> Vec<(u64, String)> {
    events
        .iter()
        .filter(|e| e["pid"] == pid)
        .map(|e| {
            let p = payload(e);
            (
                e["type"].as_u64().unwrap_or(99),
                String::from_utf8_lossy(&p).into_owned(),
            )
        })
        .collect()
}

#[test]
fn bash_events_reach_websocket_clients_and_the_forwarder() {
    let Some(_serial) = bpf_available("bash_events_reach_websocket_clients_and_the_forwarder")
    else {
        return;
    };
    let dir = TempDir::new("bash-out");
    let Some((_up, ext)) = compile_schemas(&dir) else {
        return;
    };
    let (_collector, url, collected_path) = collector(&dir);
    let rc = Rcapture::start(&[&["bash"][..], &forward_json(&url)].concat());
    let addr = rc.addr.clone().expect("announced address");
    let ws = WsClient::start(
        "bash",
        &format!("ws://{addr}/ws?modules=bash"),
        &ext,
        "event_pb2",
        false,
    );
    let m = marker("BASH-OUT");
    let typed = format!("echo {m}; (exit 9)");
    let (bash_pid, _) = type_into_bash(&[typed.clone(), "exit 2".into()], NOBODY);
    let want: Vec<(u64, String)> = vec![
        (0, typed),
        (1, "9".into()),
        (0, "exit 2".into()),
        (1, "2".into()),
        (2, "2".into()),
    ];

    // WebSocket: every event of the shell, with the extensions.
    let seen = ws.events_until(|seen| {
        seen.iter()
            .filter(|e| e["event_payload"]["pid"] == bash_pid)
            .count()
            >= want.len()
    });
    let ws_events: Vec<Value> = seen.iter().map(|e| e["event_payload"].clone()).collect();
    assert_eq!(
        of_pid(&ws_events, bash_pid, |e| unhex(
            e["payload"].as_str().unwrap_or("")
        )),
        want,
        "WebSocket events: {ws_events:#?}"
    );
    for e in ws_events.iter().filter(|e| e["pid"] == bash_pid) {
        assert_eq!(e["module"], "bash", "{e}");
        assert_eq!(e["uid"], NOBODY, "{e}");
        assert_eq!(e["uuid"], format!("{bash_pid}_{NOBODY}_bash"), "{e}");
    }

    // Forwarder: the same events at the collector.
    let decode = |e: &Value| {
        STANDARD
            .decode(e["payload"].as_str().unwrap_or(""))
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let forwarded = loop {
        let events = collected(&collected_path);
        if of_pid(&events, bash_pid, decode).len() >= want.len() || Instant::now() >= deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(ws);
    rc.stop();
    assert_eq!(
        of_pid(&forwarded, bash_pid, decode),
        want,
        "forwarded events: {forwarded:#?}"
    );
}
