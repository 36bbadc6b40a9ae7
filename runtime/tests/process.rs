//! Process layer: suspend/resume, atomic inputs, pipes, logical time, snapshots.
//!
//! The guest is a small WAT server over a minimal host (`TestHost`) so these
//! tests exercise the process machinery itself — Asyncify unwind/rewind,
//! snapshots, rollback, scheduling — independent of the WASI layer.

mod process_support;

use std::sync::Arc;

use process_support::{fs_digest, machine, module, new_engine, new_fs, TestHost, FUEL};
use replicode_runtime::process::{
    InputOutcome, InputStatus, ProcState, ProcessTable, TableLimits, Wait,
};

fn line(out: &InputOutcome, pid: u64) -> String {
    String::from_utf8_lossy(&out.stdout_of(pid)).into_owned()
}

#[test]
fn echo_server_suspends_and_resumes_with_each_input() {
    let (mut t, m) = machine();
    let (pid, out) = t.spawn(m, &["echo".into()], &[], None, FUEL).unwrap();
    assert_eq!(out.status, InputStatus::Ok);
    assert_eq!(pid, 1);
    assert!(out.outputs.is_empty());
    assert_eq!(
        t.info(pid).unwrap().state,
        ProcState::Blocked(Wait {
            stdin: true,
            deadline_ns: None
        })
    );
    let a = t.deliver_stdin(pid, b"hi", false, FUEL).unwrap();
    assert_eq!(line(&a, pid), "hi#12\n");
    let b = t.deliver_stdin(pid, b"abc", false, FUEL).unwrap();
    assert_eq!(
        line(&b, pid),
        "abc#25\n",
        "count 2, total bytes 5: state survived the suspension"
    );
    assert!(b.fuel_used > 0);
    let c = t.deliver_stdin(pid, b"", true, FUEL).unwrap();
    assert_eq!(c.exits, vec![(pid, 0)]);
    assert_eq!(t.info(pid).unwrap().state, ProcState::Exited(0));
    assert!(
        t.deliver_stdin(pid, b"x", false, FUEL).is_err(),
        "an exited process takes no input"
    );
}

#[test]
fn proc_exit_code_is_reported() {
    let (mut t, m) = machine();
    let (pid, _) = t.spawn(m, &["echo".into()], &[], None, FUEL).unwrap();
    t.deliver_stdin(pid, b"a", false, FUEL).unwrap();
    let out = t.deliver_stdin(pid, b"Q", false, FUEL).unwrap();
    assert_eq!(out.exits, vec![(pid, 2)]);
}

/// The inputs of the conversation used by the snapshot test: stdin lines,
/// file appends, a sleep woken by time, a rejected input, a pipe, an EOF.
#[derive(Clone, Debug)]
enum Step {
    Stdin(u64, &'static [u8]),
    Time(u64),
    SpawnPiped(u64),
    Eof(u64),
}

const CONVERSATION: &[Step] = &[
    Step::Stdin(1, b"hello"),
    Step::Stdin(1, b"Fappend-me"),
    Step::Stdin(1, b"W"),
    Step::Time(400),
    Step::Time(700),
    Step::Stdin(1, b"T"),
    Step::SpawnPiped(1),
    Step::Stdin(1, b"to-pipe"),
    Step::Stdin(1, b"Gx"),
    Step::Stdin(1, b"Yrollback-file"),
    Step::Stdin(1, b"again"),
    Step::Eof(1),
];

fn apply(
    t: &mut ProcessTable<TestHost>,
    m: &Arc<replicode_runtime::process::ProcessModule<TestHost>>,
    step: &Step,
) -> InputOutcome {
    match step {
        Step::Stdin(pid, bytes) => t.deliver_stdin(*pid, bytes, false, FUEL).unwrap(),
        Step::Time(ns) => t.advance_time(*ns, FUEL).unwrap(),
        Step::SpawnPiped(from) => {
            t.spawn(m.clone(), &["cat".into()], &[], Some(*from), FUEL)
                .unwrap()
                .1
        }
        Step::Eof(pid) => t.deliver_stdin(*pid, b"", true, FUEL).unwrap(),
    }
}

#[test]
fn snapshot_and_restore_at_every_input_index_gives_identical_outputs_and_digests() {
    // Reference: one uninterrupted run.
    let (mut t, m) = machine();
    t.spawn(m.clone(), &["echo".into()], &[], None, FUEL)
        .unwrap();
    let mut reference = Vec::new();
    for step in CONVERSATION {
        let out = apply(&mut t, &m, step);
        reference.push((out, t.digest().unwrap(), fs_digest(t.env())));
    }
    assert!(reference
        .iter()
        .any(|(o, _, _)| matches!(o.status, InputStatus::Trap { .. })));
    assert!(reference.iter().any(|(o, _, _)| !o.exits.is_empty()));

    for k in 0..=CONVERSATION.len() {
        let (mut t, m) = machine();
        t.spawn(m.clone(), &["echo".into()], &[], None, FUEL)
            .unwrap();
        for step in &CONVERSATION[..k] {
            apply(&mut t, &m, step);
        }
        let before = t.digest().unwrap();
        let bytes = t.snapshot_all().unwrap();
        let fs = t.env().clone();
        drop(t);
        // A fresh engine: nothing compiled or instantiated is shared.
        let engine = new_engine();
        let m2 = Arc::new(module(&engine));
        let m2c = m2.clone();
        let mut r = ProcessTable::restore(&bytes, fs, TableLimits::default(), move |h| {
            (h == m2c.hash()).then(|| m2c.clone())
        })
        .unwrap();
        assert_eq!(
            r.digest().unwrap(),
            before,
            "restore at {k} changed the digest"
        );
        assert_eq!(
            r.snapshot_all().unwrap(),
            bytes,
            "re-snapshot at {k} differs"
        );
        for (i, step) in CONVERSATION.iter().enumerate().skip(k) {
            let out = apply(&mut r, &m2, step);
            let (ref_out, ref_digest, ref_fs) = &reference[i];
            assert_eq!(&out, ref_out, "input {i} after restore at {k}");
            assert_eq!(
                &r.digest().unwrap(),
                ref_digest,
                "digest after input {i}, restored at {k}"
            );
            assert_eq!(
                &fs_digest(r.env()),
                ref_fs,
                "files after input {i}, restored at {k}"
            );
        }
    }
}

#[test]
fn out_of_fuel_input_leaves_process_and_files_as_before() {
    let (mut t, m) = machine();
    let (pid, _) = t.spawn(m, &["echo".into()], &[], None, FUEL).unwrap();
    t.deliver_stdin(pid, b"Fkept", false, FUEL).unwrap();
    let digest = t.digest().unwrap();
    let files = fs_digest(t.env());
    let snap = t.snapshot_all().unwrap();
    let out = t.deliver_stdin(pid, b"L", false, 50_000).unwrap();
    assert_eq!(out.status, InputStatus::OutOfFuel);
    assert!(out.outputs.is_empty());
    assert!(
        out.fuel_used >= 50_000,
        "fuel spent is reported: {}",
        out.fuel_used
    );
    assert_eq!(t.digest().unwrap(), digest);
    assert_eq!(t.snapshot_all().unwrap(), snap);
    assert_eq!(fs_digest(t.env()), files);
    // The process continues as if the input never came.
    assert_eq!(
        line(&t.deliver_stdin(pid, b"ok", false, FUEL).unwrap(), pid),
        "ok#27\n"
    );
}

#[test]
fn trapping_input_undoes_memory_growth_globals_and_file_writes() {
    let (mut t, m) = machine();
    let (pid, _) = t.spawn(m, &["echo".into()], &[], None, FUEL).unwrap();
    t.deliver_stdin(pid, b"one", false, FUEL).unwrap();
    let digest = t.digest().unwrap();
    let files = fs_digest(t.env());
    let snap = t.snapshot_all().unwrap();
    for bad in [&b"Xgrow-then-trap"[..], b"Yfile-then-trap", b"T"] {
        let out = t.deliver_stdin(pid, bad, false, FUEL).unwrap();
        match &out.status {
            InputStatus::Trap { pid: p, reason } => {
                assert_eq!(*p, pid);
                assert!(
                    reason.contains("unreachable"),
                    "reason names the trap: {reason}"
                );
            }
            other => panic!("{bad:?}: expected a trap, got {other:?}"),
        }
        assert_eq!(t.digest().unwrap(), digest, "{bad:?}");
        assert_eq!(t.snapshot_all().unwrap(), snap, "{bad:?}");
        assert_eq!(fs_digest(t.env()), files, "{bad:?}");
    }
    assert_eq!(
        line(&t.deliver_stdin(pid, b"two", false, FUEL).unwrap(), pid),
        "two#26\n"
    );
}

#[test]
fn pipeline_routes_stdout_to_the_next_stdin_and_propagates_eof() {
    let (mut t, m) = machine();
    let (a, _) = t
        .spawn(m.clone(), &["producer".into()], &[], None, FUEL)
        .unwrap();
    let (b, _) = t
        .spawn(m.clone(), &["consumer".into()], &[], Some(a), FUEL)
        .unwrap();
    assert!(
        t.spawn(m, &["second".into()], &[], Some(a), FUEL).is_err(),
        "one reader per pipe"
    );
    assert!(
        t.deliver_stdin(b, b"x", false, FUEL).is_err(),
        "a piped stdin takes no direct input"
    );
    let out = t.deliver_stdin(a, b"ab", false, FUEL).unwrap();
    assert!(
        out.stdout_of(a).is_empty(),
        "the producer's stdout went into the pipe"
    );
    // a wrote "ab" then "#12\n" (two writes); b may read them in one or two reads.
    let got = line(&out, b);
    assert!(got.starts_with("ab"), "{got:?}");
    assert!(got.contains("#12\n"), "{got:?}");
    let end = t.deliver_stdin(a, b"", true, FUEL).unwrap();
    assert_eq!(end.exits, vec![(a, 0), (b, 0)], "EOF flows down the pipe");
}

#[test]
fn kill_reports_137_and_ends_the_pipe() {
    let (mut t, m) = machine();
    let (a, _) = t
        .spawn(m.clone(), &["producer".into()], &[], None, FUEL)
        .unwrap();
    let (b, _) = t
        .spawn(m, &["consumer".into()], &[], Some(a), FUEL)
        .unwrap();
    let out = t.kill(a, FUEL).unwrap();
    assert_eq!(out.exits, vec![(a, 137), (b, 0)]);
    assert_eq!(t.info(a).unwrap().state, ProcState::Killed);
    assert!(t.live_pids().is_empty());
}

#[test]
fn sleep_wakes_on_logical_time_only() {
    let (mut t, m) = machine();
    let (pid, _) = t.spawn(m, &["echo".into()], &[], None, FUEL).unwrap();
    let out = t.deliver_stdin(pid, b"W", false, FUEL).unwrap();
    assert!(out.outputs.is_empty());
    assert_eq!(
        t.info(pid).unwrap().state,
        ProcState::Blocked(Wait {
            stdin: false,
            deadline_ns: Some(1000)
        })
    );
    let early = t.advance_time(999, FUEL).unwrap();
    assert!(early.outputs.is_empty(), "deadline not reached");
    let due = t.advance_time(1, FUEL).unwrap();
    assert_eq!(
        line(&due, pid),
        "W#11\n",
        "the wake-up output is attributed to the time input"
    );
}

#[test]
fn three_hundred_blocked_processes_hold_no_host_threads() {
    let threads_before = host_threads();
    let (mut t, m) = machine();
    let mut pids = Vec::new();
    for _ in 0..300 {
        pids.push(
            t.spawn(m.clone(), &["echo".into()], &[], None, FUEL)
                .unwrap()
                .0,
        );
    }
    assert_eq!(t.live_pids().len(), 300);
    assert!(t
        .list()
        .iter()
        .all(|p| matches!(p.state, ProcState::Blocked(_))));
    assert!(
        host_threads() <= threads_before + 1,
        "blocked processes must not hold threads"
    );
    for (i, pid) in pids.iter().enumerate().rev() {
        let msg = format!("p{i}");
        let out = t.deliver_stdin(*pid, msg.as_bytes(), false, FUEL).unwrap();
        assert_eq!(line(&out, *pid), format!("{msg}#1{}\n", msg.len() % 10));
    }
}

#[test]
fn pids_are_never_reused_and_rejected_spawns_leave_no_trace() {
    let (mut t, m) = machine();
    let (a, _) = t.spawn(m.clone(), &["a".into()], &[], None, FUEL).unwrap();
    t.deliver_stdin(a, b"", true, FUEL).unwrap();
    let (b, _) = t.spawn(m.clone(), &["b".into()], &[], None, FUEL).unwrap();
    assert_eq!((a, b), (1, 2));
    let digest = t.digest().unwrap();
    let (c, out) = t.spawn(m.clone(), &["c".into()], &[], None, 3).unwrap();
    assert_eq!(out.status, InputStatus::OutOfFuel);
    assert!(t.info(c).is_none());
    assert_eq!(t.digest().unwrap(), digest);
    assert_eq!(t.spawn(m, &["d".into()], &[], None, FUEL).unwrap().0, 3);
}

#[test]
fn corrupt_snapshots_are_refused_with_an_error() {
    let (mut t, m) = machine();
    let (pid, _) = t
        .spawn(m.clone(), &["echo".into()], &[], None, FUEL)
        .unwrap();
    t.deliver_stdin(pid, b"x", false, FUEL).unwrap();
    let bytes = t.snapshot_all().unwrap();
    let fs = new_fs();
    for cut in [0, 7, 12, bytes.len() / 2, bytes.len() - 1] {
        let mc = m.clone();
        let r = ProcessTable::restore(
            &bytes[..cut],
            fs.clone(),
            TableLimits::default(),
            move |_| Some(mc.clone()),
        );
        assert!(r.is_err(), "truncated at {cut}");
    }
    let r = ProcessTable::<TestHost>::restore(&bytes, fs, TableLimits::default(), |_| None);
    assert!(r
        .err()
        .unwrap()
        .to_string()
        .contains("resolver does not know"));
}

/// Threads of this test process (Linux).
fn host_threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Threads:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
        })
        .unwrap_or(0)
}

#[test]
fn spawn_pipeline_feeds_each_stage_from_the_previous_one() {
    let (mut t, m) = machine();
    let spec = |name: &str| replicode_runtime::process::SpawnSpec {
        module: m.clone(),
        args: vec![name.into()],
        vars: vec![],
        view: (),
    };
    let (pids, out) = t
        .spawn_pipeline(vec![spec("a"), spec("b"), spec("c")], None, FUEL)
        .unwrap();
    assert_eq!(pids, vec![1, 2, 3]);
    assert!(out.outputs.is_empty());
    let out = t.deliver_stdin(1, b"x", false, FUEL).unwrap();
    assert!(out.stdout_of(1).is_empty() && out.stdout_of(2).is_empty());
    assert!(line(&out, 3).starts_with('x'), "{:?}", line(&out, 3));
    let end = t.deliver_stdin(1, b"", true, FUEL).unwrap();
    assert_eq!(end.exits, vec![(1, 0), (2, 0), (3, 0)]);
}

#[path = "process_wasi/mod.rs"]
mod process_wasi;

#[path = "process_records/mod.rs"]
mod process_records;

/// Regression (time freeze): sleepers woken by a block shared one input, so a
/// sleeper that ran out of fuel rejected the clock advance with it, and every
/// later block paid for the same failed wake-up.
#[test]
fn a_sleeper_whose_wake_up_runs_out_of_fuel_is_killed_and_time_still_advances() {
    let (mut t, m) = machine();
    let (pid, _) = t.spawn(m, &["echo".into()], &[], None, FUEL).unwrap();
    t.deliver_stdin(pid, b"W", false, FUEL).unwrap();
    let wakes = t.wake_timers(1000, 1, 8).unwrap();
    assert_eq!(t.now_ns(), 1000, "time advances whatever the wake-ups do");
    assert_eq!(wakes.len(), 1);
    assert_eq!(wakes[0].pid, pid);
    assert_eq!(wakes[0].outcome.status, InputStatus::OutOfFuel);
    assert!(wakes[0].outcome.outputs.is_empty());
    let killed = wakes[0].killed.as_ref().expect("a rejected wake-up kills");
    assert_eq!(killed.exits, vec![(pid, 137)]);
    assert_eq!(t.info(pid).unwrap().state, ProcState::Killed);
    assert!(
        t.wake_timers(2000, FUEL, 8).unwrap().is_empty(),
        "nothing is due again at the next block"
    );
}

#[test]
fn each_due_sleeper_gets_its_own_wake_up_input() {
    let (mut t, m) = machine();
    let (a, _) = t
        .spawn(m.clone(), &["echo".into()], &[], None, FUEL)
        .unwrap();
    let (b, _) = t.spawn(m, &["echo".into()], &[], None, FUEL).unwrap();
    t.deliver_stdin(a, b"W", false, FUEL).unwrap();
    t.deliver_stdin(b, b"W", false, FUEL).unwrap();
    let wakes = t.wake_timers(5000, FUEL, 8).unwrap();
    let pids: Vec<u64> = wakes.iter().map(|w| w.pid).collect();
    assert_eq!(pids, vec![a, b]);
    for w in &wakes {
        assert_eq!(w.outcome.status, InputStatus::Ok);
        assert!(w.killed.is_none());
        let writers: Vec<u64> = w.outcome.outputs.iter().map(|o| o.pid).collect();
        assert_eq!(
            writers,
            vec![w.pid],
            "each input holds its own sleeper's output"
        );
    }
    assert_ne!(wakes[0].outcome.fuel_used, 0);
}

#[test]
fn wake_ups_past_the_per_block_bound_wait_for_the_next_block_and_are_not_run_by_other_inputs() {
    let (mut t, m) = machine();
    let mut pids = Vec::new();
    for _ in 0..3 {
        let (pid, _) = t
            .spawn(m.clone(), &["echo".into()], &[], None, FUEL)
            .unwrap();
        t.deliver_stdin(pid, b"W", false, FUEL).unwrap();
        pids.push(pid);
    }
    let (other, _) = t.spawn(m, &["echo".into()], &[], None, FUEL).unwrap();
    let first = t.wake_timers(1000, FUEL, 2).unwrap();
    assert_eq!(first.iter().map(|w| w.pid).collect::<Vec<_>>(), pids[..2]);
    assert_eq!(t.deferred_wakes(), 1);
    // Another input in the same block does not run (or pay for) the deferred one.
    let out = t.deliver_stdin(other, b"x", false, FUEL).unwrap();
    assert!(out.outputs.iter().all(|o| o.pid == other), "{out:?}");
    let next = t.wake_timers(2000, FUEL, 2).unwrap();
    assert_eq!(
        next.iter().map(|w| w.pid).collect::<Vec<_>>(),
        vec![pids[2]]
    );
    assert_eq!(t.deferred_wakes(), 0);
}
#[path = "host_costs/mod.rs"]
mod host_costs;
