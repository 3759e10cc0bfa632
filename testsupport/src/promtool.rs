//! `promtool check metrics` on a Prometheus exposition. Without promtool
//! the check is skipped with a printed reason, unless
//! `RCAPTURE_REQUIRE_BPF=1` (CI), where that is a failure.

use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `promtool check metrics` on `text`: whether it is clean (exit 0,
/// nothing said) and what promtool said; `None` when promtool is missing.
pub fn check(text: &str) -> Option<(bool, String)> {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            if std::env::var("RCAPTURE_REQUIRE_BPF").as_deref() == Ok("1") {
                panic!("promtool is needed (RCAPTURE_REQUIRE_BPF=1): {e}");
            }
            eprintln!("skipping promtool check - promtool not runnable: {e}");
            return None;
        }
    };
    child
        .stdin
        .take()
        .expect("promtool's stdin is piped")
        .write_all(text.as_bytes())
        .expect("writing to promtool");
    let out = child.wait_with_output().expect("waiting for promtool");
    let msg = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success() && msg.trim().is_empty(), msg))
}

/// Asserts that promtool finds nothing to say about `text` (see [`check`]).
pub fn assert_clean(text: &str) {
    if let Some((ok, msg)) = check(text) {
        assert!(ok, "promtool check metrics:\n{msg}\n--- input:\n{text}");
    }
}
