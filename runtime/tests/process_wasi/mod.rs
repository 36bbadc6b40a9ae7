//! The process layer with the real WASI context and the C guests of
//! `wasm_programs/` (built by `make -C wasm_programs`; tests skip with a note
//! if a guest is missing).

use std::sync::Arc;

use super::process_support::PagedStore;
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
            view: None,
        },
        SpawnSpec {
            module: cm,
            args: vec!["consumer".into(), "-q".into()],
            vars: vec![],
            view: None,
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
    let first = store.persist(&mut t, "spawns").pages;
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
        let written = store.persist(&mut t, &format!("input {i}"));
        assert!(
            written.pages <= 24,
            "input {i} rewrote {} pages, not its changes",
            written.pages
        );
        assert_eq!(written.processes, 1, "input {i} touched one process");
        let mut restored = store.restore(t.env().clone(), TableLimits::default(), &resolve);
        assert_eq!(
            restored.digest().expect("d"),
            t.digest().expect("d"),
            "input {i}"
        );
        let again = restored.persist().expect("persist");
        assert!(again.pages.is_empty() && again.processes.is_empty());
    }
    // A table restored from an inline snapshot has no records stored yet: its
    // first persist lists every record and non-zero page, giving the same store.
    let inline = t.snapshot_all().expect("snapshot");
    let mut from_inline =
        ProcessTable::restore(&inline, t.env().clone(), TableLimits::default(), &resolve)
            .expect("restore inline");
    let mut fresh = PagedStore::default();
    fresh.persist(&mut from_inline, "from inline");
    assert_eq!(
        fresh.pages, store.pages,
        "an inline table persists every page"
    );
    assert_eq!(fresh.processes, store.processes);
    assert_eq!(fresh.table, store.table);
    // An ended process's records all go.
    t.deliver_stdin(echo, b"", true, FUEL).expect("eof");
    let delta = t.persist().expect("persist");
    assert_eq!(delta.ended.len(), 1);
    assert_eq!(delta.ended[0].0, echo);
    store.apply(delta);
    assert!(store.pages.keys().all(|(pid, _)| *pid != echo));
}

/// Measurement (issue 11): bytes one block writes for a 64-process table
/// when one input touches one process, as the whole table (what format v2
/// rewrote every block) against the v3 header plus the changed record.
#[test]
fn a_block_that_touches_one_of_64_processes_writes_one_record() {
    let m = prepared(&engine(), &guest("echo_server"));
    let limits = TableLimits {
        max_processes: 64,
        ..TableLimits::default()
    };
    let mut t = ProcessTable::new(wasi_env(), limits);
    for i in 0..64 {
        t.spawn(
            m.clone(),
            &["echo_server".into(), format!("--name=server-{i}")],
            &[("HOME".into(), "/data".into())],
            None,
            FUEL,
        )
        .expect("spawn");
    }
    let mut store = PagedStore::default();
    store.persist(&mut t, "spawns");
    for block in 0..3u8 {
        t.set_entropy_seed([block; 32]);
        let pid = 1 + u64::from(block) * 20;
        let out = t
            .deliver_stdin(pid, b"hello\n", false, FUEL)
            .expect("deliver");
        assert_eq!(text(&out, pid), "echo: hello\n");
        let (header, records) = t.stored_records().expect("records");
        let whole_table = header.len() + records.iter().map(|(_, r)| r.len()).sum::<usize>();
        let written = store.persist(&mut t, &format!("block {block}"));
        assert_eq!(written.processes, 1, "block {block}");
        let record = store.processes[&pid].len();
        let pages = written.bytes - store.table.len() - record;
        println!(
            "block {block}: whole table {whole_table} B (v2 rewrote this every block); \
             v3 writes header {} B + 1 record {record} B; pages {} ({pages} B) either way",
            store.table.len(),
            written.pages
        );
        assert!(store.table.len() + record < whole_table / 10);
    }
}

/// Per line read, 16 bytes of `random_get` to stdout (data above the unwind
/// buffer region).
const RANDOM_WAT: &str = r#"
    (module
      (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (loop $next
          (i32.store (i32.const 32768) (i32.const 33000))
          (i32.store (i32.const 32772) (i32.const 64))
          (drop (call $fd_read (i32.const 0) (i32.const 32768) (i32.const 1) (i32.const 32776)))
          (if (i32.eqz (i32.load (i32.const 32776))) (then (return)))
          (drop (call $random_get (i32.const 33100) (i32.const 16)))
          (i32.store (i32.const 32784) (i32.const 33100))
          (i32.store (i32.const 32788) (i32.const 16))
          (drop (call $fd_write (i32.const 1) (i32.const 32784) (i32.const 1) (i32.const 32792)))
          (br $next))))
"#;

/// Bytes `at..at + 16` of the stream keyed by `(seed, pid)`.
fn expected_draw(seed: [u8; 32], pid: u64, at: usize) -> Vec<u8> {
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    let key = replicode_runtime::process::table::entropy_key(&seed, pid);
    let mut stream = vec![0u8; at + 16];
    rand_chacha::ChaCha20Rng::from_seed(key).fill_bytes(&mut stream);
    stream[at..].to_vec()
}

/// A process is rekeyed for a new block's seed only when it next runs, so a
/// new seed rewrites no record; what it draws is still the stream keyed by
/// (block seed, pid) from the start of each block, also across a restart in
/// mid-block.
#[test]
fn a_block_seed_rekeys_processes_lazily_and_their_draws_are_unchanged() {
    let wasm = wat::parse_str(RANDOM_WAT).expect("wat");
    let m = prepared(&engine(), &wasm);
    let resolve = |h: &[u8; 32]| (h == m.hash()).then(|| m.clone());
    let mut t = ProcessTable::new(wasi_env(), TableLimits::default());
    let mut store = PagedStore::default();
    let (s1, s2) = ([1u8; 32], [2u8; 32]);
    let draw = |t: &mut ProcessTable<WasiProcess>, pid: u64| {
        let out = t.deliver_stdin(pid, b"x\n", false, FUEL).expect("draw");
        out.stdout_of(pid)
    };
    t.set_entropy_seed(s1);
    for _ in 0..3 {
        t.spawn(m.clone(), &["random".into()], &[], None, FUEL)
            .expect("spawn");
    }
    assert_eq!(draw(&mut t, 1), expected_draw(s1, 1, 0));
    assert_eq!(draw(&mut t, 1), expected_draw(s1, 1, 16));
    assert_eq!(draw(&mut t, 2), expected_draw(s1, 2, 0));
    store.persist(&mut t, "block 1");
    t.set_entropy_seed(s2);
    assert_eq!(
        store.persist(&mut t, "block 2 begins").processes,
        0,
        "a new seed rewrites no process"
    );
    assert_eq!(draw(&mut t, 2), expected_draw(s2, 2, 0));
    // Restart in mid-block: pid 2 continues its block-2 stream, pid 1 (not
    // run in block 2 yet, its record still keyed for block 1) starts it.
    store.persist(&mut t, "mid block 2");
    let digest = t.digest().expect("digest");
    let mut t = store.restore(t.env().clone(), TableLimits::default(), resolve);
    assert_eq!(t.digest().expect("digest"), digest);
    // The seed is not table state: a restarted machine sets the block's again.
    t.set_entropy_seed(s2);
    assert_eq!(draw(&mut t, 2), expected_draw(s2, 2, 16));
    assert_eq!(draw(&mut t, 1), expected_draw(s2, 1, 0));
    assert_eq!(draw(&mut t, 3), expected_draw(s2, 3, 0));
    store.persist(&mut t, "end of block 2");
}

/// Issue 12: a process spawned with a [`HomeView`] sees `/home/<name>` as its
/// `/` and `/bin` read-only. Another home is out of reach by every path; the
/// escape probe (`..`, absolute paths, symlinks through every path call) is
/// refused inside the home as it is inside any preopen.
#[test]
fn a_home_view_confines_a_process_to_its_home_and_a_read_only_bin() {
    use replicode_runtime::process::wasi_host::HomeView;
    let env = wasi_env();
    {
        let mut fs = env.fs.lock().expect("fs");
        let homes = fs.mkdir(ROOT_INO, b"home", 0).expect("mkdir /home");
        let alice = fs.mkdir(homes, b"alice", 0).expect("mkdir alice");
        let secret = fs.create_file(alice, b"secret", 0).expect("secret");
        fs.write(secret, 0, b"alice's\n", 0).expect("write");
        let bin = fs.mkdir(ROOT_INO, b"bin", 0).expect("mkdir /bin");
        let prog = fs.create_file(bin, b"prog", 0).expect("prog");
        fs.write(prog, 0, b"program\n", 0).expect("write");
    }
    let view = Some(HomeView {
        home: b"bob".to_vec(),
    });
    let engine = engine();
    let mut t = ProcessTable::new(env, TableLimits::default());
    let hostile = prepared(&engine, &guest("hostile"));
    let (pid, out) = t
        .spawn_with_view(hostile, &["hostile".into()], &[], view.clone(), None, FUEL)
        .expect("spawn");
    assert_eq!(out.status, InputStatus::Ok);
    let mut ask = |line: &str| {
        let out = t
            .deliver_stdin(pid, format!("{line}\n").as_bytes(), false, FUEL)
            .expect("deliver");
        text(&out, pid)
    };
    for path in [
        "../alice/secret",
        "/../alice/secret",
        "../../home/alice/secret",
        "/home/alice/secret",
        "/secret",
    ] {
        let got = ask(&format!("read {path}"));
        assert!(got.starts_with("err read"), "{path}: {got:?}");
    }
    assert_eq!(ask("read /bin/prog"), "ok read program\n");
    for line in [
        "write /bin/prog x",
        "write /bin/new x",
        "symlink prog /bin/link",
    ] {
        let got = ask(line);
        assert!(got.starts_with("err"), "{line}: {got:?}");
    }
    assert_eq!(ask("write /notes hi"), "ok write /notes\n");
    assert_eq!(ask("read /notes"), "ok read hi\n");
    let probe = prepared(&engine, &guest("escape_dotdot"));
    let (probe_pid, out) = t
        .spawn_with_view(
            probe,
            &["escape_dotdot".into(), "/".into()],
            &[],
            view,
            None,
            FUEL,
        )
        .expect("spawn the probe");
    let report = text(&out, probe_pid);
    assert!(!report.contains("ALLOWED"), "{report}");
    assert_eq!(out.exits, vec![(probe_pid, 0)], "{report}");
}
