//! Outputs are not world-readable: the key log and the event file are
//! created 0600 (an existing wider file is set to 0600 too), `--file-mode`
//! sets another mode, and a bad mode is refused before anything starts.

use crate::testutil::{Rcapture, TempDir, bpf_available};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn key_log_and_event_file_are_owner_only() {
    let Some(_serial) = bpf_available("key_log_and_event_file_are_owner_only") else {
        return;
    };
    let dir = TempDir::new("modes");
    let keys = dir.path("keys.log");
    std::fs::write(&keys, b"").unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).unwrap();
    let events = dir.path("events.pb");
    let rc = Rcapture::start(&[
        "tls",
        "-m",
        "keylog",
        "--keylogfile",
        keys.to_str().unwrap(),
        "--event-file",
        events.to_str().unwrap(),
    ]);
    assert_eq!(mode(&keys), 0o600, "an existing 0644 key log is tightened");
    assert_eq!(mode(&events), 0o600, "the event file is created 0600");
    rc.stop();

    let events2 = dir.path("events2.ndjson");
    let rc = Rcapture::start(&[
        "tls",
        "--file-mode",
        "0640",
        "--event-file",
        events2.to_str().unwrap(),
        "--event-file-format",
        "json",
    ]);
    assert_eq!(mode(&events2), 0o640);
    rc.stop();
}

#[test]
fn a_bad_file_mode_is_refused() {
    for bad in ["0800", "1777", "rw-------", ""] {
        let out = Command::new(env!("CARGO_BIN_EXE_rcapture"))
            .args(["tls", "--file-mode", bad])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {err}");
        assert!(err.contains("is not an octal file mode"), "{bad:?}: {err}");
    }
    let help = Command::new(env!("CARGO_BIN_EXE_rcapture"))
        .args(["tls", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--file-mode <OCTAL>") && help.contains("0600"),
        "{help}"
    );
}
