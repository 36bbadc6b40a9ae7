//! The `tendermint_abci::Application` handle CometBFT's connections talk to.
//!
//! It is cloned per connection and holds no state itself: consensus and info go
//! to the driver thread; CheckTx goes to the [`Mempool`]; queries are answered on
//! the caller's thread from committed state ([`crate::info::query`]); snapshots
//! are answered by [`crate::snapshot`].

use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;

use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{
    response_process_proposal::ProposalStatus, RequestPrepareProposal, RequestProcessProposal,
    ResponsePrepareProposal, ResponseProcessProposal,
};
use tendermint_proto::v0_38::abci::{
    RequestApplySnapshotChunk, RequestCheckTx, RequestFinalizeBlock, RequestInfo, RequestInitChain,
    RequestLoadSnapshotChunk, RequestOfferSnapshot, RequestQuery, ResponseApplySnapshotChunk,
    ResponseCheckTx, ResponseCommit, ResponseFinalizeBlock, ResponseInfo, ResponseInitChain,
    ResponseListSnapshots, ResponseLoadSnapshotChunk, ResponseOfferSnapshot, ResponseQuery,
};

use crate::driver::{Command, Reply};
use crate::error::AppError;
use crate::executor::StateReader;
use crate::genesis::Limits;
use crate::limits::{MAX_BLOCK_TXS, MAX_BLOCK_TX_BYTES};

/// Bytes of protobuf framing counted per transaction (tag and length prefix of
/// a `bytes` field, for transactions under 2 MiB).
const TX_FRAMING: usize = 4;

/// Whether a block's transactions stay within [`MAX_BLOCK_TXS`],
/// [`MAX_BLOCK_TX_BYTES`] and the genesis `max_block_fuel`: then
/// PrepareProposal's answer stays under CometBFT's 4 MiB gRPC limit,
/// FinalizeBlock's results fit their budget, and its execution time is bounded.
pub fn block_fits(txs: &[prost::bytes::Bytes], limits: &Limits) -> bool {
    txs.len() <= MAX_BLOCK_TXS
        && txs.iter().map(|tx| tx.len() + TX_FRAMING).sum::<usize>() <= MAX_BLOCK_TX_BYTES
        && crate::tx::block_fuel(txs.iter().map(|tx| &tx[..]), limits) <= limits.max_block_fuel
}
use crate::mempool::Mempool;
use crate::snapshot;

/// Called when the state machine cannot go on; the binary exits the process.
pub type FatalHook = Arc<dyn Fn(&AppError) + Send + Sync>;

/// The ABCI application handle.
#[derive(Clone)]
pub struct App {
    commands: Sender<Command>,
    mempool: Mempool,
    reader: Arc<dyn StateReader>,
    fatal: FatalHook,
}

impl App {
    pub fn new(
        commands: Sender<Command>,
        mempool: Mempool,
        reader: Arc<dyn StateReader>,
        fatal: FatalHook,
    ) -> Self {
        App {
            commands,
            mempool,
            reader,
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

    /// Answered here, from committed state: never queued behind a block.
    fn query(&self, req: RequestQuery) -> ResponseQuery {
        crate::info::query(&*self.reader, req)
    }

    fn check_tx(&self, req: RequestCheckTx) -> ResponseCheckTx {
        self.mempool.check_tx(&req)
    }

    /// CometBFT's order, cut to `max_tx_bytes`, [`MAX_BLOCK_TXS`],
    /// [`MAX_BLOCK_TX_BYTES`] and the block fuel limit (see [`block_fits`]).
    fn prepare_proposal(&self, req: RequestPrepareProposal) -> ResponsePrepareProposal {
        let max_bytes = usize::try_from(req.max_tx_bytes).unwrap_or(0);
        let limits = self.mempool.view().limits.clone();
        let (mut raw, mut framed, mut fuel) = (0usize, 0usize, 0u64);
        let txs = req
            .txs
            .into_iter()
            .take(MAX_BLOCK_TXS)
            .take_while(|tx| {
                raw = raw.saturating_add(tx.len());
                framed = framed.saturating_add(tx.len() + TX_FRAMING);
                fuel = fuel.saturating_add(crate::tx::block_fuel([&tx[..]], &limits));
                raw <= max_bytes && framed <= MAX_BLOCK_TX_BYTES && fuel <= limits.max_block_fuel
            })
            .collect();
        ResponsePrepareProposal { txs }
    }

    /// Rejects a block our PrepareProposal would not have made (see
    /// [`block_fits`]); accepts anything else.
    fn process_proposal(&self, req: RequestProcessProposal) -> ResponseProcessProposal {
        let status = if block_fits(&req.txs, &self.mempool.view().limits) {
            ProposalStatus::Accept
        } else {
            tracing::warn!(
                height = req.height,
                txs = req.txs.len(),
                "rejecting a proposal over {MAX_BLOCK_TXS} transactions or {MAX_BLOCK_TX_BYTES} bytes"
            );
            ProposalStatus::Reject
        };
        ResponseProcessProposal {
            status: status as i32,
        }
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
