//! A block-scoped overlay over the latest committed height: read-your-writes, nested
//! savepoints (per-input atomicity), and commit as one atomic batch. Dropping a
//! working set without committing leaves no trace: nothing touches RocksDB before
//! [`WorkingSet::commit`] or [`PreparedCommit::write`]; [`WorkingSet::root`] and
//! [`WorkingSet::prepare_commit`] compute the root commit would give by the same
//! code path, without writing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use crate::alloc::Alloc;
use crate::codec::{Inode, InodeBody};
use crate::error::{Error, Result};
use crate::hash;
use crate::keys::{self, Height, LKey};
use crate::read::{FsRead, StateRead};
use crate::store::KnownBase;
use crate::{Ino, Limits, PreparedCommit, Root, Store, Usage};

/// A point a working set can roll back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Savepoint(pub u64);

/// What a savepoint restores besides the overlay (small: the allocator's free list is
/// only the gaps below the highest live inode).
struct Mark {
    id: u64,
    undo_len: usize,
    alloc: Alloc,
    usage: Usage,
}

/// Uncommitted changes on top of one committed height.
pub struct WorkingSet {
    pub(crate) store: Store,
    pub(crate) base: Height,
    overlay: BTreeMap<LKey, Option<Vec<u8>>>,
    /// Previous overlay state of each written key, recorded while savepoints exist.
    undo: Vec<(LKey, Option<Option<Vec<u8>>>)>,
    marks: Vec<Mark>,
    next_mark: u64,
    pub(crate) alloc: Alloc,
    pub(crate) usage: Usage,
    pub(crate) limits: Limits,
    /// Directories whose entry set changed: their listing root is recomputed at commit.
    pub(crate) dirty_dirs: BTreeSet<Ino>,
    /// What this working set learnt about base values (the base never changes).
    known: Mutex<BaseReads>,
}

/// Base values read so far: their hashes (let the commit skip tree reads) and the small
/// ones themselves (inodes and entries, re-read by every path lookup).
#[derive(Default)]
struct BaseReads {
    sums: KnownBase,
    small: std::collections::HashMap<LKey, Vec<u8>>,
}

/// Base values up to this size are kept for re-reads (inode records with inline
/// content are larger; directory inodes and entries are smaller).
const SMALL_VALUE: usize = 128;

impl WorkingSet {
    pub(crate) fn new(
        store: Store,
        base: Height,
        alloc: Alloc,
        usage: Usage,
        limits: Limits,
    ) -> WorkingSet {
        WorkingSet {
            store,
            base,
            overlay: BTreeMap::new(),
            undo: Vec::new(),
            marks: Vec::new(),
            next_mark: 0,
            alloc,
            usage,
            limits,
            dirty_dirs: BTreeSet::new(),
            known: Mutex::new(BaseReads::default()),
        }
    }

    /// The committed height this working set builds on.
    pub fn base_height(&self) -> Height {
        self.base
    }

    /// Replaces the limits (the node reads them from genesis).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Current resource use.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Number of keys changed so far.
    pub fn pending_changes(&self) -> usize {
        self.overlay.len()
    }

    /// Writes (or with `None` deletes) one logical key.
    pub(crate) fn put(&mut self, key: LKey, value: Option<Vec<u8>>) {
        if self.marks.is_empty() {
            self.overlay.insert(key, value);
        } else {
            let prev = self.overlay.insert(key.clone(), value);
            self.undo.push((key, prev));
        }
    }

    /// Stores a node-state value (process table, snapshots) under the same root.
    pub fn put_meta(&mut self, key: &[u8], value: &[u8]) {
        self.put(keys::meta(key), Some(value.to_vec()));
    }

    /// Reads a node-state value.
    pub fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get(&keys::meta(key))
    }

    /// Deletes a node-state value.
    pub fn delete_meta(&mut self, key: &[u8]) {
        self.put(keys::meta(key), None);
    }

    /// All node-state `(key, value)` pairs whose key starts with `prefix`, sorted.
    pub fn list_meta(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let height = self.base;
        self.scan(&keys::meta_prefix(prefix))?
            .into_iter()
            .map(|(k, v)| {
                keys::meta_name(&k)
                    .map(|name| (name, v))
                    .ok_or_else(|| Error::Corrupt {
                        what: "undecodable node state key".into(),
                        height,
                    })
            })
            .collect()
    }

    /// Marks a point to roll back to (nestable).
    pub fn savepoint(&mut self) -> Savepoint {
        let id = self.next_mark;
        self.next_mark += 1;
        self.marks.push(Mark {
            id,
            undo_len: self.undo.len(),
            alloc: self.alloc.clone(),
            usage: self.usage,
        });
        Savepoint(id)
    }

    fn mark_index(&self, sp: Savepoint) -> Result<usize> {
        self.marks
            .iter()
            .position(|m| m.id == sp.0)
            .ok_or(Error::UnknownSavepoint(sp.0))
    }

    /// Undoes everything since `sp` and drops the savepoints taken after it (`sp`
    /// itself stays usable).
    pub fn rollback_to(&mut self, sp: Savepoint) -> Result<()> {
        let idx = self.mark_index(sp)?;
        let undo_len = self.marks[idx].undo_len;
        while self.undo.len() > undo_len {
            let Some((key, prev)) = self.undo.pop() else {
                break;
            };
            match prev {
                Some(v) => {
                    self.overlay.insert(key, v);
                }
                None => {
                    self.overlay.remove(&key);
                }
            }
        }
        self.alloc = self.marks[idx].alloc.clone();
        self.usage = self.marks[idx].usage;
        self.marks.truncate(idx + 1);
        Ok(())
    }

    /// Keeps the changes since `sp` and forgets `sp` and the savepoints after it.
    pub fn release_savepoint(&mut self, sp: Savepoint) -> Result<()> {
        let idx = self.mark_index(sp)?;
        self.marks.truncate(idx);
        if self.marks.is_empty() {
            self.undo.clear();
        }
        Ok(())
    }

    /// Brings every changed directory's listing root up to date in the overlay.
    fn seal_listings(&mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.dirty_dirs);
        for dir in dirs {
            let mut inode = match self.inode(dir) {
                Ok(i) => i,
                Err(Error::NotFound(_)) => continue, // removed later in the block
                Err(e) => return Err(e),
            };
            // The set may over-approximate: a savepoint rollback can free a
            // directory's ino and a later op reuse it for a file or symlink.
            // Sealing an unchanged directory is a no-op, so a superset is safe.
            if !matches!(inode.body, InodeBody::Dir { .. }) {
                continue;
            }
            let entries = self.readdir(dir)?;
            let pairs: Vec<(Vec<u8>, crate::codec::Dirent)> = entries
                .into_iter()
                .map(|e| {
                    (
                        e.name,
                        crate::codec::Dirent {
                            ino: e.ino,
                            kind: e.kind,
                        },
                    )
                })
                .collect();
            let root = hash::listing_root_of(pairs.iter().map(|(n, d)| (n.as_slice(), d)));
            if let InodeBody::Dir { listing_root, .. } = &mut inode.body {
                if *listing_root == root {
                    continue;
                }
                *listing_root = root;
            }
            self.put(keys::inode(dir), Some(inode.encode()));
        }
        Ok(())
    }

    /// The root [`WorkingSet::commit`] at `height` would give now, computed without
    /// writing anything: the working set stays usable and dropping it leaves no trace.
    /// Cost: that of a commit plus a copy of the changed keys.
    pub fn root(&mut self, height: Height) -> Result<Root> {
        // Sealing writes listing roots into the overlay; a later rollback past this
        // point may undo those writes, so the directories stay marked for the commit
        // (resealing an up-to-date listing is a no-op).
        let dirty = self.dirty_dirs.clone();
        self.seal_listings()?;
        self.dirty_dirs = dirty;
        let prepared = self.store.prepare(
            Some(self.base),
            height,
            self.overlay.clone(),
            &self.known().sums,
            self.alloc.clone(),
            self.usage,
        )?;
        Ok(prepared.root())
    }

    /// Seals the block and builds its commit at `height` (the base height + 1)
    /// without writing: the root is known now, [`PreparedCommit::write`] makes it
    /// durable later, and dropping the result leaves no trace.
    pub fn prepare_commit(mut self, height: Height) -> Result<PreparedCommit> {
        self.marks.clear();
        self.undo.clear();
        self.seal_listings()?;
        let WorkingSet {
            store,
            base,
            overlay,
            alloc,
            usage,
            known,
            ..
        } = self;
        let known = known.into_inner().unwrap_or_else(|p| p.into_inner());
        store.prepare(Some(base), height, overlay, &known.sums, alloc, usage)
    }

    /// Commits at `height` (the base height + 1) as one atomic RocksDB write batch and
    /// returns the new root. Cost: O(changed keys · log n) plus, for each directory
    /// whose entry set changed, O(its entries) to rehash its listing.
    pub fn commit(self, height: Height) -> Result<Root> {
        self.prepare_commit(height)?.write()
    }

    /// Reads `key` at the base height once (if not yet known), so later decisions may
    /// rely on whether the base has it.
    pub(crate) fn note_base(&self, key: &[u8]) -> Result<()> {
        if self.known().sums.contains_key(key) {
            return Ok(());
        }
        self.read_base(key)?;
        Ok(())
    }

    /// Reads `key` at the base height, remembering its hash (and value, if small).
    fn read_base(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        {
            let known = self.known();
            match known.sums.get(key) {
                Some(None) => return Ok(None),
                Some(Some(_)) => {
                    if let Some(v) = known.small.get(key) {
                        return Ok(Some(v.clone()));
                    }
                }
                None => {}
            }
        }
        let got = self.store.get_at_sum(key, self.base)?;
        let mut known = self.known();
        known
            .sums
            .insert(key.to_vec(), got.as_ref().map(|(_, sum)| *sum));
        if let Some((v, _)) = &got {
            if v.len() <= SMALL_VALUE {
                known.small.insert(key.to_vec(), v.clone());
            }
        }
        Ok(got.map(|(v, _)| v))
    }

    /// Whether the base height is known to have no inode `dir`, hence (every entry key
    /// belongs to a live directory inode, invariant 3) no entry keys under `dir`: its
    /// entries are then exactly the ones in the overlay. A fact about the base, so
    /// savepoint rollbacks cannot invalidate it.
    fn base_lacks_dir(&self, dir_key: &[u8]) -> bool {
        if dir_key.len() < 9 || dir_key[0] != keys::TAG_DIRENT {
            return false;
        }
        let mut inode = [0u8; 9];
        inode[0] = keys::TAG_INODE;
        inode[1..].copy_from_slice(&dir_key[1..9]);
        matches!(self.known().sums.get(&inode[..]), Some(None))
    }

    fn known(&self) -> MutexGuard<'_, BaseReads> {
        // Only a cache of base-height facts: a poisoned lock's content is still true.
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes an inode record.
    pub(crate) fn put_inode(&mut self, ino: Ino, inode: &Inode) {
        self.put(keys::inode(ino), Some(inode.encode()));
    }
}

impl StateRead for WorkingSet {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.overlay.get(key) {
            Some(v) => Ok(v.clone()),
            None if self.base_lacks_dir(key) => Ok(None),
            None => self.read_base(key),
        }
    }

    fn scan(&self, prefix: &[u8]) -> Result<Vec<(LKey, Vec<u8>)>> {
        let base = if self.base_lacks_dir(prefix) {
            Vec::new()
        } else {
            self.store.scan_at(prefix, self.base)?
        };
        let mut merged: BTreeMap<LKey, Vec<u8>> = base.into_iter().collect();
        for (k, v) in self
            .overlay
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            match v {
                Some(v) => {
                    merged.insert(k.clone(), v.clone());
                }
                None => {
                    merged.remove(k);
                }
            }
        }
        Ok(merged.into_iter().collect())
    }

    fn height(&self) -> Height {
        self.base
    }
}
