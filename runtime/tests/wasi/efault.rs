//! Hostile pointers and lengths: every one is EFAULT (or the documented errno), the
//! host never panics, and nothing half-happens. Unsupported calls are ENOSYS.

use replicode_runtime::errno::Errno;
use replicode_runtime::fs::ROOT_INO;
use replicode_runtime::wasi::{Capture, Exit};

use crate::common::{build_ctx, call_wat, new_fs, plain_ctx, Opts};

/// Calls import `name` (with wasm signature `sig`) with `args` from a module that has
/// one page of memory, and returns the errno.
fn errno_of(name: &str, sig: &str, args: &str) -> i32 {
    let src = format!(
        r#"(module
            (import "wasi_snapshot_preview1" "{name}" (func $f {sig}))
            (memory (export "memory") 1)
            (data (i32.const 64) "file.txt")
            (func (export "test") (result i32) (call $f {args})))"#
    );
    let (r, _store) = call_wat(&src, plain_ctx());
    r.expect("a bad pointer is an errno, never a trap")
}

const FAULT: i32 = Errno::Fault as i32;
const END: &str = "(i32.const 65536)";

#[test]
fn fd_write_and_read_with_bad_iovecs() {
    let sig = "(param i32 i32 i32 i32) (result i32)";
    // iovec array past the end of memory.
    assert_eq!(
        errno_of(
            "fd_write",
            sig,
            &format!("(i32.const 1) {END} (i32.const 1) (i32.const 0)")
        ),
        FAULT
    );
    // An iovec count whose array length would overflow is past IOV_MAX, which
    // is EINVAL before any pointer is looked at (as on Linux).
    assert_eq!(
        errno_of(
            "fd_write",
            sig,
            "(i32.const 1) (i32.const 0) (i32.const 0x7fffffff) (i32.const 0)"
        ),
        Errno::Inval as i32
    );
    // nwritten pointer out of bounds.
    assert_eq!(
        errno_of(
            "fd_write",
            sig,
            "(i32.const 1) (i32.const 0) (i32.const 0) (i32.const -1)"
        ),
        FAULT
    );
    assert_eq!(
        errno_of(
            "fd_read",
            sig,
            &format!("(i32.const 0) {END} (i32.const 1) (i32.const 0)")
        ),
        FAULT
    );
}

#[test]
fn iovec_pointing_outside_memory_writes_nothing() {
    // iov[0] = {buf: 100, len: 5} is fine, iov[1] = {buf: 65534, len: 10} is not.
    let src = r#"(module
        (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 0) "\64\00\00\00\05\00\00\00\fe\ff\00\00\0a\00\00\00")
        (data (i32.const 100) "hello")
        (func (export "test") (result i32) (call $w (i32.const 1) (i32.const 0) (i32.const 2) (i32.const 200))))"#;
    let (fs, data) = new_fs(Default::default(), 0);
    let out = Capture::new();
    let ctx = build_ctx(&Opts::default(), fs, data, &out, &Capture::new());
    let (r, _store) = call_wat(src, ctx);
    assert_eq!(r.expect("errno"), FAULT);
    assert!(
        out.contents().is_empty(),
        "a partial write happened before EFAULT"
    );
}

#[test]
fn path_calls_with_bad_paths() {
    let open = "(param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)";
    // Path pointer out of bounds.
    assert_eq!(errno_of("path_open", open, "(i32.const 3) (i32.const 1) (i32.const 65530) (i32.const 100) (i32.const 1) (i64.const 0x7f) (i64.const 0) (i32.const 0) (i32.const 0)"), FAULT);
    // Path longer than PATH_MAX.
    assert_eq!(
        errno_of("path_open", open, "(i32.const 3) (i32.const 1) (i32.const 0) (i32.const 5000) (i32.const 1) (i64.const 0x7f) (i64.const 0) (i32.const 0) (i32.const 0)"),
        Errno::Nametoolong as i32
    );
    // Result pointer out of bounds: EFAULT before the file is created.
    let src = format!(
        r#"(module
            (import "wasi_snapshot_preview1" "path_open" (func $f {open}))
            (memory (export "memory") 1)
            (data (i32.const 64) "file.txt")
            (func (export "test") (result i32)
              (call $f (i32.const 3) (i32.const 1) (i32.const 64) (i32.const 8) (i32.const 1) (i64.const 0x7f) (i64.const 0) (i32.const 0) (i32.const -4))))"#
    );
    let (r, store) = call_wat(&src, plain_ctx());
    assert_eq!(r.expect("errno"), FAULT);
    let fs = store.data().wasi.shared_fs().lock().expect("fs");
    let data = fs.lookup(ROOT_INO, b"data").expect("data");
    assert_eq!(fs.lookup(data, b"file.txt"), Err(Errno::Noent));
    assert_eq!(store.data().wasi.fd_table().len(), 4, "no fd leaked");
    let two = "(param i32 i32 i32) (result i32)";
    assert_eq!(
        errno_of(
            "path_create_directory",
            two,
            &format!("(i32.const 3) {END} (i32.const 1)")
        ),
        FAULT
    );
    assert_eq!(
        errno_of(
            "path_unlink_file",
            two,
            "(i32.const 3) (i32.const -1) (i32.const 2)"
        ),
        FAULT
    );
    // Absolute paths and ".." are not capabilities.
    assert_eq!(
        errno_of(
            "path_create_directory",
            two,
            "(i32.const 3) (i32.const 64) (i32.const 0)"
        ),
        Errno::Noent as i32
    );
}

#[test]
fn other_calls_with_bad_pointers() {
    let two = "(param i32 i32) (result i32)";
    assert_eq!(
        errno_of("args_get", two, "(i32.const 65534) (i32.const 0)"),
        FAULT
    );
    assert_eq!(
        errno_of("args_sizes_get", two, "(i32.const 0) (i32.const 65533)"),
        FAULT
    );
    assert_eq!(
        errno_of("environ_sizes_get", two, "(i32.const -1) (i32.const 0)"),
        FAULT
    );
    assert_eq!(
        errno_of("random_get", two, "(i32.const 65000) (i32.const 1000)"),
        FAULT
    );
    assert_eq!(
        errno_of("random_get", two, "(i32.const -16) (i32.const 32)"),
        FAULT
    );
    assert_eq!(
        errno_of("random_get", two, "(i32.const 0) (i32.const 65536)"),
        0
    );
    assert_eq!(
        errno_of("fd_fdstat_get", two, "(i32.const 1) (i32.const 65530)"),
        FAULT
    );
    assert_eq!(
        errno_of("fd_filestat_get", two, "(i32.const 3) (i32.const 65500)"),
        FAULT
    );
    assert_eq!(
        errno_of("fd_prestat_get", two, "(i32.const 3) (i32.const 65535)"),
        FAULT
    );
    assert_eq!(
        errno_of("clock_res_get", two, "(i32.const 0) (i32.const 65529)"),
        FAULT
    );
    assert_eq!(
        errno_of("clock_res_get", two, "(i32.const 9) (i32.const 0)"),
        Errno::Inval as i32
    );
    let time = "(param i32 i64 i32) (result i32)";
    assert_eq!(
        errno_of(
            "clock_time_get",
            time,
            "(i32.const 0) (i64.const 0) (i32.const 65532)"
        ),
        FAULT
    );
    let poll = "(param i32 i32 i32 i32) (result i32)";
    assert_eq!(
        errno_of(
            "poll_oneoff",
            poll,
            "(i32.const 0) (i32.const 0) (i32.const 0x10000000) (i32.const 0)"
        ),
        FAULT
    );
    assert_eq!(
        errno_of(
            "poll_oneoff",
            poll,
            "(i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)"
        ),
        Errno::Inval as i32
    );
    let readdir = "(param i32 i32 i32 i64 i32) (result i32)";
    assert_eq!(
        errno_of(
            "fd_readdir",
            readdir,
            "(i32.const 3) (i32.const 65000) (i32.const 4096) (i64.const 0) (i32.const 0)"
        ),
        FAULT
    );
    let readlink = "(param i32 i32 i32 i32 i32 i32) (result i32)";
    assert_eq!(errno_of("path_readlink", readlink, "(i32.const 3) (i32.const 64) (i32.const 8) (i32.const 0) (i32.const 10) (i32.const -2)"), FAULT);
}

#[test]
fn bad_descriptors_are_ebadf() {
    let sig = "(param i32 i32 i32 i32) (result i32)";
    assert_eq!(
        errno_of(
            "fd_write",
            sig,
            "(i32.const 99) (i32.const 0) (i32.const 0) (i32.const 0)"
        ),
        Errno::Badf as i32
    );
    assert_eq!(
        errno_of(
            "fd_write",
            sig,
            "(i32.const -1) (i32.const 0) (i32.const 0) (i32.const 0)"
        ),
        Errno::Badf as i32
    );
    // Writing to stdin / reading from stdout.
    assert_eq!(
        errno_of(
            "fd_write",
            sig,
            "(i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)"
        ),
        Errno::Badf as i32
    );
    assert_eq!(
        errno_of(
            "fd_read",
            sig,
            "(i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0)"
        ),
        Errno::Badf as i32
    );
    assert_eq!(
        errno_of("fd_close", "(param i32) (result i32)", "(i32.const 77)"),
        Errno::Badf as i32
    );
    let seek = "(param i32 i64 i32 i32) (result i32)";
    assert_eq!(
        errno_of(
            "fd_seek",
            seek,
            "(i32.const 1) (i64.const 0) (i32.const 0) (i32.const 0)"
        ),
        Errno::Spipe as i32
    );
    assert_eq!(
        errno_of(
            "fd_prestat_get",
            "(param i32 i32) (result i32)",
            "(i32.const 4) (i32.const 0)"
        ),
        Errno::Badf as i32
    );
}

#[test]
fn unsupported_calls_are_enosys_not_traps() {
    let nosys = Errno::Nosys as i32;
    assert_eq!(
        errno_of("proc_raise", "(param i32) (result i32)", "(i32.const 9)"),
        nosys
    );
    assert_eq!(
        errno_of(
            "sock_accept",
            "(param i32 i32 i32) (result i32)",
            "(i32.const 3) (i32.const 0) (i32.const 0)"
        ),
        nosys
    );
    assert_eq!(
        errno_of(
            "sock_shutdown",
            "(param i32 i32) (result i32)",
            "(i32.const 3) (i32.const 0)"
        ),
        nosys
    );
    assert_eq!(
        errno_of(
            "sock_send",
            "(param i32 i32 i32 i32 i32) (result i32)",
            "(i32.const 3) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)"
        ),
        nosys
    );
    assert_eq!(
        errno_of(
            "sock_recv",
            "(param i32 i32 i32 i32 i32 i32) (result i32)",
            "(i32.const 3) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)"
        ),
        nosys
    );
    assert_eq!(errno_of("sched_yield", "(result i32)", ""), 0);
}

#[test]
fn module_without_memory_gets_efault() {
    let src = r#"(module
        (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
        (func (export "test") (result i32) (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 0))))"#;
    let (r, _store) = call_wat(src, plain_ctx());
    assert_eq!(r.expect("errno"), FAULT);
}

#[test]
fn proc_exit_ends_execution_with_a_typed_exit() {
    let src = r#"(module
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (func (export "test") (result i32) (call $exit (i32.const 7)) (i32.const 99)))"#;
    let (r, store) = call_wat(src, plain_ctx());
    let err = r.expect_err("proc_exit must not return");
    assert_eq!(err.downcast_ref::<Exit>(), Some(&Exit(7)));
    assert_eq!(store.data().wasi.exit_code(), Some(7));
}
