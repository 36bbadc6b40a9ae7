//! Long-running guest processes: suspend on input, serializable state, a
//! deterministic scheduler.
//!
//! A server reads requests forever; its requests arrive later, one transaction
//! at a time. This module lets such a process wait without holding a host
//! thread, survive a validator restart, and be hashed into the app hash.
//!
//! # Mechanism
//! Programs are Asyncify-transformed at install time (the blocking imports are
//! listed to the pass). A syscall whose input is not there unwinds the guest's
//! call stack into a buffer in its own linear memory and returns to the host;
//! delivering input rewinds it and the syscall returns the data. Between inputs
//! a process is therefore only memory + mutable globals + host state (fd table,
//! pending stdin), all of which [`ProcessTable::snapshot_all`] writes as bytes.
//! See docs/design.md `## Processes` for why Asyncify and not fibers.
//!
//! # API (what the ABCI app calls)
//! ```text
//! ProcessModule::new(&engine, asyncified_wasm)            -> Arc it, keyed by .hash()
//! ProcessTable::new(env, TableLimits)                     -> empty machine
//! table.spawn(module, args, env_vars, stdin_from, fuel)   -> (Pid, InputOutcome)
//! table.spawn_pipeline(vec![SpawnSpec..], stdin_from, fuel) -> (Vec<Pid>, InputOutcome)  # a | b | c
//! table.deliver_stdin(pid, bytes, eof, fuel)              -> InputOutcome
//! table.kill(pid, fuel) / table.advance_time(ns, fuel) / table.set_time(abs_ns, fuel)
//! table.wake_timers(abs_ns, fuel)  -> one input per due sleeper (what validators use)
//! table.list() / table.info(pid) / table.live_pids()
//! table.digest() / table.process_digest(pid)              -> 32-byte SHA-256
//! table.snapshot_all() -> bytes;  ProcessTable::restore(bytes, env, limits, resolve)
//! table.reap() -> reaped pids;  table.persist() -> PersistDelta  # end of block
//! ProcessTable::restore_paged(header, env, limits, resolve, record(pid), page(pid, i))
//! ```
//! Every input runs the scheduler until every process is blocked or ended and
//! is atomic: [`InputOutcome::status`] is `Ok`, or `OutOfFuel`/`Trap` and then
//! processes, pipes, time and files are exactly as before the input. Output
//! written while handling an input is attributed to it in
//! [`InputOutcome::outputs`]. Snapshot bytes are meant to be stored in
//! merkle-fs's reserved metadata keys; they are deterministic (same state, same
//! bytes), so they may be hashed as they are.
//!
//! # Modules
//! - [`table`]: pids, states, pipes, the input API;
//! - [`scheduler`]: the fixed-order run loop and output routing through pipes;
//! - [`txn`]: atomic inputs (undo records, filesystem savepoints);
//! - [`instance`]: one store/instance and the Asyncify start/resume protocol;
//! - [`snapshot`], [`image`], [`codec`]: the byte formats and restore;
//!   [`persist`]: per-block writes of what changed; [`digest`]: the
//!   incremental memory Merkle root; [`globals`]: exporting and capturing globals;
//! - [`host`]: the trait the WASI context implements.

pub mod codec;
pub mod digest;
pub mod dirty;
pub mod driver;
pub mod error;
pub mod globals;
pub mod host;
pub mod image;
pub mod instance;
pub mod module;
pub mod persist;
pub mod scheduler;
pub mod snapshot;
pub mod table;
pub mod timers;
pub mod txn;
pub mod wasi_host;

pub use error::ProcessError;
pub use host::{Captured, GuestError, ProcessHost, StreamKind, Wait};
pub use module::{ModuleHash, ProcessModule};
pub use persist::PersistDelta;
pub use table::{
    InputOutcome, InputStatus, Output, Pid, ProcState, ProcessInfo, ProcessTable, SpawnSpec,
    TableLimits, KILLED_EXIT_CODE, MAX_PENDING_STDIN, MAX_SPAWN_ARG_BYTES,
};
pub use timers::TimerWake;
