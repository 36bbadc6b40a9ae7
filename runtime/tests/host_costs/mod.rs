//! Host calls pay for the work they do (issue 11, "Host calls are not metered by
//! size"): each attack that was once nearly free now runs out of fuel or is
//! capped, an unaffordable call does no work, and the fuel charged is the same on
//! every run and across a snapshot and restore.
//!
//! Two harnesses: WAT guests under the process table (what validators run; an
//! out-of-fuel input is rejected atomically), and WAT calls on a plain store where
//! a test needs an errno or the fuel of one call.

use std::sync::Arc;

use replicode_runtime::config::Limits;
use replicode_runtime::fs::{self, FileSystem, FsLimits, Ino, SharedFs, ROOT_INO};
use replicode_runtime::process::wasi_host::{WasiEnv, WasiProcess};
use replicode_runtime::process::{
    InputOutcome, InputStatus, ProcessModule, ProcessTable, StreamKind, TableLimits,
};
use replicode_runtime::wasi::cost;
use replicode_runtime::wasi::{add_to_linker, WasiCtx, WasiCtxBuilder};
use wasmtime::{Engine, Linker, Store};

const MIB: u64 = 1 << 20;

// ---- process-table harness -------------------------------------------------

fn module(engine: &Engine, wat: &str) -> Arc<ProcessModule<WasiProcess>> {
    let wasm = wat::parse_str(wat).expect("valid wat");
    let bytes = super::process_support::asyncify(
        &wasm,
        "wasi_snapshot_preview1.fd_read,wasi_snapshot_preview1.poll_oneoff",
    );
    Arc::new(ProcessModule::new(engine, &bytes).expect("process module"))
}

fn table(limits: TableLimits) -> ProcessTable<WasiProcess> {
    let fs = fs::shared(fs::mem::MemFs::new(FsLimits::default(), 0));
    let mut env = WasiEnv::new(fs);
    env.fs_limits = Some(FsLimits::default());
    ProcessTable::new(env, limits)
}

/// Spawns `wat` as pid 1 under `fuel`: the spawn input runs it until it ends.
fn spawn(wat: &str, fuel: u64, limits: TableLimits) -> InputOutcome {
    let engine = super::process_support::new_engine();
    let mut t = table(limits);
    let (_, out) = t
        .spawn(module(&engine, wat), &["guest".into()], &[], None, fuel)
        .expect("spawn");
    out
}

/// Imports every guest below may use, a 1 MiB buffer at 64 KiB (above the
/// unwind buffer) and `$iov` building one iovec.
const PRELUDE: &str = r#"
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (func $iov (param $at i32) (param $buf i32) (param $len i32)
    (i32.store (local.get $at) (local.get $buf))
    (i32.store (i32.add (local.get $at) (i32.const 4)) (local.get $len)))
"#;

fn guest(body: &str, pages: u32) -> String {
    format!("(module {PRELUDE} (memory (export \"memory\") {pages}) {body})")
}

/// The issue's attack: one `fd_write` of 1024 iovecs that all name the same
/// 1 MiB buffer (1 GiB of output). Exits 0 if the guest was told all of it was
/// written.
fn thousand_iovecs_guest() -> String {
    guest(
        r#"(func (export "_start")
            (local $i i32)
            (loop $fill
              (call $iov (i32.add (i32.const 1114112) (i32.shl (local.get $i) (i32.const 3)))
                         (i32.const 65536) (i32.const 1048576))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $fill (i32.lt_u (local.get $i) (i32.const 1024))))
            (if (call $fd_write (i32.const 1) (i32.const 1114112) (i32.const 1024) (i32.const 1179648))
              (then (call $exit (i32.const 98))))
            (call $exit (i32.ne (i32.load (i32.const 1179648)) (i32.const 1073741824))))"#,
        20,
    )
}

#[test]
fn fd_write_1024_iovecs_over_one_mib_is_charged_per_byte() {
    // Once 1.7% of a transaction's fuel; now a budget below 1 GiB of fuel cannot pay.
    let out = spawn(
        &thousand_iovecs_guest(),
        500_000_000,
        TableLimits::default(),
    );
    assert_eq!(out.status, InputStatus::OutOfFuel);
    assert_eq!(out.fuel_used, 500_000_000);
    assert!(out.outputs.is_empty());

    // Affordable, it is paid per byte and its output is capped, not buffered.
    let out = spawn(
        &thousand_iovecs_guest(),
        2_000_000_000,
        TableLimits::default(),
    );
    assert_eq!(out.status, InputStatus::Ok);
    assert_eq!(out.exits, vec![(1, 0)], "the guest saw all 1 GiB written");
    assert!(
        out.fuel_used >= (1 << 30) * cost::COPY_BYTE,
        "{}",
        out.fuel_used
    );
    let stdout = &out.outputs[0];
    assert_eq!(
        stdout.bytes.len() as u64,
        Limits::default().max_output_bytes
    );
    assert!(stdout.truncated);
}

#[test]
fn write_loop_runs_out_of_fuel_before_memory() {
    // `for (;;) write(1, buf, 1 << 20);` — under the default per-input fuel it
    // once buffered 20 GB of output; now every byte is paid and at most the cap
    // is kept, so it ends out of fuel having held about 1 MiB.
    let wat = guest(
        r#"(func (export "_start")
            (call $iov (i32.const 1114112) (i32.const 65536) (i32.const 1048576))
            (loop $forever
              (drop (call $fd_write (i32.const 1) (i32.const 1114112) (i32.const 1) (i32.const 1179648)))
              (br $forever)))"#,
        20,
    );
    let fuel = Limits::default().fuel;
    let out = spawn(&wat, fuel, TableLimits::default());
    assert_eq!(out.status, InputStatus::OutOfFuel);
    assert_eq!(out.fuel_used, fuel);
    assert!(out.outputs.is_empty(), "a rejected input outputs nothing");
}

#[test]
fn random_get_16_mib_is_charged_per_byte() {
    let wat = guest(
        r#"(func (export "_start")
            (call $exit (call $random_get (i32.const 65536) (i32.const 16777216))))"#,
        260,
    );
    let price = 16 * MIB * cost::RANDOM_BYTE;
    let out = spawn(&wat, price, TableLimits::default());
    assert_eq!(out.status, InputStatus::OutOfFuel, "was ~26 fuel");
    let out = spawn(&wat, 2 * price, TableLimits::default());
    assert_eq!(out.status, InputStatus::Ok);
    assert_eq!(out.exits, vec![(1, 0)]);
    assert!(out.fuel_used > price, "{}", out.fuel_used);
}

#[test]
fn output_past_the_per_input_cap_is_dropped_with_a_marker() {
    // Three writes of 1000 bytes to stdout, then 10 to stderr, against a cap of
    // 1000 bytes per input. The guest exits 0 only if every write reported all
    // of its bytes written: programs behave the same whatever the cap.
    let wat = guest(
        r#"(func $write (param $fd i32) (param $len i32)
            (call $iov (i32.const 1114112) (i32.const 65536) (local.get $len))
            (if (call $fd_write (local.get $fd) (i32.const 1114112) (i32.const 1) (i32.const 1179648))
              (then (call $exit (i32.const 98))))
            (if (i32.ne (i32.load (i32.const 1179648)) (local.get $len))
              (then (call $exit (i32.const 99)))))
          (func (export "_start")
            (call $write (i32.const 1) (i32.const 1000))
            (call $write (i32.const 1) (i32.const 1000))
            (call $write (i32.const 1) (i32.const 1000))
            (call $write (i32.const 2) (i32.const 10)))"#,
        20,
    );
    let limits = TableLimits {
        max_output_bytes: 1000,
        ..TableLimits::default()
    };
    let run = || spawn(&wat, 100_000_000, limits);
    let out = run();
    assert_eq!(out.status, InputStatus::Ok);
    assert_eq!(out.exits, vec![(1, 0)]);
    let streams: Vec<(StreamKind, usize, bool)> = out
        .outputs
        .iter()
        .map(|o| (o.stream, o.bytes.len(), o.truncated))
        .collect();
    assert_eq!(
        streams,
        vec![
            (StreamKind::Stdout, 1000, true),
            (StreamKind::Stderr, 0, true)
        ],
        "each stream that lost bytes is marked once"
    );
    assert_eq!(run(), out, "the cut and the fuel are deterministic");
}

/// `kv_server` fed the same inputs: the fuel of every input, the outputs and
/// the table digest, with an optional snapshot and restore into a fresh engine
/// before input `restore_at`.
fn kv_run(restore_at: Option<usize>) -> Vec<(u64, Vec<u8>, [u8; 32])> {
    let path = format!(
        "{}/../wasm_programs/build/kv_server.wasm",
        env!("CARGO_MANIFEST_DIR")
    );
    let wasm = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}: run make"));
    let load = |engine: &Engine| {
        let bytes = super::process_support::asyncify(
            &wasm,
            "wasi_snapshot_preview1.fd_read,wasi_snapshot_preview1.poll_oneoff",
        );
        Arc::new(ProcessModule::<WasiProcess>::new(engine, &bytes).expect("module"))
    };
    let fs = fs::shared(fs::mem::MemFs::new(FsLimits::default(), 0));
    fs.lock()
        .expect("fs")
        .mkdir(ROOT_INO, b"data", 0)
        .expect("mkdir");
    let mut env = WasiEnv::new(fs);
    env.fs_limits = Some(FsLimits::default());
    let mut t = ProcessTable::new(env, TableLimits::default());
    let m = load(&super::process_support::new_engine());
    let fuel = 200_000_000;
    let (pid, spawned) = t
        .spawn(m, &["kv_server".into()], &[], None, fuel)
        .expect("spawn");
    let mut log = vec![(spawned.fuel_used, Vec::new(), t.digest().expect("digest"))];
    let inputs: [&[u8]; 5] = [
        b"SET a 1\n",
        b"SET bb 22\n",
        b"GET a\n",
        b"DEL bb\n",
        b"SCAN\n",
    ];
    for (i, input) in inputs.iter().enumerate() {
        if restore_at == Some(i) {
            let bytes = t.snapshot_all().expect("snapshot");
            let env = t.env().clone();
            let m2 = load(&super::process_support::new_engine());
            t = ProcessTable::restore(&bytes, env, TableLimits::default(), move |_| {
                Some(m2.clone())
            })
            .expect("restore");
        }
        let out = t.deliver_stdin(pid, input, false, fuel).expect("deliver");
        assert_eq!(out.status, InputStatus::Ok);
        log.push((
            out.fuel_used,
            out.stdout_of(pid),
            t.digest().expect("digest"),
        ));
    }
    log
}

#[test]
fn fuel_charged_by_host_calls_is_identical_across_runs_and_after_restore() {
    let plain = kv_run(None);
    assert_eq!(kv_run(None), plain);
    assert_eq!(kv_run(Some(2)), plain);
    // The SET inputs append to the log file: at least one record write each.
    assert!(plain[1].0 > cost::RECORD_WRITE, "{:?}", plain[1].0);
}

// ---- plain-store harness ---------------------------------------------------

struct Host {
    wasi: WasiCtx,
}

fn engine() -> &'static Engine {
    static ENGINE: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();
    ENGINE.get_or_init(super::process_support::new_engine)
}

/// A filesystem with directory `/data` (preopened at fd 3) built by `build`.
fn data_fs(build: impl FnOnce(&mut dyn FileSystem, Ino)) -> (SharedFs, Ino) {
    let mut memfs = fs::mem::MemFs::new(FsLimits::default(), 0);
    let data = memfs.mkdir(ROOT_INO, b"data", 0).expect("mkdir");
    build(&mut memfs, data);
    (fs::shared(memfs), data)
}

/// A guest over `/data` at fd 3, with `limits` told to the context.
struct Guest {
    store: Store<Host>,
    instance: wasmtime::Instance,
}

impl Guest {
    fn new(wat: &str, fs: SharedFs, data: Ino, limits: Option<FsLimits>) -> Guest {
        let mut b = WasiCtxBuilder::new(fs).preopen("/data", data);
        if let Some(l) = limits {
            b = b.fs_limits(l);
        }
        let mut store = Store::new(
            engine(),
            Host {
                wasi: b.build().expect("ctx"),
            },
        );
        store.set_fuel(u64::MAX / 2).expect("fuel");
        let mut linker = Linker::new(engine());
        add_to_linker(&mut linker, |h: &mut Host| &mut h.wasi).expect("link");
        let module = wasmtime::Module::new(engine(), wat).expect("wat");
        let instance = linker
            .instantiate(&mut store, &module)
            .expect("instantiate");
        Guest { store, instance }
    }

    /// Calls export `name` with `fuel`; returns its result (or the trap) and
    /// the fuel it used.
    fn call(&mut self, name: &str, args: &[i64], fuel: u64) -> (wasmtime::Result<i32>, u64) {
        let f = self
            .instance
            .get_func(&mut self.store, name)
            .unwrap_or_else(|| panic!("export {name}"));
        let params: Vec<wasmtime::Val> = f
            .ty(&self.store)
            .params()
            .zip(args)
            .map(|(ty, &v)| match ty {
                wasmtime::ValType::I64 => wasmtime::Val::I64(v),
                _ => wasmtime::Val::I32(v as i32),
            })
            .collect();
        self.store.set_fuel(fuel).expect("fuel");
        let mut result = [wasmtime::Val::I32(0)];
        let r = f
            .call(&mut self.store, &params, &mut result)
            .map(|()| result[0].unwrap_i32());
        let used = fuel - self.store.get_fuel().expect("fuel");
        (r, used)
    }

    fn memory(&mut self) -> Vec<u8> {
        let m = self
            .instance
            .get_memory(&mut self.store, "memory")
            .expect("memory");
        m.data(&self.store).to_vec()
    }
}

fn is_out_of_fuel(r: &wasmtime::Result<i32>) -> bool {
    matches!(r, Err(e) if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::OutOfFuel))
}

/// Exports over fd 3 (`/data`): `open(path_ptr, len) -> fd or -errno` creates
/// and opens a file, plus one export per call under test.
const FILE_CALLS: &str = r#"
(module
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pwrite" (func $fd_pwrite (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pread" (func $fd_pread (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_size" (func $set_size (param i32 i64) (result i32)))
  (import "wasi_snapshot_preview1" "fd_allocate" (func $allocate (param i32 i64 i64) (result i32)))
  (import "wasi_snapshot_preview1" "fd_readdir" (func $readdir (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_rename" (func $rename (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_get" (func $stat (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (memory (export "memory") 40)
  (data (i32.const 0) "f\00a\00b\00c")
  (func (export "open") (param $p i32) (param $len i32) (result i32)
    (local $e i32)
    (local.set $e (call $path_open (i32.const 3) (i32.const 0) (local.get $p) (local.get $len)
      (i32.const 1) (i64.const 0x3fffffff) (i64.const 0) (i32.const 0) (i32.const 100)))
    (if (result i32) (local.get $e) (then (i32.sub (i32.const 0) (local.get $e))) (else (i32.load (i32.const 100)))))
  ;; iovecs at 4096: n empty buffers (all zero: pointer 0, length 0)
  (func (export "write") (param $fd i32) (param $n i32) (result i32)
    (call $fd_write (local.get $fd) (i32.const 4096) (local.get $n) (i32.const 104)))
  (func (export "read") (param $fd i32) (param $n i32) (result i32)
    (call $fd_read (local.get $fd) (i32.const 4096) (local.get $n) (i32.const 104)))
  (func (export "pwrite") (param $fd i32) (param $n i32) (result i32)
    (call $fd_pwrite (local.get $fd) (i32.const 4096) (local.get $n) (i64.const 0) (i32.const 104)))
  (func (export "pread") (param $fd i32) (param $n i32) (result i32)
    (call $fd_pread (local.get $fd) (i32.const 4096) (local.get $n) (i64.const 0) (i32.const 104)))
  (func (export "set_size") (param $fd i32) (param $size i64) (result i32)
    (call $set_size (local.get $fd) (local.get $size)))
  (func (export "allocate") (param $fd i32) (param $len i64) (result i32)
    (call $allocate (local.get $fd) (i64.const 0) (local.get $len)))
  (func (export "readdir") (param $cookie i64) (result i32)
    (call $readdir (i32.const 3) (i32.const 65536) (i32.const 64) (local.get $cookie) (i32.const 104)))
  (func (export "rename") (param $from i32) (param $to i32) (result i32)
    (call $rename (i32.const 3) (local.get $from) (i32.const 1) (i32.const 3) (local.get $to) (i32.const 1)))
  (func (export "stat") (param $p i32) (param $len i32) (result i32)
    (call $stat (i32.const 3) (i32.const 1) (local.get $p) (local.get $len) (i32.const 200)))
  (func (export "random") (param $len i32) (result i32)
    (call $random_get (i32.const 65536) (local.get $len)))
  (func (export "put") (param $at i32) (param $byte i32) (result i32)
    (i32.store8 (local.get $at) (local.get $byte)) (i32.const 0)))
"#;

fn file_guest(limits: Option<FsLimits>) -> (Guest, i64) {
    let (fs, data) = data_fs(|_, _| {});
    let mut g = Guest::new(FILE_CALLS, fs, data, limits);
    let (fd, _) = g.call("open", &[0, 1], 1 << 30);
    let fd = i64::from(fd.expect("open"));
    assert!(fd > 3, "open f: {fd}");
    (g, fd)
}

#[test]
fn iovec_count_over_iov_max_is_einval() {
    const EINVAL: i32 = 28;
    let (mut g, fd) = file_guest(None);
    for call in ["write", "read", "pwrite", "pread"] {
        let at_max = g.call(call, &[fd, 1024], 1 << 30).0.expect(call);
        assert_eq!(at_max, 0, "{call} with IOV_MAX iovecs");
        let over = g.call(call, &[fd, 1025], 1 << 30).0.expect(call);
        assert_eq!(over, EINVAL, "{call} with IOV_MAX + 1 iovecs");
    }
    // Stdout too (no file): the count is checked before anything else is done.
    assert_eq!(
        g.call("write", &[1, 1025], 1 << 30).0.expect("write"),
        EINVAL
    );
}

#[test]
fn set_size_to_gigabytes_is_charged_or_refused() {
    const EFBIG: i32 = 22;
    // Limits known: growth past them is refused as before, and costs little.
    let (mut g, fd) = file_guest(Some(FsLimits::default()));
    for call in ["set_size", "allocate"] {
        let (r, used) = g.call(call, &[fd, 4 << 30], 1 << 30);
        assert_eq!(r.expect(call), EFBIG, "{call}");
        assert!(used < 100_000, "{call} refused for {used} fuel");
    }
    // Growth within them is paid for every zero byte and chunk.
    let (r, used) = g.call("set_size", &[fd, 32 << 20], 1 << 34);
    assert_eq!(r.expect("set_size"), 0);
    assert!(used >= 32 * MIB * cost::STORE_BYTE, "{used}");
    // Limits unknown: every byte asked for is charged, so 4 GiB is unaffordable
    // and the file is untouched.
    let (mut g, fd) = file_guest(None);
    for call in ["set_size", "allocate"] {
        let (r, used) = g.call(call, &[fd, 4 << 30], 1 << 30);
        assert!(is_out_of_fuel(&r), "{call}: {r:?}");
        assert_eq!(used, 1 << 30);
    }
    let stat = g.call("stat", &[0, 1], 1 << 30).0.expect("stat");
    assert_eq!(stat, 0);
    let size = u64::from_le_bytes(g.memory()[232..240].try_into().expect("8 bytes"));
    assert_eq!(size, 0, "an unaffordable resize does nothing");
}

#[test]
fn unaffordable_random_get_writes_nothing() {
    let (mut g, _) = file_guest(None);
    let (r, used) = g.call("random", &[1 << 20], 1_000_000);
    assert!(is_out_of_fuel(&r), "{r:?}");
    assert_eq!(used, 1_000_000);
    assert!(g.memory()[65536..65536 + (1 << 20)].iter().all(|&b| b == 0));
}

#[test]
fn readdir_pays_for_the_whole_listing_on_every_call() {
    let (fs, data) = data_fs(|fs, dir| {
        for i in 0..500 {
            fs.create_file(dir, format!("file{i:04}").as_bytes(), 0)
                .expect("create");
        }
    });
    let mut g = Guest::new(FILE_CALLS, fs, data, None);
    // A 64-byte buffer holds one or two entries, so listing takes ~500 calls;
    // each rebuilds the listing and pays for all 500 entries.
    let (r1, first) = g.call("readdir", &[0], 1 << 30);
    let (r2, later) = g.call("readdir", &[400], 1 << 30);
    assert_eq!((r1.expect("readdir"), r2.expect("readdir")), (0, 0));
    assert!(first >= 500 * cost::DIR_ENTRY, "{first}");
    assert_eq!(
        first, later,
        "a later cookie costs the same: the listing is rebuilt"
    );
    let (r, _) = g.call("readdir", &[0], 100 * cost::DIR_ENTRY);
    assert!(is_out_of_fuel(&r), "{r:?}");
}

#[test]
fn renaming_a_directory_pays_for_the_ancestor_walk() {
    let (fs, data) = data_fs(|fs, dir| {
        fs.mkdir(dir, b"a", 0).expect("mkdir");
        fs.create_file(dir, b"b", 0).expect("create");
        for i in 0..2000 {
            fs.create_file(dir, format!("n{i}").as_bytes(), 0)
                .expect("create");
        }
    });
    let inodes = fs.lock().expect("fs").usage().inodes;
    let mut g = Guest::new(FILE_CALLS, fs, data, None);
    // "a" -> "c" (a directory), "b" -> "a"... names at 0: "f\0a\0b\0c".
    let (r, dir_rename) = g.call("rename", &[2, 6], 1 << 30);
    assert_eq!(r.expect("rename a c"), 0);
    let (r, file_rename) = g.call("rename", &[4, 2], 1 << 30);
    assert_eq!(r.expect("rename b a"), 0);
    assert!(
        dir_rename >= file_rename + inodes * cost::ANCESTOR_STEP,
        "directory {dir_rename}, file {file_rename}, {inodes} inodes"
    );
}

#[test]
fn path_resolution_is_charged_per_component() {
    let (fs, data) = data_fs(|fs, dir| {
        let a = fs.mkdir(dir, b"a", 0).expect("mkdir");
        fs.create_file(a, b"f", 0).expect("create");
    });
    let mut g = Guest::new(FILE_CALLS, fs, data, None);
    // "a/f" vs "a/../a/../ ... a/f" with 1000 more named components.
    let long = format!("{}a/f", "a/../".repeat(500));
    let mem = g
        .instance
        .get_memory(&mut g.store, "memory")
        .expect("memory");
    mem.write(&mut g.store, 8192, b"a/f").expect("write");
    mem.write(&mut g.store, 12288, long.as_bytes())
        .expect("write");
    let (r, short) = g.call("stat", &[8192, 3], 1 << 30);
    assert_eq!(r.expect("stat a/f"), 0);
    let (r, deep) = g.call("stat", &[12288, long.len() as i64], 1 << 30);
    assert_eq!(r.expect("stat long"), 0);
    assert!(
        deep >= short + 500 * cost::LOOKUP,
        "short {short}, deep {deep}"
    );
}
