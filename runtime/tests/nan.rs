//! The lazy NaN pass (`instrument::nan`, issue 3) against cranelift's eager NaN
//! canonicalization: same observable bits on C guests and on generated modules,
//! exact bits for NaN-boxed values that are only copied, SIMD refused.
//!
//! `NAN_DIFF_MODULES` overrides how many generated modules the differential test
//! runs (default 1000 modules x 100 functions x 3 calls).

// The pass is included by path so this test does not depend on how the crate
// re-exports it; it is the same source file the runtime compiles.
#[path = "../src/instrument/nan.rs"]
#[allow(dead_code)]
mod nan;

#[path = "nan/generator.rs"]
mod generator;
#[path = "nan/harness.rs"]
mod harness;

use harness::{engine, run_generated, run_wasi, CallOutcome};
use nan::{
    canonicalize_nans, canonicalize_nans_with_stats, canonicalize_nans_within, NanPassError,
    WorkBudget,
};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

const DEFAULT_MODULES: u64 = 1000;
const FUNCTIONS_PER_MODULE: usize = 100;

fn pass(wasm: &[u8]) -> Vec<u8> {
    canonicalize_nans(wasm).unwrap_or_else(|e| panic!("pass failed: {e}"))
}

fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).unwrap_or_else(|e| panic!("bad test WAT: {e}"))
}

#[test]
fn generated_modules_match_eager_canonicalization() {
    let modules: u64 = std::env::var("NAN_DIFF_MODULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MODULES);
    let eager = engine(true);
    let lazy = engine(false);
    let functions = AtomicU64::new(0);
    let calls = AtomicU64::new(0);
    let fixes = AtomicU64::new(0);
    let arith = AtomicU64::new(0);
    let plain_checked = AtomicU64::new(0);
    let plain_differs = AtomicU64::new(0);
    let workers = 2u64;
    std::thread::scope(|s| {
        for w in 0..workers {
            let (eager, lazy) = (&eager, &lazy);
            let (functions, calls, fixes, arith) = (&functions, &calls, &fixes, &arith);
            let (plain_checked, plain_differs) = (&plain_checked, &plain_differs);
            s.spawn(move || {
                for seed in (w..modules).step_by(workers as usize) {
                    let g = generator::generate(seed, FUNCTIONS_PER_MODULE);
                    let (rewritten, stats) = canonicalize_nans_with_stats(&g.wasm)
                        .unwrap_or_else(|e| panic!("module {seed}: pass failed: {e}"));
                    let want = run_generated(eager, &g.wasm, &g.calls);
                    let got = run_generated(lazy, &rewritten, &g.calls);
                    if want != got {
                        let first = want.calls.iter().zip(&got.calls).position(|(a, b)| a != b);
                        panic!(
                            "module seed {seed}: lazy pass differs from eager (first differing \
                             call: {:?})\neager: {:?}\nlazy:  {:?}",
                            first.map(|i| &g.calls[i]),
                            first.map(|i| &want.calls[i]),
                            first.map(|i| &got.calls[i]),
                        );
                    }
                    if seed % 8 == 0 {
                        // Sensitivity: without the pass the generated NaNs must show.
                        plain_checked.fetch_add(1, Ordering::Relaxed);
                        if run_generated(lazy, &g.wasm, &g.calls) != want {
                            plain_differs.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    functions.fetch_add(g.functions as u64, Ordering::Relaxed);
                    calls.fetch_add(g.calls.len() as u64, Ordering::Relaxed);
                    fixes.fetch_add(u64::from(stats.fixes), Ordering::Relaxed);
                    arith.fetch_add(u64::from(stats.arithmetic_ops), Ordering::Relaxed);
                }
            });
        }
    });
    let (checked, differs) = (plain_checked.into_inner(), plain_differs.into_inner());
    println!(
        "nan differential: {modules} modules, {} generated functions, {} calls identical; \
         {} fixes for {} arithmetic ops; without the pass {differs}/{checked} modules differ",
        functions.into_inner(),
        calls.into_inner(),
        fixes.into_inner(),
        arith.into_inner(),
    );
    assert!(
        checked == 0 || differs * 2 >= checked,
        "the generator rarely exposes NaN bits ({differs}/{checked}): the test is too weak"
    );
}

#[test]
fn pass_output_is_deterministic_and_valid() {
    for seed in 0..20 {
        let g = generator::generate(10_000 + seed, 20);
        let a = pass(&g.wasm);
        assert_eq!(a, pass(&g.wasm), "seed {seed}: two runs differ");
        wasmparser::Validator::new()
            .validate_all(&a)
            .unwrap_or_else(|e| panic!("seed {seed}: output invalid: {e}"));
        // Applying the pass to its own output must not change behaviour.
        let calls = &g.calls;
        let e = engine(false);
        assert_eq!(
            run_generated(&e, &a, calls),
            run_generated(&e, &pass(&a), calls)
        );
    }
}

/// NaN-boxed values (payload-carrying, signalling, negative) copied through memory,
/// locals, parameters, calls, `select`, block results, globals and returns must keep
/// every bit, and the pass must not touch them at all.
#[test]
fn nan_boxed_values_that_are_only_copied_keep_their_bits() {
    let module = wat(r#"
        (module
          (memory (export "mem") 1)
          (global $g (export "g") (mut f64) (f64.const 0))
          (func $id (param f64) (result f64) (local f64)
            (local.set 1 (local.get 0))
            (local.get 1))
          (func (export "copy") (param $x f64) (param $c i32) (result f64)
            (local $t f64)
            (f64.store (i32.const 0) (local.get $x))
            (local.set $t (f64.load (i32.const 0)))
            (global.set $g (local.get $t))
            (f64.store (i32.const 8)
              (select (call $id (local.get $t)) (f64.load (i32.const 0)) (local.get $c)))
            (block (result f64)
              (br_if 0 (global.get $g) (local.get $c))
              (drop)
              (if (result f64) (local.get $c)
                (then (f64.load (i32.const 8)))
                (else (f64.reinterpret_i64 (i64.load (i32.const 0)))))))
          (func (export "copy32") (param $x f32) (result i32)
            (local $y f32)
            (local.set $y (local.get $x))
            (f32.store (i32.const 16) (local.get $y))
            (i32.reinterpret_f32 (f32.load (i32.const 16)))))
    "#);
    let (rewritten, stats) = canonicalize_nans_with_stats(&module).expect("pass");
    assert_eq!(stats.fixes, 0, "pure copies must not be rewritten");
    assert_eq!(stats.arithmetic_ops, 0);
    let patterns: [u64; 5] = [
        0xfff9_0000_dead_beef, // NaN-boxed pointer
        0x7ff0_0000_0000_0001, // signalling NaN
        0xfff8_0000_0000_0000, // negative quiet NaN
        0x7ff8_0000_0000_0007, // payload NaN
        0x4009_21fb_5444_2d18, // pi
    ];
    for eager_mode in [false, true] {
        let e = engine(eager_mode);
        for &bits in &patterns {
            for c in [0, 1] {
                let calls = vec![(
                    "copy".to_string(),
                    vec![generator::Arg::F64(bits), generator::Arg::I32(c)],
                )];
                let out = run_generated(&e, &rewritten, &calls);
                assert_eq!(
                    out.calls[0],
                    CallOutcome::Returned(vec![bits]),
                    "{bits:#018x} (select/branch {c}, eager {eager_mode}) lost bits"
                );
            }
            let b32 = (bits >> 32) as u32 | 1;
            let calls = vec![("copy32".to_string(), vec![generator::Arg::F32(b32)])];
            let out = run_generated(&e, &rewritten, &calls);
            assert_eq!(out.calls[0], CallOutcome::Returned(vec![u64::from(b32)]));
        }
    }
}

/// Reads the bits a module stored at address 0 after calling `run`.
fn stored_bits(wasm: &[u8], eager_mode: bool) -> u64 {
    let e = engine(eager_mode);
    let calls = vec![("run".to_string(), vec![])];
    match &run_generated(&e, wasm, &calls).calls[0] {
        CallOutcome::Returned(v) => v[0],
        CallOutcome::Trapped(t) => panic!("trapped: {t}"),
    }
}

#[test]
fn escapes_see_the_eager_canonical_nan_with_its_sign() {
    // 0/0 stored directly, negated once, negated twice, through abs and a loop.
    let cases = [
        (
            "(f64.div (f64.const 0) (f64.const 0))",
            nan::CANONICAL_NAN_F64,
        ),
        (
            "(f64.neg (f64.div (f64.const 0) (f64.const 0)))",
            nan::CANONICAL_NAN_F64 | 1 << 63,
        ),
        (
            "(f64.neg (f64.neg (f64.sqrt (f64.const -1))))",
            nan::CANONICAL_NAN_F64,
        ),
        (
            "(f64.abs (f64.neg (f64.sub (f64.const inf) (f64.const inf))))",
            nan::CANONICAL_NAN_F64,
        ),
        (
            "(f64.promote_f32 (f32.load (i32.const 64)))",
            nan::CANONICAL_NAN_F64,
        ),
    ];
    for (expr, want) in cases {
        let module = wat(&format!(
            r#"(module (memory (export "mem") 1)
                 (data (i32.const 64) "\01\00\80\ff")
                 (func (export "run") (result i64)
                   (f64.store (i32.const 0) {expr})
                   (i64.load (i32.const 0))))"#
        ));
        let rewritten = pass(&module);
        assert_eq!(stored_bits(&module, true), want, "eager: {expr}");
        assert_eq!(stored_bits(&rewritten, false), want, "lazy: {expr}");
    }
}

/// An accumulator computed in a loop and stored after it is fixed once, after the
/// loop, not on every iteration.
#[test]
fn loop_results_are_fixed_after_the_loop() {
    let module = wat(r#"
        (module (memory (export "mem") 1)
          (func (export "run") (param $x f64) (param $n i32) (local $acc f64)
            (loop $l
              (local.set $acc (f64.add (local.get $acc) (f64.mul (local.get $x) (local.get $x))))
              (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
            (f64.store (i32.const 0) (local.get $acc))))
    "#);
    let (rewritten, stats) = canonicalize_nans_with_stats(&module).expect("pass");
    assert_eq!(stats.fixes, 1);
    // The fix (its canonical-NaN constant) comes after the loop's `end`.
    let body = wasmparser::Parser::new(0)
        .parse_all(&rewritten)
        .find_map(|p| match p {
            Ok(wasmparser::Payload::CodeSectionEntry(b)) => Some(b),
            _ => None,
        })
        .expect("one body");
    let mut depth_at_const = None;
    let mut depth = 0;
    for op in body.get_operators_reader().expect("ops") {
        match op.expect("op") {
            wasmparser::Operator::Loop { .. } => depth += 1,
            wasmparser::Operator::End => depth -= 1,
            wasmparser::Operator::F64Const { value } if value.bits() == nan::CANONICAL_NAN_F64 => {
                depth_at_const = Some(depth)
            }
            _ => {}
        }
    }
    assert_eq!(depth_at_const, Some(0), "fix must sit outside the loop");
}

#[test]
fn simd_modules_are_refused() {
    let module = wat(r#"
        (module (func (export "f") (param v128 v128) (result v128)
          (f32x4.add (local.get 0) (local.get 1))))"#);
    let err = canonicalize_nans(&module).expect_err("SIMD must be refused");
    assert!(matches!(err, NanPassError::Invalid(_)), "{err}");
    assert!(
        err.to_string().contains("SIMD"),
        "error should name SIMD: {err}"
    );
}

#[test]
fn components_and_garbage_are_refused() {
    assert!(matches!(
        canonicalize_nans(b"\0asm\x0d\0\x01\0"),
        Err(NanPassError::Invalid(_))
    ));
    assert!(matches!(
        canonicalize_nans(b"not wasm"),
        Err(NanPassError::Invalid(_))
    ));
}

fn wasm_programs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wasm_programs")
}

/// Builds (if needed) and reads `wasm_programs/build/<name>.wasm`.
fn guest(name: &str) -> Vec<u8> {
    let dir = wasm_programs();
    let target = format!("build/{name}.wasm");
    let status = std::process::Command::new("make")
        .args(["-s", "-C"])
        .arg(&dir)
        .arg(&target)
        .status()
        .unwrap_or_else(|e| panic!("cannot run make for {target}: {e}"));
    assert!(status.success(), "make {target} failed");
    std::fs::read(dir.join(&target)).unwrap_or_else(|e| panic!("read {target}: {e}"))
}

/// The NaN-heavy C guests: every NaN origin (0/0, sqrt(-1), inf-inf, signalling NaNs
/// from memory, copysign, fmin/fmax, promote/demote) and NaN-boxed values copied
/// through memory and locals. Stdout, exit code and final memory must be identical.
#[test]
fn c_guests_match_eager_canonicalization() {
    let eager = engine(true);
    let lazy = engine(false);
    let mut plain_differs = 0;
    let names = ["nan_origins", "nan_box", "nan_kernels"];
    for name in names {
        let wasm = guest(name);
        let (rewritten, stats) = canonicalize_nans_with_stats(&wasm)
            .unwrap_or_else(|e| panic!("{name}: pass failed: {e}"));
        let want = run_wasi(&eager, &wasm, &[name]);
        let got = run_wasi(&lazy, &rewritten, &[name]);
        assert_eq!(
            want.exit,
            Ok(0),
            "{name}: {}",
            String::from_utf8_lossy(&want.stdout)
        );
        assert!(!want.stdout.is_empty(), "{name} printed nothing");
        assert_eq!(
            String::from_utf8_lossy(&want.stdout),
            String::from_utf8_lossy(&got.stdout),
            "{name}: stdout differs"
        );
        assert_eq!(want, got, "{name}: exit or memory differs");
        if run_wasi(&lazy, &wasm, &[name]) != want {
            plain_differs += 1;
        }
        println!(
            "{name}: identical; {} fixes for {} arithmetic ops in {} functions",
            stats.fixes, stats.arithmetic_ops, stats.functions
        );
    }
    assert!(
        plain_differs > 0,
        "no guest shows NaN bits without the pass: guests too weak"
    );
}

/// The budget's fallback (every arithmetic result fixed, no analysis) against
/// eager mode: forced on every function with a zero budget, on the NaN-heavy C
/// guests and on generated modules.
#[test]
fn eager_fallback_matches_eager_canonicalization() {
    let zero = WorkBudget {
        per_operator: 0,
        floor: 0,
    };
    let (eager, lazy) = (engine(true), engine(false));
    for name in ["nan_origins", "nan_box", "nan_kernels"] {
        let wasm = guest(name);
        let (rewritten, stats) = canonicalize_nans_within(&wasm, zero)
            .unwrap_or_else(|e| panic!("{name}: pass failed: {e}"));
        assert_eq!(stats.eager_functions, stats.functions, "{name}");
        assert!(stats.fixes >= stats.arithmetic_ops, "{name}: {stats:?}");
        let want = run_wasi(&eager, &wasm, &[name]);
        assert_eq!(want.exit, Ok(0), "{name}");
        assert_eq!(want, run_wasi(&lazy, &rewritten, &[name]), "{name}");
    }
    for seed in 0..100 {
        let g = generator::generate(20_000 + seed, FUNCTIONS_PER_MODULE);
        let (rewritten, _) = canonicalize_nans_within(&g.wasm, zero).expect("pass");
        assert_eq!(
            run_generated(&eager, &g.wasm, &g.calls),
            run_generated(&lazy, &rewritten, &g.calls),
            "seed {seed}"
        );
    }
}

/// The shape that made the analysis quadratic: a loop whose body copies a value
/// along a chain of `k` float locals, last link first (`x_k = x_{k-1}; ...;
/// x_2 = x_1; x_1 = a / b`). Each pass over the loop moves the "may be a
/// non-canonical NaN" fact one link further, so the loop header needs `k`
/// passes over a body of `k` copies, each pass copying `k` abstract locals:
/// 6 to 8 bytes per link: a 100 KB module is `k` = 16,600, 200 KB 29,000. The loop runs
/// `iterations` times and `f(a, b)` returns `x_k`, so the value reaches the
/// escape at run time too (when `iterations > k`).
fn quadratic_nan_module(k: u32, iterations: i32) -> Vec<u8> {
    use wasm_encoder::{
        BlockType, CodeSection, ExportKind, ExportSection, Function, FunctionSection,
        Instruction as I, MemorySection, MemoryType, Module, TypeSection, ValType,
    };
    let mut types = TypeSection::new();
    types
        .ty()
        .function([ValType::F64, ValType::F64], [ValType::F64]);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    let mut memory = MemorySection::new();
    memory.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    let mut exports = ExportSection::new();
    exports.export("f", ExportKind::Func, 0);
    exports.export("mem", ExportKind::Memory, 0);
    let x = |j: u32| 1 + j; // x_1 is local 2, after the two parameters
    let counter = 2 + k;
    let mut f = Function::new([(k, ValType::F64), (1, ValType::I32)]);
    f.instruction(&I::Loop(BlockType::Empty));
    for j in (2..=k).rev() {
        f.instruction(&I::LocalGet(x(j - 1)));
        f.instruction(&I::LocalSet(x(j)));
    }
    f.instruction(&I::LocalGet(0))
        .instruction(&I::LocalGet(1))
        .instruction(&I::F64Div)
        .instruction(&I::LocalSet(x(1)))
        .instruction(&I::LocalGet(counter))
        .instruction(&I::I32Const(1))
        .instruction(&I::I32Add)
        .instruction(&I::LocalTee(counter))
        .instruction(&I::I32Const(iterations))
        .instruction(&I::I32LtU)
        .instruction(&I::BrIf(0))
        .instruction(&I::End)
        .instruction(&I::LocalGet(x(k)))
        .instruction(&I::End);
    let mut code = CodeSection::new();
    code.function(&f);
    let mut module = Module::new();
    module
        .section(&types)
        .section(&funcs)
        .section(&memory)
        .section(&exports)
        .section(&code);
    module.finish()
}

/// Was: a crafted 100 KB module cost 9.4 s of NaN analysis per preparation,
/// 200 KB 38.9 s. Now the analysis stops at its work budget and fixes the
/// function eagerly, so the work is linear in the body: counted, not timed.
#[test]
fn nan_pass_on_crafted_quadratic_module_is_bounded() {
    for (kb, k) in [(100, 16_600), (200, 29_000)] {
        let wasm = quadratic_nan_module(k, 2);
        assert!(
            wasm.len().abs_diff(kb * 1000) < kb * 50,
            "{} bytes",
            wasm.len()
        );
        let started = std::time::Instant::now();
        let (_, stats) = canonicalize_nans_with_stats(&wasm).expect("pass");
        println!(
            "crafted {} bytes: NaN pass {:.2} s, {} work steps per operator, eager fallback in \
             {} of {} functions",
            wasm.len(),
            started.elapsed().as_secs_f64(),
            stats.max_work_per_operator,
            stats.eager_functions,
            stats.functions
        );
        assert_eq!(
            stats.eager_functions, 1,
            "the budget must stop the analysis"
        );
        // The budget is checked between operators; one operator copies at most
        // the state built so far, so the overshoot is at most the budget again.
        assert!(
            stats.max_work_per_operator <= 2 * nan::WORK_PER_OPERATOR + 1,
            "{stats:?}"
        );
    }
    // A short chain (k passes x k links: work per operator grows with k) stays
    // within budget and is analysed exactly as before.
    let (_, stats) = canonicalize_nans_with_stats(&quadratic_nan_module(8, 2)).expect("pass");
    assert_eq!((stats.eager_functions, stats.fixes), (0, 1), "{stats:?}");
}

/// The crafted shape, run: the eager fallback's output shows eager mode's NaN
/// bits where the unrewritten module shows the hardware's.
#[test]
fn eager_fallback_on_the_crafted_module_matches_eager_mode() {
    let k = 300;
    let wasm = quadratic_nan_module(k, k as i32 + 1);
    let tight = WorkBudget {
        per_operator: 1,
        floor: 0,
    };
    let (rewritten, stats) = canonicalize_nans_within(&wasm, tight).expect("pass");
    assert_eq!(stats.eager_functions, 1);
    let calls: Vec<(String, Vec<generator::Arg>)> = [(0u64, 0u64), (1 << 62, 1 << 62), (0, 1)]
        .iter()
        .map(|&(a, b)| {
            (
                "f".to_string(),
                vec![generator::Arg::F64(a), generator::Arg::F64(b)],
            )
        })
        .collect();
    let (eager, lazy) = (engine(true), engine(false));
    let want = run_generated(&eager, &wasm, &calls);
    assert_eq!(want, run_generated(&lazy, &rewritten, &calls));
    assert_ne!(
        want,
        run_generated(&lazy, &wasm, &calls),
        "0/0 must show the hardware's NaN without the pass"
    );
}

/// For measuring by hand what the budget saves: the crafted modules analysed
/// with no budget (the code before issue 11).
#[test]
#[ignore = "takes tens of seconds: the unbounded analysis"]
fn crafted_quadratic_module_without_budget() {
    let unlimited = WorkBudget {
        per_operator: u64::MAX / (1 << 32),
        floor: 0,
    };
    for k in [16_600, 29_000] {
        let wasm = quadratic_nan_module(k, 2);
        let started = std::time::Instant::now();
        let result = canonicalize_nans_within(&wasm, unlimited);
        println!(
            "crafted {} bytes without budget: {:.2} s, {:?}",
            wasm.len(),
            started.elapsed().as_secs_f64(),
            result.map(|(_, s)| s)
        );
    }
}

/// How much of its work budget real code uses: the C guests and the modules in
/// `REPLICODE_PREPARE_MODULES` (SQLite, Go programs built by hand).
#[test]
#[ignore = "a measurement: prints work per operator of real programs"]
fn work_per_operator_of_real_programs() {
    let mut modules: Vec<(String, Vec<u8>)> = ["nan_kernels", "nbody", "fileops", "kv_server"]
        .iter()
        .map(|n| (n.to_string(), guest(n)))
        .collect();
    if let Some(list) = std::env::var_os("REPLICODE_PREPARE_MODULES") {
        for path in std::env::split_paths(&list) {
            let wasm = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            modules.push((path.display().to_string(), wasm));
        }
    }
    for (name, wasm) in modules {
        let started = std::time::Instant::now();
        let (_, stats) = canonicalize_nans_with_stats(&wasm).expect("pass");
        println!(
            "{name}: {:.2} s, {stats:?}",
            started.elapsed().as_secs_f64()
        );
    }
}
