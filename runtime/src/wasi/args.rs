//! `args_*` and `environ_*`: the same layout for both lists of NUL-terminated strings.

use super::memory::{slice_mut, write_u32, GuestMemory};
use crate::errno::Errno;

/// Writes the number of strings and the total size of their NUL-terminated bytes.
pub(crate) fn sizes(
    list: &[Vec<u8>],
    mem: &mut GuestMemory<'_>,
    count_ptr: u32,
    size_ptr: u32,
) -> Result<(), Errno> {
    let count = u32::try_from(list.len()).map_err(|_| Errno::Overflow)?;
    let size = list.iter().try_fold(0u32, |acc, s| {
        u32::try_from(s.len())
            .ok()
            .and_then(|l| acc.checked_add(l))
            .and_then(|a| a.checked_add(1))
    });
    let size = size.ok_or(Errno::Overflow)?;
    write_u32(mem, count_ptr, count)?;
    write_u32(mem, size_ptr, size)
}

/// Writes the pointer array at `ptrs` and the strings at `buf`.
pub(crate) fn get(
    list: &[Vec<u8>],
    mem: &mut GuestMemory<'_>,
    ptrs: u32,
    buf: u32,
) -> Result<(), Errno> {
    let mut at = buf;
    for (i, s) in list.iter().enumerate() {
        let slot = u32::try_from(i)
            .ok()
            .and_then(|i| i.checked_mul(4))
            .and_then(|o| ptrs.checked_add(o));
        write_u32(mem, slot.ok_or(Errno::Fault)?, at)?;
        let len = u32::try_from(s.len()).map_err(|_| Errno::Fault)?;
        let total = len.checked_add(1).ok_or(Errno::Fault)?;
        let dst = slice_mut(mem, at, total)?;
        let (text, nul) = dst.split_at_mut(s.len());
        text.copy_from_slice(s);
        nul.fill(0);
        at = at.checked_add(total).ok_or(Errno::Fault)?;
    }
    Ok(())
}
