//! Incremental digest of a process's linear memory.
//!
//! Why: the app hash must cover every process's state after every block, and a
//! server may own tens of MiB of memory of which an input touches a few pages.
//! Hashing all of it per block would make the digest cost proportional to memory
//! size. Instead a [`MemoryShadow`] keeps a copy of the memory as of the last
//! [`MemoryShadow::sync`], finds changed 4 KiB pages with a plain comparison
//! (memory bandwidth, no hashing), and re-hashes only those pages and their paths
//! in a cached binary Merkle tree over the page hashes.
//!
//! The same copy is the undo image for atomic input rejection: between two syncs
//! it holds exactly the memory before the input, so a rejected input is undone by
//! copying back only the pages that differ ([`MemoryShadow::restore_into`]).
//!
//! Hash layout (fixed, see docs/design.md `## Processes`):
//! - leaf = SHA-256(0x00 ‖ page bytes) for every 4 KiB page, in address order;
//! - node = SHA-256(0x01 ‖ left ‖ right); an odd node at the end of a level is
//!   carried up unchanged;
//! - root of an empty memory = SHA-256(0x02).

use sha2::{Digest as _, Sha256};

/// Granularity of change detection and hashing.
pub const PAGE_SIZE: usize = 4096;

/// A 32-byte SHA-256 value.
pub type Hash = [u8; 32];

/// What a [`MemoryShadow::sync`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncStats {
    /// Pages whose bytes differed from the shadow (including newly grown pages).
    pub changed_pages: usize,
    /// Pages in the memory after the sync.
    pub total_pages: usize,
}

/// The pages of a memory that may have changed since the last sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WrittenPages {
    /// Unknown or too many: compare every page.
    All,
    /// Ascending, without duplicates.
    Pages(Vec<u32>),
}

/// Copy of a linear memory with cached per-page hashes and Merkle levels.
#[derive(Clone)]
pub struct MemoryShadow {
    copy: Vec<u8>,
    /// `levels[0]` are page hashes; each next level halves; the last has one node.
    levels: Vec<Vec<Hash>>,
    /// Per page: copied by `sync` but its leaf hash is not recomputed yet.
    stale: Vec<bool>,
    /// Whether any entry of `stale` is set (skips the scan when nothing changed).
    any_stale: bool,
    /// Whether any leaf changed since the tree above the leaves was computed.
    tree_stale: bool,
    /// Pages changed since [`MemoryShadow::take_unpersisted`]: what a store
    /// keeping one record per page must rewrite.
    unpersisted: std::collections::BTreeSet<u32>,
}

impl std::fmt::Debug for MemoryShadow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryShadow")
            .field("bytes", &self.copy.len())
            .field("any_stale", &self.any_stale)
            .finish()
    }
}

/// Restoring a shadow into a memory of another size is impossible in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("memory is {memory} bytes but its shadow is {shadow} bytes; rebuild the instance instead")]
pub struct SizeMismatch {
    pub memory: usize,
    pub shadow: usize,
}

fn zero_page_hash() -> Hash {
    leaf_hash(&[0u8; PAGE_SIZE])
}

fn leaf_hash(page: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(page);
    h.finalize().into()
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

fn page_range(index: usize, len: usize) -> std::ops::Range<usize> {
    let start = index * PAGE_SIZE;
    start..(start + PAGE_SIZE).min(len)
}

/// Hashes one page; a page that is all zero (most of a fresh heap) reuses `zero`.
fn hash_page(page: &[u8], zero: &Hash) -> Hash {
    if page.len() == PAGE_SIZE && page.iter().all(|b| *b == 0) {
        *zero
    } else {
        leaf_hash(page)
    }
}

impl MemoryShadow {
    /// Takes a full copy of `memory` and hashes every page (done once per process).
    pub fn new(memory: &[u8]) -> Self {
        let mut shadow = MemoryShadow {
            copy: memory.to_vec(),
            levels: Vec::new(),
            stale: Vec::new(),
            any_stale: false,
            tree_stale: true,
            unpersisted: Default::default(),
        };
        shadow.rebuild_leaves();
        shadow
    }

    /// The pages changed since the last call (all of them after [`MemoryShadow::new`]),
    /// ascending; forgets them.
    pub fn take_unpersisted(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.unpersisted).into_iter().collect()
    }

    /// The memory bytes as of the last sync.
    pub fn bytes(&self) -> &[u8] {
        &self.copy
    }

    /// Number of pages covered by the shadow.
    pub fn pages(&self) -> usize {
        self.copy.len().div_ceil(PAGE_SIZE)
    }

    fn rebuild_leaves(&mut self) {
        let zero = zero_page_hash();
        let len = self.copy.len();
        let leaves: Vec<Hash> = (0..self.pages())
            .map(|i| hash_page(&self.copy[page_range(i, len)], &zero))
            .collect();
        self.stale = vec![false; leaves.len()];
        self.unpersisted = (0..leaves.len() as u32).collect();
        self.levels = vec![leaves];
        self.any_stale = false;
        self.tree_stale = true;
    }

    /// Brings the shadow up to date with `memory` by comparing every page.
    ///
    /// Cost: one comparison pass over the memory plus a copy of changed pages;
    /// hashing is deferred to [`MemoryShadow::root`]. Used when nothing is known
    /// about what changed, and as the end-of-block check of write tracking.
    pub fn sync(&mut self, memory: &[u8]) -> SyncStats {
        let pages = self.pages().min(memory.len().div_ceil(PAGE_SIZE));
        self.sync_with(memory, 0..pages)
    }

    /// Brings the shadow up to date with `memory`, given the pages that may have
    /// changed since the last sync (ascending; indices past the memory are
    /// ignored). Pages added by `memory.grow` are taken as changed whether
    /// listed or not. Cost: proportional to the listed pages, not the memory.
    ///
    /// Correct only if every page that changed is listed: the write tracking of
    /// [`super::dirty`] and `wasi::memory::WriteLog` provides that, and
    /// [`MemoryShadow::sync`] at the end of each block checks it.
    pub fn sync_pages(&mut self, memory: &[u8], pages: &[u32]) -> SyncStats {
        self.sync_with(memory, pages.iter().map(|&p| p as usize))
    }

    /// [`MemoryShadow::sync`] or [`MemoryShadow::sync_pages`], as `written` says.
    pub fn sync_written(&mut self, memory: &[u8], written: &WrittenPages) -> SyncStats {
        match written {
            WrittenPages::All => self.sync(memory),
            WrittenPages::Pages(pages) => self.sync_pages(memory, pages),
        }
    }

    fn sync_with(&mut self, memory: &[u8], candidates: impl Iterator<Item = usize>) -> SyncStats {
        let old_len = self.copy.len();
        if memory.len() > old_len && old_len.is_multiple_of(PAGE_SIZE) {
            // `memory.grow`: compare the old pages as usual, then append the new
            // ones as changed; only they and the tree above them are re-hashed.
            let old_pages = self.pages();
            let mut stats = self.compare_pages(&memory[..old_len], candidates);
            self.copy.extend_from_slice(&memory[old_len..]);
            let total = self.pages();
            self.stale.resize(total, true);
            self.unpersisted.extend(old_pages as u32..total as u32);
            if let Some(leaves) = self.levels.first_mut() {
                leaves.resize(total, [0; 32]);
            }
            self.any_stale = true;
            self.tree_stale = true;
            stats.changed_pages += total - old_pages;
            stats.total_pages = total;
            return stats;
        }
        if memory.len() != old_len {
            // A restore into another size: rebuild fully.
            let old_pages = self.pages();
            self.copy = memory.to_vec();
            self.rebuild_leaves();
            let total = self.pages();
            return SyncStats {
                changed_pages: total.saturating_sub(old_pages).max(1),
                total_pages: total,
            };
        }
        self.compare_pages(memory, candidates)
    }

    /// Copies the listed pages of `memory` (same length as the shadow) that differ.
    fn compare_pages(
        &mut self,
        memory: &[u8],
        candidates: impl Iterator<Item = usize>,
    ) -> SyncStats {
        let len = memory.len();
        debug_assert_eq!(self.copy.len(), len);
        let mut changed = 0;
        for i in candidates {
            let range = i
                .checked_mul(PAGE_SIZE)
                .filter(|start| *start < len)
                .map(|_| page_range(i, len));
            let Some(range) = range else { continue };
            let (new, old) = (&memory[range.clone()], &mut self.copy[range]);
            if new != old {
                old.copy_from_slice(new);
                changed += 1;
                if let Some(flag) = self.stale.get_mut(i) {
                    *flag = true;
                }
                self.unpersisted.insert(i as u32);
            }
        }
        self.any_stale |= changed > 0;
        SyncStats {
            changed_pages: changed,
            total_pages: self.pages(),
        }
    }

    /// Copies back into `memory` every page that differs from the shadow; returns
    /// how many pages were restored. Used to undo a rejected input.
    pub fn restore_into(&self, memory: &mut [u8]) -> Result<usize, SizeMismatch> {
        if memory.len() != self.copy.len() {
            return Err(SizeMismatch {
                memory: memory.len(),
                shadow: self.copy.len(),
            });
        }
        let mut restored = 0;
        for (cur, old) in memory
            .chunks_mut(PAGE_SIZE)
            .zip(self.copy.chunks(PAGE_SIZE))
        {
            if cur != old {
                cur.copy_from_slice(old);
                restored += 1;
            }
        }
        Ok(restored)
    }

    /// Merkle root over the page hashes of the shadow; re-hashes only the pages
    /// changed since the last call and the tree paths above them.
    pub fn root(&mut self) -> Hash {
        let len = self.copy.len();
        if self.any_stale {
            let zero = zero_page_hash();
            let mut parents: Vec<usize> = Vec::new();
            for i in 0..self.stale.len() {
                if !std::mem::replace(&mut self.stale[i], false) {
                    continue;
                }
                let h = hash_page(&self.copy[page_range(i, len)], &zero);
                if let Some(slot) = self.levels.first_mut().and_then(|l| l.get_mut(i)) {
                    *slot = h;
                }
                if parents.last() != Some(&(i / 2)) {
                    parents.push(i / 2);
                }
            }
            self.any_stale = false;
            if !self.tree_stale {
                self.update_paths(parents);
            }
        }
        if self.tree_stale {
            self.rebuild_tree();
        }
        match self.levels.last().and_then(|l| l.first()) {
            Some(root) if !self.levels[0].is_empty() => *root,
            _ => Sha256::digest([0x02]).into(),
        }
    }

    fn combine(level: &[Hash], parent: usize) -> Option<Hash> {
        let left = level.get(2 * parent)?;
        Some(match level.get(2 * parent + 1) {
            Some(right) => node_hash(left, right),
            None => *left,
        })
    }

    fn rebuild_tree(&mut self) {
        self.levels.truncate(1);
        while self.levels.last().map_or(0, Vec::len) > 1 {
            let below = &self.levels[self.levels.len() - 1];
            let next: Vec<Hash> = (0..below.len().div_ceil(2))
                .filter_map(|p| Self::combine(below, p))
                .collect();
            self.levels.push(next);
        }
        self.tree_stale = false;
    }

    /// Recomputes the given parent nodes level by level up to the root.
    fn update_paths(&mut self, mut parents: Vec<usize>) {
        for level in 1..self.levels.len() {
            let mut next: Vec<usize> = Vec::with_capacity(parents.len());
            for &p in &parents {
                if let Some(h) = Self::combine(&self.levels[level - 1], p) {
                    self.levels[level][p] = h;
                }
                if next.last() != Some(&(p / 2)) {
                    next.push(p / 2);
                }
            }
            parents = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_root(mem: &[u8]) -> Hash {
        MemoryShadow::new(mem).root()
    }

    #[test]
    fn incremental_root_equals_full_rehash() {
        let mut mem = vec![0u8; 37 * PAGE_SIZE];
        let mut shadow = MemoryShadow::new(&mem);
        let r0 = shadow.root();
        for (step, page) in [0usize, 36, 17, 18, 5].iter().enumerate() {
            mem[page * PAGE_SIZE + step] ^= 0x5a;
            let stats = shadow.sync(&mem);
            assert_eq!(stats.changed_pages, 1);
            assert_eq!(shadow.root(), full_root(&mem), "after changing page {page}");
        }
        assert_ne!(shadow.root(), r0);
    }

    #[test]
    fn unchanged_memory_keeps_root_and_reports_no_change() {
        let mem: Vec<u8> = (0..8 * PAGE_SIZE).map(|i| (i % 251) as u8).collect();
        let mut shadow = MemoryShadow::new(&mem);
        let r = shadow.root();
        assert_eq!(shadow.sync(&mem).changed_pages, 0);
        assert_eq!(shadow.root(), r);
    }

    #[test]
    fn restore_undoes_changes_page_by_page() {
        let original: Vec<u8> = (0..4 * PAGE_SIZE).map(|i| (i % 7) as u8).collect();
        let shadow = MemoryShadow::new(&original);
        let mut mem = original.clone();
        mem[10] = 99;
        mem[3 * PAGE_SIZE + 1] = 98;
        assert_eq!(shadow.restore_into(&mut mem), Ok(2));
        assert_eq!(mem, original);
    }

    #[test]
    fn restore_refuses_other_size() {
        let shadow = MemoryShadow::new(&[0u8; PAGE_SIZE]);
        let mut bigger = vec![0u8; 2 * PAGE_SIZE];
        assert!(shadow.restore_into(&mut bigger).is_err());
    }

    #[test]
    fn growth_with_changed_old_pages_equals_a_full_rehash() {
        let mut mem: Vec<u8> = (0..16 * PAGE_SIZE).map(|i| (i % 13) as u8).collect();
        let mut shadow = MemoryShadow::new(&mem);
        shadow.root();
        for round in 0..3u8 {
            mem[3 * PAGE_SIZE + usize::from(round)] ^= 0x77;
            let old_pages = mem.len() / PAGE_SIZE;
            let mut grown_part = vec![0u8; 16 * PAGE_SIZE];
            grown_part[PAGE_SIZE + 5] = round + 1;
            mem.extend_from_slice(&grown_part);
            let stats = shadow.sync(&mem);
            assert_eq!(stats.changed_pages, 1 + 16, "round {round}");
            assert_eq!(stats.total_pages, old_pages + 16);
            assert_eq!(shadow.bytes(), &mem[..]);
            assert_eq!(shadow.root(), full_root(&mem), "round {round}");
            // And the incremental path keeps working after growth.
            mem[old_pages * PAGE_SIZE + 9] = 0xee;
            assert_eq!(shadow.sync(&mem).changed_pages, 1);
            assert_eq!(shadow.root(), full_root(&mem));
        }
    }

    #[test]
    fn growth_rebuilds_and_changes_root() {
        let mut shadow = MemoryShadow::new(&[1u8; PAGE_SIZE]);
        let r1 = shadow.root();
        let grown = [vec![1u8; PAGE_SIZE], vec![0u8; PAGE_SIZE]].concat();
        shadow.sync(&grown);
        assert_ne!(shadow.root(), r1);
        assert_eq!(shadow.root(), full_root(&grown));
    }

    #[test]
    fn listed_pages_are_synced_and_unlisted_ones_wait_for_the_full_check() {
        let mut mem: Vec<u8> = (0..10 * PAGE_SIZE).map(|i| (i % 31) as u8).collect();
        let mut shadow = MemoryShadow::new(&mem);
        shadow.root();
        mem[2 * PAGE_SIZE + 7] ^= 1;
        mem[7 * PAGE_SIZE] ^= 1;
        // Page 7 changed but is not listed; 3 and 99 are listed but unchanged/absent.
        let stats = shadow.sync_pages(&mem, &[2, 3, 99]);
        assert_eq!(stats.changed_pages, 1);
        assert_ne!(
            shadow.root(),
            full_root(&mem),
            "the unlisted page is not seen yet"
        );
        assert_eq!(
            shadow.sync(&mem).changed_pages,
            1,
            "the full check finds page 7"
        );
        assert_eq!(shadow.root(), full_root(&mem));
        assert_eq!(shadow.bytes(), &mem[..]);
    }

    #[test]
    fn listed_sync_after_growth_takes_new_pages_as_changed() {
        let mut mem = vec![3u8; 4 * PAGE_SIZE];
        let mut shadow = MemoryShadow::new(&mem);
        shadow.root();
        mem[PAGE_SIZE] = 9;
        mem.extend_from_slice(&[5u8; 4 * PAGE_SIZE]);
        let stats = shadow.sync_written(&mem, &WrittenPages::Pages(vec![1]));
        assert_eq!(stats.changed_pages, 1 + 4);
        assert_eq!(shadow.root(), full_root(&mem));
        assert_eq!(shadow.sync(&mem).changed_pages, 0);
    }

    #[test]
    fn unpersisted_pages_are_every_page_at_first_then_exactly_the_changed_ones() {
        let mut mem = vec![0u8; 4 * PAGE_SIZE];
        let mut shadow = MemoryShadow::new(&mem);
        assert_eq!(shadow.take_unpersisted(), vec![0, 1, 2, 3]);
        assert!(shadow.take_unpersisted().is_empty());
        mem[2 * PAGE_SIZE] = 1;
        shadow.sync(&mem);
        mem.extend_from_slice(&[0u8; 2 * PAGE_SIZE]);
        mem[0] = 1;
        shadow.sync_pages(&mem, &[0]);
        assert_eq!(shadow.take_unpersisted(), vec![0, 2, 4, 5]);
    }

    #[test]
    fn position_matters() {
        let mut a = vec![0u8; 2 * PAGE_SIZE];
        let mut b = a.clone();
        a[0] = 1;
        b[PAGE_SIZE] = 1;
        assert_ne!(full_root(&a), full_root(&b));
    }
}
