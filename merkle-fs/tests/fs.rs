//! Behaviour of the store, working sets and proofs on concrete scenarios.

use merkle_fs::proof::{self, PathOutcome, ProofError};
use merkle_fs::{Error, FileKind, FsRead, Limits, Store, StoreOptions, CHUNK_SIZE, ROOT_INO};

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

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn writes_are_visible_in_the_working_set_and_after_commit_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir);
    let genesis = s.root().expect("root");
    let mut ws = s.working_set();
    let d = ws.mkdir(ROOT_INO, b"etc", 10).expect("mkdir");
    let f = ws.create_file(d, b"motd", 11).expect("create");
    let data = pattern(3 * CHUNK_SIZE as usize + 17, 1);
    assert_eq!(ws.write(f, 0, &data, 12).expect("write"), data.len());
    assert_eq!(ws.read_path(b"/etc/motd").expect("read own write"), data);
    let root1 = ws.commit(1).expect("commit");
    assert_ne!(root1, genesis);
    drop(s);
    let s = store(&dir);
    assert_eq!(s.latest_height(), 1);
    assert_eq!(s.root().expect("root"), root1);
    assert_eq!(
        s.latest()
            .read_path(b"etc/motd")
            .expect("read after reopen"),
        data
    );
    let attr = s.latest().getattr(f).expect("getattr");
    assert_eq!(
        (attr.kind, attr.size, attr.nlink, attr.mtime_ns),
        (FileKind::Regular, data.len() as u64, 1, 12)
    );
    // Height 0 still shows the empty root.
    assert!(s
        .at(0)
        .expect("height 0")
        .readdir(ROOT_INO)
        .expect("readdir")
        .is_empty());
}

#[test]
fn discarded_working_set_leaves_no_trace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir);
    let root = s.root().expect("root");
    {
        let mut ws = s.working_set();
        ws.create_file(ROOT_INO, b"x", 1).expect("create");
    }
    assert_eq!(s.root().expect("root"), root);
    let mut ws = s.working_set();
    assert!(ws.lookup(ROOT_INO, b"x").is_err());
    assert_eq!(
        ws.create_file(ROOT_INO, b"y", 1).expect("create"),
        2,
        "ino 2 was never committed"
    );
}

#[test]
fn nested_savepoints_roll_back_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir);
    let mut ws = s.working_set();
    let a = ws.create_file(ROOT_INO, b"a", 1).expect("create a");
    let sp1 = ws.savepoint();
    ws.write(a, 0, b"one", 2).expect("write");
    let sp2 = ws.savepoint();
    let b = ws.create_file(ROOT_INO, b"b", 3).expect("create b");
    ws.write(b, 0, b"two", 3).expect("write b");
    ws.rollback_to(sp2).expect("rollback sp2");
    assert!(ws.lookup(ROOT_INO, b"b").is_err());
    assert_eq!(ws.read_path(b"a").expect("a"), b"one");
    ws.rollback_to(sp1).expect("rollback sp1");
    assert_eq!(ws.read_path(b"a").expect("a"), b"");
    assert!(matches!(
        ws.rollback_to(sp2),
        Err(Error::UnknownSavepoint(_))
    ));
    // The allocator rolled back too: the next inode is the lowest free one again.
    assert_eq!(ws.create_file(ROOT_INO, b"c", 4).expect("create c"), a + 1);
    ws.release_savepoint(sp1).expect("release");
    assert_eq!(ws.usage().inodes, 3);
}

#[test]
fn unlinked_open_file_survives_until_release() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir);
    let mut ws = s.working_set();
    let f = ws.create_file(ROOT_INO, b"tmp", 1).expect("create");
    ws.write(f, 0, b"still here", 1).expect("write");
    ws.retain(f).expect("retain");
    ws.unlink(ROOT_INO, b"tmp", 2).expect("unlink");
    ws.commit(1).expect("commit");
    let mut ws = s.working_set();
    let mut buf = [0u8; 10];
    assert_eq!(ws.read(f, 0, &mut buf).expect("read unlinked"), 10);
    assert_eq!(&buf, b"still here");
    ws.release(f).expect("release");
    assert!(matches!(ws.getattr(f), Err(Error::NotFound(_))));
    assert_eq!(ws.usage().bytes, 0);
}

#[test]
fn posix_rename_and_remove_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir);
    let mut ws = s.working_set();
    let a = ws.mkdir(ROOT_INO, b"a", 1).expect("mkdir a");
    let b = ws.mkdir(a, b"b", 1).expect("mkdir b");
    let f = ws.create_file(ROOT_INO, b"f", 1).expect("create f");
    assert!(matches!(
        ws.rename(ROOT_INO, b"a", b, b"x", 2),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        ws.rename(ROOT_INO, b"a", a, b"x", 2),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        ws.rename(ROOT_INO, b"f", a, b"b", 2),
        Err(Error::IsDir(_))
    ));
    assert!(matches!(
        ws.rename(a, b"b", ROOT_INO, b"f", 2),
        Err(Error::NotDir(_))
    ));
    assert!(matches!(
        ws.rmdir(ROOT_INO, b"a", 2),
        Err(Error::NotEmpty(_))
    ));
    assert!(matches!(ws.unlink(ROOT_INO, b"a", 2), Err(Error::IsDir(_))));
    assert!(matches!(ws.rmdir(ROOT_INO, b"f", 2), Err(Error::NotDir(_))));
    assert!(matches!(
        ws.link(a, ROOT_INO, b"l", 2),
        Err(Error::NotPermitted(_))
    ));
    ws.link(f, a, b"g", 3).expect("link");
    assert_eq!(ws.getattr(f).expect("attr").nlink, 2);
    // Renaming onto another name of the same inode is a no-op.
    ws.rename(ROOT_INO, b"f", a, b"g", 4)
        .expect("rename onto own link");
    assert_eq!(ws.getattr(f).expect("attr").nlink, 2);
    ws.rename(a, b"b", ROOT_INO, b"b2", 5).expect("move dir up");
    assert_eq!(ws.getattr(a).expect("a").nlink, 2);
    assert_eq!(ws.getattr(ROOT_INO).expect("root").nlink, 4);
    let names: Vec<Vec<u8>> = ws
        .readdir(ROOT_INO)
        .expect("readdir")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec![b"a".to_vec(), b"b2".to_vec(), b"f".to_vec()]);
    assert!(matches!(
        ws.create_file(ROOT_INO, b"a/b", 6),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        ws.create_file(ROOT_INO, &[b'n'; 256], 6),
        Err(Error::NameTooLong { .. })
    ));
}

#[test]
fn limits_refuse_without_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open_with(
        dir.path(),
        StoreOptions {
            sync: false,
            limits: Limits {
                max_file_size: 100,
                max_total_bytes: 150,
                max_inodes: 3,
            },
            ..StoreOptions::default()
        },
    )
    .expect("open");
    let mut ws = s.working_set();
    let f = ws.create_file(ROOT_INO, b"f", 1).expect("create");
    assert!(matches!(
        ws.write(f, 90, &[1; 20], 2),
        Err(Error::FileTooBig { .. })
    ));
    assert_eq!(ws.getattr(f).expect("attr").size, 0);
    ws.write(f, 0, &[1; 100], 2).expect("write");
    let g = ws.create_file(ROOT_INO, b"g", 3).expect("create g");
    assert!(matches!(ws.set_size(g, 60, 4), Err(Error::NoSpace(_))));
    assert!(matches!(
        ws.create_file(ROOT_INO, b"h", 5),
        Err(Error::NoSpace(_))
    ));
}

#[test]
fn sparse_writes_and_truncation_keep_zeros() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir);
    let mut ws = s.working_set();
    let f = ws.create_file(ROOT_INO, b"f", 1).expect("create");
    let far = 2 * CHUNK_SIZE + 100;
    ws.write(f, far, b"end", 2).expect("write past end");
    let content = ws.read_path(b"f").expect("read");
    assert_eq!(content.len() as u64, far + 3);
    assert!(content[..far as usize].iter().all(|&b| b == 0));
    ws.set_size(f, 5, 3).expect("truncate");
    ws.set_size(f, CHUNK_SIZE + 1, 4).expect("extend");
    assert_eq!(
        ws.read_path(b"f").expect("read"),
        vec![0u8; CHUNK_SIZE as usize + 1]
    );
}

#[test]
fn proofs_verify_against_the_root_and_reject_tampering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir);
    let mut ws = s.working_set();
    let d = ws.mkdir(ROOT_INO, b"data", 1).expect("mkdir");
    let f = ws.create_file(d, b"big", 1).expect("create");
    let data = pattern(5 * CHUNK_SIZE as usize + 9, 7);
    ws.write(f, 0, &data, 1).expect("write");
    ws.symlink(d, b"link", b"big", 1).expect("symlink");
    ws.create_file(d, b"empty", 1).expect("create empty");
    let root = ws.commit(1).expect("commit");

    // A byte range spanning three chunks.
    let (off, len) = (CHUNK_SIZE - 10, 2 * CHUNK_SIZE);
    let p = s
        .prove_file_range(1, b"/data/big", off, len)
        .expect("prove range");
    let got = proof::verify_file_range(&root, b"/data/big", off, len, &p).expect("verify range");
    assert_eq!(got, &data[off as usize..(off + len) as usize]);
    // Whole file, and a range past the end.
    let p = s
        .prove_file_range(1, b"data/big", 0, u64::MAX)
        .expect("prove whole");
    assert_eq!(
        proof::verify_file_range(&root, b"data/big", 0, u64::MAX, &p).expect("verify whole"),
        data
    );
    let bytes = borsh::to_vec(&p).expect("serialize");
    let p2: proof::FileRangeProof = borsh::from_slice(&bytes).expect("deserialize");
    assert_eq!(p2, p);

    // Tampered content, wrong root, wrong path, or wrong range are all rejected.
    let mut bad = p.clone();
    if let Some(v) = bad.chunks[2].value.as_mut() {
        v[0] ^= 1;
    }
    assert!(matches!(
        proof::verify_file_range(&root, b"data/big", 0, u64::MAX, &bad),
        Err(ProofError::Mismatch { .. })
    ));
    let mut other_root = root;
    other_root[0] ^= 1;
    assert!(proof::verify_file_range(&other_root, b"data/big", 0, u64::MAX, &p).is_err());
    assert!(proof::verify_file_range(&root, b"data/bog", 0, u64::MAX, &p).is_err());
    assert!(proof::verify_file_range(&root, b"data/big", 0, 10, &p).is_err());

    // Absence: a missing name, a missing directory, and a path through a file.
    for missing in [&b"/data/nope"[..], b"/nope/x", b"/data/big/x"] {
        let p = s.prove_path(1, missing).expect("prove absence");
        proof::verify_absent(&root, missing, &p).expect("verify absence");
    }
    let p = s.prove_path(1, b"/data/big").expect("prove presence");
    assert_eq!(
        proof::verify_path(&root, b"/data/big", &p).expect("verify"),
        PathOutcome::Found {
            ino: f,
            kind: FileKind::Regular
        }
    );
    assert!(proof::verify_absent(&root, b"/data/big", &p).is_err());

    // Complete listing; dropping an entry is caught.
    let p = s.prove_listing(1, b"/data").expect("prove listing");
    let entries = proof::verify_listing(&root, b"/data", &p).expect("verify listing");
    let names: Vec<&[u8]> = entries.iter().map(|e| e.name.as_slice()).collect();
    assert_eq!(names, vec![&b"big"[..], b"empty", b"link"]);
    let mut short = p.clone();
    short.entries.pop();
    assert!(proof::verify_listing(&root, b"/data", &short).is_err());
    let mut forged = p.clone();
    forged.entries[0].0 = b"bag".to_vec();
    assert!(proof::verify_listing(&root, b"/data", &forged).is_err());
    let p = s.prove_listing(1, b"/").expect("prove root listing");
    assert_eq!(
        proof::verify_listing(&root, b"/", &p)
            .expect("root listing")
            .len(),
        1
    );
}

#[test]
fn old_heights_stay_readable_until_pruned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir);
    let mut roots = vec![s.root().expect("root")];
    for h in 1..=5u64 {
        roots.push(write_version(&s, h));
    }
    for h in 1..=5u64 {
        assert_eq!(
            s.at(h).expect("at").read_path(b"f").expect("read"),
            format!("version {h}").as_bytes()
        );
        assert_eq!(s.root_at(h).expect("root"), roots[h as usize]);
    }
    let removed = s.prune(4).expect("prune");
    assert!(removed > 0, "pruning must delete stale records");
    assert!(matches!(s.at(3), Err(Error::HeightNotRetained { .. })));
    for h in 4..=5u64 {
        assert_eq!(
            s.at(h).expect("at").read_path(b"f").expect("read"),
            format!("version {h}").as_bytes()
        );
        let p = s
            .prove_file_range(h, b"f", 0, 100)
            .expect("prove after prune");
        assert_eq!(
            proof::verify_file_range(&roots[h as usize], b"f", 0, 100, &p)
                .expect("verify after prune"),
            format!("version {h}").as_bytes()
        );
    }
}

/// Commits height `h`: file `f` (created if missing) holds "version h".
fn write_version(s: &Store, h: u64) -> merkle_fs::Root {
    let mut ws = s.working_set();
    let f = match ws.lookup(ROOT_INO, b"f") {
        Ok(f) => f,
        Err(_) => ws.create_file(ROOT_INO, b"f", h).expect("create"),
    };
    ws.write(f, 0, format!("version {h}").as_bytes(), h)
        .expect("write");
    ws.commit(h).expect("commit")
}

#[test]
fn pruning_every_block_equals_one_big_prune_and_repeats_are_no_ops() {
    let write_blocks = |s: &Store, from: u64, to: u64| {
        for h in from..=to {
            write_version(s, h);
        }
    };
    let (step_dir, once_dir) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let (step, once) = (store(&step_dir), store(&once_dir));
    let mut removed_stepwise = 0;
    for h in 1..=12u64 {
        write_blocks(&step, h, h);
        if h > 3 {
            removed_stepwise += step.prune(h - 2).expect("prune");
            assert_eq!(
                step.prune(h - 2).expect("repeat"),
                0,
                "a repeated prune removes nothing"
            );
            assert_eq!(
                step.prune(1).expect("lower"),
                0,
                "a lower retain removes nothing"
            );
        }
    }
    write_blocks(&once, 1, 12);
    once.prune(10).expect("prune");
    assert!(removed_stepwise > 0);
    assert_eq!(step.retained_height(), once.retained_height());
    assert!(matches!(step.at(9), Err(Error::HeightNotRetained { .. })));
    for h in 10..=12u64 {
        assert_eq!(
            step.root_at(h).expect("root"),
            once.root_at(h).expect("root")
        );
        assert_eq!(
            step.at(h).expect("at").read_path(b"f").expect("read"),
            format!("version {h}").as_bytes()
        );
    }
    // Per-block prunes leave exactly the records one prune leaves (the removal
    // counts differ: one prune counts a version once per superseding entry).
    drop((step, once));
    assert_eq!(records(step_dir.path()), records(once_dir.path()));
}

/// Every (column family, key, value) left in a closed store's database.
fn records(path: &std::path::Path) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let opts = rocksdb::Options::default();
    let cfs = rocksdb::DB::list_cf(&opts, path).expect("list column families");
    let db = rocksdb::DB::open_cf_for_read_only(&opts, path, &cfs, false).expect("open");
    let mut out = Vec::new();
    for name in &cfs {
        let cf = db.cf_handle(name).expect("column family");
        for item in db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (k, v) = item.expect("record");
            out.push((name.clone(), k.to_vec(), v.to_vec()));
        }
    }
    out
}

#[test]
fn node_state_is_committed_under_the_same_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir);
    let before = s.root().expect("root");
    let mut ws = s.working_set();
    ws.put_meta(b"proc/1", b"pid one");
    ws.put_meta(b"proc/2", b"pid two");
    ws.put_meta(b"procx", b"other");
    ws.delete_meta(b"proc/2");
    let listed = ws.list_meta(b"proc/").expect("list");
    assert_eq!(listed, vec![(b"proc/1".to_vec(), b"pid one".to_vec())]);
    let root = ws.commit(1).expect("commit");
    assert_ne!(root, before);
    let ws = s.working_set();
    assert_eq!(
        ws.get_meta(b"proc/1").expect("get").as_deref(),
        Some(&b"pid one"[..])
    );
    assert_eq!(ws.list_meta(b"proc").expect("list").len(), 2);
}

#[test]
fn commits_must_be_consecutive_and_fresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir);
    let ws = s.working_set();
    assert!(matches!(
        ws.commit(0),
        Err(Error::HeightOutOfOrder {
            expected: 1,
            got: 0
        })
    ));
    let a = s.working_set();
    let b = s.working_set();
    a.commit(1).expect("first");
    assert!(matches!(
        b.commit(2),
        Err(Error::StaleWorkingSet { base: 0, latest: 1 })
    ));
    // An empty block keeps the root and is still a height.
    let r1 = s.root().expect("root");
    assert_eq!(s.working_set().commit(2).expect("empty block"), r1);
    assert_eq!(s.latest_height(), 2);
}

#[test]
fn corrupted_chunk_is_reported_with_inode_and_height_not_returned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = {
        let s = store(&dir);
        let mut ws = s.working_set();
        let f = ws.create_file(ROOT_INO, b"victim", 1).expect("create");
        ws.write(f, 0, &pattern(2 * CHUNK_SIZE as usize + 5, 3), 1)
            .expect("write");
        ws.commit(1).expect("commit");
        s.compact().expect("flush");
        f
    };
    {
        // Flip one byte of the chunk's stored value directly in RocksDB.
        let cfs = ["nodes", "values", "stale", "roots", "state"];
        let db =
            rocksdb::DB::open_cf(&rocksdb::Options::default(), dir.path(), cfs).expect("raw open");
        let cf = db.cf_handle("values").expect("values cf");
        let mut key = merkle_fs::keys::chunk(f, 0);
        key.extend_from_slice(&1u64.to_be_bytes());
        let mut v = db
            .get_cf(&cf, &key)
            .expect("get")
            .expect("chunk entry present");
        let last = v.len() - 1;
        v[last] ^= 0x40;
        db.put_cf(&cf, &key, v).expect("corrupt");
    }
    let s = store(&dir);
    let err = s
        .latest()
        .read_path(b"victim")
        .expect_err("corruption must not be returned as content");
    let msg = err.to_string();
    assert!(matches!(err, Error::Corrupt { height: 1, .. }), "{msg}");
    assert!(msg.contains(&format!("chunk 0 of file inode {f}")), "{msg}");
    // Proof generation refuses too.
    assert!(s.prove_file_range(1, b"victim", 0, 10).is_err());
}

#[test]
fn small_files_are_inline_and_move_to_chunks_when_they_grow() {
    let small = pattern(100, 1);
    let mut big = small.clone();
    big.resize(merkle_fs::INLINE_MAX as usize + 1000, 9);
    // History A: write 100 bytes.
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir);
    let mut ws = s.working_set();
    let f = ws.create_file(ROOT_INO, b"f", 1).expect("create");
    ws.write(f, 0, &small, 1).expect("small write");
    let small_root = ws.commit(1).expect("commit");
    // History B: grow past the inline limit (chunked), then shrink back.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let s2 = store(&dir2);
    let mut ws = s2.working_set();
    let f = ws.create_file(ROOT_INO, b"f", 1).expect("create");
    ws.write(f, 0, &big, 1).expect("grow");
    assert_eq!(ws.read_path(b"f").expect("read grown"), big);
    let grown_root = {
        let mut probe = s2.working_set();
        let g = probe.create_file(ROOT_INO, b"f", 1).expect("create");
        probe.write(g, 0, &big, 1).expect("grow");
        probe.commit(1).expect("commit grown")
    };
    assert_ne!(grown_root, small_root);
    let mut ws = s2.working_set();
    ws.set_size(f, 100, 1).expect("shrink");
    assert_eq!(ws.read_path(b"f").expect("read shrunk"), small);
    assert_eq!(
        ws.commit(2).expect("commit"),
        small_root,
        "inline/chunked representation must follow the size only"
    );
}

/// rmdir then a rollback that brings the directory back: its listing (changed before
/// the savepoint) is still resealed at commit, so its listing proof verifies.
#[test]
fn rollback_of_rmdir_reseals_the_restored_listing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir);
    let mut ws = s.working_set();
    let d = ws.mkdir(ROOT_INO, b"d", 1).expect("mkdir");
    ws.create_file(d, b"f", 1).expect("create");
    ws.commit(1).expect("commit 1");
    let mut ws = s.working_set();
    ws.unlink(d, b"f", 2).expect("unlink");
    let sp = ws.savepoint();
    ws.rmdir(ROOT_INO, b"d", 2).expect("rmdir");
    ws.rollback_to(sp).expect("rollback");
    let root = ws.commit(2).expect("commit 2");
    let p = s.prove_listing(2, b"/d").expect("prove listing");
    let entries = proof::verify_listing(&root, b"/d", &p).expect("listing verifies");
    assert!(entries.is_empty());
}

/// A chain may start at any initial height: the first commit of an empty store
/// may be at any height from 1, which then is the oldest readable one; every
/// later commit follows the last.
#[test]
fn an_empty_store_may_start_at_any_height_then_commits_are_consecutive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir);
    s.working_set().commit(100).expect("first commit at 100");
    assert_eq!((s.latest_height(), s.retained_height()), (100, 100));
    assert!(matches!(
        s.at(99),
        Err(Error::HeightNotRetained { height: 99, .. })
    ));
    assert!(matches!(
        s.working_set().commit(102),
        Err(Error::HeightOutOfOrder {
            expected: 101,
            got: 102
        })
    ));
    s.working_set().commit(101).expect("then 101");
    drop(s);
    let s = store(&dir);
    assert_eq!((s.latest_height(), s.retained_height()), (101, 100));
}
