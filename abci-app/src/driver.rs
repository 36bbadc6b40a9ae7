//! The consensus thread: all state lives here, requests arrive over a channel and
//! are answered one at a time, in arrival order (as in tendermint-rs's examples).
//! CometBFT's consensus connection is a single ordered stream, so this preserves
//! its order; Info is serialized behind it. Queries are not sent here: they read
//! committed state on their own connection's thread (`crate::info::query`).

use std::sync::mpsc::{channel, Receiver, Sender};

use tendermint_proto::v0_38::abci::{
    RequestFinalizeBlock, RequestInfo, RequestInitChain, ResponseCommit, ResponseFinalizeBlock,
    ResponseInfo, ResponseInitChain,
};

use crate::consensus::Core;
use crate::error::AppError;
use crate::executor::Executor;

/// Where the driver sends one answer.
pub type Reply<T> = Sender<Result<T, AppError>>;

/// A request for the consensus thread.
pub enum Command {
    Info(RequestInfo, Reply<ResponseInfo>),
    InitChain(RequestInitChain, Reply<ResponseInitChain>),
    FinalizeBlock(RequestFinalizeBlock, Reply<ResponseFinalizeBlock>),
    Commit(Reply<ResponseCommit>),
}

/// Owns the [`Core`]; run it on its own thread with [`Driver::run`].
pub struct Driver<E: Executor> {
    core: Core<E>,
    commands: Receiver<Command>,
}

impl<E: Executor> Driver<E> {
    /// A driver and the sender its handles use.
    pub fn new(core: Core<E>) -> (Self, Sender<Command>) {
        let (tx, rx) = channel();
        (Driver { core, commands: rx }, tx)
    }

    /// Serves commands until every sender is gone or a fatal error occurs; the
    /// error is sent to the requester and returned.
    pub fn run(mut self) -> Result<(), AppError> {
        while let Ok(command) = self.commands.recv() {
            let failed = match command {
                Command::Info(req, reply) => answer(&reply, self.core.info(req)),
                Command::InitChain(req, reply) => answer(&reply, self.core.init_chain(req)),
                Command::FinalizeBlock(req, reply) => answer(&reply, self.core.finalize_block(req)),
                Command::Commit(reply) => answer(&reply, self.core.commit()),
            };
            if let Some(message) = failed {
                return Err(AppError::Protocol {
                    request: "driver",
                    reason: message,
                });
            }
        }
        Ok(())
    }

    /// Direct access for in-process drivers (benchmarks, tests).
    pub fn core_mut(&mut self) -> &mut Core<E> {
        &mut self.core
    }
}

/// Sends the answer; returns the error text if it was a failure (the driver stops).
fn answer<T>(reply: &Reply<T>, result: Result<T, AppError>) -> Option<String> {
    let message = result.as_ref().err().map(|e| e.to_string());
    // The requester may have gone away (connection closed); nothing to do then.
    let _ = reply.send(result);
    message
}
