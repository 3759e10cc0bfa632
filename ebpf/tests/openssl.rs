//! The OpenSSL probes against curl + `openssl s_server`, and Python's ssl module.

use std::{collections::BTreeMap, process::Command};

use rcapture_ebpf::{Capture, CaptureOptions, OpensslTarget};

use crate::testutil::{
    Cert, Data, F_FIRST, F_LAST, KIND_MASTER_SECRET, KIND_TLS_DATA, Server, calls_of, contains,
    data, drain, drain_lossless, have, hdr, master_secret, python, require_bpf,
};

fn load(max_payload: u32) -> Capture {
    let target = OpensslTarget::discover(None, None)
        .and_then(|t| t.target())
        .expect("system libssl.so.3 (OpenSSL 3.0)");
    let opts = CaptureOptions {
        max_payload,
        ring_bytes_per_cpu: 8 << 20,
        ..CaptureOptions::default()
    };
    let probes = Capture::load(&[target], &opts).expect("load TLS probes");
    for w in probes.warnings() {
        eprintln!("warning: {w}");
    }
    probes
}

#[test]
fn curl_get_is_captured_with_fd_tuple_and_secret() {
    let Some(_guard) = require_bpf() else { return };
    assert!(
        have("curl") && have("openssl"),
        "curl and openssl are needed"
    );
    let cert = Cert::new();
    let server = Server::start(&cert, &["-www"]);
    let mut probes = load(1 << 20);
    eprintln!("{} probes attached", probes.probe_count());
    let mut rings = probes.take_rings();

    let url = format!("https://127.0.0.1:{}/", server.port);
    let keylog = cert.dir.path().join("keylog.txt");
    let child = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", &url])
        .env("SSLKEYLOGFILE", &keylog)
        .spawn()
        .expect("spawn curl");
    let curl_pid = child.id();
    let out = child.wait_with_output().expect("wait curl");
    assert!(out.status.success(), "curl failed: {:?}", out.status);
    probes.detach();

    let records = drain_lossless(&probes, &mut rings);

    let curl_data: Vec<Data> = records
        .iter()
        .filter(|(_, r)| hdr(r).kind == KIND_TLS_DATA)
        .map(|(_, r)| data(r))
        .filter(|d| d.hdr.pid == curl_pid)
        .collect();
    for d in &curl_data {
        eprintln!(
            "curl data: dir {} fd {} family {} {}->{} sock {:#x} len {}/{} flags {} {:?}",
            d.direction,
            d.fd,
            d.family,
            d.sport,
            d.dport,
            d.sock,
            d.payload.len(),
            d.total_len,
            d.hdr.flags,
            String::from_utf8_lossy(&d.payload[..d.payload.len().min(40)])
        );
    }
    let get = curl_data
        .iter()
        .find(|d| d.direction == 1 && contains(&d.payload, b"GET / HTTP/1.1"))
        .expect("a send record with the GET request");
    assert_eq!(get.hdr.comm, "curl");
    assert_ne!(get.fd, u32::MAX, "fd learned");
    assert_eq!(get.family, 2, "AF_INET tuple");
    assert_eq!(get.dport, server.port);
    assert_ne!(get.sport, 0);
    assert_ne!(get.sock, 0);
    assert_eq!(get.hdr.flags, F_FIRST | F_LAST);
    assert_eq!(get.total_len as usize, get.payload.len());

    let resp = curl_data
        .iter()
        .find(|d| d.direction == 0 && contains(&d.payload, b"HTTP/1.0 200 ok"))
        .expect("a recv record with the response");
    assert_ne!(resp.fd, u32::MAX);
    assert_eq!(resp.dport, server.port);

    let secret_records: Vec<&Vec<u8>> = records
        .iter()
        .map(|(_, r)| r)
        .filter(|r| hdr(r).kind == KIND_MASTER_SECRET && hdr(r).pid == curl_pid)
        .collect();
    let secrets: Vec<_> = secret_records.iter().map(|r| master_secret(r)).collect();
    for (h, version, cipher, cr) in &secrets {
        eprintln!(
            "secret: pid {} version {version:#x} cipher {cipher:#x} client_random {}",
            h.pid,
            cr.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
    }
    assert_eq!(
        secrets.len(),
        1,
        "one secret record per (SSL, client_random)"
    );
    assert!(
        secrets[0].3.iter().any(|&b| b != 0),
        "client_random is non-zero"
    );
}

/// One `SSL_write_ex` of `len` bytes from Python's ssl module.
const PY_CLIENT: &str = r#"
import socket, ssl, sys
port = int(sys.argv[1])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with socket.create_connection(("127.0.0.1", port)) as raw:
    with ctx.wrap_socket(raw) as tls:
        for n in map(int, sys.argv[2:]):
            tls.sendall(bytes(i % 251 for i in range(n)))
"#;

#[test]
fn large_write_ex_is_chunked_and_truncated_at_the_limit() {
    let Some(_guard) = require_bpf() else { return };
    assert!(
        python().exists() && have("openssl"),
        "python3 and openssl are needed"
    );
    const LIMIT: u32 = 1 << 20;
    let full = LIMIT as usize; // exactly the limit: 64 chunks, nothing cut
    let over = full + 5000; // beyond the limit: 64 chunks sent, 5000 bytes cut
    let cert = Cert::new();
    let server = Server::start(&cert, &["-naccept", "1"]);
    let mut probes = load(LIMIT);
    let mut rings = probes.take_rings();

    let child = Command::new(python())
        .args(["-c", PY_CLIENT, &server.port.to_string()])
        .args([full.to_string(), over.to_string()])
        .spawn()
        .expect("spawn python3");
    let py_pid = child.id();
    let out = child.wait_with_output().expect("wait python3");
    assert!(
        out.status.success(),
        "python client failed: {:?}",
        out.status
    );
    probes.detach();

    let records = drain_lossless(&probes, &mut rings);
    // The python client's send records, by call.
    let calls = calls_of(&records, KIND_TLS_DATA, |d| {
        d.hdr.pid == py_pid && d.direction == 1
    });
    let mut by_len: BTreeMap<u32, Vec<Data>> = BTreeMap::new();
    for (_, chunks) in calls {
        by_len.insert(chunks[0].total_len, chunks);
    }
    eprintln!(
        "python send calls: {:?}",
        by_len
            .iter()
            .map(|(len, c)| (*len, c.len()))
            .collect::<Vec<_>>()
    );

    for (total, expect_sent) in [(full, full), (over, full)] {
        let chunks = by_len
            .get(&(total as u32))
            .unwrap_or_else(|| panic!("no SSL_write_ex call of {total} bytes captured"));
        assert!(
            chunks.len() >= 64,
            "{} chunks for {total} bytes",
            chunks.len()
        );
        let mut joined = Vec::with_capacity(expect_sent);
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(c.offset as usize, joined.len(), "chunk {i} offset");
            let first = c.hdr.flags & F_FIRST != 0;
            let last = c.hdr.flags & F_LAST != 0;
            assert_eq!(first, i == 0, "FIRST flag on chunk {i}");
            assert_eq!(last, i == chunks.len() - 1, "LAST flag on chunk {i}");
            assert_ne!(c.fd, u32::MAX, "fd from the socket BIO");
            assert_eq!(c.dport, server.port);
            joined.extend_from_slice(&c.payload);
        }
        assert_eq!(
            joined.len(),
            expect_sent,
            "bytes received for a {total}-byte call"
        );
        let expected: Vec<u8> = (0..expect_sent).map(|i| (i % 251) as u8).collect();
        assert!(
            joined == expected,
            "payload of the {total}-byte call differs"
        );
        eprintln!(
            "call of {total} bytes: {} chunks, {} bytes received, {} truncated",
            chunks.len(),
            joined.len(),
            total - joined.len()
        );
    }
}

/// A GET over Python's ssl module: `SSL_write_ex` + `SSL_read_ex`, socket BIO.
const PY_GET: &str = r#"
import socket, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as raw:
    with ctx.wrap_socket(raw) as tls:
        tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
        while tls.recv(65536):
            pass
"#;

#[test]
fn python_ex_calls_are_captured() {
    let Some(_guard) = require_bpf() else { return };
    assert!(
        python().exists() && have("openssl"),
        "python3 and openssl are needed"
    );
    let cert = Cert::new();
    let server = Server::start(&cert, &["-www"]);
    let mut probes = load(1 << 20);
    let mut rings = probes.take_rings();

    let child = Command::new(python())
        .args(["-c", PY_GET, &server.port.to_string()])
        .spawn()
        .expect("spawn python3");
    let py_pid = child.id();
    let out = child.wait_with_output().expect("wait python3");
    assert!(
        out.status.success(),
        "python client failed: {:?}",
        out.status
    );
    probes.detach();

    let records = drain(&mut rings);
    let mine: Vec<&Vec<u8>> = records
        .iter()
        .map(|(_, r)| r)
        .filter(|r| hdr(r).pid == py_pid)
        .collect();
    let datas: Vec<Data> = mine
        .iter()
        .filter(|r| hdr(r).kind == KIND_TLS_DATA)
        .map(|r| data(r))
        .collect();
    let sent = datas
        .iter()
        .find(|d| d.direction == 1 && contains(&d.payload, b"GET / HTTP/1.0"))
        .expect("SSL_write_ex captured");
    let recv = datas
        .iter()
        .find(|d| d.direction == 0 && contains(&d.payload, b"HTTP/1.0 200 ok"))
        .expect("SSL_read_ex captured");
    for d in [sent, recv] {
        assert_ne!(d.fd, u32::MAX, "fd from the socket BIO");
        assert_eq!((d.family, d.dport), (2, server.port));
    }
    assert_eq!(
        mine.iter()
            .filter(|r| hdr(r).kind == KIND_MASTER_SECRET)
            .count(),
        1,
        "one secret record"
    );
}
