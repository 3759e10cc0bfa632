//! `rcapture tls` with neither `--pid` nor `--libssl` finds every OpenSSL
//! in use: copies of the system's libssl bind-mounted over its path in new
//! mount namespaces (`unshare -m`), used by processes started after
//! rcapture — a server waiting for a connection, and a client that
//! connects, exchanges one line and exits at once — are attached and
//! captured with their pids; `/status` lists each file (version, dev:ino,
//! mount namespace, processes mapping it); the system's libssl, mapped by
//! several processes, is attached once.

use crate::openssl_matrix::tls_status;
use crate::server::marker;
use crate::testutil::{
    Proc, Rcapture, TempDir, blocks, bpf_available, make_cert, run_ok, spawn_with_port, support,
};
use rcapture_ebpf::libwatch::FileId;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The files of `/status` whose dev:ino is `id`'s.
fn files_of(tls: &Value, id: FileId) -> Vec<Value> {
    tls["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["dev_ino"] == id.display().as_str())
        .cloned()
        .collect()
}

/// Polls `/status` until `ok` holds for the tls module (the process counts
/// are refreshed every 2 s off the request path); panics with the last one.
fn status_until(rc: &Rcapture, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        let tls = tls_status(rc);
        if ok(&tls) {
            return tls;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            panic!("{what}: never in /status: {tls:#}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A copy of the system's libssl and libcrypto (new inodes) in `dir/name`.
fn copy_libs(libdir: &Path, dir: &TempDir, name: &str) -> PathBuf {
    let d = dir.path(name);
    std::fs::create_dir_all(&d).unwrap();
    for lib in ["libssl.so.3", "libcrypto.so.3"] {
        std::fs::copy(libdir.join(lib), d.join(lib)).unwrap();
    }
    d
}

/// `args` of `exe` run in a new mount namespace where `copy`'s libraries
/// are bind-mounted over the system's, without a controlling terminal
/// (setsid: the sh is not a group leader, so it execs in place and the
/// child's pid is the program's).
fn in_namespace(copy: &Path, libdir: &Path, exe: &Path, args: &[&str]) -> Command {
    let mut script = String::new();
    for lib in ["libssl.so.3", "libcrypto.so.3"] {
        script.push_str(&format!(
            "mount --bind {} {} && ",
            copy.join(lib).display(),
            libdir.join(lib).display()
        ));
    }
    script.push_str(&format!("exec setsid {}", exe.display()));
    for a in args {
        script.push_str(&format!(" '{a}'"));
    }
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c", &script]);
    c
}

#[test]
fn tls_discovers_libssl_copies_in_other_mount_namespaces() {
    let Some(_guard) = bpf_available("tls_discovers_libssl_copies_in_other_mount_namespaces")
    else {
        return;
    };
    let dir = TempDir::new("discovery");
    let system = rcapture_ebpf::OpensslTarget::discover(None, None).expect("the system's libssl");
    let version = system.version();
    let libdir = std::fs::canonicalize(system.libssl())
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let system_id = FileId::of(system.libssl()).unwrap();
    let exe = dir.path("ossl_peer");
    run_ok(
        Command::new("cc")
            .args(["-O1", "-Wall", "-Werror", "-o"])
            .arg(&exe)
            .arg(support("ossl_peer.c"))
            .args(["-lssl", "-lcrypto"]),
    );
    let (cert, key) = make_cert(&dir);
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());

    // (c) Three processes map the system's libssl before rcapture starts.
    let sleepers: Vec<Proc> = (0..3)
        .map(|_| {
            Proc(
                Command::new("python3")
                    .args(["-c", "import ssl, sys; sys.stdin.read()"])
                    .stdin(Stdio::piped())
                    .spawn()
                    .expect("python3"),
            )
        })
        .collect();
    let rc = Rcapture::start(&["tls"]);
    let probing = format!(
        "rcapture: module tls: probing {} (version {version}) with ",
        system.libssl().display()
    );
    assert!(
        rc.stderr.iter().any(|l| l.starts_with(&probing)),
        "{probing}… in {:#?}",
        rc.stderr
    );
    let tls = status_until(&rc, "the sleepers counted", |t| {
        files_of(t, system_id)
            .first()
            .is_some_and(|f| f["processes"].as_u64() >= Some(sleepers.len() as u64))
    });
    assert_eq!(
        files_of(&tls, system_id).len(),
        1,
        "the system's libssl once: {tls:#}"
    );
    assert_eq!(tls["discovery"]["watching"], true, "{tls:#}");

    // (a) A server started now in a new mount namespace with its own copy.
    let copy_a = copy_libs(&libdir, &dir, "a");
    let id_a = FileId::of(&copy_a.join("libssl.so.3")).unwrap();
    let m_a = marker("discovery-a");
    let (mut srv_a, port_a) = spawn_with_port(
        &mut in_namespace(&copy_a, &libdir, &exe, &["server", cert, key, "1.3", &m_a]),
        "ossl_peer server in a mount namespace",
    );
    let srv_a_pid = srv_a.0.id();
    let tls = status_until(&rc, "copy a mapped by its server", |t| {
        files_of(t, id_a)
            .first()
            .is_some_and(|f| f["processes"] == 1)
    });
    let f = &files_of(&tls, id_a)[0];
    assert_eq!(f["version"], version.as_str(), "{f}");
    assert_eq!(
        f["process_path"],
        libdir.join("libssl.so.3").to_str().unwrap(),
        "{f}"
    );
    let own_ns = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let ns = f["mount_ns"].as_str().expect("a mount namespace");
    assert_ne!(ns, own_ns.to_str().unwrap(), "{f}");
    assert!(
        f["path"]
            .as_str()
            .unwrap()
            .starts_with(&format!("/proc/{srv_a_pid}/root/")),
        "{f}"
    );
    let (_, out) = run_ok(Command::new(&exe).args(["client", &port_a.to_string(), "1.3", &m_a]));
    assert_eq!(out, format!("RESPONSE {m_a}\n"));
    assert!(srv_a.0.wait().unwrap().success());

    // (b) A client living a few ms (connect, one exchange, exit) with yet
    // another copy, against a server of the system's libssl.
    let copy_b = copy_libs(&libdir, &dir, "b");
    let id_b = FileId::of(&copy_b.join("libssl.so.3")).unwrap();
    let m_b = marker("discovery-b");
    let (mut srv_b, port_b) = spawn_with_port(
        Command::new(&exe).args(["server", cert, key, "1.3", &m_b]),
        "ossl_peer server",
    );
    let t0 = Instant::now();
    let (client_b, out) = run_ok(&mut in_namespace(
        &copy_b,
        &libdir,
        &exe,
        &["client", &port_b.to_string(), "1.3", &m_b],
    ));
    let lived = t0.elapsed();
    assert_eq!(out, format!("RESPONSE {m_b}\n"));
    assert!(srv_b.0.wait().unwrap().success());
    let tls = tls_status(&rc);
    let f = files_of(&tls, id_b);
    assert_eq!(f.len(), 1, "copy b attached once: {tls:#}");
    assert_eq!(f[0]["version"], version.as_str());
    let d = &tls["discovery"];
    assert!(
        d["held"].as_u64() >= Some(2),
        "both first processes held: {d}"
    );
    assert_eq!(d["timeouts"], 0, "{d}");
    eprintln!(
        "discovery: client b lived {lived:?} (held {} us of it); holds: {d}",
        d["hold_us_last"]
    );
    drop(sleepers);

    let (out, stderr) = rc.stop_with_stderr();
    let all = blocks(&out);
    let has = |pid: u32, what: &str, text: &str| {
        all.iter()
            .any(|x| x.pid() == pid && x.what() == what && x.body.trim_end() == text)
    };
    assert!(
        has(srv_a_pid, "recv", &format!("REQUEST {m_a}")),
        "the server in the namespace ({srv_a_pid}), through copy a:\n{out}\n{stderr:#?}"
    );
    assert!(
        has(client_b, "send", &format!("REQUEST {m_b}")),
        "the short-lived client ({client_b}), through copy b:\n{out}\n{stderr:#?}"
    );
    let later = stderr
        .iter()
        .filter(|l| {
            l.starts_with("rcapture: module tls: probing /proc/")
                && l.contains(&format!("(version {version}) with "))
                && l.contains(" in mount namespace mnt:[")
        })
        .count();
    assert!(later >= 2, "copies a and b on probing lines: {stderr:#?}");
}
