//! The root before the write: `WorkingSet::root` and `prepare_commit` give exactly the
//! root `commit` gives, and write nothing until `PreparedCommit::write`.

use merkle_fs::{FsRead, Store, StoreOptions, WorkingSet, CHUNK_SIZE, ROOT_INO};

fn store(dir: &tempfile::TempDir) -> Store {
    Store::open_with(
        dir.path(),
        StoreOptions {
            sync: false,
            ..StoreOptions::default()
        },
    )
    .expect("open store")
}

/// A block touching files, directories, deletions and node state.
fn block(ws: &mut WorkingSet, h: u64) {
    let d = ws
        .mkdir(ROOT_INO, format!("d{h}").as_bytes(), h)
        .expect("mkdir");
    let f = ws.create_file(d, b"f", h).expect("create");
    let data: Vec<u8> = (0..CHUNK_SIZE as usize + 5)
        .map(|i| (i as u64 ^ h) as u8)
        .collect();
    ws.write(f, 0, &data, h).expect("write");
    ws.put_meta(format!("k{h}").as_bytes(), &h.to_be_bytes());
    if h > 1 {
        let prev = ws
            .lookup(ROOT_INO, format!("d{}", h - 1).as_bytes())
            .expect("previous dir");
        ws.unlink(prev, b"f", h).expect("unlink");
        ws.delete_meta(format!("k{}", h - 1).as_bytes());
    }
}

#[test]
fn root_equals_the_root_commit_gives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir);
    for h in 1..=4 {
        let mut ws = s.working_set();
        block(&mut ws, h);
        let early = ws.root(h).expect("root");
        // Asking twice is stable, and changes after `root` are reflected later.
        assert_eq!(ws.root(h).expect("root again"), early);
        ws.put_meta(b"late", &h.to_be_bytes());
        let late = ws.root(h).expect("root after a late write");
        assert_ne!(late, early, "a late write must change the root");
        let committed = ws.commit(h).expect("commit");
        assert_eq!(committed, late);
        assert_eq!(s.root().expect("store root"), committed);
    }
}

#[test]
fn root_then_rollback_matches_commit_of_the_rolled_back_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir);
    let mut ws = s.working_set();
    let d = ws.mkdir(ROOT_INO, b"a", 1).expect("mkdir");
    let sp = ws.savepoint();
    ws.create_file(d, b"x", 1).expect("create");
    let with_x = ws.root(1).expect("root with x");
    ws.rollback_to(sp).expect("rollback");
    let without_x = ws.root(1).expect("root without x");
    assert_ne!(with_x, without_x);
    assert_eq!(ws.commit(1).expect("commit"), without_x);

    // A fresh store given the same final state agrees.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let s2 = store(&dir2);
    let mut ws2 = s2.working_set();
    ws2.mkdir(ROOT_INO, b"a", 1).expect("mkdir");
    assert_eq!(ws2.commit(1).expect("commit"), without_x);
}

#[test]
fn dropping_after_root_or_prepare_leaves_no_trace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir);
    let root0 = s.root().expect("root");
    {
        let mut ws = s.working_set();
        block(&mut ws, 1);
        ws.root(1).expect("root");
    }
    {
        let mut ws = s.working_set();
        block(&mut ws, 1);
        let prepared = ws.prepare_commit(1).expect("prepare");
        assert_eq!(prepared.height(), 1);
        assert_ne!(prepared.root(), root0);
    }
    assert_eq!(s.latest_height(), 0);
    assert_eq!(s.root().expect("root"), root0);
    drop(s);
    let s = store(&dir);
    assert_eq!(s.latest_height(), 0);
    assert_eq!(s.root().expect("root after reopen"), root0);
    assert!(s.latest().readdir(ROOT_INO).expect("readdir").is_empty());
    assert!(s.at(1).is_err(), "height 1 was never written");
}

#[test]
fn prepared_commit_writes_at_write_and_refuses_when_stale() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir);
    let mut a = s.working_set();
    block(&mut a, 1);
    let mut b = s.working_set();
    b.put_meta(b"other", b"1");
    let prepared = a.prepare_commit(1).expect("prepare");
    let root = prepared.root();
    assert_eq!(s.latest_height(), 0, "prepare writes nothing");
    assert_eq!(prepared.write().expect("write"), root);
    assert_eq!(s.latest_height(), 1);
    assert_eq!(s.root().expect("root"), root);
    // `b` was prepared on height 0, which is no longer the latest.
    let stale = b.prepare_commit(1);
    assert!(
        stale.is_err(),
        "a working set on a superseded base must not prepare"
    );
    drop(s);
    let s = store(&dir);
    assert_eq!((s.latest_height(), s.root().expect("root")), (1, root));
}
