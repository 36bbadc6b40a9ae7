//! Process-level calls: `proc_exit`, `proc_raise`, `sched_yield`.

use super::ctx::WasiCtx;
use crate::errno::Errno;

/// The guest called `proc_exit(code)`. Returned as the error that ends execution; the
/// executor downcasts it to tell a clean exit from a trap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("guest exited with code {0}")]
pub struct Exit(pub i32);

/// `proc_exit`: records the code and unwinds out of the guest.
pub(crate) fn proc_exit(ctx: &mut WasiCtx, code: i32) -> wasmtime::Error {
    ctx.exit_code = Some(code);
    Exit(code).into()
}

/// `proc_raise`: signals do not exist here.
pub(crate) fn proc_raise() -> Result<(), Errno> {
    Err(Errno::Nosys)
}

/// `sched_yield`: processes are scheduled at deterministic points only, so a yield is
/// a no-op that succeeds.
pub(crate) fn sched_yield() -> Result<(), Errno> {
    Ok(())
}
