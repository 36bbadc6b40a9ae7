//! The process layer with the real WASI context and the C guests of
//! `wasm_programs/` (built by `make -C wasm_programs`; tests skip with a note
//! if a guest is missing).

use std::sync::Arc;

use replicode_runtime::fs::{self, ROOT_INO};
use replicode_runtime::process::wasi_host::{WasiEnv, WasiProcess};
use replicode_runtime::process::{
    InputOutcome, InputStatus, ProcState, ProcessModule, ProcessTable, SpawnSpec, TableLimits,
};

const FUEL: u64 = 200_000_000;

/// A built guest's bytes; a missing guest fails the test rather than skipping it.
fn guest(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../wasm_programs/build/{name}.wasm",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("guest {path} is not built ({e}): run `make -C wasm_programs`"))
}

/// Asyncify with the WASI blocking imports (what the install-time pipeline
/// does), compiled for `engine`.
fn prepared(engine: &wasmtime::Engine, wasm: &[u8]) -> Arc<ProcessModule<WasiProcess>> {
    let bytes = super::process_support::asyncify(
        wasm,
        "wasi_snapshot_preview1.fd_read,wasi_snapshot_preview1.poll_oneoff",
    );
    Arc::new(ProcessModule::new(engine, &bytes).expect("process module"))
}

fn engine() -> wasmtime::Engine {
    super::process_support::new_engine()
}

fn wasi_env() -> WasiEnv {
    let fs = fs::shared(fs::mem::MemFs::new(fs::FsLimits::default(), 0));
    fs.lock()
        .expect("fs")
        .mkdir(ROOT_INO, b"data", 0)
        .expect("mkdir /data");
    WasiEnv::new(fs)
}

fn text(out: &InputOutcome, pid: u64) -> String {
    String::from_utf8_lossy(&out.stdout_of(pid)).into_owned()
}

#[test]
fn echo_server_c_answers_each_line_and_survives_restore_at_every_input() {
    let wasm = guest("echo_server");
    let inputs: [&[u8]; 4] = [b"hello\n", b"second line\n", b"no newline", b"\nlast\n"];
    let run = |restore_at: Option<usize>| {
        let m = prepared(&engine(), &wasm);
        let mut t = ProcessTable::new(wasi_env(), TableLimits::default());
        let (pid, _) = t
            .spawn(m.clone(), &["echo_server".into()], &[], None, FUEL)
            .expect("spawn");
        let mut log = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            if restore_at == Some(i) {
                let bytes = t.snapshot_all().expect("snapshot");
                let digest = t.digest().expect("digest");
                let env = t.env().clone();
                let m2 = prepared(&engine(), &wasm);
                t = ProcessTable::restore(&bytes, env, TableLimits::default(), move |_| {
                    Some(m2.clone())
                })
                .expect("restore");
                assert_eq!(t.digest().expect("digest"), digest);
            }
            let out = t.deliver_stdin(pid, input, false, FUEL).expect("deliver");
            log.push((text(&out, pid), t.digest().expect("digest")));
        }
        let end = t.deliver_stdin(pid, b"", true, FUEL).expect("eof");
        log.push((
            format!("{}|{:?}", text(&end, pid), end.exits),
            t.digest().expect("digest"),
        ));
        log
    };
    let reference = run(None);
    assert_eq!(reference[0].0, "echo: hello\n");
    assert_eq!(reference[1].0, "echo: second line\n");
    assert_eq!(reference[2].0, "", "no newline yet: getline keeps waiting");
    assert_eq!(reference[3].0, "echo: no newline\necho: last\n");
    assert_eq!(reference[4].0, "|[(1, 0)]");
    for k in 0..inputs.len() {
        assert_eq!(run(Some(k)), reference, "restored before input {k}");
    }
}

#[test]
fn faulty_server_trap_and_loop_are_rolled_back_with_the_log_file() {
    let wasm = guest("faulty_server");
    let m = prepared(&engine(), &wasm);
    let mut t = ProcessTable::new(wasi_env(), TableLimits::default());
    let (pid, _) = t
        .spawn(m, &["faulty_server".into()], &[], None, FUEL)
        .expect("spawn");
    let first = t
        .deliver_stdin(pid, b"hello\n", false, FUEL)
        .expect("deliver");
    assert_eq!(text(&first, pid), "input 1: hello\nok 1\n");
    let digest = t.digest().expect("digest");
    let files = t.env().fs.lock().expect("fs").digest();
    let trap = t
        .deliver_stdin(pid, b"trap\n", false, FUEL)
        .expect("deliver");
    assert!(
        matches!(trap.status, InputStatus::Trap { .. }),
        "{:?}",
        trap.status
    );
    let spin = t
        .deliver_stdin(pid, b"loop\n", false, 5_000_000)
        .expect("deliver");
    assert_eq!(spin.status, InputStatus::OutOfFuel);
    assert_eq!(t.digest().expect("digest"), digest);
    assert_eq!(t.env().fs.lock().expect("fs").digest(), files);
    let next = t
        .deliver_stdin(pid, b"again\n", false, FUEL)
        .expect("deliver");
    assert_eq!(
        text(&next, pid),
        "input 2: again\nok 2\n",
        "the failed inputs left no trace"
    );
}

#[test]
fn producer_consumer_pipeline_loses_nothing() {
    let (p, c) = (guest("producer"), guest("consumer"));
    let engine = engine();
    let (pm, cm) = (prepared(&engine, &p), prepared(&engine, &c));
    let mut t = ProcessTable::new(wasi_env(), TableLimits::default());
    let specs = vec![
        SpawnSpec {
            module: pm,
            args: vec!["producer".into(), "50".into(), "100".into()],
            vars: vec![],
        },
        SpawnSpec {
            module: cm,
            args: vec!["consumer".into(), "-q".into()],
            vars: vec![],
        },
    ];
    let (pids, out) = t.spawn_pipeline(specs, None, FUEL).expect("pipeline");
    assert_eq!(out.status, InputStatus::Ok);
    assert!(
        out.stdout_of(pids[0]).is_empty(),
        "producer output went into the pipe"
    );
    let summary = text(&out, pids[1]);
    assert!(
        summary.contains("lines=50 sum=1275") && summary.contains("order=ok"),
        "{summary}"
    );
    assert_eq!(out.exits, vec![(pids[0], 0), (pids[1], 0)]);
}

#[test]
fn poll_timeout_fires_on_logical_time_and_input_wakes_it() {
    let wasm = guest("poll_timeout");
    let m = prepared(&engine(), &wasm);
    let mut t = ProcessTable::new(wasi_env(), TableLimits::default());
    let (pid, _) = t
        .spawn(
            m,
            &["poll_timeout".into(), "1000".into(), "2".into()],
            &[],
            None,
            FUEL,
        )
        .expect("spawn");
    assert!(
        matches!(t.info(pid).expect("info").state, ProcState::Blocked(w) if w.stdin && w.deadline_ns.is_some())
    );
    let early = t.advance_time(500_000_000, FUEL).expect("time");
    assert!(
        text(&early, pid).is_empty(),
        "nothing before the deadline: {:?}",
        text(&early, pid)
    );
    let due = t.advance_time(600_000_000, FUEL).expect("time");
    assert!(
        text(&due, pid).starts_with("round 1: timeout after "),
        "{:?}",
        text(&due, pid)
    );
    let input = t.deliver_stdin(pid, b"hi", false, FUEL).expect("deliver");
    assert!(
        text(&input, pid).starts_with("round 2: read 2 bytes"),
        "{:?}",
        text(&input, pid)
    );
}

#[test]
fn nonblocking_stdin_gets_eagain_instead_of_suspending() {
    let wasm = guest("nonblock");
    let m = prepared(&engine(), &wasm);
    let mut t = ProcessTable::new(wasi_env(), TableLimits::default());
    let (pid, out) = t
        .spawn(m, &["nonblock".into(), "block".into()], &[], None, FUEL)
        .expect("spawn");
    assert!(
        text(&out, pid).contains("nonblock: read -> EAGAIN"),
        "{:?}",
        text(&out, pid)
    );
    assert!(
        matches!(t.info(pid).expect("info").state, ProcState::Blocked(_)),
        "then blocks in the blocking read"
    );
    let out = t.deliver_stdin(pid, b"data", false, FUEL).expect("deliver");
    assert!(
        text(&out, pid).contains("blocking: read 4 bytes: data"),
        "{:?}",
        text(&out, pid)
    );
}

/// Write tracking (store barrier + host write log) must report every page an
/// input changes: the whole-memory check before each snapshot counts misses.
/// Covers stdin reads of many sizes (one crossing pages), `fd_write`'s count,
/// `poll_oneoff` events, clock reads, heap growth and a rejected input.
#[test]
fn write_tracking_reports_every_changed_page_of_real_guests() {
    let m_kv = prepared(&engine(), &guest("kv_server"));
    let m_poll = prepared(&engine(), &guest("poll_timeout"));
    let m_faulty = prepared(&engine(), &guest("faulty_server"));
    let mut t = ProcessTable::new(wasi_env(), TableLimits::default());
    let (kv, _) = t
        .spawn(
            m_kv,
            &["kv_server".into(), "/data/kv.log".into()],
            &[],
            None,
            FUEL,
        )
        .expect("spawn kv");
    let (poll, _) = t
        .spawn(
            m_poll,
            &["poll_timeout".into(), "1000".into(), "1000".into()],
            &[],
            None,
            FUEL,
        )
        .expect("spawn poll");
    let (faulty, _) = t
        .spawn(m_faulty, &["faulty_server".into()], &[], None, FUEL)
        .expect("spawn faulty");
    t.snapshot_all().expect("snapshot");
    assert_eq!(t.untracked_pages(), 0, "after spawning");
    for i in 0..300u32 {
        let value = "v".repeat(1 + (i as usize * 37) % 3000);
        let line = format!("SET key{i} {value}\n");
        let out = t
            .deliver_stdin(kv, line.as_bytes(), false, FUEL)
            .expect("set");
        assert_eq!(text(&out, kv), "OK\n", "input {i}");
        if i % 7 == 0 {
            let get = format!("GET key{}\n", i / 2);
            let out = t
                .deliver_stdin(kv, get.as_bytes(), false, FUEL)
                .expect("get");
            assert!(text(&out, kv).starts_with("VALUE "), "{:?}", text(&out, kv));
        }
        if i % 11 == 0 {
            t.deliver_stdin(poll, b"ping", false, FUEL)
                .expect("poll input");
            t.advance_time(2_000_000_000, FUEL).expect("time");
        }
        if i % 13 == 0 {
            // A trap in the faulty server is rolled back; the next input is fine.
            t.deliver_stdin(faulty, b"trap\n", false, FUEL)
                .expect("faulty");
            t.deliver_stdin(faulty, b"hello\n", false, FUEL)
                .expect("faulty");
        }
        t.snapshot_all().expect("snapshot");
        assert_eq!(t.untracked_pages(), 0, "after input {i}");
    }
}

/// Reads stdin into a buffer far from anything its own code stores to, so the
/// buffer's pages are changed by the host's `fd_read` only: if the host's write
/// log missed them, the end-of-block check would count them.
const HOST_WRITE_ONLY_WAT: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 8)
  (func (export "_start")
    (loop $more
      (i32.store (i32.const 20000) (i32.const 300000))
      (i32.store (i32.const 20004) (i32.const 65536))
      (drop (call $fd_read (i32.const 0) (i32.const 20000) (i32.const 1) (i32.const 20008)))
      (br_if $more (i32.load (i32.const 20008))))))
"#;

#[test]
fn pages_written_only_by_the_host_reach_the_shadow_and_the_digest() {
    let wasm = wat::parse_str(HOST_WRITE_ONLY_WAT).expect("wat");
    let m = prepared(&engine(), &wasm);
    let mut t = ProcessTable::new(wasi_env(), TableLimits::default());
    let (pid, _) = t
        .spawn(m.clone(), &["reader".into()], &[], None, FUEL)
        .expect("spawn");
    let mut digests = Vec::new();
    for round in 0..4u8 {
        let input = vec![b'a' + round; 40_000];
        let out = t.deliver_stdin(pid, &input, false, FUEL).expect("deliver");
        assert_eq!(out.status, InputStatus::Ok);
        let digest = t.digest().expect("digest");
        assert_eq!(t.untracked_pages(), 0, "round {round}");
        // A fresh table restored from the snapshot sees the same memory.
        let bytes = t.snapshot_all().expect("snapshot");
        let m2 = m.clone();
        let mut restored =
            ProcessTable::restore(&bytes, t.env().clone(), TableLimits::default(), move |_| {
                Some(m2.clone())
            })
            .expect("restore");
        assert_eq!(restored.digest().expect("digest"), digest, "round {round}");
        digests.push(digest);
    }
    digests.dedup();
    assert_eq!(digests.len(), 4, "every input changed the memory digest");
}

/// A store keeping the table and each page apart, as the ABCI app does.
#[derive(Default)]
struct PagedStore {
    table: Vec<u8>,
    pages: std::collections::BTreeMap<(u64, u32), Vec<u8>>,
}

impl PagedStore {
    /// Applies a delta; returns how many page records it wrote or deleted.
    fn apply(&mut self, delta: replicode_runtime::process::PersistDelta) -> usize {
        let touched = delta.pages.len();
        self.table = delta.table;
        for (pid, page, bytes) in delta.pages {
            match bytes {
                Some(b) => self.pages.insert((pid, page), b),
                None => {
                    let had = self.pages.remove(&(pid, page));
                    assert!(had.is_some(), "a delete names a stored page");
                    had
                }
            };
        }
        for (pid, pages) in delta.ended {
            for page in pages {
                assert!(
                    self.pages.remove(&(pid, page)).is_some(),
                    "only stored pages are deleted"
                );
            }
        }
        touched
    }
}

#[test]
fn persisting_writes_only_changed_pages_and_restores_the_same_processes() {
    let m = prepared(&engine(), &guest("kv_server"));
    let m_echo = prepared(&engine(), &guest("echo_server"));
    let mut t = ProcessTable::new(wasi_env(), TableLimits::default());
    let (kv, _) = t
        .spawn(
            m.clone(),
            &["kv_server".into(), "/data/kv.log".into()],
            &[],
            None,
            FUEL,
        )
        .expect("spawn");
    let (echo, _) = t
        .spawn(m_echo.clone(), &["echo_server".into()], &[], None, FUEL)
        .expect("spawn");
    let mut store = PagedStore::default();
    let first = store.apply(t.persist().expect("persist"));
    let total_pages: usize = t.list().len() * 2; // at least two pages per live process
    assert!(
        first >= total_pages,
        "a new process has every page listed: {first}"
    );
    let resolve = {
        let (m, m_echo) = (m.clone(), m_echo.clone());
        move |h: &[u8; 32]| [&m, &m_echo].into_iter().find(|x| x.hash() == h).cloned()
    };
    for i in 0..40u32 {
        let line = format!("SET key{i} value{i}\n");
        t.deliver_stdin(kv, line.as_bytes(), false, FUEL)
            .expect("set");
        let written = store.apply(t.persist().expect("persist"));
        assert!(
            written <= 24,
            "input {i} rewrote {written} pages, not its changes"
        );
        let env = t.env().clone();
        let pages = &store.pages;
        let mut restored = ProcessTable::restore_paged(
            &store.table,
            env,
            TableLimits::default(),
            &resolve,
            |pid, page| Ok(pages.get(&(pid, page)).cloned()),
        )
        .expect("restore");
        assert_eq!(
            restored.digest().expect("d"),
            t.digest().expect("d"),
            "input {i}"
        );
        assert!(restored.persist().expect("persist").pages.is_empty());
    }
    // A table restored from an inline (version 1) snapshot has no page records
    // yet: its first persist lists every non-zero page, giving the same store.
    let v1 = t.snapshot_all().expect("snapshot");
    let mut from_v1 = ProcessTable::restore(&v1, t.env().clone(), TableLimits::default(), &resolve)
        .expect("restore v1");
    let mut fresh = PagedStore::default();
    fresh.apply(from_v1.persist().expect("persist"));
    assert_eq!(fresh.pages, store.pages, "a v1 table persists every page");
    // An ended process's records all go.
    t.deliver_stdin(echo, b"", true, FUEL).expect("eof");
    let delta = t.persist().expect("persist");
    assert_eq!(delta.ended.len(), 1);
    assert_eq!(delta.ended[0].0, echo);
    store.apply(delta);
    assert!(store.pages.keys().all(|(pid, _)| *pid != echo));
}
