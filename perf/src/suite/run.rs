//! Running the suite's parts: one child process each, its output passed on
//! to stderr (so that stdout stays the summary) and the tail of its stderr
//! kept to say why it failed.

use serde::Serialize;
use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::fd::AsFd as _;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

/// How a part of the suite went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ran,
    Skipped,
    Failed,
    /// Not run now: earlier results were summarised (`--reuse`).
    Reused,
}

/// One part's record in `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct PartRun {
    pub part: &'static str,
    pub outcome: Outcome,
    /// Why it was skipped or failed.
    pub reason: Option<String>,
    /// The command line that ran (or would have).
    pub command: Vec<String>,
    pub secs: f64,
}

impl PartRun {
    pub fn skipped(part: &'static str, reason: impl Into<String>) -> Self {
        Self {
            part,
            outcome: Outcome::Skipped,
            reason: Some(reason.into()),
            command: Vec::new(),
            secs: 0.0,
        }
    }

    pub fn failed(part: &'static str, reason: impl Into<String>, command: Vec<String>) -> Self {
        Self {
            part,
            outcome: Outcome::Failed,
            reason: Some(reason.into()),
            command,
            secs: 0.0,
        }
    }
}

/// `cmd` as words, for the record.
pub fn command_line(cmd: &Command) -> Vec<String> {
    let mut v = vec![cmd.get_program().to_string_lossy().into_owned()];
    v.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    v
}

/// Lines of a child's stderr kept for its failure reason.
const TAIL_LINES: usize = 12;

/// Runs `cmd` to completion with its stdout and stderr on this process's
/// stderr; returns its status and the last lines of its stderr.
pub fn run_logged(cmd: &mut Command) -> std::io::Result<(ExitStatus, Vec<String>)> {
    let out = std::io::stderr().as_fd().try_clone_to_owned()?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::piped())
        .spawn()?;
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    if let Some(err) = child.stderr.take() {
        let mut reader = BufReader::new(err);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    // Best effort: a closed stderr must not stop the child's run.
                    let _ = std::io::stderr().write_all(&line);
                    let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                    if !text.is_empty() {
                        if tail.len() == TAIL_LINES {
                            tail.pop_front();
                        }
                        tail.push_back(text);
                    }
                }
            }
        }
    }
    let status = child.wait()?;
    Ok((status, tail.into()))
}

/// Runs one part: `Ran` if `cmd` exits 0, else `Failed` with its exit status
/// and the last line of its stderr that looks like an error.
pub fn run_part(part: &'static str, cmd: &mut Command) -> PartRun {
    let command = command_line(cmd);
    eprintln!("perf-report: {part}: {}", command.join(" "));
    let start = Instant::now();
    let result = run_logged(cmd);
    let secs = start.elapsed().as_secs_f64();
    let (outcome, reason) = match result {
        Ok((status, _)) if status.success() => (Outcome::Ran, None),
        Ok((status, tail)) => (Outcome::Failed, Some(failure_reason(status, &tail))),
        Err(e) => (
            Outcome::Failed,
            Some(format!("cannot run {}: {e}", command[0])),
        ),
    };
    PartRun {
        part,
        outcome,
        reason,
        command,
        secs,
    }
}

/// `exit status: 1: Error: perf-tls loads BPF programs: run it as root`.
fn failure_reason(status: ExitStatus, tail: &[String]) -> String {
    let line = tail
        .iter()
        .rev()
        .find(|l| l.starts_with("Error") || l.starts_with("error"))
        .or(tail.last());
    match line {
        Some(l) => format!("{status}: {l}"),
        None => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_child_says_why() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo progress >&2; echo 'Error: no luck' >&2; echo trailing >&2; exit 3",
        ]);
        let r = run_part("test", &mut cmd);
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(r.reason.as_deref(), Some("exit status: 3: Error: no luck"));
        assert_eq!(r.command[0], "sh");
    }

    #[test]
    fn a_child_that_exits_0_ran() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo to stdout; echo to stderr >&2"]);
        let r = run_part("test", &mut cmd);
        assert_eq!((r.outcome, r.reason), (Outcome::Ran, None));
    }

    #[test]
    fn a_missing_program_fails() {
        let r = run_part("test", &mut Command::new("/nonexistent/perf-report-test"));
        assert_eq!(r.outcome, Outcome::Failed);
        assert!(r.reason.unwrap().starts_with("cannot run /nonexistent"));
    }
}
