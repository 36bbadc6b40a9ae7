//! Crash safety: a child process commits in a loop and is SIGKILLed at random moments,
//! many times; every reopen must land exactly on a committed height whose root and
//! content equal a reference replay, never on a torn state.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use merkle_fs::{FsRead, Ino, Store, StoreOptions, WorkingSet, ROOT_INO};
use rand::{Rng, SeedableRng};

const CHILD_ENV: &str = "MERKLE_FS_CRASH_DIR";
const FILES: u64 = 40;

/// The changes of block `h`: a function of `h` only, so every restart agrees.
fn block(ws: &mut WorkingSet, h: u64) {
    for j in 0..8u64 {
        let n = (h * 7 + j * 13) % FILES;
        let name = format!("f{n}").into_bytes();
        let dir = match ws.lookup(ROOT_INO, b"d") {
            Ok(d) => d,
            Err(_) => ws.mkdir(ROOT_INO, b"d", h).expect("mkdir"),
        };
        if (h + j) % 5 == 0 {
            if ws.lookup(dir, &name).is_ok() {
                ws.unlink(dir, &name, h).expect("unlink");
            }
            continue;
        }
        let ino: Ino = match ws.lookup(dir, &name) {
            Ok(i) => i,
            Err(_) => ws.create_file(dir, &name, h).expect("create"),
        };
        let len = 1 + ((h * 31 + j) % 9000) as usize;
        let data: Vec<u8> = (0..len).map(|i| (i as u64 ^ h) as u8).collect();
        ws.set_size(ino, 0, h).expect("truncate");
        ws.write(ino, 0, &data, h).expect("write");
    }
    ws.put_meta(b"height", &h.to_be_bytes());
}

/// The child: commit blocks forever, printing each committed height.
#[test]
#[ignore = "helper: run as a child process by crash_at_random_points_never_tears"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = Store::open_with(
        &dir,
        StoreOptions {
            sync: true,
            ..StoreOptions::default()
        },
    )
    .expect("child open");
    loop {
        let h = store.latest_height() + 1;
        let mut ws = store.working_set();
        block(&mut ws, h);
        ws.commit(h).expect("child commit");
        println!("committed {h}");
    }
}

/// Roots of heights 0..=n built by an uninterrupted reference run.
struct Reference {
    store: Store,
    _dir: tempfile::TempDir,
    roots: Vec<[u8; 32]>,
}

impl Reference {
    fn root(&mut self, h: u64) -> [u8; 32] {
        while self.roots.len() as u64 <= h {
            let next = self.roots.len() as u64;
            let mut ws = self.store.working_set();
            block(&mut ws, next);
            self.roots.push(ws.commit(next).expect("reference commit"));
        }
        self.roots[h as usize]
    }
}

#[test]
fn crash_at_random_points_never_tears() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ref_dir = tempfile::tempdir().expect("tempdir");
    let ref_store = Store::open_with(
        ref_dir.path(),
        StoreOptions {
            sync: false,
            ..StoreOptions::default()
        },
    )
    .expect("ref open");
    let genesis = ref_store.root().expect("genesis");
    let mut reference = Reference {
        store: ref_store,
        _dir: ref_dir,
        roots: vec![genesis],
    };
    let exe = std::env::current_exe().expect("test binary path");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed);
    let kills = 60;
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut max_height = 0;
    for round in 0..kills {
        assert!(
            Instant::now() < deadline,
            "crash test exceeded its time bound at round {round}"
        );
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        // Wait for a random number of acknowledged commits (0..6), then a random delay,
        // so the kill lands anywhere: during open, hashing, or the write itself.
        let wait_commits = rng.gen_range(0..6);
        let delay = Duration::from_micros(rng.gen_range(0..20_000));
        let mut acked = 0u64;
        let reader = std::thread::spawn(move || {
            let mut last = 0u64;
            let mut lines = BufReader::new(stdout).lines();
            let mut seen = 0;
            while seen < wait_commits {
                match lines.next() {
                    Some(Ok(l)) => {
                        if let Some(h) = l.strip_prefix("committed ").and_then(|h| h.parse().ok()) {
                            last = h;
                            seen += 1;
                        }
                    }
                    _ => break,
                }
            }
            (last, lines)
        });
        let (last, lines) = reader.join().expect("reader thread");
        acked = acked.max(last);
        std::thread::sleep(delay);
        // SIGKILL: no destructors, no flush.
        child.kill().expect("kill child");
        child.wait().expect("reap child");
        // Any acknowledgements printed after we stopped counting.
        for l in lines.map_while(Result::ok) {
            if let Some(h) = l
                .strip_prefix("committed ")
                .and_then(|h| h.parse::<u64>().ok())
            {
                acked = acked.max(h);
            }
        }

        let store = Store::open_with(
            dir.path(),
            StoreOptions {
                sync: false,
                ..StoreOptions::default()
            },
        )
        .expect("reopen after kill");
        let h = store.latest_height();
        assert!(
            h >= acked,
            "round {round}: acknowledged height {acked} lost (reopened at {h})"
        );
        assert!(
            h >= max_height,
            "round {round}: went back from {max_height} to {h}"
        );
        max_height = h;
        assert_eq!(
            store.root().expect("root"),
            reference.root(h),
            "round {round}: root at height {h} differs from the reference"
        );
        // Content reads back whole and verified.
        let snap = store.latest();
        if h > 0 {
            let d = snap.lookup(ROOT_INO, b"d").expect("dir d");
            for e in snap.readdir(d).expect("readdir") {
                let size = snap.getattr(e.ino).expect("attr").size as usize;
                let mut buf = vec![0u8; size];
                assert_eq!(
                    snap.read(e.ino, 0, &mut buf).expect("read after crash"),
                    size
                );
            }
        }
    }
    assert!(
        max_height > 10,
        "the child made too little progress ({max_height}) for the test to mean anything"
    );
}
