//! Runs a module under the two NaN modes and records everything a validator could
//! observe: returned bits or trap, bits passed to the host, exported globals and a
//! digest of linear memory (or, for WASI guests, stdout and the exit code).

use super::generator::Arg;
use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine, Instance, Linker, Module, OptLevel, Store, Trap, Val};

/// Fuel per call: far more than any generated function needs, so running out is
/// never part of an outcome (the pass adds instructions, so fuel use differs).
const FUEL: u64 = 1 << 40;

/// An engine configured like the node: fuel on, SIMD off, optimizing, and NaN
/// canonicalization eager or off.
pub fn engine(eager_canonicalization: bool) -> Engine {
    let mut c = Config::new();
    c.cranelift_nan_canonicalization(eager_canonicalization);
    c.wasm_relaxed_simd(false);
    c.wasm_simd(false);
    c.consume_fuel(true);
    c.cranelift_opt_level(OptLevel::Speed);
    match Engine::new(&c) {
        Ok(e) => e,
        Err(e) => panic!("engine config rejected: {e:#}"),
    }
}

/// How one call ended, by bits.
#[derive(Debug, PartialEq, Eq)]
pub enum CallOutcome {
    Returned(Vec<u64>),
    Trapped(String),
}

/// Everything observable from one run of a generated module.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub calls: Vec<CallOutcome>,
    pub observed: Vec<u64>,
    pub globals: Vec<u64>,
    pub memory_sha256: [u8; 32],
}

fn bits(v: &Val) -> u64 {
    match v {
        Val::I32(x) => u64::from(*x as u32),
        Val::I64(x) => *x as u64,
        Val::F32(x) => u64::from(*x),
        Val::F64(x) => *x,
        other => panic!("unexpected value type {other:?}"),
    }
}

fn to_val(a: &Arg) -> Val {
    match *a {
        Arg::I32(x) => Val::I32(x),
        Arg::I64(x) => Val::I64(x),
        Arg::F32(x) => Val::F32(x),
        Arg::F64(x) => Val::F64(x),
    }
}

fn trap_name(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<Trap>() {
        Some(t) => format!("{t:?}"),
        None => format!("error: {e}"),
    }
}

/// Instantiates `wasm` on `engine` and performs `calls` in order.
pub fn run_generated(engine: &Engine, wasm: &[u8], calls: &[(String, Vec<Arg>)]) -> Outcome {
    let module = Module::new(engine, wasm).unwrap_or_else(|e| panic!("compile failed: {e:#}"));
    let mut store: Store<Vec<u64>> = Store::new(engine, Vec::new());
    let mut linker: Linker<Vec<u64>> = Linker::new(engine);
    linker
        .func_wrap(
            "env",
            "obs_f32",
            |mut c: wasmtime::Caller<'_, Vec<u64>>, x: f32| {
                c.data_mut().push(u64::from(x.to_bits()));
            },
        )
        .and_then(|l| {
            l.func_wrap(
                "env",
                "obs_f64",
                |mut c: wasmtime::Caller<'_, Vec<u64>>, x: f64| {
                    c.data_mut().push(x.to_bits());
                },
            )
        })
        .unwrap_or_else(|e| panic!("linker: {e:#}"));
    let instance: Instance = linker
        .instantiate(&mut store, &module)
        .unwrap_or_else(|e| panic!("instantiate failed: {e:#}"));
    let mut outcomes = Vec::with_capacity(calls.len());
    for (name, args) in calls {
        let func = instance
            .get_func(&mut store, name)
            .unwrap_or_else(|| panic!("missing export {name}"));
        let ty = func.ty(&store);
        let args: Vec<Val> = args.iter().map(to_val).collect();
        let mut results: Vec<Val> = ty.results().map(|_| Val::I32(0)).collect();
        store
            .set_fuel(FUEL)
            .unwrap_or_else(|e| panic!("fuel: {e:#}"));
        outcomes.push(match func.call(&mut store, &args, &mut results) {
            Ok(()) => CallOutcome::Returned(results.iter().map(bits).collect()),
            Err(e) => CallOutcome::Trapped(trap_name(&e)),
        });
    }
    let mut globals = Vec::new();
    for g in ["g32", "g64"] {
        if let Some(global) = instance.get_global(&mut store, g) {
            globals.push(bits(&global.get(&mut store)));
        }
    }
    let memory_sha256 = match instance.get_memory(&mut store, "mem") {
        Some(m) => Sha256::digest(m.data(&store)).into(),
        None => [0; 32],
    };
    Outcome {
        calls: outcomes,
        observed: store.into_data(),
        globals,
        memory_sha256,
    }
}

/// What a WASI guest showed the world.
#[derive(Debug, PartialEq, Eq)]
pub struct WasiOutcome {
    pub stdout: Vec<u8>,
    pub exit: Result<i32, String>,
    pub memory_sha256: [u8; 32],
}

/// Runs a `wasm32-wasi` command module's `_start` with `wasmtime-wasi` as a neutral
/// host (the same host for both modes, so the comparison is fair).
pub fn run_wasi(engine: &Engine, wasm: &[u8], args: &[&str]) -> WasiOutcome {
    use wasmtime_wasi::p1::{self, WasiP1Ctx};
    use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
    let module = Module::new(engine, wasm).unwrap_or_else(|e| panic!("compile failed: {e:#}"));
    let stdout = MemoryOutputPipe::new(1 << 20);
    let wasi = wasmtime_wasi::WasiCtxBuilder::new()
        .stdout(stdout.clone())
        .args(args)
        .build_p1();
    let mut store: Store<WasiP1Ctx> = Store::new(engine, wasi);
    let mut linker: Linker<WasiP1Ctx> = Linker::new(engine);
    p1::add_to_linker_sync(&mut linker, |t| t).unwrap_or_else(|e| panic!("linker: {e:#}"));
    store
        .set_fuel(FUEL)
        .unwrap_or_else(|e| panic!("fuel: {e:#}"));
    let instance = linker
        .instantiate(&mut store, &module)
        .unwrap_or_else(|e| panic!("instantiate failed: {e:#}"));
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .unwrap_or_else(|e| panic!("no _start: {e:#}"));
    let exit = match start.call(&mut store, ()) {
        Ok(()) => Ok(0),
        Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(code) => Ok(code.0),
            None => Err(trap_name(&e)),
        },
    };
    let memory_sha256 = match instance.get_memory(&mut store, "memory") {
        Some(m) => Sha256::digest(m.data(&store)).into(),
        None => [0; 32],
    };
    drop(store);
    WasiOutcome {
        stdout: stdout.contents().to_vec(),
        exit,
        memory_sha256,
    }
}
