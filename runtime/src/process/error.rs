//! Errors of the process layer.
//!
//! Split: [`ProcessError`] is returned to the caller for requests that make no
//! sense (unknown pid, malformed snapshot, a module that cannot be a process).
//! What a guest does wrong while handling an input (trap, fuel) is not an error
//! here but an [`super::InputStatus`] in the input's outcome.

use super::codec::DecodeError;
use super::globals::GlobalsError;

/// A request to the process layer was refused or the host failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("no process with pid {0}")]
    NoSuchProcess(u64),
    #[error("process {pid} has exited (code {code}); it takes no more input")]
    Exited { pid: u64, code: i32 },
    #[error("process {pid} reads its stdin from process {from}; input cannot be delivered to it directly")]
    StdinIsPipe { pid: u64, from: u64 },
    #[error("process {producer} already pipes its stdout to process {consumer}")]
    PipeTaken { producer: u64, consumer: u64 },
    #[error("process table is full ({max} processes)")]
    TooManyProcesses { max: usize },
    #[error("process {pid} has {pending} unread stdin bytes; {bytes} more would pass the bound of {max}")]
    StdinFull {
        pid: u64,
        pending: usize,
        bytes: usize,
        max: usize,
    },
    #[error("spawn arguments and environment are {bytes} bytes (at most {max})")]
    SpawnArgsTooLarge { bytes: usize, max: usize },
    #[error("module lacks the export {0:?} (was it passed through Asyncify?)")]
    MissingExport(&'static str),
    #[error("runtime failure: {0}")]
    Runtime(String),
    #[error("module failed to compile: {0}")]
    Compile(String),
    #[error("module imports could not be linked: {0}")]
    Link(String),
    #[error("instantiating the process failed: {0}")]
    Instantiate(String),
    #[error("process {pid} memory could not be restored: {reason}")]
    Memory { pid: u64, reason: String },
    #[error("stored record of process {pid} could not be read: {reason}")]
    Record { pid: u64, reason: String },
    #[error("snapshot refers to program {0} which the resolver does not know")]
    UnknownModule(String),
    #[error(transparent)]
    Globals(#[from] GlobalsError),
    #[error("malformed process snapshot: {0}")]
    Decode(#[from] DecodeError),
    /// Undoing a rejected input failed: the table may be half rolled back, so
    /// this is a host failure, never an answer to the input.
    #[error("undoing a rejected input failed: {0}")]
    Undo(Box<ProcessError>),
}
