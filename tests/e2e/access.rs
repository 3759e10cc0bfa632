//! Who may use the real binary's server: local users (`nobody` refused
//! unless `--allow-uid`), a page of another site in headless Chromium
//! (Playwright), and secrets given in files or the environment instead of
//! the command line.

use crate::testutil::{Rcapture, TempDir, bpf_available, support};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// curl as `user` (via runuser unless root): (status, body).
fn curl(user: &str, args: &[&str]) -> (u16, String) {
    let mut cmd = if user == "root" {
        Command::new("curl")
    } else {
        let mut c = Command::new("runuser");
        c.args(["-u", user, "--", "curl"]);
        c
    };
    let out = cmd
        .args(["-s", "-m", "10", "-w", "\n%{http_code}"])
        .args(args)
        .current_dir("/")
        .output()
        .expect("running curl");
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn refused(addr: &str, reason: &str, token: Option<&str>) -> u64 {
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let mut args = vec![];
    if let Some(a) = &auth {
        args.extend(["-H", a.as_str()]);
    }
    let url = format!("http://{addr}/metrics");
    args.push(&url);
    let (status, text) = curl("root", &args);
    assert_eq!(status, 200, "{text}");
    let series = format!("ecapture_server_refused_requests_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

fn help() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rcapture"))
        .args(["tls", "--help"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn nobody_is_refused_unless_allowed_by_uid() {
    let Some(_bpf) = bpf_available("nobody_is_refused_unless_allowed_by_uid") else {
        return;
    };
    let h = help();
    assert!(
        h.contains("--allow-uid") && h.contains("--allow-gid"),
        "{h}"
    );
    assert!(
        h.contains("any local user then reads every process's plaintext"),
        "--insecure says what it opens: {h}"
    );
    let rc = Rcapture::start(&["tls"]);
    let addr = rc.addr.clone().unwrap();
    let (status, body) = curl("nobody", &[&format!("http://{addr}/status")]);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("--allow-uid 65534"), "{body}");
    assert_eq!(curl("root", &[&format!("http://{addr}/status")]).0, 200);
    assert_eq!(refused(&addr, "local_user", None), 1);
    rc.stop();

    let rc = Rcapture::start(&["tls", "--allow-uid", "1000,65534"]);
    let addr = rc.addr.clone().unwrap();
    let (status, body) = curl("nobody", &[&format!("http://{addr}/status")]);
    assert_eq!(status, 200, "{body}");
    rc.stop();
}

/// Whether Playwright and Chromium are here (or, under
/// `RCAPTURE_REQUIRE_BPF=1`, a failure).
fn chromium() -> Option<&'static str> {
    let path = "/usr/bin/chromium";
    let ok = std::path::Path::new(path).exists()
        && Command::new("python3")
            .args(["-c", "import playwright.sync_api"])
            .output()
            .is_ok_and(|o| o.status.success());
    if ok {
        return Some(path);
    }
    let why = "needs Debian's chromium and python3 -m pip install playwright";
    if std::env::var("RCAPTURE_REQUIRE_BPF").as_deref() == Ok("1") {
        panic!("{why}");
    }
    eprintln!("skipping test - {why}");
    None
}

#[test]
fn a_page_of_another_site_cannot_change_the_config() {
    let Some(_bpf) = bpf_available("a_page_of_another_site_cannot_change_the_config") else {
        return;
    };
    let Some(chromium) = chromium() else { return };
    let rc = Rcapture::start(&["tls"]);
    let addr = rc.addr.clone().unwrap();
    let port = addr.rsplit(':').next().unwrap();
    let out = Command::new("python3")
        .arg(support("browser_attack.py"))
        .args([port, chromium])
        .output()
        .expect("running the browser");
    assert!(
        out.status.success(),
        "browser_attack.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        seen["origin"]
            .as_str()
            .unwrap()
            .starts_with("http://evil.example:"),
        "{seen}"
    );
    // The browser sent the no-cors POST (it cannot see the answer) and
    // refused the JSON one after the server refused its preflight.
    assert_eq!(seen["no_cors"], "sent", "{seen}");
    assert!(
        seen["json"].as_str().unwrap().starts_with("error"),
        "{seen}"
    );
    assert_eq!(seen["rebinding_status"], 403, "{seen}");
    assert!(
        seen["rebinding_body"]
            .as_str()
            .unwrap()
            .contains("evil.example"),
        "{seen}"
    );
    let (status, config) = curl("root", &[&format!("http://{addr}/config")]);
    assert_eq!(status, 200);
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(
        config["data"]["event_forward"]["enabled"], false,
        "the page redirected forwarding: {config}"
    );
    // The no-cors POST and the preflight (Origin), the page itself (Host).
    assert!(refused(&addr, "origin", None) >= 2);
    assert!(refused(&addr, "host", None) >= 1);
    rc.stop();
}

fn private_file(dir: &TempDir, name: &str, text: &str, mode: u32) -> String {
    let p = dir.path(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p.display().to_string()
}

fn cmdline(pid: u32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap())
        .replace('\0', " ")
}

#[test]
fn secrets_come_from_private_files_and_the_environment() {
    let Some(_bpf) = bpf_available("secrets_come_from_private_files_and_the_environment") else {
        return;
    };
    let h = help();
    for flag in [
        "--auth-token-file",
        "RCAPTURE_AUTH_TOKEN",
        "--forward-header-file",
        "RCAPTURE_FORWARD_HEADERS",
    ] {
        assert!(h.contains(flag), "--help names {flag}: {h}");
    }
    let dir = TempDir::new("secrets");
    // A token file others may read is refused, before anything starts.
    let open = private_file(&dir, "open-token", "file-token\n", 0o644);
    let out = Command::new(env!("CARGO_BIN_EXE_rcapture"))
        .args(["tls", "--listen", "127.0.0.1:0", "--auth-token-file", &open])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("readable by other users") && err.contains("chmod 600"),
        "{err}"
    );

    let token = private_file(&dir, "token", "file-token\n", 0o600);
    let headers = private_file(
        &dir,
        "headers",
        "# collector credentials\nX-Api-Key: header-secret\n",
        0o600,
    );
    let rc = Rcapture::start(&[
        "tls",
        "--auth-token-file",
        &token,
        "--forward",
        "http://127.0.0.1:9/c",
        "--forward-header-file",
        &headers,
    ]);
    let addr = rc.addr.clone().unwrap();
    let ps = cmdline(rc.pid());
    assert!(
        !ps.contains("file-token") && !ps.contains("header-secret"),
        "{ps}"
    );
    let status_url = format!("http://{addr}/status");
    assert_eq!(curl("root", &[&status_url]).0, 401);
    let (status, body) = curl(
        "root",
        &[
            "-H",
            "Authorization: Bearer file-token",
            &format!("http://{addr}/config"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("header-secret"), "{body}");
    let config: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        config["data"]["event_forward"]["headers"]["X-Api-Key"], "<redacted>",
        "the header file was read: {config}"
    );
    assert_eq!(refused(&addr, "token", Some("file-token")), 1);
    rc.stop();

    let rc = Rcapture::start_env(&["tls"], &[("RCAPTURE_AUTH_TOKEN", "env-token")]);
    let addr = rc.addr.clone().unwrap();
    let status_url = format!("http://{addr}/status");
    assert_eq!(curl("root", &[&status_url]).0, 401);
    assert_eq!(
        curl(
            "root",
            &["-H", "Authorization: Bearer env-token", &status_url]
        )
        .0,
        200
    );
    assert!(!cmdline(rc.pid()).contains("env-token"));
    rc.stop();
}

/// A client that sends a request and closes at once leaves a time-wait
/// socket that the kernel reports as uid 0: while rcapture is stopped
/// (SIGSTOP, so its accept comes after the close), nobody's
/// fire-and-forget `POST /config` must not pass as root's.
#[test]
fn a_request_whose_socket_is_already_closed_is_not_roots() {
    let Some(_bpf) = bpf_available("a_request_whose_socket_is_already_closed_is_not_roots") else {
        return;
    };
    let rc = Rcapture::start(&["tls"]);
    let addr = rc.addr.clone().unwrap();
    let port = addr.rsplit(':').next().unwrap();
    let script = r#"
import socket, sys
body = b'{"pid": 4242}'
req = b"POST /config HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
for _ in range(3):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(req)
    s.close()
"#;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(rc.pid() as i32, libc::SIGSTOP) };
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--", "/usr/bin/python3", "-c", script, port])
        .current_dir("/")
        .output()
        .expect("running the client as nobody");
    std::thread::sleep(std::time::Duration::from_millis(200));
    // SAFETY: as above.
    unsafe { libc::kill(rc.pid() as i32, libc::SIGCONT) };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while refused(&addr, "local_user", None) < 3 {
        assert!(
            std::time::Instant::now() < end,
            "the 3 requests were not refused"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (_, config) = curl("root", &[&format!("http://{addr}/config")]);
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(
        config["data"]["pid"], 0,
        "nobody set the pid filter: {config}"
    );
    rc.stop();
}
