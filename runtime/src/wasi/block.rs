//! Blocking imports: suspending a guest that waits for input, with Asyncify.
//!
//! A guest blocked in `read()` has wasm frames on its stack, and those frames must
//! become bytes so the process can be snapshotted, hashed and resumed elsewhere.
//! Guests are therefore transformed with binaryen's Asyncify, which exports
//! `asyncify_start_unwind(i32)`, `asyncify_stop_unwind()`, `asyncify_start_rewind(i32)`,
//! `asyncify_stop_rewind()` and `asyncify_get_state() -> i32` (0 normal, 1 unwinding,
//! 2 rewinding). The protocol between a blocking import and the executor:
//!
//! 1. The executor tells the context where the asyncify data buffer lives
//!    ([`WasiCtx::set_asyncify_data_ptr`]) before running the guest.
//! 2. A blockable import (`fd_read`, `poll_oneoff`) that must wait records why in
//!    `ctx.blocked` ([`BlockOn`]), calls `asyncify_start_unwind(data_ptr)` and returns 0.
//!    The guest's stack unwinds into the buffer and `_start` returns normally; the
//!    executor sees [`WasiCtx::blocked`] and calls `asyncify_stop_unwind`.
//! 3. To resume, the executor calls `asyncify_start_rewind(data_ptr)` and `_start` again.
//!    The guest rewinds to the same import call, which is invoked again with the same
//!    arguments. At entry, every blockable import checks `asyncify_get_state()`; if it is
//!    2 it calls `asyncify_stop_rewind()`, moves `blocked` to `resumed` (so `poll_oneoff`
//!    can measure relative timeouts from the original call) and runs normally — blocking
//!    again if there is still nothing to read.
//!
//! Without asyncify exports (or without a data pointer) nothing can suspend the guest,
//! so a would-block read ends execution with the typed error [`WouldBlockForever`].

use wasmtime::{AsContextMut, Caller, Extern};

use super::ctx::WasiCtx;
use crate::errno::Errno;

/// Why a guest is suspended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockOn {
    /// `fd_read` on an empty pipe that is still open for writing.
    Read {
        /// The descriptor being read.
        fd: u32,
    },
    /// `poll_oneoff` with no subscription ready.
    Poll {
        /// Descriptors waited on for reading, ascending and without duplicates.
        fds: Vec<u32>,
        /// Monotonic logical time of the original call (relative timeouts start here).
        started_ns: u64,
        /// Earliest clock deadline (monotonic logical ns), if any clock was subscribed.
        deadline_ns: Option<u64>,
    },
}

/// A read would wait for input, but the guest cannot be suspended (no asyncify).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("guest would block forever ({reason:?}): the module has no asyncify exports or no data pointer was set")]
pub struct WouldBlockForever {
    /// What the guest was waiting for.
    pub reason: BlockOn,
}

/// The result of a blockable call: an errno, or a request to suspend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SysError {
    Errno(Errno),
    Block(BlockOn),
}

impl From<Errno> for SysError {
    fn from(e: Errno) -> Self {
        SysError::Errno(e)
    }
}

const STATE_REWINDING: i32 = 2;

fn export_func<T: 'static>(caller: &mut Caller<'_, T>, name: &str) -> Option<wasmtime::Func> {
    match caller.get_export(name) {
        Some(Extern::Func(f)) => Some(f),
        _ => None,
    }
}

/// Run at entry of every blockable import: finishes a rewind if one is in progress.
pub(crate) fn on_entry<T: 'static>(
    caller: &mut Caller<'_, T>,
    get: fn(&mut T) -> &mut WasiCtx,
) -> wasmtime::Result<()> {
    // Only an executor that set a data pointer can have started a rewind.
    if get(caller.data_mut()).asyncify_data_ptr.is_none() {
        return Ok(());
    }
    let Some(state) = export_func(caller, "asyncify_get_state") else {
        return Ok(());
    };
    let state = state
        .typed::<(), i32>(&*caller)?
        .call(caller.as_context_mut(), ())?;
    if state == STATE_REWINDING {
        if let Some(stop) = export_func(caller, "asyncify_stop_rewind") {
            stop.typed::<(), ()>(&*caller)?
                .call(caller.as_context_mut(), ())?;
        }
        let ctx = get(caller.data_mut());
        ctx.resumed = ctx.blocked.take();
    }
    Ok(())
}

/// Suspends the guest for `on`, or fails with [`WouldBlockForever`].
pub(crate) fn suspend<T: 'static>(
    caller: &mut Caller<'_, T>,
    get: fn(&mut T) -> &mut WasiCtx,
    on: BlockOn,
) -> wasmtime::Result<i32> {
    let ptr = get(caller.data_mut()).asyncify_data_ptr;
    let (Some(ptr), Some(start)) = (ptr, export_func(caller, "asyncify_start_unwind")) else {
        return Err(WouldBlockForever { reason: on }.into());
    };
    let start = start.typed::<i32, ()>(&*caller)?;
    get(caller.data_mut()).blocked = Some(on);
    start.call(caller.as_context_mut(), ptr as i32)?;
    Ok(0)
}
