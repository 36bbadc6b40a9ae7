//! `replicode`: the RepliCode validator node and its tools.

mod backend;
mod cmd;
mod cometbft;
mod fileproof;
mod home;
mod keyring;
mod lightproof;
mod procfs;
mod rpc;
mod supervisor;

use std::process::ExitCode;

use clap::Parser;

/// RepliCode: ordinary POSIX programs as Byzantine-fault-tolerant replicated services.
#[derive(Parser, Debug)]
#[command(name = "replicode", version, about)]
struct Cli {
    #[command(subcommand)]
    command: cmd::Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cmd::init_tracing();
    match cmd::dispatch(cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("replicode: {err:#}");
            ExitCode::from(1)
        }
    }
}
