//! `replicode run`: one program, one deterministic run (placeholder until the runtime lands).

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The wasm32-wasi program.
    pub program: std::path::PathBuf,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("running {} is not implemented yet", args.program.display())
}
