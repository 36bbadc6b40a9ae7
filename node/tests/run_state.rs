//! `replicode run --state DIR` against the built binary: files persist across runs in
//! a merkle-fs store, each clean run commits one version, a failed run commits
//! nothing. Uses the C guests of `wasm_programs/` (`make -C wasm_programs` builds
//! them; a missing guest fails the test).

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::guest;

/// `replicode run --state STATE --stdin <stdin> EXTRA.. PROGRAM ARGS..`.
fn run(state: &Path, stdin: &str, extra: &[&str], program: &Path, args: &[&str]) -> Output {
    let input = tempfile::NamedTempFile::new().expect("stdin file");
    std::fs::write(input.path(), stdin).expect("write stdin");
    Command::new(env!("CARGO_BIN_EXE_replicode"))
        .arg("run")
        .arg("--state")
        .arg(state)
        .arg("--stdin")
        .arg(input.path())
        .args(extra)
        .arg(program)
        .args(args)
        .output()
        .expect("running replicode")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What the run said about the state: `(committed, root hex, height)`.
fn state_line(out: &Output) -> (bool, String, u64) {
    let err = stderr(out);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("replicode: state "))
        .collect();
    assert_eq!(lines.len(), 1, "one state line expected in:\n{err}");
    let line = lines[0];
    let committed = line.starts_with("replicode: state root ");
    assert!(
        committed || line.starts_with("replicode: state unchanged, nothing committed: root "),
        "{line}"
    );
    let (_, rest) = line.split_once(" root ").expect("root");
    let (root, height) = rest.split_once(" (height ").expect("height");
    assert!(
        root.len() == 64 && root.bytes().all(|b| b.is_ascii_hexdigit()),
        "{line}"
    );
    let height = height.trim_end_matches(')').parse().expect("height number");
    (committed, root.to_string(), height)
}

#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

/// Copies a (closed) store directory file by file.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir copy");
    for entry in std::fs::read_dir(from).expect("read store dir") {
        let entry = entry.expect("entry");
        assert!(entry.file_type().expect("type").is_file(), "{entry:?}");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

const FIRST: &str = "SET a 1\nSET b two words\n";
const SECOND: &str = "GET a\nGET b\nSET c 3\nSCAN\n";
const SECOND_OUT: &str = "VALUE 1\nVALUE two words\nOK\nKEY a 1\nKEY b two words\nKEY c 3\nEND\n";

#[test]
fn a_second_run_sees_and_extends_the_first_runs_files() {
    let kv = guest("kv_server");
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");

    // First run: a fresh store; kv_server appends two records to /kv.log.
    let first = run(&state, FIRST, &[], &kv, &["/kv.log"]);
    assert_exit(&first, 0);
    assert_eq!(stdout(&first), "OK\nOK\n");
    assert!(
        stderr(&first).contains("replayed 0 records"),
        "{}",
        stderr(&first)
    );
    let (committed, root1, height1) = state_line(&first);
    assert!(committed);
    assert_eq!(height1, 1, "the fresh store is at height 0");

    // A copy of the store as the first run left it.
    let copy = tmp.path().join("copy");
    copy_dir(&state, &copy);

    // Second run: replays the log the first one wrote, reads it back, appends.
    let second = run(&state, SECOND, &[], &kv, &["/kv.log"]);
    assert_exit(&second, 0);
    assert!(
        stderr(&second).contains("replayed 2 records (2 keys)"),
        "{}",
        stderr(&second)
    );
    assert_eq!(stdout(&second), SECOND_OUT);
    let (committed, root2, height2) = state_line(&second);
    assert!(committed);
    assert_eq!(height2, 2);
    assert_ne!(root2, root1, "the append changes the root");

    // The identical second run on the copy gives the identical output and root.
    let again = run(&copy, SECOND, &[], &kv, &["/kv.log"]);
    assert_exit(&again, 0);
    assert_eq!(stdout(&again), SECOND_OUT);
    assert_eq!(state_line(&again), (true, root2.clone(), 2));

    // And so does the whole history replayed on a fresh store.
    let fresh = tmp.path().join("fresh");
    assert_eq!(
        state_line(&run(&fresh, FIRST, &[], &kv, &["/kv.log"])).1,
        root1
    );
    assert_eq!(
        state_line(&run(&fresh, SECOND, &[], &kv, &["/kv.log"])).1,
        root2
    );

    // A third run sees the third key the second one added.
    let third = run(&state, "GET c\n", &[], &kv, &["/kv.log"]);
    assert_exit(&third, 0);
    assert_eq!(stdout(&third), "VALUE 3\n");
    let (committed, _, height3) = state_line(&third);
    assert!(committed);
    assert_eq!(height3, 3);
}

#[test]
fn a_trapped_or_starved_run_commits_nothing() {
    let (kv, faulty) = (guest("kv_server"), guest("faulty_server"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let first = run(&state, FIRST, &[], &kv, &["/kv.log"]);
    assert_exit(&first, 0);
    let (_, root1, _) = state_line(&first);
    let before = tmp.path().join("before");
    copy_dir(&state, &before);

    // faulty_server appends to its log (written through) before it traps / spins.
    let trapped = run(&state, "hello\ntrap\n", &[], &faulty, &["/kv.log"]);
    assert_exit(&trapped, 122);
    assert!(
        stdout(&trapped).contains("input 2: trap"),
        "{}",
        stdout(&trapped)
    );
    assert_eq!(state_line(&trapped), (false, root1.clone(), 1));
    let starved = run(
        &state,
        "loop\n",
        &["--fuel", "50000000"],
        &faulty,
        &["/kv.log"],
    );
    assert_exit(&starved, 123);
    assert_eq!(state_line(&starved), (false, root1.clone(), 1));

    // Nothing of either run is left: kv_server still finds a valid log of 2
    // records (faulty_server's "K line" records would make it refuse to start),
    // and the next version is the one the untouched copy gives.
    let next = run(&state, SECOND, &[], &kv, &["/kv.log"]);
    assert_exit(&next, 0);
    assert_eq!(stdout(&next), SECOND_OUT);
    let on_copy = run(&before, SECOND, &[], &kv, &["/kv.log"]);
    assert_eq!(state_line(&next), state_line(&on_copy));
    assert_eq!(state_line(&next).2, 2);
}

#[test]
fn an_exit_with_a_failure_code_still_commits() {
    let faulty = guest("faulty_server");
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let out = run(&state, "one\nexit 3\n", &[], &faulty, &["/f.log"]);
    assert_exit(&out, 3);
    let (committed, _, height) = state_line(&out);
    assert!(committed && height == 1, "{}", stderr(&out));
}

#[test]
fn dir_trees_are_copied_into_the_state_once() {
    let kv = guest("kv_server");
    let tmp = tempfile::tempdir().expect("tempdir");
    let host = tmp.path().join("host");
    std::fs::create_dir(&host).expect("mkdir host");
    std::fs::write(host.join("kv.log"), "S seeded yes\n").expect("seed log");
    let dir = format!("{}::/data", host.display());
    let state = tmp.path().join("state");

    let first = run(&state, "GET seeded\n", &["--dir", &dir], &kv, &[]);
    assert_exit(&first, 0);
    assert_eq!(stdout(&first), "VALUE yes\n");
    let (_, root1, _) = state_line(&first);
    std::fs::remove_file(host.join("kv.log")).expect("host file goes away");

    // The copy is in the state now (the host file is gone) ...
    let second = run(&state, "SET k v\n", &[], &kv, &[]);
    assert_exit(&second, 0);
    assert!(
        stderr(&second).contains("replayed 1 records"),
        "{}",
        stderr(&second)
    );
    let (_, root2, _) = state_line(&second);
    // ... and copying over existing names is refused before the guest runs.
    std::fs::write(host.join("kv.log"), "S other no\n").expect("seed log");
    let third = run(&state, "GET k\n", &["--dir", &dir], &kv, &[]);
    assert_exit(&third, 120);
    assert_eq!(stdout(&third), "");
    assert_eq!(state_line(&third), (false, root2.clone(), 2));
    assert_ne!(root1, root2);
}

#[test]
fn logical_time_and_seed_work_as_without_state() {
    let prog = guest("clock_random");
    let tmp = tempfile::tempdir().expect("tempdir");
    let flags = ["--seed", "7", "--time", "2024-02-03T04:05:06Z"];
    let with_state = run(&tmp.path().join("state"), "", &flags, &prog, &[]);
    assert_exit(&with_state, 0);
    let plain = Command::new(env!("CARGO_BIN_EXE_replicode"))
        .arg("run")
        .args(flags)
        .arg(&prog)
        .output()
        .expect("running replicode");
    assert_exit(&plain, 0);
    assert!(
        stdout(&plain).contains("2024-02-03T04:05:06Z"),
        "{}",
        stdout(&plain)
    );
    assert_eq!(stdout(&with_state), stdout(&plain));
}
