//! Bounds-checked access to guest linear memory.
//!
//! Every pointer and length comes from the guest, so every access goes through these
//! helpers: offsets are computed with checked arithmetic against the memory's current
//! length and anything out of range is `EFAULT`. Nothing here can panic, and nothing
//! allocates: slices borrow guest memory directly, so file data moves between the
//! filesystem and the guest with a single copy.
//!
//! Writes go through [`GuestMemory`], which records the pages they touch in a
//! [`WriteLog`]: the process layer learns from it (and from the store barrier,
//! `process::dirty`) which pages an input changed without comparing the whole
//! memory. `GuestMemory` has no `DerefMut`, so a host write cannot bypass the log.

use std::ops::Deref;

use crate::errno::Errno;

/// Granularity of the write log (the process layer's page size).
pub const LOG_PAGE_SIZE: usize = 4096;

/// Most page ranges a [`WriteLog`] keeps before it only remembers "too many".
const MAX_LOGGED_RANGES: usize = 1024;

/// Guest pages written by host calls since the log was last taken.
///
/// Bounded: past [`MAX_LOGGED_RANGES`] ranges it stops recording and reports
/// [`WriteLog::overflowed`], and the reader must then assume every page changed.
/// Not part of any state that is hashed or persisted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteLog {
    /// Inclusive page ranges `(first, last)`, in the order written.
    ranges: Vec<(u32, u32)>,
    overflowed: bool,
}

impl WriteLog {
    /// Records that bytes `[start, end)` were written.
    pub fn record(&mut self, start: usize, end: usize) {
        if end <= start || self.overflowed {
            return;
        }
        let range = (
            (start / LOG_PAGE_SIZE) as u32,
            ((end - 1) / LOG_PAGE_SIZE) as u32,
        );
        if self.ranges.last() == Some(&range) {
            return;
        }
        if self.ranges.len() >= MAX_LOGGED_RANGES {
            self.overflowed = true;
            self.ranges.clear();
        } else {
            self.ranges.push(range);
        }
    }

    /// Whether more writes happened than the log keeps: treat every page as written.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// The written page ranges `(first, last)`, inclusive.
    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.ranges
    }

    /// Forgets everything recorded (keeps the allocation).
    pub fn clear(&mut self) {
        self.ranges.clear();
        self.overflowed = false;
    }
}

/// A guest's linear memory as host calls see it: readable as a slice, writable
/// only through [`slice_mut`] and the `write_*` helpers, which log what they touch.
pub struct GuestMemory<'a> {
    bytes: &'a mut [u8],
    log: &'a mut WriteLog,
}

impl<'a> GuestMemory<'a> {
    pub fn new(bytes: &'a mut [u8], log: &'a mut WriteLog) -> Self {
        GuestMemory { bytes, log }
    }
}

impl Deref for GuestMemory<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.bytes
    }
}

/// The byte range `[ptr, ptr + len)` of guest memory, or `EFAULT`.
pub fn slice(mem: &[u8], ptr: u32, len: u32) -> Result<&[u8], Errno> {
    let start = ptr as usize;
    let end = start.checked_add(len as usize).ok_or(Errno::Fault)?;
    mem.get(start..end).ok_or(Errno::Fault)
}

/// The mutable byte range `[ptr, ptr + len)` of guest memory, or `EFAULT`.
///
/// The range is logged as written when it is handed out (a caller that then
/// writes less only costs the reader a page comparison).
pub fn slice_mut<'m>(
    mem: &'m mut GuestMemory<'_>,
    ptr: u32,
    len: u32,
) -> Result<&'m mut [u8], Errno> {
    let start = ptr as usize;
    let end = start.checked_add(len as usize).ok_or(Errno::Fault)?;
    let bytes = mem.bytes.get_mut(start..end).ok_or(Errno::Fault)?;
    mem.log.record(start, end);
    Ok(bytes)
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
pub fn write_bytes(mem: &mut GuestMemory<'_>, ptr: u32, bytes: &[u8]) -> Result<(), Errno> {
    let len = u32::try_from(bytes.len()).map_err(|_| Errno::Fault)?;
    slice_mut(mem, ptr, len)?.copy_from_slice(bytes);
    Ok(())
}

/// Writes a little-endian `u16`.
pub fn write_u16(mem: &mut GuestMemory<'_>, ptr: u32, v: u16) -> Result<(), Errno> {
    write_bytes(mem, ptr, &v.to_le_bytes())
}

/// Writes a little-endian `u32`.
pub fn write_u32(mem: &mut GuestMemory<'_>, ptr: u32, v: u32) -> Result<(), Errno> {
    write_bytes(mem, ptr, &v.to_le_bytes())
}

/// Writes a little-endian `u64`.
pub fn write_u64(mem: &mut GuestMemory<'_>, ptr: u32, v: u64) -> Result<(), Errno> {
    write_bytes(mem, ptr, &v.to_le_bytes())
}

/// Writes one byte.
pub fn write_u8(mem: &mut GuestMemory<'_>, ptr: u32, v: u8) -> Result<(), Errno> {
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
        let mut bytes = vec![0u8; 16];
        let mut log = WriteLog::default();
        let mut mem = GuestMemory::new(&mut bytes, &mut log);
        assert_eq!(slice(&mem, 8, 8).map(<[u8]>::len), Ok(8));
        assert_eq!(slice(&mem, 8, 9), Err(Errno::Fault));
        assert_eq!(slice(&mem, u32::MAX, 2), Err(Errno::Fault));
        assert_eq!(read_u64(&mem, 9), Err(Errno::Fault));
        assert_eq!(write_u32(&mut mem, 13, 1), Err(Errno::Fault));
        write_u32(&mut mem, 12, 0xdead_beef).expect("in bounds");
        assert_eq!(read_u32(&mem, 12), Ok(0xdead_beef));
        assert_eq!(check_iovecs(&mem, 0, u32::MAX), Err(Errno::Fault));
        assert_eq!(path(&mem, 0, 5000, 4096), Err(Errno::Nametoolong));
        assert_eq!(
            log.ranges(),
            &[(0, 0)],
            "only the write that happened is logged"
        );
    }

    #[test]
    fn writes_are_logged_by_page_and_the_log_is_bounded() {
        let mut bytes = vec![0u8; 4 * LOG_PAGE_SIZE];
        let mut log = WriteLog::default();
        let mut mem = GuestMemory::new(&mut bytes, &mut log);
        write_u64(&mut mem, (LOG_PAGE_SIZE - 4) as u32, 7).expect("spans pages 0 and 1");
        slice_mut(&mut mem, (3 * LOG_PAGE_SIZE) as u32, 0).expect("empty");
        slice_mut(&mut mem, (2 * LOG_PAGE_SIZE) as u32, 10).expect("page 2");
        assert_eq!(log.ranges(), &[(0, 1), (2, 2)]);
        assert!(!log.overflowed());
        for i in 0..=MAX_LOGGED_RANGES {
            log.record(i * 2 * LOG_PAGE_SIZE, i * 2 * LOG_PAGE_SIZE + 1);
        }
        assert!(log.overflowed());
        assert!(log.ranges().is_empty());
        log.clear();
        assert!(!log.overflowed());
    }
}
