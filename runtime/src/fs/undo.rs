//! The undo log behind `MemFs` savepoints.
//!
//! Each mutation records the smallest thing that restores the previous state — the
//! overwritten byte range of a file, one directory entry, one inode's metadata — never a
//! copy of a whole file, so savepoints stay cheap for large files. Nothing is recorded
//! while no savepoint is open, which keeps the common `replicode run` path free of
//! logging cost.

use std::collections::BTreeMap;

use super::{FsUsage, Ino, Savepoint};

/// Inode metadata that mutations change and undo restores as a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub nlink: u64,
    pub atime_ns: u64,
    pub mtime_ns: u64,
    pub ctime_ns: u64,
    /// The containing directory (directories only; used for the subtree check of rename).
    pub parent: Ino,
    /// Open fds referring to the inode (keeps unlinked inodes alive).
    pub open: u64,
}

/// The content of an inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Body {
    File(Vec<u8>),
    Dir(BTreeMap<Vec<u8>, Ino>),
    Symlink(Vec<u8>),
}

/// One inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inode {
    pub meta: Meta,
    pub body: Body,
}

/// One step to undo, applied in reverse order of recording.
#[derive(Debug)]
pub(crate) enum UndoOp {
    /// Restore the metadata of `ino`.
    Meta { ino: Ino, meta: Meta },
    /// `ino` was allocated: free its slot again.
    Alloc { ino: Ino },
    /// `ino` was freed: put it back.
    Freed { ino: Ino, inode: Box<Inode> },
    /// `name` was added to `dir` (or re-pointed): restore `old` (None = remove).
    DirEntry {
        dir: Ino,
        name: Vec<u8>,
        old: Option<Ino>,
    },
    /// File bytes changed: resize to `old_len`, then put `old` back at `offset`.
    FileData {
        ino: Ino,
        offset: u64,
        old: Vec<u8>,
        old_len: u64,
    },
}

/// The log plus the stack of open savepoints.
#[derive(Debug, Default)]
pub(crate) struct UndoLog {
    ops: Vec<UndoOp>,
    /// (id, log length when taken, usage when taken), oldest first.
    marks: Vec<(u64, usize, FsUsage)>,
    next_id: u64,
}

impl UndoLog {
    /// True while some savepoint is open, i.e. when mutations must be recorded.
    pub fn active(&self) -> bool {
        !self.marks.is_empty()
    }

    /// Records `op` if a savepoint is open.
    pub fn record(&mut self, op: impl FnOnce() -> UndoOp) {
        if self.active() {
            self.ops.push(op());
        }
    }

    /// Opens a savepoint at the current position.
    pub fn savepoint(&mut self, usage: FsUsage) -> Savepoint {
        self.next_id += 1;
        self.marks.push((self.next_id, self.ops.len(), usage));
        Savepoint(self.next_id)
    }

    /// The operations to undo (newest first) to get back to `sp`, and the usage then.
    /// Savepoints taken after `sp` are dropped; `sp` itself stays open. `None` if `sp`
    /// is not open (already released or rolled past).
    pub fn rollback_to(&mut self, sp: Savepoint) -> Option<(Vec<UndoOp>, FsUsage)> {
        let pos = self.marks.iter().position(|m| m.0 == sp.0)?;
        let (_, len, usage) = *self.marks.get(pos)?;
        self.marks.truncate(pos + 1);
        let mut undone = self.ops.split_off(len);
        undone.reverse();
        Some((undone, usage))
    }

    /// Forgets `sp` and every later savepoint; drops the log when none remain open.
    pub fn release(&mut self, sp: Savepoint) {
        if let Some(pos) = self.marks.iter().position(|m| m.0 == sp.0) {
            self.marks.truncate(pos);
        }
        if self.marks.is_empty() {
            self.ops.clear();
        }
    }
}
