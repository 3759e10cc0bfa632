//! `rcapture bash` against a real interactive bash on a pseudo-terminal
//! (`tests/support/bash_pty.py`, the shell running as nobody): each command
//! line typed, whole (a multi-line loop, a 20 000-byte line), with the
//! shell's pid and uid, each command with its exit status, and the shell's
//! exit; `--uid` keeping one user's shells; the same events on a WebSocket
//! client and at a forwarding collector.

use crate::outputs::{collected, forward_json, start_collector};
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

/// One bash event of the text output: what it is (`readline`, `status=N`,
/// `exit/exec`, `exit/exec status=N`), the command it shows (continuation
/// lines unindented) and whether its header says bytes were not captured.
#[derive(Debug, PartialEq, Eq)]
struct Shown {
    what: String,
    command: String,
    cut: bool,
}

fn shown(b: &Block) -> Shown {
    let after = b.header.split_once(" comm=bash ").map_or("", |x| x.1);
    let (head, first) = after.split_once(": ").unwrap_or((after, ""));
    let cut = head.contains("more bytes not captured");
    let what = head.split(" (").next().unwrap_or(head).to_string();
    let mut command = first.to_string();
    for l in b.body.lines().filter(|l| !l.is_empty()) {
        command.push('\n');
        command.push_str(l.strip_prefix("    ").unwrap_or(l));
    }
    Shown { what, command, cut }
}

fn ev(what: &str, command: &str) -> Shown {
    Shown {
        what: what.into(),
        command: command.into(),
        cut: false,
    }
}

#[test]
fn bash_lines_statuses_and_exit_are_captured() {
    let Some(_serial) = bpf_available("bash_lines_statuses_and_exit_are_captured") else {
        return;
    };
    let m = marker("BASH");
    let long = format!("echo {m}-LONG-{}-END", "z".repeat(20_000));
    let a = format!("echo {m}-A; (exit 7)");
    let lines: Vec<String> = vec![
        a.clone(),
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

    let mut mine: Vec<Block> = blocks(&out)
        .into_iter()
        .filter(|b| b.header.contains(" bash pid=") && b.pid() == bash_pid)
        .collect();
    // One worker per CPU prints its own ring's events: a shell that moved
    // between CPUs has its events in time order per CPU only. The header
    // starts with the event's time (RFC 3339, nanoseconds, UTC).
    mine.sort_by(|a, b| a.header.split(' ').next().cmp(&b.header.split(' ').next()));
    for b in &mine {
        assert_eq!(
            b.field("uid"),
            Some(NOBODY.to_string().as_str()),
            "{}",
            b.header
        );
        assert_eq!(b.field("comm"), Some("bash"), "{}", b.header);
    }
    let got: Vec<Shown> = mine.iter().map(shown).collect();
    let cmd_loop = format!("for i in 1 2; do\necho {m}-LOOP-$i\ndone; (exit 4)");
    // The status of the long line carries its first 4096 bytes, and says so.
    let long_status = Shown {
        what: "status=0".into(),
        command: long[..4096].into(),
        cut: true,
    };
    let want = vec![
        ev("readline", &a),
        ev("status=7", &a),
        ev("readline", "for i in 1 2; do"),
        ev("readline", &format!("echo {m}-LOOP-$i")),
        ev("readline", "done; (exit 4)"),
        ev("status=4", &cmd_loop),
        ev("readline", &long),
        long_status,
        ev("readline", "exit 3"),
        ev("status=3", "exit 3"),
        ev("exit/exec status=3", "exit 3"),
    ];
    let differ: Vec<(usize, Option<&Shown>, Option<&Shown>)> = (0..got.len().max(want.len()))
        .filter(|&i| got.get(i) != want.get(i))
        .map(|i| (i, got.get(i), want.get(i)))
        .collect();
    assert!(
        differ.is_empty(),
        "bash {bash_pid}'s events differ (index, got, want): {differ:#?}\nall output:\n{out}"
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
    let all = blocks(&out);
    assert!(
        all.iter()
            .any(|b| b.pid() == nobody_pid && shown(b) == ev("readline", &nobody_line)),
        "nobody's shell {nobody_pid} is shown:\n{out}"
    );
    assert!(
        !all.iter().any(|b| b.pid() == root_pid) && !out.contains(&format!("{m}-ROOT")),
        "root's shell {root_pid} is filtered out:\n{out}"
    );
}

/// The events of process `pid` as `(type, payload, status)`, from JSON
/// events with `pid`, `type`, `status` and a payload decoded by `payload`.
fn of_pid(
    events: &[Value],
    pid: u32,
    payload: impl Fn(&Value) -> Vec<u8>,
) -> Vec<(u64, String, i64)> {
    // In time order: each CPU's worker publishes its own ring's events.
    let mut timed: Vec<(i64, (u64, String, i64))> = events
        .iter()
        .filter(|e| e["pid"] == pid)
        .map(|e| {
            let p = payload(e);
            (
                e["timestamp"].as_i64().unwrap_or(0),
                (
                    e["type"].as_u64().unwrap_or(99),
                    String::from_utf8_lossy(&p).into_owned(),
                    e["status"].as_i64().unwrap_or(-999),
                ),
            )
        })
        .collect();
    timed.sort_by_key(|(t, _)| *t);
    timed.into_iter().map(|(_, e)| e).collect()
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
    let collected_path = dir.path("collector.jsonl");
    let (_collector, url) = start_collector(&collected_path);
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
    // Each line (type 0), its command with its exit status (type 1, in
    // `Event.status`), the exit with its command and status (type 2).
    let want: Vec<(u64, String, i64)> = vec![
        (0, typed.clone(), 0),
        (1, typed, 9),
        (0, "exit 2".into(), 0),
        (1, "exit 2".into(), 2),
        (2, "exit 2".into(), 2),
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
