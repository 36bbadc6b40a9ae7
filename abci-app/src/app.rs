//! The `tendermint_abci::Application` handle CometBFT's connections talk to.
//!
//! It is cloned per connection and holds no state itself: consensus, info and
//! query go to the driver thread; CheckTx goes to the [`Mempool`]; snapshots are
//! answered by [`crate::snapshot`].

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
use crate::limits::{MAX_BLOCK_TXS, MAX_BLOCK_TX_BYTES};

/// Bytes of protobuf framing counted per transaction (tag and length prefix of
/// a `bytes` field, for transactions under 2 MiB).
const TX_FRAMING: usize = 4;

/// Whether a block's transactions stay within [`MAX_BLOCK_TXS`] and
/// [`MAX_BLOCK_TX_BYTES`]: then PrepareProposal's answer stays under CometBFT's
/// 4 MiB gRPC limit and FinalizeBlock's results fit their budget.
pub fn block_fits(txs: &[prost::bytes::Bytes]) -> bool {
    txs.len() <= MAX_BLOCK_TXS
        && txs.iter().map(|tx| tx.len() + TX_FRAMING).sum::<usize>() <= MAX_BLOCK_TX_BYTES
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

    /// CometBFT's order, cut to `max_tx_bytes`, [`MAX_BLOCK_TXS`] and
    /// [`MAX_BLOCK_TX_BYTES`] (see [`block_fits`]).
    fn prepare_proposal(&self, req: RequestPrepareProposal) -> ResponsePrepareProposal {
        let max_bytes = usize::try_from(req.max_tx_bytes).unwrap_or(0);
        let (mut raw, mut framed) = (0usize, 0usize);
        let txs = req
            .txs
            .into_iter()
            .take(MAX_BLOCK_TXS)
            .take_while(|tx| {
                raw = raw.saturating_add(tx.len());
                framed = framed.saturating_add(tx.len() + TX_FRAMING);
                raw <= max_bytes && framed <= MAX_BLOCK_TX_BYTES
            })
            .collect();
        ResponsePrepareProposal { txs }
    }

    /// Rejects a block our PrepareProposal would not have made (see
    /// [`block_fits`]); accepts anything else.
    fn process_proposal(&self, req: RequestProcessProposal) -> ResponseProcessProposal {
        let status = if block_fits(&req.txs) {
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
