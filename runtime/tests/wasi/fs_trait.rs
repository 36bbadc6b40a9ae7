//! The `FileSystem` contract at the Rust level: limits, POSIX rename/unlink rules,
//! savepoints, digest. Every test runs on a fresh filesystem from `crate::backend`,
//! so the same tests check `MemFs` (runtime/tests/wasi) and the merkle-fs adapter
//! (abci-app/tests/fs_conformance.rs).

use replicode_runtime::errno::Errno;
use replicode_runtime::fs::{FileKind, FileSystem, FsLimits, Ino, ROOT_INO};

fn fs() -> Box<dyn FileSystem> {
    crate::backend::new_fs(FsLimits::default(), 0, |_| {})
}

fn small(max_file_size: u64, max_total_bytes: u64, max_inodes: u64) -> Box<dyn FileSystem> {
    let limits = FsLimits {
        max_file_size,
        max_total_bytes,
        max_inodes,
    };
    crate::backend::new_fs(limits, 0, |_| {})
}

fn contents(fs: &dyn FileSystem, ino: Ino) -> Vec<u8> {
    let size = fs.getattr(ino).expect("getattr").size;
    let mut buf = vec![0u8; size as usize];
    let n = fs.read(ino, 0, &mut buf).expect("read");
    buf.truncate(n);
    buf
}

#[test]
fn write_read_and_sparse_extension() {
    let mut fs = fs();
    let f = fs.create_file(ROOT_INO, b"f", 5).expect("create");
    assert_eq!(fs.write(f, 0, b"hello", 6), Ok(5));
    assert_eq!(fs.write(f, 8, b"!", 7), Ok(1));
    assert_eq!(contents(&*fs, f), b"hello\0\0\0!");
    let attr = fs.getattr(f).expect("getattr");
    assert_eq!((attr.size, attr.mtime_ns, attr.atime_ns), (9, 7, 5));
    let mut buf = [0u8; 4];
    assert_eq!(fs.read(f, 100, &mut buf), Ok(0));
    assert_eq!(fs.usage().bytes, 9);
}

#[test]
fn limits_give_short_writes_then_errors_without_side_effects() {
    let mut fs = small(10, 15, 3);
    let f = fs.create_file(ROOT_INO, b"f", 0).expect("create");
    // File size limit: a short write up to the limit, then EFBIG.
    assert_eq!(fs.write(f, 0, &[1; 11], 0), Ok(10));
    assert_eq!(fs.write(f, 10, &[1; 1], 0), Err(Errno::Fbig));
    assert_eq!(
        fs.write(f, 2, &[3; 4], 0),
        Ok(4),
        "overwriting needs no room"
    );
    // Quota: 5 bytes left, so a short write of 5, then ENOSPC.
    let g = fs.create_file(ROOT_INO, b"g", 0).expect("create");
    assert_eq!(fs.write(g, 0, &[2; 6], 0), Ok(5));
    assert_eq!(fs.write(g, 5, &[2; 1], 0), Err(Errno::Nospc));
    assert_eq!(fs.getattr(g).map(|a| a.size), Ok(5));
    assert_eq!(fs.set_size(g, 6, 0), Err(Errno::Nospc));
    assert_eq!(fs.set_size(g, u64::MAX, 0), Err(Errno::Fbig));
    assert_eq!(fs.write(g, u64::MAX - 1, b"ab", 0), Err(Errno::Fbig));
    // Holes count against the quota too.
    fs.set_size(g, 0, 0).expect("truncate");
    assert_eq!(fs.write(g, 7, b"abc", 0), Err(Errno::Nospc));
    assert_eq!(fs.write(g, 3, b"abc", 0), Ok(2));
    assert_eq!(
        fs.create_file(ROOT_INO, b"h", 0),
        Err(Errno::Nospc),
        "inode limit"
    );
    assert_eq!(fs.usage().bytes, 15);
    assert_eq!(fs.usage().inodes, 3);
    // Freeing space makes room again.
    fs.set_size(f, 0, 0).expect("truncate");
    assert_eq!(
        fs.write(g, 5, &[2; 10], 0),
        Ok(5),
        "g is capped at 10 bytes"
    );
}

#[test]
fn lowest_free_inode_is_reused() {
    let mut fs = fs();
    let a = fs.create_file(ROOT_INO, b"a", 0).expect("a");
    let b = fs.create_file(ROOT_INO, b"b", 0).expect("b");
    let c = fs.mkdir(ROOT_INO, b"c", 0).expect("c");
    assert_eq!((a, b, c), (2, 3, 4));
    fs.unlink(ROOT_INO, b"a", 0).expect("unlink");
    fs.unlink(ROOT_INO, b"b", 0).expect("unlink");
    assert_eq!(fs.create_file(ROOT_INO, b"x", 0), Ok(2));
    assert_eq!(fs.symlink(ROOT_INO, b"y", b"x", 0), Ok(3));
    assert_eq!(fs.create_file(ROOT_INO, b"z", 0), Ok(5));
}

#[test]
fn names_are_validated() {
    let mut fs = fs();
    assert_eq!(
        fs.create_file(ROOT_INO, &[b'n'; 256], 0),
        Err(Errno::Nametoolong)
    );
    assert_eq!(fs.create_file(ROOT_INO, b"a/b", 0), Err(Errno::Inval));
    assert_eq!(fs.mkdir(ROOT_INO, b"..", 0), Err(Errno::Inval));
    assert_eq!(fs.create_file(ROOT_INO, b"", 0), Err(Errno::Inval));
    fs.create_file(ROOT_INO, &[b'n'; 255], 0)
        .expect("255 bytes is fine");
    assert_eq!(fs.create_file(ROOT_INO, &[b'n'; 255], 0), Err(Errno::Exist));
    assert_eq!(fs.lookup(ROOT_INO, &[b'n'; 300]), Err(Errno::Nametoolong));
}

#[test]
fn unlink_while_open_keeps_data_until_release() {
    let mut fs = fs();
    let f = fs.create_file(ROOT_INO, b"f", 0).expect("create");
    fs.write(f, 0, b"data", 0).expect("write");
    fs.retain(f).expect("retain");
    fs.unlink(ROOT_INO, b"f", 1).expect("unlink");
    assert_eq!(fs.lookup(ROOT_INO, b"f"), Err(Errno::Noent));
    assert_eq!(fs.getattr(f).map(|a| a.nlink), Ok(0));
    assert_eq!(contents(&*fs, f), b"data");
    fs.write(f, 4, b"+", 2).expect("write to unlinked file");
    assert_eq!(fs.usage().inodes, 2);
    fs.release(f).expect("release");
    assert_eq!(fs.getattr(f), Err(Errno::Noent));
    assert_eq!(fs.usage().inodes, 1);
    assert_eq!(fs.usage().bytes, 0);
    assert_eq!(fs.release(f), Err(Errno::Noent));
}

#[test]
fn hard_links_share_the_inode_and_directories_cannot_be_linked() {
    let mut fs = fs();
    let f = fs.create_file(ROOT_INO, b"f", 0).expect("create");
    let d = fs.mkdir(ROOT_INO, b"d", 0).expect("mkdir");
    fs.link(f, d, b"g", 1).expect("link");
    assert_eq!(fs.getattr(f).map(|a| a.nlink), Ok(2));
    assert_eq!(fs.link(d, ROOT_INO, b"d2", 1), Err(Errno::Perm));
    assert_eq!(fs.link(f, ROOT_INO, b"d", 1), Err(Errno::Exist));
    fs.unlink(ROOT_INO, b"f", 2).expect("unlink");
    assert_eq!(fs.lookup(d, b"g"), Ok(f));
    assert_eq!(fs.unlink(ROOT_INO, b"d", 2), Err(Errno::Isdir));
}

#[test]
fn rmdir_rules() {
    let mut fs = fs();
    let d = fs.mkdir(ROOT_INO, b"d", 0).expect("mkdir");
    fs.create_file(d, b"f", 0).expect("create");
    assert_eq!(fs.getattr(ROOT_INO).map(|a| a.nlink), Ok(3));
    assert_eq!(fs.rmdir(ROOT_INO, b"d", 0), Err(Errno::Notempty));
    assert_eq!(fs.rmdir(d, b"f", 0), Err(Errno::Notdir));
    fs.unlink(d, b"f", 0).expect("unlink");
    fs.retain(d).expect("open dir");
    fs.rmdir(ROOT_INO, b"d", 0).expect("rmdir");
    assert_eq!(fs.getattr(ROOT_INO).map(|a| a.nlink), Ok(2));
    // An open, removed directory accepts no new names.
    assert_eq!(fs.create_file(d, b"g", 0), Err(Errno::Noent));
    assert_eq!(fs.readdir(d).map(|e| e.len()), Ok(0));
    fs.release(d).expect("release");
    assert_eq!(fs.getattr(d), Err(Errno::Noent));
}

#[test]
fn rename_follows_posix_replace_rules() {
    let mut fs = fs();
    let a = fs.mkdir(ROOT_INO, b"a", 0).expect("a");
    let b = fs.mkdir(a, b"b", 0).expect("a/b");
    let f = fs.create_file(ROOT_INO, b"f", 0).expect("f");
    let g = fs.create_file(ROOT_INO, b"g", 0).expect("g");
    let empty = fs.mkdir(ROOT_INO, b"empty", 0).expect("empty");
    assert_eq!(fs.rename(ROOT_INO, b"a", b, b"x", 1), Err(Errno::Inval));
    assert_eq!(fs.rename(ROOT_INO, b"a", a, b"x", 1), Err(Errno::Inval));
    assert_eq!(
        fs.rename(ROOT_INO, b"f", ROOT_INO, b"a", 1),
        Err(Errno::Isdir)
    );
    assert_eq!(
        fs.rename(ROOT_INO, b"empty", ROOT_INO, b"f", 1),
        Err(Errno::Notdir)
    );
    assert_eq!(
        fs.rename(ROOT_INO, b"empty", ROOT_INO, b"a", 1),
        Err(Errno::Notempty)
    );
    assert_eq!(
        fs.rename(ROOT_INO, b"nope", ROOT_INO, b"x", 1),
        Err(Errno::Noent)
    );
    // File over file: the old target is freed.
    fs.rename(ROOT_INO, b"f", ROOT_INO, b"g", 2)
        .expect("f -> g");
    assert_eq!(fs.lookup(ROOT_INO, b"g"), Ok(f));
    assert_eq!(fs.getattr(g), Err(Errno::Noent));
    // Directory over empty directory, across parents: link counts follow.
    fs.rename(a, b"b", ROOT_INO, b"empty", 3)
        .expect("a/b -> empty");
    assert_eq!(fs.getattr(empty), Err(Errno::Noent));
    assert_eq!(fs.getattr(a).map(|x| x.nlink), Ok(2));
    assert_eq!(fs.getattr(ROOT_INO).map(|x| x.nlink), Ok(4));
    // Same inode under two names: no-op.
    fs.link(f, ROOT_INO, b"h", 4).expect("link");
    fs.rename(ROOT_INO, b"g", ROOT_INO, b"h", 5).expect("no-op");
    assert_eq!(fs.lookup(ROOT_INO, b"g"), Ok(f));
    assert_eq!(fs.getattr(f).map(|x| x.kind), Ok(FileKind::Regular));
}

#[test]
fn savepoint_rollback_restores_everything() {
    let mut fs = fs();
    let f = fs.create_file(ROOT_INO, b"f", 1).expect("create");
    fs.write(f, 0, b"0123456789", 1).expect("write");
    let d = fs.mkdir(ROOT_INO, b"d", 1).expect("mkdir");
    let before = fs.digest();
    let usage = fs.usage();

    let sp = fs.savepoint();
    fs.write(f, 2, b"ab", 2).expect("overwrite");
    fs.write(f, 20, b"tail", 2).expect("extend");
    fs.set_size(f, 3, 2).expect("truncate");
    fs.create_file(d, b"new", 2).expect("create");
    fs.rename(ROOT_INO, b"f", d, b"moved", 2).expect("rename");
    fs.set_times(d, Some(9), Some(9), 3).expect("times");
    let g = fs.create_file(ROOT_INO, b"g", 3).expect("g");
    fs.retain(g).expect("retain");
    fs.unlink(ROOT_INO, b"g", 3).expect("unlink");
    fs.release(g).expect("release frees g");
    fs.rmdir(ROOT_INO, b"d", 3).expect_err("d is not empty");
    assert_ne!(fs.digest(), before);

    fs.rollback_to(sp);
    assert_eq!(fs.digest(), before);
    assert_eq!(fs.usage(), usage);
    assert_eq!(contents(&*fs, f), b"0123456789");
    assert_eq!(fs.lookup(ROOT_INO, b"f"), Ok(f));
    assert_eq!(fs.readdir(d).map(|e| e.len()), Ok(0));
    // The lowest free inode after rollback is the same as before the savepoint.
    assert_eq!(fs.create_file(ROOT_INO, b"again", 4), Ok(4));
}

#[test]
fn nested_savepoints_release_and_rollback() {
    let mut fs = fs();
    let outer = fs.savepoint();
    fs.create_file(ROOT_INO, b"a", 0).expect("a");
    let inner = fs.savepoint();
    fs.create_file(ROOT_INO, b"b", 0).expect("b");
    fs.release_savepoint(inner);
    let inner2 = fs.savepoint();
    fs.create_file(ROOT_INO, b"c", 0).expect("c");
    fs.rollback_to(inner2);
    assert_eq!(fs.lookup(ROOT_INO, b"c"), Err(Errno::Noent));
    assert!(
        fs.lookup(ROOT_INO, b"b").is_ok(),
        "released savepoint keeps b"
    );
    fs.rollback_to(outer);
    assert_eq!(fs.readdir(ROOT_INO).map(|e| e.len()), Ok(0));
    fs.release_savepoint(outer);
    // Rolling back to a released savepoint does nothing.
    fs.create_file(ROOT_INO, b"d", 0).expect("d");
    fs.rollback_to(outer);
    assert!(fs.lookup(ROOT_INO, b"d").is_ok());
}

#[test]
fn digest_depends_on_content_not_history() {
    let mut x = fs();
    let f = x.create_file(ROOT_INO, b"f", 1).expect("f");
    x.write(f, 0, b"abc", 1).expect("write");
    let tmp = x.create_file(ROOT_INO, b"tmp", 1).expect("tmp");
    x.write(tmp, 0, b"zzz", 1).expect("write");
    x.unlink(ROOT_INO, b"tmp", 1).expect("unlink");
    x.set_times(ROOT_INO, Some(1), Some(1), 1).expect("times");

    let mut y = fs();
    let f2 = y.create_file(ROOT_INO, b"f", 1).expect("f");
    y.write(f2, 0, b"abc", 1).expect("write");
    y.set_times(ROOT_INO, Some(1), Some(1), 1).expect("times");
    assert_eq!(x.digest(), y.digest());

    y.write(f2, 0, b"abd", 1).expect("write");
    assert_ne!(x.digest(), y.digest());
}

#[test]
fn readdir_is_sorted_by_bytes() {
    let mut fs = fs();
    for name in [&b"b"[..], b"a", b"B", b"aa", b"\xff"] {
        fs.create_file(ROOT_INO, name, 0).expect("create");
    }
    let names: Vec<Vec<u8>> = fs
        .readdir(ROOT_INO)
        .expect("readdir")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(
        names,
        vec![
            b"B".to_vec(),
            b"a".to_vec(),
            b"aa".to_vec(),
            b"b".to_vec(),
            b"\xff".to_vec()
        ]
    );
}

#[test]
fn symlinks_store_targets_and_count_against_the_quota() {
    let mut fs = small(100, 5, 10);
    let l = fs.symlink(ROOT_INO, b"l", b"abc", 0).expect("symlink");
    assert_eq!(fs.readlink(l), Ok(b"abc".to_vec()));
    assert_eq!(fs.getattr(l).map(|a| a.kind), Ok(FileKind::Symlink));
    assert_eq!(fs.symlink(ROOT_INO, b"m", b"abc", 0), Err(Errno::Nospc));
    assert_eq!(fs.readlink(ROOT_INO), Err(Errno::Inval));
    assert_eq!(fs.read(l, 0, &mut [0u8; 4]), Err(Errno::Inval));
}

#[test]
fn a_short_write_inside_savepoints_rolls_back_cleanly() {
    let mut fs = small(100, 10, 10);
    let f = fs.create_file(ROOT_INO, b"f", 0).expect("create");
    fs.write(f, 0, b"abc", 0).expect("write");
    let before = fs.digest();
    let outer = fs.savepoint();
    assert_eq!(
        fs.write(f, 1, &[7; 20], 1),
        Ok(9),
        "up to the 10-byte quota"
    );
    let mut expected = b"a".to_vec();
    expected.extend([7; 9]);
    assert_eq!(contents(&*fs, f), expected);
    assert_eq!(fs.usage().bytes, 10);
    assert_eq!(fs.getattr(f).map(|a| a.mtime_ns), Ok(1));
    // Savepoints taken before and after the short write still work.
    let inner = fs.savepoint();
    fs.set_size(f, 0, 2).expect("truncate");
    fs.rollback_to(inner);
    assert_eq!(contents(&*fs, f), expected);
    assert_eq!(fs.write(f, 10, b"x", 3), Err(Errno::Nospc));
    fs.rollback_to(outer);
    assert_eq!(fs.digest(), before);
    assert_eq!(contents(&*fs, f), b"abc");
    assert_eq!(fs.usage().bytes, 3);
    fs.release_savepoint(outer);
}
