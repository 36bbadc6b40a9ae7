//! The runtime's filesystem test suite against the merkle-fs adapter ([`MerkleFs`]).
//!
//! The test modules are the runtime's own (`runtime/tests/wasi/`, included by path,
//! not copied): the syscall-family guests of `wasm_programs/` (the self-checking POSIX
//! `fileops` program, readdir, escapes, limits, ...) and the Rust-level `FileSystem`
//! contract tests (`fs_trait`). There they run on `MemFs`; here [`backend`] gives
//! them a `MerkleFs` over a working set of a fresh store in a temporary directory.
//! The initial tree a test asks for is committed first, so guests run on a working
//! set over committed state, as guests in a block do.
//!
//! [`MerkleFs`]: replicode_abci::machine::fs::MerkleFs

#[path = "../../runtime/tests/wasi/common.rs"]
mod common;

#[path = "../../runtime/tests/wasi/args_env.rs"]
mod args_env;
#[path = "../../runtime/tests/wasi/blocking.rs"]
mod blocking;
#[path = "../../runtime/tests/wasi/clock_random.rs"]
mod clock_random;
#[path = "../../runtime/tests/wasi/determinism.rs"]
mod determinism;
#[path = "../../runtime/tests/wasi/efault.rs"]
mod efault;
#[path = "../../runtime/tests/wasi/escape.rs"]
mod escape;
#[path = "../../runtime/tests/wasi/fileops.rs"]
mod fileops;
#[path = "../../runtime/tests/wasi/fs_trait.rs"]
mod fs_trait;
#[path = "../../runtime/tests/wasi/limits.rs"]
mod limits;
#[path = "../../runtime/tests/wasi/poll.rs"]
mod poll;
#[path = "../../runtime/tests/wasi/readdir.rs"]
mod readdir;
#[path = "../../runtime/tests/wasi/stdio.rs"]
mod stdio;

/// The filesystem under test: the merkle-fs adapter over a temporary store.
mod backend {
    use std::sync::{Arc, Mutex};

    use merkle_fs::{Store, StoreOptions};
    use replicode_abci::machine::fs::{self as adapter, MerkleFs, Slot};
    use replicode_runtime::errno::Errno;
    use replicode_runtime::fs::{
        Attr, DirEntry, FileSystem, FsLimits, FsUsage, Ino, Savepoint, ROOT_INO,
    };

    /// A fresh store (root times `now`, like `MemFs::new`), populated by `build` and
    /// committed at height 1; the filesystem is a working set over that height.
    pub fn new_fs(
        limits: FsLimits,
        now: u64,
        build: impl FnOnce(&mut dyn FileSystem),
    ) -> Box<dyn FileSystem> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_with(
            dir.path(),
            StoreOptions {
                sync: false,
                block_cache_bytes: 1 << 20,
                limits: adapter::limits(&limits),
                ..StoreOptions::default()
            },
        )
        .expect("open store");
        let slot: Slot = Arc::new(Mutex::new(Some(store.working_set())));
        let mut fs = MerkleFs::new(slot.clone(), adapter::HostFailures::default());
        fs.set_times(ROOT_INO, Some(now), Some(now), now)
            .expect("root times");
        build(&mut fs);
        let ws = slot.lock().expect("slot").take().expect("working set");
        ws.commit(1).expect("commit the initial tree");
        *slot.lock().expect("slot") = Some(store.working_set());
        Box::new(TempMerkle { fs, _dir: dir })
    }

    /// The adapter plus the directory its store lives in (removed after the store
    /// is closed: fields drop in order).
    struct TempMerkle {
        fs: MerkleFs,
        _dir: tempfile::TempDir,
    }

    impl FileSystem for TempMerkle {
        fn getattr(&self, ino: Ino) -> Result<Attr, Errno> {
            self.fs.getattr(ino)
        }
        fn lookup(&self, dir: Ino, name: &[u8]) -> Result<Ino, Errno> {
            self.fs.lookup(dir, name)
        }
        fn readdir(&self, dir: Ino) -> Result<Vec<DirEntry>, Errno> {
            self.fs.readdir(dir)
        }
        fn read(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
            self.fs.read(ino, offset, buf)
        }
        fn readlink(&self, ino: Ino) -> Result<Vec<u8>, Errno> {
            self.fs.readlink(ino)
        }
        fn create_file(&mut self, dir: Ino, name: &[u8], now: u64) -> Result<Ino, Errno> {
            self.fs.create_file(dir, name, now)
        }
        fn mkdir(&mut self, dir: Ino, name: &[u8], now: u64) -> Result<Ino, Errno> {
            self.fs.mkdir(dir, name, now)
        }
        fn symlink(&mut self, dir: Ino, name: &[u8], to: &[u8], now: u64) -> Result<Ino, Errno> {
            self.fs.symlink(dir, name, to, now)
        }
        fn link(&mut self, ino: Ino, dir: Ino, name: &[u8], now: u64) -> Result<(), Errno> {
            self.fs.link(ino, dir, name, now)
        }
        fn unlink(&mut self, dir: Ino, name: &[u8], now: u64) -> Result<(), Errno> {
            self.fs.unlink(dir, name, now)
        }
        fn rmdir(&mut self, dir: Ino, name: &[u8], now: u64) -> Result<(), Errno> {
            self.fs.rmdir(dir, name, now)
        }
        fn rename(
            &mut self,
            from_dir: Ino,
            from: &[u8],
            to_dir: Ino,
            to: &[u8],
            now: u64,
        ) -> Result<(), Errno> {
            self.fs.rename(from_dir, from, to_dir, to, now)
        }
        fn write(&mut self, ino: Ino, offset: u64, data: &[u8], now: u64) -> Result<usize, Errno> {
            self.fs.write(ino, offset, data, now)
        }
        fn set_size(&mut self, ino: Ino, size: u64, now: u64) -> Result<(), Errno> {
            self.fs.set_size(ino, size, now)
        }
        fn set_times(
            &mut self,
            ino: Ino,
            atime: Option<u64>,
            mtime: Option<u64>,
            now: u64,
        ) -> Result<(), Errno> {
            self.fs.set_times(ino, atime, mtime, now)
        }
        fn retain(&mut self, ino: Ino) -> Result<(), Errno> {
            self.fs.retain(ino)
        }
        fn release(&mut self, ino: Ino) -> Result<(), Errno> {
            self.fs.release(ino)
        }
        fn savepoint(&mut self) -> Savepoint {
            self.fs.savepoint()
        }
        fn rollback_to(&mut self, sp: Savepoint) {
            self.fs.rollback_to(sp)
        }
        fn release_savepoint(&mut self, sp: Savepoint) {
            self.fs.release_savepoint(sp)
        }
        fn usage(&self) -> FsUsage {
            self.fs.usage()
        }
        fn digest(&self) -> [u8; 32] {
            self.fs.digest()
        }
    }
}

/// Every test module of the runtime's suite is included above (a module added there
/// and forgotten here would silently not run on merkle-fs).
#[test]
fn every_runtime_suite_module_runs_here() {
    let runtime_main = include_str!("../../runtime/tests/wasi/main.rs");
    let theirs: Vec<&str> = runtime_main
        .lines()
        .filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';'))
        .collect();
    let ours: Vec<&str> = include_str!("fs_conformance.rs")
        .lines()
        .filter_map(|l| {
            l.strip_prefix("#[path = \"../../runtime/tests/wasi/")?
                .strip_suffix(".rs\"]")
        })
        .collect();
    assert!(theirs.contains(&"fileops") && theirs.contains(&"fs_trait"));
    assert_eq!(
        ours, theirs,
        "runtime/tests/wasi/main.rs lists other modules"
    );
}
