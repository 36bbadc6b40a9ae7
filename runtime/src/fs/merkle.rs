//! The merkle-fs backend: [`MerkleFs`] implements [`FileSystem`] over a
//! [`merkle_fs::WorkingSet`], so guest files live in the authenticated, versioned store
//! and `replicode run --state DIR` keeps them across runs.
//!
//! This is deliberately thin: merkle-fs already implements the trait's semantics
//! (lowest-free inodes, POSIX rename rules, logical times, savepoints); the adapter maps
//! types and errors. Storage failures and corrupt data become `EIO` for the guest and a
//! `tracing` error naming what was damaged and at which height for the operator.
//!
//! Status: enabled by `pub mod merkle;` in `fs/mod.rs` (owned by the WASI-layer engineer).

use merkle_fs::{FsRead, Store, WorkingSet};

use super::{Attr, DirEntry, FileKind, FileSystem, FsLimits, FsUsage, Ino, Savepoint};
use crate::errno::Errno;

/// A filesystem stored in merkle-fs: the working set of the block being executed.
pub struct MerkleFs {
    store: Store,
    ws: WorkingSet,
    limits: merkle_fs::Limits,
}

fn to_limits(l: FsLimits) -> merkle_fs::Limits {
    merkle_fs::Limits { max_file_size: l.max_file_size, max_total_bytes: l.max_total_bytes, max_inodes: l.max_inodes }
}

fn kind(k: merkle_fs::FileKind) -> FileKind {
    match k {
        merkle_fs::FileKind::Regular => FileKind::Regular,
        merkle_fs::FileKind::Directory => FileKind::Directory,
        merkle_fs::FileKind::Symlink => FileKind::Symlink,
    }
}

/// Maps a merkle-fs error to the guest's errno; storage faults are logged.
fn errno(e: merkle_fs::Error) -> Errno {
    use merkle_fs::Error as E;
    match e {
        E::NotFound(_) => Errno::Noent,
        E::Exists { .. } => Errno::Exist,
        E::NotDir(_) => Errno::Notdir,
        E::IsDir(_) => Errno::Isdir,
        E::NotEmpty(_) => Errno::Notempty,
        E::NotPermitted(_) => Errno::Perm,
        E::Invalid(_) => Errno::Inval,
        E::NameTooLong { .. } => Errno::Nametoolong,
        E::FileTooBig { .. } => Errno::Fbig,
        E::NoSpace(_) => Errno::Nospc,
        other => {
            tracing::error!(error = %other, "merkle-fs storage failure surfaced to the guest as EIO");
            Errno::Io
        }
    }
}

impl MerkleFs {
    /// Opens (or creates) the store at `path` and starts a working set on its latest height.
    pub fn open(path: impl AsRef<std::path::Path>, limits: FsLimits) -> Result<MerkleFs, merkle_fs::Error> {
        let store = Store::open(path)?;
        Ok(MerkleFs::new(store, limits))
    }

    /// A filesystem over an already open store.
    pub fn new(store: Store, limits: FsLimits) -> MerkleFs {
        let limits = to_limits(limits);
        let mut ws = store.working_set();
        ws.set_limits(limits);
        MerkleFs { store, ws, limits }
    }

    /// Commits the working set at the next height and starts a new one; returns the root.
    pub fn commit(&mut self) -> Result<merkle_fs::Root, merkle_fs::Error> {
        let height = self.store.latest_height() + 1;
        // `commit` consumes the working set; a placeholder holds its place meanwhile.
        let ws = std::mem::replace(&mut self.ws, self.store.working_set());
        let root = ws.commit(height);
        // Whether or not the commit succeeded, the new working set reads what is durable.
        let mut fresh = self.store.working_set();
        fresh.set_limits(self.limits);
        self.ws = fresh;
        root
    }

    /// The underlying store (heights, proofs, pruning).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The working set (node state under the same root: `put_meta` and friends).
    pub fn working_set_mut(&mut self) -> &mut WorkingSet {
        &mut self.ws
    }
}

impl FileSystem for MerkleFs {
    fn getattr(&self, ino: Ino) -> Result<Attr, Errno> {
        let a = self.ws.getattr(ino).map_err(errno)?;
        Ok(Attr { ino: a.ino, kind: kind(a.kind), size: a.size, nlink: a.nlink, atime_ns: a.atime_ns, mtime_ns: a.mtime_ns, ctime_ns: a.ctime_ns })
    }
    fn lookup(&self, dir: Ino, name: &[u8]) -> Result<Ino, Errno> {
        self.ws.lookup(dir, name).map_err(errno)
    }
    fn readdir(&self, dir: Ino) -> Result<Vec<DirEntry>, Errno> {
        Ok(self.ws.readdir(dir).map_err(errno)?.into_iter().map(|e| DirEntry { name: e.name, ino: e.ino, kind: kind(e.kind) }).collect())
    }
    fn read(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        self.ws.read(ino, offset, buf).map_err(errno)
    }
    fn readlink(&self, ino: Ino) -> Result<Vec<u8>, Errno> {
        self.ws.readlink(ino).map_err(errno)
    }
    fn create_file(&mut self, dir: Ino, name: &[u8], now_ns: u64) -> Result<Ino, Errno> {
        self.ws.create_file(dir, name, now_ns).map_err(errno)
    }
    fn mkdir(&mut self, dir: Ino, name: &[u8], now_ns: u64) -> Result<Ino, Errno> {
        self.ws.mkdir(dir, name, now_ns).map_err(errno)
    }
    fn symlink(&mut self, dir: Ino, name: &[u8], target: &[u8], now_ns: u64) -> Result<Ino, Errno> {
        self.ws.symlink(dir, name, target, now_ns).map_err(errno)
    }
    fn link(&mut self, ino: Ino, dir: Ino, name: &[u8], now_ns: u64) -> Result<(), Errno> {
        self.ws.link(ino, dir, name, now_ns).map_err(errno)
    }
    fn unlink(&mut self, dir: Ino, name: &[u8], now_ns: u64) -> Result<(), Errno> {
        self.ws.unlink(dir, name, now_ns).map_err(errno)
    }
    fn rmdir(&mut self, dir: Ino, name: &[u8], now_ns: u64) -> Result<(), Errno> {
        self.ws.rmdir(dir, name, now_ns).map_err(errno)
    }
    fn rename(&mut self, from_dir: Ino, from: &[u8], to_dir: Ino, to: &[u8], now_ns: u64) -> Result<(), Errno> {
        self.ws.rename(from_dir, from, to_dir, to, now_ns).map_err(errno)
    }
    fn write(&mut self, ino: Ino, offset: u64, data: &[u8], now_ns: u64) -> Result<usize, Errno> {
        self.ws.write(ino, offset, data, now_ns).map_err(errno)
    }
    fn set_size(&mut self, ino: Ino, size: u64, now_ns: u64) -> Result<(), Errno> {
        self.ws.set_size(ino, size, now_ns).map_err(errno)
    }
    fn set_times(&mut self, ino: Ino, atime_ns: Option<u64>, mtime_ns: Option<u64>, now_ns: u64) -> Result<(), Errno> {
        self.ws.set_times(ino, atime_ns, mtime_ns, now_ns).map_err(errno)
    }
    fn retain(&mut self, ino: Ino) -> Result<(), Errno> {
        self.ws.retain(ino).map_err(errno)
    }
    fn release(&mut self, ino: Ino) -> Result<(), Errno> {
        self.ws.release(ino).map_err(errno)
    }
    fn savepoint(&mut self) -> Savepoint {
        Savepoint(self.ws.savepoint().0)
    }
    fn rollback_to(&mut self, sp: Savepoint) {
        if let Err(e) = self.ws.rollback_to(merkle_fs::Savepoint(sp.0)) {
            tracing::error!(error = %e, "merkle-fs rollback to an unknown savepoint");
        }
    }
    fn release_savepoint(&mut self, sp: Savepoint) {
        if let Err(e) = self.ws.release_savepoint(merkle_fs::Savepoint(sp.0)) {
            tracing::error!(error = %e, "merkle-fs release of an unknown savepoint");
        }
    }
    fn usage(&self) -> FsUsage {
        let u = self.ws.usage();
        FsUsage { bytes: u.bytes, inodes: u.inodes }
    }
    fn digest(&self) -> [u8; 32] {
        super::digest::digest(self)
    }
}
