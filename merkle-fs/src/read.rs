//! Filesystem reads over any view of the key space: a committed [`crate::Snapshot`]
//! or a [`crate::WorkingSet`] (which sees its own writes). One implementation, so
//! reads at old heights and reads inside a block behave identically.

use crate::codec::{Dirent, Inode, InodeBody};
use crate::error::{Error, Result};
use crate::keys::{self, Height, LKey};
use crate::{Attr, DirEntry, FileKind, Ino, CHUNK_SIZE, INLINE_MAX};

/// Raw access to the logical key space.
pub trait StateRead {
    /// The value of `key`, or `None` if absent.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// All `(key, value)` pairs whose key starts with `prefix`, sorted by key.
    fn scan(&self, prefix: &[u8]) -> Result<Vec<(LKey, Vec<u8>)>>;
    /// The height the view is based on (named in corruption reports).
    fn height(&self) -> Height;
}

/// Filesystem reads, available on every [`StateRead`].
pub trait FsRead: StateRead {
    /// The decoded inode record of `ino`.
    fn inode(&self, ino: Ino) -> Result<Inode> {
        let raw = self
            .get(&keys::inode(ino))?
            .ok_or_else(|| Error::NotFound(format!("inode {ino}")))?;
        Inode::decode(&raw).ok_or_else(|| Error::Corrupt {
            what: format!("inode {ino} record is undecodable"),
            height: self.height(),
        })
    }

    /// Attributes of `ino`.
    fn getattr(&self, ino: Ino) -> Result<Attr> {
        let i = self.inode(ino)?;
        Ok(Attr {
            ino,
            kind: i.kind(),
            size: i.size(),
            nlink: i.nlink,
            atime_ns: i.atime_ns,
            mtime_ns: i.mtime_ns,
            ctime_ns: i.ctime_ns,
        })
    }

    /// The directory entry `name` in `dir`, if any (`dir` must be a directory).
    fn entry(&self, dir: Ino, name: &[u8]) -> Result<Option<Dirent>> {
        let d = self.inode(dir)?;
        if !matches!(d.body, InodeBody::Dir { .. }) {
            return Err(Error::NotDir(format!("inode {dir}")));
        }
        self.entry_of_dir(dir, name)
    }

    /// [`FsRead::entry`] for a `dir` the caller already knows is a directory.
    fn entry_of_dir(&self, dir: Ino, name: &[u8]) -> Result<Option<Dirent>> {
        match self.get(&keys::dirent(dir, name))? {
            None => Ok(None),
            Some(raw) => Dirent::decode(&raw)
                .map(Some)
                .ok_or_else(|| Error::Corrupt {
                    what: format!(
                        "entry {:?} of directory inode {dir} is undecodable",
                        String::from_utf8_lossy(name)
                    ),
                    height: self.height(),
                }),
        }
    }

    /// The inode named `name` in `dir`.
    fn lookup(&self, dir: Ino, name: &[u8]) -> Result<Ino> {
        self.entry(dir, name)?.map(|e| e.ino).ok_or_else(|| {
            Error::NotFound(format!(
                "entry {:?} in directory inode {dir}",
                String::from_utf8_lossy(name)
            ))
        })
    }

    /// The entries of `dir`, sorted by name bytes.
    fn readdir(&self, dir: Ino) -> Result<Vec<DirEntry>> {
        let d = self.inode(dir)?;
        if !matches!(d.body, InodeBody::Dir { .. }) {
            return Err(Error::NotDir(format!("inode {dir}")));
        }
        let height = self.height();
        self.scan(&keys::dirent_prefix(dir))?
            .into_iter()
            .map(|(k, v)| {
                let name = keys::dirent_name(&k);
                let e = Dirent::decode(&v);
                match (name, e) {
                    (Some(name), Some(e)) => Ok(DirEntry {
                        name,
                        ino: e.ino,
                        kind: e.kind,
                    }),
                    _ => Err(Error::Corrupt {
                        what: format!("an entry of directory inode {dir} is undecodable"),
                        height,
                    }),
                }
            })
            .collect()
    }

    /// Reads up to `buf.len()` bytes of regular file `ino` at `offset`.
    fn read(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let i = self.inode(ino)?;
        let (size, inline) = match i.body {
            InodeBody::File { size, inline } => (size, inline),
            InodeBody::Dir { .. } => return Err(Error::IsDir(format!("inode {ino}"))),
            InodeBody::Symlink { .. } => {
                return Err(Error::Invalid(format!("inode {ino} is a symlink")))
            }
        };
        if offset >= size || buf.is_empty() {
            return Ok(0);
        }
        let end = size.min(offset.saturating_add(buf.len() as u64));
        if size <= INLINE_MAX {
            let n = (end - offset) as usize;
            buf[..n].copy_from_slice(&inline[offset as usize..end as usize]);
            return Ok(n);
        }
        let mut pos = offset;
        while pos < end {
            let idx = pos / CHUNK_SIZE;
            let chunk = self.chunk(ino, idx, size)?;
            let within = (pos - idx * CHUNK_SIZE) as usize;
            let take = ((end - pos) as usize).min(chunk.len() - within);
            let at = (pos - offset) as usize;
            buf[at..at + take].copy_from_slice(&chunk[within..within + take]);
            pos += take as u64;
        }
        Ok((end - offset) as usize)
    }

    /// Chunk `idx` of file `ino` of `size` bytes, checked to have its exact length.
    fn chunk(&self, ino: Ino, idx: u64, size: u64) -> Result<Vec<u8>> {
        let expected = chunk_len(size, idx);
        let c = self
            .get(&keys::chunk(ino, idx))?
            .ok_or_else(|| Error::Corrupt {
                what: format!("chunk {idx} of file inode {ino} (size {size}) is missing"),
                height: self.height(),
            })?;
        if c.len() as u64 != expected {
            return Err(Error::Corrupt {
                what: format!(
                    "chunk {idx} of file inode {ino} has {} bytes, expected {expected}",
                    c.len()
                ),
                height: self.height(),
            });
        }
        Ok(c)
    }

    /// The target of symlink `ino`.
    fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        match self.inode(ino)?.body {
            InodeBody::Symlink { target } => Ok(target),
            _ => Err(Error::Invalid(format!("inode {ino} is not a symlink"))),
        }
    }

    /// Resolves a `/`-separated path from the root without following symlinks.
    fn resolve(&self, path: &[u8]) -> Result<Ino> {
        let mut ino = crate::ROOT_INO;
        for comp in components(path) {
            ino = self.lookup(ino, comp)?;
        }
        Ok(ino)
    }

    /// The whole content of the regular file at `path`.
    fn read_path(&self, path: &[u8]) -> Result<Vec<u8>> {
        let ino = self.resolve(path)?;
        let size = self.getattr(ino)?.size;
        let len = usize::try_from(size)
            .map_err(|_| Error::Invalid(format!("file inode {ino} too large to read at once")))?;
        let mut buf = vec![0u8; len];
        let n = self.read(ino, 0, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Whether the value under `kind` is a directory (helper for ops).
    fn is_dir(&self, ino: Ino) -> Result<bool> {
        Ok(self.inode(ino)?.kind() == FileKind::Directory)
    }
}

impl<T: StateRead + ?Sized> FsRead for T {}

/// Length of chunk `idx` of a file of `size` bytes (0 past the end).
pub fn chunk_len(size: u64, idx: u64) -> u64 {
    let start = idx.saturating_mul(CHUNK_SIZE);
    size.saturating_sub(start).min(CHUNK_SIZE)
}

/// Number of chunk keys a file of `size` bytes has (0 when its content is inline).
pub fn chunk_count(size: u64) -> u64 {
    if size <= INLINE_MAX {
        0
    } else {
        size.div_ceil(CHUNK_SIZE)
    }
}

/// The non-empty components of a `/`-separated path.
pub fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty())
}
