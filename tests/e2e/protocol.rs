//! The binary's side of the server's strictness: SIGHUP stops like SIGINT
//! (drained, ledger, exit 0), and `--forward` refuses URLs that would
//! inject headers into every forwarded request.

use crate::testutil::{Rcapture, TempDir, blocks, bpf_available, python_server, run_ok};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sighup_drains_and_exits_0_with_the_ledger() {
    let Some(_serial) = bpf_available("sighup_drains_and_exits_0_with_the_ledger") else {
        return;
    };
    let dir = TempDir::new("sighup");
    let (_srv, port) = python_server(&dir, false);
    let rc = Rcapture::start(&["tls"]);
    let addr = rc.addr.clone().expect("the listen address");
    let m = format!("sighup-{}", std::process::id());
    let (curl_pid, _) = run_ok(
        Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-H"])
            .arg(format!("X-Unique: {m}"))
            .arg(format!("https://127.0.0.1:{port}/hup")),
    );
    // Serving before the signal.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200 "), "{resp}");
    let (out, err) = rc.stop_by(libc::SIGHUP);
    let ledger = err
        .iter()
        .find(|l| l.starts_with("rcapture: stopped by signal 1: "))
        .unwrap_or_else(|| panic!("no SIGHUP ledger line: {err:#?}"));
    // The events curl caused were drained and written before the exit.
    assert!(
        blocks(&out)
            .iter()
            .any(|b| b.pid() == curl_pid && b.what() == "send" && b.body.contains(&m)),
        "curl's request is in the output drained at SIGHUP; {ledger}\n{out}"
    );
    let events: u64 = ledger["rcapture: stopped by signal 1: ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("event count in {ledger}"));
    assert!(events >= 2, "{ledger}");
}

/// Runs `rcapture ARGS`; returns (exited with failure, stderr). One still
/// running after 20 s (it accepted the flags and started) is killed and
/// counts as accepted.
fn refused_by_cli(args: &[&str]) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rcapture"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.is_some_and(|st| !st.success()), err)
}

/// The CLI refuses a `--forward` URL with CR LF (header injection) or one
/// over the length limit, naming the field; nothing is started.
#[test]
fn forward_url_that_would_inject_headers_is_refused_by_the_cli() {
    let long = format!("http://127.0.0.1:9/{}", "a".repeat(9000));
    for (url, want) in [
        (
            "http://127.0.0.1:9/x\r\nX-Injected: 1",
            "contains the byte 0x0d",
        ),
        (
            "http://127.0.0.1\r\nX-Injected: 1:9/",
            "contains the byte 0x0d",
        ),
        ("http://bad host/", "contains the byte 0x20"),
        (long.as_str(), "over the 8192-byte limit"),
    ] {
        let (refused, err) = refused_by_cli(&["tls", "--listen", "none", "--forward", url]);
        assert!(refused, "{url:?} was accepted: {err}");
        assert!(
            err.contains("event_forward.url") && err.contains(want) && err.contains("--forward"),
            "{url:?}: {err}"
        );
    }
    let (refused, err) = refused_by_cli(&[
        "tls",
        "--listen",
        "none",
        "--forward",
        "http://127.0.0.1:9/",
        "--forward-header",
        "X-A: b\u{1}c",
    ]);
    assert!(refused && err.contains("control character"), "{err}");
}
