//! The node cache at store level: its depth is validated.

use merkle_fs::{Error, Store, StoreOptions};

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
