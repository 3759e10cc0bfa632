//! The gotls resolver on the Go test program in its four builds (symbol
//! table or pclntab, PIE or not), and its errors; then the probes on the
//! stripped PIE build, record by record.

use std::path::Path;
use std::process::Command;

use rcapture_ebpf::module::{self, AttachPoint, TargetRequest};
use rcapture_ebpf::{Capture, CaptureOptions, FunctionSource, GoTarget};
use rcapture_testsupport::gobuild::{self, GoVariant};

use crate::testutil::{self, KIND_GOTLS_DATA, KIND_GOTLS_KEY};

fn inspect(v: GoVariant) -> GoTarget {
    let exe = gobuild::gotls_test_prog(v);
    GoTarget::inspect(&exe).unwrap_or_else(|e| panic!("{}: {e}", v.name()))
}

/// Every build resolves: the version is the compiler's, the functions
/// come from the symbol table or the pclntab as the build has one, and the
/// stripped builds find the same entries and `ret`s as the builds with
/// symbols (the code is the same; only the pclntab end includes padding).
#[test]
fn the_four_builds_resolve_alike() {
    let go = gobuild::go_version();
    let all: Vec<(GoVariant, GoTarget)> = GoVariant::ALL.iter().map(|&v| (v, inspect(v))).collect();
    for (v, t) in &all {
        assert_eq!(t.version(), go, "{}", v.name());
        assert_eq!(t.pie(), v.is_pie(), "{}", v.name());
        let want = if v.has_symbols() {
            FunctionSource::SymbolTable
        } else {
            FunctionSource::Pclntab
        };
        assert_eq!(t.source(), want, "{}", v.name());
        assert_eq!(t.read_slots(), (8, 16), "{}", v.name());
        assert!(
            t.read_returns().len() >= 2,
            "{}: {:?}",
            v.name(),
            t.read_returns()
        );
        let (tcp, unix) = t.conn_type_hashes();
        assert!(
            tcp.is_some() && unix.is_some() && tcp != unix,
            "{}",
            v.name()
        );
        assert!(t.functions().2.is_some(), "{}: writeKeyLog", v.name());
        assert!(t.read_copy_call().is_some(), "{}: Read's memmove", v.name());
    }
    for (with, without) in [(0, 1), (2, 3)] {
        let (a, b) = (&all[with].1, &all[without].1);
        let ((aw, ar, ak), (bw, br, bk)) = (a.functions(), b.functions());
        let (ak, bk) = (ak.unwrap(), bk.unwrap());
        for (x, y) in [(aw, bw), (ar, br), (ak, bk)] {
            assert_eq!(
                x.entry, y.entry,
                "{:?} vs {:?}",
                all[with].0, all[without].0
            );
            // pclntab: up to the next function (alignment padding included)
            assert!(y.end >= x.end && y.end - x.end < 64, "{x:?} {y:?}");
        }
        assert_eq!(a.read_returns(), b.read_returns());
        assert_eq!(a.read_copy_call(), b.read_copy_call());
        assert_eq!(a.conn_type_hashes(), b.conn_type_hashes());
    }
    assert_eq!(all[0].1.conn_type_hashes(), all[2].1.conn_type_hashes());
}

/// The attach points are file offsets: for these builds (first PT_LOAD at
/// file offset 0, vaddr 0x400000) an offset is the vaddr minus 0x400000,
/// PIE or not; and the byte there is the one the function starts with.
#[test]
fn attach_points_are_file_offsets() {
    for (v, returns) in GoVariant::ALL.iter().flat_map(|&v| [(v, false), (v, true)]) {
        let exe = gobuild::gotls_test_prog(v);
        let mut t = inspect(v);
        if returns {
            t.use_return_probes();
        }
        let target = t.target().unwrap();
        let bytes = std::fs::read(&exe).unwrap();
        let (write, read, keylog) = t.functions();
        let mut rets = 0;
        for a in &target.attach {
            let AttachPoint::Uprobe {
                offset,
                symbol,
                ret,
                cookie,
                ..
            } = &a.point
            else {
                panic!("{}: only uprobes: {:?}", v.name(), a.point);
            };
            assert!(!ret, "never a uretprobe on Go code: {symbol}");
            let byte = bytes[*offset as usize];
            match a.program {
                "rc_gotls_write" | "rc_gotls_keylog" => {
                    // at the prologue's stack check, `jbe runtime.morestack`
                    let (name, entry) = if a.program == "rc_gotls_write" {
                        ("crypto/tls.(*Conn).writeRecordLocked+0x", write.entry)
                    } else {
                        ("crypto/tls.(*Config).writeKeyLog+0x", keylog.unwrap().entry)
                    };
                    assert!(symbol.starts_with(name), "{symbol}");
                    assert!(*offset > entry - 0x400000 && *offset < entry - 0x400000 + 16);
                    assert_eq!(
                        &bytes[*offset as usize..][..2],
                        [0x0f, 0x86],
                        "{}: {symbol}",
                        v.name()
                    );
                    assert_eq!(cookie, &1, "{symbol}");
                }
                "rc_gotls_read" => {
                    assert!(symbol.starts_with("crypto/tls.(*Conn).Read+0x"), "{symbol}");
                    assert!(*offset > read.entry - 0x400000);
                    assert_eq!(byte, 0xc3, "{}: {symbol} is a ret", v.name());
                    assert_eq!(cookie, &0);
                    rets += 1;
                }
                "rc_gotls_read_copy" => {
                    assert!(!returns);
                    let at = t.read_copy_call().unwrap();
                    assert_eq!(*symbol, format!("crypto/tls.(*Conn).Read+{at:#x}"));
                    assert_eq!(*offset, read.entry + at - 0x400000);
                    assert_eq!(byte, 0xe8, "{}: {symbol} is a call", v.name());
                    rets += 1;
                }
                other => panic!("unexpected program {other}"),
            }
        }
        assert_eq!(rets, if returns { t.read_returns().len() } else { 1 });
        assert_eq!(
            target.path,
            exe,
            "{}: the binary itself is probed",
            v.name()
        );
    }
}

#[test]
fn errors_name_the_binary_the_version_and_what_is_missing() {
    let gotls = module::module("gotls").expect("gotls is built in");
    let e = (gotls.resolve)(&TargetRequest::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "module gotls: no target: give the Go binary with --elfpath PATH or a process with --pid N"
    );
    let e = GoTarget::inspect(Path::new("/bin/true")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "module gotls: /bin/true: no Go build info (`\\xff Go buildinf:`): not a Go executable"
    );
    let notls = gobuild::go_program_without_tls();
    let e = GoTarget::inspect(&notls).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "module gotls: {} (version {}): crypto/tls.(*Conn).writeRecordLocked not found \
             (searched the ELF symbol table and the pclntab); does the program use crypto/tls?",
            notls.display(),
            gobuild::go_version()
        )
    );
}

/// The probes themselves, record by record: one request gives the four
/// payloads with their fds and tuples, and the key records carry the
/// 32-byte client random and the secrets (TLS 1.2: one 48-byte master
/// secret; TLS 1.3: four 32-byte traffic secrets), logged by both sides.
fn records_of_one_request(v: GoVariant, tls: &str, returns: bool) {
    let exe = gobuild::gotls_test_prog(v);
    let mut t = GoTarget::inspect(&exe).expect("resolving the build");
    if returns {
        t.use_return_probes();
    }
    let target = t.target().unwrap();
    let mut capture = Capture::load(&[target], &CaptureOptions::default()).expect("loading");
    let mut rings = capture.take_rings();
    let port = testutil::free_port();
    let marker = format!("rec-{}-{tls}", v.name());
    let out = Command::new(&exe)
        .args([
            "-addr",
            &format!("127.0.0.1:{port}"),
            "-marker",
            &marker,
            "-tls",
            tls,
        ])
        .output()
        .expect("running the Go test program");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["tls"], tls);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let records = testutil::drain(&mut rings);
    let pid = report["pid"].as_u64().unwrap() as u32;
    let client_fd = report["client_fd"].as_u64().unwrap() as u32;
    let server_fd = report["server_fd"].as_u64().unwrap() as u32;
    let data: Vec<_> = records
        .iter()
        .filter(|(_, r)| testutil::hdr(r).kind == KIND_GOTLS_DATA)
        .map(|(_, r)| testutil::data(r))
        .filter(|d| d.hdr.pid == pid)
        .collect();
    let find = |dir: u8, needle: &str| {
        let found: Vec<_> = data
            .iter()
            .filter(|d| d.direction == dir && String::from_utf8_lossy(&d.payload).contains(needle))
            .collect();
        assert_eq!(found.len(), 1, "direction {dir}, {needle:?}: {data:#?}");
        found[0]
    };
    let request = format!("X-Marker: {marker}\r\n");
    let answer = format!("pong {marker} BODY {marker}\n");
    let req_sent = find(1, &request);
    let req_read = find(0, &request);
    let resp_sent = find(1, &answer);
    let resp_read = find(0, &answer);
    assert_eq!(req_sent.payload, req_read.payload);
    assert_eq!(resp_sent.payload, resp_read.payload);
    assert_eq!((req_sent.fd, resp_read.fd), (client_fd, client_fd));
    assert_eq!((req_read.fd, resp_sent.fd), (server_fd, server_fd));
    for d in [req_sent, req_read, resp_sent, resp_read] {
        assert_eq!(d.hdr.comm, "gotls_test_prog");
        assert_eq!(d.family, 2, "AF_INET");
        assert_ne!(d.sock, 0);
        assert_eq!(d.total_len as usize, d.payload.len());
    }
    assert_eq!(req_sent.dport, port);
    assert_eq!(req_read.sport, port);
    assert_eq!(req_sent.sport, req_read.dport);
    let keys: Vec<_> = records
        .iter()
        .filter(|(_, r)| testutil::hdr(r).kind == KIND_GOTLS_KEY && testutil::hdr(r).pid == pid)
        .map(|(_, r)| testutil::gotls_key(r))
        .collect();
    let (labels, secret_len): (&[&str], usize) = if tls == "1.2" {
        (&["CLIENT_RANDOM"], 48)
    } else {
        (
            &[
                "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
                "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                "CLIENT_TRAFFIC_SECRET_0",
                "SERVER_TRAFFIC_SECRET_0",
            ],
            32,
        )
    };
    assert_eq!(keys.len(), 2 * labels.len(), "{keys:?}");
    for l in labels {
        let both: Vec<_> = keys.iter().filter(|k| k.label == *l).collect();
        assert_eq!(both.len(), 2, "{l}: client and server: {keys:?}");
        assert_eq!(both[0].secret, both[1].secret);
        assert_eq!(both[0].secret.len(), secret_len);
    }
    let random = keys[0].client_random;
    assert!(random.iter().any(|&b| b != 0));
    assert!(keys.iter().all(|k| k.client_random == random));
    let lost: u64 = capture.counters().unwrap().iter().map(|c| c.lost).sum();
    assert_eq!(lost, 0);
}

#[test]
fn records_of_one_request_tls12_stripped_pie() {
    if let Some(_guard) = testutil::require_bpf() {
        records_of_one_request(GoVariant::PieStripped, "1.2", false);
    }
}

/// The same through the general probes at `Read`'s `ret`s.
#[test]
fn records_of_one_request_tls13_at_the_returns() {
    if let Some(_guard) = testutil::require_bpf() {
        records_of_one_request(GoVariant::Plain, "1.3", true);
    }
}
