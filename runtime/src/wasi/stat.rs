//! Encoding of `filestat` / `fdstat` records and decoding of `fstflags`, shared by the
//! fd and path calls.

use super::fd_table::{FdEntry, FdKind};
use super::memory::{slice_mut, write_bytes, GuestMemory};
use super::types::{filetype, fstflags, FDSTAT_SIZE, FILESTAT_SIZE};
use crate::errno::Errno;
use crate::fs::{Attr, FileKind};

/// The preview1 filetype of an inode kind.
pub(crate) fn filetype_of(kind: FileKind) -> u8 {
    match kind {
        FileKind::Regular => filetype::REGULAR_FILE,
        FileKind::Directory => filetype::DIRECTORY,
        FileKind::Symlink => filetype::SYMBOLIC_LINK,
    }
}

/// The preview1 filetype of a descriptor. Streams are character devices, which together
/// with their lack of seek rights makes wasi-libc's `isatty` true (line-buffered stdout).
pub(crate) fn fd_filetype(entry: &FdEntry) -> u8 {
    match entry.kind {
        FdKind::File { .. } => filetype::REGULAR_FILE,
        FdKind::Dir { .. } => filetype::DIRECTORY,
        FdKind::PipeRead { .. } | FdKind::Sink { .. } => filetype::CHARACTER_DEVICE,
    }
}

/// Writes a `filestat` record (64 bytes) for `attr`, or for a stream if `attr` is None.
pub(crate) fn write_filestat(
    mem: &mut GuestMemory<'_>,
    ptr: u32,
    attr: Option<&Attr>,
    stream_type: u8,
) -> Result<(), Errno> {
    let mut rec = [0u8; FILESTAT_SIZE as usize];
    let (ino, ftype, nlink, size, atim, mtim, ctim) = match attr {
        Some(a) => (
            a.ino,
            filetype_of(a.kind),
            a.nlink,
            a.size,
            a.atime_ns,
            a.mtime_ns,
            a.ctime_ns,
        ),
        None => (0, stream_type, 1, 0, 0, 0, 0),
    };
    put(&mut rec, 8, &ino.to_le_bytes());
    put(&mut rec, 16, &[ftype]);
    put(&mut rec, 24, &nlink.to_le_bytes());
    put(&mut rec, 32, &size.to_le_bytes());
    put(&mut rec, 40, &atim.to_le_bytes());
    put(&mut rec, 48, &mtim.to_le_bytes());
    put(&mut rec, 56, &ctim.to_le_bytes());
    write_bytes(mem, ptr, &rec)
}

/// Writes an `fdstat` record (24 bytes).
pub(crate) fn write_fdstat(
    mem: &mut GuestMemory<'_>,
    ptr: u32,
    entry: &FdEntry,
) -> Result<(), Errno> {
    let dst = slice_mut(mem, ptr, FDSTAT_SIZE)?;
    dst.fill(0);
    put(dst, 0, &[fd_filetype(entry)]);
    put(dst, 2, &entry.flags.to_le_bytes());
    put(dst, 8, &entry.rights_base.to_le_bytes());
    put(dst, 16, &entry.rights_inheriting.to_le_bytes());
    Ok(())
}

fn put(rec: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = rec.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// Decodes the times of `*_set_times`: `(atime, mtime)` to set, `now` for the `*_NOW` flags.
pub(crate) fn set_times_args(
    flags: u16,
    atim: u64,
    mtim: u64,
    now: u64,
) -> Result<(Option<u64>, Option<u64>), Errno> {
    if flags & !fstflags::ALL != 0 {
        return Err(Errno::Inval);
    }
    let pick = |set: u16, set_now: u16, value: u64| match (flags & set != 0, flags & set_now != 0) {
        (true, true) => Err(Errno::Inval),
        (true, false) => Ok(Some(value)),
        (false, true) => Ok(Some(now)),
        (false, false) => Ok(None),
    };
    Ok((
        pick(fstflags::ATIM, fstflags::ATIM_NOW, atim)?,
        pick(fstflags::MTIM, fstflags::MTIM_NOW, mtim)?,
    ))
}
