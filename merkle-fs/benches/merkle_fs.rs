//! merkle-fs benchmarks; results and method are in docs/benchmarks.md (## merkle-fs).
//!
//! Every authenticated number is measured in the same run as a baseline of raw RocksDB
//! `WriteBatch` puts of the same data with the same fsync setting.
//!
//! The 1,000,000-file state is built once into `$MERKLE_FS_BENCH_DIR` (default
//! `$CARGO_TARGET_DIR/merkle-fs-bench-1m`, else a temp dir) and reused by later runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use merkle_fs::{proof, FsRead, Store, StoreOptions, ROOT_INO};
use rand::{Rng, SeedableRng};

const SMALL: usize = 256;
const BLOCK_FILES: u64 = 10_000;

fn opts() -> StoreOptions {
    StoreOptions {
        sync: true,
        ..StoreOptions::default()
    }
}

fn content(i: u64, h: u64) -> Vec<u8> {
    (0..SMALL)
        .map(|k| (k as u64 ^ i ^ (h << 3)) as u8)
        .collect()
}

/// Small-file authenticated writes per second vs raw RocksDB puts of the same bytes.
fn small_file_writes(c: &mut Criterion) {
    let mut g = c.benchmark_group("small_file_writes");
    g.sample_size(10);
    g.throughput(Throughput::Elements(BLOCK_FILES));

    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(dir.path(), opts()).expect("open");
    g.bench_function(BenchmarkId::new("merkle_fs_create", BLOCK_FILES), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let h = store.latest_height() + 1;
                let t = Instant::now();
                let mut ws = store.working_set();
                let d = ws
                    .mkdir(ROOT_INO, format!("b{h}").as_bytes(), h)
                    .expect("mkdir");
                for i in 0..BLOCK_FILES {
                    let f = ws
                        .create_file(d, format!("f{i}").as_bytes(), h)
                        .expect("create");
                    ws.write(f, 0, &content(i, h), h).expect("write");
                }
                ws.commit(h).expect("commit");
                total += t.elapsed();
            }
            total
        })
    });

    // Overwrites of existing small files (the steady state of a running service).
    let dir2 = tempfile::tempdir().expect("tempdir");
    let store2 = Store::open_with(dir2.path(), opts()).expect("open");
    let mut files = Vec::new();
    {
        let mut ws = store2.working_set();
        let d = ws.mkdir(ROOT_INO, b"d", 1).expect("mkdir");
        for i in 0..BLOCK_FILES {
            let f = ws
                .create_file(d, format!("f{i}").as_bytes(), 1)
                .expect("create");
            ws.write(f, 0, &content(i, 0), 1).expect("write");
            files.push(f);
        }
        ws.commit(1).expect("commit");
    }
    g.bench_function(BenchmarkId::new("merkle_fs_overwrite", BLOCK_FILES), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let h = store2.latest_height() + 1;
                let t = Instant::now();
                let mut ws = store2.working_set();
                for (i, &f) in files.iter().enumerate() {
                    ws.write(f, 0, &content(i as u64, h), h).expect("write");
                }
                ws.commit(h).expect("commit");
                total += t.elapsed();
            }
            total
        })
    });

    let dir3 = tempfile::tempdir().expect("tempdir");
    let db = rocksdb::DB::open_default(dir3.path()).expect("raw rocksdb");
    let mut h = 0u64;
    g.bench_function(BenchmarkId::new("raw_rocksdb_batch", BLOCK_FILES), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                h += 1;
                let t = Instant::now();
                let mut batch = rocksdb::WriteBatch::default();
                for i in 0..BLOCK_FILES {
                    batch.put(format!("/b{h}/f{i}").as_bytes(), content(i, h));
                }
                let mut wo = rocksdb::WriteOptions::default();
                wo.set_sync(true);
                db.write_opt(batch, &wo).expect("raw write");
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
}

fn big_state_dir() -> PathBuf {
    if let Ok(d) = std::env::var("MERKLE_FS_BENCH_DIR") {
        return PathBuf::from(d);
    }
    let base = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    base.join("merkle-fs-bench-1m")
}

const DIRS: u64 = 1000;
const PER_DIR: u64 = 1000;

/// Builds (once) a state of DIRS × PER_DIR small files.
fn big_state(path: &Path) -> Store {
    let store = Store::open_with(
        path,
        StoreOptions {
            sync: false,
            ..opts()
        },
    )
    .expect("open big state");
    if store.latest_height() >= DIRS / 50 {
        return store;
    }
    eprintln!(
        "building the {}-file state in {} (once)...",
        DIRS * PER_DIR,
        path.display()
    );
    let t = Instant::now();
    for batch in 0..DIRS / 50 {
        let h = batch + 1;
        let mut ws = store.working_set();
        for d in batch * 50..(batch + 1) * 50 {
            let dino = ws
                .mkdir(ROOT_INO, format!("d{d}").as_bytes(), h)
                .expect("mkdir");
            for i in 0..PER_DIR {
                let f = ws
                    .create_file(dino, format!("f{i}").as_bytes(), h)
                    .expect("create");
                ws.write(f, 0, &content(d * PER_DIR + i, 0), h)
                    .expect("write");
            }
        }
        ws.commit(h).expect("commit");
    }
    store.compact().expect("compact");
    eprintln!("built in {:.1}s", t.elapsed().as_secs_f64());
    store
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Commit latency of blocks changing 10,000 files of the 1,000,000-file state (fsync on).
fn commit_latency(c: &mut Criterion) {
    let path = big_state_dir();
    drop(big_state(&path));
    let store = Store::open_with(&path, opts()).expect("reopen with fsync");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut commit_times = Vec::new();
    let mut block_times = Vec::new();
    let mut g = c.benchmark_group("commit_1m_state");
    // 100 samples of one block each (plus warm-up): enough blocks for a p99 that
    // is not just the maximum.
    g.sample_size(100);
    g.bench_function("change_10k_files_commit_only", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let h = store.latest_height() + 1;
                let t0 = Instant::now();
                let mut ws = store.working_set();
                for _ in 0..BLOCK_FILES {
                    let d = rng.gen_range(0..DIRS);
                    let i = rng.gen_range(0..PER_DIR);
                    let dino = ws
                        .lookup(ROOT_INO, format!("d{d}").as_bytes())
                        .expect("dir");
                    let f = ws.lookup(dino, format!("f{i}").as_bytes()).expect("file");
                    ws.write(f, 0, &content(d * PER_DIR + i, h), h)
                        .expect("write");
                }
                let t1 = Instant::now();
                ws.commit(h).expect("commit");
                let commit = t1.elapsed();
                commit_times.push(commit);
                block_times.push(t0.elapsed());
                total += commit;
                // Keep the bench state from growing without bound.
                if h > 10 {
                    store.prune(h - 10).expect("prune");
                }
            }
            total
        })
    });
    g.finish();
    if commit_times.is_empty() {
        return; // filtered out
    }
    // The first block after opening the store starts with a cold node cache (a
    // validator restart); it is reported on its own, the steady state without it.
    let cold = commit_times.remove(0);
    block_times.remove(0);
    let mut slow: Vec<(usize, Duration)> = commit_times.iter().copied().enumerate().collect();
    slow.sort_by_key(|&(_, t)| std::cmp::Reverse(t));
    slow.truncate(3);
    eprintln!("commit_1m_state: first commit after opening (cold node cache) {cold:?}; slowest later commits (block index after it): {slow:?}");
    commit_times.sort();
    block_times.sort();
    eprintln!(
        "commit_1m_state: {} steady-state blocks; commit() p50 {:?} p90 {:?} p99 {:?} max {:?}; whole block (10k writes + commit) p50 {:?} p99 {:?}",
        commit_times.len(),
        percentile(&commit_times, 0.5),
        percentile(&commit_times, 0.9),
        percentile(&commit_times, 0.99),
        commit_times.last().copied().unwrap_or_default(),
        percentile(&block_times, 0.5),
        percentile(&block_times, 0.99),
    );
}

/// Proof generation / verification time and size on the 1,000,000-file state.
fn proofs(c: &mut Criterion) {
    let store = big_state(&big_state_dir());
    let h = store.latest_height();
    let root = store.root().expect("root");
    let mut g = c.benchmark_group("proofs_1m_state");
    let path = b"/d517/f333";
    g.bench_function("prove_small_file", |b| {
        b.iter(|| store.prove_file_range(h, path, 0, u64::MAX).expect("prove"))
    });
    let p = store.prove_file_range(h, path, 0, u64::MAX).expect("prove");
    g.bench_function("verify_small_file", |b| {
        b.iter(|| proof::verify_file_range(&root, path, 0, u64::MAX, &p).expect("verify"))
    });
    let absent = store.prove_path(h, b"/d517/nope").expect("prove absent");
    g.bench_function("verify_absence", |b| {
        b.iter(|| proof::verify_absent(&root, b"/d517/nope", &absent).expect("verify"))
    });
    let listing = store.prove_listing(h, b"/d517").expect("prove listing");
    g.bench_function("prove_listing_1000", |b| {
        b.iter(|| store.prove_listing(h, b"/d517").expect("prove listing"))
    });
    g.bench_function("verify_listing_1000", |b| {
        b.iter(|| proof::verify_listing(&root, b"/d517", &listing).expect("verify listing"))
    });
    g.finish();
    let size = |v: Vec<u8>| v.len();
    eprintln!(
        "proof sizes (borsh): small file ({} B content) {} B; absence {} B; listing of 1000 entries {} B",
        SMALL,
        size(borsh::to_vec(&p).expect("ser")),
        size(borsh::to_vec(&absent).expect("ser")),
        size(borsh::to_vec(&listing).expect("ser")),
    );
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// On-disk size after 1,000 blocks with pruning (keep 10 heights) vs live data.
fn storage_bound(c: &mut Criterion) {
    let mut g = c.benchmark_group("storage");
    g.sample_size(10);
    g.bench_function("1000_blocks_pruned", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = Store::open_with(dir.path(), StoreOptions { sync: false, ..opts() }).expect("open");
                const FILES: u64 = 10_000;
                const PER_BLOCK: u64 = 100;
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
                let t = Instant::now();
                let mut files = Vec::new();
                {
                    let mut ws = store.working_set();
                    let d = ws.mkdir(ROOT_INO, b"d", 1).expect("mkdir");
                    for i in 0..FILES {
                        let f = ws.create_file(d, format!("f{i}").as_bytes(), 1).expect("create");
                        ws.write(f, 0, &content(i, 1), 1).expect("write");
                        files.push(f);
                    }
                    ws.commit(1).expect("commit");
                }
                for h in 2..=1001u64 {
                    let mut ws = store.working_set();
                    for _ in 0..PER_BLOCK {
                        let i = rng.gen_range(0..FILES);
                        ws.write(files[i as usize], 0, &content(i, h), h).expect("write");
                    }
                    ws.commit(h).expect("commit");
                    if h > 10 {
                        store.prune(h - 10).expect("prune");
                    }
                }
                total += t.elapsed();
                store.compact().expect("compact");
                let live: u64 = files.iter().map(|&f| store.latest().getattr(f).expect("attr").size).sum();
                eprintln!(
                    "storage: after 1000 blocks x {PER_BLOCK} overwrites, pruning to 10 heights: on disk {} KiB, live file bytes {} KiB",
                    dir_size(dir.path()) / 1024,
                    live / 1024
                );
            }
            total
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    small_file_writes,
    commit_latency,
    proofs,
    storage_bound
);
criterion_main!(benches);
