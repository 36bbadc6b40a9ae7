//! The boundary between the ABCI app and the deterministic machine (runtime +
//! process table + merkle-fs).
//!
//! The app owns ordering, encoding, codes and the ABCI protocol; an [`Executor`]
//! owns the guests' world. Keeping the boundary a small trait lets the consensus
//! logic be tested without wasm, and lets the machine evolve without touching ABCI.
//!
//! Error split: a guest's failure (trap, fuel, unknown pid, quota) is an
//! [`Outcome`] — deterministic, reported in the tx result. An [`ExecError`] is a
//! host failure (storage I/O, corruption): the node must stop rather than commit
//! a state that other validators may not have.

use std::sync::Arc;

use crate::account::Address;
use crate::codes::Code;
use crate::genesis::{GenesisState, Limits};
use crate::result::{Exit, Write};

/// The 32-byte state root; the ABCI app hash.
pub type AppHash = Vec<u8>;

/// Consensus data a block's execution may observe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockContext {
    pub height: u64,
    /// Block time in nanoseconds since the Unix epoch: the guests' clock.
    pub time_unix_nanos: u64,
    /// Seed for guest randomness, derived from the block hash.
    pub seed: [u8; 32],
}

/// One syscall input, already decoded and checked for syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input<'a> {
    Install {
        path: &'a str,
        wasm: &'a [u8],
    },
    Spawn {
        path: &'a str,
        args: &'a [String],
        env: &'a [(String, String)],
        /// Any account may feed its stdin (otherwise only the caller).
        public: bool,
    },
    Stdin {
        pid: u64,
        data: &'a [u8],
        eof: bool,
    },
    Kill {
        pid: u64,
    },
    Uninstall {
        path: &'a str,
    },
}

/// How an input ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    OutOfFuel,
    Trap(String),
    /// Refused by the machine with this code (unknown pid, quota, ...), no effect.
    Refused(Code, String),
}

/// Everything one input produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    /// The pid the input targeted; for a spawn, the new process.
    pub pid: u64,
    pub writes: Vec<Write>,
    pub exits: Vec<Exit>,
    pub fuel_used: u64,
}

/// The last durable state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    /// 0 before the first commit.
    pub height: u64,
    pub app_hash: AppHash,
}

/// A file read from committed state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRead {
    pub height: u64,
    /// `None` when the file does not exist at that height.
    pub contents: Option<Vec<u8>>,
    /// A merkle-fs proof of `contents` (or of absence) against the root of `height`.
    pub proof: Option<Vec<u8>>,
}

/// One process as `query proc` reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessInfo {
    pub pid: u64,
    pub program: String,
    pub args: Vec<String>,
    /// `running`, `blocked`, `exited` or `killed`.
    pub state: String,
    pub exit_code: Option<i32>,
    pub fuel_used: u64,
    /// The tail of what the process wrote to stdout (bounded by the executor).
    pub recent_output: Vec<u8>,
    /// The account that spawned it (`genesis` for genesis processes).
    #[serde(default)]
    pub owner: String,
    /// Whether any account may write to its stdin.
    #[serde(default)]
    pub public: bool,
}

/// A host failure; the node stops on it.
#[derive(Debug, thiserror::Error)]
#[error("executor failed during {operation}: {reason}")]
pub struct ExecError {
    pub operation: &'static str,
    pub reason: String,
}

impl ExecError {
    pub fn new(operation: &'static str, reason: impl std::fmt::Display) -> Self {
        ExecError {
            operation,
            reason: reason.to_string(),
        }
    }
}

/// The deterministic machine, driven from the consensus thread only.
pub trait Executor: Send + 'static {
    /// The last committed height and root (height 0 on a fresh store).
    fn committed(&self) -> Result<Committed, ExecError>;

    /// Applies the genesis state to an empty working set, with the app's own
    /// records (`records`: chain id, accounts) beside it, and returns its root.
    /// Nothing is durable until [`Executor::commit`].
    fn init_chain(
        &mut self,
        genesis: &GenesisState,
        ctx: &BlockContext,
        records: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<AppHash, ExecError>;

    /// The limits fixed at genesis (read from committed or working state).
    fn limits(&self) -> Result<Limits, ExecError>;

    /// Starts a block: discards any uncommitted work and sets clock and seed.
    fn begin_block(&mut self, ctx: &BlockContext) -> Result<(), ExecError>;

    /// Executes one input of `caller` with at most `fuel` fuel. Atomic: a
    /// refused input leaves no trace in the working set. The executor enforces
    /// ownership (who may replace a program, feed or kill a process).
    fn execute(
        &mut self,
        input: &Input<'_>,
        caller: &Address,
        fuel: u64,
    ) -> Result<Outcome, ExecError>;

    /// An app record (accounts, chain id) in the working state of the block
    /// being executed, or of the last commit outside a block.
    fn app_record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ExecError>;

    /// Writes an app record into the block being executed; part of the root,
    /// durable with the block.
    fn put_app_record(&mut self, key: &[u8], value: &[u8]) -> Result<(), ExecError>;

    /// Ends the block: the root of the working set, the block's app hash. Writes
    /// nothing, so a validator killed before [`Executor::commit`] reopens at the
    /// previous height and re-executes the block to the same root.
    fn end_block(&mut self) -> Result<AppHash, ExecError>;

    /// Persists the block sealed by the last end_block (with the genesis state,
    /// for the first block) atomically at its height and returns it.
    fn commit(&mut self) -> Result<Committed, ExecError>;

    /// Pids of processes alive in committed state (CheckTx reads this).
    fn live_pids(&self) -> Result<Vec<u64>, ExecError>;

    /// The reader of committed state that queries use, from any thread. It
    /// always shows the last commit; the same reader serves for the executor's
    /// whole life.
    fn reader(&self) -> Arc<dyn StateReader>;
}

/// Reads of committed state for queries, answered on the caller's thread.
///
/// Why not on the consensus thread: a query waiting behind a long block (or a
/// flood of queries delaying a block) couples RPC load to consensus. Readers
/// see only committed heights, which no block execution changes.
pub trait StateReader: Send + Sync + 'static {
    /// The last committed height and root (height 0 before the first commit).
    fn committed(&self) -> Result<Committed, ExecError>;

    /// A file at a committed height (`None` = latest), with a proof if asked.
    fn read_file(
        &self,
        path: &str,
        height: Option<u64>,
        prove: bool,
    ) -> Result<FileRead, ExecError>;

    /// Every process as of the last commit, by pid.
    fn processes(&self) -> Result<Vec<ProcessInfo>, ExecError>;

    /// An app record (accounts, chain id) as of the last commit.
    fn app_record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ExecError>;

    /// The oldest height [`StateReader::read_file`] can read; older ones were pruned.
    fn oldest_readable_height(&self) -> u64 {
        1
    }
}

/// Pure module validation of wasm bytes, callable from the mempool thread.
pub trait ProgramValidator: Send + Sync + 'static {
    /// `Err(reason)` when the bytes are not a program the runtime would run.
    fn validate(&self, wasm: &[u8]) -> Result<(), String>;
}

/// A boxed executor is an executor, so the binary can choose one at run time.
impl Executor for Box<dyn Executor> {
    fn committed(&self) -> Result<Committed, ExecError> {
        (**self).committed()
    }
    fn init_chain(
        &mut self,
        genesis: &GenesisState,
        ctx: &BlockContext,
        records: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<AppHash, ExecError> {
        (**self).init_chain(genesis, ctx, records)
    }
    fn limits(&self) -> Result<Limits, ExecError> {
        (**self).limits()
    }
    fn begin_block(&mut self, ctx: &BlockContext) -> Result<(), ExecError> {
        (**self).begin_block(ctx)
    }
    fn execute(
        &mut self,
        input: &Input<'_>,
        caller: &Address,
        fuel: u64,
    ) -> Result<Outcome, ExecError> {
        (**self).execute(input, caller, fuel)
    }
    fn app_record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ExecError> {
        (**self).app_record(key)
    }
    fn put_app_record(&mut self, key: &[u8], value: &[u8]) -> Result<(), ExecError> {
        (**self).put_app_record(key, value)
    }
    fn end_block(&mut self) -> Result<AppHash, ExecError> {
        (**self).end_block()
    }
    fn commit(&mut self) -> Result<Committed, ExecError> {
        (**self).commit()
    }
    fn live_pids(&self) -> Result<Vec<u64>, ExecError> {
        (**self).live_pids()
    }
    fn reader(&self) -> Arc<dyn StateReader> {
        (**self).reader()
    }
}
