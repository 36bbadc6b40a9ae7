//! Per-process records (table format v3), reaping, and the bounds that keep a
//! process's record small: what a block writes follows what it changed.

use std::sync::Arc;

use super::process_support::{machine, new_fs, PagedStore, TestHost, FUEL};
use replicode_runtime::process::{
    InputStatus, ProcState, ProcessError, ProcessModule, ProcessTable, TableLimits, Wait,
    MAX_PENDING_STDIN, MAX_SPAWN_ARG_BYTES,
};

type Module = Arc<ProcessModule<TestHost>>;

fn limits(max_processes: usize) -> TableLimits {
    TableLimits {
        max_processes,
        ..TableLimits::default()
    }
}

/// A small deterministic generator (no dependency on `rand`'s stream).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// One input or block boundary of the random run.
#[derive(Debug, Clone)]
enum Op {
    Spawn,
    SpawnPiped(u64),
    Stdin(u64, &'static [u8], u64),
    Eof(u64),
    Kill(u64),
    Time(u64),
    /// End of a block: reap, then the next block's seed.
    Block([u8; 32]),
}

fn random_ops(seed: u64, n: usize) -> Vec<Op> {
    const REQUESTS: &[&[u8]] = &[b"hello", b"Fappend", b"W", b"T", b"G", b"Xgrow", b"Q", b"x"];
    let mut g = Lcg(seed);
    (0..n)
        .map(|_| {
            let pid = 1 + g.next(24);
            match g.next(20) {
                0..=2 => Op::Spawn,
                3 => Op::SpawnPiped(pid),
                4..=11 => {
                    let request = REQUESTS[g.next(REQUESTS.len() as u64) as usize];
                    // One input in eight is starved of fuel and rejected.
                    let fuel = if g.next(8) == 0 { 20_000 } else { FUEL };
                    Op::Stdin(pid, request, fuel)
                }
                12 => Op::Eof(pid),
                13 => Op::Kill(pid),
                14..=16 => Op::Time(g.next(1500)),
                _ => {
                    let mut s = [0u8; 32];
                    s[..8].copy_from_slice(&g.next(u64::MAX).to_le_bytes());
                    Op::Block(s)
                }
            }
        })
        .collect()
}

/// Applies `op`; returns its outcome (or refusal) as text to compare runs.
fn apply(t: &mut ProcessTable<TestHost>, m: &Module, op: &Op) -> String {
    let r = match op {
        Op::Spawn => t
            .spawn(m.clone(), &["echo".into()], &[], None, FUEL)
            .map(|(pid, out)| format!("{pid} {out:?}")),
        Op::SpawnPiped(from) => t
            .spawn(m.clone(), &["cat".into()], &[], Some(*from), FUEL)
            .map(|(pid, out)| format!("{pid} {out:?}")),
        Op::Stdin(pid, bytes, fuel) => t
            .deliver_stdin(*pid, bytes, false, *fuel)
            .map(|o| format!("{o:?}")),
        Op::Eof(pid) => t
            .deliver_stdin(*pid, b"", true, FUEL)
            .map(|o| format!("{o:?}")),
        Op::Kill(pid) => t.kill(*pid, FUEL).map(|o| format!("{o:?}")),
        Op::Time(ns) => t.advance_time(*ns, FUEL).map(|o| format!("{o:?}")),
        Op::Block(seed) => {
            let reaped = t.reap();
            t.set_entropy_seed(*seed);
            Ok(format!("reaped {reaped:?}"))
        }
    };
    match r {
        Ok(s) => s,
        Err(e) => format!("refused: {e}"),
    }
}

/// Under-marking a changed process would leave a stale record in the store:
/// the records written after random inputs must equal a fresh encoding of
/// every process, and a table restored from them after any input must run on
/// exactly like the one that never stopped.
#[test]
fn stored_records_equal_a_fresh_encoding_and_restore_after_every_input_changes_nothing() {
    for seed in [1u64, 7, 42] {
        let ops = random_ops(seed, 160);
        let (mut reference, m) = machine();
        reference = ProcessTable::new(reference.env().clone(), limits(6));
        let mut reference_store = PagedStore::default();
        let mut restarted = ProcessTable::new(new_fs(), limits(6));
        let mut store = PagedStore::default();
        let resolve = |h: &[u8; 32]| (h == m.hash()).then(|| m.clone());
        let mut blocks = 0;
        let mut block_seed = None;
        for (i, op) in ops.iter().enumerate() {
            let what = format!("seed {seed}, op {i} {op:?}");
            let expected = apply(&mut reference, &m, op);
            let got = apply(&mut restarted, &m, op);
            assert_eq!(got, expected, "{what}");
            if let Op::Block(s) = op {
                blocks += 1;
                block_seed = Some(*s);
                reference_store.persist(&mut reference, &what);
            }
            // The restarted table persists and comes back after every input
            // (the block's seed is not table state: it is set again).
            store.persist(&mut restarted, &what);
            let env = restarted.env().clone();
            restarted = store.restore(env, limits(6), resolve);
            if let Some(s) = block_seed {
                restarted.set_entropy_seed(s);
            }
            let again = restarted.persist().expect("persist");
            assert!(
                again.processes.is_empty() && again.pages.is_empty(),
                "{what}: a restored table has nothing to write"
            );
            assert_eq!(
                restarted.digest().expect("digest"),
                reference.digest().expect("digest"),
                "{what}"
            );
        }
        assert!(blocks > 3, "seed {seed}: the run crossed blocks");
        assert_eq!(reference.untracked_pages(), 0);
    }
}

#[test]
fn one_input_rewrites_only_the_record_of_the_process_it_touched() {
    let (t, m) = machine();
    let mut t = ProcessTable::new(t.env().clone(), limits(64));
    for _ in 0..64 {
        t.spawn(m.clone(), &["echo".into()], &[], None, FUEL)
            .expect("spawn");
    }
    let mut store = PagedStore::default();
    let first = store.persist(&mut t, "spawns");
    assert_eq!(first.processes, 64, "every new process is written");
    for block in 0..5u8 {
        // A new block's seed must not rewrite every process.
        t.set_entropy_seed([block; 32]);
        let pid = 1 + u64::from(block) * 13;
        t.deliver_stdin(pid, b"hello", false, FUEL)
            .expect("deliver");
        let written = store.persist(&mut t, &format!("block {block}"));
        assert_eq!(written.processes, 1, "block {block}");
        assert_eq!(
            store.persist(&mut t, "idle").processes,
            0,
            "nothing changed, nothing written"
        );
    }
}

/// Regression (issue 11): ended processes stayed in the table forever, so the
/// table, its per-block write and the process list grew with every spawn.
#[test]
fn reaping_keeps_the_table_bounded_under_ten_times_max_processes_exits() {
    let (t, m) = machine();
    let max = 4;
    let mut t = ProcessTable::new(t.env().clone(), limits(max));
    let mut store = PagedStore::default();
    let mut reaped_all = Vec::new();
    for i in 0..(10 * max as u64) {
        let (pid, _) = t
            .spawn(m.clone(), &["echo".into()], &[], None, FUEL)
            .expect("spawn");
        let out = t.deliver_stdin(pid, b"", true, FUEL).expect("eof");
        assert_eq!(out.exits, vec![(pid, 0)]);
        if i % 3 == 2 {
            let reaped = t.reap();
            let ended = t.list().len();
            assert!(ended <= max, "{ended} ended processes kept");
            store.persist(&mut t, &format!("after spawn {i}"));
            assert!(store.processes.len() <= max);
            reaped_all.extend(reaped);
        }
    }
    t.reap();
    let kept: Vec<u64> = t.list().iter().map(|p| p.pid).collect();
    assert_eq!(kept, vec![37, 38, 39, 40], "the newest ended ones stay");
    assert!(
        reaped_all.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {reaped_all:?}"
    );
    assert!(matches!(
        t.deliver_stdin(1, b"x", false, FUEL),
        Err(ProcessError::NoSuchProcess(1))
    ));
    assert!(t.info(1).is_none(), "a reaped pid is unknown");
    assert_eq!(
        t.spawn(m.clone(), &["next".into()], &[], None, FUEL)
            .expect("spawn")
            .0,
        41,
        "pids are still never reused"
    );
}

#[test]
fn a_producer_whose_reaped_reader_is_gone_keeps_running_and_can_be_killed() {
    let (t, m) = machine();
    let mut t = ProcessTable::new(t.env().clone(), limits(2));
    let (a, _) = t
        .spawn(m.clone(), &["producer".into()], &[], None, FUEL)
        .expect("spawn");
    let (b, _) = t
        .spawn(m.clone(), &["consumer".into()], &[], Some(a), FUEL)
        .expect("spawn");
    t.kill(b, FUEL).expect("kill reader");
    for _ in 0..2 {
        let (p, _) = t
            .spawn(m.clone(), &["x".into()], &[], None, FUEL)
            .expect("spawn");
        t.deliver_stdin(p, b"", true, FUEL).expect("eof");
    }
    assert_eq!(t.reap(), vec![b], "the reader goes first");
    let out = t
        .deliver_stdin(a, b"into nothing", false, FUEL)
        .expect("deliver");
    assert_eq!(out.status, InputStatus::Ok);
    assert!(
        out.outputs.is_empty(),
        "piped output is dropped, not reported"
    );
    let end = t.kill(a, FUEL).expect("kill producer");
    assert_eq!(end.exits, vec![(a, 137)]);
}

/// Regression (issue 11): bytes delivered to a process that does not read
/// piled up in its pending stdin (persisted state) without bound: any client
/// could grow a victim's state by 64 KiB per transaction, forever.
#[test]
fn stdin_a_process_does_not_read_is_bounded_and_the_refusal_changes_nothing() {
    let (mut t, m) = machine();
    let (pid, _) = t
        .spawn(m, &["echo".into()], &[], None, FUEL)
        .expect("spawn");
    t.deliver_stdin(pid, b"W", false, FUEL).expect("sleep");
    assert_eq!(
        t.info(pid).expect("info").state,
        ProcState::Blocked(Wait {
            stdin: false,
            deadline_ns: Some(1000)
        }),
        "asleep: it reads nothing until time passes"
    );
    let chunk = vec![b'a'; 64 << 10];
    for _ in 0..MAX_PENDING_STDIN / chunk.len() {
        t.deliver_stdin(pid, &chunk, false, FUEL)
            .expect("within the bound");
    }
    let digest = t.digest().expect("digest");
    let snapshot = t.snapshot_all().expect("snapshot");
    match t.deliver_stdin(pid, b"!", false, FUEL) {
        Err(ProcessError::StdinFull {
            pid: p,
            pending,
            bytes: 1,
            max,
        }) => {
            assert_eq!(
                (p, pending, max),
                (pid, MAX_PENDING_STDIN, MAX_PENDING_STDIN)
            );
        }
        other => panic!("expected StdinFull, got {other:?}"),
    }
    assert_eq!(t.digest().expect("digest"), digest);
    assert_eq!(t.snapshot_all().expect("snapshot"), snapshot);
    // Once it wakes and reads, it takes input again.
    t.advance_time(1000, FUEL * 100).expect("wake");
    t.deliver_stdin(pid, b"more", false, FUEL)
        .expect("room again");
}

#[test]
fn spawn_arguments_past_the_bound_are_refused_and_change_nothing() {
    let (mut t, m) = machine();
    t.spawn(m.clone(), &["echo".into()], &[], None, FUEL)
        .expect("spawn");
    let digest = t.digest().expect("digest");
    let big = "a".repeat(MAX_SPAWN_ARG_BYTES / 2);
    let vars = vec![("K".to_string(), big.clone())];
    match t.spawn(m.clone(), &["echo".into(), big.clone()], &vars, None, FUEL) {
        Err(ProcessError::SpawnArgsTooLarge { bytes, max }) => {
            assert_eq!(max, MAX_SPAWN_ARG_BYTES);
            assert_eq!(bytes, 4 + big.len() + 2 + big.len());
        }
        other => panic!("expected SpawnArgsTooLarge, got {other:?}"),
    }
    assert_eq!(t.digest().expect("digest"), digest);
    let (pid, _) = t
        .spawn(m, &["echo".into(), big], &[], None, FUEL)
        .expect("within the bound");
    assert_eq!(pid, 2, "the refused spawn took no pid");
}
