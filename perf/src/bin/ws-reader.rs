//! `ws-reader`: one independent WebSocket client of rcapture's event stream
//! (tungstenite, blocking), reading every message, as a user's client would.
//!
//! Prints `{"connected":true}` once the upgrade is done. Then, for every line
//! it reads on stdin, prints `{"frames":F,"bytes":B}` (binary messages and
//! their payload bytes so far); it exits at the end of stdin or when the
//! server closes the stream (printing the same line first).

use clap::Parser;
use std::io::{BufRead as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tungstenite::Message;

#[derive(Debug, Parser)]
#[command(about = "A WebSocket client that reads every message of a stream")]
struct Args {
    /// The stream's URL (ws://HOST:PORT/ws).
    #[arg(long)]
    url: String,
}

fn report(frames: &AtomicU64, bytes: &AtomicU64) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{}",
        serde_json::json!({"frames": frames.load(Relaxed), "bytes": bytes.load(Relaxed)})
    );
    let _ = out.flush();
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (mut ws, _) = tungstenite::connect(args.url.as_str())?;
    let frames = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::json!({"connected": true}))?;
        out.flush()?;
    }
    let (f, b) = (Arc::clone(&frames), Arc::clone(&bytes));
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if line.is_err() {
                break;
            }
            report(&f, &b);
        }
        std::process::exit(0);
    });
    loop {
        match ws.read() {
            Ok(Message::Binary(p)) => {
                frames.fetch_add(1, Relaxed);
                bytes.fetch_add(p.len() as u64, Relaxed);
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    report(&frames, &bytes);
    Ok(())
}
