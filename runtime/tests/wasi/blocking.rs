//! The blocking protocol: a read of an empty, open pipe suspends the guest through
//! Asyncify, or fails with `WouldBlockForever` when the guest cannot be suspended.
//!
//! The asyncify exports here are hand-written stand-ins that only track the state
//! variable, which is all the host side of the protocol touches.

use replicode_runtime::wasi::{BlockOn, Capture, Pipe, WouldBlockForever};

use crate::common::{build_ctx, engine, linker, new_fs, Host, Opts};
use wasmtime::{Module, Store};

/// fd_read(0) of 4 bytes into 100.., nread at 8; `test` returns the errno.
const READER: &str = r#"(module
    (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 0) "\64\00\00\00\04\00\00\00")
    (global $state (mut i32) (i32.const 0))
    (global $data (mut i32) (i32.const 0))
    (func (export "test") (result i32) (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (func (export "nread") (result i32) (i32.load (i32.const 8)))
    (func (export "state") (result i32) (global.get $state))
    (func (export "unwound_with") (result i32) (global.get $data))
    ASYNCIFY)"#;

const ASYNCIFY: &str = r#"
    (func (export "asyncify_get_state") (result i32) (global.get $state))
    (func (export "asyncify_start_unwind") (param i32) (global.set $state (i32.const 1)) (global.set $data (local.get 0)))
    (func (export "asyncify_stop_unwind") (global.set $state (i32.const 0)))
    (func (export "asyncify_start_rewind") (param i32) (global.set $state (i32.const 2)))
    (func (export "asyncify_stop_rewind") (global.set $state (i32.const 0)))"#;

fn setup(
    with_asyncify: bool,
    stdin: &Pipe,
    data_ptr: Option<u32>,
) -> (Store<Host>, wasmtime::Instance) {
    let src = READER.replace("ASYNCIFY", if with_asyncify { ASYNCIFY } else { "" });
    let module = Module::new(engine(), src).expect("wat");
    let (fs, data) = new_fs(Default::default(), 0);
    let opts = Opts {
        stdin: Some(stdin.clone()),
        ..Opts::default()
    };
    let mut wasi = build_ctx(&opts, fs, data, &Capture::new(), &Capture::new());
    wasi.set_asyncify_data_ptr(data_ptr);
    let mut store = Store::new(engine(), Host { wasi });
    store.set_fuel(1_000_000).expect("fuel");
    let instance = linker()
        .instantiate(&mut store, &module)
        .expect("instantiate");
    (store, instance)
}

fn call(store: &mut Store<Host>, inst: &wasmtime::Instance, name: &str) -> wasmtime::Result<i32> {
    inst.get_typed_func::<(), i32>(&mut *store, name)?
        .call(&mut *store, ())
}

#[test]
fn without_asyncify_a_blocking_read_is_would_block_forever() {
    let stdin = Pipe::new(0);
    let (mut store, inst) = setup(false, &stdin, None);
    let err = call(&mut store, &inst, "test").expect_err("must not return");
    let wb = err
        .downcast_ref::<WouldBlockForever>()
        .expect("typed error");
    assert_eq!(wb.reason, BlockOn::Read { fd: 0 });
}

#[test]
fn asyncify_exports_without_a_data_pointer_cannot_suspend() {
    let stdin = Pipe::new(0);
    let (mut store, inst) = setup(true, &stdin, None);
    let err = call(&mut store, &inst, "test").expect_err("must not return");
    assert!(err.downcast_ref::<WouldBlockForever>().is_some(), "{err:?}");
}

#[test]
fn blocking_read_unwinds_then_rewinds_and_reads() {
    let stdin = Pipe::new(0);
    let (mut store, inst) = setup(true, &stdin, Some(1024));
    // First call: nothing to read, so the import starts an unwind and returns 0.
    assert_eq!(call(&mut store, &inst, "test").expect("unwinds"), 0);
    assert_eq!(call(&mut store, &inst, "state").expect("state"), 1);
    assert_eq!(call(&mut store, &inst, "unwound_with").expect("ptr"), 1024);
    assert_eq!(store.data().wasi.blocked(), Some(&BlockOn::Read { fd: 0 }));

    // Executor: stop the unwind, deliver input, start the rewind, re-enter.
    inst.get_typed_func::<(), ()>(&mut store, "asyncify_stop_unwind")
        .expect("f")
        .call(&mut store, ())
        .expect("stop");
    stdin.push(b"data!");
    inst.get_typed_func::<i32, ()>(&mut store, "asyncify_start_rewind")
        .expect("f")
        .call(&mut store, 1024)
        .expect("rewind");
    assert_eq!(call(&mut store, &inst, "test").expect("reads"), 0);
    assert_eq!(
        call(&mut store, &inst, "state").expect("state"),
        0,
        "the import stopped the rewind"
    );
    assert_eq!(call(&mut store, &inst, "nread").expect("nread"), 4);
    assert_eq!(store.data().wasi.blocked(), None);
    let mem = inst.get_memory(&mut store, "memory").expect("memory");
    assert_eq!(&mem.data(&store)[100..104], b"data");
    assert_eq!(stdin.available(), 1);
}

#[test]
fn closed_empty_pipe_is_eof_not_a_block() {
    let stdin = Pipe::with_contents(0, b"");
    let (mut store, inst) = setup(true, &stdin, Some(1024));
    assert_eq!(call(&mut store, &inst, "test").expect("eof"), 0);
    assert_eq!(call(&mut store, &inst, "nread").expect("nread"), 0);
    assert_eq!(call(&mut store, &inst, "state").expect("state"), 0);
}

#[test]
fn poll_on_an_open_pipe_blocks_with_the_deadline() {
    // One fd_read subscription on stdin and one relative 5 ms clock subscription.
    let src = r#"(module
        (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 8) "\01")
        (data (i32.const 56) "\00")
        (data (i32.const 72) "\40\4b\4c\00")
        (func (export "test") (result i32) (call $poll (i32.const 0) (i32.const 1000) (i32.const 2) (i32.const 2000)))
        (func (export "nevents") (result i32) (i32.load (i32.const 2000)))
        (func (export "event_type") (result i32) (i32.load8_u (i32.const 1010))))"#;
    let module = Module::new(engine(), src).expect("wat");
    let (fs, data) = new_fs(Default::default(), 0);
    let opts = Opts {
        stdin: Some(Pipe::new(0)),
        ..Opts::default()
    };
    let wasi = build_ctx(&opts, fs, data, &Capture::new(), &Capture::new());
    let mut store = Store::new(engine(), Host { wasi });
    store.set_fuel(1_000_000).expect("fuel");
    let inst = linker()
        .instantiate(&mut store, &module)
        .expect("instantiate");
    // Without asyncify the clock fires by sleeping 5 ms of logical time.
    assert_eq!(call(&mut store, &inst, "test").expect("poll"), 0);
    assert_eq!(call(&mut store, &inst, "nevents").expect("n"), 1);
    assert_eq!(
        call(&mut store, &inst, "event_type").expect("type"),
        0,
        "clock event"
    );
    // With a data pointer but no exports, the block cannot happen: typed error.
    store.data_mut().wasi.set_asyncify_data_ptr(Some(4096));
    let err = call(&mut store, &inst, "test").expect_err("cannot suspend");
    let wb = err.downcast_ref::<WouldBlockForever>().expect("typed");
    match &wb.reason {
        BlockOn::Poll {
            fds,
            deadline_ns,
            started_ns,
        } => {
            assert_eq!(fds, &vec![0]);
            assert_eq!(*deadline_ns, Some(started_ns + 5_000_000));
        }
        other => panic!("unexpected {other:?}"),
    }
}
