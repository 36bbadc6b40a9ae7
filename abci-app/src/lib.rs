//! replicode-abci: the ABCI application (CometBFT v0.38) that turns ordered
//! transactions into syscall inputs for the deterministic machine.
//!
//! One module per concern: the transaction format ([`tx`], [`result`], [`codes`],
//! [`limits`]), the genesis state ([`genesis`]), the machine boundary
//! ([`executor`]), and the ABCI services — [`consensus`] (InitChain,
//! FinalizeBlock, Commit), [`mempool`] (CheckTx), [`info`] (Info, Query),
//! [`snapshot`] — behind one ordered [`driver`] thread and an [`app`] handle.

pub mod account;
pub mod app;
pub mod codes;
pub mod consensus;
pub mod context;
pub mod driver;
pub mod error;
pub mod executor;
pub mod genesis;
pub mod grpc;
pub mod info;
pub mod limits;
pub mod machine;
pub mod mempool;
pub mod result;
pub mod server;
pub mod snapshot;
pub mod tx;

#[cfg(test)]
mod memory;
#[cfg(test)]
mod tests;

pub use codes::Code;
pub use executor::{Executor, ProgramValidator};
