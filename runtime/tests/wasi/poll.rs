//! poll_oneoff: clock subscriptions against logical time, and fd readiness.

use replicode_runtime::wasi::Pipe;

use crate::common::{run_guest, Opts};

#[test]
fn sleeps_take_exactly_the_logical_time_asked_for() {
    let opts = Opts {
        args: vec!["100".into(), "2".into()],
        stdin: Some(Pipe::with_contents(0, b"")),
        ..Opts::default()
    };
    let out = run_guest("poll_timeout", opts);
    out.assert_exit(0);
    assert!(out.stdout.contains("round 1: eof"), "{}", out.stdout);
    assert!(out.stdout.contains("poll sleep: 100 ms"), "{}", out.stdout);
    assert!(out.stdout.contains("nanosleep: 100 ms"), "{}", out.stdout);
}

#[test]
fn ready_stdin_wins_over_the_timeout() {
    let opts = Opts {
        args: vec!["100".into(), "2".into()],
        stdin: Some(Pipe::with_contents(0, b"abc")),
        ..Opts::default()
    };
    let out = run_guest("poll_timeout", opts);
    out.assert_exit(0);
    assert!(
        out.stdout.contains("round 1: read 3 bytes after 0 ms: abc"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("round 2: eof"), "{}", out.stdout);
}

#[test]
fn open_empty_stdin_without_asyncify_times_out_in_logical_time() {
    let opts = Opts {
        args: vec!["100".into(), "1".into()],
        stdin: Some(Pipe::new(0)),
        ..Opts::default()
    };
    let out = run_guest("poll_timeout", opts);
    out.assert_exit(0);
    assert!(
        out.stdout.contains("round 1: timeout after 100 ms"),
        "{}",
        out.stdout
    );
}
