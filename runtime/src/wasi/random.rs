//! `random_get` over the injected deterministic [`Entropy`].
//!
//! [`Entropy`]: crate::entropy::Entropy

use super::cost;
use super::ctx::WasiCtx;
use super::memory::{slice_mut, GuestMemory};
use crate::errno::Errno;

pub(crate) fn random_get(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    buf: u32,
    len: u32,
) -> Result<(), Errno> {
    let dst = slice_mut(mem, buf, len)?;
    ctx.charge(cost::per(u64::from(len), cost::RANDOM_BYTE))?;
    ctx.entropy.fill(dst);
    Ok(())
}
