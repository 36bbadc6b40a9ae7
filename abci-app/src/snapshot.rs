//! State sync snapshots.
//!
//! Not offered yet: a new validator catches up by replaying blocks (CometBFT's
//! block sync), which the deterministic executor makes exact. The answers below say
//! so explicitly, so a node configured for state sync falls back instead of hanging.

use tendermint_proto::v0_38::abci::{
    response_apply_snapshot_chunk, response_offer_snapshot, ResponseApplySnapshotChunk,
    ResponseListSnapshots, ResponseLoadSnapshotChunk, ResponseOfferSnapshot,
};

/// No snapshots to list.
pub fn list() -> ResponseListSnapshots {
    ResponseListSnapshots {
        snapshots: Vec::new(),
    }
}

/// Every offered snapshot is refused: this app cannot restore from one.
pub fn offer() -> ResponseOfferSnapshot {
    ResponseOfferSnapshot {
        result: response_offer_snapshot::Result::Reject as i32,
    }
}

/// There are no chunks to load.
pub fn load_chunk() -> ResponseLoadSnapshotChunk {
    ResponseLoadSnapshotChunk {
        chunk: Default::default(),
    }
}

/// Aborts state sync if CometBFT ever gets this far.
pub fn apply_chunk() -> ResponseApplySnapshotChunk {
    ResponseApplySnapshotChunk {
        result: response_apply_snapshot_chunk::Result::Abort as i32,
        ..Default::default()
    }
}
