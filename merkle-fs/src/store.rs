//! The RocksDB store: column families, commit of a working set as one atomic batch,
//! reads at retained heights, and pruning of stale tree nodes and value versions.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use jmt::JellyfishMerkleTree;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, Direction, IteratorMode, Options,
    ReadOptions, WriteBatch, WriteOptions, DB,
};
use sha2::Sha256;

use crate::alloc::Alloc;
use crate::codec::{Inode, InodeBody};
use crate::error::{Error, Result};
use crate::hash;
use crate::keys::{self, Height, LKey};
use crate::read::StateRead;
use crate::tree::{NodeReader, CF_NODES};
use crate::update::{CacheKey, NodeCache, TNode, MAX_CACHE_DEPTH};
use crate::{Limits, Root, Usage, ROOT_INO};

/// Versioned values: `logical key ‖ height` → entry (see [`encode_entry`]).
pub(crate) const CF_VALUES: &str = "values";
/// Stale records: `since ‖ kind ‖ what` → empty.
const CF_STALE: &str = "stale";
/// Root hash per retained height.
const CF_ROOTS: &str = "roots";
/// Bookkeeping (latest height, retained height, allocator, usage).
const CF_STATE: &str = "state";

const ENTRY_DELETED: u8 = 0;
const ENTRY_PRESENT: u8 = 1;

/// SHA-256 of the base-height value of keys a working set read (`None`: absent), so a
/// commit can recognise their existing tree leaves by hash instead of reading them.
pub(crate) type KnownBase = std::collections::HashMap<LKey, Option<[u8; 32]>>;

/// How the store is opened.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// fsync the write-ahead log on every commit (on for validators: a commit that
    /// returned must survive power loss).
    pub sync: bool,
    /// RocksDB block cache size in bytes (keeps the upper tree levels in memory).
    pub block_cache_bytes: usize,
    /// Limits enforced by working sets.
    pub limits: Limits,
    /// Tree nodes at depth `<=` this many nibbles are kept in memory across commits
    /// (the upper levels every commit rewrites), `None` for no cache. At most
    /// ~16^(d+1)/15 nodes of ≤ 1 KiB: `Some(4)` → ≤ 70,000 nodes (≈ 70 MiB), and
    /// never more than 2^20 nodes. At most 8: [`Store::open_with`] refuses deeper
    /// ([`Error::CacheDepthTooLarge`]).
    pub node_cache_depth: Option<usize>,
    /// Memtable size of the `nodes` and `values` column families (each may have up to
    /// three, one being written and two being flushed).
    pub memtable_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sync: true,
            block_cache_bytes: 256 << 20,
            limits: Limits::default(),
            node_cache_depth: Some(4),
            memtable_bytes: 256 << 20,
        }
    }
}

/// Bookkeeping mirrored in memory and persisted in `CF_STATE` with each commit.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub latest: Height,
    pub retained: Height,
    pub alloc: Alloc,
    pub usage: Usage,
}

pub(crate) struct Inner {
    pub db: DB,
    pub opts: StoreOptions,
    pub head: Mutex<Head>,
    /// Upper levels of the latest tree.
    pub cache: NodeCache,
}

/// A versioned, Merkle-authenticated filesystem store. Cheap to clone (shared).
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

/// A commit whose root is known and whose write batch is built, but not yet written:
/// the app hash of a block is reported at FinalizeBlock and made durable at Commit.
/// Dropping it leaves no trace.
pub struct PreparedCommit {
    store: Store,
    base: Option<Height>,
    height: Height,
    root: Root,
    batch: WriteBatch,
    alloc: Alloc,
    usage: Usage,
    /// New upper tree nodes, cached once the batch is written.
    cache_new: Vec<(CacheKey, Arc<TNode>)>,
    /// Cached nodes this commit supersedes (dropped from the cache once written).
    stale_cached: Vec<CacheKey>,
}

impl std::fmt::Debug for PreparedCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedCommit")
            .field("base", &self.base)
            .field("height", &self.height)
            .field("root", &hex_root(&self.root))
            .field("batch_len", &self.batch.len())
            .finish()
    }
}

fn hex_root(root: &Root) -> String {
    root.iter().map(|b| format!("{b:02x}")).collect()
}

impl PreparedCommit {
    /// The root the store will have at [`PreparedCommit::height`] once written.
    pub fn root(&self) -> Root {
        self.root
    }

    /// The height this commit creates.
    pub fn height(&self) -> Height {
        self.height
    }

    /// Writes the batch atomically and returns the new root. Fails (writing nothing)
    /// if another commit moved the store past the base this was prepared on.
    pub fn write(self) -> Result<Root> {
        let PreparedCommit {
            store,
            base,
            height,
            root,
            batch,
            alloc,
            usage,
            cache_new,
            stale_cached,
        } = self;
        let mut head = store.head();
        if let Some(b) = base {
            if b != head.latest {
                return Err(Error::StaleWorkingSet {
                    base: b,
                    latest: head.latest,
                });
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(store.inner.opts.sync);
        let started = std::time::Instant::now();
        let r = store
            .inner
            .db
            .write_opt(batch, &wo)
            .map_err(Error::db(format!("commit height {height}")));
        tracing::debug!(
            height,
            write_us = started.elapsed().as_micros() as u64,
            "commit written"
        );
        if r.is_err() {
            // Unknown whether the batch landed; the cache may only hold committed nodes.
            store.inner.cache.clear();
        }
        r?;
        store.inner.cache.apply(cache_new, &stale_cached);
        if head.latest == 0 && height > 1 {
            head.retained = height;
        }
        head.latest = height;
        head.alloc = alloc;
        head.usage = usage;
        Ok(root)
    }
}

/// One changed key, hashed for the commit.
struct Hashed {
    key_hash: [u8; 32],
    /// SHA-256 of the value: jmt's value hash and the stored checksum.
    value_hash: Option<[u8; 32]>,
}

fn hash_one(k: &[u8], v: Option<&[u8]>) -> Hashed {
    Hashed {
        key_hash: hash::sha256(&[k]),
        value_hash: v.map(hash::value_checksum),
    }
}

/// [`hash_one`] of every change, in order, split across the available cores.
fn hash_entries(changes: &[(LKey, Option<Vec<u8>>)]) -> std::result::Result<Vec<Hashed>, ()> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let per = changes.len().div_ceil(threads.max(1)).max(256);
    let run = |part: &[(LKey, Option<Vec<u8>>)]| -> Vec<Hashed> {
        part.iter()
            .map(|(k, v)| hash_one(k, v.as_deref()))
            .collect()
    };
    if changes.len() <= per {
        return Ok(run(changes));
    }
    std::thread::scope(|s| {
        let mut parts = changes.chunks(per);
        let first = parts.next().unwrap_or(&[]);
        let handles: Vec<_> = parts.map(|p| s.spawn(move || run(p))).collect();
        let mut out = run(first);
        for h in handles {
            out.extend(h.join().map_err(|_| ())?);
        }
        Ok(out)
    })
}

/// Writes a value-store entry into `e` (cleared first): `present ‖ sha256(value) ‖
/// value` or `deleted`, given the value with its SHA-256.
fn encode_entry(e: &mut Vec<u8>, value: Option<(&[u8], &[u8; 32])>) {
    e.clear();
    match value {
        None => e.push(ENTRY_DELETED),
        Some((v, sum)) => {
            e.push(ENTRY_PRESENT);
            e.extend_from_slice(sum);
            e.extend_from_slice(v);
        }
    }
}

/// Decodes an entry, verifying its checksum; `Err(())` if it is damaged.
fn decode_entry(e: &[u8]) -> std::result::Result<Option<Vec<u8>>, ()> {
    decode_entry_sum(e).map(|o| o.map(|(v, _)| v))
}

/// A value with its SHA-256.
type ValueAndSum = (Vec<u8>, [u8; 32]);

/// [`decode_entry`] with the value's (verified) SHA-256.
fn decode_entry_sum(e: &[u8]) -> std::result::Result<Option<ValueAndSum>, ()> {
    match e.split_first() {
        Some((&ENTRY_DELETED, [])) => Ok(None),
        Some((&ENTRY_PRESENT, rest)) if rest.len() >= 32 => {
            let (sum, v) = rest.split_at(32);
            let actual = hash::value_checksum(v);
            if actual[..] == *sum {
                Ok(Some((v.to_vec(), actual)))
            } else {
                Err(())
            }
        }
        _ => Err(()),
    }
}

/// Describes a logical key for error messages (inode / entry / chunk / meta).
pub(crate) fn describe(key: &[u8]) -> String {
    let word = |b: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        u64::from_be_bytes(a)
    };
    match key.first() {
        Some(&keys::TAG_INODE) if key.len() == 9 => format!("inode {}", word(&key[1..9])),
        Some(&keys::TAG_DIRENT) if key.len() > 9 => format!(
            "entry {:?} of directory inode {}",
            String::from_utf8_lossy(&keys::dirent_name(key).unwrap_or_default()),
            word(&key[1..9])
        ),
        Some(&keys::TAG_CHUNK) if key.len() == 17 => {
            format!(
                "chunk {} of file inode {}",
                word(&key[9..17]),
                word(&key[1..9])
            )
        }
        Some(&keys::TAG_META) => format!(
            "node state key {:?}",
            String::from_utf8_lossy(&keys::meta_name(key).unwrap_or_default())
        ),
        _ => format!("key {}", hex(key)),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Store {
    /// Opens (or creates, with an empty root directory at height 0) the store at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(path, StoreOptions::default())
    }

    /// Opens with explicit options.
    pub fn open_with(path: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        let path = path.as_ref();
        if let Some(depth) = opts.node_cache_depth {
            if depth > MAX_CACHE_DEPTH {
                return Err(Error::CacheDepthTooLarge {
                    depth,
                    max: MAX_CACHE_DEPTH,
                });
            }
        }
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.increase_parallelism(2);
        let cache = Cache::new_lru_cache(opts.block_cache_bytes);
        let cf = |name: &str, bloom: bool| {
            let mut o = Options::default();
            if name == CF_NODES || name == CF_VALUES {
                // Every commit supersedes its upper tree nodes and value versions, and
                // pruning deletes them a few heights later: with memtables holding
                // many commits, most of them die in memory and are never flushed or
                // compacted (the flush drops a put shadowed by a later delete).
                o.set_write_buffer_size(opts.memtable_bytes);
                o.set_max_write_buffer_number(3);
            }
            let mut t = BlockBasedOptions::default();
            t.set_block_cache(&cache);
            t.set_cache_index_and_filter_blocks(true);
            t.set_pin_l0_filter_and_index_blocks_in_cache(true);
            if bloom {
                t.set_bloom_filter(10.0, false);
            }
            o.set_block_based_table_factory(&t);
            ColumnFamilyDescriptor::new(name, o)
        };
        let cfs = vec![
            cf(CF_NODES, true),
            cf(CF_VALUES, false),
            cf(CF_STALE, false),
            cf(CF_ROOTS, false),
            cf(CF_STATE, false),
        ];
        let db = DB::open_cf_descriptors(&db_opts, path, cfs)
            .map_err(Error::db(format!("open {}", path.display())))?;
        let head = read_head(&db)?;
        let fresh = head.is_none();
        let inner = Arc::new(Inner {
            db,
            cache: NodeCache::new(opts.node_cache_depth),
            opts,
            head: Mutex::new(head.unwrap_or(Head {
                latest: 0,
                retained: 0,
                alloc: Alloc::new(),
                usage: Usage::default(),
            })),
        });
        let store = Store { inner };
        if fresh {
            store.genesis()?;
        }
        Ok(store)
    }

    /// Writes height 0: the empty root directory (inode 1).
    fn genesis(&self) -> Result<()> {
        let mut alloc = Alloc::new();
        let root = alloc.alloc();
        debug_assert_eq!(root, ROOT_INO);
        let inode = Inode {
            body: InodeBody::Dir {
                entries: 0,
                parent: ROOT_INO,
                listing_root: hash::listing_root(&[]),
            },
            nlink: 2,
            open: 0,
            atime_ns: 0,
            mtime_ns: 0,
            ctime_ns: 0,
        };
        let mut changes = BTreeMap::new();
        changes.insert(keys::inode(ROOT_INO), Some(inode.encode()));
        self.apply(
            None,
            0,
            changes,
            &KnownBase::new(),
            alloc,
            Usage {
                bytes: 0,
                inodes: 1,
            },
        )?;
        Ok(())
    }

    pub(crate) fn head(&self) -> MutexGuard<'_, Head> {
        // A poisoned lock means a commit panicked half-way in memory only; the
        // persisted state is still consistent, so continuing with the data is sound.
        self.inner.head.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The latest committed height.
    pub fn latest_height(&self) -> Height {
        self.head().latest
    }

    /// The oldest readable height.
    pub fn retained_height(&self) -> Height {
        self.head().retained
    }

    /// The root committed at `height`.
    pub fn root_at(&self, height: Height) -> Result<Root> {
        self.check_height(height)?;
        let cf = self.cf(CF_ROOTS)?;
        let v = self
            .inner
            .db
            .get_cf(cf, keys::root(height))
            .map_err(Error::db(format!("read root at height {height}")))?
            .ok_or_else(|| Error::Corrupt {
                what: "missing root record".into(),
                height,
            })?;
        v.try_into().map_err(|_| Error::Corrupt {
            what: "root record is not 32 bytes".into(),
            height,
        })
    }

    /// The latest root (the current app hash).
    pub fn root(&self) -> Result<Root> {
        self.root_at(self.latest_height())
    }

    /// A fresh working set on top of the latest height.
    pub fn working_set(&self) -> crate::WorkingSet {
        let head = self.head().clone();
        crate::WorkingSet::new(
            self.clone(),
            head.latest,
            head.alloc,
            head.usage,
            self.inner.opts.limits,
        )
    }

    /// A read-only view at `height`.
    pub fn at(&self, height: Height) -> Result<Snapshot> {
        self.check_height(height)?;
        Ok(Snapshot {
            store: self.clone(),
            height,
        })
    }

    /// A read-only view at the latest height.
    pub fn latest(&self) -> Snapshot {
        Snapshot {
            store: self.clone(),
            height: self.latest_height(),
        }
    }

    pub(crate) fn check_height(&self, height: Height) -> Result<()> {
        let h = self.head();
        if height < h.retained || height > h.latest {
            return Err(Error::HeightNotRetained {
                height,
                oldest: h.retained,
                latest: h.latest,
            });
        }
        Ok(())
    }

    pub(crate) fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily> {
        self.inner.db.cf_handle(name).ok_or_else(|| Error::Tree {
            height: 0,
            message: format!("column family {name} missing"),
        })
    }

    /// The value of `key` at `height` (no retention check: callers did it).
    pub(crate) fn get_at(&self, key: &[u8], height: Height) -> Result<Option<Vec<u8>>> {
        Ok(self.get_at_sum(key, height)?.map(|(v, _)| v))
    }

    /// [`Store::get_at`] with the value's SHA-256 (jmt's value hash).
    pub(crate) fn get_at_sum(
        &self,
        key: &[u8],
        height: Height,
    ) -> Result<Option<(Vec<u8>, [u8; 32])>> {
        let cf = self.cf(CF_VALUES)?;
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(keys::versioned(key, 0));
        let mut it = self.inner.db.raw_iterator_cf_opt(cf, ro);
        it.seek_for_prev(keys::versioned(key, height));
        if !it.valid() {
            it.status()
                .map_err(Error::db(format!("read {}", describe(key))))?;
            return Ok(None);
        }
        let (Some(k), Some(e)) = (it.key(), it.value()) else {
            return Ok(None);
        };
        match keys::split_versioned(k) {
            Some((lk, _)) if lk == key => decode_entry_sum(e).map_err(|()| Error::Corrupt {
                what: format!("{} fails its checksum", describe(key)),
                height,
            }),
            _ => Ok(None),
        }
    }

    /// All live `(key, value)` pairs under `prefix` at `height`, sorted by key.
    pub(crate) fn scan_at(&self, prefix: &[u8], height: Height) -> Result<Vec<(LKey, Vec<u8>)>> {
        let cf = self.cf(CF_VALUES)?;
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(prefix.to_vec());
        if let Some(upper) = prefix_upper_bound(prefix) {
            ro.set_iterate_upper_bound(upper);
        }
        let it =
            self.inner
                .db
                .iterator_cf_opt(cf, ro, IteratorMode::From(prefix, Direction::Forward));
        let mut out: Vec<(LKey, Vec<u8>)> = Vec::new();
        // The newest version <= height of the key being scanned (None = deleted).
        let mut current: Option<(LKey, Option<Vec<u8>>)> = None;
        let flush = |cur: Option<(LKey, Option<Vec<u8>>)>, out: &mut Vec<(LKey, Vec<u8>)>| {
            if let Some((k, Some(v))) = cur {
                out.push((k, v));
            }
        };
        for item in it {
            let (k, e) = item.map_err(Error::db(format!("scan {}", describe(prefix))))?;
            let Some((lk, h)) = keys::split_versioned(&k) else {
                continue;
            };
            if h > height {
                continue;
            }
            let value = decode_entry(&e).map_err(|()| Error::Corrupt {
                what: format!("{} fails its checksum", describe(lk)),
                height,
            })?;
            match &mut current {
                Some((ck, cv)) if ck.as_slice() == lk => *cv = value,
                _ => {
                    flush(current.take(), &mut out);
                    current = Some((lk.to_vec(), value));
                }
            }
        }
        flush(current, &mut out);
        Ok(out)
    }

    /// Commits `changes` at `height` on top of `base` as one atomic write batch:
    /// [`Store::prepare`] then [`PreparedCommit::write`], the only commit path.
    pub(crate) fn apply(
        &self,
        base: Option<Height>,
        height: Height,
        changes: BTreeMap<LKey, Option<Vec<u8>>>,
        known: &KnownBase,
        alloc: Alloc,
        usage: Usage,
    ) -> Result<Root> {
        self.prepare(base, height, changes, known, alloc, usage)?
            .write()
    }

    /// Computes the root `changes` give at `height` on top of `base` and builds the
    /// write batch that would commit them, reading RocksDB but writing nothing.
    ///
    /// Hashing and the tree update run on all cores (see `update.rs`); `known` holds
    /// base value hashes the working set read, which spare tree reads.
    pub(crate) fn prepare(
        &self,
        base: Option<Height>,
        height: Height,
        changes: BTreeMap<LKey, Option<Vec<u8>>>,
        known: &KnownBase,
        alloc: Alloc,
        usage: Usage,
    ) -> Result<PreparedCommit> {
        let latest = self.head().latest;
        match base {
            Some(b) if b != latest => return Err(Error::StaleWorkingSet { base: b, latest }),
            // The first commit of an empty store may be at any height from 1 (a
            // chain's initial height); every later one follows the last.
            Some(0) if height == 0 => {
                return Err(Error::HeightOutOfOrder {
                    expected: 1,
                    got: height,
                })
            }
            Some(b) if b > 0 && height != b + 1 => {
                return Err(Error::HeightOutOfOrder {
                    expected: b + 1,
                    got: height,
                })
            }
            _ => {}
        }
        let started = std::time::Instant::now();
        // A deletion of a key the base never had is not a change of the tree.
        let mut effective: Vec<(LKey, Option<Vec<u8>>)> = Vec::with_capacity(changes.len());
        for (k, v) in changes {
            if v.is_none() {
                let existed = match (base, known.get(&k)) {
                    (Some(_), Some(old)) => old.is_some(),
                    (Some(b), None) => self.get_at(&k, b)?.is_some(),
                    (None, _) => false,
                };
                if !existed {
                    continue;
                }
            }
            effective.push((k, v));
        }

        let db = &self.inner.db;
        let nodes = self.cf(CF_NODES)?;
        // Hash keys and values and encode the value entries on all cores. The value
        // checksum stored beside each value is jmt's value hash, computed once here.
        let hashed = hash_entries(&effective).map_err(|()| Error::Tree {
            height,
            message: "value hashing thread panicked".into(),
        })?;
        let mut ups: Vec<crate::update::Update> = effective
            .iter()
            .zip(&hashed)
            .map(|((k, _), h)| crate::update::Update {
                key: h.key_hash,
                value: h.value_hash,
                old: known.get(k).copied().flatten(),
            })
            .collect();
        ups.sort_unstable_by_key(|u| u.key);
        let hashed_at = std::time::Instant::now();
        let updater = crate::update::Updater {
            db,
            cf: nodes,
            cache: &self.inner.cache,
            version: height,
            reads: std::sync::atomic::AtomicUsize::new(0),
        };
        let (root, update) = updater.apply(base, &ups).map_err(|e| Error::Tree {
            height,
            message: match e {
                crate::update::UpdateError::Db(e) => format!("read tree node: {e}"),
                crate::update::UpdateError::Corrupt(m) => m,
                crate::update::UpdateError::WorkerPanicked => "tree worker panicked".into(),
            },
        })?;
        let tree_at = std::time::Instant::now();

        // Sized up front: growing a 20 MB batch by doubling costs copies and page faults.
        let (node_count, node_bytes) = update.node_stats();
        let value_bytes: usize = effective
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len) + 8 + 33 + 16)
            .sum();
        let list_bytes: usize = effective.iter().map(|(k, _)| 4 + k.len()).sum();
        let mut batch = WriteBatch::with_capacity_bytes(
            64 + node_bytes + 16 * node_count + value_bytes + update.stale.len() + list_bytes + 256,
        );
        let values = self.cf(CF_VALUES)?;
        let stale = self.cf(CF_STALE)?;
        let roots = self.cf(CF_ROOTS)?;
        let state = self.cf(CF_STATE)?;
        // In key order: RocksDB's memtable skiplist inserts sorted keys much faster (it
        // reuses the previous insert position). Values below come sorted already.
        let mut sorted: Vec<(&[u8], &[u8])> = update.nodes().collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (k, v) in sorted {
            batch.put_cf(nodes, k, v);
        }
        if !update.stale.is_empty() {
            batch.put_cf(stale, keys::stale(height, keys::STALE_NODES), &update.stale);
        }
        let mut changed = Vec::with_capacity(list_bytes);
        let (mut vk, mut entry) = (Vec::new(), Vec::new());
        for ((k, v), h) in effective.iter().zip(&hashed) {
            keys::versioned_into(&mut vk, k, height);
            encode_entry(&mut entry, v.as_deref().zip(h.value_hash.as_ref()));
            batch.put_cf(values, &vk, &entry);
            keys::push_list_item(&mut changed, k);
        }
        if !changed.is_empty() {
            batch.put_cf(stale, keys::stale(height, keys::STALE_VALUES), &changed);
        }
        batch.put_cf(roots, keys::root(height), root);
        batch.put_cf(state, keys::state::LATEST, height.to_be_bytes());
        if latest == 0 && height > 1 {
            // A store that starts above height 1 (a chain's initial height)
            // has nothing below it: its first height is the oldest readable.
            batch.put_cf(state, keys::state::RETAINED, height.to_be_bytes());
        }
        batch.put_cf(
            state,
            keys::state::ALLOC,
            encode_alloc_usage(&alloc, &usage),
        );
        tracing::debug!(
            height,
            changes = effective.len(),
            nodes = node_count,
            node_reads = update.reads,
            hash_us = (hashed_at - started).as_micros() as u64,
            tree_us = (tree_at - hashed_at).as_micros() as u64,
            batch_us = tree_at.elapsed().as_micros() as u64,
            batch_bytes = batch.size_in_bytes(),
            "commit prepared"
        );
        Ok(PreparedCommit {
            store: self.clone(),
            base,
            height,
            root,
            batch,
            alloc,
            usage,
            cache_new: update.cache_new,
            stale_cached: update.stale_cached,
        })
    }

    /// Deletes everything only needed to read heights below `retain` (stale tree nodes,
    /// superseded value versions, old roots). Returns how many records were removed;
    /// a `retain` at or below the oldest retained height removes nothing.
    pub fn prune(&self, retain: Height) -> Result<u64> {
        let latest = self.latest_height();
        if retain > latest {
            return Err(Error::HeightNotRetained {
                height: retain,
                oldest: self.retained_height(),
                latest,
            });
        }
        let db = &self.inner.db;
        let nodes = self.cf(CF_NODES)?;
        let values = self.cf(CF_VALUES)?;
        let stale = self.cf(CF_STALE)?;
        let roots = self.cf(CF_ROOTS)?;
        let state = self.cf(CF_STATE)?;
        // Everything a height below `already` needed went in an earlier prune (the
        // same batch that recorded `already`): scanning from there skips the
        // tombstones those prunes left, so a prune per block stays cheap.
        let already = self.retained_height();
        if retain <= already {
            return Ok(0);
        }
        let mut batch = WriteBatch::default();
        let mut removed = 0u64;
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(already.to_be_bytes().to_vec());
        ro.set_iterate_upper_bound((retain + 1).to_be_bytes().to_vec());
        for item in db.iterator_cf_opt(stale, ro, IteratorMode::Start) {
            let (k, list) = item.map_err(Error::db("scan stale index"))?;
            if k.len() < 9 {
                continue;
            }
            let mut sb = [0u8; 8];
            sb.copy_from_slice(&k[..8]);
            let since = Height::from_be_bytes(sb);
            let items = keys::list_items(&list).ok_or_else(|| Error::Corrupt {
                what: "stale index record is malformed".into(),
                height: since,
            })?;
            match k[8] {
                keys::STALE_NODES => {
                    for what in items {
                        batch.delete_cf(nodes, what);
                        removed += 1;
                    }
                }
                keys::STALE_VALUES => {
                    for what in items {
                        let mut ro = ReadOptions::default();
                        ro.set_iterate_upper_bound(keys::versioned(what, since + 1));
                        let from = keys::versioned(what, 0);
                        for v in db.iterator_cf_opt(
                            values,
                            ro,
                            IteratorMode::From(&from, Direction::Forward),
                        ) {
                            let (vk, e) = v.map_err(Error::db(format!(
                                "scan versions of {}",
                                describe(what)
                            )))?;
                            let Some((lk, h)) = keys::split_versioned(&vk) else {
                                continue;
                            };
                            if lk != what {
                                continue;
                            }
                            // Older versions go; the version at `since` goes only if it is
                            // a deletion marker (absence reads the same without it).
                            if h < since || (h == since && e.first() == Some(&ENTRY_DELETED)) {
                                batch.delete_cf(values, &vk);
                                removed += 1;
                            }
                        }
                    }
                }
                _ => {}
            }
            batch.delete_cf(stale, &k);
        }
        batch.delete_range_cf(roots, keys::root(already), keys::root(retain));
        batch.put_cf(state, keys::state::RETAINED, retain.to_be_bytes());
        let mut wo = WriteOptions::default();
        wo.set_sync(self.inner.opts.sync);
        db.write_opt(batch, &wo)
            .map_err(Error::db(format!("prune below height {retain}")))?;
        let mut head = self.head();
        head.retained = head.retained.max(retain);
        Ok(removed)
    }

    /// Flushes memtables and compacts, so on-disk size reflects pruning (benchmarks).
    pub fn compact(&self) -> Result<()> {
        for name in [CF_NODES, CF_VALUES, CF_STALE, CF_ROOTS, CF_STATE] {
            let cf = self.cf(name)?;
            self.inner
                .db
                .flush_cf(&cf)
                .map_err(Error::db(format!("flush {name}")))?;
            self.inner
                .db
                .compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    /// Proves the value of one logical key at `height` against that height's root.
    pub(crate) fn prove_key(&self, key: &[u8], height: Height) -> Result<crate::proof::KeyProof> {
        let value = self.get_at(key, height)?;
        let kh = keys::key_hash(key);
        let reader = NodeReader {
            db: &self.inner.db,
            known: Some((kh, value)),
        };
        let tree = JellyfishMerkleTree::<_, Sha256>::new(&reader);
        let (value, proof) = tree.get_with_proof(kh, height).map_err(|e| Error::Tree {
            height,
            message: format!("prove {}: {e:#}", describe(key)),
        })?;
        Ok(crate::proof::KeyProof { value, proof })
    }
}

/// The smallest byte string greater than every string starting with `prefix`.
fn prefix_upper_bound(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut p = prefix.to_vec();
    while let Some(last) = p.pop() {
        if last < 0xFF {
            p.push(last + 1);
            return Some(p);
        }
    }
    None
}

fn encode_alloc_usage(alloc: &Alloc, usage: &Usage) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&usage.bytes.to_be_bytes());
    v.extend_from_slice(&usage.inodes.to_be_bytes());
    v.extend_from_slice(&alloc.encode());
    v
}

fn read_u64(db: &DB, cf: &rocksdb::ColumnFamily, key: &[u8]) -> Result<Option<u64>> {
    let v = db
        .get_cf(cf, key)
        .map_err(Error::db("read store bookkeeping"))?;
    match v {
        None => Ok(None),
        Some(b) => {
            let arr: [u8; 8] = b.as_slice().try_into().map_err(|_| Error::Corrupt {
                what: format!("bookkeeping record {:?}", String::from_utf8_lossy(key)),
                height: 0,
            })?;
            Ok(Some(u64::from_be_bytes(arr)))
        }
    }
}

fn read_head(db: &DB) -> Result<Option<Head>> {
    let cf = db.cf_handle(CF_STATE).ok_or_else(|| Error::Tree {
        height: 0,
        message: "column family state missing".into(),
    })?;
    let Some(latest) = read_u64(db, cf, keys::state::LATEST)? else {
        return Ok(None);
    };
    let retained = read_u64(db, cf, keys::state::RETAINED)?.unwrap_or(0);
    let corrupt = || Error::Corrupt {
        what: "allocator record".into(),
        height: latest,
    };
    let raw = db
        .get_cf(cf, keys::state::ALLOC)
        .map_err(Error::db("read allocator"))?
        .ok_or_else(corrupt)?;
    if raw.len() < 16 {
        return Err(corrupt());
    }
    let word = |b: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        u64::from_be_bytes(a)
    };
    let usage = Usage {
        bytes: word(&raw[0..8]),
        inodes: word(&raw[8..16]),
    };
    let alloc = Alloc::decode(&raw[16..]).ok_or_else(corrupt)?;
    Ok(Some(Head {
        latest,
        retained,
        alloc,
        usage,
    }))
}

/// A read-only view of the filesystem at one retained height.
#[derive(Clone)]
pub struct Snapshot {
    pub(crate) store: Store,
    pub(crate) height: Height,
}

impl Snapshot {
    /// The height this view reads.
    pub fn height(&self) -> Height {
        self.height
    }
}

impl StateRead for Snapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.store.get_at(key, self.height)
    }
    fn scan(&self, prefix: &[u8]) -> Result<Vec<(LKey, Vec<u8>)>> {
        self.store.scan_at(prefix, self.height)
    }
    fn height(&self) -> Height {
        self.height
    }
}
