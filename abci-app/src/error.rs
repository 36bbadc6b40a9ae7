//! Errors that stop the node.

use crate::executor::ExecError;
use crate::genesis::GenesisError;

/// A failure the consensus thread cannot answer with a tx result code. The node
/// must stop: continuing would risk committing a state other validators lack.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("InitChain refused the genesis app state: {0}")]
    Genesis(#[from] GenesisError),
    #[error("CometBFT sent {request} out of order: {reason}")]
    Protocol {
        request: &'static str,
        reason: String,
    },
    #[error("the consensus thread has stopped after an earlier fatal error")]
    DriverGone,
}
