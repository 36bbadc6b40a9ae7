//! Property tests against a plain `BTreeMap` model of the filesystem: every operation
//! must give the model's result, every committed state must read back as the model,
//! and the root must depend only on the final logical state, not on the history.

use std::collections::BTreeMap;

use merkle_fs::{Error, FileKind, FsRead, Ino, Store, StoreOptions, WorkingSet, ROOT_INO};
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq)]
enum Body {
    File(Vec<u8>),
    Dir {
        entries: BTreeMap<Vec<u8>, Ino>,
        parent: Ino,
    },
    Symlink(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq)]
struct MInode {
    body: Body,
    nlink: u64,
    open: u64,
    atime: u64,
    mtime: u64,
    ctime: u64,
}

impl MInode {
    fn kind(&self) -> FileKind {
        match self.body {
            Body::File(_) => FileKind::Regular,
            Body::Dir { .. } => FileKind::Directory,
            Body::Symlink(_) => FileKind::Symlink,
        }
    }
    fn size(&self) -> u64 {
        match &self.body {
            Body::File(d) => d.len() as u64,
            Body::Dir { entries, .. } => entries.len() as u64,
            Body::Symlink(t) => t.len() as u64,
        }
    }
}

type R<T> = Result<T, &'static str>;

/// The reference: the simplest possible in-memory filesystem.
#[derive(Debug, Clone, PartialEq)]
struct Model {
    inodes: BTreeMap<Ino, MInode>,
}

fn kind_of(e: &Error) -> &'static str {
    match e {
        Error::NotFound(_) => "noent",
        Error::Exists { .. } => "exist",
        Error::NotDir(_) => "notdir",
        Error::IsDir(_) => "isdir",
        Error::NotEmpty(_) => "notempty",
        Error::NotPermitted(_) => "perm",
        Error::Invalid(_) => "inval",
        other => panic!("unexpected error in model test: {other}"),
    }
}

impl Model {
    fn new() -> Model {
        let root = MInode {
            body: Body::Dir {
                entries: BTreeMap::new(),
                parent: ROOT_INO,
            },
            nlink: 2,
            open: 0,
            atime: 0,
            mtime: 0,
            ctime: 0,
        };
        Model {
            inodes: BTreeMap::from([(ROOT_INO, root)]),
        }
    }
    fn get(&self, ino: Ino) -> R<&MInode> {
        self.inodes.get(&ino).ok_or("noent")
    }
    fn node(&mut self, ino: Ino) -> &mut MInode {
        self.inodes.get_mut(&ino).expect("model inode")
    }
    fn entries(&self, dir: Ino) -> R<&BTreeMap<Vec<u8>, Ino>> {
        match &self.get(dir)?.body {
            Body::Dir { entries, .. } => Ok(entries),
            _ => Err("notdir"),
        }
    }
    fn live_dir(&self, dir: Ino) -> R<()> {
        self.entries(dir)?;
        if self.get(dir)?.nlink == 0 {
            return Err("noent");
        }
        Ok(())
    }
    fn touch(&mut self, dir: Ino, nlink: i64, now: u64) {
        let d = self.node(dir);
        d.nlink = d.nlink.saturating_add_signed(nlink);
        d.mtime = now;
        d.ctime = now;
    }
    fn dir_entries_mut(&mut self, dir: Ino) -> &mut BTreeMap<Vec<u8>, Ino> {
        match &mut self.node(dir).body {
            Body::Dir { entries, .. } => entries,
            _ => panic!("model: not a dir"),
        }
    }
    fn alloc(&self) -> Ino {
        (1..)
            .find(|i| !self.inodes.contains_key(i))
            .expect("free ino")
    }
    fn create(&mut self, dir: Ino, name: &[u8], body: Body, now: u64) -> R<Ino> {
        self.live_dir(dir)?;
        if self.entries(dir)?.contains_key(name) {
            return Err("exist");
        }
        let is_dir = matches!(body, Body::Dir { .. });
        let ino = self.alloc();
        self.inodes.insert(
            ino,
            MInode {
                body,
                nlink: if is_dir { 2 } else { 1 },
                open: 0,
                atime: now,
                mtime: now,
                ctime: now,
            },
        );
        self.dir_entries_mut(dir).insert(name.to_vec(), ino);
        self.touch(dir, if is_dir { 1 } else { 0 }, now);
        Ok(ino)
    }
    fn drop_link(&mut self, ino: Ino, now: u64) {
        let i = self.node(ino);
        if let Body::Dir { parent, .. } = &mut i.body {
            *parent = 0;
            i.nlink = 0;
        } else {
            i.nlink -= 1;
        }
        i.ctime = now;
        if i.nlink == 0 && i.open == 0 {
            self.inodes.remove(&ino);
        }
    }
    fn link(&mut self, ino: Ino, dir: Ino, name: &[u8], now: u64) -> R<()> {
        if self.get(ino)?.kind() == FileKind::Directory {
            return Err("perm");
        }
        self.live_dir(dir)?;
        if self.entries(dir)?.contains_key(name) {
            return Err("exist");
        }
        let i = self.node(ino);
        i.nlink += 1;
        i.ctime = now;
        self.dir_entries_mut(dir).insert(name.to_vec(), ino);
        self.touch(dir, 0, now);
        Ok(())
    }
    fn unlink(&mut self, dir: Ino, name: &[u8], now: u64) -> R<()> {
        let ino = *self.entries(dir)?.get(name).ok_or("noent")?;
        if self.get(ino)?.kind() == FileKind::Directory {
            return Err("isdir");
        }
        self.dir_entries_mut(dir).remove(name);
        self.touch(dir, 0, now);
        self.drop_link(ino, now);
        Ok(())
    }
    fn rmdir(&mut self, dir: Ino, name: &[u8], now: u64) -> R<()> {
        let ino = *self.entries(dir)?.get(name).ok_or("noent")?;
        if self.get(ino)?.kind() != FileKind::Directory {
            return Err("notdir");
        }
        if self.get(ino)?.size() != 0 {
            return Err("notempty");
        }
        self.dir_entries_mut(dir).remove(name);
        self.touch(dir, -1, now);
        self.drop_link(ino, now);
        Ok(())
    }
    fn is_ancestor(&self, anc: Ino, mut dir: Ino) -> bool {
        loop {
            if dir == anc {
                return true;
            }
            if dir == ROOT_INO {
                return false;
            }
            match &self.inodes[&dir].body {
                Body::Dir { parent, .. } => dir = *parent,
                _ => return false,
            }
        }
    }
    fn rename(&mut self, fd: Ino, from: &[u8], td: Ino, to: &[u8], now: u64) -> R<()> {
        let src = *self.entries(fd)?.get(from).ok_or("noent")?;
        self.live_dir(td)?;
        let dst = self.entries(td)?.get(to).copied();
        if dst == Some(src) {
            return Ok(());
        }
        let src_dir = self.inodes[&src].kind() == FileKind::Directory;
        if src_dir && self.is_ancestor(src, td) {
            return Err("inval");
        }
        if let Some(d) = dst {
            let dst_dir = self.inodes[&d].kind() == FileKind::Directory;
            match (src_dir, dst_dir) {
                (true, false) => return Err("notdir"),
                (false, true) => return Err("isdir"),
                (true, true) if self.inodes[&d].size() != 0 => return Err("notempty"),
                _ => {}
            }
            self.touch(td, if dst_dir { -1 } else { 0 }, now);
            self.dir_entries_mut(td).remove(to);
            self.drop_link(d, now);
        }
        self.dir_entries_mut(fd).remove(from);
        self.touch(fd, if src_dir { -1 } else { 0 }, now);
        self.dir_entries_mut(td).insert(to.to_vec(), src);
        self.touch(td, if src_dir { 1 } else { 0 }, now);
        let m = self.node(src);
        m.ctime = now;
        if let Body::Dir { parent, .. } = &mut m.body {
            *parent = td;
        }
        Ok(())
    }
    fn file(&mut self, ino: Ino) -> R<&mut Vec<u8>> {
        match &mut self.inodes.get_mut(&ino).ok_or("noent")?.body {
            Body::File(d) => Ok(d),
            Body::Dir { .. } => Err("isdir"),
            Body::Symlink(_) => Err("inval"),
        }
    }
    fn write(&mut self, ino: Ino, off: u64, data: &[u8], now: u64) -> R<usize> {
        let f = self.file(ino)?;
        if data.is_empty() {
            return Ok(0);
        }
        let end = off as usize + data.len();
        if f.len() < end {
            f.resize(end, 0);
        }
        f[off as usize..end].copy_from_slice(data);
        let i = self.node(ino);
        i.mtime = now;
        i.ctime = now;
        Ok(data.len())
    }
    fn set_size(&mut self, ino: Ino, size: u64, now: u64) -> R<()> {
        self.file(ino)?.resize(size as usize, 0);
        let i = self.node(ino);
        i.mtime = now;
        i.ctime = now;
        Ok(())
    }
    fn set_times(&mut self, ino: Ino, a: Option<u64>, m: Option<u64>, now: u64) -> R<()> {
        let i = self.inodes.get_mut(&ino).ok_or("noent")?;
        if let Some(a) = a {
            i.atime = a;
        }
        if let Some(m) = m {
            i.mtime = m;
        }
        i.ctime = now;
        Ok(())
    }
    fn retain(&mut self, ino: Ino) -> R<()> {
        self.inodes.get_mut(&ino).ok_or("noent")?.open += 1;
        Ok(())
    }
    fn release(&mut self, ino: Ino) -> R<()> {
        let i = self.inodes.get_mut(&ino).ok_or("noent")?;
        if i.open == 0 {
            return Err("inval");
        }
        i.open -= 1;
        if i.open == 0 && i.nlink == 0 {
            self.inodes.remove(&ino);
        }
        Ok(())
    }
    fn usage_bytes(&self) -> u64 {
        self.inodes
            .values()
            .map(|i| match &i.body {
                Body::File(d) => d.len() as u64,
                Body::Symlink(t) => t.len() as u64,
                Body::Dir { .. } => 0,
            })
            .sum()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Create(u8, u8),
    Mkdir(u8, u8),
    Symlink(u8, u8, u8),
    Link(u8, u8, u8),
    Unlink(u8, u8),
    Rmdir(u8, u8),
    Rename(u8, u8, u8, u8),
    Write(u8, u16, u16, u8),
    SetSize(u8, u16),
    SetTimes(u8, Option<u8>, Option<u8>),
    Retain(u8),
    Release(u8),
    Savepoint,
    Rollback,
    ReleaseSavepoint,
    Commit,
}

fn op() -> impl Strategy<Value = Op> {
    let sel = any::<u8>;
    let name = 0u8..4;
    prop_oneof![
        4 => (sel(), name.clone()).prop_map(|(d, n)| Op::Create(d, n)),
        3 => (sel(), name.clone()).prop_map(|(d, n)| Op::Mkdir(d, n)),
        1 => (sel(), name.clone(), 0u8..40).prop_map(|(d, n, t)| Op::Symlink(d, n, t)),
        2 => (sel(), sel(), name.clone()).prop_map(|(i, d, n)| Op::Link(i, d, n)),
        2 => (sel(), name.clone()).prop_map(|(d, n)| Op::Unlink(d, n)),
        2 => (sel(), name.clone()).prop_map(|(d, n)| Op::Rmdir(d, n)),
        3 => (sel(), name.clone(), sel(), name).prop_map(|(a, b, c, d)| Op::Rename(a, b, c, d)),
        5 => (sel(), 0u16..13000, 0u16..6000, any::<u8>()).prop_map(|(i, o, l, b)| Op::Write(i, o, l, b)),
        2 => (sel(), 0u16..13000).prop_map(|(i, s)| Op::SetSize(i, s)),
        1 => (sel(), proptest::option::of(any::<u8>()), proptest::option::of(any::<u8>())).prop_map(|(i, a, m)| Op::SetTimes(i, a, m)),
        1 => sel().prop_map(Op::Retain),
        1 => sel().prop_map(Op::Release),
        1 => Just(Op::Savepoint),
        1 => Just(Op::Rollback),
        1 => Just(Op::ReleaseSavepoint),
        2 => Just(Op::Commit),
    ]
}

const NAMES: [&[u8]; 4] = [b"a", b"b", b"c", b"d"];

fn pick(model: &Model, sel: u8) -> Ino {
    // Includes one number past the live set so "no such inode" is exercised too.
    let inos: Vec<Ino> = model
        .inodes
        .keys()
        .copied()
        .chain(std::iter::once(99))
        .collect();
    inos[sel as usize % inos.len()]
}

fn cmp<T: PartialEq + std::fmt::Debug>(what: &str, got: merkle_fs::Result<T>, want: R<T>) {
    match (got, want) {
        (Ok(g), Ok(w)) => assert_eq!(g, w, "{what}: results differ"),
        (Err(e), Err(w)) => assert_eq!(kind_of(&e), w, "{what}: error differs ({e})"),
        (g, w) => panic!("{what}: store gave {g:?}, model gave {w:?}"),
    }
}

/// Checks that every inode of the model reads back identically, and nothing else exists.
fn check_state(fs: &impl FsRead, model: &Model) {
    for (&ino, m) in &model.inodes {
        let a = fs.getattr(ino).expect("getattr of live inode");
        assert_eq!(
            (a.kind, a.size, a.nlink),
            (m.kind(), m.size(), m.nlink),
            "attrs of inode {ino}"
        );
        assert_eq!(
            (a.atime_ns, a.mtime_ns, a.ctime_ns),
            (m.atime, m.mtime, m.ctime),
            "times of inode {ino}"
        );
        match &m.body {
            Body::File(d) => {
                let mut buf = vec![0u8; d.len() + 10];
                let n = fs.read(ino, 0, &mut buf).expect("read");
                assert_eq!(&buf[..n], &d[..], "content of inode {ino}");
            }
            Body::Symlink(t) => assert_eq!(&fs.readlink(ino).expect("readlink"), t),
            Body::Dir { entries, .. } => {
                let got: Vec<(Vec<u8>, Ino, FileKind)> = fs
                    .readdir(ino)
                    .expect("readdir")
                    .into_iter()
                    .map(|e| (e.name, e.ino, e.kind))
                    .collect();
                let want: Vec<(Vec<u8>, Ino, FileKind)> = entries
                    .iter()
                    .map(|(n, &i)| (n.clone(), i, model.inodes[&i].kind()))
                    .collect();
                assert_eq!(got, want, "listing of inode {ino}");
            }
        }
    }
    let max = model.inodes.keys().last().copied().unwrap_or(1);
    for ino in 1..=max + 1 {
        if !model.inodes.contains_key(&ino) {
            assert!(fs.getattr(ino).is_err(), "inode {ino} should not exist");
        }
    }
}

struct Run {
    store: Store,
    ws: Option<WorkingSet>,
    model: Model,
    marks: Vec<(merkle_fs::Savepoint, Model)>,
    height: u64,
}

impl Run {
    fn ws(&mut self) -> &mut WorkingSet {
        self.ws.as_mut().expect("working set")
    }
    fn commit(&mut self) -> [u8; 32] {
        self.height += 1;
        let ws = self.ws.take().expect("working set");
        let root = ws.commit(self.height).expect("commit");
        assert_eq!(self.store.root().expect("root"), root);
        self.marks.clear();
        check_state(&self.store.latest(), &self.model);
        self.ws = Some(self.store.working_set());
        root
    }
    fn apply(&mut self, op: &Op, now: u64) {
        let m = &self.model;
        match op.clone() {
            Op::Create(d, n) => {
                let d = pick(m, d);
                let want = self
                    .model
                    .create(d, NAMES[n as usize], Body::File(vec![]), now);
                cmp(
                    "create",
                    self.ws().create_file(d, NAMES[n as usize], now),
                    want,
                );
            }
            Op::Mkdir(d, n) => {
                let d = pick(m, d);
                let want = self.model.create(
                    d,
                    NAMES[n as usize],
                    Body::Dir {
                        entries: BTreeMap::new(),
                        parent: d,
                    },
                    now,
                );
                cmp("mkdir", self.ws().mkdir(d, NAMES[n as usize], now), want);
            }
            Op::Symlink(d, n, t) => {
                let d = pick(m, d);
                let target = vec![b'x'; t as usize];
                let want =
                    self.model
                        .create(d, NAMES[n as usize], Body::Symlink(target.clone()), now);
                cmp(
                    "symlink",
                    self.ws().symlink(d, NAMES[n as usize], &target, now),
                    want,
                );
            }
            Op::Link(i, d, n) => {
                let (i, d) = (pick(m, i), pick(m, d));
                let want = self.model.link(i, d, NAMES[n as usize], now);
                cmp("link", self.ws().link(i, d, NAMES[n as usize], now), want);
            }
            Op::Unlink(d, n) => {
                let d = pick(m, d);
                let want = self.model.unlink(d, NAMES[n as usize], now);
                cmp("unlink", self.ws().unlink(d, NAMES[n as usize], now), want);
            }
            Op::Rmdir(d, n) => {
                let d = pick(m, d);
                let want = self.model.rmdir(d, NAMES[n as usize], now);
                cmp("rmdir", self.ws().rmdir(d, NAMES[n as usize], now), want);
            }
            Op::Rename(a, b, c, d) => {
                let (a, c) = (pick(m, a), pick(m, c));
                let want = self
                    .model
                    .rename(a, NAMES[b as usize], c, NAMES[d as usize], now);
                cmp(
                    "rename",
                    self.ws()
                        .rename(a, NAMES[b as usize], c, NAMES[d as usize], now),
                    want,
                );
            }
            Op::Write(i, off, len, byte) => {
                let i = pick(m, i);
                let data = vec![byte; len as usize];
                let want = self.model.write(i, off as u64, &data, now);
                cmp("write", self.ws().write(i, off as u64, &data, now), want);
            }
            Op::SetSize(i, size) => {
                let i = pick(m, i);
                let want = self.model.set_size(i, size as u64, now);
                cmp("set_size", self.ws().set_size(i, size as u64, now), want);
            }
            Op::SetTimes(i, a, mt) => {
                let i = pick(m, i);
                let (a, mt) = (a.map(u64::from), mt.map(u64::from));
                let want = self.model.set_times(i, a, mt, now);
                cmp("set_times", self.ws().set_times(i, a, mt, now), want);
            }
            Op::Retain(i) => {
                let i = pick(m, i);
                let want = self.model.retain(i);
                cmp("retain", self.ws().retain(i), want);
            }
            Op::Release(i) => {
                let i = pick(m, i);
                let want = self.model.release(i);
                cmp("release", self.ws().release(i), want);
            }
            Op::Savepoint => {
                let sp = self.ws().savepoint();
                self.marks.push((sp, self.model.clone()));
            }
            Op::Rollback => {
                if let Some((sp, saved)) = self.marks.last().cloned() {
                    self.ws().rollback_to(sp).expect("rollback");
                    self.model = saved;
                }
            }
            Op::ReleaseSavepoint => {
                if let Some((sp, _)) = self.marks.pop() {
                    self.ws().release_savepoint(sp).expect("release savepoint");
                }
            }
            Op::Commit => {
                self.commit();
            }
        }
        let ws = self.ws.as_ref().expect("working set");
        assert_eq!(
            ws.usage().inodes,
            self.model.inodes.len() as u64,
            "inode usage after {op:?}"
        );
        assert_eq!(
            ws.usage().bytes,
            self.model.usage_bytes(),
            "byte usage after {op:?}"
        );
    }
}

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open_with(
        dir.path(),
        StoreOptions {
            sync: false,
            block_cache_bytes: 8 << 20,
            ..StoreOptions::default()
        },
    )
    .expect("open")
}

/// Builds the model's state from scratch in a fresh store, in one block, in an order
/// unrelated to the history that produced it; returns the root.
fn build_canonical(model: &Model) -> [u8; 32] {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let mut ws = store.working_set();
    let tmp = |ino: Ino| format!("t{ino}").into_bytes();
    let max = model.inodes.keys().last().copied().unwrap_or(1);
    // Take every inode number in order, so lowest-free allocation reproduces them.
    for ino in 2..=max {
        let got = match model.inodes.get(&ino).map(|i| &i.body) {
            Some(Body::Dir { .. }) => ws.mkdir(ROOT_INO, &tmp(ino), 0),
            Some(Body::Symlink(t)) => ws.symlink(ROOT_INO, &tmp(ino), t, 0),
            _ => ws.create_file(ROOT_INO, &tmp(ino), 0),
        }
        .expect("placeholder");
        assert_eq!(got, ino);
    }
    for ino in 2..=max {
        if !model.inodes.contains_key(&ino) {
            ws.unlink(ROOT_INO, &tmp(ino), 0).expect("drop gap");
        }
    }
    // Names: the first name of an inode is a rename of its placeholder, others links.
    let mut placed: BTreeMap<Ino, bool> = BTreeMap::new();
    for (&dir_ino, m) in &model.inodes {
        if let Body::Dir { entries, .. } = &m.body {
            for (name, &child) in entries {
                if placed.insert(child, true).is_none() {
                    ws.rename(ROOT_INO, &tmp(child), dir_ino, name, 0)
                        .expect("place");
                } else {
                    ws.link(child, dir_ino, name, 0).expect("link");
                }
            }
        }
    }
    for (&ino, m) in &model.inodes {
        if let Body::File(d) = &m.body {
            ws.write(ino, 0, d, 0).expect("content");
        }
        for _ in 0..m.open {
            ws.retain(ino).expect("retain");
        }
        if ino != ROOT_INO && !placed.contains_key(&ino) {
            // Unlinked but open.
            if m.kind() == FileKind::Directory {
                ws.rmdir(ROOT_INO, &tmp(ino), 0).expect("detach dir");
            } else {
                ws.unlink(ROOT_INO, &tmp(ino), 0).expect("detach");
            }
        }
    }
    for (&ino, m) in &model.inodes {
        ws.set_times(ino, Some(m.atime), Some(m.mtime), m.ctime)
            .expect("times");
    }
    check_state(&ws, model);
    ws.commit(1).expect("commit canonical")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model_and_root_is_history_independent(ops in proptest::collection::vec(op(), 1..120)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir);
        let ws = store.working_set();
        let mut run = Run { store, ws: Some(ws), model: Model::new(), marks: Vec::new(), height: 0 };
        for (i, op) in ops.iter().enumerate() {
            run.apply(op, 1000 + i as u64);
        }
        let root = run.commit();
        // Reopen: same root and content.
        let model = run.model.clone();
        drop(run);
        let store = open(&dir);
        prop_assert_eq!(store.root().expect("root"), root);
        check_state(&store.latest(), &model);
        prop_assert_eq!(build_canonical(&model), root, "same state, different history, different root");
    }
}
