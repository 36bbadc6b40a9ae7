//! Subcommands, one module each.

pub mod init;
pub mod keys;
pub mod query;
pub mod run;
pub mod start;
pub mod testnet;
pub mod tx;
pub mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a wasm32-wasi program once in the deterministic runtime (like `wasmtime run`).
    Run(run::RunArgs),
    /// Create a validator home (CometBFT config + genesis app state).
    Init(init::InitArgs),
    /// Serve the ABCI app and run its cometbft until SIGINT/SIGTERM.
    Start(start::StartArgs),
    /// A local multi-validator network on 127.0.0.1.
    #[command(subcommand)]
    Testnet(testnet::TestnetCommand),
    /// Submit a signed syscall-input transaction and print its result.
    Tx(tx::TxArgs),
    /// Manage the account keys that sign transactions.
    Keys(keys::KeysArgs),
    /// Read committed state (files with proofs, processes).
    Query(query::QueryArgs),
    /// Compare every validator's app hash at every height.
    Verify(verify::VerifyArgs),
}

/// Routes a parsed command to its module; returns the process exit code.
pub fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => run::run(args),
        Command::Init(args) => init::run(args),
        Command::Start(args) => start::run(args),
        Command::Testnet(command) => testnet::run(command),
        Command::Tx(args) => tx::run(args),
        Command::Keys(args) => keys::run(args),
        Command::Query(args) => query::run(args),
        Command::Verify(args) => verify::run(args),
    }
}

/// Human tables or one JSON document for scripts.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

/// Which node a client command talks to.
#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// CometBFT RPC URL.
    #[arg(long, env = "REPLICODE_NODE")]
    pub node: Option<String>,
    /// Or: the first validator of this testnet directory.
    #[arg(long)]
    pub testnet: Option<PathBuf>,
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

impl NodeArgs {
    /// [`NodeArgs::url`] first, then every other validator of `--testnet`
    /// (asked when the first does not know a transaction).
    pub fn urls(&self) -> anyhow::Result<Vec<String>> {
        let first = self.url()?;
        let mut urls = vec![first.clone()];
        if let Some(dir) = &self.testnet {
            let layout = testnet::Layout::load(dir)?;
            urls.extend(
                layout
                    .nodes
                    .iter()
                    .map(|n| n.rpc_url())
                    .filter(|u| *u != first),
            );
        }
        Ok(urls)
    }

    /// `--node`, else node0 of `--testnet`, else the default local RPC port.
    /// `--node` takes what CometBFT users write: `http://host:port`,
    /// `tcp://host:port` (CometBFT's own `laddr` form) or `host:port`.
    pub fn url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.node {
            return Ok(normalize_node(url));
        }
        if let Some(dir) = &self.testnet {
            let layout = testnet::Layout::load(dir)?;
            let first = layout
                .nodes
                .first()
                .ok_or_else(|| anyhow::anyhow!("{} has no validators", dir.display()))?;
            return Ok(first.rpc_url());
        }
        Ok("http://127.0.0.1:26657".into())
    }
}

/// An RPC address as CometBFT users write it, as the HTTP URL the client needs.
pub fn normalize_node(node: &str) -> String {
    if let Some(rest) = node.strip_prefix("tcp://") {
        format!("http://{rest}")
    } else if node.contains("://") {
        node.to_string()
    } else {
        format!("http://{node}")
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default: warnings).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    #[test]
    fn node_addresses_as_cometbft_users_write_them() {
        for (given, url) in [
            ("http://127.0.0.1:26657", "http://127.0.0.1:26657"),
            ("tcp://127.0.0.1:26657", "http://127.0.0.1:26657"),
            ("127.0.0.1:26657", "http://127.0.0.1:26657"),
            ("https://rpc.example:443", "https://rpc.example:443"),
        ] {
            assert_eq!(super::normalize_node(given), url);
        }
    }
}
