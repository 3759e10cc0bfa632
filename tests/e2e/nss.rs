//! `rcapture nss` against NSS's own test programs (libnss3-tools): `tstclnt`
//! (PR_Send/PR_Recv on its TLS socket, PR_Read/PR_Write on stdin/stdout)
//! talking to `selfserv` (PR_Read, and PR_Writev for its reply): plaintext
//! both ways with identity, fd and tuple, the terminal I/O left out, the
//! pid filter with the library found through the process, and the module's
//! API routes.

use crate::server::{http, marker};
use crate::testutil::{
    Block, Proc, Rcapture, TempDir, blocks, bpf_available, python_server, run_ok,
};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// An NSS database in `dir` with a self-signed EC server certificate
/// named `server` (shared/spec/MODULES.md §2).
fn nss_db(dir: &TempDir) -> PathBuf {
    let db = dir.path("db");
    std::fs::create_dir_all(&db).unwrap();
    let sql = format!("sql:{}", db.display());
    let noise = dir.path("noise");
    std::fs::write(
        &noise,
        (0..64u8)
            .map(|i| i.wrapping_mul(97) ^ 0x5a)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let certutil = |args: &[&str]| {
        let out = Command::new("certutil")
            .args(args)
            .output()
            .expect("running certutil (libnss3-tools)");
        assert!(
            out.status.success(),
            "certutil {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    certutil(&["-N", "-d", &sql, "--empty-password"]);
    certutil(&[
        "-S",
        "-d",
        &sql,
        "-n",
        "server",
        "-s",
        "CN=localhost",
        "-x",
        "-t",
        "CT,C,C",
        "-k",
        "ec",
        "-q",
        "nistp256",
        "-z",
        noise.to_str().unwrap(),
        "-8",
        "localhost",
        "-v",
        "12",
        "--keyUsage",
        "digitalSignature",
    ]);
    db
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// Whether some socket listens on TCP `port` (IPv4 or IPv6), from
/// /proc/net: no connection is made (selfserv would take it for a client).
fn listening(port: u16) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() > 3
                    && cols[3] == "0A"
                    && cols[1].rsplit(':').next() == Some(&format!("{port:04X}"))
            })
    })
}

/// `selfserv` on a free port, listening; killed at drop.
fn selfserv(db: &std::path::Path) -> (Proc, u16) {
    let port = free_port();
    let child = Command::new("selfserv")
        .args(["-d", &format!("sql:{}", db.display()), "-n", "server", "-p"])
        .arg(port.to_string())
        .args(["-V", "tls1.2:tls1.3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting selfserv (libnss3-tools)");
    let srv = Proc(child);
    let t0 = Instant::now();
    while !listening(port) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "selfserv never listened on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (srv, port)
}

/// Runs `tstclnt` against `port` with `request` on its stdin, kept open
/// (tstclnt does not exit at EOF on stdin) until selfserv's reply, which
/// ends with `EOF`, is on its stdout; then kills it. Returns its pid and
/// its stdout.
fn tstclnt(db: &std::path::Path, port: u16, request: &str) -> (u32, String) {
    let mut child = Command::new("tstclnt")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-d", &format!("sql:{}", db.display()), "-o"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting tstclnt (libnss3-tools)");
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let client = Proc(child);
    stdin.write_all(request.as_bytes()).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&out).contains("\r\nEOF\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(b) => out.extend(b),
            Err(_) => panic!(
                "tstclnt printed no full reply: {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    drop(client);
    drop(stdin);
    (pid, String::from_utf8_lossy(&out).into_owned())
}

/// The port after the last `:` of an `ADDR:PORT` (`[::ffff:127.0.0.1]:443` too).
fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr}"))
}

/// (from port, to port) of a block's `A->B`.
fn ports(b: &Block) -> (u16, u16) {
    let (a, z) = b.addrs().split_once("->").unwrap();
    (port_of(a), port_of(z))
}

fn fd(b: &Block) -> u32 {
    b.field("fd").unwrap().parse().unwrap()
}

fn one<'a>(all: &'a [Block], what: &str, pred: impl Fn(&Block) -> bool, out: &str) -> &'a Block {
    let found: Vec<&Block> = all.iter().filter(|b| pred(b)).collect();
    assert_eq!(found.len(), 1, "{what}: {} blocks in:\n{out}", found.len());
    found[0]
}

#[test]
fn tstclnt_and_selfserv_both_ways_without_their_terminal_io() {
    let Some(_serial) = bpf_available("tstclnt_and_selfserv_both_ways_without_their_terminal_io")
    else {
        return;
    };
    let dir = TempDir::new("nss");
    let db = nss_db(&dir);
    let (srv, port) = selfserv(&db);
    let srv_pid = srv.0.id();
    let rc = Rcapture::start(&["nss"]);
    assert!(
        rc.stderr
            .iter()
            .any(|l| l.starts_with("rcapture: note: module nss: no key log: ")),
        "{:#?}",
        rc.stderr
    );
    assert!(
        rc.stderr
            .iter()
            .any(|l| l.starts_with("rcapture: module nss: probing ")
                && l.contains("libnspr4.so (version 4.")
                && l.contains(", NSS 3.")
                && l.ends_with(" with 10 probes")),
        "{:#?}",
        rc.stderr
    );
    let m = marker("NSS");
    let request = format!("GET /{m} HTTP/1.0\r\n\r\n");
    let (cli_pid, reply) = tstclnt(&db, port, &request);
    assert!(reply.starts_with("HTTP/1.0 200 OK\r\n"), "{reply}");
    assert!(
        reply.contains(&request),
        "selfserv echoes the request: {reply}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let out = rc.stop();
    let all = blocks(&out);
    let cli: Vec<Block> = all.iter().filter(|b| b.pid() == cli_pid).cloned().collect();
    let srv_blocks: Vec<Block> = all.iter().filter(|b| b.pid() == srv_pid).cloned().collect();
    // The payload as sent: the text output ends a block with an empty line
    // and shows CRLF as a line end.
    let text = |b: &Block| {
        b.body
            .strip_suffix('\n')
            .unwrap_or_else(|| panic!("block without its empty line: {b:?}"))
            .replace('\n', "\r\n")
    };

    // tstclnt's request (PR_Send), on its TLS socket.
    let send = one(
        &cli,
        "tstclnt's request",
        |b| b.what() == "send" && b.body.contains(&m),
        &out,
    );
    assert!(
        send.body.starts_with(&format!("GET /{m} HTTP/1.0\n")),
        "{}",
        send.body
    );
    assert_eq!(send.field("comm"), Some("tstclnt"));
    assert_eq!(send.field("tid"), Some(cli_pid.to_string().as_str()));
    assert!(
        send.header
            .ends_with(&format!(" send {} bytes", request.len())),
        "{}",
        send.header
    );
    let cli_fd = fd(send);
    assert!(cli_fd > 2, "tstclnt's socket fd, got {cli_fd}");
    let (cport, to) = ports(send);
    assert_eq!(to, port);
    assert!(send.addrs().starts_with("127.0.0.1:"), "{}", send.header);

    // selfserv reads it (PR_Read) ...
    let got = one(
        &srv_blocks,
        "selfserv's read",
        |b| b.what() == "recv" && b.body.contains(&m),
        &out,
    );
    assert_eq!(got.field("comm"), Some("selfserv"));
    assert_eq!(text(got), request);
    assert_eq!(ports(got), (cport, port), "peer -> local: {}", got.header);
    let srv_fd = fd(got);
    assert!(srv_fd > 2, "selfserv's socket fd, got {srv_fd}");

    // ... and replies with one PR_Writev of three entries, echoing the request.
    let reply_ev = one(
        &srv_blocks,
        "selfserv's reply",
        |b| b.what() == "send",
        &out,
    );
    assert_eq!(text(reply_ev), reply, "the whole reply as one event");
    assert!(
        reply_ev
            .header
            .ends_with(&format!(" send {} bytes", reply.len())),
        "{}",
        reply_ev.header
    );
    assert_eq!(ports(reply_ev), (port, cport));
    assert_eq!(fd(reply_ev), srv_fd);

    // tstclnt receives it (PR_Recv) on the same socket as its request.
    let recv: Vec<&Block> = cli.iter().filter(|b| b.what() == "recv").collect();
    assert!(!recv.is_empty(), "no recv of tstclnt:\n{out}");
    let received: String = recv.iter().map(|b| text(b)).collect();
    assert_eq!(received, reply);
    for b in &recv {
        assert_eq!(fd(b), cli_fd, "{}", b.header);
        assert_eq!(ports(b), (port, cport), "{}", b.header);
    }

    // tstclnt read the request from stdin (PR_Read, fd 0) and wrote the
    // reply to stdout (PR_Write, fd 1): neither is TLS, neither is shown.
    for b in &cli {
        assert_eq!(
            fd(b),
            cli_fd,
            "a non-TLS descriptor captured: {}\n{out}",
            b.header
        );
    }
    assert_eq!(cli.len(), 1 + recv.len(), "{out}");
}

#[test]
fn pid_filter_finds_libnspr_through_the_process() {
    let Some(_serial) = bpf_available("pid_filter_finds_libnspr_through_the_process") else {
        return;
    };
    let dir = TempDir::new("nsspid");
    let db = nss_db(&dir);
    let (srv, port) = selfserv(&db);
    let srv_pid = srv.0.id();
    let rc = Rcapture::start(&["nss", "--pid", &srv_pid.to_string()]);
    assert!(
        rc.stderr.iter().any(|l| l.starts_with(&format!(
            "rcapture: module nss: probing /proc/{srv_pid}/root/"
        )) && l.contains("libnspr4.so (version 4.")),
        "{:#?}",
        rc.stderr
    );
    let m = marker("NSSPID");
    let (cli_pid, _) = tstclnt(&db, port, &format!("GET /{m} HTTP/1.0\r\n\r\n"));
    std::thread::sleep(Duration::from_millis(300));
    let out = rc.stop();
    let all = blocks(&out);
    assert!(
        all.iter()
            .any(|b| b.pid() == srv_pid && b.what() == "recv" && b.body.contains(&m)),
        "selfserv's read of the request:\n{out}"
    );
    assert!(
        all.iter().all(|b| b.pid() == srv_pid),
        "only pid {srv_pid}, tstclnt was {cli_pid}:\n{out}"
    );
}

#[test]
fn nss_routes_answer_and_status_lists_the_module() {
    let Some(_serial) = bpf_available("nss_routes_answer_and_status_lists_the_module") else {
        return;
    };
    let rc = Rcapture::start(&["nss"]);
    let addr = rc.addr.clone().unwrap();
    for route in ["/nss", "/nspr"] {
        let (status, body) = http(&addr, "POST", route, "{}");
        assert_eq!(status, 200, "POST {route}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["code"], 0, "{body}");
        assert_eq!(v["module_type"], "nss", "{body}");
        let (status, _) = http(&addr, "GET", route, "");
        assert_eq!(status, 405, "GET {route}");
    }
    let (status, body) = http(&addr, "POST", "/tls", "{}");
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("module tls is not loaded (loaded: nss)"),
        "{body}"
    );

    let (status, st) = http(&addr, "GET", "/status", "");
    assert_eq!(status, 200);
    let st: Value = serde_json::from_str(&st).unwrap();
    let m = &st["data"]["modules"][0];
    assert_eq!(m["name"], "nss", "{st}");
    assert_eq!(m["probes"], 10, "{st}");
    assert_eq!(m["routes"], serde_json::json!(["/nss", "/nspr"]), "{st}");
    assert!(
        m["target"].as_str().unwrap().ends_with("libnspr4.so"),
        "{st}"
    );
    assert!(m["version"].as_str().unwrap().starts_with("4."), "{st}");
    rc.stop();
}

/// `rcapture tls --modules nss`: curl (OpenSSL) and tstclnt (NSS) in one
/// capture, on one ring buffer per CPU, each event with its module.
#[test]
fn nss_beside_tls_in_one_process() {
    let Some(_serial) = bpf_available("nss_beside_tls_in_one_process") else {
        return;
    };
    let dir = TempDir::new("nsstls");
    let db = nss_db(&dir);
    let (_srv, port) = selfserv(&db);
    let (_py, py_port) = python_server(&dir, false);
    let rc = Rcapture::start(&["tls", "--modules", "nss"]);
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    assert!(
        rc.stderr
            .iter()
            .any(|l| l.ends_with(&format!(" probes, {cpus} ring buffers, {cpus} workers"))),
        "one ring per CPU whatever the modules: {:#?}",
        rc.stderr
    );
    let m = marker("BOTH");
    let (cli_pid, _) = tstclnt(&db, port, &format!("GET /{m} HTTP/1.0\r\n\r\n"));
    let (curl_pid, _) = run_ok(
        Command::new("curl")
            .args(["-sk", "-o", "/dev/null"])
            .arg(format!("https://127.0.0.1:{py_port}/{m}")),
    );
    std::thread::sleep(Duration::from_millis(300));
    let out = rc.stop();
    let module = |b: &Block| b.header.split(' ').nth(1).unwrap().to_owned();
    let all = blocks(&out);
    let nss = one(
        &all,
        "tstclnt's request",
        |b| b.pid() == cli_pid && b.what() == "send" && b.body.contains(&m),
        &out,
    );
    assert_eq!(module(nss), "nss", "{}", nss.header);
    let tls = one(
        &all,
        "curl's request",
        |b| b.pid() == curl_pid && b.what() == "send" && b.body.contains(&m),
        &out,
    );
    assert_eq!(module(tls), "tls", "{}", tls.header);
}
