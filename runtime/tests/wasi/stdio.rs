//! fd_read / fd_write on stdio: pipes, sinks, O_NONBLOCK.

use replicode_runtime::wasi::Pipe;

use crate::common::{run_guest, Opts};

#[test]
fn nonblocking_read_of_empty_stdin_is_eagain() {
    let out = run_guest(
        "nonblock",
        Opts {
            stdin: Some(Pipe::new(0)),
            ..Opts::default()
        },
    );
    out.assert_exit(0);
    assert!(
        out.stdout.contains("nonblock: read -> EAGAIN"),
        "{}",
        out.stdout
    );
}

#[test]
fn stdin_bytes_then_eof() {
    let out = run_guest(
        "nonblock",
        Opts {
            args: vec!["block".into()],
            stdin: Some(Pipe::with_contents(0, b"ping")),
            ..Opts::default()
        },
    );
    out.assert_exit(0);
    assert!(
        out.stdout.contains("nonblock: read 4 bytes: ping"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("blocking: read -> eof"),
        "{}",
        out.stdout
    );
}
