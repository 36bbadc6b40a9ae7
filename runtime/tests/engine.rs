//! Engine, validation, instrumentation and executor tests.
//!
//! The `wat` modules test each mechanism in isolation with a tiny fake host;
//! the `guests` module runs the real clang-built hostile programs from
//! `wasm_programs/build/` through the whole runtime.

use std::sync::Arc;

use replicode_runtime::config::RuntimeConfig;
use replicode_runtime::engine::GuestEngine;
use replicode_runtime::error::{RuntimeError, ValidationError};
use replicode_runtime::exec::{
    self, GuestData, GuestHost, GuestInstance, RunOutcome, RunReport, TrapKind,
};
use replicode_runtime::instrument;
use wasmtime::{Caller, Linker};

/// A fake host: `fd_read` blocks once per call (Asyncify protocol), then
/// returns the number of times it was resumed; `proc_exit` records the code.
#[derive(Default)]
struct FakeHost {
    exit: Option<i32>,
    blocked: Option<u32>,
    data_ptr: Option<u32>,
    resumes: i32,
}

impl GuestHost for FakeHost {
    type Blocked = u32;
    fn exit_code(&self) -> Option<i32> {
        self.exit
    }
    fn blocked(&self) -> Option<u32> {
        self.blocked
    }
    fn set_asyncify_data_ptr(&mut self, ptr: Option<u32>) {
        self.data_ptr = ptr;
    }
}

#[derive(Debug)]
struct ExitError(i32);
impl std::fmt::Display for ExitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}
impl std::error::Error for ExitError {}

fn call_export(
    caller: &mut Caller<'_, GuestData<FakeHost>>,
    name: &str,
    args: &[wasmtime::Val],
) -> wasmtime::Result<i32> {
    let f = caller
        .get_export(name)
        .and_then(|e| e.into_func())
        .ok_or_else(|| wasmtime::Error::msg(format!("no export {name}")))?;
    let mut out = [wasmtime::Val::I32(0)];
    let n = f.ty(&*caller).results().len();
    f.call(&mut *caller, args, &mut out[..n])?;
    Ok(out[0].i32().unwrap_or(0))
}

fn fake_linker(engine: &GuestEngine) -> Linker<GuestData<FakeHost>> {
    let mut linker = Linker::new(engine.engine());
    linker
        .func_wrap(
            "wasi_snapshot_preview1",
            "fd_read",
            |mut caller: Caller<'_, GuestData<FakeHost>>,
             fd: i32,
             _iov: i32,
             _n: i32,
             _out: i32|
             -> wasmtime::Result<i32> {
                if call_export(&mut caller, "asyncify_get_state", &[])? == 2 {
                    call_export(&mut caller, "asyncify_stop_rewind", &[])?;
                    caller.data_mut().host.blocked = None;
                    caller.data_mut().host.resumes += 1;
                    return Ok(caller.data().host.resumes * 10);
                }
                let ptr = caller
                    .data()
                    .host
                    .data_ptr
                    .ok_or_else(|| wasmtime::Error::msg("no asyncify buffer"))?;
                caller.data_mut().host.blocked = Some(fd as u32);
                call_export(
                    &mut caller,
                    "asyncify_start_unwind",
                    &[wasmtime::Val::I32(ptr as i32)],
                )?;
                Ok(0)
            },
        )
        .expect("define fd_read");
    linker
        .func_wrap(
            "wasi_snapshot_preview1",
            "proc_exit",
            |mut caller: Caller<'_, GuestData<FakeHost>>, code: i32| -> wasmtime::Result<()> {
                caller.data_mut().host.exit = Some(code);
                Err(wasmtime::Error::new(ExitError(code)))
            },
        )
        .expect("define proc_exit");
    linker
}

fn wasm(wat: &str) -> Vec<u8> {
    wat::parse_str(wat).expect("test WAT parses")
}

fn small_config() -> RuntimeConfig {
    let mut c = RuntimeConfig::default();
    c.limits.max_memory_pages = 16;
    c.limits.max_stack_slots = 10_000;
    c
}

fn engine(config: RuntimeConfig) -> GuestEngine {
    GuestEngine::new(config).expect("engine builds")
}

/// Instantiates `wat` on a fresh engine and calls `_start` with `fuel`.
fn run_wat(config: RuntimeConfig, wat: &str, fuel: u64) -> RunReport<u32> {
    let engine = engine(config.clone());
    let module = engine.load(&wasm(wat)).expect("module loads");
    let linker = fake_linker(&engine);
    exec::on_guest_stack(&config, || {
        let mut g = GuestInstance::instantiate(&engine, module, &linker, FakeHost::default())
            .expect("instantiates");
        g.start(fuel).expect("runs")
    })
    .expect("guest thread")
}

#[path = "engine/preparation.rs"]
mod preparation;

const MEM: &str = r#"(memory (export "memory") 1)"#;

mod validation {
    use super::*;

    fn refuse(wat: &str) -> ValidationError {
        match instrument::prepare(&wasm(wat), &small_config()) {
            Err(RuntimeError::Validation(e)) => e,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn unknown_import_is_named() {
        let e = refuse(&format!(
            r#"(module (import "env" "system" (func (param i32))) {MEM} (func (export "_start")))"#
        ));
        assert_eq!(
            e,
            ValidationError::UnknownImport {
                module: "env".into(),
                name: "system".into(),
                kind: "function"
            }
        );
        assert!(e.to_string().contains("env.system"), "{e}");
    }

    #[test]
    fn unknown_wasi_function_is_named() {
        let e = refuse(&format!(
            r#"(module (import "wasi_snapshot_preview1" "fd_frobnicate" (func)) {MEM} (func (export "_start")))"#
        ));
        assert!(
            matches!(e, ValidationError::UnknownImport { ref name, .. } if name == "fd_frobnicate"),
            "{e}"
        );
    }

    #[test]
    fn wrong_wasi_signature_is_refused() {
        let e = refuse(&format!(
            r#"(module (import "wasi_snapshot_preview1" "fd_close" (func (param i64) (result i32))) {MEM} (func (export "_start")))"#
        ));
        assert!(
            matches!(e, ValidationError::ImportSignature { ref name, .. } if name == "fd_close"),
            "{e}"
        );
    }

    #[test]
    fn shared_memory_is_refused_as_threads() {
        let e =
            refuse(r#"(module (memory (export "memory") 1 1 shared) (func (export "_start")))"#);
        assert!(
            matches!(
                e,
                ValidationError::ForbiddenFeature {
                    feature: "threads",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn memory64_is_refused() {
        let e = refuse(r#"(module (memory (export "memory") i64 1) (func (export "_start")))"#);
        assert!(
            matches!(
                e,
                ValidationError::ForbiddenFeature {
                    feature: "memory64",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn multi_memory_is_refused() {
        let e =
            refuse(r#"(module (memory (export "memory") 1) (memory 1) (func (export "_start")))"#);
        assert!(
            matches!(
                e,
                ValidationError::ForbiddenFeature {
                    feature: "multi-memory",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn start_section_is_refused() {
        let e = refuse(&format!(
            r#"(module {MEM} (func $s) (start $s) (func (export "_start")))"#
        ));
        assert!(
            matches!(
                e,
                ValidationError::ForbiddenFeature {
                    feature: "start function",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn table_grow_is_refused_with_function_index() {
        let e = refuse(&format!(
            r#"(module {MEM} (table 1 funcref)
                 (func (export "_start") (drop (table.grow 0 (ref.null func) (i32.const 1)))))"#
        ));
        assert!(
            matches!(
                e,
                ValidationError::ForbiddenOperator {
                    op: "table.grow",
                    func: 0,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn passive_data_is_refused() {
        let e = refuse(&format!(
            r#"(module {MEM} (data "abc") (func (export "_start")))"#
        ));
        assert!(
            matches!(
                e,
                ValidationError::ForbiddenFeature {
                    feature: "passive data segments",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn oversize_module_is_refused() {
        let mut c = small_config();
        c.limits.max_module_bytes = 16;
        let bytes = wasm(&format!(r#"(module {MEM} (func (export "_start")))"#));
        match instrument::prepare(&bytes, &c) {
            Err(RuntimeError::Validation(ValidationError::TooLarge { size, limit: 16 })) => {
                assert_eq!(size, bytes.len())
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn initial_memory_above_limit_is_refused() {
        let e = refuse(r#"(module (memory (export "memory") 17) (func (export "_start")))"#);
        assert_eq!(
            e,
            ValidationError::InitialMemory {
                pages: 17,
                limit: 16
            }
        );
    }

    #[test]
    fn missing_start_and_memory_are_refused() {
        assert_eq!(
            refuse(r#"(module (memory (export "memory") 1))"#),
            ValidationError::NoStart
        );
        assert_eq!(
            refuse(r#"(module (func (export "_start")))"#),
            ValidationError::NoMemory
        );
    }

    #[test]
    fn reserved_export_is_refused() {
        let e = refuse(&format!(
            r#"(module {MEM} (func (export "_start")) (func (export "asyncify_get_state")))"#
        ));
        assert_eq!(
            e,
            ValidationError::ReservedName("asyncify_get_state".into())
        );
    }

    #[test]
    fn simd_is_refused_when_off() {
        let mut c = small_config();
        c.simd = false;
        let bytes = wasm(&format!(
            r#"(module {MEM} (func (export "_start") (drop (v128.const i64x2 0 0))))"#
        ));
        assert!(matches!(
            instrument::prepare(&bytes, &c),
            Err(RuntimeError::Validation(ValidationError::Malformed(_)))
        ));
        let mut on = small_config();
        on.simd = true;
        on.nan = replicode_runtime::config::NanMode::Eager;
        assert!(instrument::prepare(&bytes, &on).is_ok());
    }
}

mod stack_limit {
    use super::*;

    /// `$f` has an early `return`, a `br` to the function label and a `br_if`
    /// out of a loop: every exit must restore the counter.
    const BALANCED: &str = r#"(module
        (memory (export "memory") 1)
        (func $f (param i32) (result i32)
          (if (i32.eq (local.get 0) (i32.const 0)) (then (return (i32.const 7))))
          (if (i32.eq (local.get 0) (i32.const 1)) (then (br 1 (i32.const 8))))
          (loop $l (br_if $l (i32.eqz (i32.const 1))))
          (i32.const 9))
        (func (export "_start")
          (drop (call $f (i32.const 0)))
          (drop (call $f (i32.const 1)))
          (drop (call $f (i32.const 2)))))"#;

    #[test]
    fn counter_returns_to_zero_across_every_exit() {
        let config = small_config();
        let engine = engine(config.clone());
        let module = engine.load(&wasm(BALANCED)).expect("loads");
        let linker = fake_linker(&engine);
        let depth = exec::on_guest_stack(&config, || {
            let mut g = GuestInstance::instantiate(&engine, module, &linker, FakeHost::default())
                .expect("instantiates");
            assert_eq!(
                g.start(1_000_000).expect("runs").outcome,
                RunOutcome::Exited(0)
            );
            g.stack_depth()
        })
        .expect("guest thread");
        assert_eq!(depth, 0);
    }

    /// Unbounded recursion counting its depth in a global.
    const RECURSE: &str = r#"(module
        (memory (export "memory") 1)
        (global $n (export "n") (mut i32) (i32.const 0))
        (func $r (param i32) (result i32)
          (global.set $n (i32.add (global.get $n) (i32.const 1)))
          (i32.add (call $r (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
        (func (export "_start") (drop (call $r (i32.const 0)))))"#;

    fn recursion_depth(config: &RuntimeConfig, extra_stack: usize) -> (RunOutcome<u32>, i32, u64) {
        let engine = engine(config.clone());
        let module = engine.load(&wasm(RECURSE)).expect("loads");
        let linker = fake_linker(&engine);
        // A bigger native stack for the thread must not change the outcome.
        exec::on_guest_stack_with_headroom(config, extra_stack, || {
            let mut g = GuestInstance::instantiate(&engine, module, &linker, FakeHost::default())
                .expect("instantiates");
            let report = g.start(1_000_000_000).expect("runs");
            let n = g
                .instance()
                .get_global(g.store_mut(), "n")
                .expect("n")
                .get(g.store_mut())
                .i32()
                .expect("i32");
            (report.outcome, n, report.fuel_used)
        })
        .expect("guest thread")
    }

    #[test]
    fn unbounded_recursion_stops_at_the_same_logical_depth() {
        let config = small_config();
        let (outcome, depth, fuel) = recursion_depth(&config, 0);
        assert_eq!(outcome, RunOutcome::StackOverflow);
        let (outcome2, depth2, fuel2) = recursion_depth(&config, 64 << 20);
        assert_eq!(
            (outcome2, depth2, fuel2),
            (RunOutcome::StackOverflow, depth, fuel)
        );
        // $r's frame: 4 overhead + 1 param + operand height 2 = 7 slots; `_start`
        // costs 4 + operand height 1. The call that crosses 10_000 traps on entry.
        assert_eq!(depth, (10_000 - 5) / 7);
    }

    #[test]
    fn own_unreachable_is_a_trap_not_a_stack_overflow() {
        let report = run_wat(
            small_config(),
            &format!(r#"(module {MEM} (func (export "_start") unreachable))"#),
            1000,
        );
        assert!(
            matches!(report.outcome, RunOutcome::Trapped(ref t) if t.kind == TrapKind::Unreachable),
            "{report:?}"
        );
    }

    #[test]
    fn multi_value_functions_are_wrapped() {
        let report = run_wat(
            small_config(),
            &format!(
                r#"(module {MEM}
                  (func $two (result i32 i32) (if (i32.const 1) (then (return (i32.const 1) (i32.const 2)))) (i32.const 3) (i32.const 4))
                  (func (export "_start") (call $two) (drop) (drop)))"#
            ),
            1000,
        );
        assert_eq!(report.outcome, RunOutcome::Exited(0));
    }
}

mod fuel {
    use super::*;

    const SPIN: &str =
        r#"(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))"#;

    #[test]
    fn infinite_loop_runs_out_of_fuel_at_the_budget() {
        let a = run_wat(small_config(), SPIN, 5_000_000);
        assert_eq!(a.outcome, RunOutcome::OutOfFuel);
        assert_eq!(a.fuel_used, 5_000_000);
        assert_eq!(run_wat(small_config(), SPIN, 5_000_000), a);
    }

    fn fill(len: u32) -> u64 {
        let wat = format!(
            r#"(module {MEM} (func (export "_start") (memory.fill (i32.const 0) (i32.const 1) (local.get 0))) )"#
        );
        // The length comes from a local so wasmtime cannot fold it at compile time.
        let wat = wat.replace(
            "(func (export \"_start\")",
            &format!("(func (export \"_start\") (local i32) (local.set 0 (i32.const {len}))"),
        );
        let r = run_wat(small_config(), &wat, 10_000_000);
        assert_eq!(r.outcome, RunOutcome::Exited(0));
        r.fuel_used
    }

    #[test]
    fn memory_fill_costs_one_fuel_per_byte() {
        let small = fill(1_000);
        let big = fill(61_000);
        assert_eq!(big - small, 60_000);
    }

    #[test]
    fn unaffordable_fill_runs_out_of_fuel() {
        let wat = format!(
            r#"(module {MEM} (func (export "_start") (local i32) (local.set 0 (i32.const 60000))
                 (memory.fill (i32.const 0) (i32.const 1) (local.get 0))))"#
        );
        assert_eq!(
            run_wat(small_config(), &wat, 10_000).outcome,
            RunOutcome::OutOfFuel
        );
    }
}

mod memory_limit {
    use super::*;

    #[test]
    fn growth_past_the_limit_returns_minus_one() {
        // 16 pages allowed: 1 initial + 15 more succeeds, the 16th extra fails.
        let wat = r#"(module
            (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
            (memory (export "memory") 1)
            (func (export "_start")
              (if (i32.ne (memory.grow (i32.const 15)) (i32.const 1)) (then (call $exit (i32.const 1))))
              (call $exit (memory.grow (i32.const 1)))))"#;
        assert_eq!(
            run_wat(small_config(), wat, 1_000_000).outcome,
            RunOutcome::Exited(-1)
        );
    }

    #[test]
    fn trap_after_refused_growth_is_memory_limit() {
        let wat = r#"(module (memory (export "memory") 1)
            (func (export "_start") (if (i32.eq (memory.grow (i32.const 100)) (i32.const -1)) (then unreachable))))"#;
        assert_eq!(
            run_wat(small_config(), wat, 1_000_000).outcome,
            RunOutcome::MemoryLimit
        );
    }
}

mod asyncify_protocol {
    use super::*;

    /// Reads twice (blocking each time) and exits with the sum of the results.
    const READER: &str = r#"(module
        (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (func $get (param i32) (result i32) (local i32)
          (local.set 1 (i32.mul (local.get 0) (i32.const 100)))
          (i32.add (call $read (local.get 0) (i32.const 0) (i32.const 0) (i32.const 0)) (local.get 1)))
        (func (export "_start") (local i32)
          (local.set 0 (call $get (i32.const 3)))
          (call $exit (i32.add (local.get 0) (call $get (i32.const 4))))))"#;

    #[test]
    fn blocks_resumes_and_keeps_locals() {
        let config = small_config();
        let engine = engine(config.clone());
        let module = engine.load(&wasm(READER)).expect("loads");
        assert!(module.prepared.asyncified);
        let linker = fake_linker(&engine);
        let outcomes = exec::on_guest_stack(&config, || {
            let mut g = GuestInstance::instantiate(&engine, module, &linker, FakeHost::default())
                .expect("instantiates");
            let mut outcomes = vec![g.start(1_000_000).expect("start").outcome];
            assert_eq!(
                g.stack_depth(),
                0,
                "unwinding must leave the stack counter balanced"
            );
            outcomes.push(g.resume(1_000_000).expect("resume 1").outcome);
            outcomes.push(g.resume(1_000_000).expect("resume 2").outcome);
            assert!(matches!(
                g.resume(1),
                Err(RuntimeError::NotBlocked("finished"))
            ));
            outcomes
        })
        .expect("guest thread");
        // 3*100 + 10 (first resume) + 4*100 + 20 (second resume).
        assert_eq!(
            outcomes,
            vec![
                RunOutcome::Blocked(3),
                RunOutcome::Blocked(4),
                RunOutcome::Exited(730)
            ]
        );
    }

    #[test]
    fn guest_calls_off_the_guest_stack_are_refused() {
        let config = small_config();
        let engine = engine(config.clone());
        let module = engine.load(&wasm(READER)).expect("loads");
        let linker = fake_linker(&engine);
        let mut g = GuestInstance::instantiate(&engine, module, &linker, FakeHost::default())
            .expect("instantiates");
        assert!(matches!(g.start(1000), Err(RuntimeError::NotOnGuestStack)));
    }
}

mod pipeline {
    use super::*;

    #[test]
    fn prepare_is_deterministic_and_cached_by_hash() {
        let bytes = wasm(super::asyncify_protocol_source());
        let a = instrument::prepare(&bytes, &small_config()).expect("prepares");
        let b = instrument::prepare(&bytes, &small_config()).expect("prepares");
        assert_eq!(a, b);
        let engine = engine(small_config());
        let m1 = engine.load(&bytes).expect("loads");
        let m2 = engine.load(&bytes).expect("loads");
        assert!(Arc::ptr_eq(&m1, &m2));
        assert_eq!(engine.cached_modules(), 1);
        assert_eq!(m1.prepared.hash, instrument::sha256(&m1.prepared.bytes));
    }

    /// Stores 0/0 (a NaN whose payload the hardware picks) and exits with its
    /// high 32 bits: with the lazy pass the stored NaN is the canonical one.
    #[test]
    fn lazy_nan_mode_canonicalizes_observable_nans() {
        let mut c = small_config();
        c.nan = replicode_runtime::config::NanMode::Lazy;
        let wat = r#"(module
            (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
            (memory (export "memory") 1)
            (func $nan (param f64) (result f64) (f64.div (local.get 0) (local.get 0)))
            (func (export "_start")
              (f64.store (i32.const 0) (call $nan (f64.const 0)))
              (call $exit (i32.load (i32.const 4)))))"#;
        let report = run_wat(c, wat, 1_000_000);
        assert_eq!(report.outcome, RunOutcome::Exited(0x7ff8_0000));
    }
}

fn asyncify_protocol_source() -> &'static str {
    r#"(module
        (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "_start") (drop (call $read (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))))"#
}

/// The clang-built guests of `wasm_programs/` (run `make -C wasm_programs` first)
/// through the whole runtime: validation, instrumentation, WASI, limits.
mod guests {
    use std::path::{Path, PathBuf};

    use replicode_runtime::config::RuntimeConfig;
    use replicode_runtime::engine::GuestEngine;
    use replicode_runtime::exec::RunOutcome;
    use replicode_runtime::run::{self, DirMapping, RunResult, RunSpec};
    use replicode_runtime::wasi::stdio::Capture;

    fn programs() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm_programs/build")
    }

    fn guest(name: &str) -> Vec<u8> {
        let path = programs().join(format!("{name}.wasm"));
        std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run `make -C wasm_programs`)", path.display()))
    }

    struct Ran {
        result: RunResult,
        stdout: String,
        stderr: String,
    }

    fn run_guest(config: RuntimeConfig, name: &str, args: &[&str], data_dir: bool) -> Ran {
        let engine = GuestEngine::new(config).expect("engine");
        let empty = tempfile::tempdir().expect("tempdir");
        let dirs = if data_dir {
            vec![DirMapping {
                host: empty.path().to_path_buf(),
                guest: "/data".into(),
            }]
        } else {
            Vec::new()
        };
        let spec = RunSpec {
            args: std::iter::once(name)
                .chain(args.iter().copied())
                .map(String::from)
                .collect(),
            dirs,
            seed: 7,
            start_time_ns: 1_700_000_000_000_000_000,
            ..RunSpec::default()
        };
        let (out, err) = (Capture::new(), Capture::new());
        let result =
            run::run(&engine, &guest(name), &spec, out.sink(), err.sink()).expect("run starts");
        let text = |c: &Capture| String::from_utf8_lossy(&c.contents()).into_owned();
        Ran {
            result,
            stdout: text(&out),
            stderr: text(&err),
        }
    }

    fn config() -> RuntimeConfig {
        let mut c = RuntimeConfig::default();
        c.limits.fuel = 2_000_000_000;
        c.limits.max_memory_pages = 512; // 32 MiB
        c.limits.max_stack_slots = 100_000;
        c.limits.max_fds = 64;
        c.limits.fs.max_total_bytes = 4 << 20;
        c.limits.fs.max_file_size = 1 << 20;
        c
    }

    #[test]
    fn hello_prints_its_arguments() {
        let r = run_guest(config(), "hello", &["a b", "-x"], false);
        assert_eq!(r.result.outcome, RunOutcome::Exited(0), "{}", r.stderr);
        assert_eq!(
            r.stdout,
            "hello from replicode\nargc=3\nargv[0]=hello\nargv[1]=a b\nargv[2]=-x\n"
        );
    }

    #[test]
    fn loop_runs_out_of_fuel_at_the_same_count() {
        let mut c = config();
        c.limits.fuel = 50_000_000;
        let a = run_guest(c.clone(), "loop", &[], false);
        assert_eq!(a.result.outcome, RunOutcome::OutOfFuel);
        assert_eq!(a.result.fuel_used, 50_000_000);
        assert_eq!(a.stdout, "loop: starting\n");
        let b = run_guest(c, "loop", &[], false);
        assert_eq!((a.result, a.stdout), (b.result, b.stdout));
    }

    #[test]
    fn membomb_is_refused_at_the_memory_limit() {
        exits_cleanly_and_repeats("membomb", &[], false, "memory now 512 pages");
    }

    #[test]
    fn recursion_stops_at_the_logical_stack_limit() {
        let a = run_guest(config(), "recursion", &[], false);
        assert_eq!(a.result.outcome, RunOutcome::StackOverflow);
        let b = run_guest(config(), "recursion", &[], false);
        assert_eq!(a.result, b.result);
        let bounded = run_guest(config(), "recursion", &["1000"], false);
        assert_eq!(bounded.result.outcome, RunOutcome::Exited(0));
        assert!(
            bounded.stdout.starts_with("recursion: depth 1000 "),
            "{}",
            bounded.stdout
        );
    }

    #[test]
    fn fd_exhaustion_is_emfile_and_recoverable() {
        exits_cleanly_and_repeats("fd_exhaust", &["/data"], true, "before EMFILE");
    }

    #[test]
    fn quota_exhaustion_is_enospc_and_recoverable() {
        exits_cleanly_and_repeats("quota", &["/data"], true, "before ENOSPC");
    }

    #[test]
    fn dotdot_escapes_are_refused() {
        let a = run_guest(config(), "escape_dotdot", &["/data"], true);
        assert_eq!(
            a.result.outcome,
            RunOutcome::Exited(0),
            "{}{}",
            a.stdout,
            a.stderr
        );
        assert!(!a.stdout.contains("ALLOWED"), "{}", a.stdout);
    }

    #[test]
    fn symlink_escapes_are_refused() {
        let a = run_guest(config(), "escape_symlink", &["/data"], true);
        assert_eq!(
            a.result.outcome,
            RunOutcome::Exited(0),
            "{}{}",
            a.stdout,
            a.stderr
        );
        assert!(
            !a.stdout.contains("ALLOWED") && !a.stdout.contains("WRONG"),
            "{}",
            a.stdout
        );
    }

    /// Runs `guest` twice: it must exit 0, print `marker`, and give identical
    /// outcome and stdout both times.
    fn exits_cleanly_and_repeats(guest: &str, args: &[&str], data_dir: bool, marker: &str) {
        let a = run_guest(config(), guest, args, data_dir);
        assert_eq!(
            a.result.outcome,
            RunOutcome::Exited(0),
            "{}{}",
            a.stdout,
            a.stderr
        );
        assert!(a.stdout.contains(marker), "{}", a.stdout);
        let b = run_guest(config(), guest, args, data_dir);
        assert_eq!((a.result, a.stdout), (b.result, b.stdout));
    }

    /// The `replicode` binary, built next to this test's target directory.
    fn replicode_bin() -> PathBuf {
        let exe = std::env::current_exe().expect("test exe");
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("replicode"))
            .expect("target dir");
        assert!(
            bin.exists(),
            "{} missing: run `cargo build --release -p replicode` first",
            bin.display()
        );
        bin
    }

    #[test]
    fn cli_runs_are_identical_across_tz_env_and_cwd() {
        let bin = replicode_bin();
        let data = tempfile::tempdir().expect("tempdir");
        std::fs::write(data.path().join("input.txt"), "some input\n").expect("write");
        let before = std::fs::read_dir(data.path()).expect("list").count();
        let prog = programs().join("clock_random.wasm");
        let runs: Vec<_> = [
            ("UTC", "/"),
            ("Asia/Kolkata", "/tmp"),
            ("America/New_York", env!("CARGO_MANIFEST_DIR")),
        ]
        .iter()
        .map(|(tz, cwd)| {
            let out = std::process::Command::new(&bin)
                .current_dir(cwd)
                .env("TZ", tz)
                .env("RANDOM_HOST_VAR", *tz)
                .args([
                    "run",
                    "--digest",
                    "--seed",
                    "5",
                    "--time",
                    "2024-05-01T12:00:00Z",
                    "--dir",
                ])
                .arg(format!("{}::/data", data.path().display()))
                .arg(&prog)
                .arg("3")
                .output()
                .expect("replicode runs");
            (out.status.code(), out.stdout, out.stderr)
        })
        .collect();
        assert_eq!(
            runs[0].0,
            Some(0),
            "{}",
            String::from_utf8_lossy(&runs[0].2)
        );
        assert!(String::from_utf8_lossy(&runs[0].2).contains("fs digest "));
        assert!(runs.iter().all(|r| *r == runs[0]), "runs differ: {runs:?}");
        assert_eq!(
            std::fs::read_dir(data.path()).expect("list").count(),
            before,
            "host dir modified"
        );
    }

    #[test]
    fn cli_exit_codes_name_the_outcome() {
        let bin = replicode_bin();
        let run = |args: &[&str]| {
            let out = std::process::Command::new(&bin)
                .arg("run")
                .args(args)
                .output()
                .expect("replicode runs");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (code, err) = run(&[
            "--fuel",
            "1000000",
            programs().join("loop.wasm").to_str().expect("utf8"),
        ]);
        assert_eq!(code, Some(123), "{err}");
        assert!(err.contains("replicode: guest ran out of fuel"), "{err}");
        let (code, err) = run(&[programs().join("recursion.wasm").to_str().expect("utf8")]);
        assert_eq!(code, Some(124), "{err}");
        let not_wasm = tempfile::NamedTempFile::new().expect("tmp");
        std::fs::write(not_wasm.path(), b"not wasm").expect("write");
        let (code, err) = run(&[not_wasm.path().to_str().expect("utf8")]);
        assert_eq!(code, Some(121), "{err}");
        assert!(err.starts_with("replicode: "), "{err}");
    }
}
