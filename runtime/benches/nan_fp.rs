//! Floating-point cost of determinism: the FP kernel (`wasm_programs/nbody.c`) and
//! an integer kernel (`wasm_programs/intkernel.c`) natively at -O2 and under
//! wasmtime with: no NaN canonicalization, eager canonicalization, and the lazy
//! pass (`instrument::nan`), with and without fuel, all in one run. Runs are
//! interleaved (one of each configuration per repetition) and the median is
//! reported as a ratio to native. Every configuration's stdout must equal the
//! native program's, so a wrong result cannot pass as a fast one.
//!
//! `cargo bench -p replicode-runtime --bench nan_fp` (env: `NAN_BENCH_REPS`,
//! default 5; `NBODY_STEPS`, default 5000000).

#[path = "../src/instrument/nan.rs"]
#[allow(dead_code)]
mod nan;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use wasmtime::{Config, Engine, Linker, Module, OptLevel, Store};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

#[derive(Clone, Copy)]
struct Wasm {
    name: &'static str,
    eager: bool,
    lazy_pass: bool,
    fuel: bool,
}

const CONFIGS: &[Wasm] = &[
    Wasm {
        name: "wasmtime",
        eager: false,
        lazy_pass: false,
        fuel: false,
    },
    Wasm {
        name: "wasmtime+fuel",
        eager: false,
        lazy_pass: false,
        fuel: true,
    },
    Wasm {
        name: "eager",
        eager: true,
        lazy_pass: false,
        fuel: false,
    },
    Wasm {
        name: "eager+fuel",
        eager: true,
        lazy_pass: false,
        fuel: true,
    },
    Wasm {
        name: "lazy pass",
        eager: false,
        lazy_pass: true,
        fuel: false,
    },
    Wasm {
        name: "lazy pass+fuel",
        eager: false,
        lazy_pass: true,
        fuel: true,
    },
];

fn main() {
    let reps: usize = env_or("NAN_BENCH_REPS", 5);
    let steps: String = env_or("NBODY_STEPS", 5_000_000u64).to_string();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wasm_programs");
    let status = Command::new("make")
        .args(["-s", "-C"])
        .arg(&dir)
        .args(["build/nbody.wasm", "build/intkernel.wasm", "native"])
        .status()
        .expect("run make");
    assert!(status.success(), "make failed");
    let programs: [(&str, Vec<String>); 2] = [("nbody", vec![steps]), ("intkernel", vec![])];
    println!("| kernel | configuration | median | vs native | static fixes / arithmetic ops |");
    println!("|---|---|---|---|---|");
    for (name, args) in &programs {
        bench_program(&dir, name, args, reps);
    }
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn engine(eager: bool, fuel: bool) -> Engine {
    let mut c = Config::new();
    c.cranelift_nan_canonicalization(eager);
    c.wasm_relaxed_simd(false);
    c.wasm_simd(false);
    c.consume_fuel(fuel);
    c.cranelift_opt_level(OptLevel::Speed);
    Engine::new(&c).expect("engine")
}

fn bench_program(dir: &Path, name: &str, args: &[String], reps: usize) {
    let wasm = std::fs::read(dir.join(format!("build/{name}.wasm"))).expect("read wasm");
    let (lazy_wasm, stats) = nan::canonicalize_nans_with_stats(&wasm).expect("NaN pass");
    let native = dir.join("build/native").join(name);
    let expected = Command::new(&native)
        .args(args)
        .output()
        .expect("run native")
        .stdout;

    let compiled: Vec<(Engine, Module)> = CONFIGS
        .iter()
        .map(|c| {
            let e = engine(c.eager, c.fuel);
            let m = Module::new(&e, if c.lazy_pass { &lazy_wasm } else { &wasm }).expect("compile");
            (e, m)
        })
        .collect();
    let mut native_times = Vec::new();
    let mut times = vec![Vec::new(); CONFIGS.len()];
    for _ in 0..reps {
        let t = Instant::now();
        let out = Command::new(&native)
            .args(args)
            .output()
            .expect("run native");
        native_times.push(t.elapsed());
        assert_eq!(out.stdout, expected);
        for (i, (engine, module)) in compiled.iter().enumerate() {
            let (elapsed, stdout) = run(engine, module, name, args, CONFIGS[i].fuel);
            assert_eq!(
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&expected),
                "{name} under {} printed something else than native",
                CONFIGS[i].name
            );
            times[i].push(elapsed);
        }
    }
    let base = median(&mut native_times);
    println!(
        "| {name} | native -O2 | {:.3} s | 1.00x | |",
        base.as_secs_f64()
    );
    for (i, c) in CONFIGS.iter().enumerate() {
        let m = median(&mut times[i]);
        let fixes = if c.lazy_pass {
            format!("{} / {}", stats.fixes, stats.arithmetic_ops)
        } else {
            String::new()
        };
        println!(
            "| {name} | {} | {:.3} s | {:.2}x | {fixes} |",
            c.name,
            m.as_secs_f64(),
            m.as_secs_f64() / base.as_secs_f64()
        );
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Instantiates and runs `_start`; the time excludes compilation (done once above).
fn run(
    engine: &Engine,
    module: &Module,
    name: &str,
    args: &[String],
    fuel: bool,
) -> (Duration, Vec<u8>) {
    let stdout = MemoryOutputPipe::new(1 << 16);
    let mut argv = vec![name.to_string()];
    argv.extend(args.iter().cloned());
    let wasi = wasmtime_wasi::WasiCtxBuilder::new()
        .stdout(stdout.clone())
        .args(&argv)
        .build_p1();
    let mut store: Store<WasiP1Ctx> = Store::new(engine, wasi);
    if fuel {
        store.set_fuel(u64::MAX).expect("fuel");
    }
    let mut linker: Linker<WasiP1Ctx> = Linker::new(engine);
    p1::add_to_linker_sync(&mut linker, |t| t).expect("linker");
    let t = Instant::now();
    let instance = linker.instantiate(&mut store, module).expect("instantiate");
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .expect("_start");
    if let Err(e) = start.call(&mut store, ()) {
        match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(code) if code.0 == 0 => {}
            _ => panic!("{name} failed: {e:#}"),
        }
    }
    let elapsed = t.elapsed();
    drop(store);
    (elapsed, stdout.contents().to_vec())
}
