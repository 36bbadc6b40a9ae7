//! Info (the handshake) and Query (files, processes).

use prost::bytes::Bytes;
use tendermint_proto::crypto::{ProofOp, ProofOps};
use tendermint_proto::v0_38::abci::{RequestInfo, RequestQuery, ResponseInfo, ResponseQuery};

use crate::account::{read_account, Address};
use crate::consensus::Core;
use crate::error::AppError;
use crate::executor::{ExecError, Executor, StateReader};

/// The app's protocol version, reported in Info and checked by CometBFT. Bump
/// it whenever the same blocks would give different results: 2 = the store
/// barrier's fuel cost, the block results budget, the proposal limits and the
/// paged process table; 3 = install-time preparation and install records, the
/// per-transaction `fuel` and the block fuel limit, per-process timer wake-ups,
/// metered host calls; 4 = signed transactions, accounts, owners.
pub const APP_VERSION: u64 = 4;

/// Query paths and codes, shared with the CLI.
pub mod paths {
    /// `data` = the guest path; `height` 0 = latest; `prove` adds a merkle-fs proof.
    pub const FILE: &str = "/file";
    /// Every process, JSON array of `ProcessInfo`.
    pub const PROCS: &str = "/procs";
    /// `data` = the pid in decimal; JSON `ProcessInfo`.
    pub const PROC: &str = "/proc";
    /// `data` = an account address (hex); JSON `AccountInfo`. An address
    /// with no record answers its default: sequence 0, no fuel.
    pub const ACCOUNT: &str = "/account";
    /// `ProofOp.type` of a file proof.
    pub const FILE_PROOF_TYPE: &str = "replicode.merkle-fs.file";

    pub const CODE_OK: u32 = 0;
    pub const CODE_NOT_FOUND: u32 = 1;
    pub const CODE_BAD_REQUEST: u32 = 2;
    /// The height was pruned on this node (`replicode start --keep-heights`).
    pub const CODE_HEIGHT_PRUNED: u32 = 3;
    /// This node could not read the answer (e.g. the height was pruned while
    /// the query ran); another node, or the same query later, may answer.
    pub const CODE_UNAVAILABLE: u32 = 4;
    /// Most processes one `/procs` answer lists. `data` may name the pid to
    /// start from (decimal); a page shorter than this is the last.
    pub const PROCS_PAGE: usize = 64;
}

/// An account as `/account` answers it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccountInfo {
    pub address: Address,
    /// The sequence its next transaction must carry.
    pub sequence: u64,
    /// Fuel it may still spend.
    pub fuel: u64,
}

impl<E: Executor> Core<E> {
    /// Last committed height and app hash: CometBFT replays blocks after it.
    pub fn info(&self, _req: RequestInfo) -> Result<ResponseInfo, AppError> {
        let committed = self.exec.committed()?;
        Ok(ResponseInfo {
            data: "replicode".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            app_version: APP_VERSION,
            last_block_height: i64::try_from(committed.height).unwrap_or(i64::MAX),
            last_block_app_hash: Bytes::from(committed.app_hash),
        })
    }

    /// Answers a query from committed state (the same answer [`query`] gives
    /// on any other thread).
    pub fn query(&self, req: RequestQuery) -> ResponseQuery {
        query(&*self.exec.reader(), req)
    }
}

/// Answers a query from committed state, on the caller's thread. Every answer
/// is bounded (files by CometBFT's transport, processes by [`paths::PROCS_PAGE`]).
/// A read failure is an answer ([`paths::CODE_UNAVAILABLE`]), never fatal: a
/// query changes nothing, and a real storage failure stops the node when the
/// consensus thread meets it.
pub fn query(reader: &dyn StateReader, req: RequestQuery) -> ResponseQuery {
    let path = req.path.clone();
    match answer(reader, req) {
        Ok(answer) => answer,
        Err(e) => {
            tracing::error!(query = %path, error = %e, "query failed");
            ResponseQuery {
                code: paths::CODE_UNAVAILABLE,
                log: format!("this node could not answer: {e}"),
                ..Default::default()
            }
        }
    }
}

fn answer(reader: &dyn StateReader, req: RequestQuery) -> Result<ResponseQuery, ExecError> {
    match req.path.as_str() {
        paths::FILE => query_file(reader, req),
        paths::PROCS => {
            let from = if req.data.is_empty() {
                0
            } else {
                match std::str::from_utf8(&req.data)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                {
                    Some(pid) => pid,
                    None => {
                        return Ok(bad_request(format!(
                            "{} wants nothing or a decimal pid to start from in data",
                            paths::PROCS
                        )))
                    }
                }
            };
            let page: Vec<_> = reader
                .processes()?
                .into_iter()
                .filter(|p| p.pid >= from)
                .take(paths::PROCS_PAGE)
                .collect();
            Ok(json_answer(&page, reader.committed()?.height))
        }
        paths::PROC => {
            let Some(pid) = std::str::from_utf8(&req.data)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
            else {
                return Ok(bad_request(format!(
                    "{} wants a decimal pid in data",
                    paths::PROC
                )));
            };
            let height = reader.committed()?.height;
            match reader.processes()?.into_iter().find(|p| p.pid == pid) {
                Some(info) => Ok(json_answer(&info, height)),
                None => Ok(ResponseQuery {
                    code: paths::CODE_NOT_FOUND,
                    log: format!("no process with pid {pid} at height {height}"),
                    height: i64::try_from(height).unwrap_or(i64::MAX),
                    ..Default::default()
                }),
            }
        }
        paths::ACCOUNT => {
            let Some(address) = std::str::from_utf8(&req.data)
                .ok()
                .and_then(|s| s.trim().parse::<Address>().ok())
            else {
                return Ok(bad_request(format!(
                    "{} wants an account address (40 hex digits) in data",
                    paths::ACCOUNT
                )));
            };
            let height = reader.committed()?.height;
            let account = read_account(reader.app_record(&address.record_key())?, &address)?;
            Ok(json_answer(
                &AccountInfo {
                    address,
                    sequence: account.sequence,
                    fuel: account.fuel,
                },
                height,
            ))
        }
        other => Ok(bad_request(format!(
            "unknown query path {other:?}; known: {}, {}, {}, {}",
            paths::FILE,
            paths::PROCS,
            paths::PROC,
            paths::ACCOUNT
        ))),
    }
}

fn query_file(reader: &dyn StateReader, req: RequestQuery) -> Result<ResponseQuery, ExecError> {
    let Ok(path) = std::str::from_utf8(&req.data) else {
        return Ok(bad_request("file query data is not a UTF-8 path".into()));
    };
    if let Err(refusal) = crate::tx::check_path("query path", path) {
        return Ok(bad_request(refusal.reason));
    }
    let height = u64::try_from(req.height).ok().filter(|h| *h > 0);
    let committed = reader.committed()?;
    if let Some(h) = height {
        if h > committed.height {
            return Ok(bad_request(format!(
                "height {h} is above the last committed height {}",
                committed.height
            )));
        }
        // A pruned height is the asker's problem, never the node's: answered
        // with its own code, naming the heights this node keeps.
        let oldest = reader.oldest_readable_height();
        if h < oldest {
            return Ok(ResponseQuery {
                code: paths::CODE_HEIGHT_PRUNED,
                log: format!(
                    "height {h} was pruned on this node: it keeps heights {oldest}..={} \
                         (replicode start --keep-heights)",
                    committed.height
                ),
                height: req.height,
                ..Default::default()
            });
        }
    }
    let read = reader.read_file(path, height, req.prove)?;
    let proof_ops = read.proof.map(|data| ProofOps {
        ops: vec![ProofOp {
            r#type: paths::FILE_PROOF_TYPE.into(),
            key: path.as_bytes().to_vec(),
            data,
        }],
    });
    let (code, log) = match &read.contents {
        Some(_) => (paths::CODE_OK, String::new()),
        None => (
            paths::CODE_NOT_FOUND,
            format!("{path} does not exist at height {}", read.height),
        ),
    };
    Ok(ResponseQuery {
        code,
        log,
        key: Bytes::from(path.as_bytes().to_vec()),
        value: Bytes::from(read.contents.unwrap_or_default()),
        proof_ops,
        height: i64::try_from(read.height).unwrap_or(i64::MAX),
        ..Default::default()
    })
}

fn json_answer<T: serde::Serialize>(value: &T, height: u64) -> ResponseQuery {
    match serde_json::to_vec(value) {
        Ok(json) => ResponseQuery {
            code: paths::CODE_OK,
            value: Bytes::from(json),
            height: i64::try_from(height).unwrap_or(i64::MAX),
            ..Default::default()
        },
        Err(e) => bad_request(format!("cannot encode answer: {e}")),
    }
}

fn bad_request(log: String) -> ResponseQuery {
    ResponseQuery {
        code: paths::CODE_BAD_REQUEST,
        log,
        ..Default::default()
    }
}
