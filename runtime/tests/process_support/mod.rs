//! Test fixture for the process layer: a WAT server guest and the minimal host
//! it imports (`env.read` / `env.sleep_until` block through Asyncify).
//!
//! Guest protocol, one request per `read`: the first byte selects an action —
//! `T` trap, `L` spin forever, `X` grow memory then trap, `Y` append to the file
//! `log` then trap, `G` grow memory, `F` append the request to `log`, `W` sleep
//! 1000 ns of logical time, `Q` exit with the request count; then (for all but
//! the trapping ones and `Q`) it echoes the request and writes
//! `#<count % 10><total bytes % 10>\n`. End of input returns from `_start`.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use replicode_runtime::fs::{self, SharedFs, ROOT_INO};
use replicode_runtime::process::codec::{DecodeError, Reader, Writer};
use replicode_runtime::process::instance::StoreData;
use replicode_runtime::process::{
    Captured, GuestError, ProcessHost, ProcessModule, ProcessTable, StreamKind, TableLimits, Wait,
};
use wasmtime::{Caller, Engine, Linker};

pub const FUEL: u64 = 10_000_000;

pub const SERVER_WAT: &str = r#"
(module
  (import "env" "read" (func $read (param i32 i32) (result i32)))
  (import "env" "write" (func $write (param i32 i32 i32)))
  (import "env" "sleep_until" (func $sleep_until (param i64)))
  (import "env" "now" (func $now (result i64)))
  (import "env" "exit" (func $exit (param i32)))
  (import "env" "append_file" (func $append (param i32 i32)))
  (memory (export "memory") 2)
  (global $count (mut i32) (i32.const 0))
  (func $handle (param $n i32)
    (local $c i32)
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (i32.store (i32.const 40512) (i32.add (i32.load (i32.const 40512)) (local.get $n)))
    (local.set $c (i32.load8_u (i32.const 41024)))
    (if (i32.eq (local.get $c) (i32.const 84)) (then unreachable))
    (if (i32.eq (local.get $c) (i32.const 76)) (then (loop $spin (br $spin))))
    (if (i32.eq (local.get $c) (i32.const 88))
      (then (drop (memory.grow (i32.const 4))) (i32.store (i32.const 200000) (i32.const 7)) unreachable))
    (if (i32.eq (local.get $c) (i32.const 89))
      (then (call $append (i32.const 41024) (local.get $n)) unreachable))
    (if (i32.eq (local.get $c) (i32.const 71))
      (then (drop (memory.grow (i32.const 1))) (i32.store (i32.const 200000) (i32.const 9))))
    (if (i32.eq (local.get $c) (i32.const 70)) (then (call $append (i32.const 41024) (local.get $n))))
    (if (i32.eq (local.get $c) (i32.const 87))
      (then (call $sleep_until (i64.add (call $now) (i64.const 1000)))))
    (if (i32.eq (local.get $c) (i32.const 81)) (then (call $exit (global.get $count))))
    (call $write (i32.const 1) (i32.const 41024) (local.get $n))
    (i32.store8 (i32.const 42000) (i32.const 35))
    (i32.store8 (i32.const 42001) (i32.add (i32.const 48) (i32.rem_u (global.get $count) (i32.const 10))))
    (i32.store8 (i32.const 42002) (i32.add (i32.const 48) (i32.rem_u (i32.load (i32.const 40512)) (i32.const 10))))
    (i32.store8 (i32.const 42003) (i32.const 10))
    (call $write (i32.const 1) (i32.const 42000) (i32.const 4)))
  (func (export "_start")
    (local $n i32)
    (loop $l
      (local.set $n (call $read (i32.const 41024) (i32.const 256)))
      (if (i32.eqz (local.get $n)) (then (return)))
      (call $handle (local.get $n))
      (br $l))))
"#;

/// Runs Binaryen's Asyncify (the pinned `wasm-opt` crate) over `wasm`.
pub fn asyncify(wasm: &[u8], imports: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.wasm");
    let output = dir.path().join("out.wasm");
    std::fs::write(&input, wasm).expect("write input");
    wasm_opt::OptimizationOptions::new_opt_level_1()
        .add_pass(wasm_opt::Pass::Asyncify)
        .set_pass_arg("asyncify-imports", imports)
        .run(&input, &output)
        .expect("asyncify");
    std::fs::read(&output).expect("read output")
}

/// The asyncified server bytes (transformed once per test binary).
pub fn server_wasm() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let wasm = wat::parse_str(SERVER_WAT).expect("valid wat");
        asyncify(&wasm, "env.read,env.sleep_until")
    })
}

pub fn new_engine() -> Engine {
    let mut config = wasmtime::Config::new();
    config.consume_fuel(true);
    Engine::new(&config).expect("engine")
}

pub fn module(engine: &Engine) -> ProcessModule<TestHost> {
    ProcessModule::new(engine, server_wasm()).expect("server module")
}

pub fn new_fs() -> SharedFs {
    fs::shared(fs::mem::MemFs::new(fs::FsLimits::default(), 0))
}

pub fn fs_digest(fs: &SharedFs) -> [u8; 32] {
    fs.lock().expect("fs lock").digest()
}

/// A fresh table on a fresh filesystem, with the server module compiled.
pub fn machine() -> (ProcessTable<TestHost>, Arc<ProcessModule<TestHost>>) {
    let engine = new_engine();
    (
        ProcessTable::new(new_fs(), TableLimits::default()),
        Arc::new(module(&engine)),
    )
}

/// `proc_exit` equivalent.
#[derive(Debug)]
pub struct GuestExit(pub i32);

impl std::fmt::Display for GuestExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "guest exited with {}", self.0)
    }
}

impl std::error::Error for GuestExit {}

pub struct TestHost {
    fs: SharedFs,
    stdin: VecDeque<u8>,
    eof: bool,
    out: Vec<(StreamKind, Vec<u8>)>,
    now: u64,
    buffer: u32,
    wait: Option<Wait>,
}

fn call_export<P: wasmtime::WasmParams, R: wasmtime::WasmResults, T>(
    caller: &mut Caller<'_, T>,
    name: &str,
    params: P,
) -> wasmtime::Result<R> {
    let f = caller
        .get_export(name)
        .and_then(|e| e.into_func())
        .ok_or_else(|| wasmtime::Error::msg(format!("missing export {name}")))?;
    f.typed::<P, R>(&*caller)?.call(&mut *caller, params)
}

/// If the guest is rewinding into this import, finish the rewind.
fn finish_rewind<T>(caller: &mut Caller<'_, T>) -> wasmtime::Result<()> {
    if call_export::<(), i32, T>(caller, "asyncify_get_state", ())? == 2 {
        call_export::<(), (), T>(caller, "asyncify_stop_rewind", ())?;
    }
    Ok(())
}

fn memory<T>(caller: &mut Caller<'_, T>) -> wasmtime::Result<wasmtime::Memory> {
    caller
        .get_export("memory")
        .and_then(|e| e.into_memory())
        .ok_or_else(|| wasmtime::Error::msg("no memory"))
}

/// The fixture's imports, for any store data that holds a `TestHost`.
fn add_imports<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut TestHost,
) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "read",
        move |mut caller: Caller<'_, T>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            finish_rewind(&mut caller)?;
            let h = get(caller.data_mut());
            if h.stdin.is_empty() && !h.eof {
                h.wait = Some(Wait {
                    stdin: true,
                    deadline_ns: None,
                });
                let buffer = h.buffer as i32;
                call_export::<i32, (), T>(&mut caller, "asyncify_start_unwind", buffer)?;
                return Ok(0);
            }
            let n = (len.max(0) as usize).min(h.stdin.len());
            let data: Vec<u8> = h.stdin.drain(..n).collect();
            memory(&mut caller)?.write(&mut caller, ptr as u32 as usize, &data)?;
            Ok(n as i32)
        },
    )?;
    linker.func_wrap(
        "env",
        "write",
        move |mut caller: Caller<'_, T>, fd: i32, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let mut data = vec![0u8; len.max(0) as usize];
            memory(&mut caller)?.read(&caller, ptr as u32 as usize, &mut data)?;
            let stream = if fd == 2 {
                StreamKind::Stderr
            } else {
                StreamKind::Stdout
            };
            get(caller.data_mut()).out.push((stream, data));
            Ok(())
        },
    )?;
    linker.func_wrap(
        "env",
        "sleep_until",
        move |mut caller: Caller<'_, T>, deadline: i64| -> wasmtime::Result<()> {
            finish_rewind(&mut caller)?;
            let h = get(caller.data_mut());
            if (deadline as u64) > h.now {
                h.wait = Some(Wait {
                    stdin: false,
                    deadline_ns: Some(deadline as u64),
                });
                let buffer = h.buffer as i32;
                call_export::<i32, (), T>(&mut caller, "asyncify_start_unwind", buffer)?;
            }
            Ok(())
        },
    )?;
    linker.func_wrap("env", "now", move |mut caller: Caller<'_, T>| -> i64 {
        get(caller.data_mut()).now as i64
    })?;
    linker.func_wrap(
        "env",
        "exit",
        move |_caller: Caller<'_, T>, code: i32| -> wasmtime::Result<()> {
            Err(wasmtime::Error::new(GuestExit(code)))
        },
    )?;
    linker.func_wrap(
        "env",
        "append_file",
        move |mut caller: Caller<'_, T>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let mut data = vec![0u8; len.max(0) as usize];
            memory(&mut caller)?.read(&caller, ptr as u32 as usize, &mut data)?;
            let h = get(caller.data_mut());
            let now = h.now;
            let mut fs =
                h.fs.lock()
                    .map_err(|_| wasmtime::Error::msg("fs lock poisoned"))?;
            let ino = match fs.lookup(ROOT_INO, b"log") {
                Ok(ino) => ino,
                Err(_) => fs
                    .create_file(ROOT_INO, b"log", now)
                    .map_err(|e| wasmtime::Error::msg(format!("{e:?}")))?,
            };
            let size = fs
                .getattr(ino)
                .map_err(|e| wasmtime::Error::msg(format!("{e:?}")))?
                .size;
            fs.write(ino, size, &data, now)
                .map_err(|e| wasmtime::Error::msg(format!("{e:?}")))?;
            Ok(())
        },
    )?;
    Ok(())
}

impl ProcessHost for TestHost {
    type Env = SharedFs;
    type View = ();

    fn spawn(
        env: &SharedFs,
        _args: &[String],
        _vars: &[(String, String)],
        _view: &(),
    ) -> Result<Self, String> {
        Ok(TestHost {
            fs: env.clone(),
            stdin: VecDeque::new(),
            eof: false,
            out: Vec::new(),
            now: 0,
            buffer: 0,
            wait: None,
        })
    }

    fn add_to_linker(linker: &mut Linker<StoreData<Self>>) -> wasmtime::Result<()> {
        add_imports(linker, |d: &mut StoreData<TestHost>| &mut d.host)
    }

    fn set_unwind_buffer(&mut self, ptr: u32) {
        self.buffer = ptr;
    }

    fn take_wait(&mut self) -> Option<Wait> {
        self.wait.take()
    }

    fn push_stdin(&mut self, bytes: &[u8]) {
        self.stdin.extend(bytes);
    }

    fn close_stdin(&mut self) {
        self.eof = true;
    }

    fn stdin_ready(&self) -> bool {
        !self.stdin.is_empty() || self.eof
    }

    fn stdin_pending(&self) -> usize {
        self.stdin.len()
    }

    fn set_now(&mut self, now_ns: u64) {
        self.now = now_ns;
    }

    fn take_output(&mut self) -> Vec<Captured> {
        std::mem::take(&mut self.out)
            .into_iter()
            .map(|(stream, bytes)| Captured {
                stream,
                bytes,
                truncated: false,
            })
            .collect()
    }

    fn classify(&self, error: &wasmtime::Error) -> GuestError {
        if let Some(GuestExit(code)) = error.downcast_ref::<GuestExit>() {
            return GuestError::Exit(*code);
        }
        match error.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => GuestError::Trap(trap.to_string()),
            None => GuestError::Trap(format!("{error:#}")),
        }
    }

    fn encode_state(&self, w: &mut Writer) {
        let (a, b) = self.stdin.as_slices();
        w.bytes(&[a, b].concat());
        w.u8(u8::from(self.eof));
    }

    fn decode_state(env: &SharedFs, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut h = TestHost {
            fs: env.clone(),
            stdin: VecDeque::new(),
            eof: false,
            out: Vec::new(),
            now: 0,
            buffer: 0,
            wait: None,
        };
        h.stdin = r.bytes("stdin")?.iter().copied().collect();
        h.eof = r.bool("eof")?;
        Ok(h)
    }

    fn savepoint(env: &SharedFs) -> fs::Savepoint {
        env.lock()
            .map(|mut f| f.savepoint())
            .unwrap_or(fs::Savepoint(0))
    }

    fn rollback_to(env: &SharedFs, sp: fs::Savepoint) {
        if let Ok(mut f) = env.lock() {
            f.rollback_to(sp);
        }
    }

    fn release_savepoint(env: &SharedFs, sp: fs::Savepoint) {
        if let Ok(mut f) = env.lock() {
            f.release_savepoint(sp);
        }
    }
}

/// A store keeping the header, each process record and each memory page
/// apart, as the ABCI app does; applying a delta checks that every delete
/// names a record the store holds.
#[derive(Default)]
pub struct PagedStore {
    pub table: Vec<u8>,
    pub processes: std::collections::BTreeMap<u64, Vec<u8>>,
    pub pages: std::collections::BTreeMap<(u64, u32), Vec<u8>>,
}

/// What applying one delta did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Applied {
    /// Process records written or deleted.
    pub processes: usize,
    /// Page records written or deleted.
    pub pages: usize,
    /// Bytes written: header, process records and pages.
    pub bytes: usize,
}

impl PagedStore {
    pub fn apply(&mut self, delta: replicode_runtime::process::PersistDelta) -> Applied {
        let mut applied = Applied {
            processes: delta.processes.len(),
            pages: delta.pages.len(),
            bytes: delta.table.len(),
        };
        self.table = delta.table;
        for (pid, record) in delta.processes {
            match record {
                Some(r) => {
                    applied.bytes += r.len();
                    self.processes.insert(pid, r);
                }
                None => assert!(
                    self.processes.remove(&pid).is_some(),
                    "a delete names a stored process record"
                ),
            }
        }
        for (pid, page, bytes) in delta.pages {
            match bytes {
                Some(b) => {
                    applied.bytes += b.len();
                    self.pages.insert((pid, page), b);
                }
                None => assert!(
                    self.pages.remove(&(pid, page)).is_some(),
                    "a delete names a stored page"
                ),
            }
        }
        for (pid, pages) in delta.ended {
            for page in pages {
                assert!(
                    self.pages.remove(&(pid, page)).is_some(),
                    "only stored pages are deleted"
                );
            }
        }
        applied
    }

    /// Persists `t` into the store and checks the store against records
    /// encoded from scratch: a change the dirty marks missed shows here.
    pub fn persist<H: ProcessHost>(&mut self, t: &mut ProcessTable<H>, what: &str) -> Applied {
        let applied = self.apply(t.persist().expect("persist"));
        let (header, records) = t.stored_records().expect("records");
        assert_eq!(self.table, header, "{what}: header");
        let stored: Vec<(u64, Vec<u8>)> = self
            .processes
            .iter()
            .map(|(p, r)| (*p, r.clone()))
            .collect();
        assert_eq!(stored, records, "{what}: stored process records are stale");
        applied
    }

    /// The table as a restarted validator reads it back.
    pub fn restore<H: ProcessHost>(
        &self,
        env: H::Env,
        limits: TableLimits,
        resolve: impl Fn(&[u8; 32]) -> Option<Arc<ProcessModule<H>>>,
    ) -> ProcessTable<H> {
        ProcessTable::restore_paged(
            &self.table,
            env,
            limits,
            resolve,
            |pid| Ok(self.processes.get(&pid).cloned()),
            |pid, page| Ok(self.pages.get(&(pid, page)).cloned()),
        )
        .expect("restore from the paged store")
    }
}
