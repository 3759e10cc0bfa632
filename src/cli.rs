//! Command-line arguments (clap): raw flags, validated in each command.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Capture what processes say inside TLS, with eBPF.
#[derive(Debug, Parser)]
#[command(name = "rcapture", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Capture OpenSSL (libssl.so.3) plaintext and secrets.
    Tls(TlsArgs),
}

/// What `rcapture tls` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsMode {
    /// Every TLS read and write as text on stdout.
    Text,
    /// Only the secrets, as an NSS key log file (--keylogfile).
    Keylog,
}

#[derive(Debug, Args)]
pub struct TlsArgs {
    /// libssl.so.3 to probe (default: the one of --pid, else the system's).
    #[arg(long, value_name = "PATH")]
    pub libssl: Option<PathBuf>,
    /// Only this process.
    #[arg(long, value_name = "N")]
    pub pid: Option<u32>,
    /// Only processes of this user id.
    #[arg(long, value_name = "N")]
    pub uid: Option<u32>,
    /// Output mode.
    #[arg(short = 'm', long = "mode", value_enum, default_value = "text")]
    pub mode: TlsMode,
    /// Key log file (NSS format) for -m keylog.
    #[arg(long, value_name = "FILE")]
    pub keylogfile: Option<PathBuf>,
    /// Show payloads as a hex dump.
    #[arg(long)]
    pub hex: bool,
    /// Bytes captured per TLS call at most; the rest is reported as truncated.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_payload: u32,
    /// Ring buffer size per CPU, in KiB.
    #[arg(long, value_name = "KIB", default_value_t = 8192)]
    pub per_cpu_map_size: usize,
}
