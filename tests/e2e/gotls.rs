//! `rcapture gotls` against a Go HTTPS server and client in one process
//! (tests/support/gotls/main.go), built four ways: with and without a
//! symbol table, PIE and not. For each build: one request and its response
//! in both directions with the process's pid and each side's fd and
//! tuple; a key log that lets tshark decrypt a dumpcap capture of TLS 1.3
//! and TLS 1.2 sessions; 10 000 requests through the traced program, which
//! must succeed, be captured in full, and whose rate is measured against
//! an untraced run. And `--pid` alone finds the binary from /proc/PID/exe.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rcapture_testsupport::gobuild::{self, GoVariant};
use serde_json::Value;

use crate::server::marker;
use crate::testutil::{Block, Proc, Rcapture, TempDir, blocks, bpf_available, run_ok};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// What the Go test program printed when it was done.
struct Report(Value);

impl Report {
    fn num(&self, k: &str) -> u64 {
        self.0[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {}", self.0))
    }
    fn str(&self, k: &str) -> &str {
        self.0[k]
            .as_str()
            .unwrap_or_else(|| panic!("{k} in {}", self.0))
    }
    fn pid(&self) -> u32 {
        self.num("pid") as u32
    }
}

/// Runs the Go test program to completion (exit status 0 asserted).
fn run_prog(exe: &Path, port: u16, marker: &str, n: usize, tls: &str) -> Report {
    let (pid, out) = run_ok(Command::new(exe).args([
        "-addr",
        &format!("127.0.0.1:{port}"),
        "-marker",
        marker,
        "-n",
        &n.to_string(),
        "-tls",
        tls,
    ]));
    let r = Report(serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}")));
    assert_eq!(r.pid(), pid);
    assert_eq!(r.num("ok"), n as u64, "{}", r.0);
    assert_eq!(r.num("conns"), 1, "one keep-alive connection: {}", r.0);
    assert_eq!(r.str("tls"), tls, "{}", r.0);
    r
}

fn start(exe: &Path, extra: &[&str]) -> Rcapture {
    let mut args = vec!["gotls", "--elfpath", exe.to_str().unwrap()];
    args.extend(extra);
    let rc = Rcapture::start(&args);
    let go = gobuild::go_version();
    assert!(
        rc.stderr.iter().any(|l| l.starts_with(&format!(
            "rcapture: module gotls: probing {} (version {go}) with ",
            exe.display()
        ))),
        "{:#?}",
        rc.stderr
    );
    rc
}

fn module_of(b: &Block) -> &str {
    b.header.split(' ').nth(1).unwrap()
}

/// One request with a unique marker: the client's write and the server's
/// read of it, the server's write and the client's read of the answer,
/// each with the program's pid, the right side's fd and tuple; and the
/// session's secrets.
fn request_and_response(v: GoVariant) {
    let exe = gobuild::gotls_test_prog(v);
    let rc = start(&exe, &[]);
    if !v.has_symbols() {
        assert!(
            rc.stderr.contains(
                &"rcapture: note: module gotls: no symbol table: functions found in the pclntab"
                    .to_string()
            ),
            "{:#?}",
            rc.stderr
        );
    }
    let port = free_port();
    let m = marker(&format!("rr-{}", v.name()));
    let r = run_prog(&exe, port, &m, 1, "1.3");
    let out = rc.stop();
    let mine: Vec<Block> = blocks(&out)
        .into_iter()
        .filter(|b| b.pid() == r.pid())
        .collect();
    let (cfd, sfd) = (
        r.num("client_fd").to_string(),
        r.num("server_fd").to_string(),
    );
    let (client, server) = (r.str("client_local"), r.str("server_local"));
    assert_eq!(server, format!("127.0.0.1:{port}"));
    let find = |what: &str, text: &str| {
        mine.iter()
            .find(|b| b.what() == what && b.body.contains(text))
            .unwrap_or_else(|| panic!("{}: no {what} block with {text:?}:\n{out}", v.name()))
    };
    let request = format!("X-Marker: {m}\n");
    let answer = format!("pong {m} BODY {m}\n");
    let sent = find("send", &request);
    assert!(
        sent.body.starts_with("POST /echo/0 HTTP/1.1\n"),
        "{}",
        sent.body
    );
    let read = find("recv", &request);
    let replied = find("send", &answer);
    assert!(
        replied.body.starts_with("HTTP/1.1 200 OK\n"),
        "{}",
        replied.body
    );
    let got = find("recv", &answer);
    for (b, fd, addrs) in [
        (sent, &cfd, format!("{client}->{server}")),
        (read, &sfd, format!("{client}->{server}")),
        (replied, &sfd, format!("{server}->{client}")),
        (got, &cfd, format!("{server}->{client}")),
    ] {
        assert_eq!(module_of(b), "gotls", "{}", b.header);
        assert_eq!(b.field("comm"), Some("gotls_test_prog"), "{}", b.header);
        assert_eq!(
            b.field("fd"),
            Some(fd.as_str()),
            "{}: {}",
            v.name(),
            b.header
        );
        assert_eq!(b.addrs(), addrs, "{}: {}", v.name(), b.header);
    }
    assert_eq!(sent.body, read.body, "what one side wrote the other read");
    assert_eq!(replied.body, got.body);
    for label in [
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_TRAFFIC_SECRET_0",
    ] {
        assert!(
            mine.iter()
                .any(|b| b.header.contains(" masterkey client_random=")
                    && b.body.starts_with(&format!("{label} "))),
            "{}: {label}:\n{out}",
            v.name()
        );
    }
}

/// dumpcap on loopback, port `port`; SIGINT and wait at drop.
struct Dumpcap(Proc);

impl Dumpcap {
    fn start(port: u16, file: &Path) -> Self {
        let mut child = Command::new("dumpcap")
            .args(["-q", "-i", "lo", "-f", &format!("tcp port {port}"), "-w"])
            .arg(file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting dumpcap");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("Capturing on") => break,
                Some(Ok(_)) => continue,
                other => panic!("dumpcap did not start capturing: {other:?}"),
            }
        }
        std::thread::spawn(move || for _ in lines {});
        // dumpcap announces the interface a moment before its filter is live.
        std::thread::sleep(Duration::from_secs(1));
        Self(Proc(child))
    }

    fn stop(self) {
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.0.0.id() as i32, libc::SIGINT) };
        let mut me = self;
        me.0.0.wait().unwrap();
    }
}

/// tshark's plaintext of the first two TLS streams on `port` in `pcap`,
/// with `keylog` as its key file, or none (the file's own secrets).
fn tshark_follow(pcap: &Path, port: u16, keylog: Option<&Path>) -> String {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(pcap);
    if let Some(k) = keylog {
        cmd.arg("-o")
            .arg(format!("tls.keylog_file:{}", k.display()));
    }
    cmd.args(["-d", &format!("tcp.port=={port},tls"), "-q"])
        .args(["-z", "follow,tls,ascii,0", "-z", "follow,tls,ascii,1"]);
    run_ok(&mut cmd).1
}

/// Each marker's request header and answer are in tshark's plaintext.
fn assert_decrypted(follow: &str, markers: &[&String], how: &str) {
    for m in markers {
        for text in [format!("X-Marker: {m}"), format!("pong {m} BODY {m}")] {
            assert!(
                follow.contains(&text),
                "tshark did not decrypt {text:?} {how}:\n{follow}"
            );
        }
    }
}

/// A TLS 1.3 and a TLS 1.2 session captured by dumpcap while rcapture
/// writes the key log: tshark decrypts both with it.
fn keylog_decrypts(v: GoVariant) {
    let exe = gobuild::gotls_test_prog(v);
    let dir = TempDir::new(&format!("gokeys-{}", v.name()));
    let (keylog, pcap) = (dir.path("keys.log"), dir.path("cap.pcapng"));
    let rc = start(
        &exe,
        &["-m", "keylog", "--keylogfile", keylog.to_str().unwrap()],
    );
    let port = free_port();
    let cap = Dumpcap::start(port, &pcap);
    let (m13, m12) = (marker("k13"), marker("k12"));
    run_prog(&exe, port, &m13, 1, "1.3");
    run_prog(&exe, port, &m12, 1, "1.2");
    cap.stop();
    let out = rc.stop();
    assert!(out.is_empty(), "keylog mode writes nothing to stdout");
    let keys = std::fs::read_to_string(&keylog).unwrap();
    let labels: Vec<&str> = keys.lines().map(|l| l.split(' ').next().unwrap()).collect();
    for l in [
        "CLIENT_RANDOM",
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_TRAFFIC_SECRET_0",
    ] {
        assert_eq!(
            labels.iter().filter(|x| **x == l).count(),
            1,
            "{}: {l} once (client and server log the same line):\n{keys}",
            v.name()
        );
    }
    let follow = tshark_follow(&pcap, port, Some(&keylog));
    assert_decrypted(
        &follow,
        &[&m13, &m12],
        &format!("{}: with the key log (keys:\n{keys})", v.name()),
    );
}

/// 10 000 requests through the traced program: it exits 0 with every
/// answer right, and rcapture shows every request and answer once on each
/// side: none twice, and any missing one counted as lost (ring full) or
/// dropped (output behind) in rcapture's summary. The program's rate is
/// compared with an untraced run (printed).
fn many_requests(v: GoVariant) {
    const N: usize = 10_000;
    let exe = gobuild::gotls_test_prog(v);
    let untraced = run_prog(&exe, free_port(), &marker("base"), N, "1.3");
    let rc = start(&exe, &[]);
    let m = marker(&format!("many-{}", v.name()));
    let r = run_prog(&exe, free_port(), &m, N, "1.3");
    let (out, stderr) = rc.stop_with_stderr();
    let (cfd, sfd) = (
        r.num("client_fd").to_string(),
        r.num("server_fd").to_string(),
    );
    // Per (requests sent, read; answers sent, read): how often each request
    // number was seen.
    let mut seen = vec![[0u32; 4]; N];
    let (request, answer) = (format!("X-Marker: {m}-"), format!("pong {m}-"));
    for b in blocks(&out).iter().filter(|b| b.pid() == r.pid()) {
        let Some(fd) = b.field("fd") else {
            continue; // masterkey
        };
        let (i, text) = match (b.what(), fd == cfd, fd == sfd) {
            ("send", true, _) if b.body.contains(&request) => (0, &request),
            ("recv", _, true) if b.body.contains(&request) => (1, &request),
            ("send", _, true) if b.body.contains(&answer) => (2, &answer),
            ("recv", true, _) if b.body.contains(&answer) => (3, &answer),
            _ => continue,
        };
        let at = b.body.find(text.as_str()).unwrap() + text.len();
        let digits: String = b.body[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let n: usize = digits.parse().unwrap_or_else(|_| panic!("{}", b.body));
        seen[n][i] += 1;
    }
    let twice: Vec<usize> = (0..N).filter(|&n| seen[n].iter().any(|&c| c > 1)).collect();
    assert!(twice.is_empty(), "{}: seen twice: {twice:?}", v.name());
    let missing: usize = seen.iter().flatten().filter(|&&c| c == 0).count();
    let summary = stderr
        .iter()
        .find(|l| l.starts_with("rcapture: stopped by signal"))
        .unwrap_or_else(|| panic!("no summary: {stderr:#?}"));
    let count_before = |what: &str| -> usize {
        let at = summary
            .find(what)
            .unwrap_or_else(|| panic!("{what}: {summary}"));
        summary[..at].rsplit(' ').next().unwrap().parse().unwrap()
    };
    let (lost, dropped) = (
        count_before(" lost in kernel ring buffers"),
        count_before(" output drops"),
    );
    assert!(
        missing <= lost + dropped,
        "{}: {missing} of {} events missing, but {lost} lost and {dropped} dropped: {summary}",
        v.name(),
        4 * N
    );
    let (base, traced) = (
        untraced.0["requests_per_second"].as_f64().unwrap(),
        r.0["requests_per_second"].as_f64().unwrap(),
    );
    eprintln!(
        "gotls {}: {N} requests: {base:.0}/s untraced, {traced:.0}/s under capture ({:.2} of \
         untraced); {missing} of {} events not shown ({lost} lost, {dropped} dropped)",
        v.name(),
        traced / base,
        4 * N
    );
}

macro_rules! variant_tests {
    ($($variant:ident: $rr:ident, $kl:ident, $many:ident;)*) => {$(
        #[test]
        fn $rr() {
            if let Some(_serial) = bpf_available(stringify!($rr)) {
                request_and_response(GoVariant::$variant);
            }
        }
        #[test]
        fn $kl() {
            if let Some(_serial) = bpf_available(stringify!($kl)) {
                keylog_decrypts(GoVariant::$variant);
            }
        }
        #[test]
        fn $many() {
            if let Some(_serial) = bpf_available(stringify!($many)) {
                many_requests(GoVariant::$variant);
            }
        }
    )*};
}

variant_tests! {
    Plain: gotls_plain_request_and_response, gotls_plain_keylog_decrypts, gotls_plain_10000_requests;
    Stripped: gotls_stripped_request_and_response, gotls_stripped_keylog_decrypts, gotls_stripped_10000_requests;
    Pie: gotls_pie_request_and_response, gotls_pie_keylog_decrypts, gotls_pie_10000_requests;
    PieStripped: gotls_pie_stripped_request_and_response, gotls_pie_stripped_keylog_decrypts, gotls_pie_stripped_10000_requests;
}

/// `--pid` alone: the binary is /proc/PID/exe, and only that process is
/// captured (another run of the same binary is not).
#[test]
fn gotls_pid_alone_finds_the_binary() {
    let Some(_serial) = bpf_available("gotls_pid_alone_finds_the_binary") else {
        return;
    };
    let exe = gobuild::gotls_test_prog(GoVariant::PieStripped);
    let port = free_port();
    let m = marker("bypid");
    let mut child = Command::new(&exe)
        .args([
            "-wait",
            "-addr",
            &format!("127.0.0.1:{port}"),
            "-marker",
            &m,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the Go test program");
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let child = Proc(child);
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let rc = Rcapture::start(&["gotls", "--pid", &pid.to_string()]);
    let probing = rc
        .stderr
        .iter()
        .find(|l| l.starts_with("rcapture: module gotls: probing "))
        .unwrap_or_else(|| panic!("{:#?}", rc.stderr));
    assert!(
        probing.starts_with(&format!(
            "rcapture: module gotls: probing /proc/{pid}/root/"
        )) && probing.contains("/gotls_test_prog (version go1."),
        "{probing}"
    );
    let other = marker("other");
    run_prog(&exe, free_port(), &other, 1, "1.3");
    stdin.write_all(b"go\n").unwrap();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    let r = Report(serde_json::from_str(line.trim()).expect(&line));
    assert_eq!((r.pid(), r.num("ok")), (pid, 1));
    let mut child = child;
    assert!(child.0.wait().unwrap().success());
    let out = rc.stop();
    let all = blocks(&out);
    assert!(
        all.iter().any(|b| b.pid() == pid
            && b.what() == "send"
            && b.body.contains(&format!("X-Marker: {m}\n"))),
        "{out}"
    );
    assert!(all.iter().all(|b| b.pid() == pid), "only pid {pid}:\n{out}");
    assert!(!out.contains(&other), "{out}");
}

/// `-m pcap` with the Go module: the pcapng carries the Go program's
/// secrets as Decryption Secrets Blocks, so tshark decrypts its TLS 1.3
/// and TLS 1.2 sessions from the file alone (no key file), and the
/// packets name the Go process.
#[test]
fn gotls_pcap_decrypts_without_a_key_file() {
    let Some(_serial) = bpf_available("gotls_pcap_decrypts_without_a_key_file") else {
        return;
    };
    let exe = gobuild::gotls_test_prog(GoVariant::Plain);
    let dir = TempDir::new("gopcap");
    let pcap = dir.path("go.pcapng");
    let port = free_port();
    let filter = format!("tcp port {port}");
    let rc = start(
        &exe,
        &[
            "-m",
            "pcap",
            "--pcapfile",
            pcap.to_str().unwrap(),
            "-i",
            "lo",
            "--pcap-filter",
            &filter,
        ],
    );
    let (m13, m12) = (marker("p13"), marker("p12"));
    let r13 = run_prog(&exe, port, &m13, 1, "1.3");
    run_prog(&exe, port, &m12, 1, "1.2");
    let (_, stderr) = rc.stop_with_stderr();
    assert!(
        stderr.iter().any(|l| l.starts_with("rcapture: pcapng ")),
        "{stderr:#?}"
    );
    let follow = tshark_follow(&pcap, port, None);
    assert_decrypted(&follow, &[&m13, &m12], "from the pcapng alone");
    let (_, comments) = run_ok(Command::new("tshark").arg("-r").arg(&pcap).args([
        "-T",
        "fields",
        "-e",
        "frame.comment",
    ]));
    assert!(
        comments.contains(&format!("pid={} comm=", r13.pid())),
        "packets name the Go process {}: {comments}",
        r13.pid()
    );
}
