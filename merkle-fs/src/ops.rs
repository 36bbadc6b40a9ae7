//! Mutating filesystem operations on a [`WorkingSet`], with the semantics of the
//! runtime's `FileSystem` trait (POSIX rules, lowest-free inodes, logical times).

use crate::codec::{Dirent, Inode, InodeBody};
use crate::error::{Error, Result};
use crate::keys;
use crate::read::{chunk_count, chunk_len, FsRead};
use crate::{FileKind, Ino, WorkingSet, CHUNK_SIZE, INLINE_MAX, NAME_MAX, ROOT_INO};

fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// Checks one name component: not empty, not "." or "..", no '/' or NUL, ≤ NAME_MAX.
pub fn check_name(name: &[u8]) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(Error::NameTooLong {
            len: name.len(),
            max: NAME_MAX,
        });
    }
    if name.is_empty() || name == b"." || name == b".." || name.iter().any(|&b| b == b'/' || b == 0)
    {
        return Err(Error::Invalid(format!(
            "bad name component {:?}",
            show(name)
        )));
    }
    Ok(())
}

impl WorkingSet {
    /// The directory inode `dir`, or `ENOTDIR`.
    fn dir_inode(&self, dir: Ino) -> Result<Inode> {
        let i = self.inode(dir)?;
        match i.body {
            InodeBody::Dir { .. } => Ok(i),
            _ => Err(Error::NotDir(format!("inode {dir}"))),
        }
    }

    /// A directory that can still receive entries: `ENOENT` once it was removed (it
    /// may live on while open, but nothing can be created in it).
    fn live_dir(&self, dir: Ino) -> Result<Inode> {
        let d = self.dir_inode(dir)?;
        if d.nlink == 0 {
            return Err(Error::NotFound(format!(
                "directory inode {dir} was removed"
            )));
        }
        Ok(d)
    }

    /// Adjusts a directory's entry count and link count, stamps its times, and marks its
    /// listing for rehashing.
    fn touch_dir(
        &mut self,
        dir: Ino,
        entries_delta: i64,
        nlink_delta: i64,
        now_ns: u64,
    ) -> Result<()> {
        let d = self.dir_inode(dir)?;
        self.touch_dir_inode(dir, d, entries_delta, nlink_delta, now_ns);
        Ok(())
    }

    /// [`WorkingSet::touch_dir`] given the directory's current inode record `d`.
    fn touch_dir_inode(
        &mut self,
        dir: Ino,
        mut d: Inode,
        entries_delta: i64,
        nlink_delta: i64,
        now_ns: u64,
    ) {
        if let InodeBody::Dir { entries, .. } = &mut d.body {
            *entries = entries.saturating_add_signed(entries_delta);
        }
        d.nlink = d.nlink.saturating_add_signed(nlink_delta);
        d.mtime_ns = now_ns;
        d.ctime_ns = now_ns;
        self.put_inode(dir, &d);
        self.dirty_dirs.insert(dir);
    }

    /// Creates a new inode named `name` in `dir`.
    fn create(&mut self, dir: Ino, name: &[u8], body: InodeBody, now_ns: u64) -> Result<Ino> {
        check_name(name)?;
        let parent = self.live_dir(dir)?;
        if self.entry_of_dir(dir, name)?.is_some() {
            return Err(Error::Exists {
                dir,
                name: show(name),
            });
        }
        if self.usage.inodes >= self.limits.max_inodes {
            return Err(Error::NoSpace(format!(
                "inode limit {} reached",
                self.limits.max_inodes
            )));
        }
        let bytes = match &body {
            InodeBody::Symlink { target } => target.len() as u64,
            _ => 0,
        };
        if self.usage.bytes.saturating_add(bytes) > self.limits.max_total_bytes {
            return Err(Error::NoSpace(format!(
                "byte quota {} reached",
                self.limits.max_total_bytes
            )));
        }
        let is_dir = matches!(body, InodeBody::Dir { .. });
        if is_dir {
            // One base read per new directory lets every lookup of a name in it skip
            // the base when the inode did not exist there (see `WorkingSet::get`).
            let mut probe = self.alloc.clone();
            self.note_base(&keys::inode(probe.alloc()))?;
        }
        let ino = self.alloc.alloc();
        let inode = Inode {
            body,
            nlink: if is_dir { 2 } else { 1 },
            open: 0,
            atime_ns: now_ns,
            mtime_ns: now_ns,
            ctime_ns: now_ns,
        };
        let kind = inode.kind();
        self.put_inode(ino, &inode);
        if is_dir {
            self.dirty_dirs.insert(ino);
        }
        self.put(keys::dirent(dir, name), Some(Dirent { ino, kind }.encode()));
        // `parent` is still current: only the new inode and entry were written since.
        self.touch_dir_inode(dir, parent, 1, if is_dir { 1 } else { 0 }, now_ns);
        self.usage.inodes += 1;
        self.usage.bytes += bytes;
        Ok(ino)
    }

    /// Creates an empty regular file.
    pub fn create_file(&mut self, dir: Ino, name: &[u8], now_ns: u64) -> Result<Ino> {
        self.create(
            dir,
            name,
            InodeBody::File {
                size: 0,
                inline: Vec::new(),
            },
            now_ns,
        )
    }

    /// Creates an empty directory.
    pub fn mkdir(&mut self, dir: Ino, name: &[u8], now_ns: u64) -> Result<Ino> {
        let body = InodeBody::Dir {
            entries: 0,
            parent: dir,
            listing_root: crate::hash::listing_root(&[]),
        };
        self.create(dir, name, body, now_ns)
    }

    /// Creates a symlink holding `target` verbatim.
    pub fn symlink(&mut self, dir: Ino, name: &[u8], target: &[u8], now_ns: u64) -> Result<Ino> {
        self.create(
            dir,
            name,
            InodeBody::Symlink {
                target: target.to_vec(),
            },
            now_ns,
        )
    }

    /// Adds a hard link to a non-directory.
    pub fn link(&mut self, ino: Ino, dir: Ino, name: &[u8], now_ns: u64) -> Result<()> {
        check_name(name)?;
        let mut i = self.inode(ino)?;
        if i.kind() == FileKind::Directory {
            return Err(Error::NotPermitted(format!(
                "hard link to directory inode {ino}"
            )));
        }
        self.live_dir(dir)?;
        if self.entry(dir, name)?.is_some() {
            return Err(Error::Exists {
                dir,
                name: show(name),
            });
        }
        i.nlink += 1;
        i.ctime_ns = now_ns;
        let kind = i.kind();
        self.put_inode(ino, &i);
        self.put(keys::dirent(dir, name), Some(Dirent { ino, kind }.encode()));
        self.touch_dir(dir, 1, 0, now_ns)
    }

    /// Drops one name of `ino`; frees it when no name and no open handle remain.
    fn drop_link(&mut self, ino: Ino, now_ns: u64) -> Result<()> {
        let mut i = self.inode(ino)?;
        if let InodeBody::Dir { parent, .. } = &mut i.body {
            // A removed directory is detached: its parent no longer names it.
            *parent = 0;
            i.nlink = 0;
        } else {
            i.nlink = i.nlink.saturating_sub(1);
        }
        i.ctime_ns = now_ns;
        if i.nlink == 0 && i.open == 0 {
            self.free_inode(ino, &i);
        } else {
            self.put_inode(ino, &i);
        }
        Ok(())
    }

    /// Deletes an inode and its content and returns its number to the allocator.
    fn free_inode(&mut self, ino: Ino, i: &Inode) {
        match &i.body {
            InodeBody::File { size, .. } => {
                for idx in 0..chunk_count(*size) {
                    self.put(keys::chunk(ino, idx), None);
                }
                self.usage.bytes = self.usage.bytes.saturating_sub(*size);
            }
            InodeBody::Symlink { target } => {
                self.usage.bytes = self.usage.bytes.saturating_sub(target.len() as u64);
            }
            InodeBody::Dir { .. } => {
                // Stays in `dirty_dirs`: a savepoint rollback can bring the directory
                // back, and its listing must then still be resealed (sealing skips
                // inodes that are gone or are no longer directories).
            }
        }
        self.put(keys::inode(ino), None);
        self.usage.inodes = self.usage.inodes.saturating_sub(1);
        self.alloc.free(ino);
    }

    /// Removes a non-directory entry.
    pub fn unlink(&mut self, dir: Ino, name: &[u8], now_ns: u64) -> Result<()> {
        let e = self.entry(dir, name)?.ok_or_else(|| {
            Error::NotFound(format!("entry {:?} in directory inode {dir}", show(name)))
        })?;
        if e.kind == FileKind::Directory {
            return Err(Error::IsDir(format!(
                "entry {:?} in directory inode {dir}",
                show(name)
            )));
        }
        self.put(keys::dirent(dir, name), None);
        self.touch_dir(dir, -1, 0, now_ns)?;
        self.drop_link(e.ino, now_ns)
    }

    /// Removes an empty directory.
    pub fn rmdir(&mut self, dir: Ino, name: &[u8], now_ns: u64) -> Result<()> {
        let e = self.entry(dir, name)?.ok_or_else(|| {
            Error::NotFound(format!("entry {:?} in directory inode {dir}", show(name)))
        })?;
        if e.kind != FileKind::Directory {
            return Err(Error::NotDir(format!(
                "entry {:?} in directory inode {dir}",
                show(name)
            )));
        }
        if self.inode(e.ino)?.size() != 0 {
            return Err(Error::NotEmpty(format!("directory inode {}", e.ino)));
        }
        self.put(keys::dirent(dir, name), None);
        self.touch_dir(dir, -1, -1, now_ns)?;
        self.drop_link(e.ino, now_ns)
    }

    /// Whether directory `ancestor` is `dir` or one of its ancestors.
    fn is_ancestor(&self, ancestor: Ino, mut dir: Ino) -> Result<bool> {
        // Bounded by the number of live inodes: a cycle would mean corrupt parents.
        for _ in 0..=self.usage.inodes {
            if dir == ancestor {
                return Ok(true);
            }
            if dir == ROOT_INO {
                return Ok(false);
            }
            dir = match self.dir_inode(dir)?.body {
                InodeBody::Dir { parent, .. } => parent,
                _ => return Ok(false),
            };
        }
        Err(Error::Corrupt {
            what: format!("parent chain of directory inode {dir} has a cycle"),
            height: self.base,
        })
    }

    /// Renames with POSIX replace rules.
    pub fn rename(
        &mut self,
        from_dir: Ino,
        from: &[u8],
        to_dir: Ino,
        to: &[u8],
        now_ns: u64,
    ) -> Result<()> {
        check_name(to)?;
        let src = self.entry(from_dir, from)?.ok_or_else(|| {
            Error::NotFound(format!(
                "entry {:?} in directory inode {from_dir}",
                show(from)
            ))
        })?;
        self.live_dir(to_dir)?;
        let dst = self.entry(to_dir, to)?;
        if let Some(d) = dst {
            if d.ino == src.ino {
                return Ok(()); // same inode (same entry or hard links): POSIX no-op
            }
        }
        let src_is_dir = src.kind == FileKind::Directory;
        if src_is_dir && self.is_ancestor(src.ino, to_dir)? {
            return Err(Error::Invalid(format!(
                "moving directory inode {} into its own subtree",
                src.ino
            )));
        }
        if let Some(d) = dst {
            let dst_is_dir = d.kind == FileKind::Directory;
            match (src_is_dir, dst_is_dir) {
                (true, false) => {
                    return Err(Error::NotDir(format!(
                        "rename target {:?} in directory inode {to_dir}",
                        show(to)
                    )))
                }
                (false, true) => {
                    return Err(Error::IsDir(format!(
                        "rename target {:?} in directory inode {to_dir}",
                        show(to)
                    )))
                }
                (true, true) => {
                    if self.inode(d.ino)?.size() != 0 {
                        return Err(Error::NotEmpty(format!("directory inode {}", d.ino)));
                    }
                    self.touch_dir(to_dir, -1, -1, now_ns)?;
                }
                (false, false) => self.touch_dir(to_dir, -1, 0, now_ns)?,
            }
            self.put(keys::dirent(to_dir, to), None);
            self.drop_link(d.ino, now_ns)?;
        }
        self.put(keys::dirent(from_dir, from), None);
        self.touch_dir(from_dir, -1, if src_is_dir { -1 } else { 0 }, now_ns)?;
        self.put(
            keys::dirent(to_dir, to),
            Some(
                Dirent {
                    ino: src.ino,
                    kind: src.kind,
                }
                .encode(),
            ),
        );
        self.touch_dir(to_dir, 1, if src_is_dir { 1 } else { 0 }, now_ns)?;
        let mut moved = self.inode(src.ino)?;
        moved.ctime_ns = now_ns;
        if let InodeBody::Dir { parent, .. } = &mut moved.body {
            *parent = to_dir;
        }
        self.put_inode(src.ino, &moved);
        Ok(())
    }

    /// The regular-file inode `ino` and its size.
    fn file_inode(&self, ino: Ino) -> Result<(Inode, u64)> {
        let i = self.inode(ino)?;
        match i.body {
            InodeBody::File { size, .. } => Ok((i, size)),
            InodeBody::Dir { .. } => Err(Error::IsDir(format!("inode {ino}"))),
            InodeBody::Symlink { .. } => Err(Error::Invalid(format!("inode {ino} is a symlink"))),
        }
    }

    /// Checks that file `ino` may grow from `old` to `new` bytes.
    fn check_growth(&self, ino: Ino, old: u64, new: u64) -> Result<()> {
        if new > self.limits.max_file_size {
            return Err(Error::FileTooBig {
                ino,
                size: new,
                max: self.limits.max_file_size,
            });
        }
        let grow = new.saturating_sub(old);
        if self.usage.bytes.saturating_add(grow) > self.limits.max_total_bytes {
            return Err(Error::NoSpace(format!(
                "file inode {ino} growing by {grow} bytes exceeds the byte quota {}",
                self.limits.max_total_bytes
            )));
        }
        Ok(())
    }

    /// Current content of chunk `idx` of a file of `size` bytes (empty past the end).
    fn chunk_or_empty(&self, ino: Ino, idx: u64, size: u64) -> Result<Vec<u8>> {
        if chunk_len(size, idx) == 0 {
            Ok(Vec::new())
        } else {
            self.chunk(ino, idx, size)
        }
    }

    /// The inline content of a file of `size <= INLINE_MAX` bytes.
    fn inline_of(inode: &Inode) -> Vec<u8> {
        match &inode.body {
            InodeBody::File { inline, .. } => inline.clone(),
            _ => Vec::new(),
        }
    }

    /// Moves inline content into chunk 0 before a file grows past [`INLINE_MAX`].
    fn materialize(&mut self, ino: Ino, inode: &Inode, size: u64) {
        if size > 0 && size <= INLINE_MAX {
            self.put(keys::chunk(ino, 0), Some(Self::inline_of(inode)));
        }
    }

    /// Writes `data` at `offset`, zero-filling any gap past the end.
    pub fn write(&mut self, ino: Ino, offset: u64, data: &[u8], now_ns: u64) -> Result<usize> {
        let (mut inode, size) = self.file_inode(ino)?;
        if data.is_empty() {
            return Ok(0);
        }
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(Error::FileTooBig {
                ino,
                size: u64::MAX,
                max: self.limits.max_file_size,
            })?;
        let new_size = size.max(end);
        self.check_growth(ino, size, new_size)?;
        if new_size <= INLINE_MAX {
            let mut content = Self::inline_of(&inode);
            content.resize(new_size as usize, 0);
            content[offset as usize..end as usize].copy_from_slice(data);
            inode.body = InodeBody::File {
                size: new_size,
                inline: content,
            };
        } else {
            self.materialize(ino, &inode, size);
            // Chunks from the old end (zero fill) or the write start, whichever is lower.
            let first = offset.min(size) / CHUNK_SIZE;
            let last = (end - 1) / CHUNK_SIZE;
            for idx in first..=last {
                let mut chunk = self.chunk_or_empty(ino, idx, size)?;
                chunk.resize(chunk_len(new_size, idx) as usize, 0);
                let cstart = idx * CHUNK_SIZE;
                let cend = cstart + chunk.len() as u64;
                let (ws, we) = (offset.max(cstart), end.min(cend));
                if ws < we {
                    let src = &data[(ws - offset) as usize..(we - offset) as usize];
                    chunk[(ws - cstart) as usize..(we - cstart) as usize].copy_from_slice(src);
                }
                self.put(keys::chunk(ino, idx), Some(chunk));
            }
            inode.body = InodeBody::File {
                size: new_size,
                inline: Vec::new(),
            };
        }
        inode.mtime_ns = now_ns;
        inode.ctime_ns = now_ns;
        self.put_inode(ino, &inode);
        self.usage.bytes += new_size - size;
        Ok(data.len())
    }

    /// Truncates or zero-extends a regular file.
    pub fn set_size(&mut self, ino: Ino, new_size: u64, now_ns: u64) -> Result<()> {
        let (mut inode, size) = self.file_inode(ino)?;
        self.check_growth(ino, size, new_size)?;
        if new_size <= INLINE_MAX {
            let mut content = if size <= INLINE_MAX {
                Self::inline_of(&inode)
            } else {
                let c = self.chunk(ino, 0, size)?;
                for idx in 0..chunk_count(size) {
                    self.put(keys::chunk(ino, idx), None);
                }
                c
            };
            content.resize(new_size as usize, 0);
            inode.body = InodeBody::File {
                size: new_size,
                inline: content,
            };
        } else {
            self.materialize(ino, &inode, size);
            let stored = |s: u64| s.div_ceil(CHUNK_SIZE);
            if new_size < size {
                for idx in stored(new_size)..stored(size) {
                    self.put(keys::chunk(ino, idx), None);
                }
                let keep = chunk_len(new_size, new_size / CHUNK_SIZE);
                if keep > 0 {
                    let idx = new_size / CHUNK_SIZE;
                    let mut c = self.chunk(ino, idx, size)?;
                    c.truncate(keep as usize);
                    self.put(keys::chunk(ino, idx), Some(c));
                }
            } else if new_size > size {
                for idx in size / CHUNK_SIZE..stored(new_size) {
                    let mut c = self.chunk_or_empty(ino, idx, size)?;
                    c.resize(chunk_len(new_size, idx) as usize, 0);
                    self.put(keys::chunk(ino, idx), Some(c));
                }
            }
            inode.body = InodeBody::File {
                size: new_size,
                inline: Vec::new(),
            };
        }
        inode.mtime_ns = now_ns;
        inode.ctime_ns = now_ns;
        self.put_inode(ino, &inode);
        self.usage.bytes = self.usage.bytes - size + new_size;
        Ok(())
    }

    /// Sets access and/or modification time; ctime becomes `now_ns`.
    pub fn set_times(
        &mut self,
        ino: Ino,
        atime_ns: Option<u64>,
        mtime_ns: Option<u64>,
        now_ns: u64,
    ) -> Result<()> {
        let mut i = self.inode(ino)?;
        if let Some(a) = atime_ns {
            i.atime_ns = a;
        }
        if let Some(m) = mtime_ns {
            i.mtime_ns = m;
        }
        i.ctime_ns = now_ns;
        self.put_inode(ino, &i);
        Ok(())
    }

    /// An open handle keeps `ino` alive even with no names.
    pub fn retain(&mut self, ino: Ino) -> Result<()> {
        let mut i = self.inode(ino)?;
        i.open += 1;
        self.put_inode(ino, &i);
        Ok(())
    }

    /// Drops an open handle; frees the inode if it was the last reference.
    pub fn release(&mut self, ino: Ino) -> Result<()> {
        let mut i = self.inode(ino)?;
        if i.open == 0 {
            return Err(Error::Invalid(format!(
                "release of inode {ino} which has no open handle"
            )));
        }
        i.open -= 1;
        if i.open == 0 && i.nlink == 0 {
            self.free_inode(ino, &i);
        } else {
            self.put_inode(ino, &i);
        }
        Ok(())
    }
}
