//! `-m pcap` and connection events against curl and Python on `lo`:
//! tshark decrypts the pcapng with no key file (TLS 1.2 and 1.3), packets
//! name their process, curl's connect/close carry its pid and tuple,
//! packet events reach a WebSocket client that asks for them (and only
//! it), and 10 000 packets at full speed are all written or counted.

use crate::outputs::{collected, forward_json, start_collector};
use crate::server::{WsClient, compile_schemas, http, marker};
use crate::testutil::{Rcapture, TempDir, blocks, bpf_available, python_server, run_ok};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs tshark on `file` (no key file is given, ever), asserting success.
fn tshark(file: &Path, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(args)
        .output()
        .expect("tshark (package tshark) is needed");
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The packet count capinfos reads from `file`.
fn capinfos_count(file: &Path) -> u64 {
    let out = Command::new("capinfos")
        .args(["-M", "-c"])
        .arg(file)
        .output()
        .expect("capinfos (package wireshark-common) is needed");
    assert!(
        out.status.success(),
        "capinfos: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.lines()
        .find_map(|l| l.strip_prefix("Number of packets:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("capinfos printed {s}"))
}

/// (written, offered, dropped) of the exit ledger's pcapng line:
/// `rcapture: pcapng PATH: W packets written of N (D dropped, …`.
fn pcap_ledger(stderr: &[String]) -> (u64, u64, u64) {
    let l = stderr
        .iter()
        .find(|l| l.starts_with("rcapture: pcapng "))
        .unwrap_or_else(|| panic!("no pcapng ledger: {stderr:#?}"));
    let w: Vec<&str> = l.split(' ').collect();
    let i = w.iter().position(|x| *x == "packets").unwrap_or(0);
    let n = |s: &str| -> u64 {
        s.trim_start_matches('(')
            .parse()
            .unwrap_or_else(|_| panic!("{s:?} in {l}"))
    };
    let (written, offered, dropped) = (n(w[i - 1]), n(w[i + 3]), n(w[i + 4]));
    assert_eq!(offered, written + dropped, "{l}");
    (written, offered, dropped)
}

/// `rcapture tls -m pcap --pcapfile FILE -i lo` and `extra` flags.
fn start_pcap(file: &Path, extra: &[&str]) -> Rcapture {
    let mut args = vec![
        "tls",
        "-m",
        "pcap",
        "--pcapfile",
        file.to_str().unwrap(),
        "-i",
        "lo",
    ];
    args.extend_from_slice(extra);
    Rcapture::start(&args)
}

/// curl's HTTPS request, TLS 1.2 and TLS 1.3, decrypted by tshark from the
/// pcapng alone: the request with its marker, the response, each packet
/// with its process.
#[test]
fn tshark_decrypts_curl_without_a_key_file() {
    let Some(_serial) = bpf_available("tshark_decrypts_curl_without_a_key_file") else {
        return;
    };
    for tls12 in [true, false] {
        let dir = TempDir::new("pcap");
        let (_srv, port) = python_server(&dir, tls12);
        let file = dir.path("tls.pcapng");
        let filter = format!("tcp port {port}");
        let rc = start_pcap(&file, &["--pcap-filter", &filter]);
        let m = marker(if tls12 { "pcap12" } else { "pcap13" });
        let (curl_pid, body) = run_ok(
            Command::new("curl")
                .arg("-sk")
                .arg(format!("https://127.0.0.1:{port}/{m}")),
        );
        assert!(body.contains(&m), "{body}");
        let (_, stderr) = rc.stop_with_stderr();
        let (written, offered, _) = pcap_ledger(&stderr);
        assert_eq!(written, offered, "{stderr:#?}");
        assert_eq!(capinfos_count(&file), written);

        let version = if tls12 { "0x0303" } else { "0x0304" };
        let hs = tshark(
            &file,
            &[
                "-Y",
                "tls.handshake.type == 2",
                "-T",
                "fields",
                "-e",
                "tls.handshake.extensions.supported_version",
                "-e",
                "tls.handshake.version",
            ],
        );
        assert!(hs.contains(version), "{version} in ServerHello: {hs}");
        let req = tshark(
            &file,
            &[
                "-Y",
                "http.request",
                "-T",
                "fields",
                "-e",
                "http.request.uri",
                "-e",
                "frame.comment",
            ],
        );
        let line = req
            .lines()
            .find(|l| l.contains(&m))
            .unwrap_or_else(|| panic!("TLS {version}: no request with {m} decrypted: {req:?}"));
        assert!(
            line.contains(&format!("pid={curl_pid} comm=curl")),
            "the request's packet names curl {curl_pid}: {line}"
        );
        let follow = tshark(&file, &["-q", "-z", "follow,tls,ascii,0"]);
        assert!(
            follow.contains(&format!("GET /{m} HTTP/1.1"))
                && follow.contains(&format!("hello from the test server /{m}")),
            "both directions decrypted: {follow}"
        );
        // Only the filtered port was captured.
        let ports = tshark(&file, &["-T", "fields", "-e", "tcp.port"]);
        assert!(
            ports
                .lines()
                .all(|l| l.split(',').any(|p| p == port.to_string())),
            "{ports}"
        );
    }
}

/// curl's connection as events: connect with its pid and tuple, the
/// server's accept, both closes; in the text output.
#[test]
fn curl_connect_and_close_events() {
    let Some(_serial) = bpf_available("curl_connect_and_close_events") else {
        return;
    };
    let dir = TempDir::new("conn");
    let (srv, port) = python_server(&dir, false);
    let server_pid = srv.0.id();
    let rc = Rcapture::start(&["tls", "--modules", "conn"]);
    let m = marker("conn");
    let (curl_pid, _) = run_ok(
        Command::new("curl")
            .args(["-sk", "-o", "/dev/null"])
            .arg(format!("https://127.0.0.1:{port}/{m}")),
    );
    std::thread::sleep(Duration::from_millis(200));
    let out = rc.stop();
    let b = blocks(&out);
    let conn = |pid: u32, what: &str| -> Vec<String> {
        b.iter()
            .filter(|x| x.pid() == pid && x.header.contains(&format!(" {what} ")))
            .map(|x| x.header.split(' ').next_back().unwrap().to_string())
            .collect()
    };
    let connects = conn(curl_pid, "connect");
    assert_eq!(connects.len(), 1, "one connect of curl {curl_pid}:\n{out}");
    let (local, remote) = connects[0].split_once("->").unwrap();
    assert_eq!(remote, format!("127.0.0.1:{port}"));
    assert!(
        local.starts_with("127.0.0.1:") && !local.ends_with(":0"),
        "{local}"
    );
    assert_eq!(conn(curl_pid, "close"), connects, "curl's close:\n{out}");
    let back = format!("{remote}->{local}");
    assert_eq!(
        conn(server_pid, "accept"),
        std::slice::from_ref(&back),
        "{out}"
    );
    assert_eq!(conn(server_pid, "close"), [back], "{out}");
    let h = b
        .iter()
        .find(|x| x.pid() == curl_pid && x.header.contains(" connect "))
        .unwrap();
    assert_eq!(h.field("comm"), Some("curl"));
    assert_eq!(h.field("tid"), Some(curl_pid.to_string().as_str()));
    assert!(h.field("fd").unwrap().parse::<u32>().unwrap() > 2);
}

/// With -m pcap, a WebSocket client asking for `types=packet,conn` gets
/// curl's packets (its process named) and connection events; one with no
/// filter gets the TLS data but no packet; the forwarder with
/// `--forward-types packet` gets the packets and no TLS data.
#[test]
fn packet_events_reach_the_websocket_client_that_asks() {
    let Some(_serial) = bpf_available("packet_events_reach_the_websocket_client_that_asks") else {
        return;
    };
    let dir = TempDir::new("pcapws");
    let Some((_, ext)) = compile_schemas(&dir) else {
        return;
    };
    let (_srv, port) = python_server(&dir, false);
    let file = dir.path("ws.pcapng");
    let collected_path = dir.path("collector.jsonl");
    let (_collector, url) = start_collector(&collected_path);
    // Only the server's port: the packet events sent to the WebSocket
    // clients and the collector over lo are not captured again.
    let filter = format!("tcp port {port}");
    let mut forward = forward_json(&url).to_vec();
    forward.extend(["--forward-types", "packet", "--pcap-filter", &filter]);
    let rc = start_pcap(&file, &forward);
    let addr = rc.addr.clone().expect("announced address");
    let asks = WsClient::start(
        "asks",
        &format!("ws://{addr}/?types=packet,conn"),
        &ext,
        "event_pb2",
        false,
    );
    let plain = WsClient::start("plain", &format!("ws://{addr}/"), &ext, "event_pb2", false);
    // The server takes the new filter in its next loop round.
    std::thread::sleep(Duration::from_millis(300));
    let m = marker("pcapws");
    let (curl_pid, _) = run_ok(
        Command::new("curl")
            .args(["-sk", "-o", "/dev/null"])
            .arg(format!("https://127.0.0.1:{port}/{m}")),
    );
    let events = |c: &WsClient, done: &dyn Fn(&[Value]) -> bool| -> Vec<Value> {
        let mut seen = Vec::new();
        let end = Instant::now() + Duration::from_secs(20);
        while !done(&seen) && Instant::now() < end {
            if let Ok(v) = c.lines.recv_timeout(Duration::from_millis(200))
                && v["entry"]["payload_kind"] == "event_payload"
            {
                seen.push(v["entry"]["event_payload"].clone());
            }
        }
        seen
    };
    let packet_uuid = format!("{curl_pid}_1_curl");
    let conn_uuid = format!("{curl_pid}_{curl_pid}_curl_");
    let is_packet = |e: &Value| e["uuid"] == packet_uuid.as_str();
    let is_conn = |e: &Value| {
        e["uuid"]
            .as_str()
            .is_some_and(|u| u.starts_with(&conn_uuid))
    };
    let got = events(&asks, &|s| {
        s.iter().filter(|e| is_packet(e)).count() >= 4
            && s.iter().filter(|e| is_conn(e)).count() >= 2
    });
    let packets: Vec<&Value> = got.iter().filter(|e| is_packet(e)).collect();
    assert!(
        packets.len() >= 4,
        "curl's packets on lo (ifindex 1): {got:#?}"
    );
    for p in &packets {
        let frame = crate::server::unhex(p["payload"].as_str().unwrap());
        // Ethernet with zero MACs, IPv4, TCP to or from the server's port.
        assert_eq!(&frame[12..14], &[8, 0], "{p}");
        let sport = u16::from_be_bytes([frame[34], frame[35]]);
        let dport = u16::from_be_bytes([frame[36], frame[37]]);
        assert!(sport == port || dport == port, "{sport}->{dport}");
    }
    // connect and close, both with curl's tuple to the server.
    let conns: Vec<&Value> = got.iter().filter(|e| is_conn(e)).collect();
    assert_eq!(conns.len(), 2, "{conns:#?}");
    for e in &conns {
        assert_eq!(
            (e["dst_ip"].as_str(), e["dst_port"].as_u64()),
            (Some("127.0.0.1"), Some(u64::from(port))),
            "{e}"
        );
        assert_eq!(e["src_port"], conns[0]["src_port"]);
    }
    assert!(
        got.iter()
            .all(|e| !e["uuid"].as_str().unwrap_or("").starts_with("sock:")),
        "the filter holds back TLS data"
    );
    // The client without a filter: curl's TLS data, never a packet.
    let curl = |e: &Value| e["pid"].as_i64() == Some(i64::from(curl_pid));
    let plain_got = events(&plain, &|s| s.iter().any(|e| curl(e) && e["type"] == 1));
    assert!(
        plain_got.iter().any(|e| curl(e) && e["type"] == 1),
        "{plain_got:#?}"
    );
    let (_, status) = http(&addr, "GET", "/status", "");
    let st: Value = serde_json::from_str(&status).unwrap();
    let p = &st["data"]["counters"]["pcap"];
    assert!(
        p["packets"].as_u64().unwrap() >= packets.len() as u64,
        "{st}"
    );
    drop(asks);
    std::thread::sleep(Duration::from_millis(300));
    let plain_rest = events(&plain, &|_| false);
    assert!(
        plain_got.iter().chain(&plain_rest).all(|e| !is_packet(e)),
        "a client without types=packet got a packet"
    );
    // The forwarder, asked for packets only: curl's packets, no TLS data.
    let end = Instant::now() + Duration::from_secs(20);
    let mut fwd = collected(&collected_path);
    while fwd.iter().filter(|e| is_packet(e)).count() < 4 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(200));
        fwd = collected(&collected_path);
    }
    assert!(
        fwd.iter().filter(|e| is_packet(e)).count() >= 4,
        "curl's packets at the collector: {fwd:#?}"
    );
    assert!(
        fwd.iter()
            .all(|e| !e["uuid"].as_str().unwrap_or("").starts_with("sock:")),
        "--forward-types packet holds back TLS data: {fwd:#?}"
    );
    let (_, stderr) = rc.stop_with_stderr();
    let (written, offered, _) = pcap_ledger(&stderr);
    assert_eq!(written, offered);
}

/// 10 000 UDP datagrams sent as fast as Python can: every one is in the
/// pcapng (capinfos) or counted as lost (kernel ring, output); the ledger
/// of /status and of the exit agree. Prints packets/s for the record.
#[test]
fn ten_thousand_packets_are_written_or_counted() {
    let Some(_serial) = bpf_available("ten_thousand_packets_are_written_or_counted") else {
        return;
    };
    const N: u64 = 10_000;
    let dir = TempDir::new("pcapflood");
    let file = dir.path("flood.pcapng");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let filter = format!("udp port {port}");
    let rc = start_pcap(&file, &["--pcap-filter", &filter, "--pcap-hold-ms", "200"]);
    let addr = rc.addr.clone().expect("announced address");
    let script = format!(
        "import socket, time\n\
         r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         r.bind(('127.0.0.1', {port}))\n\
         r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.connect(('127.0.0.1', {port}))\n\
         b = b'x' * 64\n\
         t = time.perf_counter()\n\
         for i in range({N}):\n\
         \x20   s.send(b)\n\
         print(time.perf_counter() - t)\n"
    );
    let (py_pid, took) = run_ok(Command::new("python3").arg("-c").arg(&script));
    let secs: f64 = took.trim().parse().unwrap();
    // Wait until the workers have seen all (or the rest is counted lost).
    let mut st = Value::Null;
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        let (_, body) = http(&addr, "GET", "/status", "");
        st = serde_json::from_str(&body).unwrap();
        let c = &st["data"]["counters"];
        let seen = c["pcap"]["packets"].as_u64().unwrap() + c["lost_kernel"].as_u64().unwrap();
        if seen >= N {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let c = st["data"]["counters"].clone();
    let lost_kernel = c["lost_kernel"].as_u64().unwrap();
    let (_, stderr) = rc.stop_with_stderr();
    let (written, offered, dropped) = pcap_ledger(&stderr);
    let in_file = capinfos_count(&file);
    eprintln!(
        "{N} datagrams sent in {secs:.3} s ({:.0} packets/s): {in_file} in the pcapng, \
         {offered} reached the output, {dropped} dropped by it, {lost_kernel} lost in the kernel rings",
        N as f64 / secs
    );
    assert_eq!(in_file, written, "capinfos = packets written: {stderr:#?}");
    assert_eq!(offered, c["pcap"]["packets"].as_u64().unwrap().max(offered));
    assert_eq!(
        written + dropped + lost_kernel,
        N,
        "every packet is in the file or counted: {stderr:#?} {c}"
    );
    // The sender is named on (nearly) every packet: its socket is known
    // from its first send.
    let named = tshark(
        &file,
        &[
            "-Y",
            &format!("frame.comment contains \"pid={py_pid} \""),
            "-T",
            "fields",
            "-e",
            "frame.number",
        ],
    )
    .lines()
    .count() as u64;
    assert!(
        named + 1 >= written,
        "{named} of {written} name python {py_pid}"
    );
}
