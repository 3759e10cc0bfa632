//! `tls-loadgen`: TLS writes and reads over loopback in one process, counted exactly.
//!
//! Prints one JSON line when the handshake is done (`{"ready":true,"pid":..}`);
//! with `--wait`, then waits for a line on stdin before starting, so a tracer
//! can attach first. Prints the [`LoadReport`](rcapture_perf::loadgen::LoadReport)
//! as one JSON line at the end.

use clap::Parser;
use rcapture_perf::loadgen::{Api, TlsPair};
use std::io::{BufRead as _, Write as _};

#[derive(Debug, Parser)]
#[command(about = "TLS load over loopback with exact call counts")]
struct Args {
    /// Number of SSL_write calls.
    #[arg(long, default_value_t = 200_000)]
    calls: u64,
    /// Bytes per SSL_write.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// SSL_write/SSL_read or the _ex forms.
    #[arg(long, value_enum, default_value = "plain")]
    api: Api,
    /// Wait for a line on stdin after the handshake.
    #[arg(long)]
    wait: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pair = TlsPair::connect()?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}",
        serde_json::json!({"ready": true, "pid": std::process::id()})
    )?;
    out.flush()?;
    if args.wait {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
    }
    let report = pair.run(args.calls, args.payload, args.api)?;
    writeln!(out, "{}", report.to_json())?;
    out.flush()?;
    Ok(())
}
