//! WASI preview1 host implementation.
//!
//! Our own implementation of every `wasi_snapshot_preview1` function wasi-libc can
//! reach, over injected traits (filesystem, clock, entropy, stdio) so nothing a guest
//! observes comes from the host. One concern per module:
//!
//! - `memory`: bounds-checked guest memory access (`EFAULT`, never a panic)
//! - `fd_table`: the plain-data descriptor table
//! - `ctx`: per-process state and its builder
//! - `cost`: the fuel every call charges for the work it does
//! - `args`, `clock`, `random`, `proc`: the small calls
//! - `path`: confined path resolution; `path_calls`: the `path_*` calls
//! - `fd_calls`: the `fd_*` calls; `stat`: record encodings
//! - `poll`: `poll_oneoff`; `block`: suspending a guest with Asyncify
//! - `stdio`: pipes and output sinks; `linker`: registration with wasmtime
//! - `types`: ABI constants

mod args;
pub mod block;
mod clock;
pub mod cost;
pub mod ctx;
mod fd_calls;
pub mod fd_table;
mod linker;
pub mod memory;
pub mod path;
mod path_calls;
mod poll;
pub mod proc;
mod random;
mod stat;
pub mod stdio;
pub mod types;

pub use block::{BlockOn, WouldBlockForever};
pub use ctx::{WasiCtx, WasiCtxBuilder, WasiCtxError, DEFAULT_MAX_FDS};
pub use fd_table::{FdEntry, FdKind, FdTable};
pub use linker::add_to_linker;
pub use proc::Exit;
pub use stdio::{Capture, HostStream, NullSink, OutputSink, Pipe, PipeRead, TerminalSink};
