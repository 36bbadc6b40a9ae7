//! The batched, parallel update of the Jellyfish Merkle Tree.
//!
//! Stock `jmt::put_value_set` inserts one key at a time and rehashes every internal node
//! on the key's path for each key (a 10,000-key block rehashed the root 10,000 times).
//! This module applies a whole block at once: the sorted key-hash batch is split by
//! nibble at each level, every touched node is read once, rebuilt once and hashed once,
//! and the subtrees below the root's 16 children are computed on all cores.
//!
//! It follows stock jmt 0.12's canonical shape (a subtree with one key is a leaf at the
//! shallowest unique position, an internal node with a single leaf child collapses into
//! it) and its hashes, and its nodes convert to jmt's borsh `Node` encoding
//! ([`TNode::encode_jmt`]), so `jmt::JellyfishMerkleTree::get_with_proof` reads and
//! proves the stored tree. What `tests` below checks: the root hash equals stock jmt's
//! `put_value_set` root at every version (random keys, and crafted key hashes sharing
//! 17..63-nibble prefixes); stock jmt proves present and absent keys from our nodes and
//! the proofs verify against its root; jmt's borsh nodes and ours round-trip through our
//! encodings; the nodes written minus those superseded are exactly the nodes reachable
//! from the new root; and the one-thread and parallel paths write identical nodes and
//! stale lists. It does not compare our node set with the node set jmt writes.
//!
//! Nodes of the upper levels of the latest tree are kept in a [`NodeCache`] across
//! commits, so a commit reads only the lower levels from RocksDB.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rocksdb::{ColumnFamily, DB};
use sha2::{Digest, Sha256};

const LEAF_DOMAIN: &[u8] = b"JMT::LeafNode";
const INTERNAL_DOMAIN: &[u8] = b"JMT::IntrnalNode";
/// jmt's hash of an empty subtree.
pub(crate) const PLACEHOLDER: [u8; 32] = *b"SPARSE_MERKLE_PLACEHOLDER_HASH__";

/// A 32-byte hash (key hash, value hash or node hash).
pub(crate) type H256 = [u8; 32];

/// One change of the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Update {
    /// The key hash.
    pub key: H256,
    /// The new value hash (`None`: delete).
    pub value: Option<H256>,
    /// The value hash the key has in the base tree, if known (`None`: unknown or
    /// absent). Lets the update recognise the key's existing leaf from its parent's
    /// child hash without reading it.
    pub old: Option<H256>,
}

fn inserts(ups: &[Update]) -> Vec<(H256, H256)> {
    ups.iter()
        .filter_map(|u| u.value.map(|v| (u.key, v)))
        .collect()
}

/// A child reference inside an internal node (jmt's `Child`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Child {
    pub hash: H256,
    pub version: u64,
    /// `None` for a leaf, `Some(leaf count)` for an internal node.
    pub leaves: Option<u64>,
}

impl Child {
    fn leaf_count(&self) -> u64 {
        self.leaves.unwrap_or(1)
    }
}

/// A tree node, as jmt's `Node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TNode {
    Null,
    Internal(Box<[Option<Child>; 16]>),
    Leaf { key: H256, value: H256 },
}

fn sha(parts: &[&[u8]]) -> H256 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// jmt's leaf hash.
pub(crate) fn leaf_hash(key: &H256, value: &H256) -> H256 {
    sha(&[LEAF_DOMAIN, key, value])
}

/// jmt's internal node hash: a 4-level binary sparse Merkle tree over the 16 slots,
/// where a range holding a single leaf (and nothing else) takes that leaf's hash.
fn merkle_hash(ch: &[Option<Child>; 16], start: u32, width: u32, exist: u16, leaf: u16) -> H256 {
    let mask = (((1u32 << width) - 1) << start) as u16;
    let (re, rl) = (exist & mask, leaf & mask);
    if re == 0 {
        PLACEHOLDER
    } else if width == 1 || (re.count_ones() == 1 && rl != 0) {
        ch[re.trailing_zeros() as usize]
            .map(|c| c.hash)
            .unwrap_or(PLACEHOLDER)
    } else {
        let l = merkle_hash(ch, start, width / 2, exist, leaf);
        let r = merkle_hash(ch, start + width / 2, width / 2, exist, leaf);
        sha(&[INTERNAL_DOMAIN, &l, &r])
    }
}

pub(crate) fn internal_hash(ch: &[Option<Child>; 16]) -> H256 {
    let (mut exist, mut leaf) = (0u16, 0u16);
    for (i, c) in ch.iter().enumerate() {
        if let Some(c) = c {
            exist |= 1 << i;
            if c.leaves.is_none() {
                leaf |= 1 << i;
            }
        }
    }
    merkle_hash(ch, 0, 16, exist, leaf)
}

impl TNode {
    pub(crate) fn hash(&self) -> H256 {
        match self {
            TNode::Null => PLACEHOLDER,
            TNode::Leaf { key, value } => leaf_hash(key, value),
            TNode::Internal(ch) => internal_hash(ch),
        }
    }

    /// The stored encoding (see docs/merkle-fs-format.md): `0x00` null; `0x02 ‖ key hash ‖
    /// value hash` leaf; `0x01 ‖ child bitmap (u16 BE) ‖ leaf bitmap (u16 BE) ‖ per child
    /// in slot order: hash ‖ varint(version) [‖ varint(leaf count) if internal]`.
    #[cfg(test)]
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_into(&mut v);
        v
    }

    /// Appends [`TNode::encode`] to `v`.
    pub(crate) fn encode_into(&self, v: &mut Vec<u8>) {
        match self {
            TNode::Null => v.push(0),
            TNode::Leaf { key, value } => {
                v.push(2);
                v.extend_from_slice(key);
                v.extend_from_slice(value);
            }
            TNode::Internal(ch) => {
                v.push(1);
                let (mut exist, mut leaf) = (0u16, 0u16);
                for (i, c) in ch.iter().enumerate() {
                    if let Some(c) = c {
                        exist |= 1 << i;
                        if c.leaves.is_none() {
                            leaf |= 1 << i;
                        }
                    }
                }
                v.extend_from_slice(&exist.to_be_bytes());
                v.extend_from_slice(&leaf.to_be_bytes());
                for c in ch.iter().flatten() {
                    v.extend_from_slice(&c.hash);
                    put_varint(v, c.version);
                    if let Some(l) = c.leaves {
                        put_varint(v, l);
                    }
                }
            }
        }
    }

    /// Decodes [`TNode::encode`]; `None` if the bytes are not a node.
    pub(crate) fn decode(b: &[u8]) -> Option<TNode> {
        let (&tag, mut r) = b.split_first()?;
        let node = match tag {
            0 => TNode::Null,
            2 => {
                let (key, rest) = r.split_first_chunk::<32>()?;
                let (value, rest) = rest.split_first_chunk::<32>()?;
                r = rest;
                TNode::Leaf {
                    key: *key,
                    value: *value,
                }
            }
            1 => {
                let (exist, rest) = r.split_first_chunk::<2>()?;
                let (leaf, rest) = rest.split_first_chunk::<2>()?;
                let (exist, leaf) = (u16::from_be_bytes(*exist), u16::from_be_bytes(*leaf));
                if exist == 0 || leaf & !exist != 0 {
                    return None;
                }
                r = rest;
                let mut ch: Box<[Option<Child>; 16]> = Box::new([None; 16]);
                for (i, slot) in ch.iter_mut().enumerate() {
                    if exist & (1 << i) == 0 {
                        continue;
                    }
                    let (hash, rest) = r.split_first_chunk::<32>()?;
                    r = rest;
                    let version = get_varint(&mut r)?;
                    let leaves = if leaf & (1 << i) != 0 {
                        None
                    } else {
                        Some(get_varint(&mut r)?)
                    };
                    *slot = Some(Child {
                        hash: *hash,
                        version,
                        leaves,
                    });
                }
                if exist.count_ones() == 1 && leaf != 0 {
                    return None; // a lone leaf child is never stored (it collapses)
                }
                TNode::Internal(ch)
            }
            _ => return None,
        };
        r.is_empty().then_some(node)
    }

    /// jmt 0.12's borsh encoding of its `Node`, for handing nodes to stock jmt (proofs).
    pub(crate) fn encode_jmt(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(1 + 16 * 50 + 16);
        self.encode_jmt_into(&mut v);
        v
    }

    fn encode_jmt_into(&self, v: &mut Vec<u8>) {
        match self {
            TNode::Null => v.push(0),
            TNode::Leaf { key, value } => {
                v.push(2);
                v.extend_from_slice(key);
                v.extend_from_slice(value);
            }
            TNode::Internal(ch) => {
                v.push(1);
                let (mut n, mut leaves) = (0u64, 0u64);
                for c in ch.iter() {
                    match c {
                        None => v.push(0),
                        Some(c) => {
                            n += 1;
                            leaves += c.leaf_count();
                            v.push(1);
                            v.extend_from_slice(&c.hash);
                            v.extend_from_slice(&c.version.to_le_bytes());
                            match c.leaves {
                                None => v.push(0),
                                Some(l) => {
                                    v.push(1);
                                    v.extend_from_slice(&l.to_le_bytes());
                                }
                            }
                        }
                    }
                }
                v.extend_from_slice(&n.to_le_bytes());
                v.extend_from_slice(&leaves.to_le_bytes());
            }
        }
    }

    /// Decodes [`TNode::encode_jmt`]; `None` if the bytes are not a node.
    #[cfg(test)]
    pub(crate) fn decode_jmt(b: &[u8]) -> Option<TNode> {
        let (&tag, mut r) = b.split_first()?;
        let mut take = |n: usize| -> Option<&[u8]> {
            if r.len() < n {
                return None;
            }
            let (h, t) = r.split_at(n);
            r = t;
            Some(h)
        };
        let node = match tag {
            0 => TNode::Null,
            2 => {
                let key = take(32)?.try_into().ok()?;
                let value = take(32)?.try_into().ok()?;
                TNode::Leaf { key, value }
            }
            1 => {
                let mut ch: Box<[Option<Child>; 16]> = Box::new([None; 16]);
                let (mut n, mut leaves) = (0u64, 0u64);
                for slot in ch.iter_mut() {
                    match take(1)?[0] {
                        0 => {}
                        1 => {
                            let hash: H256 = take(32)?.try_into().ok()?;
                            let version = u64::from_le_bytes(take(8)?.try_into().ok()?);
                            let kind = match take(1)?[0] {
                                0 => None,
                                1 => Some(u64::from_le_bytes(take(8)?.try_into().ok()?)),
                                _ => return None,
                            };
                            let c = Child {
                                hash,
                                version,
                                leaves: kind,
                            };
                            n += 1;
                            leaves += c.leaf_count();
                            *slot = Some(c);
                        }
                        _ => return None,
                    }
                }
                let num = u64::from_le_bytes(take(8)?.try_into().ok()?);
                let count = u64::from_le_bytes(take(8)?.try_into().ok()?);
                if num != n || count != leaves || n == 0 {
                    return None;
                }
                TNode::Internal(ch)
            }
            _ => return None,
        };
        r.is_empty().then_some(node)
    }
}

fn put_varint(v: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        v.push((x as u8) | 0x80);
        x >>= 7;
    }
    v.push(x as u8);
}

/// Reads a LEB128 varint written by [`put_varint`] (minimal form only).
fn get_varint(r: &mut &[u8]) -> Option<u64> {
    let mut x = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = r.split_first()?;
        *r = rest;
        if shift == 63 && b > 1 {
            return None; // the 10th byte holds only bit 63: anything more overflows
        }
        x |= u64::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            if b == 0 && shift > 0 {
                return None;
            }
            return Some(x);
        }
    }
    None
}

/// Node-store key of the node at `path` (one nibble per byte) created at `version`:
/// `version (u64 BE) ‖ nibble count (u8) ‖ nibbles packed two per byte` (an odd count
/// leaves the last low nibble 0); identical to [`crate::keys::node_key`].
pub(crate) fn raw_node_key(version: u64, path: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + 1 + path.len().div_ceil(2));
    raw_node_key_into(&mut k, version, path);
    k
}

/// Appends [`raw_node_key`] to `k`.
pub(crate) fn raw_node_key_into(k: &mut Vec<u8>, version: u64, path: &[u8]) {
    k.extend_from_slice(&version.to_be_bytes());
    k.push(path.len() as u8);
    for pair in path.chunks(2) {
        k.push((pair[0] << 4) | pair.get(1).copied().unwrap_or(0));
    }
}

fn nibble(key: &H256, depth: usize) -> u8 {
    let b = key[depth / 2];
    if depth.is_multiple_of(2) {
        b >> 4
    } else {
        b & 0x0F
    }
}

/// Deepest level the node cache can hold (a cache key packs the path into a `u64`, which
/// fits 16 nibbles; deeper than 8 the levels are not "upper" in any real tree).
pub(crate) const MAX_CACHE_DEPTH: usize = 8;

/// Hard bound on cached nodes, whatever the depth (≤ 1 KiB each: ≤ ~1 GiB).
const MAX_CACHE_ENTRIES: usize = 1 << 20;

/// Identifies a node in the cache: its version and its path (≤ 16 nibbles, packed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    version: u64,
    path: u64,
    len: u8,
}

impl CacheKey {
    fn new(version: u64, path: &[u8]) -> CacheKey {
        let mut p = 0u64;
        for &n in path {
            p = (p << 4) | u64::from(n);
        }
        CacheKey {
            version,
            path: p,
            len: path.len() as u8,
        }
    }
}

/// A fast multiplicative hasher for [`CacheKey`]s (in-memory only: nothing persisted
/// or hashed into the state depends on it).
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u8(&mut self, x: u8) {
        self.write_u64(u64::from(x));
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type CacheMap = HashMap<CacheKey, Arc<TNode>, std::hash::BuildHasherDefault<KeyHasher>>;

/// Upper tree levels kept in memory across commits. A node never changes under its
/// key (version, path), so a cached node is never wrong, only possibly superseded;
/// superseded nodes are dropped when the commit that supersedes them is written.
pub(crate) struct NodeCache {
    /// Nodes at depth `<= depth` (in nibbles) are cached; `None`: no cache.
    depth: Option<usize>,
    max_entries: usize,
    map: Mutex<CacheMap>,
}

impl NodeCache {
    /// A cache of the levels `0..=depth` (`depth` is capped at [`MAX_CACHE_DEPTH`]).
    pub(crate) fn new(depth: Option<usize>) -> NodeCache {
        let depth = depth.map(|d| d.min(MAX_CACHE_DEPTH));
        // At most sum 16^d nodes live at depths 0..=depth; allow twice that, within
        // MAX_CACHE_ENTRIES (past it the cache is cleared and refilled by reads).
        let mut max = 0usize;
        let mut level = 1usize;
        for _ in 0..=depth.unwrap_or(0) {
            max = max.saturating_add(level);
            level = level.saturating_mul(16);
        }
        NodeCache {
            depth,
            max_entries: max.saturating_mul(2).clamp(64, MAX_CACHE_ENTRIES),
            map: Mutex::new(CacheMap::default()),
        }
    }

    fn covers(&self, path: &[u8]) -> bool {
        self.depth.is_some_and(|d| path.len() <= d)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheMap> {
        // The map holds only immutable committed nodes, so a poisoned lock's data is fine.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, key: &CacheKey) -> Option<Arc<TNode>> {
        self.lock().get(key).cloned()
    }

    fn insert_many(&self, nodes: impl IntoIterator<Item = (CacheKey, Arc<TNode>)>) {
        let mut m = self.lock();
        for (k, n) in nodes {
            m.insert(k, n);
        }
        if m.len() > self.max_entries {
            m.clear();
        }
    }

    /// Applies a written commit: adds its new upper nodes, drops the ones it superseded.
    pub(crate) fn apply(&self, new: Vec<(CacheKey, Arc<TNode>)>, stale: &[CacheKey]) {
        {
            let mut m = self.lock();
            for k in stale {
                m.remove(k);
            }
        }
        self.insert_many(new);
    }

    /// Forgets everything.
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}

/// Why an update failed.
#[derive(Debug)]
pub(crate) enum UpdateError {
    Db(rocksdb::Error),
    /// A node the tree refers to is missing or undecodable.
    Corrupt(String),
    WorkerPanicked,
}

type UResult<T> = std::result::Result<T, UpdateError>;

/// Encoded nodes back to back, with `(key length, value length)` of each.
type NodeBuf = (Vec<u8>, Vec<(u32, u32)>);

/// What one worker produced.
#[derive(Default)]
pub(crate) struct Out {
    /// New nodes: node-store key and encoded node of each, back to back.
    pub node_buf: Vec<u8>,
    /// `(key length, value length)` of each node in `node_buf`.
    pub node_lens: Vec<(u32, u32)>,
    /// Node-store keys of base-tree nodes this version supersedes, as a stale list
    /// ([`crate::keys::push_list_item`]).
    pub stale: Vec<u8>,
    /// Superseded nodes that may be cached.
    pub stale_cached: Vec<CacheKey>,
    /// New nodes at cached depths, to enter the cache once the commit is written.
    pub cache_new: Vec<(CacheKey, Arc<TNode>)>,
    /// Nodes read from RocksDB.
    pub reads: usize,
    /// Node buffers of merged outputs (kept as they are: no copying).
    merged: Vec<NodeBuf>,
}

impl Out {
    fn merge(&mut self, o: Out) {
        self.merged.push((o.node_buf, o.node_lens));
        self.merged.extend(o.merged);
        self.stale.extend_from_slice(&o.stale);
        self.stale_cached.extend(o.stale_cached);
        self.cache_new.extend(o.cache_new);
    }

    /// The new nodes as `(node-store key, encoded node)`.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        std::iter::once((&self.node_buf, &self.node_lens))
            .chain(self.merged.iter().map(|(b, l)| (b, l)))
            .flat_map(|(buf, lens)| {
                let mut at = 0usize;
                lens.iter().map(move |&(k, v)| {
                    let (k, v) = (k as usize, v as usize);
                    let key = &buf[at..at + k];
                    let val = &buf[at + k..at + k + v];
                    at += k + v;
                    (key, val)
                })
            })
    }

    /// Number of new nodes and their total key and value bytes.
    pub(crate) fn node_stats(&self) -> (usize, usize) {
        std::iter::once((&self.node_buf, &self.node_lens))
            .chain(self.merged.iter().map(|(b, l)| (b, l)))
            .fold((0, 0), |(n, b), (buf, lens)| {
                (n + lens.len(), b + buf.len())
            })
    }
}

/// The result of updating the subtree at one position.
enum Res {
    /// Nothing changed (the old child, if any, stays).
    Unchanged,
    /// The subtree is now empty.
    Empty,
    /// The subtree is now a single leaf, not yet written: its parent decides where it
    /// goes (it may be lifted further up). `origin` is the key of the old node of an
    /// untouched leaf being lifted (superseded when the leaf is placed).
    Leaf {
        key: H256,
        value: H256,
        origin: Option<(u64, Vec<u8>)>,
    },
    /// The subtree is now an internal node, written at this position.
    Internal { hash: H256, leaves: u64 },
}

/// One tree update of `version` on top of the tree whose nodes live in `db`.
pub(crate) struct Updater<'a> {
    pub db: &'a DB,
    pub cf: &'a ColumnFamily,
    pub cache: &'a NodeCache,
    pub version: u64,
    /// Nodes read from RocksDB (not found in the cache or recognised by hash).
    pub reads: AtomicUsize,
}

impl Updater<'_> {
    fn read(&self, version: u64, path: &[u8]) -> UResult<Arc<TNode>> {
        let ck = self
            .cache
            .covers(path)
            .then(|| CacheKey::new(version, path));
        if let Some(ck) = &ck {
            if let Some(n) = self.cache.get(ck) {
                return Ok(n);
            }
        }
        let key = raw_node_key(version, path);
        let raw = self
            .db
            .get_pinned_cf(self.cf, &key)
            .map_err(UpdateError::Db)?
            .ok_or_else(|| {
                UpdateError::Corrupt(format!(
                    "tree node at version {version}, path {} is missing",
                    show_path(path)
                ))
            })?;
        let node = Arc::new(TNode::decode(&raw).ok_or_else(|| {
            UpdateError::Corrupt(format!(
                "tree node at version {version}, path {} is undecodable",
                show_path(path)
            ))
        })?);
        self.reads.fetch_add(1, Ordering::Relaxed);
        if let Some(ck) = ck {
            // A committed node is immutable under its key: safe to cache as soon as read.
            self.cache.insert_many([(ck, node.clone())]);
        }
        Ok(node)
    }

    fn write(&self, out: &mut Out, path: &[u8], node: TNode) {
        let start = out.node_buf.len();
        raw_node_key_into(&mut out.node_buf, self.version, path);
        let mid = out.node_buf.len();
        node.encode_into(&mut out.node_buf);
        out.node_lens
            .push(((mid - start) as u32, (out.node_buf.len() - mid) as u32));
        if self.cache.covers(path) {
            out.cache_new
                .push((CacheKey::new(self.version, path), Arc::new(node)));
        }
    }

    /// Records that the base-tree node `(version, path)` is superseded.
    fn supersede(&self, out: &mut Out, version: u64, path: &[u8]) {
        // A stale-list item: `len (u32 BE) ‖ node-store key`, written in place.
        let at = out.stale.len();
        out.stale.extend_from_slice(&[0; 4]);
        raw_node_key_into(&mut out.stale, version, path);
        let len = (out.stale.len() - at - 4) as u32;
        out.stale[at..at + 4].copy_from_slice(&len.to_be_bytes());
        if self.cache.covers(path) {
            out.stale_cached.push(CacheKey::new(version, path));
        }
    }

    /// Applies `ups` (sorted by key hash, unique) to the tree rooted at `(base, [])`
    /// (`None`: the empty tree) and writes the new root at `(version, [])`.
    /// Returns the new root hash and the node changes.
    pub(crate) fn apply(&self, base: Option<u64>, ups: &[Update]) -> UResult<(H256, Out)> {
        self.apply_threads(base, ups, None)
    }

    /// [`Updater::apply`] on `threads` threads (`None`: as many as cores and the batch
    /// size warrant; `Some(n)`: exactly `n`, even for a small batch, for tests).
    pub(crate) fn apply_threads(
        &self,
        base: Option<u64>,
        ups: &[Update],
        threads: Option<usize>,
    ) -> UResult<(H256, Out)> {
        let mut out = Out::default();
        let old_root = match base {
            Some(b) => self.read(b, &[])?,
            None => Arc::new(TNode::Null),
        };
        let mut path = Vec::with_capacity(64);
        let res = match old_root.as_ref() {
            TNode::Internal(ch) => {
                let results = self.children_parallel(ch, ups, threads)?;
                let (res, o) = results;
                out.merge(o);
                self.finish(&mut out, &mut path, Some((base.unwrap_or(0), ch)), res)?
            }
            other => match base {
                Some(b) => self.update(&mut out, &mut path, b, other, ups)?,
                None => {
                    // No tree yet (genesis): nothing to supersede.
                    let ins = inserts(ups);
                    self.build(&mut out, &mut path, &ins)?
                }
            },
        };
        let hash = match res {
            Res::Unchanged => {
                // jmt gives every version a root: copy the old one, supersede the original.
                if let Some(b) = base {
                    self.supersede(&mut out, b, &[]);
                }
                let h = old_root.hash();
                self.write(&mut out, &path, (*old_root).clone());
                h
            }
            Res::Empty => {
                self.write(&mut out, &path, TNode::Null);
                PLACEHOLDER
            }
            Res::Leaf { key, value, origin } => {
                if let Some((v, p)) = origin {
                    self.supersede(&mut out, v, &p);
                }
                self.write(&mut out, &path, TNode::Leaf { key, value });
                leaf_hash(&key, &value)
            }
            Res::Internal { hash, .. } => hash,
        };
        out.reads = self.reads.load(Ordering::Relaxed);
        Ok((hash, out))
    }

    /// The 16 child updates of the root, spread over the available cores.
    fn children_parallel(
        &self,
        ch: &[Option<Child>; 16],
        ups: &[Update],
        threads: Option<usize>,
    ) -> UResult<([Option<Res>; 16], Out)> {
        let groups = split(ups, 0);
        let (threads, small) = match threads {
            Some(n) => (n, false),
            None => (
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1),
                ups.len() < 64,
            ),
        };
        let threads = threads.min(groups.len().max(1));
        let mut results: [Option<Res>; 16] = Default::default();
        let mut out = Out::default();
        if threads <= 1 || small {
            for (n, g) in groups {
                let mut path = vec![n];
                results[n as usize] = Some(self.child(&mut out, &mut path, ch, g)?);
            }
            return Ok((results, out));
        }
        // Work-stealing over the groups, largest first, so both cores finish together.
        // Each group gets its own output, merged in nibble order below: what is persisted
        // (node batch, stale list) never depends on which thread took which group.
        let mut order = groups;
        order.sort_by_key(|(_, g)| std::cmp::Reverse(g.len()));
        let next = AtomicUsize::new(0);
        type Done = Vec<(u8, Res, Out)>;
        let worker = || -> UResult<Done> {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(n, g)) = order.get(i) else { break };
                let mut out = Out::default();
                let mut path = vec![n];
                let res = self.child(&mut out, &mut path, ch, g)?;
                done.push((n, res, out));
            }
            Ok(done)
        };
        let parts: Vec<std::thread::Result<UResult<Done>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (1..threads).map(|_| s.spawn(worker)).collect();
            let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(worker));
            let mut all = vec![mine];
            all.extend(handles.into_iter().map(|h| h.join()));
            all
        });
        let mut outs: Vec<Option<Out>> = (0..16).map(|_| None).collect();
        for p in parts {
            for (n, r, o) in p.map_err(|_| UpdateError::WorkerPanicked)?? {
                results[n as usize] = Some(r);
                outs[n as usize] = Some(o);
            }
        }
        for o in outs.into_iter().flatten() {
            out.merge(o);
        }
        Ok((results, out))
    }

    /// Updates child `path.last()` of an internal node with children `ch`.
    fn child(
        &self,
        out: &mut Out,
        path: &mut Vec<u8>,
        ch: &[Option<Child>; 16],
        ups: &[Update],
    ) -> UResult<Res> {
        let n = *path.last().unwrap_or(&0) as usize;
        match ch[n] {
            None => {
                let ins = inserts(ups);
                if ins.is_empty() {
                    Ok(Res::Unchanged)
                } else {
                    self.build(out, path, &ins)
                }
            }
            Some(c) => {
                if c.leaves.is_none() {
                    // An existing leaf whose key and old value the caller knows is
                    // recognised by its hash (jmt's leaf hash binds both): no read.
                    for u in ups {
                        if let Some(old) = u.old {
                            if leaf_hash(&u.key, &old) == c.hash {
                                let node = TNode::Leaf {
                                    key: u.key,
                                    value: old,
                                };
                                return self.update(out, path, c.version, &node, ups);
                            }
                        }
                    }
                }
                let node = self.read(c.version, path)?;
                self.update(out, path, c.version, &node, ups)
            }
        }
    }

    /// Applies `ups` to the existing node `node` created at `version` at `path`.
    fn update(
        &self,
        out: &mut Out,
        path: &mut Vec<u8>,
        version: u64,
        node: &TNode,
        ups: &[Update],
    ) -> UResult<Res> {
        match node {
            TNode::Null => {
                let ins = inserts(ups);
                if ins.is_empty() {
                    return Ok(Res::Unchanged);
                }
                self.supersede(out, version, path);
                self.build(out, path, &ins)
            }
            TNode::Leaf { key, value } => {
                let mut set: Vec<(H256, H256)> = Vec::with_capacity(ups.len() + 1);
                let mut changed = false;
                let mut kept = true;
                for u in ups {
                    if u.key == *key {
                        kept = false;
                        changed = true;
                        if let Some(v) = u.value {
                            set.push((u.key, v));
                        }
                    } else if let Some(v) = u.value {
                        changed = true;
                        set.push((u.key, v));
                    }
                }
                if !changed {
                    return Ok(Res::Unchanged);
                }
                if kept {
                    let at = set.partition_point(|(k, _)| k < key);
                    set.insert(at, (*key, *value));
                }
                self.supersede(out, version, path);
                self.build(out, path, &set)
            }
            TNode::Internal(_) if path.len() >= 64 => {
                // A key hash has 64 nibbles: no internal node can sit this deep.
                Err(UpdateError::Corrupt(format!(
                    "internal tree node at version {version}, path {} is {} nibbles deep \
                     (at most 63)",
                    show_path(path),
                    path.len()
                )))
            }
            TNode::Internal(ch) => {
                let mut results: [Option<Res>; 16] = Default::default();
                for (n, g) in split(ups, path.len()) {
                    path.push(n);
                    let r = self.child(out, path, ch, g);
                    path.pop();
                    results[n as usize] = Some(r?);
                }
                self.finish(out, path, Some((version, ch)), results)
            }
        }
    }

    /// A fresh subtree at `path` holding `set` (sorted, unique).
    fn build(&self, out: &mut Out, path: &mut Vec<u8>, set: &[(H256, H256)]) -> UResult<Res> {
        match set {
            [] => Ok(Res::Empty),
            [(key, value)] => Ok(Res::Leaf {
                key: *key,
                value: *value,
                origin: None,
            }),
            _ => {
                let depth = path.len();
                let mut results: [Option<Res>; 16] = Default::default();
                let mut i = 0;
                while i < set.len() {
                    let n = nibble(&set[i].0, depth);
                    let j = i + set[i..].partition_point(|(k, _)| nibble(k, depth) == n);
                    path.push(n);
                    let r = self.build(out, path, &set[i..j]);
                    path.pop();
                    results[n as usize] = Some(r?);
                    i = j;
                }
                self.finish(out, path, None, results)
            }
        }
    }

    /// Combines child results into the node at `path` (replacing `old`, if any).
    fn finish(
        &self,
        out: &mut Out,
        path: &mut Vec<u8>,
        old: Option<(u64, &[Option<Child>; 16])>,
        results: [Option<Res>; 16],
    ) -> UResult<Res> {
        if let Some((version, _)) = old {
            if results
                .iter()
                .all(|r| matches!(r, None | Some(Res::Unchanged)))
            {
                return Ok(Res::Unchanged);
            }
            self.supersede(out, version, path);
        }
        enum Slot {
            Keep(Child),
            Leaf(H256, H256, Option<(u64, Vec<u8>)>),
            New(Child),
        }
        let mut slots: [Option<Slot>; 16] = Default::default();
        for (n, r) in results.into_iter().enumerate() {
            let old_child = old.and_then(|(_, ch)| ch[n]);
            slots[n] = match r {
                None | Some(Res::Unchanged) => old_child.map(Slot::Keep),
                Some(Res::Empty) => None,
                Some(Res::Leaf { key, value, origin }) => Some(Slot::Leaf(key, value, origin)),
                Some(Res::Internal { hash, leaves }) => Some(Slot::New(Child {
                    hash,
                    version: self.version,
                    leaves: Some(leaves),
                })),
            };
        }
        let live: Vec<usize> = (0..16).filter(|&n| slots[n].is_some()).collect();
        match live.as_slice() {
            [] => return Ok(Res::Empty),
            [only] => {
                let n = *only;
                match slots[n].take() {
                    Some(Slot::Leaf(key, value, origin)) => {
                        return Ok(Res::Leaf { key, value, origin })
                    }
                    Some(Slot::Keep(c)) if c.leaves.is_none() => {
                        // The last remaining child is an untouched leaf: it moves up.
                        path.push(n as u8);
                        let node = self.read(c.version, path);
                        let origin = (c.version, path.clone());
                        path.pop();
                        return match node?.as_ref() {
                            TNode::Leaf { key, value } => Ok(Res::Leaf {
                                key: *key,
                                value: *value,
                                origin: Some(origin),
                            }),
                            _ => Err(UpdateError::Corrupt(format!(
                                "child {n:x} of path {} is marked leaf but is not",
                                show_path(path)
                            ))),
                        };
                    }
                    s => slots[n] = s,
                }
            }
            _ => {}
        }
        let mut ch: Box<[Option<Child>; 16]> = Box::new([None; 16]);
        let mut leaves = 0u64;
        for (n, slot) in slots.into_iter().enumerate() {
            let c = match slot {
                None => continue,
                Some(Slot::Keep(c)) | Some(Slot::New(c)) => c,
                Some(Slot::Leaf(key, value, origin)) => {
                    if let Some((v, p)) = origin {
                        self.supersede(out, v, &p);
                    }
                    path.push(n as u8);
                    self.write(out, path, TNode::Leaf { key, value });
                    path.pop();
                    Child {
                        hash: leaf_hash(&key, &value),
                        version: self.version,
                        leaves: None,
                    }
                }
            };
            leaves += c.leaf_count();
            ch[n] = Some(c);
        }
        let hash = internal_hash(&ch);
        self.write(out, path, TNode::Internal(ch));
        Ok(Res::Internal { hash, leaves })
    }
}

/// Splits sorted updates into runs sharing the nibble at `depth`.
fn split(ups: &[Update], depth: usize) -> Vec<(u8, &[Update])> {
    let mut v = Vec::new();
    let mut i = 0;
    while i < ups.len() {
        let n = nibble(&ups[i].key, depth);
        let j = i + ups[i..].partition_point(|u| nibble(&u.key, depth) == n);
        v.push((n, &ups[i..j]));
        i = j;
    }
    v
}

fn show_path(path: &[u8]) -> String {
    if path.is_empty() {
        return "(root)".into();
    }
    path.iter().map(|n| format!("{n:x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jmt::storage::{LeafNode, Node, NodeKey, TreeReader};
    use jmt::{JellyfishMerkleTree, KeyHash, OwnedValue, Version};
    use rand::{Rng, SeedableRng};
    use std::collections::{BTreeMap, BTreeSet, HashMap as Map};
    use std::sync::RwLock;

    /// Stock jmt over an in-memory node map, the reference implementation.
    #[derive(Default)]
    struct Mem(RwLock<Map<NodeKey, Node>>);

    impl TreeReader for Mem {
        fn get_node_option(&self, k: &NodeKey) -> anyhow::Result<Option<Node>> {
            Ok(self
                .0
                .read()
                .map_err(|_| anyhow::anyhow!("lock"))?
                .get(k)
                .cloned())
        }
        fn get_value_option(&self, _: Version, _: KeyHash) -> anyhow::Result<Option<OwnedValue>> {
            Err(anyhow::anyhow!("values not used"))
        }
        fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
            Err(anyhow::anyhow!("not used"))
        }
    }

    /// Stock jmt reading the nodes [`Updater`] wrote (to prove with them).
    struct Ours<'a> {
        db: &'a DB,
        values: &'a BTreeMap<Vec<u8>, Vec<u8>>,
    }

    impl TreeReader for Ours<'_> {
        fn get_node_option(&self, k: &NodeKey) -> anyhow::Result<Option<Node>> {
            let cf = self
                .db
                .cf_handle("nodes")
                .ok_or_else(|| anyhow::anyhow!("cf"))?;
            match self.db.get_cf(cf, crate::keys::node_key(k))? {
                None => Ok(None),
                Some(b) => {
                    let n = TNode::decode(&b).ok_or_else(|| anyhow::anyhow!("undecodable"))?;
                    Ok(Some(borsh::from_slice(&n.encode_jmt())?))
                }
            }
        }
        fn get_value_option(&self, _: Version, kh: KeyHash) -> anyhow::Result<Option<OwnedValue>> {
            Ok(self
                .values
                .iter()
                .find(|(k, _)| KeyHash::with::<Sha256>(k) == kh)
                .map(|(_, v)| v.clone()))
        }
        fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
            Err(anyhow::anyhow!("not used"))
        }
    }

    fn tmp_db() -> (tempfile::TempDir, DB) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut o = rocksdb::Options::default();
        o.create_if_missing(true);
        o.create_missing_column_families(true);
        let db = DB::open_cf(&o, dir.path(), ["nodes"]).expect("open");
        (dir, db)
    }

    #[test]
    fn compact_encoding_round_trips_and_rejects_garbage() {
        for x in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut v = Vec::new();
            put_varint(&mut v, x);
            let mut r = &v[..];
            assert_eq!(get_varint(&mut r), Some(x));
            assert!(r.is_empty());
        }
        assert_eq!(get_varint(&mut &[0x80u8, 0x00][..]), None, "non-minimal");
        // A 10th byte carries only bit 63: 2..=0x7F would overflow u64.
        let mut over = vec![0xFFu8; 9];
        over.push(0x01);
        assert_eq!(get_varint(&mut &over[..]), Some(u64::MAX));
        for last in [0x02u8, 0x03, 0x40, 0x7F] {
            *over.last_mut().expect("10 bytes") = last;
            assert_eq!(get_varint(&mut &over[..]), None, "10th byte {last:#x}");
        }
        assert_eq!(get_varint(&mut &[0x80u8; 10][..]), None, "11 bytes");
        let mut ch: Box<[Option<Child>; 16]> = Box::new([None; 16]);
        ch[3] = Some(Child {
            hash: [7; 32],
            version: u64::MAX,
            leaves: None,
        });
        ch[15] = Some(Child {
            hash: [9; 32],
            version: 1 << 40,
            leaves: Some(123_456),
        });
        let n = TNode::Internal(ch);
        let enc = n.encode();
        assert_eq!(TNode::decode(&enc), Some(n.clone()));
        assert_eq!(TNode::decode_jmt(&n.encode_jmt()), Some(n));
        assert_eq!(TNode::decode(&enc[..enc.len() - 1]), None);
        assert_eq!(TNode::decode(&[enc.clone(), vec![0]].concat()), None);
        assert_eq!(TNode::decode(&[1, 0, 0, 0, 0]), None, "no children");
    }

    /// Every node key reachable from the root at `version`.
    fn reachable(db: &DB, version: u64) -> BTreeSet<Vec<u8>> {
        let cf = db.cf_handle("nodes").expect("cf");
        let mut seen = BTreeSet::new();
        let mut stack = vec![(version, Vec::<u8>::new())];
        while let Some((v, path)) = stack.pop() {
            let k = raw_node_key(v, &path);
            let raw = db
                .get_cf(cf, &k)
                .expect("get")
                .expect("reachable node exists");
            let node = TNode::decode(&raw).expect("decodes");
            seen.insert(k);
            if let TNode::Internal(ch) = node {
                for (n, c) in ch.iter().enumerate() {
                    if let Some(c) = c {
                        let mut p = path.clone();
                        p.push(n as u8);
                        stack.push((c.version, p));
                    }
                }
            }
        }
        seen
    }

    /// Random blocks of inserts, overwrites and deletes, applied by stock jmt and by
    /// [`Updater`] (with and without cache, one thread and several): roots are equal at
    /// every version; stock jmt proves present and absent keys from our nodes; our
    /// encoding round-trips stock jmt's nodes; and written-minus-superseded nodes are
    /// exactly the nodes reachable from the new root (so pruning stale ones is safe).
    #[test]
    fn matches_stock_jmt() {
        for seed in 0..8u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let (_d, db) = tmp_db();
            let cf = db.cf_handle("nodes").expect("cf");
            let cache = NodeCache::new([Some(2), None, Some(0), Some(64)][(seed % 4) as usize]);
            let mem = Mem::default();
            let mut live: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let mut live_nodes: BTreeSet<Vec<u8>> = BTreeSet::new();
            let universe = [3usize, 40, 300, 2000][(seed % 4) as usize];
            for version in 0..20u64 {
                let mut changes: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
                let n = if version % 7 == 3 {
                    0
                } else {
                    rng.gen_range(0..=universe.min(400))
                };
                let del = [0.1, 0.5, 0.9][rng.gen_range(0..3)];
                for _ in 0..n {
                    let k = rng.gen_range(0..universe).to_string().into_bytes();
                    let v = if rng.gen_bool(del) && live.contains_key(&k) {
                        None
                    } else {
                        Some(rng.gen::<[u8; 4]>().to_vec())
                    };
                    changes.insert(k, v);
                }
                // As the store does: deleting an absent key is no change.
                changes.retain(|k, v| v.is_some() || live.contains_key(k));
                let stock_set: Vec<(KeyHash, Option<OwnedValue>)> = changes
                    .iter()
                    .map(|(k, v)| (KeyHash::with::<Sha256>(k), v.clone()))
                    .collect();
                let (stock_root, batch) = JellyfishMerkleTree::<_, Sha256>::new(&mem)
                    .put_value_set(stock_set, version)
                    .expect("stock");
                // Old value hashes known for some keys (as a working set knows the
                // keys it read), unknown for others.
                let mut ups: Vec<Update> = changes
                    .iter()
                    .map(|(k, v)| Update {
                        key: sha(&[k]),
                        value: v.as_ref().map(|v| sha(&[v.as_slice()])),
                        old: live
                            .get(k)
                            .filter(|_| rng.gen_bool(0.5))
                            .map(|v| sha(&[v.as_slice()])),
                    })
                    .collect();
                ups.sort_by_key(|u| u.key);
                let u = Updater {
                    db: &db,
                    cf,
                    cache: &cache,
                    version,
                    reads: AtomicUsize::new(0),
                };
                let (root, out) = u.apply(version.checked_sub(1), &ups).expect("ours");
                // Deterministic output whatever the thread timing and whichever path
                // (one thread, or several even for a small batch): it is persisted.
                for threads in [1, 2, 5] {
                    let again = Updater {
                        db: &db,
                        cf,
                        cache: &cache,
                        version,
                        reads: AtomicUsize::new(0),
                    };
                    let (root2, out2) = again
                        .apply_threads(version.checked_sub(1), &ups, Some(threads))
                        .expect("again");
                    assert_eq!(root2, root);
                    assert_eq!(out2.stale, out.stale, "stale list, seed {seed} t {threads}");
                    assert!(
                        out2.nodes().eq(out.nodes()),
                        "nodes, seed {seed} t {threads}"
                    );
                }
                assert_eq!(root, stock_root.0, "seed {seed} version {version}");
                for node in batch.node_batch.nodes().values() {
                    let theirs = borsh::to_vec(node).expect("borsh");
                    let n = TNode::decode_jmt(&theirs).expect("decodes jmt's node");
                    assert_eq!(n.encode_jmt(), theirs);
                    assert_eq!(TNode::decode(&n.encode()), Some(n));
                }
                for (_, v) in out.nodes() {
                    let n = TNode::decode(v).expect("decodes ours");
                    assert_eq!(n.encode(), v);
                    let jmt_node: Node = borsh::from_slice(&n.encode_jmt()).expect("jmt reads");
                    assert_eq!(borsh::to_vec(&jmt_node).expect("borsh"), n.encode_jmt());
                }
                let mut wb = rocksdb::WriteBatch::default();
                for (k, v) in out.nodes() {
                    wb.put_cf(cf, k, v);
                }
                db.write(wb).expect("write");
                for k in crate::keys::list_items(&out.stale).expect("stale list") {
                    assert!(
                        live_nodes.remove(k),
                        "superseded node was live: seed {seed}"
                    );
                }
                live_nodes.extend(out.nodes().map(|(k, _)| k.to_vec()));
                assert_eq!(
                    live_nodes,
                    reachable(&db, version),
                    "seed {seed} v {version}"
                );
                cache.apply(out.cache_new, &out.stale_cached);
                let mut m = mem.0.write().expect("lock");
                for (nk, node) in batch.node_batch.nodes() {
                    m.insert(nk.clone(), node.clone());
                }
                drop(m);
                for (k, v) in changes {
                    match v {
                        Some(v) => live.insert(k, v),
                        None => live.remove(&k),
                    };
                }
                let reader = Ours {
                    db: &db,
                    values: &live,
                };
                let tree = JellyfishMerkleTree::<_, Sha256>::new(&reader);
                for probe in 0..universe.min(30) {
                    let k = (probe * 7 % universe).to_string().into_bytes();
                    let (v, proof) = tree
                        .get_with_proof(KeyHash::with::<Sha256>(&k), version)
                        .expect("prove");
                    assert_eq!(v.as_ref(), live.get(&k));
                    proof
                        .verify(stock_root, KeyHash::with::<Sha256>(&k), v)
                        .expect("verifies");
                }
            }
        }
    }

    #[test]
    fn node_cache_is_bounded_at_every_depth() {
        for d in 0..=64 {
            let c = NodeCache::new(Some(d));
            assert!(c.max_entries <= MAX_CACHE_ENTRIES, "depth {d}");
            assert!(c.depth.is_some_and(|x| x <= MAX_CACHE_DEPTH), "depth {d}");
        }
        assert_eq!(NodeCache::new(Some(4)).max_entries, 2 * 69_905);
    }

    /// Stored nodes forming a chain of internal nodes down to depth 64 (one more than a
    /// 64-nibble key hash allows) are reported as corrupt, not a panic, on both paths.
    #[test]
    fn internal_node_64_nibbles_deep_is_corrupt() {
        let (_d, db) = tmp_db();
        let cf = db.cf_handle("nodes").expect("cf");
        let mut ch: Box<[Option<Child>; 16]> = Box::new([None; 16]);
        for (n, h) in [(0usize, [1u8; 32]), (1, [2; 32])] {
            ch[n] = Some(Child {
                hash: h,
                version: 0,
                leaves: None,
            });
        }
        let mut node = TNode::Internal(ch);
        for depth in (0..=64usize).rev() {
            db.put_cf(cf, raw_node_key(0, &vec![0u8; depth]), node.encode())
                .expect("put");
            let mut up: Box<[Option<Child>; 16]> = Box::new([None; 16]);
            up[0] = Some(Child {
                hash: node.hash(),
                version: 0,
                leaves: Some(2),
            });
            node = TNode::Internal(up);
        }
        // A few updates under the chain, many elsewhere (so the parallel path runs).
        let mut ups: Vec<Update> = (0..100u8)
            .map(|i| Update {
                key: sha(&[&[i]]),
                value: Some([i; 32]),
                old: None,
            })
            .filter(|u| u.key[0] >> 4 != 0)
            .collect();
        ups.push(Update {
            key: [0; 32],
            value: Some([5; 32]),
            old: None,
        });
        ups.sort_by_key(|u| u.key);
        let cache = NodeCache::new(None);
        for (threads, batch) in [(Some(1), &ups[..1]), (None, &ups[..1]), (Some(2), &ups[..])] {
            let u = Updater {
                db: &db,
                cf,
                cache: &cache,
                version: 1,
                reads: AtomicUsize::new(0),
            };
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                u.apply_threads(Some(0), batch, threads)
                    .map(|(root, _)| root)
            }));
            match r {
                Ok(Err(UpdateError::Corrupt(m))) => {
                    assert!(m.contains("version 0"), "{m}");
                    assert!(m.contains(&format!("path {} ", "0".repeat(64))), "{m}");
                }
                Ok(other) => panic!("threads {threads:?}: expected Corrupt, got {other:?}"),
                Err(_) => panic!("threads {threads:?}: the update panicked"),
            }
        }
    }

    fn set_nibble(k: &mut H256, depth: usize, n: u8) {
        let b = &mut k[depth / 2];
        *b = if depth.is_multiple_of(2) {
            (*b & 0x0F) | (n << 4)
        } else {
            (*b & 0xF0) | n
        };
    }

    /// Our updater and stock jmt side by side over crafted key hashes.
    struct Twin {
        _dir: tempfile::TempDir,
        db: DB,
        cache: NodeCache,
        mem: Mem,
        live: BTreeMap<H256, Vec<u8>>,
        version: u64,
    }

    impl Twin {
        fn new(cache_depth: Option<usize>) -> Twin {
            let (dir, db) = tmp_db();
            Twin {
                _dir: dir,
                db,
                cache: NodeCache::new(cache_depth),
                mem: Mem::default(),
                live: BTreeMap::new(),
                version: 0,
            }
        }

        /// Applies `changes` as the next version with both; checks the roots are equal
        /// and the one-thread and parallel paths agree byte for byte.
        fn step(&mut self, mut changes: BTreeMap<H256, Option<Vec<u8>>>) {
            let version = self.version;
            changes.retain(|k, v| v.is_some() || self.live.contains_key(k));
            let stock_set: Vec<(KeyHash, Option<OwnedValue>)> = changes
                .iter()
                .map(|(k, v)| (KeyHash(*k), v.clone()))
                .collect();
            let (stock_root, batch) = JellyfishMerkleTree::<_, Sha256>::new(&self.mem)
                .put_value_set(stock_set, version)
                .expect("stock");
            let ups: Vec<Update> = changes
                .iter()
                .enumerate()
                .map(|(i, (k, v))| Update {
                    key: *k,
                    value: v.as_ref().map(|v| sha(&[v.as_slice()])),
                    old: self
                        .live
                        .get(k)
                        .filter(|_| (i as u64 + version).is_multiple_of(2))
                        .map(|v| sha(&[v.as_slice()])),
                })
                .collect();
            let cf = self.db.cf_handle("nodes").expect("cf");
            let mut first: Option<(H256, Out)> = None;
            for threads in [Some(1), Some(3), None] {
                let u = Updater {
                    db: &self.db,
                    cf,
                    cache: &self.cache,
                    version,
                    reads: AtomicUsize::new(0),
                };
                let (root, out) = u
                    .apply_threads(version.checked_sub(1), &ups, threads)
                    .expect("ours");
                assert_eq!(root, stock_root.0, "version {version} threads {threads:?}");
                match &first {
                    None => first = Some((root, out)),
                    Some((_, o)) => {
                        assert_eq!(out.stale, o.stale, "stale, v {version} t {threads:?}");
                        assert!(
                            out.nodes().eq(o.nodes()),
                            "nodes, v {version} t {threads:?}"
                        );
                    }
                }
            }
            let (_, out) = first.expect("applied");
            let mut wb = rocksdb::WriteBatch::default();
            for (k, v) in out.nodes() {
                wb.put_cf(cf, k, v);
            }
            self.db.write(wb).expect("write");
            self.cache.apply(out.cache_new, &out.stale_cached);
            let mut m = self.mem.0.write().expect("lock");
            for (nk, node) in batch.node_batch.nodes() {
                m.insert(nk.clone(), node.clone());
            }
            drop(m);
            for (k, v) in changes {
                match v {
                    Some(v) => self.live.insert(k, v),
                    None => self.live.remove(&k),
                };
            }
            self.version += 1;
        }
    }

    /// Key hashes sharing 17..63-nibble prefixes (below any cache depth): pairs built,
    /// one of each deleted (the other lifts up), re-inserted, overwritten, a third key
    /// added one nibble deeper while its neighbour goes, all removed; roots equal stock
    /// jmt's `put_value_set` at every version, whatever the cache and the thread count.
    #[test]
    fn long_shared_prefixes_match_stock_jmt() {
        const PREFIXES: [usize; 10] = [17, 18, 24, 31, 32, 40, 47, 55, 62, 63];
        for (seed, cache_depth) in [(1u64, Some(4)), (2, Some(8)), (3, None), (4, Some(0))] {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut t = Twin::new(cache_depth);
            // Per prefix length p: keys a and b equal on nibbles 0..p, differing at p.
            let mut pairs: Vec<(H256, H256, H256)> = Vec::new();
            for (i, &p) in PREFIXES.iter().enumerate() {
                let mut a: H256 = rng.gen();
                a[0] = ((i as u8) << 4) | (a[0] & 0x0F); // spread over the root's children
                let mut b = a;
                for d in p + 1..64 {
                    set_nibble(&mut b, d, rng.gen_range(0..16));
                }
                set_nibble(&mut a, p, 3);
                set_nibble(&mut b, p, 0xC);
                // c: shares p + 1 nibbles with a (where there is room).
                let mut c = a;
                if p + 1 < 64 {
                    let n = nibble(&a, p + 1);
                    set_nibble(&mut c, p + 1, n ^ 0x8);
                } else {
                    set_nibble(&mut c, p, 7);
                }
                pairs.push((a, b, c));
            }
            let background: Vec<H256> = (0..120).map(|_| rng.gen()).collect();
            let val = |rng: &mut rand_chacha::ChaCha8Rng| Some(rng.gen::<[u8; 6]>().to_vec());
            type Batch = BTreeMap<H256, Option<Vec<u8>>>;
            // v0: everything in.
            let mut b: Batch = BTreeMap::new();
            for &(a, bb, _) in &pairs {
                b.insert(a, val(&mut rng));
                b.insert(bb, val(&mut rng));
            }
            for k in &background {
                b.insert(*k, val(&mut rng));
            }
            t.step(b);
            // v1: delete a of each pair (b lifts up to its shallowest unique position).
            t.step(pairs.iter().map(|&(a, _, _)| (a, None)).collect());
            // v2: re-insert a.
            let b: Batch = pairs.iter().map(|&(a, _, _)| (a, val(&mut rng))).collect();
            t.step(b);
            // v3: nothing changes.
            t.step(BTreeMap::new());
            // v4: overwrite b; add c next to a; delete a where the index is odd.
            let mut b: Batch = BTreeMap::new();
            for (i, &(a, bb, c)) in pairs.iter().enumerate() {
                b.insert(bb, val(&mut rng));
                b.insert(c, val(&mut rng));
                if i % 2 == 1 {
                    b.insert(a, None);
                }
            }
            t.step(b);
            // v5: delete b and c, keep a (or re-insert it); some background goes.
            let mut b: Batch = BTreeMap::new();
            for &(a, bb, c) in &pairs {
                b.insert(bb, None);
                b.insert(c, None);
                b.insert(a, val(&mut rng));
            }
            for k in background.iter().step_by(3) {
                b.insert(*k, None);
            }
            t.step(b);
            // v6: delete one of a pair and insert its partner in the same batch.
            let mut b: Batch = BTreeMap::new();
            for &(a, bb, _) in &pairs {
                b.insert(a, None);
                b.insert(bb, val(&mut rng));
            }
            t.step(b);
            // v7: every crafted key goes, then (v8) the background too.
            let mut b: Batch = BTreeMap::new();
            for &(a, bb, c) in &pairs {
                for k in [a, bb, c] {
                    b.insert(k, None);
                }
            }
            t.step(b);
            t.step(background.iter().map(|k| (*k, None)).collect());
            assert!(t.live.is_empty());
        }
    }
}
