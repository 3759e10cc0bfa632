//! Loads the OpenSSL probes and prints one line per record for a while.
//!
//! `cargo run -p rcapture-ebpf --example tls_dump -- [SECONDS] [PID]` (root).

use std::time::{Duration, Instant};

use rcapture_core::ring::RecordRing as _;
use rcapture_ebpf::{Capture, CaptureOptions, OpensslTarget};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().map_or(Ok(10), |s| s.parse())?;
    let pid: Option<u32> = args.next().map(|s| s.parse()).transpose()?;
    let target = OpensslTarget::discover(None, pid)?;
    eprintln!(
        "{} (OpenSSL {})",
        target.libssl().display(),
        target.version()
    );
    let opts = CaptureOptions {
        pid,
        ..CaptureOptions::default()
    };
    let mut probes = Capture::load(&[target.target()?], &opts)?;
    for w in probes.warnings() {
        eprintln!("warning: {w}");
    }
    eprintln!("{} probes attached", probes.probe_count());
    let mut rings = probes.take_rings();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        for ring in &mut rings {
            let cpu = ring.cpu();
            ring.drain(&mut |rec| {
                let kind = u16::from_le_bytes([rec[0], rec[1]]);
                let pid = u32::from_le_bytes([rec[16], rec[17], rec[18], rec[19]]);
                println!("cpu {cpu} kind {kind} pid {pid} {} bytes", rec.len());
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    probes.detach();
    eprintln!("counters: {:?}", probes.counters()?);
    Ok(())
}
