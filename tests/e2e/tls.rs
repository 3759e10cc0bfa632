//! `rcapture tls` against curl (SSL_write/SSL_read) and Python's ssl module
//! (SSL_write_ex/SSL_read_ex): plaintext, identity, fd, tuple, whole payloads,
//! key logs that let tshark decrypt, and the pid filter.

use crate::testutil::{Rcapture, TempDir, blocks, bpf_available, python_server, run_ok, support};
use std::process::Command;
use std::time::Duration;

fn marker(tag: &str) -> String {
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

#[test]
fn curl_request_and_response_with_identity_fd_and_tuple() {
    let Some(_serial) = bpf_available("curl_request_and_response_with_identity_fd_and_tuple")
    else {
        return;
    };
    let dir = TempDir::new("curl");
    let (_srv, port) = python_server(&dir, false);
    let rc = Rcapture::start(&["tls"]);
    let m = marker("curl");
    let (curl_pid, _) = run_ok(
        Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-H"])
            .arg(format!("X-Unique: {m}"))
            .arg(format!("https://127.0.0.1:{port}/hello")),
    );
    let out = rc.stop();
    let all = blocks(&out);
    let mine: Vec<_> = all.iter().filter(|b| b.pid() == curl_pid).collect();
    let send = mine
        .iter()
        .find(|b| b.what() == "send" && b.body.contains(&m))
        .unwrap_or_else(|| panic!("no send block of curl {curl_pid} with {m}:\n{out}"));
    assert!(
        send.body.starts_with("GET /hello HTTP/1.1\n"),
        "{}",
        send.body
    );
    assert!(send.body.contains(&format!("X-Unique: {m}\n")));
    assert_eq!(send.field("comm"), Some("curl"));
    assert_eq!(send.field("tid"), Some(curl_pid.to_string().as_str()));
    let fd: u32 = send.field("fd").unwrap().parse().unwrap();
    assert!(fd > 2, "curl's socket fd, got {fd}");
    let (local, remote) = send.addrs().split_once("->").unwrap();
    assert_eq!(remote, format!("127.0.0.1:{port}"));
    let cport: u16 = local
        .strip_prefix("127.0.0.1:")
        .unwrap_or_else(|| panic!("local {local}"))
        .parse()
        .unwrap();
    assert!(cport > 0 && cport != port);
    let recv = mine
        .iter()
        .find(|b| b.what() == "recv" && b.body.starts_with("HTTP/1.1 200 OK"))
        .unwrap_or_else(|| panic!("no response block:\n{out}"));
    let body = mine
        .iter()
        .find(|b| b.what() == "recv" && b.body.contains("hello from the test server /hello"))
        .unwrap_or_else(|| panic!("no response body:\n{out}"));
    assert_eq!(body.addrs(), recv.addrs());
    assert_eq!(recv.field("fd"), Some(fd.to_string().as_str()));
    assert_eq!(recv.addrs(), format!("127.0.0.1:{port}->127.0.0.1:{cport}"));
    // The secrets of the session are shown too.
    assert!(
        mine.iter()
            .any(|b| b.what() == "masterkey" && b.body.contains("CLIENT_TRAFFIC_SECRET_0 ")),
        "{out}"
    );
}

#[test]
fn python_ssl_client_uses_the_ex_entry_points() {
    let Some(_serial) = bpf_available("python_ssl_client_uses_the_ex_entry_points") else {
        return;
    };
    let dir = TempDir::new("pyex");
    let (_srv, port) = python_server(&dir, false);
    let rc = Rcapture::start(&["tls"]);
    let m = marker("py");
    let (client_pid, line) = run_ok(
        Command::new("python3")
            .arg(support("tls_client.py"))
            .arg(port.to_string())
            .arg(&m),
    );
    assert_eq!(line.trim(), "HTTP/1.1 200 OK");
    let out = rc.stop();
    let mine: Vec<_> = blocks(&out)
        .into_iter()
        .filter(|b| b.pid() == client_pid)
        .collect();
    let send = mine
        .iter()
        .find(|b| b.what() == "send")
        .unwrap_or_else(|| panic!("no send of {client_pid}:\n{out}"));
    assert!(
        send.body.starts_with("GET /py HTTP/1.1\n") && send.body.contains(&m),
        "{}",
        send.body
    );
    assert!(
        send.addrs().ends_with(&format!("->127.0.0.1:{port}")),
        "{}",
        send.header
    );
    assert!(
        mine.iter()
            .any(|b| b.what() == "recv" && b.body.contains("hello from the test server /py")),
        "{out}"
    );
}

#[test]
fn one_mebibyte_write_is_one_complete_event() {
    let Some(_serial) = bpf_available("one_mebibyte_write_is_one_complete_event") else {
        return;
    };
    let dir = TempDir::new("big");
    let (_srv, port) = python_server(&dir, false);
    let rc = Rcapture::start(&["tls"]);
    let n = 1 << 20;
    let (pid, line) = run_ok(
        Command::new("python3")
            .arg(support("tls_client.py"))
            .arg(port.to_string())
            .arg(marker("big"))
            .arg(n.to_string()),
    );
    assert_eq!(line.trim(), "HTTP/1.1 200 OK");
    let out = rc.stop();
    let body = blocks(&out)
        .into_iter()
        .find(|b| b.pid() == pid && b.what() == "send" && b.body.starts_with("START-MARK"))
        .unwrap_or_else(|| {
            panic!(
                "no 1 MiB body event; headers: {:?}",
                blocks(&out)
                    .iter()
                    .map(|b| b.header.clone())
                    .collect::<Vec<_>>()
            )
        });
    assert!(
        body.header.ends_with(&format!(" send {n} bytes")),
        "{}",
        body.header
    );
    let text = body.body.trim_end_matches('\n');
    assert_eq!(text.len(), n, "payload length");
    assert_eq!(text.find("MIDDLE-MARK"), Some(n / 2));
    assert!(text.ends_with("END-MARK"));
    assert_eq!(text.bytes().filter(|&b| b == b'x').count(), n - 10 - 11 - 8);
}

#[test]
fn capture_limit_reports_the_cut_exactly() {
    let Some(_serial) = bpf_available("capture_limit_reports_the_cut_exactly") else {
        return;
    };
    let dir = TempDir::new("cut");
    let (_srv, port) = python_server(&dir, false);
    let rc = Rcapture::start(&["tls", "--max-payload", "100000"]);
    let n = 1 << 20;
    let (pid, _) = run_ok(
        Command::new("python3")
            .arg(support("tls_client.py"))
            .arg(port.to_string())
            .arg(marker("cut"))
            .arg(n.to_string()),
    );
    let out = rc.stop();
    let b = blocks(&out)
        .into_iter()
        .find(|b| b.pid() == pid && b.body.starts_with("START-MARK"))
        .expect("cut event");
    assert!(
        b.header.ends_with(&format!(
            " send 100000 bytes ({} more bytes not captured)",
            n - 100_000
        )),
        "{}",
        b.header
    );
    assert_eq!(b.body.trim_end_matches('\n').len(), 100_000);
}

#[test]
fn pid_filter_hides_other_processes() {
    let Some(_serial) = bpf_available("pid_filter_hides_other_processes") else {
        return;
    };
    let dir = TempDir::new("pid");
    let (srv, port) = python_server(&dir, false);
    let srv_pid = srv.0.id();
    let rc = Rcapture::start(&["tls", "--pid", &srv_pid.to_string()]);
    let m = marker("pidf");
    let (curl_pid, _) = run_ok(
        Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-H"])
            .arg(format!("X-Unique: {m}"))
            .arg(format!("https://127.0.0.1:{port}/f")),
    );
    let out = rc.stop();
    let all = blocks(&out);
    assert!(
        all.iter()
            .any(|b| b.pid() == srv_pid && b.what() == "recv" && b.body.contains(&m)),
        "the server's read of the request is shown:\n{out}"
    );
    assert!(
        all.iter().all(|b| b.pid() == srv_pid),
        "only pid {srv_pid}, curl was {curl_pid}:\n{out}"
    );
}

/// Captures one curl request on loopback with tshark while rcapture writes a
/// key log, then lets tshark decrypt the capture with it.
fn keylog_decrypts(tls_flag: &str, tls12_server: bool) {
    let dir = TempDir::new("keylog");
    let (_srv, port) = python_server(&dir, tls12_server);
    let keylog = dir.path("keys.log");
    let pcap = dir.path("cap.pcapng");
    let rc = Rcapture::start(&[
        "tls",
        "-m",
        "keylog",
        "--keylogfile",
        keylog.to_str().unwrap(),
    ]);
    let mut tshark = crate::testutil::capture_loopback("tshark", port, &pcap);
    let m = marker("keylog");
    run_ok(
        Command::new("curl")
            .args(["-sk", tls_flag, "-o", "/dev/null", "-H"])
            .arg(format!("X-Unique: {m}"))
            .arg(format!("https://127.0.0.1:{port}/secret")),
    );
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(tshark.id() as i32, libc::SIGINT) };
    tshark.wait().unwrap();
    let out = rc.stop();
    assert!(out.is_empty(), "keylog mode writes nothing to stdout");
    let keys = std::fs::read_to_string(&keylog).unwrap();
    let labels: Vec<&str> = keys.lines().map(|l| l.split(' ').next().unwrap()).collect();
    let mut uniq = keys
        .lines()
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>())
        .collect::<Vec<_>>();
    uniq.sort();
    uniq.dedup();
    assert_eq!(
        uniq.len(),
        keys.lines().count(),
        "no duplicate (label, client random):\n{keys}"
    );
    if tls12_server {
        assert!(labels.contains(&"CLIENT_RANDOM"), "{keys}");
    } else {
        for l in [
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
            "SERVER_HANDSHAKE_TRAFFIC_SECRET",
            "CLIENT_TRAFFIC_SECRET_0",
            "SERVER_TRAFFIC_SECRET_0",
            "EXPORTER_SECRET",
        ] {
            assert!(labels.contains(&l), "{l} missing:\n{keys}");
        }
    }
    let (_, decoded) = run_ok(
        Command::new("tshark")
            .arg("-r")
            .arg(&pcap)
            .arg("-o")
            .arg(format!("tls.keylog_file:{}", keylog.display()))
            .args([
                "-d",
                &format!("tcp.port=={port},tls"),
                "-Y",
                "http.request",
                "-T",
                "fields",
                "-e",
                "http.request.line",
            ]),
    );
    let (_, summary) = run_ok(
        Command::new("tshark")
            .arg("-r")
            .arg(&pcap)
            .arg("-o")
            .arg(format!("tls.keylog_file:{}", keylog.display())),
    );
    assert!(
        decoded.contains(&format!("X-Unique: {m}")),
        "tshark could not decrypt the request with the key log:\n{decoded}\nkeys:\n{keys}\ncapture:\n{summary}"
    );
}

#[test]
fn keylog_decrypts_tls13() {
    if let Some(_serial) = bpf_available("keylog_decrypts_tls13") {
        keylog_decrypts("--tlsv1.3", false);
    }
}

#[test]
fn keylog_decrypts_tls12() {
    if let Some(_serial) = bpf_available("keylog_decrypts_tls12") {
        keylog_decrypts("--tlsv1.2", true);
    }
}

/// Two threads of one process whose tids share rcapture's per-thread call
/// slot (tid % 16384): B's calls, made while A's `SSL_read` is in flight in
/// that slot, go through the overflow path; every call of both threads is
/// still captured once, with its own thread id and payload.
#[test]
fn threads_sharing_a_call_slot_lose_nothing() {
    let Some(_serial) = bpf_available("threads_sharing_a_call_slot_lose_nothing") else {
        return;
    };
    let dir = TempDir::new("tidslot");
    let (cert, key) = crate::testutil::make_cert(&dir);
    let rc = Rcapture::start(&["tls"]);
    let m = marker("slot");
    let (pid, line) = run_ok(
        Command::new("python3")
            .arg(support("tid_collide.py"))
            .arg(&cert)
            .arg(&key)
            .arg(&m),
    );
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect(&line);
    let (a_tid, b_tid) = (v["a_tid"].as_u64().unwrap(), v["b_tid"].as_u64().unwrap());
    assert_ne!(a_tid, b_tid);
    assert_eq!(v["a_slot"], v["b_slot"], "{line}");
    assert_eq!(v["a"], serde_json::json!([format!("A-RESP {m}")]), "{line}");
    assert_eq!(
        v["b"],
        serde_json::json!([format!("B-RESP1 {m}"), format!("B-RESP2 {m}")]),
        "{line}"
    );
    let out = rc.stop();
    let mine: Vec<_> = blocks(&out)
        .into_iter()
        .filter(|b| b.pid() == pid && b.body.contains(&m))
        .collect();
    let seen = |tid: u64, what: &str, text: &str| {
        mine.iter()
            .filter(|b| {
                b.field("tid") == Some(&tid.to_string())
                    && b.what() == what
                    && b.body.starts_with(&format!("{text} {m}"))
            })
            .count()
    };
    for (tid, what, text) in [
        (a_tid, "send", "A-REQ"),
        (a_tid, "recv", "A-RESP"),
        (b_tid, "send", "B-REQ1"),
        (b_tid, "recv", "B-RESP1"),
        (b_tid, "send", "B-REQ2"),
        (b_tid, "recv", "B-RESP2"),
    ] {
        assert_eq!(seen(tid, what, text), 1, "{text} of tid {tid}:\n{out}");
    }
}
