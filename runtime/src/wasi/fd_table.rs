//! The per-process file descriptor table.
//!
//! Plain data only — inode numbers, offsets, flags, rights and indexes into the
//! context's pipe and sink tables — so a process snapshot can serialize it as is.
//! New descriptors take the lowest free number, as POSIX requires and as determinism
//! needs (the number a guest sees must not depend on anything but its own history).

use crate::errno::Errno;
use crate::fs::Ino;

/// What a descriptor refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FdKind {
    /// An open regular file and its current offset.
    File { ino: Ino, offset: u64 },
    /// An open directory. `preopen` holds the guest path for preopened directories.
    Dir { ino: Ino, preopen: Option<Vec<u8>> },
    /// The read end of a pipe: index into the context's pipe table.
    PipeRead { pipe: u32 },
    /// An output sink: index into the context's sink table.
    Sink { sink: u32 },
}

/// One open descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdEntry {
    /// What it refers to.
    pub kind: FdKind,
    /// Rights for operations on this descriptor.
    pub rights_base: u64,
    /// Rights handed to descriptors opened through this one (directories).
    pub rights_inheriting: u64,
    /// `fdflags` (APPEND, NONBLOCK, ...).
    pub flags: u16,
}

impl FdEntry {
    /// The entry if it has every right in `needed`, else `ENOTCAPABLE`.
    pub fn require(&self, needed: u64) -> Result<&FdEntry, Errno> {
        if self.rights_base & needed == needed {
            Ok(self)
        } else {
            Err(Errno::Notcapable)
        }
    }

    /// The inode behind a file or directory descriptor (`EBADF` for streams).
    pub fn ino(&self) -> Option<Ino> {
        match self.kind {
            FdKind::File { ino, .. } | FdKind::Dir { ino, .. } => Some(ino),
            FdKind::PipeRead { .. } | FdKind::Sink { .. } => None,
        }
    }
}

/// Descriptors of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdTable {
    slots: Vec<Option<FdEntry>>,
    open: usize,
    max_fds: usize,
}

impl FdTable {
    /// An empty table allowing at most `max_fds` open descriptors.
    pub fn new(max_fds: usize) -> FdTable {
        FdTable {
            slots: Vec::new(),
            open: 0,
            max_fds,
        }
    }

    /// The limit on open descriptors.
    pub fn max_fds(&self) -> usize {
        self.max_fds
    }

    /// Number of open descriptors.
    pub fn len(&self) -> usize {
        self.open
    }

    /// Whether no descriptor is open.
    pub fn is_empty(&self) -> bool {
        self.open == 0
    }

    /// The entry for `fd`, or `EBADF`.
    pub fn get(&self, fd: u32) -> Result<&FdEntry, Errno> {
        self.slots
            .get(fd as usize)
            .and_then(Option::as_ref)
            .ok_or(Errno::Badf)
    }

    /// The mutable entry for `fd`, or `EBADF`.
    pub fn get_mut(&mut self, fd: u32) -> Result<&mut FdEntry, Errno> {
        self.slots
            .get_mut(fd as usize)
            .and_then(Option::as_mut)
            .ok_or(Errno::Badf)
    }

    /// `EMFILE` if no descriptor can be opened; checked before side effects such as
    /// creating a file, so a full table leaves the filesystem untouched.
    pub fn check_room(&self) -> Result<(), Errno> {
        if self.open >= self.max_fds {
            Err(Errno::Mfile)
        } else {
            Ok(())
        }
    }

    /// Installs `entry` at the lowest free descriptor number.
    pub fn insert(&mut self, entry: FdEntry) -> Result<u32, Errno> {
        self.check_room()?;
        let idx = self
            .slots
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.slots.len());
        let fd = u32::try_from(idx).map_err(|_| Errno::Mfile)?;
        self.put(fd, entry);
        Ok(fd)
    }

    /// Installs `entry` at exactly `fd` (used for stdio and `fd_renumber`); returns the
    /// entry previously there.
    pub fn put(&mut self, fd: u32, entry: FdEntry) -> Option<FdEntry> {
        let idx = fd as usize;
        if self.slots.len() <= idx {
            self.slots.resize(idx + 1, None);
        }
        let old = self.slots.get_mut(idx).and_then(|slot| slot.replace(entry));
        if old.is_none() {
            self.open += 1;
        }
        old
    }

    /// Removes `fd`, returning its entry (`EBADF` if it was not open).
    pub fn remove(&mut self, fd: u32) -> Result<FdEntry, Errno> {
        let entry = self
            .slots
            .get_mut(fd as usize)
            .and_then(Option::take)
            .ok_or(Errno::Badf)?;
        self.open -= 1;
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        Ok(entry)
    }

    /// Every open descriptor in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &FdEntry)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((u32::try_from(i).ok()?, e.as_ref()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(ino: Ino) -> FdEntry {
        FdEntry {
            kind: FdKind::File { ino, offset: 0 },
            rights_base: 0,
            rights_inheriting: 0,
            flags: 0,
        }
    }

    #[test]
    fn lowest_free_number_is_reused_and_limit_is_emfile() {
        let mut t = FdTable::new(3);
        assert_eq!(t.insert(file(1)), Ok(0));
        assert_eq!(t.insert(file(2)), Ok(1));
        assert_eq!(t.insert(file(3)), Ok(2));
        assert_eq!(t.insert(file(4)), Err(Errno::Mfile));
        assert_eq!(t.remove(1).map(|e| e.ino()), Ok(Some(2)));
        assert_eq!(t.insert(file(5)), Ok(1));
        assert_eq!(t.remove(7), Err(Errno::Badf));
        assert_eq!(t.get(9).map(|_| ()), Err(Errno::Badf));
    }
}
