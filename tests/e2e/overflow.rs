//! A tiny ring buffer under a burst: every record is either delivered or
//! counted as lost by the kernel, exactly.

use crate::testutil::{Proc, Rcapture, TempDir, blocks, bpf_available, make_cert, support};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

#[test]
fn kernel_loss_counter_equals_missing_events() {
    let Some(_serial) = bpf_available("kernel_loss_counter_equals_missing_events") else {
        return;
    };
    let dir = TempDir::new("overflow");
    let (cert, key) = make_cert(&dir);
    let mut srv = Command::new("python3")
        .arg(support("sink_server.py"))
        .arg(&cert)
        .arg(&key)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 sink server");
    let mut line = String::new();
    BufReader::new(srv.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().unwrap();
    let _srv = Proc(srv);

    let n = 20_000u64;
    let mut client = Command::new("python3")
        .arg(support("burst_client.py"))
        .arg(port.to_string())
        .arg(n.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 burst client");
    let pid = client.id();
    let mut out = BufReader::new(client.stdout.take().unwrap());
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "connected");

    // One page per CPU: a few dozen records fit; the burst overflows it.
    let rc = Rcapture::start(&[
        "tls",
        "--pid",
        &pid.to_string(),
        "--per-cpu-map-size",
        "4",
        "--listen",
        "none",
    ]);
    client.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "done");
    assert!(client.wait().unwrap().success());
    let text = rc_stop_with_ledger(rc);
    let (stdout, ledger) = text;
    let delivered = blocks(&stdout)
        .iter()
        .filter(|b| b.pid() == pid && b.what() == "send")
        .count() as u64;
    let masterkeys = blocks(&stdout)
        .iter()
        .filter(|b| b.pid() == pid && b.what() == "masterkey")
        .count() as u64;
    let lost = ledger_field(&ledger, "lost in kernel ring buffers");
    let events = ledger_field(&ledger, "events,");
    // stdout never blocks the workers: what it could not keep up with is
    // dropped and counted (the test reads stdout as it comes, so usually 0).
    let drops = ledger_field(&ledger, "output drops");
    eprintln!(
        "overflow: {n} writes, {delivered} delivered, {lost} lost in the kernel, {masterkeys} secret events"
    );
    assert!(lost > 0, "the burst should overflow a 4 KiB ring: {ledger}");
    assert_eq!(
        events,
        delivered + masterkeys + drops,
        "every event the workers produced was written or counted as dropped: {ledger}"
    );
    // Each write is one record; the session's secrets are one more (if not lost).
    assert_eq!(
        delivered + masterkeys + drops + lost,
        n + 1,
        "delivered {delivered} + dropped {drops} + lost {lost} must equal the {n} writes (+1 secret record): {ledger}"
    );
}

fn rc_stop_with_ledger(rc: Rcapture) -> (String, String) {
    let (out, err) = rc.stop_with_stderr();
    let ledger = err
        .into_iter()
        .find(|l| l.starts_with("rcapture: stopped by signal"))
        .expect("ledger line");
    (out, ledger)
}

/// The number just before `label` in the ledger line.
fn ledger_field(ledger: &str, label: &str) -> u64 {
    let i = ledger
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} not in {ledger}"));
    ledger[..i]
        .trim_end()
        .rsplit(' ')
        .next()
        .unwrap()
        .trim_start_matches(':')
        .parse()
        .unwrap_or_else(|_| panic!("number before {label:?} in {ledger}"))
}
