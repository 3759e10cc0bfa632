//! rcapture: eBPF capture of TLS plaintext and secrets (and the other capture
//! modules), delivered as text, key logs, an event stream and forwarded batches.

mod capture;
mod cli;
mod control;
mod discover;
mod forward_args;
mod secrets;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    let (module, request, capture) = args.command.into_parts();
    let result = capture::run(module, request, capture);
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rcapture: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
