//! `rcapture gnutls` against `gnutls-cli` and `gnutls-serv --echo` (GnuTLS
//! 3.7.9): a marker in both directions with pid, comm, fd and tuple; the
//! WIRE.md §2 fields (uuid, type, payload) in the event file; key logs equal
//! to GnuTLS's own `SSLKEYLOGFILE` output that let tshark decrypt a capture
//! of the session (TLS 1.3 and TLS 1.2); 0-RTT early data and its secret;
//! cork/uncork, `recv_seq`, `send_range` and a custom transport
//! (tests/support/gnutls_paths.c); the pid filter; OpenSSL and GnuTLS in one
//! process; the errors for a library that is not GnuTLS, a missing file and
//! a process without GnuTLS.

use crate::server::marker;
use crate::testutil::{Proc, Rcapture, TempDir, blocks, bpf_available, capture_loopback};
use base64::Engine as _;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A self-signed ECDSA certificate for 127.0.0.1 made with certtool.
fn certtool_cert(dir: &TempDir) -> (String, String) {
    let (tmpl, key, cert) = (dir.path("tmpl"), dir.path("key.pem"), dir.path("cert.pem"));
    std::fs::write(
        &tmpl,
        "cn = \"localhost\"\nserial = 1\nexpiration_days = 2\ntls_www_server\n\
         signing_key\nencryption_key\ndns_name = \"localhost\"\nip_address = \"127.0.0.1\"\n",
    )
    .unwrap();
    for args in [
        vec!["--generate-privkey", "--key-type=ecdsa", "--outfile"],
        vec!["--generate-self-signed", "--load-privkey"],
    ] {
        let mut cmd = Command::new("certtool");
        cmd.args(&args);
        if args[0] == "--generate-privkey" {
            cmd.arg(&key);
        } else {
            cmd.arg(&key)
                .arg("--template")
                .arg(&tmpl)
                .arg("--outfile")
                .arg(&cert);
        }
        let out = cmd.output().expect("running certtool (gnutls-bin)");
        assert!(
            out.status.success(),
            "certtool {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (
        cert.to_str().unwrap().to_owned(),
        key.to_str().unwrap().to_owned(),
    )
}

/// `gnutls-serv --echo` on a free loopback port, listening; returns it and
/// the port.
fn echo_server(dir: &TempDir) -> (Proc, u16) {
    echo_server_with(dir, &[])
}

/// [`echo_server`] with extra gnutls-serv flags.
fn echo_server_with(dir: &TempDir, flags: &[&str]) -> (Proc, u16) {
    let (cert, key) = certtool_cert(dir);
    for _ in 0..10 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut srv = Proc(
            Command::new("gnutls-serv")
                .args(["--echo", "-p", &port.to_string(), "--x509certfile", &cert])
                .args(["--x509keyfile", &key])
                .args(flags)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting gnutls-serv (gnutls-bin)"),
        );
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (srv, port);
            }
            if srv.0.try_wait().unwrap().is_some() {
                break; // the port was taken meanwhile: another one
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("gnutls-serv did not start listening");
}

/// A running `gnutls-cli` connected to the echo server.
struct Client {
    proc: Proc,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Client {
    /// Connects (with these extra gnutls-cli flags) and waits for the
    /// handshake to complete.
    fn connect(port: u16, flags: &[&str], keylog: Option<&std::path::Path>) -> Self {
        Self::start(Command::new("gnutls-cli"), port, flags, keylog)
    }

    /// [`Client::connect`] as user `nobody` (uid 65534).
    fn connect_as_nobody(port: u16) -> Self {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "gnutls-cli",
        ]);
        Self::start(cmd, port, &[], None)
    }

    /// `cmd` runs gnutls-cli (itself, or through an exec like setpriv).
    fn start(
        mut cmd: Command,
        port: u16,
        flags: &[&str],
        keylog: Option<&std::path::Path>,
    ) -> Self {
        cmd.args(["--insecure", "-p", &port.to_string()])
            .args(flags)
            .arg("127.0.0.1");
        match keylog {
            Some(k) => cmd.env("SSLKEYLOGFILE", k),
            None => cmd.env_remove("SSLKEYLOGFILE"),
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting gnutls-cli (gnutls-bin)");
        let stdin = child.stdin.take();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let c = Self {
            proc: Proc(child),
            stdin,
            lines,
        };
        c.wait_for("- Simple Client Mode");
        c
    }

    fn pid(&self) -> u32 {
        self.proc.0.id()
    }

    /// Reads its stdout until a line contains `text`.
    fn wait_for(&self, text: &str) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(15) {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(l) if l.contains(text) => return,
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("gnutls-cli {} never printed {text:?}", self.pid());
    }

    /// Sends `line` and waits for the server's echo.
    fn echo(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        // One write(2): gnutls-cli sends what one read of stdin returns, so
        // a line written in two parts could go out as two records.
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
        self.wait_for(line);
    }

    /// Closes its stdin (it says goodbye and exits).
    fn finish(mut self) {
        drop(self.stdin.take());
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if self.proc.0.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // killed at drop
    }
}

/// The fds of process `pid` that are sockets.
fn socket_fds(pid: u32) -> BTreeSet<u32> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            target
                .to_str()?
                .starts_with("socket:")
                .then(|| e.file_name().to_str()?.parse().ok())?
        })
        .collect()
}

#[test]
fn gnutls_cli_marker_both_directions_with_identity_fd_and_tuple() {
    let Some(_serial) =
        bpf_available("gnutls_cli_marker_both_directions_with_identity_fd_and_tuple")
    else {
        return;
    };
    let dir = TempDir::new("gnutls");
    let (srv, port) = echo_server(&dir);
    let srv_pid = srv.0.id();
    let events = dir.path("events.ndjson");
    let rc = Rcapture::start(&[
        "gnutls",
        "--event-file",
        events.to_str().unwrap(),
        "--event-file-format",
        "json",
    ]);
    assert!(
        rc.stderr
            .iter()
            .any(|l| l.starts_with("rcapture: module gnutls: probing ")
                && l.contains("libgnutls.so.30")
                && l.contains("(version 3.7.9)")),
        "{:#?}",
        rc.stderr
    );
    let mut cli = Client::connect(port, &[], None);
    let cli_pid = cli.pid();
    let m = marker("gnutls");
    cli.echo(&m);
    let (cli_socks, srv_socks) = (socket_fds(cli_pid), socket_fds(srv_pid));
    cli.finish();
    std::thread::sleep(Duration::from_millis(300));
    let out = rc.stop();

    let all = blocks(&out);
    let with_marker = |pid: u32, what: &str| {
        all.iter()
            .filter(|b| b.pid() == pid && b.what() == what && b.body.contains(&m))
            .collect::<Vec<_>>()
    };
    let one = |pid: u32, what: &str| {
        let v = with_marker(pid, what);
        assert_eq!(v.len(), 1, "one {what} of pid {pid} with {m}:\n{out}");
        v[0]
    };
    let send = one(cli_pid, "send");
    assert_eq!(send.body, format!("{m}\n\n"), "{}", send.header);
    assert_eq!(send.field("comm"), Some("gnutls-cli"));
    assert_eq!(send.field("tid"), Some(cli_pid.to_string().as_str()));
    assert!(send.header.contains(" gnutls pid="), "{}", send.header);
    let fd: u32 = send.field("fd").unwrap().parse().unwrap();
    assert!(
        fd > 2 && cli_socks.contains(&fd),
        "fd {fd} is one of gnutls-cli's sockets {cli_socks:?}"
    );
    let (local, remote) = send.addrs().split_once("->").unwrap();
    assert_eq!(remote, format!("127.0.0.1:{port}"));
    let cport: u16 = local
        .strip_prefix("127.0.0.1:")
        .unwrap_or_else(|| panic!("local {local}"))
        .parse()
        .unwrap();
    assert!(cport > 0 && cport != port);
    let recv = one(cli_pid, "recv");
    assert_eq!(recv.field("fd"), Some(fd.to_string().as_str()));
    assert_eq!(recv.addrs(), format!("127.0.0.1:{port}->127.0.0.1:{cport}"));

    // The server's side of the same connection, with its own fd.
    let srecv = one(srv_pid, "recv");
    let ssend = one(srv_pid, "send");
    assert_eq!(srecv.field("comm"), Some("gnutls-serv"));
    let sfd: u32 = srecv.field("fd").unwrap().parse().unwrap();
    assert!(srv_socks.contains(&sfd), "{sfd} in {srv_socks:?}");
    assert_eq!(ssend.field("fd"), Some(sfd.to_string().as_str()));
    assert_eq!(
        srecv.addrs(),
        format!("127.0.0.1:{cport}->127.0.0.1:{port}")
    );
    assert_eq!(
        ssend.addrs(),
        format!("127.0.0.1:{port}->127.0.0.1:{cport}")
    );

    // Both ends' handshakes gave the same TLS 1.3 secrets.
    let keys = |pid: u32| {
        all.iter()
            .find(|b| b.pid() == pid && b.what() == "masterkey")
            .unwrap_or_else(|| panic!("no masterkey block of {pid}:\n{out}"))
            .body
            .trim_end()
            .to_owned()
    };
    let ck = keys(cli_pid);
    let labels: Vec<&str> = ck.lines().filter_map(|l| l.split(' ').next()).collect();
    for l in [
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_TRAFFIC_SECRET_0",
        "EXPORTER_SECRET",
    ] {
        assert!(labels.contains(&l), "{l} missing:\n{ck}");
    }
    assert_eq!(ck, keys(srv_pid));

    // The event file: WIRE.md §2's uuid, type and payload.
    let text = std::fs::read_to_string(&events).unwrap();
    let evs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let payload = |e: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(e["payload"].as_str().unwrap())
            .unwrap()
    };
    let data = |ty: u64| {
        evs.iter()
            .find(|e| {
                e["pid"] == cli_pid && e["type"] == ty && payload(e) == format!("{m}\n").as_bytes()
            })
            .unwrap_or_else(|| panic!("no type {ty} event of {cli_pid}:\n{text}"))
    };
    for (ty, dir) in [(1, 1), (0, 0)] {
        let e = data(ty);
        assert_eq!(e["module"], "gnutls");
        assert_eq!(e["uuid"], format!("{cli_pid}_{cli_pid}_gnutls-cli_{dir}"));
        assert_eq!(e["fd"], fd);
        assert_eq!(e["tid"], cli_pid);
        assert_eq!(e["pname"], "gnutls-cli");
    }
    let mk = evs
        .iter()
        .find(|e| e["pid"] == cli_pid && e["type"] == 0x0304)
        .unwrap_or_else(|| panic!("no TLS 1.3 masterkey event:\n{text}"));
    assert_eq!(mk["module"], "gnutls");
    assert_eq!(String::from_utf8(payload(mk)).unwrap(), format!("{ck}\n"));
    let random = ck.lines().next().unwrap().split(' ').nth(1).unwrap();
    assert_eq!(mk["uuid"], random.to_uppercase());
    assert_eq!(mk["src_ip"], "127.0.0.1");
    assert_eq!(mk["src_port"], 0);
}

/// `tests/support/gnutls_paths.c` built against the runtime library (no
/// GnuTLS headers needed).
fn build_gnutls_paths(dir: &TempDir) -> std::path::PathBuf {
    let bin = dir.path("gnutls_paths");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args([
            "-std=c11",
            "-D_POSIX_C_SOURCE=200809L",
            "-Wall",
            "-Werror",
            "-o",
        ])
        .arg(&bin)
        .arg(crate::testutil::support("gnutls_paths.c"))
        .arg("-l:libgnutls.so.30")
        .output()
        .unwrap_or_else(|e| panic!("running the C compiler {cc:?}: {e}"));
    assert!(
        out.status.success(),
        "building gnutls_paths.c: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// The entry points gnutls-cli does not use: corked writes are one event
/// (at uncork, not also when buffered), `gnutls_record_recv_seq` and
/// `gnutls_record_send_range` are captured; with the application's own
/// transport object and push/pull functions the fd and tuple come from the
/// socket syscalls made inside the calls.
#[test]
fn gnutls_cork_recv_seq_send_range_and_custom_transport() {
    let Some(_serial) = bpf_available("gnutls_cork_recv_seq_send_range_and_custom_transport")
    else {
        return;
    };
    let dir = TempDir::new("gnutls-paths");
    let bin = build_gnutls_paths(&dir);
    let (_srv, port) = echo_server(&dir);
    let rc = Rcapture::start(&["gnutls"]);
    let mut runs = Vec::new();
    for mode in ["fd", "push"] {
        let m = marker(mode);
        let out = Command::new(&bin)
            .args([&port.to_string(), m.as_str(), mode])
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "gnutls_paths {mode}: {stdout}");
        let fd: u32 = stdout
            .trim()
            .strip_prefix("fd=")
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("{stdout}"));
        runs.push((mode, m, fd));
    }
    std::thread::sleep(Duration::from_millis(300));
    let out = rc.stop();
    let all = blocks(&out);
    for (mode, m, fd) in runs {
        let mine: Vec<_> = all
            .iter()
            .filter(|b| b.field("comm") == Some("gnutls_paths") && b.body.contains(&m))
            .collect();
        let count = |what: &str, body: &str| {
            mine.iter()
                .filter(|b| b.what() == what && b.body == body)
                .count()
        };
        let corked = format!("A-{m}\nB-{m}\n\n");
        let ranged = format!("R-{m}\n\n");
        assert_eq!(
            count("send", &corked),
            1,
            "{mode}: one corked write:\n{out}"
        );
        assert_eq!(count("recv", &corked), 1, "{mode}: recv_seq:\n{out}");
        assert_eq!(count("send", &ranged), 1, "{mode}: send_range:\n{out}");
        assert_eq!(count("recv", &ranged), 1, "{mode}: recv:\n{out}");
        assert_eq!(mine.len(), 4, "{mode}: nothing else, nothing twice:\n{out}");
        for b in &mine {
            assert_eq!(
                b.field("fd"),
                Some(fd.to_string().as_str()),
                "{mode}: {}",
                b.header
            );
            let (src, dst) = b.addrs().split_once("->").unwrap();
            let server = format!("127.0.0.1:{port}");
            assert!(
                (b.what() == "send" && dst == server && src != server)
                    || (b.what() == "recv" && src == server && dst != server),
                "{mode}: {}",
                b.header
            );
        }
    }
}

/// Ring buffer maps (BPF_MAP_TYPE_RINGBUF = 27) among process `pid`'s fds.
fn ringbuf_maps(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter(|info| info.lines().any(|l| l == "map_type:\t27"))
        // Not the tls discovery watch's own 64 KiB control ring (libwatch.bpf.c).
        .filter(|info| !info.lines().any(|l| l == "max_entries:\t65536"))
        .count()
}

/// `rcapture tls --modules gnutls`: an OpenSSL curl and a gnutls-cli at
/// once, both captured by one process on one ring buffer per CPU, both on
/// the WebSocket stream and the text output with their module names, both
/// modules in `/status`, `POST /gnutls` routed, metrics labelled.
#[test]
fn openssl_and_gnutls_in_one_process_share_rings_and_outputs() {
    let Some(_serial) = bpf_available("openssl_and_gnutls_in_one_process_share_rings_and_outputs")
    else {
        return;
    };
    let dir = TempDir::new("two-modules");
    let Some((_, ext)) = crate::server::compile_schemas(&dir) else {
        return;
    };
    let (_tls_srv, tls_port) = crate::testutil::python_server(&dir, false);
    let (_gnutls_srv, port) = echo_server(&dir);
    let rc = Rcapture::start(&["tls", "--modules", "gnutls"]);
    let addr = rc.addr.clone().expect("announced address");
    for m in ["tls", "gnutls"] {
        assert!(
            rc.stderr
                .iter()
                .any(|l| l.starts_with(&format!("rcapture: module {m}: probing "))),
            "{:#?}",
            rc.stderr
        );
    }
    let summary = rc
        .stderr
        .iter()
        .find(|l| l.contains(" ring buffers, "))
        .unwrap_or_else(|| panic!("{:#?}", rc.stderr));
    let words: Vec<&str> = summary.split(' ').collect();
    let (rings, workers): (usize, usize) = (words[3].parse().unwrap(), words[6].parse().unwrap());
    assert_eq!(rings, workers, "{summary}");
    assert_eq!(
        ringbuf_maps(rc.pid()),
        rings,
        "one ring buffer per CPU for both modules' objects ({summary})"
    );
    let ws = crate::server::WsClient::start(
        "two-modules",
        &format!("ws://{addr}/ws"),
        &ext,
        "event_pb2",
        false,
    );
    let (status, body) = crate::server::http(&addr, "POST", "/gnutls", r#"{"pid": 0}"#);
    assert_eq!(status, 200, "{body}");

    let m = marker("two");
    let curl = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-H"])
        .arg(format!("X-Unique: {m}"))
        .arg(format!("https://127.0.0.1:{tls_port}/two"))
        .spawn()
        .unwrap();
    let curl_pid = curl.id();
    let mut cli = Client::connect(port, &[], None);
    let cli_pid = cli.pid();
    cli.echo(&m);
    assert!(curl.wait_with_output().unwrap().status.success());
    cli.finish();

    let has = |e: &Value, pid: u32, module: &str| {
        let ev = &e["event_payload"];
        ev["pid"] == pid
            && ev["module"] == module
            && String::from_utf8_lossy(&crate::server::unhex(ev["payload"].as_str().unwrap()))
                .contains(&m)
    };
    let seen = ws.events_until(|s| {
        s.iter().any(|e| has(e, curl_pid, "tls")) && s.iter().any(|e| has(e, cli_pid, "gnutls"))
    });
    assert!(seen.len() >= 2);
    let (status, st) = crate::server::http(&addr, "GET", "/status", "");
    assert_eq!(status, 200);
    let st: Value = serde_json::from_str(&st).unwrap();
    let names: Vec<&str> = st["data"]["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tls", "gnutls"], "{st}");
    let g = &st["data"]["modules"][1];
    assert_eq!(g["version"], "3.7.9", "{g}");
    assert_eq!(g["routes"], serde_json::json!(["/gnutls"]), "{g}");
    let (_, metrics) = crate::server::http(&addr, "GET", "/metrics", "");
    assert!(
        metrics.contains(&format!(
            "ecapture_events_total{{module=\"gnutls\",pid=\"{cli_pid}\"}} "
        )),
        "{metrics}"
    );
    drop(ws);
    let out = rc.stop();
    let all = blocks(&out);
    assert!(
        all.iter().any(|b| b.pid() == curl_pid
            && b.header.contains(" tls pid=")
            && b.what() == "send"
            && b.body.contains(&m)),
        "{out}"
    );
    assert!(
        all.iter().any(|b| b.pid() == cli_pid
            && b.header.contains(" gnutls pid=")
            && b.what() == "send"
            && b.body.contains(&m)),
        "{out}"
    );
}

fn tshark_follow(pcap: &std::path::Path, keylog: Option<&std::path::Path>) -> String {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(pcap);
    if let Some(k) = keylog {
        cmd.arg("-o")
            .arg(format!("tls.keylog_file:{}", k.display()));
    }
    let out = cmd
        .args(["-q", "-z", "follow,tls,ascii,0"])
        .output()
        .expect("running tshark");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One gnutls-cli session captured by dumpcap while rcapture writes a key
/// log: the key log holds every line GnuTLS's own SSLKEYLOGFILE has, and
/// lets tshark decrypt the marker (without it tshark cannot).
fn keylog_decrypts(flags: &[&str], tls13: bool) {
    let dir = TempDir::new("gnutls-keylog");
    let (_srv, port) = echo_server(&dir);
    let (keylog, oracle, pcap) = (
        dir.path("keys.log"),
        dir.path("gnutls-own.log"),
        dir.path("cap.pcapng"),
    );
    let mut cap = capture_loopback("dumpcap", port, &pcap);
    let rc = Rcapture::start(&[
        "gnutls",
        "-m",
        "keylog",
        "--keylogfile",
        keylog.to_str().unwrap(),
    ]);
    let mut cli = Client::connect(port, flags, Some(&oracle));
    let m = marker("gnutls-keylog");
    cli.echo(&m);
    cli.finish();
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(cap.id() as i32, libc::SIGINT) };
    cap.wait().unwrap();
    let out = rc.stop();
    assert!(out.is_empty(), "keylog mode writes nothing to stdout");

    let ours = std::fs::read_to_string(&keylog).unwrap();
    let theirs = std::fs::read_to_string(&oracle).expect("gnutls-cli wrote SSLKEYLOGFILE");
    let ours_set: BTreeSet<&str> = ours.lines().collect();
    assert_eq!(
        ours_set.len(),
        ours.lines().count(),
        "no line twice (the server's handshake gives the same ones):\n{ours}"
    );
    let labels: BTreeSet<&str> = theirs.lines().filter_map(|l| l.split(' ').next()).collect();
    let want: &[&str] = if tls13 {
        &[
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
            "SERVER_HANDSHAKE_TRAFFIC_SECRET",
            "CLIENT_TRAFFIC_SECRET_0",
            "SERVER_TRAFFIC_SECRET_0",
            "EXPORTER_SECRET",
        ]
    } else {
        &["CLIENT_RANDOM"]
    };
    assert_eq!(labels, want.iter().copied().collect(), "{theirs}");
    for l in theirs.lines() {
        assert!(
            ours_set.contains(l),
            "GnuTLS's own line missing from rcapture's key log: {l}\nours:\n{ours}"
        );
    }
    let plain = tshark_follow(&pcap, None);
    assert!(
        !plain.contains(&m),
        "tshark decrypts without keys?\n{plain}"
    );
    let decoded = tshark_follow(&pcap, Some(&keylog));
    assert!(
        decoded.matches(m.as_str()).count() >= 2,
        "tshark shows the marker sent and echoed with the key log:\n{decoded}\nkeys:\n{ours}"
    );
}

#[test]
fn gnutls_keylog_decrypts_tls13() {
    if let Some(_serial) = bpf_available("gnutls_keylog_decrypts_tls13") {
        keylog_decrypts(&[], true);
    }
}

#[test]
fn gnutls_keylog_decrypts_tls12() {
    if let Some(_serial) = bpf_available("gnutls_keylog_decrypts_tls12") {
        keylog_decrypts(&["--priority", "NORMAL:-VERS-TLS1.3"], false);
    }
}

/// TLS 1.3 0-RTT on a resumed session: the early data is captured where the
/// client hands it over (`gnutls_record_send_early_data`) and where the
/// server takes it (`gnutls_record_recv_early_data`), once each, and the key
/// log has GnuTLS's own CLIENT_EARLY_TRAFFIC_SECRET and every other line but
/// EARLY_EXPORTER_SECRET (GnuTLS overwrites it with the exporter secret
/// before the handshake returns; no decryption needs it).
#[test]
fn gnutls_early_data_and_its_secret() {
    let Some(_serial) = bpf_available("gnutls_early_data_and_its_secret") else {
        return;
    };
    let dir = TempDir::new("gnutls-0rtt");
    let (srv, port) = echo_server_with(&dir, &["--earlydata", "--maxearlydata", "1024"]);
    let srv_pid = srv.0.id();
    let (early, oracle) = (dir.path("early.txt"), dir.path("gnutls-own.log"));
    let m = marker("early");
    std::fs::write(&early, format!("{m}\n")).unwrap();
    let rc = Rcapture::start(&["gnutls"]);
    let earlydata = format!("--earlydata={}", early.display());
    let mut cli = Client::connect(port, &["--resume", &earlydata], Some(&oracle));
    let cli_pid = cli.pid();
    cli.echo(&marker("late"));
    cli.finish();
    std::thread::sleep(Duration::from_millis(300));
    let out = rc.stop();
    let all = blocks(&out);
    let early_of = |pid: u32, what: &str| {
        all.iter()
            .filter(|b| b.pid() == pid && b.what() == what && b.body == format!("{m}\n\n"))
            .count()
    };
    assert_eq!(early_of(cli_pid, "send"), 1, "{out}");
    assert_eq!(early_of(srv_pid, "recv"), 1, "{out}");
    let ours: BTreeSet<&str> = all
        .iter()
        .filter(|b| b.pid() == cli_pid && b.what() == "masterkey")
        .flat_map(|b| b.body.lines())
        .filter(|l| !l.is_empty())
        .collect();
    let theirs = std::fs::read_to_string(&oracle).unwrap();
    assert!(
        theirs.contains("CLIENT_EARLY_TRAFFIC_SECRET "),
        "0-RTT was used: {theirs}"
    );
    for l in theirs.lines() {
        if !l.starts_with("EARLY_EXPORTER_SECRET ") {
            assert!(ours.contains(l), "{l} missing from {ours:#?}");
        }
    }
}

/// With --pid, another gnutls-cli talking to the same server at the same
/// time is not captured, nor is the server.
#[test]
fn gnutls_pid_filter_hides_other_clients() {
    let Some(_serial) = bpf_available("gnutls_pid_filter_hides_other_clients") else {
        return;
    };
    let dir = TempDir::new("gnutls-pid");
    let (_srv, port) = echo_server(&dir);
    let a = Client::connect(port, &[], None);
    let rc = Rcapture::start(&["gnutls", "--pid", &a.pid().to_string()]);
    assert!(
        rc.stderr
            .iter()
            .any(|l| l.contains(&format!("/proc/{}/root/", a.pid()))),
        "--pid probes the library the process maps: {:#?}",
        rc.stderr
    );
    // The routes are the loaded module's: /gnutls works, /tls is not loaded.
    let addr = rc.addr.clone().expect("announced address");
    let (status, body) = crate::server::http(&addr, "POST", "/tls", "{}");
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("module tls is not loaded (loaded: gnutls)"),
        "{body}"
    );
    let (status, body) = crate::server::http(
        &addr,
        "POST",
        "/gnutls",
        &format!("{{\"pid\": {}}}", a.pid()),
    );
    assert_eq!(status, 200, "{body}");
    let b = Client::connect(port, &[], None);
    only_the_first_is_captured(rc, a, b);
}

/// Both clients echo a marker of their own; the capture (filtered to the
/// first) shows the first's in both directions and nothing of the second.
fn only_the_first_is_captured(rc: Rcapture, mut shown: Client, mut hidden: Client) {
    let (ms, mh) = (marker("shown"), marker("hidden"));
    shown.echo(&ms);
    hidden.echo(&mh);
    let pid = shown.pid();
    shown.finish();
    hidden.finish();
    std::thread::sleep(Duration::from_millis(300));
    let out = rc.stop();
    let all = blocks(&out);
    for what in ["send", "recv"] {
        assert!(
            all.iter().any(|b| b.pid() == pid
                && b.what() == what
                && b.field("comm") == Some("gnutls-cli")
                && b.body.contains(&ms)),
            "{what} of gnutls-cli {pid}:\n{out}"
        );
    }
    assert!(
        !out.contains(&mh),
        "the other client is filtered out:\n{out}"
    );
    assert!(all.iter().all(|b| b.pid() == pid), "only {pid}:\n{out}");
}

/// With --uid, only that user's GnuTLS calls are captured: a gnutls-cli
/// run as `nobody` is, one run as root at the same time is not.
#[test]
fn gnutls_uid_filter_selects_one_user() {
    let Some(_serial) = bpf_available("gnutls_uid_filter_selects_one_user") else {
        return;
    };
    let dir = TempDir::new("gnutls-uid");
    let (_srv, port) = echo_server(&dir);
    let rc = Rcapture::start(&["gnutls", "--uid", "65534"]);
    let nobody = Client::connect_as_nobody(port);
    let root = Client::connect(port, &[], None);
    only_the_first_is_captured(rc, nobody, root);
}

fn fails_with(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rcapture"))
        .args(args)
        .args(["--listen", "none"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    err
}

/// A library that is not GnuTLS, a file that does not exist and a process
/// without GnuTLS: each refused before anything is loaded, naming the
/// module, the path and (for the library) the missing symbol.
#[test]
fn gnutls_target_errors_name_module_path_and_symbol() {
    let libssl = "/usr/lib/x86_64-linux-gnu/libssl.so.3";
    assert!(std::path::Path::new(libssl).exists(), "{libssl} (libssl3)");
    assert_eq!(
        fails_with(&["gnutls", "--gnutls", libssl]).trim_end(),
        format!("rcapture: error: symbol gnutls_record_recv not found in {libssl} (module gnutls)")
    );
    assert_eq!(
        fails_with(&["gnutls", "--gnutls", "/nonexistent/libgnutls.so.30"]).trim_end(),
        "rcapture: error: module gnutls: /nonexistent/libgnutls.so.30: no such file \
         (given with --gnutls)"
    );
    let sleeper = Proc(Command::new("sleep").arg("30").spawn().unwrap());
    let pid = sleeper.0.id().to_string();
    assert_eq!(
        fails_with(&["gnutls", "--pid", &pid]).trim_end(),
        format!(
            "rcapture: error: module gnutls: no libgnutls.so.30 found in /proc/{pid}/maps \
             (the process does not map it); give its path with --gnutls"
        )
    );
}
