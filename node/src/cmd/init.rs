//! `replicode init`: a single-validator home with CometBFT and app configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::cometbft;
use crate::home::{self, Abci, Home, Ports};
use crate::keyring::{Keyring, DEFAULT_KEY};

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// The home directory to create.
    #[arg(long)]
    pub home: PathBuf,
    /// Genesis app state template (programs' `file` resolved relative to it).
    #[arg(long, default_value = "genesis/app_state.json")]
    pub genesis: PathBuf,
    /// Chain id (default: CometBFT's generated one).
    #[arg(long)]
    pub chain_id: Option<String>,
    /// Fast block times (200 ms commit timeout) for local use and tests.
    #[arg(long)]
    pub fast: bool,
    /// How cometbft talks to the app.
    #[arg(long, value_enum, default_value_t = Abci::Grpc)]
    pub abci: Abci,
}

pub fn run(args: InitArgs) -> anyhow::Result<ExitCode> {
    let bin = cometbft::checked_binary()?;
    if args.home.join("config/genesis.json").exists() {
        anyhow::bail!(
            "{} is already initialized (remove it to start over)",
            args.home.display()
        );
    }
    let mut state = home::resolve_template(&args.genesis)?;
    let keyring = Keyring::at(&args.home.join("keyring"));
    home::fund_new_keys(
        &keyring,
        &[(DEFAULT_KEY.to_string(), home::DEFAULT_ACCOUNT_FUEL)],
        &mut state,
    )?;
    let home_str = args.home.to_str().context("home path is not UTF-8")?;
    cometbft::run(&bin, &["init", "--home", home_str])?;
    let home = Home(args.home.clone());
    home::write_app_state(&home, &state, args.chain_id.as_deref())?;
    let ports = Ports {
        p2p: 26656,
        rpc: 26657,
        abci: 26658,
    };
    home::configure(&home, ports, "", args.fast, args.abci)?;
    println!(
        "initialized {} (rpc http://127.0.0.1:{}, abci 127.0.0.1:{}); funded key {DEFAULT_KEY} in {} (use --keyring-dir)",
        args.home.display(),
        ports.rpc,
        ports.abci,
        keyring.dir().display()
    );
    Ok(ExitCode::SUCCESS)
}
