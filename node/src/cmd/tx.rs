//! `replicode tx install|spawn|stdin|kill`: broadcast, wait for the commit, print
//! the guest's output and the result code.
//!
//! Exit status: 0 when the transaction committed with code 0; 2 when CheckTx
//! refused it; 3 when it committed with a failure code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use replicode_abci::codes::Code;
use replicode_abci::result::TxOutput;
use replicode_abci::tx::{Body, EnvVar, Install, Kill, Spawn, Stdin, Tx};

use crate::cmd::{NodeArgs, OutputFormat};
use crate::rpc::Rpc;

#[derive(clap::Args, Debug)]
pub struct TxArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Seconds to wait for the transaction to be committed.
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,
    /// Envelope nonce (default: derived from the clock, so repeats are distinct).
    #[arg(long)]
    pub nonce: Option<u64>,
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
    /// Spawn a process: PATH [ARGS...] [--env KEY=VALUE]...
    Spawn {
        path: String,
        args: Vec<String>,
        #[arg(long = "env")]
        env: Vec<String>,
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
    /// Kill PID.
    Kill { pid: u64 },
}

pub fn run(args: TxArgs) -> anyhow::Result<ExitCode> {
    let body = build_body(args.body)?;
    let nonce = args.nonce.unwrap_or_else(clock_nonce);
    let rpc = Rpc::new(&args.node.url()?)?;
    let report = submit(
        &rpc,
        Tx::new(body, nonce).with_fuel(args.fuel),
        Duration::from_secs(args.timeout_secs),
    )?;
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
        TxCommand::Spawn { path, args, env } => {
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
            Body::Spawn(Spawn { path, args, env })
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
    })
}

/// The nonce only makes repeated inputs distinct for CometBFT's mempool cache; it
/// never reaches the state machine, so the clock is fine here.
fn clock_nonce() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
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

/// Broadcasts and waits for inclusion.
pub fn submit(rpc: &Rpc, tx: Tx, timeout: Duration) -> anyhow::Result<Report> {
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
    let included = rpc.wait_included(hash, timeout)?;
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
