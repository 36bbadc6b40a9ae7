//! `replicode run --inputs FILE [--snapshot-at K]` against the built binary and
//! the C guests of `wasm_programs/` (built by `make -C wasm_programs`; a missing
//! guest fails the test).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::guest;

/// Fuel per input: plenty for the guests' answers, little enough that the
/// faulty_server `loop` input runs out within a fraction of a second.
const FUEL: &str = "50000000";

/// Runs `replicode run` with a fresh empty host dir at /data; returns its output.
fn run(program: &Path, inputs: &Path, extra: &[&str]) -> Output {
    let data = tempfile::tempdir().expect("tempdir");
    let dir = format!("{}::/data", data.path().display());
    Command::new(env!("CARGO_BIN_EXE_replicode"))
        .arg("run")
        .args(["--fuel", FUEL, "--dir", &dir, "--inputs"])
        .arg(inputs)
        .args(extra)
        .arg(program)
        .output()
        .expect("running replicode")
}

fn inputs_file(dir: &Path, lines: &str) -> PathBuf {
    let path = dir.join("inputs.txt");
    std::fs::write(&path, lines).expect("write inputs");
    path
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The lines of the digest trailer, checked for shape (64 hex digits each).
fn digests(transcript: &str) -> Vec<&str> {
    let tail: Vec<&str> = transcript.lines().rev().take(2).collect();
    assert!(
        tail[1].starts_with("table digest: ") && tail[0].starts_with("fs digest: "),
        "trailer: {tail:?}"
    );
    for line in &tail {
        let hex = line.rsplit(' ').next().unwrap_or_default();
        assert!(
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "digest line {line:?}"
        );
    }
    tail
}

#[test]
fn echo_server_answers_each_input_under_its_header() {
    let prog = guest("echo_server");
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = inputs_file(tmp.path(), "hello\nsecond line\n\nlast without newline");
    let out = run(&prog, &inputs, &[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let body: String = text
        .lines()
        .take_while(|l| !l.starts_with("table digest"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        body,
        "== start\n\
         == input 1\necho: hello\n\
         == input 2\necho: second line\n\
         == input 3\necho: \n\
         == input 4\n\
         == eof\necho: last without newline\n\
         -- exit: pid 1 exited with code 0\n"
    );
    digests(&text);
}

#[test]
fn kv_server_transcript_is_identical_with_a_snapshot_after_any_input() {
    let prog = guest("kv_server");
    let tmp = tempfile::tempdir().expect("tempdir");
    let script = "SET a 1\nSET b 2\nGET a\nSET ab 3\nDEL b\nGET b\nSCAN a\nBOGUS\nGET ab\n";
    let inputs = inputs_file(tmp.path(), script);
    let reference = run(&prog, &inputs, &[]);
    assert_eq!(
        reference.status.code(),
        Some(0),
        "stderr: {}",
        stderr(&reference)
    );
    let text = stdout(&reference);
    for expected in [
        "== input 3\nVALUE 1\n",
        "== input 6\nNOT_FOUND\n",
        "== input 7\nKEY a 1\nKEY ab 3\nEND\n",
        "== input 8\nERR unknown command 'BOGUS'\n",
        "== input 9\nVALUE 3\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    digests(&text);
    let n = script.lines().count();
    for k in [0, 1, n / 2, n] {
        let k_arg = k.to_string();
        let resumed = run(&prog, &inputs, &["--snapshot-at", &k_arg]);
        assert_eq!(
            resumed.status.code(),
            Some(0),
            "--snapshot-at {k}: stderr: {}",
            stderr(&resumed)
        );
        assert_eq!(
            stdout(&resumed),
            text,
            "--snapshot-at {k}: transcript differs"
        );
        let note = format!("replicode: snapshot after input {k}: ");
        assert!(
            stderr(&resumed).contains(&note),
            "--snapshot-at {k}: no note in stderr: {}",
            stderr(&resumed)
        );
        assert!(
            !stdout(&resumed).contains("snapshot"),
            "the note must not reach stdout"
        );
    }
}

#[test]
fn different_inputs_give_different_digests() {
    let prog = guest("kv_server");
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = stdout(&run(&prog, &inputs_file(tmp.path(), "SET a 1\n"), &[]));
    let b = stdout(&run(&prog, &inputs_file(tmp.path(), "SET a 2\n"), &[]));
    assert_ne!(digests(&a), digests(&b));
}

#[test]
fn an_input_out_of_fuel_is_reported_rolled_back_and_the_next_input_answers() {
    let prog = guest("faulty_server");
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = inputs_file(tmp.path(), "first\nloop\nthird\ntrap\nfifth\n");
    let out = run(&prog, &inputs, &[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    // Rejected inputs show no output (it was rolled back), then the reason.
    assert!(
        text.contains("== input 1\ninput 1: first\nok 1\n"),
        "{text}"
    );
    assert!(text.contains("== input 2\n-- out of fuel after "), "{text}");
    assert!(
        text.contains("; input rolled back\n== input 3\ninput 2: third\nok 2\n"),
        "{text}"
    );
    assert!(text.contains("== input 4\n-- trap in pid 1: "), "{text}");
    assert!(
        text.contains("== input 5\ninput 3: fifth\nok 3\n"),
        "{text}"
    );
    // And the same through a snapshot right after the rejected input.
    let resumed = run(&prog, &inputs, &["--snapshot-at", "2"]);
    assert_eq!(stdout(&resumed), text);
}

#[test]
fn snapshot_at_past_the_last_input_is_refused() {
    let prog = guest("echo_server");
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = inputs_file(tmp.path(), "one\ntwo\n");
    let out = run(&prog, &inputs, &["--snapshot-at", "3"]);
    assert_eq!(out.status.code(), Some(120));
    assert!(
        stderr(&out).contains("--snapshot-at 3: ") && stderr(&out).contains("has only 2 inputs"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_server_that_exits_ends_the_run_with_its_exit_code_and_later_inputs_are_not_delivered() {
    let prog = guest("faulty_server");
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = inputs_file(tmp.path(), "one\nexit 7\nnever\n");
    let out = run(&prog, &inputs, &[]);
    assert_eq!(out.status.code(), Some(7), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            "== input 2\ninput 2: exit 7\n-- exit: pid 1 exited with code 7\ntable digest: "
        ),
        "{text}"
    );
    assert!(
        !text.contains("== input 3") && !text.contains("== eof"),
        "{text}"
    );
}

/// Regression: the Asyncify unwind buffer used to be a page appended after
/// memory at spawn; wasi-libc's allocator took it into the heap once the heap
/// grew (~55 KiB of keys), and the next suspension overwrote live allocations
/// (out-of-bounds trap around the 900th SET).
#[test]
fn kv_server_heap_growth_past_the_initial_memory_survives_suspensions() {
    let kv = guest("kv_server");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lines = String::new();
    for i in 0..1500 {
        lines.push_str(&format!("SET key{i:05} {}\n", "v".repeat(64)));
    }
    lines.push_str("GET key00007\n");
    let out = run(&kv, &inputs_file(dir.path(), &lines), &[]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        stderr(&out)
    );
    assert!(
        !text.contains("-- trap"),
        "a suspension corrupted the heap:\n{}",
        &text[text.find("-- trap").unwrap_or(0)..][..200.min(text.len())]
    );
    assert_eq!(text.matches("\nOK\n").count(), 1500);
    assert!(text.contains(&format!("VALUE {}\n", "v".repeat(64))));
}
