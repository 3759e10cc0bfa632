//! rcapture: eBPF capture of TLS plaintext and secrets, delivered as text and key logs.

mod cli;
mod control;
mod forward_args;
mod secrets;
mod tls;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    let result = match args.command {
        cli::Command::Tls(a) => tls::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rcapture: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
