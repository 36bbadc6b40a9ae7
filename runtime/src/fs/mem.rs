//! `MemFs`: the in-memory [`FileSystem`].
//!
//! Inodes live in a vector indexed by inode number, with a sorted set of free slots so
//! the lowest free number is always reused (history-independent numbering). Directory
//! entries are `BTreeMap`s so listings come out sorted without a sort per call. Limits
//! are checked before anything is changed, so a failing call leaves no trace; savepoints
//! are served by the undo log in `fs::undo`.

use std::collections::{BTreeMap, BTreeSet};

use super::undo::{Body, Inode, Meta, UndoLog, UndoOp};
use super::{
    check_name, Attr, DirEntry, FileKind, FileSystem, FsLimits, FsUsage, Ino, Savepoint, ROOT_INO,
};
use crate::errno::Errno;

/// The in-memory filesystem.
#[derive(Debug)]
pub struct MemFs {
    /// Slot `i` holds inode `i`; slot 0 is never used.
    inodes: Vec<Option<Inode>>,
    /// Empty slots below `inodes.len()`, so allocation can take the lowest.
    free: BTreeSet<Ino>,
    limits: FsLimits,
    usage: FsUsage,
    undo: UndoLog,
}

impl MemFs {
    /// An empty filesystem (just the root directory, with times `now_ns`).
    pub fn new(limits: FsLimits, now_ns: u64) -> MemFs {
        let root = Inode {
            meta: Meta {
                nlink: 2,
                atime_ns: now_ns,
                mtime_ns: now_ns,
                ctime_ns: now_ns,
                parent: ROOT_INO,
                open: 0,
            },
            body: Body::Dir(BTreeMap::new()),
        };
        MemFs {
            inodes: vec![None, Some(root)],
            free: BTreeSet::new(),
            limits,
            usage: FsUsage {
                bytes: 0,
                inodes: 1,
            },
            undo: UndoLog::default(),
        }
    }

    /// The limits this filesystem enforces.
    pub fn limits(&self) -> FsLimits {
        self.limits
    }

    fn node(&self, ino: Ino) -> Result<&Inode, Errno> {
        usize::try_from(ino)
            .ok()
            .and_then(|i| self.inodes.get(i))
            .and_then(Option::as_ref)
            .ok_or(Errno::Noent)
    }

    fn node_mut(&mut self, ino: Ino) -> Result<&mut Inode, Errno> {
        usize::try_from(ino)
            .ok()
            .and_then(|i| self.inodes.get_mut(i))
            .and_then(Option::as_mut)
            .ok_or(Errno::Noent)
    }

    /// The entries of a live directory (`ENOTDIR` / `ENOENT` otherwise).
    fn dir(&self, dir: Ino) -> Result<&BTreeMap<Vec<u8>, Ino>, Errno> {
        let node = self.node(dir)?;
        match &node.body {
            Body::Dir(entries) => Ok(entries),
            _ => Err(Errno::Notdir),
        }
    }

    /// Like [`Self::dir`] but also refuses removed directories, for calls that add names.
    fn live_dir(&self, dir: Ino) -> Result<&BTreeMap<Vec<u8>, Ino>, Errno> {
        let entries = self.dir(dir)?;
        if self.node(dir)?.meta.nlink == 0 {
            return Err(Errno::Noent);
        }
        Ok(entries)
    }

    /// Changes the metadata of `ino`, recording the old value for undo.
    fn update_meta(&mut self, ino: Ino, f: impl FnOnce(&mut Meta)) -> Result<(), Errno> {
        let node = self.node_mut(ino)?;
        let old = node.meta;
        f(&mut node.meta);
        self.undo.record(|| UndoOp::Meta { ino, meta: old });
        Ok(())
    }

    /// Points `dir[name]` at `ino` (None removes it), recording the old value.
    fn set_entry(&mut self, dir: Ino, name: &[u8], ino: Option<Ino>) -> Result<(), Errno> {
        let Body::Dir(entries) = &mut self.node_mut(dir)?.body else {
            return Err(Errno::Notdir);
        };
        let old = match ino {
            Some(ino) => entries.insert(name.to_vec(), ino),
            None => entries.remove(name),
        };
        self.undo.record(|| UndoOp::DirEntry {
            dir,
            name: name.to_vec(),
            old,
        });
        Ok(())
    }

    /// Allocates the lowest free inode number for `inode`, enforcing `max_inodes`.
    fn alloc(&mut self, inode: Inode, bytes: u64) -> Result<Ino, Errno> {
        if self.usage.inodes >= self.limits.max_inodes {
            return Err(Errno::Nospc);
        }
        self.charge_bytes(bytes)?;
        let ino = match self.free.pop_first() {
            Some(ino) => ino,
            None => self.inodes.len() as Ino,
        };
        let idx = usize::try_from(ino).map_err(|_| Errno::Nospc)?;
        if idx == self.inodes.len() {
            self.inodes.push(Some(inode));
        } else if let Some(slot) = self.inodes.get_mut(idx) {
            *slot = Some(inode);
        }
        self.usage.inodes += 1;
        self.usage.bytes += bytes;
        self.undo.record(|| UndoOp::Alloc { ino });
        Ok(ino)
    }

    /// Checks that `extra` more bytes fit in the quota.
    fn charge_bytes(&self, extra: u64) -> Result<(), Errno> {
        match self.usage.bytes.checked_add(extra) {
            Some(total) if total <= self.limits.max_total_bytes => Ok(()),
            _ => Err(Errno::Nospc),
        }
    }

    /// Frees `ino` if no name and no open fd refers to it any more.
    fn maybe_free(&mut self, ino: Ino) -> Result<(), Errno> {
        let meta = self.node(ino)?.meta;
        if meta.nlink > 0 || meta.open > 0 || ino == ROOT_INO {
            return Ok(());
        }
        let idx = usize::try_from(ino).map_err(|_| Errno::Noent)?;
        let inode = self
            .inodes
            .get_mut(idx)
            .and_then(Option::take)
            .ok_or(Errno::Noent)?;
        self.usage.inodes -= 1;
        self.usage.bytes -= body_bytes(&inode.body);
        self.free.insert(ino);
        if self.undo.active() {
            self.undo.record(|| UndoOp::Freed {
                ino,
                inode: Box::new(inode),
            });
        }
        Ok(())
    }

    /// Creates a new inode named `name` in `dir`.
    fn create(&mut self, dir: Ino, name: &[u8], body: Body, now_ns: u64) -> Result<Ino, Errno> {
        check_name(name)?;
        if self.live_dir(dir)?.contains_key(name) {
            return Err(Errno::Exist);
        }
        let is_dir = matches!(body, Body::Dir(_));
        let meta = Meta {
            nlink: if is_dir { 2 } else { 1 },
            atime_ns: now_ns,
            mtime_ns: now_ns,
            ctime_ns: now_ns,
            parent: dir,
            open: 0,
        };
        let bytes = body_bytes(&body);
        let ino = self.alloc(Inode { meta, body }, bytes)?;
        self.set_entry(dir, name, Some(ino))?;
        self.update_meta(dir, |m| {
            m.mtime_ns = now_ns;
            m.ctime_ns = now_ns;
            if is_dir {
                m.nlink += 1;
            }
        })?;
        Ok(ino)
    }

    /// Mutable file bytes of a regular file (`EISDIR` / `EINVAL` otherwise).
    fn file_data(&mut self, ino: Ino) -> Result<&mut Vec<u8>, Errno> {
        match &mut self.node_mut(ino)?.body {
            Body::File(data) => Ok(data),
            Body::Dir(_) => Err(Errno::Isdir),
            Body::Symlink(_) => Err(Errno::Inval),
        }
    }

    /// Resizes a file to `new_len` within the limits, recording what is lost for undo.
    fn resize(&mut self, ino: Ino, new_len: u64) -> Result<(), Errno> {
        if new_len > self.limits.max_file_size {
            return Err(Errno::Fbig);
        }
        let old_len = self.file_data(ino)?.len() as u64;
        if new_len > old_len {
            self.charge_bytes(new_len - old_len)?;
        }
        let new_usize = usize::try_from(new_len).map_err(|_| Errno::Fbig)?;
        let active = self.undo.active();
        let data = self.file_data(ino)?;
        let old = if active && new_len < old_len {
            data.get(new_usize..).map(<[u8]>::to_vec)
        } else {
            None
        };
        data.resize(new_usize, 0);
        self.usage.bytes = self.usage.bytes - old_len + new_len;
        self.undo.record(|| UndoOp::FileData {
            ino,
            offset: new_len,
            old: old.unwrap_or_default(),
            old_len,
        });
        Ok(())
    }

    /// Whether `ino` is `ancestor` or lies below it (walks `parent` links up to the root).
    fn is_within(&self, mut ino: Ino, ancestor: Ino) -> Result<bool, Errno> {
        // Bounded by the inode count: parent links of live directories form a tree.
        for _ in 0..=self.inodes.len() {
            if ino == ancestor {
                return Ok(true);
            }
            if ino == ROOT_INO {
                return Ok(false);
            }
            ino = self.node(ino)?.meta.parent;
        }
        Err(Errno::Io)
    }

    /// Applies one undo step.
    fn apply_undo(&mut self, op: UndoOp) {
        match op {
            UndoOp::Meta { ino, meta } => {
                if let Ok(node) = self.node_mut(ino) {
                    node.meta = meta;
                }
            }
            UndoOp::Alloc { ino } => {
                if let Some(slot) = usize::try_from(ino)
                    .ok()
                    .and_then(|i| self.inodes.get_mut(i))
                {
                    *slot = None;
                    self.free.insert(ino);
                }
            }
            UndoOp::Freed { ino, inode } => {
                if let Some(slot) = usize::try_from(ino)
                    .ok()
                    .and_then(|i| self.inodes.get_mut(i))
                {
                    *slot = Some(*inode);
                    self.free.remove(&ino);
                }
            }
            UndoOp::DirEntry { dir, name, old } => {
                if let Ok(Inode {
                    body: Body::Dir(entries),
                    ..
                }) = self.node_mut(dir)
                {
                    match old {
                        Some(ino) => entries.insert(name, ino),
                        None => entries.remove(&name),
                    };
                }
            }
            UndoOp::FileData {
                ino,
                offset,
                old,
                old_len,
            } => {
                if let Ok(Inode {
                    body: Body::File(data),
                    ..
                }) = self.node_mut(ino)
                {
                    data.resize(usize::try_from(old_len).unwrap_or(0), 0);
                    let start = usize::try_from(offset).unwrap_or(usize::MAX);
                    if let Some(dst) = start
                        .checked_add(old.len())
                        .and_then(|end| data.get_mut(start..end))
                    {
                        dst.copy_from_slice(&old);
                    }
                }
            }
        }
    }
}

/// Bytes an inode body counts against the quota.
fn body_bytes(body: &Body) -> u64 {
    match body {
        Body::File(d) | Body::Symlink(d) => d.len() as u64,
        Body::Dir(_) => 0,
    }
}

fn kind_of(body: &Body) -> FileKind {
    match body {
        Body::File(_) => FileKind::Regular,
        Body::Dir(_) => FileKind::Directory,
        Body::Symlink(_) => FileKind::Symlink,
    }
}

impl FileSystem for MemFs {
    fn getattr(&self, ino: Ino) -> Result<Attr, Errno> {
        let node = self.node(ino)?;
        let size = match &node.body {
            Body::File(d) | Body::Symlink(d) => d.len() as u64,
            Body::Dir(e) => e.len() as u64,
        };
        Ok(Attr {
            ino,
            kind: kind_of(&node.body),
            size,
            nlink: node.meta.nlink,
            atime_ns: node.meta.atime_ns,
            mtime_ns: node.meta.mtime_ns,
            ctime_ns: node.meta.ctime_ns,
        })
    }

    fn lookup(&self, dir: Ino, name: &[u8]) -> Result<Ino, Errno> {
        if name.len() > super::NAME_MAX {
            return Err(Errno::Nametoolong);
        }
        self.dir(dir)?.get(name).copied().ok_or(Errno::Noent)
    }

    fn readdir(&self, dir: Ino) -> Result<Vec<DirEntry>, Errno> {
        let entries = self.dir(dir)?;
        let mut out = Vec::with_capacity(entries.len());
        for (name, &ino) in entries {
            let kind = kind_of(&self.node(ino)?.body);
            out.push(DirEntry {
                name: name.clone(),
                ino,
                kind,
            });
        }
        Ok(out)
    }

    fn read(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let data = match &self.node(ino)?.body {
            Body::File(d) => d,
            Body::Dir(_) => return Err(Errno::Isdir),
            Body::Symlink(_) => return Err(Errno::Inval),
        };
        let start = match usize::try_from(offset) {
            Ok(s) if s < data.len() => s,
            _ => return Ok(0),
        };
        let src = data.get(start..).unwrap_or_default();
        let n = src.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), src.get(..n)) {
            dst.copy_from_slice(src);
        }
        Ok(n)
    }

    fn readlink(&self, ino: Ino) -> Result<Vec<u8>, Errno> {
        match &self.node(ino)?.body {
            Body::Symlink(t) => Ok(t.clone()),
            _ => Err(Errno::Inval),
        }
    }

    fn create_file(&mut self, dir: Ino, name: &[u8], now_ns: u64) -> Result<Ino, Errno> {
        self.create(dir, name, Body::File(Vec::new()), now_ns)
    }

    fn mkdir(&mut self, dir: Ino, name: &[u8], now_ns: u64) -> Result<Ino, Errno> {
        self.create(dir, name, Body::Dir(BTreeMap::new()), now_ns)
    }

    fn symlink(&mut self, dir: Ino, name: &[u8], target: &[u8], now_ns: u64) -> Result<Ino, Errno> {
        if target.is_empty() {
            return Err(Errno::Noent);
        }
        if target.len() > 4096 {
            return Err(Errno::Nametoolong);
        }
        self.create(dir, name, Body::Symlink(target.to_vec()), now_ns)
    }

    fn link(&mut self, ino: Ino, dir: Ino, name: &[u8], now_ns: u64) -> Result<(), Errno> {
        check_name(name)?;
        let node = self.node(ino)?;
        if matches!(node.body, Body::Dir(_)) {
            return Err(Errno::Perm);
        }
        if node.meta.nlink == 0 {
            return Err(Errno::Noent);
        }
        if self.live_dir(dir)?.contains_key(name) {
            return Err(Errno::Exist);
        }
        self.set_entry(dir, name, Some(ino))?;
        self.update_meta(ino, |m| {
            m.nlink += 1;
            m.ctime_ns = now_ns;
        })?;
        self.update_meta(dir, |m| {
            m.mtime_ns = now_ns;
            m.ctime_ns = now_ns;
        })
    }

    fn unlink(&mut self, dir: Ino, name: &[u8], now_ns: u64) -> Result<(), Errno> {
        let ino = self.lookup(dir, name)?;
        if matches!(self.node(ino)?.body, Body::Dir(_)) {
            return Err(Errno::Isdir);
        }
        self.set_entry(dir, name, None)?;
        self.update_meta(ino, |m| {
            m.nlink -= 1;
            m.ctime_ns = now_ns;
        })?;
        self.update_meta(dir, |m| {
            m.mtime_ns = now_ns;
            m.ctime_ns = now_ns;
        })?;
        self.maybe_free(ino)
    }

    fn rmdir(&mut self, dir: Ino, name: &[u8], now_ns: u64) -> Result<(), Errno> {
        let ino = self.lookup(dir, name)?;
        if !self.dir(ino)?.is_empty() {
            return Err(Errno::Notempty);
        }
        self.set_entry(dir, name, None)?;
        self.update_meta(ino, |m| {
            m.nlink = 0;
            m.ctime_ns = now_ns;
        })?;
        self.update_meta(dir, |m| {
            m.nlink -= 1;
            m.mtime_ns = now_ns;
            m.ctime_ns = now_ns;
        })?;
        self.maybe_free(ino)
    }

    fn rename(
        &mut self,
        from_dir: Ino,
        from: &[u8],
        to_dir: Ino,
        to: &[u8],
        now_ns: u64,
    ) -> Result<(), Errno> {
        let src = self.lookup(from_dir, from)?;
        check_name(to)?;
        self.live_dir(to_dir)?;
        let src_is_dir = matches!(self.node(src)?.body, Body::Dir(_));
        if src_is_dir && self.is_within(to_dir, src)? {
            return Err(Errno::Inval);
        }
        let existing = self.dir(to_dir)?.get(to).copied();
        if let Some(dst) = existing {
            if dst == src {
                return Ok(()); // POSIX: two names of one inode — nothing to do.
            }
            let dst_is_dir = matches!(self.node(dst)?.body, Body::Dir(_));
            match (src_is_dir, dst_is_dir) {
                (true, false) => return Err(Errno::Notdir),
                (false, true) => return Err(Errno::Isdir),
                (true, true) if !self.dir(dst)?.is_empty() => return Err(Errno::Notempty),
                _ => {}
            }
            self.update_meta(dst, |m| {
                m.nlink = if dst_is_dir { 0 } else { m.nlink - 1 };
                m.ctime_ns = now_ns;
            })?;
            if dst_is_dir {
                self.update_meta(to_dir, |m| m.nlink -= 1)?;
            }
        }
        self.set_entry(from_dir, from, None)?;
        self.set_entry(to_dir, to, Some(src))?;
        self.update_meta(src, |m| {
            m.ctime_ns = now_ns;
            if src_is_dir {
                m.parent = to_dir;
            }
        })?;
        let moved_dir = src_is_dir && from_dir != to_dir;
        self.update_meta(from_dir, |m| {
            m.mtime_ns = now_ns;
            m.ctime_ns = now_ns;
            if moved_dir {
                m.nlink -= 1;
            }
        })?;
        self.update_meta(to_dir, |m| {
            m.mtime_ns = now_ns;
            m.ctime_ns = now_ns;
            if moved_dir {
                m.nlink += 1;
            }
        })?;
        if let Some(dst) = existing {
            self.maybe_free(dst)?;
        }
        Ok(())
    }

    fn write(&mut self, ino: Ino, offset: u64, data: &[u8], now_ns: u64) -> Result<usize, Errno> {
        let old_len = self.file_data(ino)?.len() as u64;
        if data.is_empty() {
            return Ok(0);
        }
        // Write as much as the limits allow (a short count, as POSIX `write` gives on a
        // full disk); fail only when not even one byte fits.
        let room = self.limits.max_total_bytes.saturating_sub(self.usage.bytes);
        let wanted = offset.saturating_add(data.len() as u64);
        // The file may grow by at most `room` bytes (holes count: they read as zeros).
        let end = wanted
            .min(self.limits.max_file_size)
            .min(old_len.saturating_add(room));
        if end <= offset {
            return Err(if offset >= self.limits.max_file_size {
                Errno::Fbig
            } else {
                Errno::Nospc
            });
        }
        let data = data.get(..(end - offset) as usize).ok_or(Errno::Fbig)?;
        let (start, stop) = match (usize::try_from(offset), usize::try_from(end)) {
            (Ok(s), Ok(e)) => (s, e),
            _ => return Err(Errno::Fbig),
        };
        let active = self.undo.active();
        let file = self.file_data(ino)?;
        let old = if active {
            let keep_end = stop.min(file.len());
            file.get(start..keep_end)
                .map(<[u8]>::to_vec)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        if stop > file.len() {
            file.resize(stop, 0);
        }
        if let Some(dst) = file.get_mut(start..stop) {
            dst.copy_from_slice(data);
        }
        self.usage.bytes += end.saturating_sub(old_len);
        self.undo.record(|| UndoOp::FileData {
            ino,
            offset,
            old,
            old_len,
        });
        self.update_meta(ino, |m| {
            m.mtime_ns = now_ns;
            m.ctime_ns = now_ns;
        })?;
        Ok(data.len())
    }

    fn set_size(&mut self, ino: Ino, size: u64, now_ns: u64) -> Result<(), Errno> {
        self.resize(ino, size)?;
        self.update_meta(ino, |m| {
            m.mtime_ns = now_ns;
            m.ctime_ns = now_ns;
        })
    }

    fn set_times(
        &mut self,
        ino: Ino,
        atime_ns: Option<u64>,
        mtime_ns: Option<u64>,
        now_ns: u64,
    ) -> Result<(), Errno> {
        self.update_meta(ino, |m| {
            if let Some(a) = atime_ns {
                m.atime_ns = a;
            }
            if let Some(t) = mtime_ns {
                m.mtime_ns = t;
            }
            m.ctime_ns = now_ns;
        })
    }

    fn retain(&mut self, ino: Ino) -> Result<(), Errno> {
        self.update_meta(ino, |m| m.open += 1)
    }

    fn release(&mut self, ino: Ino) -> Result<(), Errno> {
        if self.node(ino)?.meta.open == 0 {
            return Err(Errno::Inval);
        }
        self.update_meta(ino, |m| m.open -= 1)?;
        self.maybe_free(ino)
    }

    fn savepoint(&mut self) -> Savepoint {
        self.undo.savepoint(self.usage)
    }

    fn rollback_to(&mut self, sp: Savepoint) {
        if let Some((ops, usage)) = self.undo.rollback_to(sp) {
            for op in ops {
                self.apply_undo(op);
            }
            self.usage = usage;
        }
    }

    fn release_savepoint(&mut self, sp: Savepoint) {
        self.undo.release(sp);
    }

    fn usage(&self) -> FsUsage {
        self.usage
    }

    fn digest(&self) -> [u8; 32] {
        super::digest::digest(self)
    }
}
