//! Runtime benchmarks: each compares replicode with its baselines in the same run.
//!
//! - `compute/{intkernel,nbody}`: the C kernel built natively (`cc -O2`, run as a
//!   process), under plain wasmtime (no fuel, no NaN canonicalization), under
//!   wasmtime with only NaN canonicalization and with only fuel metering (what
//!   each costs by itself), and under
//!   replicode (fuel, logical stack counter, canonicalization).
//! - `files/fileworkload`: many small files; replicode on its in-memory
//!   filesystem vs wasmtime + wasmtime-wasi (`p1`) on a tmpfs directory.
//! - `hello/instantiate_run`: instantiate + `_start` of hello with the module
//!   already compiled.
//!
//! Run: `CARGO_TARGET_DIR=$HOME/.cache/replicode/target cargo bench --release -p replicode-runtime --bench runtime`
//! (builds the guests with `make -C wasm_programs all native` first).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use replicode_runtime::config::RuntimeConfig;
use replicode_runtime::engine::GuestEngine;
use replicode_runtime::exec::{self, GuestInstance, RunOutcome};
use replicode_runtime::run::{self, DirMapping, RunSpec};
use replicode_runtime::wasi::stdio::{NullSink, Pipe};
use replicode_runtime::wasi::WasiCtxBuilder;

const INTKERNEL_ARGS: [&str; 2] = ["2000000", "10"];
const NBODY_ARGS: [&str; 1] = ["1000000"];
const FILE_ARGS: [&str; 2] = ["500", "4"];

fn programs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm_programs")
}

fn build_guests() {
    let status = Command::new("make")
        .args(["-s", "-C"])
        .arg(programs_dir())
        .args(["all", "native"])
        .status()
        .expect("make runs");
    assert!(status.success(), "building wasm_programs failed");
}

fn wasm(name: &str) -> Vec<u8> {
    std::fs::read(programs_dir().join(format!("build/{name}.wasm"))).expect("guest built")
}

fn native(name: &str, args: &[&str]) {
    let out = Command::new(programs_dir().join(format!("build/native/{name}")))
        .args(args)
        .output()
        .expect("native runs");
    assert!(out.status.success(), "native {name} failed");
}

/// Plain wasmtime + wasmtime-wasi, optionally with only NaN canonicalization
/// or only fuel metering on (to show what each costs by itself).
struct Wasmtime {
    engine: wasmtime::Engine,
    fuel: bool,
}

impl Wasmtime {
    fn new(nan_canonicalization: bool) -> Self {
        let mut config = wasmtime::Config::new();
        config.cranelift_nan_canonicalization(nan_canonicalization);
        Wasmtime {
            engine: wasmtime::Engine::new(&config).expect("engine"),
            fuel: false,
        }
    }

    fn with_fuel() -> Self {
        let mut config = wasmtime::Config::new();
        config.consume_fuel(true);
        Wasmtime {
            engine: wasmtime::Engine::new(&config).expect("engine"),
            fuel: true,
        }
    }

    fn module(&self, bytes: &[u8]) -> wasmtime::Module {
        wasmtime::Module::new(&self.engine, bytes).expect("compiles")
    }

    fn run(&self, module: &wasmtime::Module, args: &[&str], dir: Option<&Path>) {
        let mut builder = wasmtime_wasi::WasiCtxBuilder::new();
        builder.args(args);
        if let Some(dir) = dir {
            builder
                .preopened_dir(dir, "/work", wasmtime_wasi::FsPerms::ReadWrite)
                .expect("preopen");
        }
        let ctx = builder.build_p1();
        let mut store = wasmtime::Store::new(&self.engine, ctx);
        if self.fuel {
            store.set_fuel(u64::MAX / 2).expect("fuel");
        }
        let mut linker = wasmtime::Linker::new(&self.engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |c| c).expect("link");
        let instance = linker
            .instantiate(&mut store, module)
            .expect("instantiates");
        let start = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .expect("_start");
        if let Err(e) = start.call(&mut store, ()) {
            let code = e.downcast_ref::<wasmtime_wasi::I32Exit>().map(|c| c.0);
            assert_eq!(code, Some(0), "wasmtime run failed: {e:?}");
        }
    }
}

fn replicode_run(engine: &GuestEngine, bytes: &[u8], args: &[&str], dirs: Vec<DirMapping>) {
    let spec = RunSpec {
        args: args.iter().map(|s| s.to_string()).collect(),
        dirs,
        ..RunSpec::default()
    };
    let result =
        run::run(engine, bytes, &spec, Box::new(NullSink), Box::new(NullSink)).expect("runs");
    assert_eq!(result.outcome, RunOutcome::Exited(0));
}

fn compute(c: &mut Criterion, name: &str, args: &[&str]) {
    let bytes = wasm(name);
    let argv: Vec<&str> = std::iter::once(name).chain(args.iter().copied()).collect();
    let plain = Wasmtime::new(false);
    let plain_module = plain.module(&bytes);
    let nan = Wasmtime::new(true);
    let nan_module = nan.module(&bytes);
    let fuel = Wasmtime::with_fuel();
    let fuel_module = fuel.module(&bytes);
    let engine = GuestEngine::new(RuntimeConfig::default()).expect("engine");
    engine.load(&bytes).expect("loads");
    let mut group = c.benchmark_group(format!("compute/{name}"));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("native-O2", |b| b.iter(|| native(name, args)));
    group.bench_function("wasmtime", |b| {
        b.iter(|| plain.run(&plain_module, &argv, None))
    });
    group.bench_function("wasmtime+nan-canon", |b| {
        b.iter(|| nan.run(&nan_module, &argv, None))
    });
    group.bench_function("wasmtime+fuel", |b| {
        b.iter(|| fuel.run(&fuel_module, &argv, None))
    });
    group.bench_function("replicode", |b| {
        b.iter(|| replicode_run(&engine, &bytes, &argv, Vec::new()))
    });
    group.finish();
}

fn compute_kernels(c: &mut Criterion) {
    build_guests();
    compute(c, "intkernel", &INTKERNEL_ARGS);
    compute(c, "nbody", &NBODY_ARGS);
}

fn file_workload(c: &mut Criterion) {
    build_guests();
    let bytes = wasm("fileworkload");
    let tmpfs = tempfile::Builder::new()
        .prefix("replicode-bench")
        .tempdir_in("/dev/shm")
        .expect("tmpfs dir");
    let argv: Vec<&str> = ["fileworkload", "/work"]
        .into_iter()
        .chain(FILE_ARGS)
        .collect();
    let plain = Wasmtime::new(false);
    let module = plain.module(&bytes);
    let empty = tempfile::tempdir().expect("empty dir");
    let engine = GuestEngine::new(RuntimeConfig::default()).expect("engine");
    let dirs = vec![DirMapping {
        host: empty.path().to_path_buf(),
        guest: "/work".into(),
    }];
    let mut group = c.benchmark_group("files/fileworkload");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("wasmtime-wasi-tmpfs", |b| {
        b.iter(|| plain.run(&module, &argv, Some(tmpfs.path())))
    });
    group.bench_function("replicode-memfs", |b| {
        b.iter(|| replicode_run(&engine, &bytes, &argv, dirs.clone()))
    });
    group.finish();
}

fn hello(c: &mut Criterion) {
    build_guests();
    let bytes = wasm("hello");
    let config = RuntimeConfig::default();
    let engine = GuestEngine::new(config.clone()).expect("engine");
    let module = engine.load(&bytes).expect("loads");
    let linker = run::wasi_linker(&engine).expect("linker");
    let spec = RunSpec {
        args: vec!["hello".into()],
        ..RunSpec::default()
    };
    let once = || {
        let (fs, _) = run::build_fs(&engine, &spec).expect("fs");
        let stdin = Pipe::new(0);
        stdin.close_write();
        let ctx = WasiCtxBuilder::new(fs)
            .args(spec.args.iter())
            .stdin(stdin)
            .stdout(Box::new(NullSink))
            .stderr(Box::new(NullSink))
            .build()
            .expect("ctx");
        let mut guest = GuestInstance::instantiate(&engine, module.clone(), &linker, ctx)
            .expect("instantiates");
        let report = guest.start(config.limits.fuel).expect("runs");
        assert_eq!(report.outcome, RunOutcome::Exited(0));
    };
    // Timed inside the guest thread so thread creation is not measured.
    c.bench_function("hello/instantiate_run", |b| {
        b.iter_custom(|iters| {
            exec::on_guest_stack(&config, || {
                let start = Instant::now();
                for _ in 0..iters {
                    once();
                }
                start.elapsed()
            })
            .expect("guest thread")
        })
    });
}

criterion_group!(benches, hello, compute_kernels, file_workload);
criterion_main!(benches);
