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
        assert_eq!(a.conn_type_hashes(), b.conn_type_hashes());
    }
    assert_eq!(all[0].1.conn_type_hashes(), all[2].1.conn_type_hashes());
}

/// The attach points are file offsets: for these builds (first PT_LOAD at
/// file offset 0, vaddr 0x400000) an offset is the vaddr minus 0x400000,
/// PIE or not; and the byte there is the one the function starts with.
#[test]
fn attach_points_are_file_offsets() {
    for v in GoVariant::ALL {
        let exe = gobuild::gotls_test_prog(v);
        let t = inspect(v);
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
                other => panic!("unexpected program {other}"),
            }
        }
        assert_eq!(rets, t.read_returns().len());
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

/// The probes themselves on the stripped PIE build: one request with TLS
/// 1.2 gives the four payloads with their fds and tuples, and the key
/// records carry the 32-byte client random and the 48-byte master secret.
#[test]
fn records_of_one_request() {
    let Some(_guard) = testutil::require_bpf() else {
        return;
    };
    let exe = gobuild::gotls_test_prog(GoVariant::PieStripped);
    let target = (module::module("gotls").unwrap().resolve)(&TargetRequest {
        path: Some(exe.clone()),
        pid: None,
    })
    .expect("resolving the stripped PIE build");
    let mut capture = Capture::load(&[target], &CaptureOptions::default()).expect("loading");
    let mut rings = capture.take_rings();
    let port = testutil::free_port();
    let out = Command::new(&exe)
        .args([
            "-addr",
            &format!("127.0.0.1:{port}"),
            "-marker",
            "rec-test",
            "-tls",
            "1.2",
        ])
        .output()
        .expect("running the Go test program");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
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
        data.iter()
            .find(|d| d.direction == dir && String::from_utf8_lossy(&d.payload).contains(needle))
            .unwrap_or_else(|| panic!("no direction-{dir} record with {needle:?}: {data:#?}"))
    };
    let req_sent = find(1, "X-Marker: rec-test");
    let req_read = find(0, "X-Marker: rec-test");
    let resp_sent = find(1, "pong rec-test BODY rec-test");
    let resp_read = find(0, "pong rec-test BODY rec-test");
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
    // Client and server both log the session's one line.
    assert_eq!(keys.len(), 2, "{keys:?}");
    for k in &keys {
        assert_eq!(k.label, "CLIENT_RANDOM");
        assert_eq!(k.secret.len(), 48);
        assert!(k.client_random.iter().any(|&b| b != 0));
    }
    assert_eq!(keys[0].client_random, keys[1].client_random);
    assert_eq!(keys[0].secret, keys[1].secret);
    let lost: u64 = capture.counters().unwrap().iter().map(|c| c.lost).sum();
    assert_eq!(lost, 0);
    drop(rings);
}
