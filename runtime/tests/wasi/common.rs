//! Test harness: builds a context over a fresh filesystem from `crate::backend` (the
//! implementation under test: `MemFs` here, the merkle-fs adapter when
//! abci-app/tests/fs_conformance.rs includes these modules), runs a guest's `_start`,
//! and reports its output, exit status and filesystem.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use replicode_runtime::clock::LogicalClock;
use replicode_runtime::entropy::ChaChaEntropy;
use replicode_runtime::fs::{FsLimits, Ino, SharedFs, ROOT_INO};
use replicode_runtime::wasi::{add_to_linker, Capture, Exit, Pipe, WasiCtx, WasiCtxBuilder};
use wasmtime::{Config, Engine, Linker, Module, Store};

/// Store data of the tests.
pub struct Host {
    pub wasi: WasiCtx,
}

pub fn get(h: &mut Host) -> &mut WasiCtx {
    &mut h.wasi
}

/// One engine for all tests (fuel on, so a runaway guest ends the test instead of hanging).
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.consume_fuel(true);
        Engine::new(&config).expect("engine")
    })
}

pub fn linker() -> Linker<Host> {
    let mut linker = Linker::new(engine());
    add_to_linker(&mut linker, get).expect("add_to_linker");
    linker
}

/// Path of a guest built by `make -C wasm_programs`, building it if it is missing.
pub fn guest_path(name: &str) -> PathBuf {
    static MAKE: Mutex<()> = Mutex::new(());
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wasm_programs");
    let wasm = dir.join("build").join(format!("{name}.wasm"));
    let _guard = MAKE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let status = std::process::Command::new("make")
        .args(["-s", "-C"])
        .arg(&dir)
        .arg(format!("build/{name}.wasm"))
        .status()
        .expect("run make");
    assert!(status.success(), "make build/{name}.wasm failed");
    wasm
}

/// A compiled guest (modules are cached per name).
pub fn guest(name: &str) -> Module {
    static CACHE: Mutex<Vec<(String, Module)>> = Mutex::new(Vec::new());
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, m)) = cache.iter().find(|(n, _)| n == name) {
        return m.clone();
    }
    let module = Module::from_file(engine(), guest_path(name)).expect("compile guest");
    cache.push((name.to_string(), module.clone()));
    module
}

pub fn wat(src: &str) -> Module {
    Module::new(engine(), src).expect("compile wat")
}

/// Everything a run is configured with.
pub struct Opts {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: Option<Pipe>,
    pub limits: FsLimits,
    pub max_fds: usize,
    pub seed: u64,
    pub time_ns: u64,
    pub fuel: u64,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            limits: FsLimits::default(),
            max_fds: 64,
            seed: 1,
            time_ns: 1_700_000_000_000_000_000,
            fuel: 20_000_000_000,
        }
    }
}

/// What a run produced.
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    /// `Some(code)`: exited (returning from `main` is code 0); `None`: trapped.
    pub exit: Option<i32>,
    pub error: Option<wasmtime::Error>,
    pub fs: SharedFs,
    pub data: Ino,
}

impl Outcome {
    pub fn digest(&self) -> [u8; 32] {
        self.fs.lock().expect("fs lock").digest()
    }

    /// Panics with the guest's output unless it exited with `code`.
    #[track_caller]
    pub fn assert_exit(&self, code: i32) {
        assert_eq!(
            self.exit,
            Some(code),
            "guest error {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.error,
            self.stdout,
            self.stderr
        );
    }
}

/// A filesystem with `/data` (the preopen) and a `/secret` file outside it.
pub fn new_fs(limits: FsLimits, now: u64) -> (SharedFs, Ino) {
    let mut data = ROOT_INO;
    let fs = crate::backend::new_fs(limits, now, |fs| {
        data = fs.mkdir(ROOT_INO, b"data", now).expect("mkdir data");
        let secret = fs
            .create_file(ROOT_INO, b"secret", now)
            .expect("create secret");
        fs.write(secret, 0, b"top secret\n", now)
            .expect("write secret");
    });
    (std::sync::Arc::new(Mutex::new(fs)), data)
}

pub fn build_ctx(
    opts: &Opts,
    fs: SharedFs,
    data: Ino,
    stdout: &Capture,
    stderr: &Capture,
) -> WasiCtx {
    let mut b = WasiCtxBuilder::new(fs)
        .args(&opts.args)
        .preopen("/data", data)
        .stdout(stdout.sink())
        .stderr(stderr.sink())
        .clock(Box::new(LogicalClock::new(opts.time_ns)))
        .entropy(Box::new(ChaChaEntropy::from_u64(opts.seed)))
        .max_fds(opts.max_fds)
        .fs_limits(opts.limits);
    for (k, v) in &opts.env {
        b = b.env(k, v);
    }
    if let Some(p) = &opts.stdin {
        b = b.stdin(p.clone());
    }
    b.build().expect("build ctx")
}

/// Runs `module`'s `_start` with `argv[0]` = `name` followed by `opts.args`.
pub fn run_module(module: &Module, name: &str, mut opts: Opts) -> Outcome {
    opts.args.insert(0, name.to_string());
    let (fs, data) = new_fs(opts.limits, opts.time_ns);
    let (out, err) = (Capture::new(), Capture::new());
    let wasi = build_ctx(&opts, fs.clone(), data, &out, &err);
    let mut store = Store::new(engine(), Host { wasi });
    store.set_fuel(opts.fuel).expect("fuel");
    let result = linker().instantiate(&mut store, module).and_then(|inst| {
        let start = inst.get_typed_func::<(), ()>(&mut store, "_start")?;
        start.call(&mut store, ())
    });
    let (exit, error) = match result {
        Ok(()) => (Some(0), None),
        Err(e) => match e.downcast_ref::<Exit>() {
            Some(Exit(code)) => (Some(*code), None),
            None => (None, Some(e)),
        },
    };
    if let Some(code) = exit {
        if code != 0 {
            assert_eq!(store.data().wasi.exit_code(), Some(code));
        }
    }
    store.data_mut().wasi.close_all();
    Outcome {
        stdout: String::from_utf8_lossy(&out.contents()).into_owned(),
        stderr: String::from_utf8_lossy(&err.contents()).into_owned(),
        exit,
        error,
        fs,
        data,
    }
}

/// Runs the C guest `name` from `wasm_programs/build/`.
pub fn run_guest(name: &str, opts: Opts) -> Outcome {
    run_module(&guest(name), name, opts)
}

/// Instantiates a WAT module and calls its export `test` (no params, i32 result),
/// returning the result and the store (for inspecting the context afterwards).
pub fn call_wat(src: &str, wasi: WasiCtx) -> (wasmtime::Result<i32>, Store<Host>) {
    let module = wat(src);
    let mut store = Store::new(engine(), Host { wasi });
    store.set_fuel(1_000_000_000).expect("fuel");
    let r = linker().instantiate(&mut store, &module).and_then(|inst| {
        inst.get_typed_func::<(), i32>(&mut store, "test")?
            .call(&mut store, ())
    });
    (r, store)
}

/// A context over a fresh filesystem with `/data` preopened at fd 3, one argument and
/// one environment variable (so the args/environ calls have something to write).
pub fn plain_ctx() -> WasiCtx {
    let (fs, data) = new_fs(FsLimits::default(), 0);
    let opts = Opts {
        args: vec!["prog".into()],
        env: vec![("K".into(), "V".into())],
        ..Opts::default()
    };
    build_ctx(&opts, fs, data, &Capture::new(), &Capture::new())
}
