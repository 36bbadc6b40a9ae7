//! The `fd_*` calls: I/O and metadata on open descriptors.
//!
//! Data moves between guest memory and the filesystem in place — iovec buffers are
//! borrowed from linear memory and handed to the filesystem — so no call allocates per
//! byte or copies a whole file. Every iovec array is bounds-checked before any side
//! effect, so `EFAULT` never comes with a partial write, and every call charges the
//! bytes, chunks and records it will touch before touching them (`wasi::cost`).

use super::block::{BlockOn, SysError};
use super::cost::{self, Meter};
use super::ctx::WasiCtx;
use super::fd_table::{FdEntry, FdKind};
use super::memory::{
    check_iovecs, iovec, slice, slice_mut, write_bytes, write_u32, write_u64, GuestMemory,
};
use super::stat::{fd_filetype, set_times_args, write_fdstat, write_filestat};
use super::stdio::PipeRead;
use super::types::{fdflags, rights, whence, DIRENT_SIZE};
use crate::errno::Errno;
use crate::fs::{FileKind, FileSystem, Ino};

/// Total bytes as the `size` a guest receives (iovecs may overlap, so cap it).
fn size32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Reads a file into the iovecs starting at `offset`; returns bytes read.
fn read_file_iovs(
    fs: &dyn FileSystem,
    mem: &mut GuestMemory<'_>,
    ino: Ino,
    offset: u64,
    iovs: u32,
    n: u32,
) -> Result<u64, Errno> {
    let mut total = 0u64;
    for i in 0..n {
        let (buf, len) = iovec(mem, iovs, i)?;
        let dst = slice_mut(mem, buf, len)?;
        let got = fs.read(ino, offset.saturating_add(total), dst)?;
        total += got as u64;
        if got < len as usize {
            break;
        }
    }
    Ok(total)
}

/// Writes the iovecs to a file at `offset`; returns bytes written. A limit hit after
/// some bytes were written gives a short count, as POSIX `write` does. Bytes go to
/// the filesystem in pieces of at most [`cost::WRITE_PIECE`]; a piece cut short by a
/// limit pays the storage's search for how much fits ([`cost::quota_probe`]).
#[allow(clippy::too_many_arguments)]
fn write_file_iovs(
    fs: &mut dyn FileSystem,
    meter: &Meter,
    mem: &[u8],
    ino: Ino,
    offset: u64,
    iovs: u32,
    n: u32,
    now: u64,
) -> Result<u64, Errno> {
    let mut total = 0u64;
    for i in 0..n {
        let (buf, len) = iovec(mem, iovs, i)?;
        for piece in slice(mem, buf, len)?.chunks(cost::WRITE_PIECE) {
            match fs.write(ino, offset.saturating_add(total), piece, now) {
                Ok(k) if k == piece.len() => total += k as u64,
                Ok(k) => {
                    meter.charge(cost::quota_probe(piece.len()))?;
                    return Ok(total + k as u64);
                }
                Err(e) => {
                    meter.charge(cost::quota_probe(piece.len()))?;
                    return if total == 0 { Err(e) } else { Ok(total) };
                }
            }
        }
    }
    Ok(total)
}

/// Charges a file write of `len` bytes from `iovecs` buffers at `offset` (see
/// [`cost::file_write`]); each iovec is one more storage write of the inode.
fn charge_file_write(
    ctx: &WasiCtx,
    fs: &dyn FileSystem,
    ino: Ino,
    (offset, len): (u64, u64),
    iovecs: u32,
) -> Result<(), Errno> {
    let size = fs.getattr(ino)?.size;
    let bytes = cost::file_write(size, offset, len, ctx.fs_limits.as_ref(), fs.usage());
    ctx.charge(bytes.saturating_add(cost::per(u64::from(iovecs), cost::RECORD_WRITE)))
}

/// Charges a file read of up to `len` bytes at `offset` into `iovecs` buffers:
/// what the file holds there, and one storage read per iovec.
fn charge_file_read(
    ctx: &WasiCtx,
    fs: &dyn FileSystem,
    ino: Ino,
    (offset, len): (u64, u64),
    iovecs: u32,
) -> Result<(), Errno> {
    let size = fs.getattr(ino)?.size;
    let bytes = cost::file_read(offset, len.min(size.saturating_sub(offset)));
    ctx.charge(bytes.saturating_add(cost::per(u64::from(iovecs), cost::CHUNK_READ)))
}

/// The checks every vectored call starts with: the iovec count (`EINVAL` past
/// [`cost::IOV_MAX`], charged per iovec), then the array and every buffer
/// (`EFAULT`). Returns the total length.
fn check_and_charge_iovecs(ctx: &WasiCtx, mem: &[u8], iovs: u32, n: u32) -> Result<u64, Errno> {
    ctx.charge(cost::iovecs(n)?)?;
    check_iovecs(mem, iovs, n)
}

/// The entry for `fd` if it may read (`EBADF` otherwise, like POSIX on a write-only fd).
fn readable(ctx: &WasiCtx, fd: u32) -> Result<&FdEntry, Errno> {
    let e = ctx.fds.get(fd)?;
    if e.rights_base & rights::FD_READ == 0 {
        return Err(Errno::Badf);
    }
    Ok(e)
}

fn writable(ctx: &WasiCtx, fd: u32) -> Result<&FdEntry, Errno> {
    let e = ctx.fds.get(fd)?;
    if e.rights_base & rights::FD_WRITE == 0 {
        return Err(Errno::Badf);
    }
    Ok(e)
}

/// The inode of a regular-file descriptor: `ESPIPE` for streams, `EISDIR` for directories.
fn file_ino(entry: &FdEntry) -> Result<(Ino, u64), Errno> {
    match entry.kind {
        FdKind::File { ino, offset } => Ok((ino, offset)),
        FdKind::Dir { .. } => Err(Errno::Isdir),
        FdKind::PipeRead { .. } | FdKind::Sink { .. } => Err(Errno::Spipe),
    }
}

fn set_offset(ctx: &mut WasiCtx, fd: u32, new: u64) -> Result<(), Errno> {
    if let FdKind::File { offset, .. } = &mut ctx.fds.get_mut(fd)?.kind {
        *offset = new;
    }
    Ok(())
}

pub(crate) fn fd_read(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    fd: u32,
    iovs: u32,
    n: u32,
    nread: u32,
) -> Result<(), SysError> {
    let entry = readable(ctx, fd)?;
    let (kind, flags) = (entry.kind.clone(), entry.flags);
    let wanted = check_and_charge_iovecs(ctx, mem, iovs, n)?;
    slice(mem, nread, 4)?;
    let total = match kind {
        FdKind::File { ino, offset } => {
            let total = {
                let fs = ctx.fs()?;
                charge_file_read(ctx, &**fs, ino, (offset, wanted), n)?;
                read_file_iovs(&**fs, mem, ino, offset, iovs, n)?
            };
            set_offset(ctx, fd, offset + total)?;
            total
        }
        FdKind::Dir { .. } => return Err(Errno::Isdir.into()),
        FdKind::Sink { .. } => return Err(Errno::Badf.into()),
        FdKind::PipeRead { pipe } => {
            let pipe = ctx.pipes.get(pipe as usize).ok_or(Errno::Badf)?;
            let available = pipe.available() as u64;
            ctx.charge(cost::per(wanted.min(available), cost::COPY_BYTE))?;
            let mut total = 0u64;
            for i in 0..n {
                let (buf, len) = iovec(mem, iovs, i)?;
                if len == 0 {
                    continue;
                }
                match pipe.read(slice_mut(mem, buf, len)?) {
                    PipeRead::Data(k) => {
                        total += k as u64;
                        if k < len as usize {
                            break;
                        }
                    }
                    PipeRead::Eof => break,
                    PipeRead::Empty if total > 0 => break,
                    PipeRead::Empty if flags & fdflags::NONBLOCK != 0 => {
                        return Err(Errno::Again.into())
                    }
                    PipeRead::Empty => return Err(SysError::Block(BlockOn::Read { fd })),
                }
            }
            total
        }
    };
    write_u32(mem, nread, size32(total))?;
    Ok(())
}

pub(crate) fn fd_write(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    fd: u32,
    iovs: u32,
    n: u32,
    nwritten: u32,
) -> Result<(), Errno> {
    let entry = writable(ctx, fd)?;
    let (kind, flags) = (entry.kind.clone(), entry.flags);
    let wanted = check_and_charge_iovecs(ctx, mem, iovs, n)?;
    slice(mem, nwritten, 4)?;
    let total = match kind {
        FdKind::File { ino, offset } => {
            let now = ctx.now_ns();
            let total;
            let end;
            {
                let mut fs = ctx.fs()?;
                let start = if flags & fdflags::APPEND != 0 {
                    fs.getattr(ino)?.size
                } else {
                    offset
                };
                charge_file_write(ctx, &**fs, ino, (start, wanted), n)?;
                total = write_file_iovs(&mut **fs, &ctx.meter, mem, ino, start, iovs, n, now)?;
                end = start + total;
            }
            set_offset(ctx, fd, end)?;
            total
        }
        FdKind::Sink { sink } => {
            // Captured output past its cap is still paid for (see `stdio::Capture`).
            ctx.charge(cost::per(wanted, cost::COPY_BYTE))?;
            let sink = ctx.sinks.get_mut(sink as usize).ok_or(Errno::Badf)?;
            let mut total = 0u64;
            for i in 0..n {
                let (buf, len) = iovec(mem, iovs, i)?;
                match sink.write(slice(mem, buf, len)?) {
                    Ok(k) => total += k as u64,
                    Err(e) if total == 0 => return Err(e),
                    Err(_) => break,
                }
            }
            total
        }
        FdKind::Dir { .. } => return Err(Errno::Isdir),
        FdKind::PipeRead { .. } => return Err(Errno::Badf),
    };
    write_u32(mem, nwritten, size32(total))
}

pub(crate) fn fd_pread(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    fd: u32,
    iovs: u32,
    n: u32,
    offset: u64,
    nread: u32,
) -> Result<(), Errno> {
    let (ino, _) = file_ino(readable(ctx, fd)?)?;
    let wanted = check_and_charge_iovecs(ctx, mem, iovs, n)?;
    slice(mem, nread, 4)?;
    let total = {
        let fs = ctx.fs()?;
        charge_file_read(ctx, &**fs, ino, (offset, wanted), n)?;
        read_file_iovs(&**fs, mem, ino, offset, iovs, n)?
    };
    write_u32(mem, nread, size32(total))
}

pub(crate) fn fd_pwrite(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    fd: u32,
    iovs: u32,
    n: u32,
    offset: u64,
    nwritten: u32,
) -> Result<(), Errno> {
    let (ino, _) = file_ino(writable(ctx, fd)?)?;
    let wanted = check_and_charge_iovecs(ctx, mem, iovs, n)?;
    slice(mem, nwritten, 4)?;
    let now = ctx.now_ns();
    let total = {
        let mut fs = ctx.fs()?;
        charge_file_write(ctx, &**fs, ino, (offset, wanted), n)?;
        write_file_iovs(&mut **fs, &ctx.meter, mem, ino, offset, iovs, n, now)?
    };
    write_u32(mem, nwritten, size32(total))
}

pub(crate) fn fd_seek(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    fd: u32,
    delta: i64,
    how: u8,
    out: u32,
) -> Result<(), Errno> {
    let entry = ctx.fds.get(fd)?;
    let needed = if how == whence::CUR && delta == 0 {
        rights::FD_TELL
    } else {
        rights::FD_SEEK
    };
    // Streams are ESPIPE whatever their rights, as POSIX has it.
    let (ino, offset) = file_ino(entry)?;
    entry.require(needed)?;
    slice(mem, out, 8)?;
    let base = match how {
        whence::SET => 0,
        whence::CUR => offset,
        whence::END => ctx.fs()?.getattr(ino)?.size,
        _ => return Err(Errno::Inval),
    };
    let new = i128::from(base) + i128::from(delta);
    let new = u64::try_from(new).map_err(|_| Errno::Inval)?;
    if i64::try_from(new).is_err() {
        return Err(Errno::Overflow);
    }
    set_offset(ctx, fd, new)?;
    write_u64(mem, out, new)
}

pub(crate) fn fd_tell(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    fd: u32,
    out: u32,
) -> Result<(), Errno> {
    let entry = ctx.fds.get(fd)?;
    let (_, offset) = file_ino(entry)?;
    entry.require(rights::FD_TELL)?;
    write_u64(mem, out, offset)
}

/// Closes `fd`, releasing the inode it kept alive.
pub(crate) fn close(ctx: &mut WasiCtx, fd: u32) -> Result<(), Errno> {
    let entry = ctx.fds.remove(fd)?;
    if let Some(ino) = entry.ino() {
        ctx.fs()?.release(ino)?;
    }
    Ok(())
}

/// Charges releasing the inode behind `entry`: its open count, and its chunks if
/// no name refers to it any more (the last handle frees it).
pub(crate) fn charge_release(ctx: &WasiCtx, entry: &FdEntry) -> Result<(), Errno> {
    let Some(ino) = entry.ino() else {
        return Ok(());
    };
    let attr = ctx.fs()?.getattr(ino)?;
    let freed = if attr.nlink == 0 && attr.kind == FileKind::Regular {
        cost::free_file(attr.size)
    } else {
        0
    };
    ctx.charge(cost::RECORD_WRITE.saturating_add(freed))
}

pub(crate) fn fd_close(ctx: &mut WasiCtx, fd: u32) -> Result<(), Errno> {
    charge_release(ctx, ctx.fds.get(fd)?)?;
    close(ctx, fd)
}

pub(crate) fn fd_sync(ctx: &mut WasiCtx, fd: u32) -> Result<(), Errno> {
    ctx.fds.get(fd).map(|_| ())
}

pub(crate) fn fd_fdstat_get(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    fd: u32,
    out: u32,
) -> Result<(), Errno> {
    write_fdstat(mem, out, ctx.fds.get(fd)?)
}

pub(crate) fn fd_fdstat_set_flags(ctx: &mut WasiCtx, fd: u32, flags: u16) -> Result<(), Errno> {
    if flags & !fdflags::ALL != 0 {
        return Err(Errno::Inval);
    }
    ctx.fds.get(fd)?.require(rights::FD_FDSTAT_SET_FLAGS)?;
    ctx.fds.get_mut(fd)?.flags = flags;
    Ok(())
}

pub(crate) fn fd_fdstat_set_rights(
    ctx: &mut WasiCtx,
    fd: u32,
    base: u64,
    inheriting: u64,
) -> Result<(), Errno> {
    let e = ctx.fds.get_mut(fd)?;
    if base & !e.rights_base != 0 || inheriting & !e.rights_inheriting != 0 {
        return Err(Errno::Notcapable);
    }
    e.rights_base = base;
    e.rights_inheriting = inheriting;
    Ok(())
}

pub(crate) fn fd_filestat_get(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    fd: u32,
    out: u32,
) -> Result<(), Errno> {
    let entry = ctx.fds.get(fd)?.require(rights::FD_FILESTAT_GET)?;
    match entry.ino() {
        Some(ino) => {
            let attr = ctx.fs()?.getattr(ino)?;
            write_filestat(mem, out, Some(&attr), 0)
        }
        None => write_filestat(mem, out, None, fd_filetype(entry)),
    }
}

pub(crate) fn fd_filestat_set_size(ctx: &mut WasiCtx, fd: u32, size: u64) -> Result<(), Errno> {
    let entry = ctx.fds.get(fd)?.require(rights::FD_FILESTAT_SET_SIZE)?;
    let (ino, _) = file_ino(entry).map_err(|_| Errno::Inval)?;
    let now = ctx.now_ns();
    let mut fs = ctx.fs()?;
    charge_resize(ctx, &**fs, ino, size)?;
    fs.set_size(ino, size, now)
}

/// Charges resizing file `ino` to `size` (see [`cost::resize`]).
pub(crate) fn charge_resize(
    ctx: &WasiCtx,
    fs: &dyn FileSystem,
    ino: Ino,
    size: u64,
) -> Result<(), Errno> {
    let old = fs.getattr(ino)?.size;
    ctx.charge(cost::resize(old, size, ctx.fs_limits.as_ref(), fs.usage()))
}

pub(crate) fn fd_filestat_set_times(
    ctx: &mut WasiCtx,
    fd: u32,
    atim: u64,
    mtim: u64,
    flags: u16,
) -> Result<(), Errno> {
    let entry = ctx.fds.get(fd)?.require(rights::FD_FILESTAT_SET_TIMES)?;
    let ino = entry.ino().ok_or(Errno::Badf)?;
    let now = ctx.now_ns();
    let (a, m) = set_times_args(flags, atim, mtim, now)?;
    ctx.charge(cost::RECORD_WRITE)?;
    ctx.fs()?.set_times(ino, a, m, now)
}

pub(crate) fn fd_advise(
    ctx: &mut WasiCtx,
    fd: u32,
    offset: u64,
    len: u64,
    advice: u8,
) -> Result<(), Errno> {
    if advice > 5 || offset.checked_add(len).is_none() {
        return Err(Errno::Inval);
    }
    file_ino(ctx.fds.get(fd)?.require(rights::FD_ADVISE)?).map(|_| ())
}

pub(crate) fn fd_allocate(ctx: &mut WasiCtx, fd: u32, offset: u64, len: u64) -> Result<(), Errno> {
    let (ino, _) = file_ino(ctx.fds.get(fd)?.require(rights::FD_ALLOCATE)?)?;
    if len == 0 {
        return Err(Errno::Inval);
    }
    let end = offset.checked_add(len).ok_or(Errno::Fbig)?;
    let now = ctx.now_ns();
    let mut fs = ctx.fs()?;
    if end > fs.getattr(ino)?.size {
        charge_resize(ctx, &**fs, ino, end)?;
        fs.set_size(ino, end, now)?;
    }
    Ok(())
}

pub(crate) fn fd_prestat_get(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    fd: u32,
    out: u32,
) -> Result<(), Errno> {
    match &ctx.fds.get(fd)?.kind {
        FdKind::Dir {
            preopen: Some(name),
            ..
        } => {
            let len = u32::try_from(name.len()).map_err(|_| Errno::Overflow)?;
            let mut rec = [0u8; 8];
            rec[4..].copy_from_slice(&len.to_le_bytes());
            write_bytes(mem, out, &rec)
        }
        _ => Err(Errno::Badf),
    }
}

pub(crate) fn fd_prestat_dir_name(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    fd: u32,
    path: u32,
    len: u32,
) -> Result<(), Errno> {
    match &ctx.fds.get(fd)?.kind {
        FdKind::Dir {
            preopen: Some(name),
            ..
        } => {
            if (len as usize) < name.len() {
                return Err(Errno::Nametoolong);
            }
            ctx.charge(cost::per(name.len() as u64, cost::COPY_BYTE))?;
            write_bytes(mem, path, name)
        }
        _ => Err(Errno::Badf),
    }
}

pub(crate) fn fd_renumber(ctx: &mut WasiCtx, from: u32, to: u32) -> Result<(), Errno> {
    ctx.fds.get(from)?;
    ctx.fds.get(to)?;
    if from == to {
        return Ok(());
    }
    charge_release(ctx, ctx.fds.get(to)?)?;
    let entry = ctx.fds.remove(from)?;
    if let Some(old) = ctx.fds.put(to, entry) {
        if let Some(ino) = old.ino() {
            ctx.fs()?.release(ino)?;
        }
    }
    Ok(())
}

/// `fd_readdir`: entries in name order, "." and ".." first; the cookie of an entry is
/// its index in that listing, so cookies stay valid for an unchanged directory. ".."
/// reports the directory's own inode: a descriptor has no parent it may name (the same
/// rule that stops `..` at the descriptor during path resolution).
pub(crate) fn fd_readdir(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    fd: u32,
    buf: u32,
    buf_len: u32,
    cookie: u64,
    used_ptr: u32,
) -> Result<(), Errno> {
    let entry = ctx.fds.get(fd)?.require(rights::FD_READDIR)?;
    let FdKind::Dir { ino, .. } = entry.kind else {
        return Err(Errno::Notdir);
    };
    slice(mem, used_ptr, 4)?;
    // The listing is rebuilt on every call: each call pays for every entry of it.
    let entries = {
        let fs = ctx.fs()?;
        ctx.charge(cost::per(fs.getattr(ino)?.size, cost::DIR_ENTRY))?;
        fs.readdir(ino)?
    };
    let out = slice_mut(mem, buf, buf_len)?;
    let mut used = 0usize;
    let start = usize::try_from(cookie).unwrap_or(usize::MAX);
    let total = entries.len().saturating_add(2);
    for idx in start..total {
        let (name, d_ino, kind): (&[u8], Ino, FileKind) = match idx {
            0 => (b".", ino, FileKind::Directory),
            1 => (b"..", ino, FileKind::Directory),
            _ => match entries.get(idx - 2) {
                Some(e) => (&e.name, e.ino, e.kind),
                None => break,
            },
        };
        let mut header = [0u8; DIRENT_SIZE as usize];
        header[0..8].copy_from_slice(&(idx as u64 + 1).to_le_bytes());
        header[8..16].copy_from_slice(&d_ino.to_le_bytes());
        header[16..20].copy_from_slice(&(name.len() as u32).to_le_bytes());
        header[20] = super::stat::filetype_of(kind);
        for part in [&header[..], name] {
            let room = out.len() - used;
            let n = part.len().min(room);
            if let (Some(dst), Some(src)) = (out.get_mut(used..used + n), part.get(..n)) {
                dst.copy_from_slice(src);
            }
            used += n;
        }
        if used == out.len() {
            break;
        }
    }
    write_u32(mem, used_ptr, size32(used as u64))
}
