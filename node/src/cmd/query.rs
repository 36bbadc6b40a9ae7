//! `replicode query file|proc|account`: read committed state; `--prove` checks
//! the answer instead of trusting the node (see [`crate::lightproof`]).
//!
//! All chain state is public: any file, of any account's service, can be read
//! (and proven) here. Per-account filesystems keep services from touching
//! each other's files, not from being seen.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::bail;
use replicode_abci::account::Address;
use replicode_abci::executor::ProcessInfo;
use replicode_abci::info::paths;

use crate::cmd::{NodeArgs, OutputFormat};
use crate::lightproof;
use crate::rpc::Rpc;

#[derive(clap::Args, Debug)]
pub struct QueryArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(subcommand)]
    pub what: QueryCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum QueryCommand {
    /// A file's contents at a height (default: latest). All chain state is
    /// public: any account's files (`/home/<address>/...`) can be read and proven.
    File {
        path: String,
        #[arg(long)]
        height: Option<u64>,
        /// Verify a Merkle proof against the app hash in the signed header of the next block.
        #[arg(long)]
        prove: bool,
    },
    /// The process list, or one process's status and recent output.
    Proc { pid: Option<u64> },
    /// An account's next sequence and remaining fuel (ADDRESS, or a key NAME).
    Account {
        who: String,
        #[command(flatten)]
        keyring: crate::cmd::keys::KeyringArgs,
    },
}

pub fn run(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let rpc = Rpc::new(&args.node.url()?)?;
    match args.what {
        QueryCommand::File {
            path,
            height,
            prove,
        } => file(&rpc, &path, height, prove, args.node.output),
        QueryCommand::Proc { pid } => proc(&rpc, pid, args.node.output),
        QueryCommand::Account { who, keyring } => {
            let address = match who.parse::<Address>() {
                Ok(address) => address,
                Err(_) => {
                    keyring
                        .keyring(args.node.testnet.as_deref())
                        .get(&who)?
                        .address
                }
            };
            let account = rpc.account(&address)?;
            match args.node.output {
                OutputFormat::Json => println!("{}", serde_json::to_string(&account)?),
                OutputFormat::Text => println!(
                    "address: {}\nsequence: {}\nfuel: {}",
                    account.address, account.sequence, account.fuel
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn file(
    rpc: &Rpc,
    path: &str,
    height: Option<u64>,
    prove: bool,
    output: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let answer = rpc.abci_query(paths::FILE, path.as_bytes().to_vec(), height, prove)?;
    if answer.code.value() != paths::CODE_OK {
        bail!(
            "query file {path}: code {}: {}",
            answer.code.value(),
            answer.log
        );
    }
    let at = answer.height.value();
    let verified = if prove {
        let proof = answer
            .proof
            .as_ref()
            .and_then(|p| {
                p.ops
                    .iter()
                    .find(|op| op.field_type == paths::FILE_PROOF_TYPE)
            })
            .map(|op| op.data.clone());
        let Some(proof) = proof else {
            bail!(
                "the node returned no {} proof for {path}",
                paths::FILE_PROOF_TYPE
            )
        };
        Some(lightproof::verify_file(
            rpc,
            path,
            &answer.value,
            &proof,
            at,
        )?)
    } else {
        None
    };
    match output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::json!({
                "path": path,
                "height": at,
                "contents_hex": hex::encode(&answer.value),
                "contents": String::from_utf8_lossy(&answer.value),
                "verified": verified.as_ref().map(|v| serde_json::json!({
                    "app_hash": v.app_hash_hex, "header_height": v.header_height, "signers_power": v.signed_power, "total_power": v.total_power,
                })),
            })
        ),
        OutputFormat::Text => {
            std::io::stdout().write_all(&answer.value)?;
            if let Some(v) = verified {
                eprintln!(
                    "verified: {path} at height {at} against app hash {} in header {} signed by {}/{} voting power",
                    v.app_hash_hex, v.header_height, v.signed_power, v.total_power
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn proc(rpc: &Rpc, pid: Option<u64>, output: OutputFormat) -> anyhow::Result<ExitCode> {
    let procs: Vec<ProcessInfo> = match pid {
        Some(pid) => vec![serde_json::from_slice(&query_ok(
            rpc,
            paths::PROC,
            pid.to_string().into_bytes(),
        )?)?],
        None => all_processes(rpc)?,
    };
    match output {
        OutputFormat::Json => match pid {
            Some(_) => println!("{}", serde_json::to_string(&procs[0])?),
            None => println!("{}", serde_json::to_string(&procs)?),
        },
        OutputFormat::Text => {
            println!(
                "{:>5} {:<10} {:>6} {:>14} {:<40} {:<7} PROGRAM",
                "PID", "STATE", "EXIT", "FUEL", "OWNER", "STDIN"
            );
            for p in &procs {
                let exit = p
                    .exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:>5} {:<10} {:>6} {:>14} {:<40} {:<7} {} {}",
                    p.pid,
                    p.state,
                    exit,
                    p.fuel_used,
                    p.owner,
                    if p.public { "public" } else { "owner" },
                    p.program,
                    p.args.join(" ")
                );
            }
            if let (Some(_), Some(p)) = (pid, procs.first()) {
                println!(
                    "recent output:\n{}",
                    String::from_utf8_lossy(&p.recent_output)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One answer's value; a non-zero code is an error naming the query.
fn query_ok(rpc: &Rpc, path: &str, data: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let answer = rpc.abci_query(path, data, None, false)?;
    if answer.code.value() != paths::CODE_OK {
        bail!("query {path}: code {}: {}", answer.code.value(), answer.log);
    }
    Ok(answer.value)
}

/// Every process, page by page ([`paths::PROCS_PAGE`] per answer; a shorter
/// page is the last).
fn all_processes(rpc: &Rpc) -> anyhow::Result<Vec<ProcessInfo>> {
    let mut all: Vec<ProcessInfo> = Vec::new();
    loop {
        let from = all.last().map_or(0, |p| p.pid + 1);
        let page: Vec<ProcessInfo> =
            serde_json::from_slice(&query_ok(rpc, paths::PROCS, from.to_string().into_bytes())?)?;
        let last = page.len() < paths::PROCS_PAGE;
        all.extend(page);
        if last {
            return Ok(all);
        }
    }
}
