//! The node cache at store level: its depth is validated, and a store that prunes and
//! keeps committing with the cache on gives the same roots as one without a cache.

use merkle_fs::{Error, Store, StoreOptions};
use rand::{Rng, SeedableRng};

fn open(dir: &tempfile::TempDir, depth: Option<usize>) -> merkle_fs::Result<Store> {
    Store::open_with(
        dir.path(),
        StoreOptions {
            sync: false,
            node_cache_depth: depth,
            ..StoreOptions::default()
        },
    )
}

#[test]
fn cache_depth_over_8_is_refused() {
    for depth in [9usize, 16, 64] {
        let dir = tempfile::tempdir().expect("tempdir");
        match open(&dir, Some(depth)) {
            Err(Error::CacheDepthTooLarge { depth: d, max: 8 }) => assert_eq!(d, depth),
            Err(e) => panic!("depth {depth}: wrong error {e}"),
            Ok(_) => panic!("depth {depth} accepted"),
        }
    }
    for depth in [None, Some(0), Some(8)] {
        let dir = tempfile::tempdir().expect("tempdir");
        open(&dir, depth).expect("a depth up to 8 opens");
    }
}

#[test]
fn prune_then_commit_with_cache_matches_no_cache() {
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().expect("tmp")).collect();
    // (cache depth, prunes): the uncached, unpruned store is the reference.
    let cfg = [
        (None, false),
        (Some(4), true),
        (Some(8), true),
        (Some(1), true),
    ];
    let stores: Vec<Store> = dirs
        .iter()
        .zip(cfg)
        .map(|(d, (depth, _))| open(d, depth).expect("open"))
        .collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut live: Vec<Vec<u8>> = Vec::new();
    for h in 1..=40u64 {
        // Inserts, overwrites and deletes of meta keys (each one tree leaf).
        let mut ops: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        for _ in 0..rng.gen_range(0..300) {
            let r: f64 = rng.gen();
            if r < 0.3 && !live.is_empty() {
                let k = live.swap_remove(rng.gen_range(0..live.len()));
                ops.push((k, None));
            } else if r < 0.5 && !live.is_empty() {
                let k = live[rng.gen_range(0..live.len())].clone();
                ops.push((k, Some(rng.gen::<[u8; 8]>().to_vec())));
            } else {
                let k = format!("key-{}", rng.gen::<u32>()).into_bytes();
                live.push(k.clone());
                ops.push((k, Some(rng.gen::<[u8; 8]>().to_vec())));
            }
        }
        let mut roots = Vec::new();
        for (s, (_, prunes)) in stores.iter().zip(cfg) {
            let mut ws = s.working_set();
            for (k, v) in &ops {
                match v {
                    Some(v) => ws.put_meta(k, v),
                    None => ws.delete_meta(k),
                }
            }
            roots.push(ws.commit(h).expect("commit"));
            if prunes && h % 3 == 0 {
                s.prune(h).expect("prune to the latest height");
            } else if prunes && h % 5 == 0 {
                s.prune(h - 2).expect("prune");
            }
        }
        for (i, r) in roots.iter().enumerate() {
            assert_eq!(r, &roots[0], "height {h}: store {i} {:?}", cfg[i]);
        }
    }
    // The pruned stores still read and prove their latest tree.
    for s in &stores {
        assert_eq!(s.root().expect("root"), stores[0].root().expect("root"));
    }
}
