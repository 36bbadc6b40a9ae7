//! `clock_res_get` / `clock_time_get` over the injected logical [`Clock`].
//!
//! [`Clock`]: crate::clock::Clock

use super::ctx::WasiCtx;
use super::memory::{slice, write_u64, GuestMemory};
use crate::clock::ClockId;
use crate::errno::Errno;

fn clock_id(raw: u32) -> Result<ClockId, Errno> {
    ClockId::from_raw(raw).ok_or(Errno::Inval)
}

pub(crate) fn clock_res_get(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    id: u32,
    out: u32,
) -> Result<(), Errno> {
    let res = ctx.clock.resolution_ns(clock_id(id)?);
    write_u64(mem, out, res)
}

pub(crate) fn clock_time_get(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    id: u32,
    out: u32,
) -> Result<(), Errno> {
    let id = clock_id(id)?;
    // Check the destination before reading: a read advances logical time.
    slice(mem, out, 8)?;
    let now = ctx.clock.now_ns(id);
    write_u64(mem, out, now)
}
