//! The `path_*` calls: operations named by a path relative to a directory descriptor.
//!
//! Each call checks the directory descriptor's rights, resolves the path with
//! `wasi::path` (which confines it to that directory, charging per component) and
//! then acts on inodes, charging each record and chunk before it is written.

use super::cost;
use super::ctx::WasiCtx;
use super::fd_calls::charge_resize;
use super::fd_table::{FdEntry, FdKind};
use super::memory::{path as guest_path, slice, slice_mut, write_u32, GuestMemory};
use super::path::{resolve, resolve_dangling, resolve_parent, Last};
use super::stat::{set_times_args, write_filestat};
use super::types::{fdflags, lookupflags, oflags, rights, PATH_MAX};
use crate::errno::Errno;
use crate::fs::{FileKind, Ino};

/// The inode and inheriting rights of directory descriptor `fd`, which must hold `needed`.
fn dir_fd(ctx: &WasiCtx, fd: u32, needed: u64) -> Result<(Ino, u64), Errno> {
    let entry = ctx.fds.get(fd)?;
    let FdKind::Dir { ino, .. } = entry.kind else {
        return Err(Errno::Notdir);
    };
    entry.require(needed)?;
    Ok((ino, entry.rights_inheriting))
}

/// Arguments of `path_open` after the directory fd and path.
pub(crate) struct OpenArgs {
    pub dirflags: u32,
    pub oflags: u16,
    pub rights_base: u64,
    pub rights_inheriting: u64,
    pub fdflags: u16,
}

pub(crate) fn path_open(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    fd: u32,
    path: (u32, u32),
    a: &OpenArgs,
    out: u32,
) -> Result<(), Errno> {
    let (root, inheriting) = dir_fd(ctx, fd, rights::PATH_OPEN)?;
    let path = guest_path(mem, path.0, path.1, PATH_MAX)?;
    if a.oflags & !oflags::ALL != 0 || a.fdflags & !fdflags::ALL != 0 {
        return Err(Errno::Inval);
    }
    if (a.rights_base | a.rights_inheriting) & !inheriting != 0 {
        return Err(Errno::Notcapable);
    }
    slice(mem, out, 4)?;
    ctx.fds.check_room()?;
    let follow = a.dirflags & lookupflags::SYMLINK_FOLLOW != 0;
    let dir_rights = ctx.fds.get(fd)?.rights_base;
    let can_create = dir_rights & rights::PATH_CREATE_FILE != 0;
    // Truncating changes the file whatever the access mode asked for, so it
    // needs the directory's right to change sizes (a read-only directory
    // lacks it), as wasmtime's preview1 requires.
    if a.oflags & oflags::TRUNC != 0 && dir_rights & rights::PATH_FILESTAT_SET_SIZE == 0 {
        return Err(Errno::Notcapable);
    }
    let now = ctx.now_ns();
    let (ino, kind) = {
        let mut fs = ctx.fs()?;
        let (ino, kind, created) = if a.oflags & oflags::CREAT != 0 {
            let parent = resolve_parent(&**fs, root, path, &ctx.meter)?;
            match parent.last {
                Last::Name(name) => match fs.lookup(parent.dir, name) {
                    Ok(_) if a.oflags & oflags::EXCL != 0 => return Err(Errno::Exist),
                    Ok(_) => match resolve(&**fs, root, path, follow, &ctx.meter) {
                        Ok((ino, kind)) => (ino, kind, false),
                        // A dangling symlink: POSIX creates the file it points to.
                        Err(Errno::Noent) if follow => {
                            if !can_create {
                                return Err(Errno::Notcapable);
                            }
                            let (dir, name) = resolve_dangling(&**fs, root, path, &ctx.meter)?;
                            ctx.charge(cost::ENTRY_CHANGE)?;
                            (fs.create_file(dir, &name, now)?, FileKind::Regular, true)
                        }
                        Err(e) => return Err(e),
                    },
                    Err(Errno::Noent) => {
                        if !can_create {
                            return Err(Errno::Notcapable);
                        }
                        if parent.trailing_slash {
                            return Err(Errno::Isdir);
                        }
                        ctx.charge(cost::ENTRY_CHANGE)?;
                        (
                            fs.create_file(parent.dir, name, now)?,
                            FileKind::Regular,
                            true,
                        )
                    }
                    Err(e) => return Err(e),
                },
                Last::Dot | Last::DotDot if a.oflags & oflags::EXCL != 0 => {
                    return Err(Errno::Exist)
                }
                Last::Dot | Last::DotDot => {
                    let (ino, kind) = resolve(&**fs, root, path, true, &ctx.meter)?;
                    (ino, kind, false)
                }
            }
        } else {
            let (ino, kind) = resolve(&**fs, root, path, follow, &ctx.meter)?;
            (ino, kind, false)
        };
        match kind {
            FileKind::Symlink => return Err(Errno::Loop),
            FileKind::Regular if a.oflags & oflags::DIRECTORY != 0 => return Err(Errno::Notdir),
            FileKind::Directory
                if a.rights_base & rights::FD_WRITE != 0
                    || a.oflags & (oflags::TRUNC | oflags::CREAT) != 0 =>
            {
                return Err(Errno::Isdir)
            }
            _ => {}
        }
        if kind == FileKind::Regular && a.oflags & oflags::TRUNC != 0 && !created {
            charge_resize(ctx, &**fs, ino, 0)?;
            fs.set_size(ino, 0, now)?;
        }
        ctx.charge(cost::RECORD_WRITE)?;
        fs.retain(ino)?;
        (ino, kind)
    };
    let entry = match kind {
        FileKind::Directory => FdEntry {
            kind: FdKind::Dir { ino, preopen: None },
            rights_base: a.rights_base & rights::DIR,
            rights_inheriting: a.rights_inheriting,
            flags: a.fdflags,
        },
        _ => FdEntry {
            kind: FdKind::File { ino, offset: 0 },
            rights_base: a.rights_base & rights::FILE,
            rights_inheriting: 0,
            flags: a.fdflags,
        },
    };
    match ctx.fds.insert(entry) {
        Ok(new_fd) => write_u32(mem, out, new_fd),
        Err(e) => {
            ctx.fs()?.release(ino)?;
            Err(e)
        }
    }
}

pub(crate) fn path_create_directory(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    fd: u32,
    path: u32,
    len: u32,
) -> Result<(), Errno> {
    let (root, _) = dir_fd(ctx, fd, rights::PATH_CREATE_DIRECTORY)?;
    let path = guest_path(mem, path, len, PATH_MAX)?;
    let now = ctx.now_ns();
    let mut fs = ctx.fs()?;
    let parent = resolve_parent(&**fs, root, path, &ctx.meter)?;
    ctx.charge(cost::ENTRY_CHANGE)?;
    fs.mkdir(parent.dir, parent.name_or(Errno::Exist)?, now)
        .map(|_| ())
}

pub(crate) fn path_remove_directory(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    fd: u32,
    path: u32,
    len: u32,
) -> Result<(), Errno> {
    let (root, _) = dir_fd(ctx, fd, rights::PATH_REMOVE_DIRECTORY)?;
    let path = guest_path(mem, path, len, PATH_MAX)?;
    let now = ctx.now_ns();
    let mut fs = ctx.fs()?;
    let parent = resolve_parent(&**fs, root, path, &ctx.meter)?;
    let name = match parent.last {
        Last::Name(n) => n,
        Last::Dot => return Err(Errno::Inval),
        Last::DotDot => return Err(Errno::Notempty),
    };
    ctx.charge(cost::ENTRY_CHANGE)?;
    fs.rmdir(parent.dir, name, now)
}

pub(crate) fn path_unlink_file(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    fd: u32,
    path: u32,
    len: u32,
) -> Result<(), Errno> {
    let (root, _) = dir_fd(ctx, fd, rights::PATH_UNLINK_FILE)?;
    let path = guest_path(mem, path, len, PATH_MAX)?;
    let now = ctx.now_ns();
    let mut fs = ctx.fs()?;
    let parent = resolve_parent(&**fs, root, path, &ctx.meter)?;
    let name = parent.name_or(Errno::Isdir)?;
    if parent.trailing_slash {
        let target = fs.lookup(parent.dir, name)?;
        return Err(if fs.getattr(target)?.kind == FileKind::Directory {
            Errno::Isdir
        } else {
            Errno::Notdir
        });
    }
    ctx.charge(cost::ENTRY_CHANGE)?;
    charge_last_link(ctx, &**fs, parent.dir, name)?;
    fs.unlink(parent.dir, name, now)
}

/// Charges freeing the file named `name` in `dir` if this is its last name (a
/// rename over it or an unlink): its chunks are deleted with it.
fn charge_last_link(
    ctx: &WasiCtx,
    fs: &dyn crate::fs::FileSystem,
    dir: Ino,
    name: &[u8],
) -> Result<(), Errno> {
    ctx.charge(cost::LOOKUP)?;
    let Ok(ino) = fs.lookup(dir, name) else {
        return Ok(());
    };
    let attr = fs.getattr(ino)?;
    if attr.kind == FileKind::Regular && attr.nlink == 1 {
        ctx.charge(cost::free_file(attr.size))?;
    }
    Ok(())
}

pub(crate) fn path_filestat_get(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    fd: u32,
    flags: u32,
    path: (u32, u32),
    out: u32,
) -> Result<(), Errno> {
    let (root, _) = dir_fd(ctx, fd, rights::PATH_FILESTAT_GET)?;
    let path = guest_path(mem, path.0, path.1, PATH_MAX)?;
    let follow = flags & lookupflags::SYMLINK_FOLLOW != 0;
    let attr = {
        let fs = ctx.fs()?;
        let (ino, _) = resolve(&**fs, root, path, follow, &ctx.meter)?;
        fs.getattr(ino)?
    };
    write_filestat(mem, out, Some(&attr), 0)
}

/// Times of `path_filestat_set_times`: `(atim, mtim, fst_flags)`.
pub(crate) type Times = (u64, u64, u16);

pub(crate) fn path_filestat_set_times(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    fd: u32,
    flags: u32,
    path: (u32, u32),
    t: Times,
) -> Result<(), Errno> {
    let (root, _) = dir_fd(ctx, fd, rights::PATH_FILESTAT_SET_TIMES)?;
    let path = guest_path(mem, path.0, path.1, PATH_MAX)?;
    let now = ctx.now_ns();
    let (a, m) = set_times_args(t.2, t.0, t.1, now)?;
    let mut fs = ctx.fs()?;
    let (ino, _) = resolve(
        &**fs,
        root,
        path,
        flags & lookupflags::SYMLINK_FOLLOW != 0,
        &ctx.meter,
    )?;
    ctx.charge(cost::RECORD_WRITE)?;
    fs.set_times(ino, a, m, now)
}

pub(crate) fn path_link(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    old: (u32, u32, u32, u32),
    new: (u32, u32, u32),
) -> Result<(), Errno> {
    let (old_fd, old_flags, old_ptr, old_len) = old;
    let (new_fd, new_ptr, new_len) = new;
    let (old_root, _) = dir_fd(ctx, old_fd, rights::PATH_LINK_SOURCE)?;
    let (new_root, _) = dir_fd(ctx, new_fd, rights::PATH_LINK_TARGET)?;
    let old_path = guest_path(mem, old_ptr, old_len, PATH_MAX)?;
    let new_path = guest_path(mem, new_ptr, new_len, PATH_MAX)?;
    let now = ctx.now_ns();
    let mut fs = ctx.fs()?;
    let (ino, _) = resolve(
        &**fs,
        old_root,
        old_path,
        old_flags & lookupflags::SYMLINK_FOLLOW != 0,
        &ctx.meter,
    )?;
    let parent = resolve_parent(&**fs, new_root, new_path, &ctx.meter)?;
    ctx.charge(cost::ENTRY_CHANGE)?;
    fs.link(ino, parent.dir, parent.name_or(Errno::Exist)?, now)
}

pub(crate) fn path_readlink(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    fd: u32,
    path: (u32, u32),
    buf: u32,
    buf_len: u32,
    used: u32,
) -> Result<(), Errno> {
    let (root, _) = dir_fd(ctx, fd, rights::PATH_READLINK)?;
    let path = guest_path(mem, path.0, path.1, PATH_MAX)?;
    slice(mem, used, 4)?;
    let target = {
        let fs = ctx.fs()?;
        let (ino, kind) = resolve(&**fs, root, path, false, &ctx.meter)?;
        if kind != FileKind::Symlink {
            return Err(Errno::Inval);
        }
        fs.readlink(ino)?
    };
    let dst = slice_mut(mem, buf, buf_len)?;
    let n = target.len().min(dst.len());
    ctx.charge(cost::per(n as u64, cost::COPY_BYTE))?;
    if let (Some(d), Some(s)) = (dst.get_mut(..n), target.get(..n)) {
        d.copy_from_slice(s);
    }
    write_u32(mem, used, n as u32)
}

pub(crate) fn path_rename(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    old: (u32, u32, u32),
    new: (u32, u32, u32),
) -> Result<(), Errno> {
    let (old_root, _) = dir_fd(ctx, old.0, rights::PATH_RENAME_SOURCE)?;
    let (new_root, _) = dir_fd(ctx, new.0, rights::PATH_RENAME_TARGET)?;
    let old_path = guest_path(mem, old.1, old.2, PATH_MAX)?;
    let new_path = guest_path(mem, new.1, new.2, PATH_MAX)?;
    let now = ctx.now_ns();
    let mut fs = ctx.fs()?;
    let from = resolve_parent(&**fs, old_root, old_path, &ctx.meter)?;
    let to = resolve_parent(&**fs, new_root, new_path, &ctx.meter)?;
    let from_name = from.name_or(Errno::Inval)?;
    let to_name = to.name_or(Errno::Inval)?;
    ctx.charge(cost::LOOKUP)?;
    let src_kind = fs.getattr(fs.lookup(from.dir, from_name)?)?.kind;
    if (from.trailing_slash || to.trailing_slash) && src_kind != FileKind::Directory {
        return Err(Errno::Notdir);
    }
    ctx.charge(cost::per(2, cost::ENTRY_CHANGE))?;
    if src_kind == FileKind::Directory {
        // The storage walks the target's ancestors (see `cost::ANCESTOR_STEP`).
        ctx.charge(cost::per(fs.usage().inodes, cost::ANCESTOR_STEP))?;
    }
    charge_last_link(ctx, &**fs, to.dir, to_name)?;
    fs.rename(from.dir, from_name, to.dir, to_name, now)
}

pub(crate) fn path_symlink(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    target: (u32, u32),
    fd: u32,
    path: (u32, u32),
) -> Result<(), Errno> {
    let (root, _) = dir_fd(ctx, fd, rights::PATH_SYMLINK)?;
    let target = guest_path(mem, target.0, target.1, PATH_MAX)?;
    let path = guest_path(mem, path.0, path.1, PATH_MAX)?;
    if target.first() == Some(&b'/') {
        // It could never be followed (absolute targets are outside every capability).
        return Err(Errno::Perm);
    }
    let now = ctx.now_ns();
    let mut fs = ctx.fs()?;
    let parent = resolve_parent(&**fs, root, path, &ctx.meter)?;
    ctx.charge(
        cost::ENTRY_CHANGE.saturating_add(cost::per(target.len() as u64, cost::STORE_BYTE)),
    )?;
    fs.symlink(parent.dir, parent.name_or(Errno::Exist)?, target, now)
        .map(|_| ())
}
