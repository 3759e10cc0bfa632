//! The NSS/NSPR probes against an NSS client (Python ctypes over the
//! system's libnspr4/libssl3) talking to `openssl s_server`: PR_Writev as
//! one call packed into chunks, PR_Send, the capture limit, and NSPR I/O
//! on a non-TLS descriptor (stdout) left alone.

use std::process::Command;

use rcapture_ebpf::module::TargetRequest;
use rcapture_ebpf::{Capture, CaptureOptions, NssTarget};

use crate::testutil::{
    Cert, Data, F_FIRST, F_LAST, Server, calls_of, contains, drain_lossless, have, python,
    require_bpf,
};

/// `RC_KIND_NSS_DATA` (include/records.h).
const KIND_NSS_DATA: u16 = 4;
/// `RC_CHUNK_MAX`: payload bytes per record at most.
const CHUNK: usize = 16384;

/// An NSS TLS client: connects to 127.0.0.1:argv[1], then one PR_Writev per
/// further argument (comma-separated entry sizes; entry i holds bytes
/// `(i * 7 + j) % 251`), one PR_Send of MARKER, and a PR_Write of a line to
/// NSPR's stdout.
const NSS_CLIENT: &str = r#"
import ctypes as C, sys
nspr = C.CDLL("libnspr4.so"); nss = C.CDLL("libnss3.so"); ssl = C.CDLL("libssl3.so")
P = C.c_void_p
for f, res, args in [
    (nspr.PR_OpenTCPSocket, P, [C.c_int]), (nspr.PR_InitializeNetAddr, C.c_int, [C.c_int, C.c_uint16, P]),
    (nspr.PR_Connect, C.c_int, [P, P, C.c_uint32]), (ssl.SSL_ImportFD, P, [P, P]),
    (ssl.SSL_OptionSet, C.c_int, [P, C.c_int, C.c_int]), (ssl.SSL_SetURL, C.c_int, [P, C.c_char_p]),
    (ssl.SSL_ResetHandshake, C.c_int, [P, C.c_int]), (ssl.SSL_ForceHandshake, C.c_int, [P]),
    (nspr.PR_Writev, C.c_int, [P, P, C.c_int, C.c_uint32]),
    (nspr.PR_Send, C.c_int, [P, C.c_char_p, C.c_int, C.c_int, C.c_uint32]),
    (nspr.PR_Write, C.c_int, [P, C.c_char_p, C.c_int]), (nspr.PR_GetSpecialFD, P, [C.c_int]),
    (nspr.PR_Close, C.c_int, [P]), (nspr.PR_GetError, C.c_int, []),
    (nss.NSS_NoDB_Init, C.c_int, [C.c_char_p]), (ssl.NSS_SetDomesticPolicy, C.c_int, []),
]:
    f.restype, f.argtypes = res, args
AUTH = C.CFUNCTYPE(C.c_int, P, P, C.c_int, C.c_int)
ssl.SSL_AuthCertificateHook.restype, ssl.SSL_AuthCertificateHook.argtypes = C.c_int, [P, AUTH, P]
NO_TIMEOUT = 0xffffffff
class IOV(C.Structure):
    _fields_ = [("base", C.c_void_p), ("len", C.c_int)]

assert nss.NSS_NoDB_Init(None) == 0 and ssl.NSS_SetDomesticPolicy() == 0
tcp = nspr.PR_OpenTCPSocket(2)
addr = C.create_string_buffer(256)
assert tcp and nspr.PR_InitializeNetAddr(2, int(sys.argv[1]), addr) == 0  # loopback
assert nspr.PR_Connect(tcp, addr, NO_TIMEOUT) == 0, nspr.PR_GetError()
fd = ssl.SSL_ImportFD(None, tcp)
assert fd and ssl.SSL_OptionSet(fd, 1, 1) == 0 and ssl.SSL_OptionSet(fd, 5, 1) == 0
accept_any = AUTH(lambda arg, f, check_sig, is_server: 0)
assert ssl.SSL_AuthCertificateHook(fd, accept_any, None) == 0
assert ssl.SSL_SetURL(fd, b"localhost") == 0 and ssl.SSL_ResetHandshake(fd, 0) == 0
assert ssl.SSL_ForceHandshake(fd) == 0, nspr.PR_GetError()
for spec in sys.argv[2:-1]:
    sizes = [int(x) for x in spec.split(",")]
    bufs = [C.create_string_buffer(bytes((i * 7 + j) % 251 for j in range(n)), max(n, 1))
            for i, n in enumerate(sizes)]
    iov = (IOV * len(sizes))(*[IOV(C.cast(b, C.c_void_p), n) for b, n in zip(bufs, sizes)])
    assert nspr.PR_Writev(fd, iov, len(sizes), NO_TIMEOUT) == sum(sizes), nspr.PR_GetError()
m = sys.argv[-1].encode()
assert nspr.PR_Send(fd, m, len(m), 0, NO_TIMEOUT) == len(m)
out = b"NSPR-STDOUT-" + m + b"\n"
assert nspr.PR_Write(nspr.PR_GetSpecialFD(1), out, len(out)) == len(out)
nspr.PR_Close(fd)
"#;

/// The bytes the client's PR_Writev sends for these entry sizes.
fn expected(sizes: &[usize]) -> Vec<u8> {
    sizes
        .iter()
        .enumerate()
        .flat_map(|(i, &n)| (0..n).map(move |j| ((i * 7 + j) % 251) as u8))
        .collect()
}

/// Runs the client under the nss probes (capture limit `max_payload`);
/// returns its pid, the server's port and its NSS records grouped by
/// (cpu, tid, call_seq) in ring order.
fn run_client(max_payload: u32, writes: &[&[usize]], marker: &str) -> (u32, u16, Vec<Vec<Data>>) {
    assert!(
        python().exists() && have("openssl"),
        "python3 and openssl are needed"
    );
    let cert = Cert::new();
    let server = Server::start(&cert, &["-naccept", "1"]);
    let target = NssTarget::discover(&TargetRequest::default())
        .and_then(|t| t.target())
        .expect("system libnspr4.so");
    let opts = CaptureOptions {
        max_payload,
        ring_bytes_per_cpu: 8 << 20,
        ..CaptureOptions::default()
    };
    let mut probes = Capture::load(&[target], &opts).expect("load NSS probes");
    let mut rings = probes.take_rings();

    let specs: Vec<String> = writes
        .iter()
        .map(|w| w.iter().map(usize::to_string).collect::<Vec<_>>().join(","))
        .collect();
    let child = Command::new(python())
        .args(["-c", NSS_CLIENT, &server.port.to_string()])
        .args(&specs)
        .arg(marker)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait python3");
    assert!(out.status.success(), "NSS client failed: {:?}", out.status);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("NSPR-STDOUT-{marker}\n"),
        "the client's PR_Write to stdout"
    );
    probes.detach();

    let records = drain_lossless(&probes, &mut rings);
    let calls = calls_of(&records, KIND_NSS_DATA, |d| d.hdr.pid == pid);
    (pid, server.port, calls.into_values().collect())
}

/// The call whose total length is the sum of `sizes`.
fn call_of<'a>(calls: &'a [Vec<Data>], sizes: &[usize]) -> &'a [Data] {
    let total: usize = sizes.iter().sum();
    calls
        .iter()
        .find(|c| c[0].total_len as usize == total)
        .unwrap_or_else(|| panic!("no PR_Writev call of {total} bytes"))
}

/// Checks one call's records: offsets follow each other from 0, FIRST on
/// the first only, LAST on the last only; returns the joined payload.
fn joined(chunks: &[Data]) -> Vec<u8> {
    let mut all = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.offset as usize, all.len(), "offset of record {i}");
        assert_eq!(c.hdr.flags & F_FIRST != 0, i == 0, "FIRST on record {i}");
        assert_eq!(
            c.hdr.flags & F_LAST != 0,
            i == chunks.len() - 1,
            "LAST on record {i}"
        );
        assert_eq!(c.total_len, chunks[0].total_len);
        all.extend_from_slice(&c.payload);
    }
    all
}

#[test]
fn writev_is_one_call_packed_into_chunks_and_stdout_is_not_captured() {
    let Some(_guard) = require_bpf() else { return };
    // An empty entry, entries that share a record, one that spans two.
    let big: &[usize] = &[100, 0, 20000, 5, 30000];
    let small: &[usize] = &[110, 28, 0, 9];
    let marker = format!("MARKER-PRSEND-{}", std::process::id());
    let (pid, port, calls) = run_client(1 << 20, &[big, small], &marker);
    eprintln!(
        "calls of the client: {:?}",
        calls
            .iter()
            .map(|c| (c[0].total_len, c.len()))
            .collect::<Vec<_>>()
    );

    let total: usize = big.iter().sum();
    let call = call_of(&calls, big);
    assert_eq!(
        call.iter().map(|c| c.payload.len()).collect::<Vec<_>>(),
        [CHUNK, CHUNK, CHUNK, total - 3 * CHUNK],
        "records of up to RC_CHUNK_MAX bytes, entries packed"
    );
    assert!(joined(call) == expected(big), "PR_Writev payload differs");
    let fd = call[0].fd;
    for c in call {
        assert_eq!(c.direction, 1, "sent");
        assert_eq!(c.fd, fd);
        assert_eq!(c.hdr.tid, pid, "the client's one thread");
        assert_eq!(c.hdr.comm, "python3");
        assert_eq!((c.family, c.dport), (2, port), "the TLS socket's tuple");
        assert_ne!(c.sock, 0);
    }
    assert!(fd > 2 && fd != u32::MAX, "the socket's OS fd, got {fd}");

    // A gathered write as small as selfserv's reply is one record.
    let call = call_of(&calls, small);
    assert_eq!(call.len(), 1);
    assert_eq!(call[0].hdr.flags, F_FIRST | F_LAST);
    assert!(joined(call) == expected(small));
    assert_eq!(call[0].fd, fd);

    // PR_Send on the same socket.
    let send = calls
        .iter()
        .find(|c| c[0].payload == marker.as_bytes())
        .unwrap_or_else(|| panic!("no PR_Send of {marker}"));
    assert_eq!(
        (send.len(), send[0].hdr.flags, send[0].fd),
        (1, F_FIRST | F_LAST, fd)
    );
    assert_eq!(calls.len(), 3, "PR_Write to stdout is not a TLS call");
    assert!(
        !calls
            .iter()
            .flatten()
            .any(|c| contains(&c.payload, b"NSPR-STDOUT-")),
        "stdout captured"
    );
}

#[test]
fn writev_is_cut_at_the_capture_limit() {
    let Some(_guard) = require_bpf() else { return };
    let sizes: &[usize] = &[100, 0, 20000, 5, 30000];
    let (_, _, calls) = run_client(20000, &[sizes], "MARKER-CUT");
    let call = call_of(&calls, sizes);
    assert_eq!(
        call.iter().map(|c| c.payload.len()).collect::<Vec<_>>(),
        [CHUNK, 20000 - CHUNK]
    );
    assert!(joined(call) == expected(sizes)[..20000]);
}
