//! The runtime's `FileSystem` trait over a merkle-fs working set: what guests
//! write lands in the authenticated store whose root is the app hash.
//!
//! The working set sits in a shared slot so the machine can take it out at the
//! end of a block, commit it, and put the next block's working set in its place
//! while every process keeps the same `SharedFs` handle.

use std::sync::{Arc, Mutex, MutexGuard};

use merkle_fs::{FsRead, WorkingSet};
use replicode_runtime::errno::Errno;
use replicode_runtime::fs::{
    Attr, DirEntry, FileKind, FileSystem, FsLimits, FsUsage, Ino, Savepoint, NAME_MAX,
};

/// The working set of the block being executed (`None` between blocks).
pub type Slot = Arc<Mutex<Option<WorkingSet>>>;

/// The second channel of the filesystem seam: host failures met under a guest
/// syscall.
///
/// The runtime's `FileSystem` trait answers in errnos, which is right for
/// everything about the guest's data (`ENOENT`, `ENOSPC`, ...). A storage
/// failure (RocksDB I/O, corruption, a lost savepoint) is not an answer: it may
/// happen on one validator only, so a guest that saw it as `EIO` and acted on
/// it would fork that validator. The adapter therefore still returns `EIO` to
/// unwind the syscall, but records the failure here; the machine checks this
/// after every step and stops the node before anything computed after the
/// failure is committed or answered ([`HostFailures::take`]).
#[derive(Clone, Debug, Default)]
pub struct HostFailures(Arc<Mutex<Option<String>>>);

impl HostFailures {
    /// Records `what` unless an earlier failure is already recorded (the first
    /// one is the cause; later ones are usually its consequences).
    pub fn record(&self, what: String) {
        tracing::error!(failure = %what, "storage failure under a guest syscall");
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(what);
    }

    /// The first failure recorded since the last call, if any.
    pub fn take(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// A `FileSystem` reading and writing the slot's working set.
pub struct MerkleFs {
    slot: Slot,
    failures: HostFailures,
}

impl MerkleFs {
    /// An adapter over `slot` that reports storage failures to `failures`.
    pub fn new(slot: Slot, failures: HostFailures) -> Self {
        MerkleFs { slot, failures }
    }

    fn guard(&self) -> MutexGuard<'_, Option<WorkingSet>> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A merkle-fs error as the guest's errno; a host failure is also recorded.
    fn answer(&self, e: merkle_fs::Error) -> Errno {
        if e.is_host_failure() {
            self.failures.record(e.to_string());
            return Errno::Io;
        }
        errno(e)
    }

    fn no_working_set(&self) -> Errno {
        self.failures
            .record("guest syscall outside a block: no working set".into());
        Errno::Io
    }

    fn with<T>(&self, f: impl FnOnce(&WorkingSet) -> merkle_fs::Result<T>) -> Result<T, Errno> {
        let result = match self.guard().as_ref() {
            Some(ws) => f(ws),
            None => return Err(self.no_working_set()),
        };
        result.map_err(|e| self.answer(e))
    }

    fn with_mut<T>(
        &mut self,
        f: impl FnOnce(&mut WorkingSet) -> merkle_fs::Result<T>,
    ) -> Result<T, Errno> {
        let result = match self.guard().as_mut() {
            Some(ws) => f(ws),
            None => return Err(self.no_working_set()),
        };
        result.map_err(|e| self.answer(e))
    }
}

/// The runtime's filesystem limits as merkle-fs working-set limits (same meaning:
/// `EFBIG` past `max_file_size`, `ENOSPC` past the byte quota or the inode count).
pub fn limits(l: &FsLimits) -> merkle_fs::Limits {
    merkle_fs::Limits {
        max_file_size: l.max_file_size,
        max_total_bytes: l.max_total_bytes,
        max_inodes: l.max_inodes,
    }
}

/// merkle-fs answers as the fixed errnos guests see (never host errno values).
/// Host failures map to `EIO` here; [`MerkleFs`] also records them so the node
/// stops (see [`HostFailures`]).
pub fn errno(e: merkle_fs::Error) -> Errno {
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
        _ => Errno::Io,
    }
}

/// `FileSystem::write`'s rule over merkle-fs's all-or-nothing write: as many bytes as
/// the file size limit and the quota allow (a short count, as POSIX `write` gives on a
/// full disk); `EFBIG` / `ENOSPC` only when not one byte fits.
///
/// A refused merkle-fs write changes nothing, and whether a prefix fits only depends on
/// its length (longer never fits better), so the longest prefix that fits is found by
/// bisection, each probe inside a savepoint that is rolled back. Only writes that hit
/// a limit pay for it (log2 of the length in probes).
fn write_short(
    ws: &mut WorkingSet,
    ino: Ino,
    offset: u64,
    data: &[u8],
    now_ns: u64,
) -> merkle_fs::Result<usize> {
    fn over_limit(e: &merkle_fs::Error) -> bool {
        matches!(
            e,
            merkle_fs::Error::FileTooBig { .. } | merkle_fs::Error::NoSpace(_)
        )
    }
    match ws.write(ino, offset, data, now_ns) {
        Err(e) if over_limit(&e) && data.len() > 1 => {}
        other => return other,
    }
    let fits = |ws: &mut WorkingSet, len: usize| -> merkle_fs::Result<bool> {
        let sp = ws.savepoint();
        let wrote = ws.write(ino, offset, &data[..len], now_ns);
        ws.rollback_to(sp)?;
        ws.release_savepoint(sp)?;
        match wrote {
            Ok(_) => Ok(true),
            Err(e) if over_limit(&e) => Ok(false),
            Err(e) => Err(e),
        }
    };
    // Invariant: a prefix of `lo` bytes fits (0 trivially), one of `hi` bytes does not.
    let (mut lo, mut hi) = (0, data.len());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(ws, mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    // With `lo == 0` this fails with the error for one byte (EFBIG before ENOSPC).
    ws.write(ino, offset, &data[..lo.max(1)], now_ns)
}

fn kind(k: merkle_fs::FileKind) -> FileKind {
    match k {
        merkle_fs::FileKind::Regular => FileKind::Regular,
        merkle_fs::FileKind::Directory => FileKind::Directory,
        merkle_fs::FileKind::Symlink => FileKind::Symlink,
    }
}

impl FileSystem for MerkleFs {
    fn getattr(&self, ino: Ino) -> Result<Attr, Errno> {
        let a = self.with(|ws| ws.getattr(ino))?;
        Ok(Attr {
            ino: a.ino,
            kind: kind(a.kind),
            size: a.size,
            nlink: a.nlink,
            atime_ns: a.atime_ns,
            mtime_ns: a.mtime_ns,
            ctime_ns: a.ctime_ns,
        })
    }
    fn lookup(&self, dir: Ino, name: &[u8]) -> Result<Ino, Errno> {
        // The contract: an over-long name is ENAMETOOLONG, not just absent.
        if name.len() > NAME_MAX {
            return Err(Errno::Nametoolong);
        }
        self.with(|ws| ws.lookup(dir, name))
    }
    fn readdir(&self, dir: Ino) -> Result<Vec<DirEntry>, Errno> {
        let entries = self.with(|ws| ws.readdir(dir))?;
        Ok(entries
            .into_iter()
            .map(|e| DirEntry {
                name: e.name,
                ino: e.ino,
                kind: kind(e.kind),
            })
            .collect())
    }
    fn read(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        self.with(|ws| ws.read(ino, offset, buf))
    }
    fn readlink(&self, ino: Ino) -> Result<Vec<u8>, Errno> {
        self.with(|ws| ws.readlink(ino))
    }
    fn create_file(&mut self, dir: Ino, name: &[u8], now_ns: u64) -> Result<Ino, Errno> {
        self.with_mut(|ws| ws.create_file(dir, name, now_ns))
    }
    fn mkdir(&mut self, dir: Ino, name: &[u8], now_ns: u64) -> Result<Ino, Errno> {
        self.with_mut(|ws| ws.mkdir(dir, name, now_ns))
    }
    fn symlink(&mut self, dir: Ino, name: &[u8], target: &[u8], now_ns: u64) -> Result<Ino, Errno> {
        self.with_mut(|ws| ws.symlink(dir, name, target, now_ns))
    }
    fn link(&mut self, ino: Ino, dir: Ino, name: &[u8], now_ns: u64) -> Result<(), Errno> {
        self.with_mut(|ws| ws.link(ino, dir, name, now_ns))
    }
    fn unlink(&mut self, dir: Ino, name: &[u8], now_ns: u64) -> Result<(), Errno> {
        self.with_mut(|ws| ws.unlink(dir, name, now_ns))
    }
    fn rmdir(&mut self, dir: Ino, name: &[u8], now_ns: u64) -> Result<(), Errno> {
        self.with_mut(|ws| ws.rmdir(dir, name, now_ns))
    }
    fn rename(
        &mut self,
        from_dir: Ino,
        from: &[u8],
        to_dir: Ino,
        to: &[u8],
        now_ns: u64,
    ) -> Result<(), Errno> {
        self.with_mut(|ws| ws.rename(from_dir, from, to_dir, to, now_ns))
    }
    fn write(&mut self, ino: Ino, offset: u64, data: &[u8], now_ns: u64) -> Result<usize, Errno> {
        self.with_mut(|ws| write_short(ws, ino, offset, data, now_ns))
    }
    fn set_size(&mut self, ino: Ino, size: u64, now_ns: u64) -> Result<(), Errno> {
        self.with_mut(|ws| ws.set_size(ino, size, now_ns))
    }
    fn set_times(
        &mut self,
        ino: Ino,
        atime_ns: Option<u64>,
        mtime_ns: Option<u64>,
        now_ns: u64,
    ) -> Result<(), Errno> {
        self.with_mut(|ws| ws.set_times(ino, atime_ns, mtime_ns, now_ns))
    }
    fn retain(&mut self, ino: Ino) -> Result<(), Errno> {
        self.with_mut(|ws| ws.retain(ino))
    }
    fn release(&mut self, ino: Ino) -> Result<(), Errno> {
        self.with_mut(|ws| ws.release(ino))
    }
    fn savepoint(&mut self) -> Savepoint {
        let sp = self.guard().as_mut().map(|ws| ws.savepoint().0);
        match sp {
            Some(sp) => Savepoint(sp),
            None => {
                self.no_working_set();
                Savepoint(u64::MAX)
            }
        }
    }
    // A failed rollback leaves the input's effects half undone: a host failure
    // (the node stops before the block is answered), never something to log and
    // continue past.
    fn rollback_to(&mut self, sp: Savepoint) {
        let result = self
            .guard()
            .as_mut()
            .map(|ws| ws.rollback_to(merkle_fs::Savepoint(sp.0)));
        match result {
            Some(Ok(())) => {}
            Some(Err(e)) => self
                .failures
                .record(format!("rollback to savepoint {}: {e}", sp.0)),
            None => {
                self.no_working_set();
            }
        }
    }
    fn release_savepoint(&mut self, sp: Savepoint) {
        let result = self
            .guard()
            .as_mut()
            .map(|ws| ws.release_savepoint(merkle_fs::Savepoint(sp.0)));
        match result {
            Some(Ok(())) => {}
            Some(Err(e)) => self
                .failures
                .record(format!("release of savepoint {}: {e}", sp.0)),
            None => {
                self.no_working_set();
            }
        }
    }
    fn usage(&self) -> FsUsage {
        let u = self
            .guard()
            .as_ref()
            .map(|ws| ws.usage())
            .unwrap_or_default();
        FsUsage {
            bytes: u.bytes,
            inodes: u.inodes,
        }
    }
    fn digest(&self) -> [u8; 32] {
        replicode_runtime::fs::digest::digest(self)
    }
}
