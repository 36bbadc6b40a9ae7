//! `replicode run --state DIR`: the guest's filesystem is a merkle-fs store kept in
//! DIR across runs (the store the ABCI app keeps its state in, through the same
//! [`MerkleFs`] adapter).
//!
//! The store is mounted as the guest's root `/`. The run works on one working set
//! over the latest committed version; when the guest exits (with any code: a process's
//! writes survive its exit status) the working set becomes version `height + 1`; when
//! it does not (trap, fuel, limits, blocked read) the working set is dropped and the
//! store stays at its last root. `--dir` trees are copied into the working set at
//! their guest path, so they are part of what a clean run commits.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use merkle_fs::{Height, Root, Store, StoreOptions};
use replicode_abci::machine::fs::{self as merkle_adapter, HostFailures, MerkleFs, Slot};
use replicode_runtime::fs::{self, FsLimits, Ino, SharedFs, ROOT_INO};
use replicode_runtime::run::{self, RunError, RunSpec};

/// RocksDB block cache for a one-shot run (the node's default is sized for a validator).
const CACHE_BYTES: usize = 8 << 20;

/// An open `--state` store and the working set of this run.
pub struct State {
    /// Storage failures met under the guest's syscalls: a run that met one
    /// commits nothing (see [`State::commit`]).
    failures: HostFailures,
    dir: PathBuf,
    store: Store,
    slot: Slot,
}

impl State {
    /// Opens (or creates, as an empty root directory at height 0) the store in `dir`.
    pub fn open(dir: &Path, limits: &FsLimits) -> anyhow::Result<State> {
        std::fs::create_dir_all(dir).with_context(|| format!("--state {}", dir.display()))?;
        let store = Store::open_with(
            dir,
            StoreOptions {
                sync: true,
                block_cache_bytes: CACHE_BYTES,
                limits: merkle_adapter::limits(limits),
                ..StoreOptions::default()
            },
        )
        .with_context(|| format!("--state {}: opening the store", dir.display()))?;
        let slot: Slot = Arc::new(Mutex::new(Some(store.working_set())));
        Ok(State {
            dir: dir.to_path_buf(),
            store,
            slot,
            failures: HostFailures::default(),
        })
    }

    /// The guest's filesystem (the working set) and its preopens: `/` first, then a
    /// copy of each `--dir` of `spec` at its guest path.
    pub fn mount(&self, spec: &RunSpec) -> Result<(SharedFs, Vec<(String, Ino)>), RunError> {
        let shared = fs::shared(MerkleFs::new(self.slot.clone(), self.failures.clone()));
        let mut preopens = vec![("/".to_string(), ROOT_INO)];
        let mut guard = shared.lock().map_err(|_| RunError::Poisoned)?;
        preopens.extend(run::copy_dirs(&mut **guard, spec)?);
        drop(guard);
        Ok((shared, preopens))
    }

    /// The latest committed version.
    pub fn head(&self) -> anyhow::Result<(Height, Root)> {
        let height = self.store.latest_height();
        let root = self
            .store
            .root_at(height)
            .with_context(|| format!("--state {}: reading the root", self.dir.display()))?;
        Ok((height, root))
    }

    /// Commits the run's working set as the next version and returns it.
    pub fn commit(self) -> anyhow::Result<(Height, Root)> {
        if let Some(failure) = self.failures.take() {
            anyhow::bail!(
                "--state {}: storage failed during the run, nothing committed: {failure}",
                self.dir.display()
            );
        }
        let ws = self
            .slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .context("--state: the working set is gone")?;
        let height = ws.base_height() + 1;
        let root = ws
            .commit(height)
            .with_context(|| format!("--state {}: commit", self.dir.display()))?;
        Ok((height, root))
    }
}

/// The stderr line reporting a new version: `replicode: state root HEX (height N)`.
pub fn report_commit(height: Height, root: &Root) {
    eprintln!(
        "replicode: state root {} (height {height})",
        hex::encode(root)
    );
}

/// The stderr line when nothing was committed.
pub fn report_unchanged(height: Height, root: &Root) {
    eprintln!(
        "replicode: state unchanged, nothing committed: root {} (height {height})",
        hex::encode(root)
    );
}
