//! Bounds-checked access to guest linear memory.
//!
//! Every pointer and length comes from the guest, so every access goes through these
//! helpers: offsets are computed with checked arithmetic against the memory's current
//! length and anything out of range is `EFAULT`. Nothing here can panic, and nothing
//! allocates: slices borrow guest memory directly, so file data moves between the
//! filesystem and the guest with a single copy.

use crate::errno::Errno;

/// The byte range `[ptr, ptr + len)` of guest memory, or `EFAULT`.
pub fn slice(mem: &[u8], ptr: u32, len: u32) -> Result<&[u8], Errno> {
    let start = ptr as usize;
    let end = start.checked_add(len as usize).ok_or(Errno::Fault)?;
    mem.get(start..end).ok_or(Errno::Fault)
}

/// The mutable byte range `[ptr, ptr + len)` of guest memory, or `EFAULT`.
pub fn slice_mut(mem: &mut [u8], ptr: u32, len: u32) -> Result<&mut [u8], Errno> {
    let start = ptr as usize;
    let end = start.checked_add(len as usize).ok_or(Errno::Fault)?;
    mem.get_mut(start..end).ok_or(Errno::Fault)
}

fn array<const N: usize>(mem: &[u8], ptr: u32) -> Result<[u8; N], Errno> {
    let bytes = slice(mem, ptr, N as u32)?;
    <[u8; N]>::try_from(bytes).map_err(|_| Errno::Fault)
}

/// Reads a little-endian `u16`.
pub fn read_u16(mem: &[u8], ptr: u32) -> Result<u16, Errno> {
    array(mem, ptr).map(u16::from_le_bytes)
}

/// Reads a little-endian `u32`.
pub fn read_u32(mem: &[u8], ptr: u32) -> Result<u32, Errno> {
    array(mem, ptr).map(u32::from_le_bytes)
}

/// Reads a little-endian `u64`.
pub fn read_u64(mem: &[u8], ptr: u32) -> Result<u64, Errno> {
    array(mem, ptr).map(u64::from_le_bytes)
}

/// Reads one byte.
pub fn read_u8(mem: &[u8], ptr: u32) -> Result<u8, Errno> {
    array::<1>(mem, ptr).map(|b| b[0])
}

/// Writes `bytes` at `ptr`.
pub fn write_bytes(mem: &mut [u8], ptr: u32, bytes: &[u8]) -> Result<(), Errno> {
    let len = u32::try_from(bytes.len()).map_err(|_| Errno::Fault)?;
    slice_mut(mem, ptr, len)?.copy_from_slice(bytes);
    Ok(())
}

/// Writes a little-endian `u16`.
pub fn write_u16(mem: &mut [u8], ptr: u32, v: u16) -> Result<(), Errno> {
    write_bytes(mem, ptr, &v.to_le_bytes())
}

/// Writes a little-endian `u32`.
pub fn write_u32(mem: &mut [u8], ptr: u32, v: u32) -> Result<(), Errno> {
    write_bytes(mem, ptr, &v.to_le_bytes())
}

/// Writes a little-endian `u64`.
pub fn write_u64(mem: &mut [u8], ptr: u32, v: u64) -> Result<(), Errno> {
    write_bytes(mem, ptr, &v.to_le_bytes())
}

/// Writes one byte.
pub fn write_u8(mem: &mut [u8], ptr: u32, v: u8) -> Result<(), Errno> {
    write_bytes(mem, ptr, &[v])
}

/// The `i`-th `iovec`/`ciovec` (`buf: u32, len: u32`) of the array at `iovs`.
pub fn iovec(mem: &[u8], iovs: u32, i: u32) -> Result<(u32, u32), Errno> {
    let at = i
        .checked_mul(8)
        .and_then(|o| iovs.checked_add(o))
        .ok_or(Errno::Fault)?;
    let buf = read_u32(mem, at)?;
    let len = read_u32(mem, at.checked_add(4).ok_or(Errno::Fault)?)?;
    Ok((buf, len))
}

/// Checks that a whole `iovec` array and every buffer it names lie in memory, and
/// returns the total length (saturating; callers cap it). Done before any side effect
/// so a bad vector fails with `EFAULT` without a partial read or write.
pub fn check_iovecs(mem: &[u8], iovs: u32, count: u32) -> Result<u64, Errno> {
    let bytes = count.checked_mul(8).ok_or(Errno::Fault)?;
    slice(mem, iovs, bytes)?;
    let mut total = 0u64;
    for i in 0..count {
        let (buf, len) = iovec(mem, iovs, i)?;
        slice(mem, buf, len)?;
        total = total.saturating_add(u64::from(len));
    }
    Ok(total)
}

/// Reads a guest string argument (a path), enforcing `max` (`ENAMETOOLONG`) first.
pub fn path(mem: &[u8], ptr: u32, len: u32, max: u32) -> Result<&[u8], Errno> {
    if len > max {
        return Err(Errno::Nametoolong);
    }
    slice(mem, ptr, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_bounds_and_overflowing_accesses_are_efault() {
        let mut mem = vec![0u8; 16];
        assert_eq!(slice(&mem, 8, 8).map(<[u8]>::len), Ok(8));
        assert_eq!(slice(&mem, 8, 9), Err(Errno::Fault));
        assert_eq!(slice(&mem, u32::MAX, 2), Err(Errno::Fault));
        assert_eq!(read_u64(&mem, 9), Err(Errno::Fault));
        assert_eq!(write_u32(&mut mem, 13, 1), Err(Errno::Fault));
        write_u32(&mut mem, 12, 0xdead_beef).expect("in bounds");
        assert_eq!(read_u32(&mem, 12), Ok(0xdead_beef));
        assert_eq!(check_iovecs(&mem, 0, u32::MAX), Err(Errno::Fault));
        assert_eq!(path(&mem, 0, 5000, 4096), Err(Errno::Nametoolong));
    }
}
