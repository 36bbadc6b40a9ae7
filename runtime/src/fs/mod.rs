//! The filesystem contract between the WASI layer and storage.
//!
//! The WASI layer never sees paths at this level: it resolves paths itself (component by
//! component, see `wasi::path`) and talks to storage in inodes. Being inode-based is what
//! lets POSIX semantics hold — an open fd survives `rename` and `unlink` of its path, and
//! hard links share one inode. Two implementations exist: [`mem::MemFs`] (in memory,
//! used by `replicode run` and tests) and the merkle-fs adapter (`MerkleFs` in
//! `replicode-abci`, `machine::fs`; also behind `replicode run --state`). Both pass the
//! same test suite (`runtime/tests/wasi`, `abci-app/tests/fs_conformance.rs`).
//!
//! Everything observable here must be a function of the operations applied, never of the
//! host: inode numbers are allocated lowest-free, timestamps are the logical `now_ns`
//! values the caller passes in, directory listings are sorted by name bytes.

pub mod digest;
pub mod mem;
mod undo;

use crate::errno::Errno;

/// An inode number. Allocated lowest-free so that the same live set of files gets the
/// same numbers no matter which files were created and deleted before.
pub type Ino = u64;

/// The root directory of every filesystem.
pub const ROOT_INO: Ino = 1;

/// The longest single path component (bytes) a filesystem accepts.
pub const NAME_MAX: usize = 255;

/// What an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileKind {
    /// A regular file holding bytes.
    Regular,
    /// A directory holding named entries.
    Directory,
    /// A symbolic link holding a target path.
    Symlink,
}

/// Attributes of one inode. Times are logical nanoseconds supplied by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// The inode number.
    pub ino: Ino,
    /// What the inode is.
    pub kind: FileKind,
    /// Bytes of file content, target length for symlinks, entry count for directories.
    pub size: u64,
    /// Number of directory entries naming this inode (directories: 2 + subdirectories).
    pub nlink: u64,
    /// Last access time (only changed explicitly: reads do not update it, so reads stay
    /// side-effect free and cheap).
    pub atime_ns: u64,
    /// Last content modification time.
    pub mtime_ns: u64,
    /// Last status change time.
    pub ctime_ns: u64,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry name (never "." or "..").
    pub name: Vec<u8>,
    /// The inode it names.
    pub ino: Ino,
    /// The kind of that inode.
    pub kind: FileKind,
}

/// Resource limits enforced by the filesystem itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsLimits {
    /// Largest size a regular file may reach (`EFBIG` beyond it).
    pub max_file_size: u64,
    /// Quota on stored bytes: file contents plus symlink targets (`ENOSPC` beyond it).
    pub max_total_bytes: u64,
    /// Most inodes that may exist at once, the root included (`ENOSPC` beyond it).
    pub max_inodes: u64,
}

impl Default for FsLimits {
    /// Generous defaults for `replicode run`: 64 MiB files, 256 MiB total, 65536 inodes.
    fn default() -> Self {
        FsLimits {
            max_file_size: 64 << 20,
            max_total_bytes: 256 << 20,
            max_inodes: 65536,
        }
    }
}

/// Current resource use, compared against [`FsLimits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsUsage {
    /// Bytes stored: file contents plus symlink targets.
    pub bytes: u64,
    /// Inodes in existence, the root and unlinked-but-open inodes included.
    pub inodes: u64,
}

/// A handle on a point in the filesystem's history that can be rolled back to.
///
/// Savepoints nest: rolling back to one undoes everything after it and discards the
/// savepoints taken after it; releasing one keeps the changes (and releases the later
/// savepoints too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Savepoint(pub u64);

/// Inode-level storage operations. See the module docs for the rules every
/// implementation follows.
pub trait FileSystem: Send {
    /// Attributes of `ino` (`ENOENT` if it does not exist).
    fn getattr(&self, ino: Ino) -> Result<Attr, Errno>;
    /// The inode named `name` in directory `dir`. Never called with "." or "..": the
    /// WASI layer resolves those itself so `..` can be confined to a preopen.
    fn lookup(&self, dir: Ino, name: &[u8]) -> Result<Ino, Errno>;
    /// The entries of `dir`, sorted by name bytes, without "." and "..".
    fn readdir(&self, dir: Ino) -> Result<Vec<DirEntry>, Errno>;
    /// Reads from a regular file at `offset`; returns 0 at or past the end.
    fn read(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<usize, Errno>;
    /// The target of a symlink (`EINVAL` if `ino` is not a symlink).
    fn readlink(&self, ino: Ino) -> Result<Vec<u8>, Errno>;
    /// Creates an empty regular file (`EEXIST` if the name is taken).
    fn create_file(&mut self, dir: Ino, name: &[u8], now_ns: u64) -> Result<Ino, Errno>;
    /// Creates an empty directory (`EEXIST` if the name is taken).
    fn mkdir(&mut self, dir: Ino, name: &[u8], now_ns: u64) -> Result<Ino, Errno>;
    /// Creates a symlink holding `target` verbatim (`EEXIST` if the name is taken).
    fn symlink(&mut self, dir: Ino, name: &[u8], target: &[u8], now_ns: u64) -> Result<Ino, Errno>;
    /// Adds a hard link to `ino` (`EPERM` for directories, `EEXIST` if the name is taken).
    fn link(&mut self, ino: Ino, dir: Ino, name: &[u8], now_ns: u64) -> Result<(), Errno>;
    /// Removes a non-directory entry (`EISDIR` for directories).
    fn unlink(&mut self, dir: Ino, name: &[u8], now_ns: u64) -> Result<(), Errno>;
    /// Removes an empty directory (`ENOTEMPTY`, `ENOTDIR`).
    fn rmdir(&mut self, dir: Ino, name: &[u8], now_ns: u64) -> Result<(), Errno>;
    /// Renames with POSIX replace rules; `EINVAL` moving a directory into its own subtree.
    fn rename(
        &mut self,
        from_dir: Ino,
        from: &[u8],
        to_dir: Ino,
        to: &[u8],
        now_ns: u64,
    ) -> Result<(), Errno>;
    /// Writes to a regular file, extending it with zeros if `offset` is past the end.
    /// Writes as many bytes as `max_file_size` and the quota allow and returns that
    /// count (a short write, like POSIX on a full disk); fails with `EFBIG` / `ENOSPC`
    /// only if not one byte fits, and then changes nothing.
    fn write(&mut self, ino: Ino, offset: u64, data: &[u8], now_ns: u64) -> Result<usize, Errno>;
    /// Truncates or zero-extends a regular file (same limits as `write`).
    fn set_size(&mut self, ino: Ino, size: u64, now_ns: u64) -> Result<(), Errno>;
    /// Sets access and/or modification time; ctime becomes `now_ns`.
    fn set_times(
        &mut self,
        ino: Ino,
        atime_ns: Option<u64>,
        mtime_ns: Option<u64>,
        now_ns: u64,
    ) -> Result<(), Errno>;
    /// An open fd keeps an unlinked inode alive ...
    fn retain(&mut self, ino: Ino) -> Result<(), Errno>;
    /// ... until the last release (then, if no name refers to it, it is freed).
    fn release(&mut self, ino: Ino) -> Result<(), Errno>;
    /// Marks a point to roll back to (nestable).
    fn savepoint(&mut self) -> Savepoint;
    /// Undoes everything since `sp` and drops the savepoints taken after it.
    fn rollback_to(&mut self, sp: Savepoint);
    /// Keeps the changes since `sp` and forgets `sp` (and later savepoints).
    fn release_savepoint(&mut self, sp: Savepoint);
    /// Bytes stored and inodes used.
    fn usage(&self) -> FsUsage;
    /// SHA-256 over the logical content (path tree, attributes, bytes): equal content
    /// gives an equal digest regardless of history or implementation.
    fn digest(&self) -> [u8; 32];
}

/// One filesystem shared by all processes of a machine.
pub type SharedFs = std::sync::Arc<std::sync::Mutex<Box<dyn FileSystem>>>;

/// Wraps a filesystem for sharing between processes.
pub fn shared(fs: impl FileSystem + 'static) -> SharedFs {
    std::sync::Arc::new(std::sync::Mutex::new(Box::new(fs)))
}

/// Checks a single name component as every implementation must: not empty, not "." or
/// "..", no '/' or NUL, at most [`NAME_MAX`] bytes.
pub fn check_name(name: &[u8]) -> Result<(), Errno> {
    if name.len() > NAME_MAX {
        return Err(Errno::Nametoolong);
    }
    if name.is_empty() || name == b"." || name == b".." || name.iter().any(|&b| b == b'/' || b == 0)
    {
        return Err(Errno::Inval);
    }
    Ok(())
}
