//! The `tendermint_abci::Application` handle CometBFT's connections talk to.
//!
//! It is cloned per connection and holds no state itself: consensus, info and
//! query go to the driver thread; CheckTx goes to the [`Mempool`]; snapshots are
//! answered by [`crate::snapshot`].

use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;

use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{
    RequestApplySnapshotChunk, RequestCheckTx, RequestFinalizeBlock, RequestInfo, RequestInitChain,
    RequestLoadSnapshotChunk, RequestOfferSnapshot, RequestQuery, ResponseApplySnapshotChunk,
    ResponseCheckTx, ResponseCommit, ResponseFinalizeBlock, ResponseInfo, ResponseInitChain,
    ResponseListSnapshots, ResponseLoadSnapshotChunk, ResponseOfferSnapshot, ResponseQuery,
};

use crate::driver::{Command, Reply};
use crate::error::AppError;
use crate::mempool::Mempool;
use crate::snapshot;

/// Called when the state machine cannot go on; the binary exits the process.
pub type FatalHook = Arc<dyn Fn(&AppError) + Send + Sync>;

/// The ABCI application handle.
#[derive(Clone)]
pub struct App {
    commands: Sender<Command>,
    mempool: Mempool,
    fatal: FatalHook,
}

impl App {
    pub fn new(commands: Sender<Command>, mempool: Mempool, fatal: FatalHook) -> Self {
        App {
            commands,
            mempool,
            fatal,
        }
    }

    /// Sends a command to the driver and waits for its answer. A failure is fatal:
    /// the hook runs (and normally exits); a default response is returned only so
    /// the signature holds if the hook returns.
    fn call<T: Default>(&self, make: impl FnOnce(Reply<T>) -> Command) -> T {
        let (reply, answer) = channel();
        let result = match self.commands.send(make(reply)) {
            Ok(()) => answer.recv().unwrap_or(Err(AppError::DriverGone)),
            Err(_) => Err(AppError::DriverGone),
        };
        match result {
            Ok(response) => response,
            Err(err) => {
                tracing::error!(error = %err, "fatal: the state machine stopped");
                (self.fatal)(&err);
                T::default()
            }
        }
    }
}

impl Application for App {
    fn info(&self, req: RequestInfo) -> ResponseInfo {
        self.call(|r| Command::Info(req, r))
    }

    fn init_chain(&self, req: RequestInitChain) -> ResponseInitChain {
        self.call(|r| Command::InitChain(req, r))
    }

    fn query(&self, req: RequestQuery) -> ResponseQuery {
        self.call(|r| Command::Query(req, r))
    }

    fn check_tx(&self, req: RequestCheckTx) -> ResponseCheckTx {
        self.mempool.check_tx(&req)
    }

    fn commit(&self) -> ResponseCommit {
        self.call(Command::Commit)
    }

    fn finalize_block(&self, req: RequestFinalizeBlock) -> ResponseFinalizeBlock {
        self.call(|r| Command::FinalizeBlock(req, r))
    }

    fn list_snapshots(&self) -> ResponseListSnapshots {
        snapshot::list()
    }

    fn offer_snapshot(&self, _req: RequestOfferSnapshot) -> ResponseOfferSnapshot {
        snapshot::offer()
    }

    fn load_snapshot_chunk(&self, _req: RequestLoadSnapshotChunk) -> ResponseLoadSnapshotChunk {
        snapshot::load_chunk()
    }

    fn apply_snapshot_chunk(&self, _req: RequestApplySnapshotChunk) -> ResponseApplySnapshotChunk {
        snapshot::apply_chunk()
    }
}
