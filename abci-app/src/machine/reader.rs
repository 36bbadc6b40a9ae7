//! Committed state for queries, readable from any thread.
//!
//! The consensus thread publishes what only it knows (the committed height,
//! root and process list) after every commit; file reads go straight to the
//! store, which reads committed heights only. So a query never waits for a
//! block, and a block never waits for queries.

use std::sync::{Arc, RwLock};

use merkle_fs::{FsRead, Store};

use crate::executor::{Committed, ExecError, FileRead, ProcessInfo, StateReader};

/// What the last commit published.
#[derive(Default)]
struct Published {
    committed: Committed,
    processes: Vec<ProcessInfo>,
}

/// The machine's [`StateReader`].
pub struct MachineReader {
    store: Store,
    published: RwLock<Arc<Published>>,
}

impl MachineReader {
    pub fn new(store: Store) -> Self {
        MachineReader {
            store,
            published: RwLock::new(Arc::default()),
        }
    }

    /// Makes a new commit visible to queries.
    pub(super) fn publish(&self, committed: Committed, processes: Vec<ProcessInfo>) {
        let published = Arc::new(Published {
            committed,
            processes,
        });
        *self.published.write().unwrap_or_else(|p| p.into_inner()) = published;
    }

    fn published(&self) -> Arc<Published> {
        self.published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl StateReader for MachineReader {
    fn committed(&self) -> Result<Committed, ExecError> {
        Ok(self.published().committed.clone())
    }

    fn read_file(
        &self,
        path: &str,
        height: Option<u64>,
        prove: bool,
    ) -> Result<FileRead, ExecError> {
        let height = height.unwrap_or_else(|| self.published().committed.height);
        let snap = self
            .store
            .at(height)
            .map_err(|e| ExecError::new("read at height", e))?;
        // Anything about the path itself (missing, not a regular file, a name too
        // long) is an answer for the asker; store failures are errors.
        let contents = match snap.read_path(path.as_bytes()) {
            Ok(bytes) => Some(bytes),
            Err(e) if !e.is_host_failure() => None,
            Err(e) => return Err(ExecError::new("read file", e)),
        };
        let proof = if prove && contents.is_some() {
            let p = self
                .store
                .prove_file_range(height, path.as_bytes(), 0, u64::MAX)
                .map_err(|e| ExecError::new("prove file", e))?;
            Some(borsh::to_vec(&p).map_err(|e| ExecError::new("encode proof", e))?)
        } else {
            None
        };
        Ok(FileRead {
            height,
            contents,
            proof,
        })
    }

    fn processes(&self) -> Result<Vec<ProcessInfo>, ExecError> {
        Ok(self.published().processes.clone())
    }

    fn app_record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ExecError> {
        let height = self.published().committed.height;
        if height == 0 {
            return Ok(None);
        }
        let snap = self
            .store
            .at(height)
            .map_err(|e| ExecError::new("read at height", e))?;
        super::MetaRead::get_meta_bytes(&snap, key)
    }

    fn oldest_readable_height(&self) -> u64 {
        self.store.retained_height().max(1)
    }
}
