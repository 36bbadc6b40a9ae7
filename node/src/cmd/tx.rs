//! `replicode tx install|spawn|stdin|kill`: sign as `--from`, broadcast, wait
//! for the commit, print the guest's output and the result code.
//!
//! The sequence is the account's committed one (or `--sequence`), so a
//! transaction runs at most once: when the wait times out, every validator
//! the command knows is asked for it, and the account's sequence says whether
//! it can still commit. Resending the same bytes is always safe.
//!
//! Exit status: 0 when the transaction committed with code 0; 2 when CheckTx
//! refused it; 3 when it committed with a failure code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use replicode_abci::account::Address;
use replicode_abci::codes::Code;
use replicode_abci::result::TxOutput;
use replicode_abci::tx::{Body, EnvVar, Install, Kill, Spawn, Stdin, Tx, Uninstall};

use crate::cmd::keys::KeyringArgs;
use crate::cmd::{NodeArgs, OutputFormat};
use crate::keyring::DEFAULT_KEY;
use crate::rpc::{Included, Rpc};

#[derive(clap::Args, Debug)]
pub struct TxArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Seconds to wait for the transaction to be committed.
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,
    /// The key that signs (and pays): a name in the keyring.
    #[arg(long, default_value = DEFAULT_KEY)]
    pub from: String,
    #[command(flatten)]
    pub keyring: KeyringArgs,
    /// Sign with this sequence instead of the account's committed one (to
    /// queue several transactions before the first commits).
    #[arg(long)]
    pub sequence: Option<u64>,
    /// Most fuel the input may burn (its gas_wanted; 0 = the genesis
    /// `fuel_per_tx`). Asking for less lets more transactions share a block,
    /// whose transactions together want at most the genesis `max_block_fuel`.
    #[arg(long, default_value_t = 0)]
    pub fuel: u64,
    #[command(subcommand)]
    pub body: TxCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum TxCommand {
    /// Install a wasm program at PATH (below /bin/).
    Install { wasm: PathBuf, path: String },
    /// Spawn a process: PATH [ARGS...] [--env KEY=VALUE]... [--public]
    Spawn {
        path: String,
        args: Vec<String>,
        #[arg(long = "env")]
        env: Vec<String>,
        /// Let any account write to its stdin (a shared service); kill stays
        /// the owner's.
        #[arg(long)]
        public: bool,
    },
    /// Deliver DATA (a trailing newline is added unless --raw) to PID's stdin.
    Stdin {
        pid: u64,
        data: String,
        #[arg(long)]
        eof: bool,
        /// Send DATA exactly, without the trailing newline.
        #[arg(long)]
        raw: bool,
    },
    /// Kill PID (its owner only).
    Kill { pid: u64 },
    /// Remove the program installed at PATH (its owner only).
    Uninstall { path: String },
}

pub fn run(args: TxArgs) -> anyhow::Result<ExitCode> {
    let body = build_body(args.body)?;
    let urls = args.node.urls()?;
    let rpc = Rpc::new(&urls[0])?;
    let key = args
        .keyring
        .keyring(args.node.testnet.as_deref())
        .get(&args.from)?;
    let chain_id = rpc.status()?.chain_id;
    let sequence = match args.sequence {
        Some(sequence) => sequence,
        None => rpc.account(&key.address)?.sequence,
    };
    let tx = Tx::new(body)
        .with_fuel(args.fuel)
        .sign(&key.signing_key()?, sequence, &chain_id);
    let others: Vec<Rpc> = urls[1..]
        .iter()
        .filter_map(|url| Rpc::new(url).ok())
        .collect();
    let report = submit(&rpc, &others, tx, Duration::from_secs(args.timeout_secs))?;
    print_report(&report, args.node.output);
    Ok(ExitCode::from(report.exit_status()))
}

fn build_body(command: TxCommand) -> anyhow::Result<Body> {
    Ok(match command {
        TxCommand::Install { wasm, path } => {
            let bytes =
                std::fs::read(&wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
            Body::Install(Install { path, wasm: bytes })
        }
        TxCommand::Spawn {
            path,
            args,
            env,
            public,
        } => {
            let env = env
                .iter()
                .map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| EnvVar {
                            key: k.into(),
                            value: v.into(),
                        })
                        .with_context(|| format!("--env {kv:?} is not KEY=VALUE"))
                })
                .collect::<anyhow::Result<_>>()?;
            Body::Spawn(Spawn {
                path,
                args,
                env,
                public,
            })
        }
        TxCommand::Stdin {
            pid,
            data,
            eof,
            raw,
        } => {
            let mut bytes = data.into_bytes();
            if !raw {
                bytes.push(b'\n');
            }
            Body::Stdin(Stdin {
                pid,
                data: bytes,
                eof,
            })
        }
        TxCommand::Kill { pid } => Body::Kill(Kill { pid }),
        TxCommand::Uninstall { path } => Body::Uninstall(Uninstall { path }),
    })
}

/// The outcome of one submitted transaction.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub hash: String,
    /// `check` (refused by CheckTx) or `block`.
    pub stage: &'static str,
    pub code: u32,
    pub code_name: String,
    pub log: String,
    pub height: Option<u64>,
    pub pid: Option<u64>,
    pub gas_used: i64,
    /// The target process's stdout while handling this input (lossy UTF-8).
    pub stdout: String,
    pub exits: Vec<(u64, i32)>,
}

impl Report {
    pub fn exit_status(&self) -> u8 {
        match (self.stage, self.code) {
            (_, 0) => 0,
            ("check", _) => 2,
            _ => 3,
        }
    }
}

/// Broadcasts to `rpc` and waits for inclusion; if it does not see the
/// transaction in time, asks `others` before giving up (see [`not_found`]).
pub fn submit(rpc: &Rpc, others: &[Rpc], tx: Tx, timeout: Duration) -> anyhow::Result<Report> {
    let (code, log, hash) = rpc.broadcast(tx.to_bytes())?;
    let name = |code: u32| {
        Code::from_value(code)
            .map(|c| c.name().to_string())
            .unwrap_or_else(|| format!("cometbft:{code}"))
    };
    if code != 0 {
        return Ok(Report {
            hash: hash.to_string(),
            stage: "check",
            code,
            code_name: name(code),
            log,
            height: None,
            pid: None,
            gas_used: 0,
            stdout: String::new(),
            exits: vec![],
        });
    }
    let included = match rpc.wait_included(hash, timeout) {
        Ok(included) => included,
        Err(waited) => match others.iter().find_map(|other| other.find_tx(hash)) {
            Some(included) => included,
            None => return Err(not_found(rpc, others, &tx, waited)),
        },
    };
    report(hash, included)
}

/// Why a transaction was not found, in terms a client can act on: whether
/// its sequence is used (it, or another transaction with that sequence,
/// committed) or still free (it may commit later; resending the same bytes
/// is safe, since a sequence is used once).
fn not_found(rpc: &Rpc, others: &[Rpc], tx: &Tx, waited: anyhow::Error) -> anyhow::Error {
    let asked = std::iter::once(rpc)
        .chain(others)
        .map(|r| r.url.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let Some(address) = tx.signer_address() else {
        return waited;
    };
    let committed = std::iter::once(rpc)
        .chain(others)
        .find_map(|r| r.account(&address).ok())
        .map(|a| a.sequence);
    waited.context(verdict(tx.sequence, &address, committed, &asked))
}

/// What a client that cannot find its transaction can know, from its
/// sequence and the account's committed one (`None`: no node answered).
fn verdict(sequence: u64, address: &Address, committed: Option<u64>, asked: &str) -> String {
    match committed {
        Some(next) if next > sequence => format!(
            "sequence {sequence} of {address} is used: a transaction with it committed, but none of {asked} has this one indexed"
        ),
        Some(next) => format!(
            "sequence {sequence} of {address} is still unused (the account is at {next}): the transaction has not committed; resending the same bytes is safe"
        ),
        None => format!("no node of {asked} answered for account {address}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_transaction_is_judged_by_the_account_sequence() {
        let who = Address([1; 20]);
        assert!(verdict(4, &who, Some(5), "n0").contains("is used"));
        let unused = verdict(4, &who, Some(4), "n0");
        assert!(
            unused.contains("still unused") && unused.contains("resending"),
            "{unused}"
        );
        assert!(verdict(4, &who, None, "n0, n1").contains("no node of n0, n1"));
    }
}

fn report(hash: tendermint::Hash, included: Included) -> anyhow::Result<Report> {
    let name = |code: u32| {
        Code::from_value(code)
            .map(|c| c.name().to_string())
            .unwrap_or_else(|| format!("cometbft:{code}"))
    };
    let result = included.result;
    let output = decode_output(&result.data)?;
    Ok(Report {
        hash: hash.to_string(),
        stage: "block",
        code: result.code.value(),
        code_name: name(result.code.value()),
        log: result.log,
        height: Some(included.height),
        pid: Some(output.pid),
        gas_used: result.gas_used,
        stdout: String::from_utf8_lossy(&output.stdout_of(output.pid)).into_owned(),
        exits: output.exits.iter().map(|e| (e.pid, e.code)).collect(),
    })
}

/// `ExecTxResult.data` as tendermint-rpc 0.41 delivers it: the base64 text of
/// the bytes (see Cargo.toml), or the bytes themselves should that be fixed.
fn decode_output(data: &[u8]) -> anyhow::Result<TxOutput> {
    use base64::Engine as _;
    if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(data) {
        if let Ok(out) = TxOutput::from_bytes(&raw) {
            return Ok(out);
        }
    }
    TxOutput::from_bytes(data).context("the transaction result data is not a TxOutput")
}

fn print_report(report: &Report, output: OutputFormat) {
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string(report).unwrap_or_default()),
        OutputFormat::Text => {
            print!("{}", report.stdout);
            if !report.stdout.is_empty() && !report.stdout.ends_with('\n') {
                println!();
            }
            let at = report
                .height
                .map(|h| format!(" at height {h}"))
                .unwrap_or_default();
            let pid = report.pid.map(|p| format!(" pid {p}")).unwrap_or_default();
            eprintln!(
                "code {} ({}){at}{pid} fuel {}{}",
                report.code,
                report.code_name,
                report.gas_used,
                if report.log.is_empty() {
                    String::new()
                } else {
                    format!(": {}", report.log)
                }
            );
        }
    }
}
