//! The dirty-page store barrier (`process::dirty::track_writes`): every wasm
//! write to memory 0 marks its 4 KiB page, and nothing else changes.
//!
//! Each test runs the original and the instrumented module side by side on the
//! project's engine configuration and compares memory, results and traps.

use proptest::prelude::*;
use replicode_runtime::config::{NanMode, RuntimeConfig};
use replicode_runtime::engine::wasmtime_config;
use replicode_runtime::process::dirty::{track_writes, DIRTY_MAP_BYTES, DIRTY_MAP_EXPORT};
use wasmparser::{Operator, Parser, Payload, Validator, WasmFeatures};
use wasmtime::{Engine, Instance, Module, Store, Trap, Val};

const PAGE: u32 = 4096;
/// Test modules have 2 wasm pages: 32 tracked pages.
const MEM_BYTES: u32 = 2 * 65536;

fn engine() -> Engine {
    // SIMD needs eager NaN mode (lazy NaN refuses SIMD).
    let config = RuntimeConfig {
        simd: true,
        nan: NanMode::Eager,
        ..RuntimeConfig::default()
    };
    Engine::new(&wasmtime_config(&config).expect("config")).expect("engine")
}

fn instrument(wasm: &[u8]) -> Vec<u8> {
    let out = track_writes(wasm).expect("track_writes");
    let mut features = WasmFeatures::default();
    features.remove(WasmFeatures::THREADS);
    Validator::new_with_features(features)
        .validate_all(&out)
        .expect("instrumented module is valid");
    assert_eq!(
        track_writes(wasm).expect("track_writes"),
        out,
        "output is a pure function of the input"
    );
    out
}

/// Memory contents, marked pages (None when there is no map) and the outcome.
#[derive(Debug)]
struct Outcome {
    memory: Vec<u8>,
    marks: Option<Vec<u32>>,
    result: Result<Vec<Val>, Trap>,
}

fn vals_eq(a: &[Val], b: &[Val]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Val::I32(x), Val::I32(y)) => x == y,
            (Val::I64(x), Val::I64(y)) => x == y,
            _ => false,
        })
}

fn run(engine: &Engine, module: &Module, func: &str, args: &[Val]) -> Outcome {
    let mut store = Store::new(engine, ());
    store.set_fuel(1 << 40).expect("fuel");
    let instance = Instance::new(&mut store, module, &[]).expect("instantiate");
    let f = instance.get_func(&mut store, func).expect("export");
    let mut results = vec![Val::I32(0); f.ty(&store).results().len()];
    let result = match f.call(&mut store, args, &mut results) {
        Ok(()) => Ok(results),
        Err(e) => Err(*e
            .downcast_ref::<Trap>()
            .unwrap_or_else(|| panic!("{func}: not a trap: {e:?}"))),
    };
    let memory = instance
        .get_memory(&mut store, "memory")
        .expect("memory export")
        .data(&store)
        .to_vec();
    let marks = instance
        .get_memory(&mut store, DIRTY_MAP_EXPORT)
        .map(|map| {
            let data = map.data(&store);
            assert_eq!(data.len(), DIRTY_MAP_BYTES);
            data.iter()
                .enumerate()
                .filter(|(_, b)| **b != 0)
                .map(|(i, _)| i as u32)
                .collect()
        });
    Outcome {
        memory,
        marks,
        result,
    }
}

/// Runs both modules and checks they agree; returns the instrumented outcome.
fn run_both(engine: &Engine, orig: &Module, inst: &Module, func: &str, args: &[Val]) -> Outcome {
    let a = run(engine, orig, func, args);
    let b = run(engine, inst, func, args);
    assert!(a.marks.is_none(), "original has no map");
    match (&a.result, &b.result) {
        (Ok(x), Ok(y)) => assert!(vals_eq(x, y), "{func}{args:?}: results {x:?} vs {y:?}"),
        (Err(x), Err(y)) => assert_eq!(x, y, "{func}{args:?}: trap codes"),
        (x, y) => panic!("{func}{args:?}: original {x:?}, instrumented {y:?}"),
    }
    assert!(a.memory == b.memory, "{func}{args:?}: memory differs");
    b
}

/// Every page that differs from `before` is marked, or its predecessor is.
fn assert_changes_covered(before: &[u8], after: &Outcome, what: &str) {
    let marks = after.marks.as_ref().expect("map");
    for (page, (x, y)) in before
        .chunks(PAGE as usize)
        .zip(after.memory.chunks(PAGE as usize))
        .enumerate()
    {
        let page = page as u32;
        if x != y {
            let covered = marks.binary_search(&page).is_ok()
                || (page > 0 && marks.binary_search(&(page - 1)).is_ok());
            assert!(
                covered,
                "{what}: page {page} changed but is not covered by {marks:?}"
            );
        }
    }
}

struct Kind {
    op: &'static str,
    ty: &'static str,
    width: u32,
    lane: bool,
}

const KINDS: &[Kind] = &[
    Kind {
        op: "i32.store",
        ty: "i32",
        width: 4,
        lane: false,
    },
    Kind {
        op: "i32.store8",
        ty: "i32",
        width: 1,
        lane: false,
    },
    Kind {
        op: "i32.store16",
        ty: "i32",
        width: 2,
        lane: false,
    },
    Kind {
        op: "i64.store",
        ty: "i64",
        width: 8,
        lane: false,
    },
    Kind {
        op: "i64.store8",
        ty: "i64",
        width: 1,
        lane: false,
    },
    Kind {
        op: "i64.store16",
        ty: "i64",
        width: 2,
        lane: false,
    },
    Kind {
        op: "i64.store32",
        ty: "i64",
        width: 4,
        lane: false,
    },
    Kind {
        op: "f32.store",
        ty: "f32",
        width: 4,
        lane: false,
    },
    Kind {
        op: "f64.store",
        ty: "f64",
        width: 8,
        lane: false,
    },
    Kind {
        op: "v128.store",
        ty: "v128",
        width: 16,
        lane: false,
    },
    Kind {
        op: "v128.store8_lane",
        ty: "v128",
        width: 1,
        lane: true,
    },
    Kind {
        op: "v128.store16_lane",
        ty: "v128",
        width: 2,
        lane: true,
    },
    Kind {
        op: "v128.store32_lane",
        ty: "v128",
        width: 4,
        lane: true,
    },
    Kind {
        op: "v128.store64_lane",
        ty: "v128",
        width: 8,
        lane: true,
    },
];

/// The three code shapes the pass marks differently: both operands pushed by
/// `local.get` (mark re-evaluates the address), computed address (mark tees
/// it), and a value not pushed right before the store (both spilled).
const SHAPES: &[(&str, &str)] = &[
    ("recompute", "local.get 0 local.get 1"),
    ("tee", "local.get 0 i32.const 0 i32.add local.get 1"),
    ("spill", "local.get 0 local.get 1 nop"),
];

const OFFSETS: &[u32] = &[0, 3, 4093, 4096];

fn store_fn_name(kind: &Kind, shape: &str, offset: u32) -> String {
    format!("{}_{shape}_{offset}", kind.op.replace('.', "_"))
}

fn stores_module() -> String {
    let mut wat = String::from("(module (memory (export \"memory\") 2 2)\n");
    for kind in KINDS {
        for (shape, push) in SHAPES {
            for offset in OFFSETS {
                let lane = if kind.lane { " 1" } else { "" };
                wat.push_str(&format!(
                    "(func (export \"{}\") (param i32 {}) {push} {} offset={offset}{lane})\n",
                    store_fn_name(kind, shape, *offset),
                    kind.ty,
                    kind.op,
                ));
            }
        }
    }
    wat.push(')');
    wat
}

/// A value whose bytes are all nonzero, so every stored byte changes memory.
fn value(ty: &str) -> Val {
    match ty {
        "i32" => Val::I32(0x1122_3344),
        "i64" => Val::I64(0x1122_3344_5566_7788),
        "f32" => Val::F32(0x3F8C_CCCD),
        "f64" => Val::F64(0x3FF1_1111_1111_1111),
        "v128" => Val::V128(0x0102_0304_0506_0708_090A_0B0C_0D0E_0F10u128.into()),
        _ => unreachable!(),
    }
}

#[test]
fn every_store_marks_its_first_page() {
    let engine = engine();
    let wasm = wat::parse_str(stores_module()).expect("wat");
    let inst_wasm = instrument(&wasm);
    let orig = Module::new(&engine, &wasm).expect("compile original");
    let inst = Module::new(&engine, &inst_wasm).expect("compile instrumented");
    let zero = vec![0u8; MEM_BYTES as usize];
    let mut targets: Vec<u32> = Vec::new();
    for boundary in [PAGE, 16 * PAGE, MEM_BYTES - PAGE] {
        targets.extend(boundary - 17..=boundary + 1);
    }
    targets.push(0);
    let mut checked = 0;
    for kind in KINDS {
        for (shape, _) in SHAPES {
            for &offset in OFFSETS {
                let name = store_fn_name(kind, shape, offset);
                for &t in targets.iter().filter(|&&t| t >= offset) {
                    let args = [Val::I32((t - offset) as i32), value(kind.ty)];
                    let out = run_both(&engine, &orig, &inst, &name, &args);
                    assert!(out.result.is_ok(), "{name} at {t}: {:?}", out.result);
                    let changed: Vec<u32> = (0..MEM_BYTES / PAGE)
                        .filter(|p| {
                            let r = (p * PAGE) as usize..((p + 1) * PAGE) as usize;
                            out.memory[r].iter().any(|b| *b != 0)
                        })
                        .collect();
                    let first = t / PAGE;
                    let last = (t + kind.width - 1) / PAGE;
                    assert_eq!(
                        changed,
                        (first..=last).collect::<Vec<_>>(),
                        "{name} at {t} wrote where it should"
                    );
                    assert_eq!(
                        out.marks.as_deref(),
                        Some(&[first][..]),
                        "{name} at {t}: exactly the first page is marked"
                    );
                    assert_changes_covered(&zero, &out, &name);
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 2000, "{checked} cases");
}

#[test]
fn out_of_bounds_stores_trap_the_same() {
    let engine = engine();
    let wasm = wat::parse_str(stores_module()).expect("wat");
    let orig = Module::new(&engine, &wasm).expect("compile original");
    let inst = Module::new(&engine, instrument(&wasm)).expect("compile instrumented");
    for kind in KINDS {
        for (shape, _) in SHAPES {
            for &offset in OFFSETS {
                let name = store_fn_name(kind, shape, offset);
                // Last byte one past the end; the first byte far past it; and an
                // address whose i32 sum with the offset wraps (the mark then
                // lands on a low page, the store itself still traps).
                let straddle = MEM_BYTES - kind.width + 1;
                let mut addrs = vec![u32::MAX, MEM_BYTES.wrapping_sub(offset) + 64 * PAGE];
                if straddle >= offset {
                    addrs.push(straddle - offset);
                }
                for addr in addrs {
                    let args = [Val::I32(addr as i32), value(kind.ty)];
                    let out = run_both(&engine, &orig, &inst, &name, &args);
                    assert_eq!(
                        out.result.as_ref().err(),
                        Some(&Trap::MemoryOutOfBounds),
                        "{name} at {addr:#x}"
                    );
                }
            }
        }
    }
}

fn bulk_module() -> String {
    let segment: String = "\\5a".repeat(3 * PAGE as usize + 100);
    format!(
        r#"(module
  (memory (export "memory") 2 2)
  (data $d "{segment}")
  (func (export "fill") (param i32 i32 i32) local.get 0 local.get 1 local.get 2 memory.fill)
  (func (export "copy") (param i32 i32 i32) local.get 0 local.get 1 local.get 2 memory.copy)
  (func (export "init") (param i32 i32 i32) local.get 0 local.get 1 local.get 2 memory.init $d)
  ;; fill the second half with 0xFF first, then copy within memory
  (func (export "prep_copy") (param i32 i32 i32)
    i32.const 65536 i32.const 255 i32.const 65536 memory.fill
    local.get 0 local.get 1 local.get 2 memory.copy))"#
    )
}

/// (func, dst, middle operand, len, expected marked pages or None for a trap)
type BulkCase = (&'static str, u32, u32, u32, Option<Vec<u32>>);

#[test]
fn bulk_operations_mark_their_whole_range() {
    let engine = engine();
    let wasm = wat::parse_str(bulk_module()).expect("wat");
    let orig = Module::new(&engine, &wasm).expect("compile original");
    let inst = Module::new(&engine, instrument(&wasm)).expect("compile instrumented");
    let zero = vec![0u8; MEM_BYTES as usize];
    let i = |x: u32| Val::I32(x as i32);
    // (func, dst, middle operand, len, expected marked pages or None for a trap)
    let cases: &[BulkCase] = &[
        ("fill", 4000, 7, 9000, Some(vec![0, 1, 2, 3])),
        ("fill", 4096, 7, 4096, Some(vec![1])),
        ("fill", 4095, 7, 2, Some(vec![0, 1])),
        ("fill", MEM_BYTES - 1, 7, 1, Some(vec![31])),
        ("fill", 5000, 7, 0, Some(vec![])),
        ("fill", MEM_BYTES, 7, 0, Some(vec![])),
        ("init", 8190, 0, 5000, Some(vec![1, 2, 3])),
        ("init", 100, 0, 0, Some(vec![])),
        (
            "prep_copy",
            4095,
            70000,
            2,
            Some((0..=1).chain(16..32).collect()),
        ),
        (
            "prep_copy",
            40000,
            65536,
            9000,
            Some((9..=11).chain(16..32).collect()),
        ),
        // Traps: out of bounds without and with i32 wrap of dst + len.
        ("fill", MEM_BYTES + 1, 7, 0, None),
        ("fill", MEM_BYTES - 10, 7, 11, None),
        ("fill", 0xFFFF_F000, 7, 0x2000, None),
        ("fill", 16, 7, u32::MAX, None),
        ("copy", u32::MAX, 0, 2, None),
        ("copy", 0, 0, u32::MAX, None),
        ("init", 0xFFFF_FFF0, 0, 100, None),
    ];
    for (func, dst, mid, len, expected) in cases {
        let args = [i(*dst), i(*mid), i(*len)];
        let out = run_both(&engine, &orig, &inst, func, &args);
        let marks = out.marks.clone().expect("map");
        match expected {
            Some(pages) => {
                assert!(out.result.is_ok(), "{func}{args:?}: {:?}", out.result);
                assert_eq!(&marks, pages, "{func}{args:?}");
                assert_changes_covered(&zero, &out, func);
            }
            None => {
                assert_eq!(
                    out.result.as_ref().err(),
                    Some(&Trap::MemoryOutOfBounds),
                    "{func}{args:?}"
                );
                if *len > 0 {
                    // The first page of the destination is always marked.
                    assert_eq!(marks.first(), Some(&(dst >> 12)), "{func}{args:?}");
                    let wraps = dst.checked_add(*len).is_none();
                    if wraps {
                        assert_eq!(marks.last(), Some(&0xFFFFF), "{func}{args:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn function_indices_tables_and_imported_memory_are_kept() {
    // Memory imported (so the map is the first *defined* memory, still index 1),
    // no export section of memories, a table of functions, call_indirect, a
    // start function and a bulk op (so the helper is appended).
    let wat = r#"(module
      (import "env" "memory" (memory 1))
      (import "env" "log" (func $log (param i32)))
      (table 3 funcref)
      (elem (i32.const 0) $a $b $c)
      (global $g (mut i32) (i32.const 0))
      (func $a (result i32) i32.const 10 i32.const 1 i32.store i32.const 1)
      (func $b (result i32) i32.const 8192 i32.const 5 i32.const 100 memory.fill i32.const 2)
      (func $c (result i32) (local i64 f64)
        i64.const 9 local.set 0 f64.const 1.5 local.set 1
        global.get $g i32.const 4 i32.add global.set $g
        global.get $g local.get 0 nop i64.store offset=5000
        global.get $g local.get 1 f64.const 1.5 f64.eq i32.add)
      (func $start i32.const 7 call $log)
      (start $start)
      (func (export "go") (param i32) (result i32) local.get 0 call_indirect (result i32)))"#;
    let engine = engine();
    let wasm = wat::parse_str(wat).expect("wat");
    let inst_wasm = instrument(&wasm);
    let exports = |bytes: &[u8]| -> Vec<(String, wasmparser::ExternalKind, u32)> {
        let mut out = Vec::new();
        for p in Parser::new(0).parse_all(bytes) {
            if let Payload::ExportSection(r) = p.expect("parse") {
                for e in r {
                    let e = e.expect("export");
                    out.push((e.name.to_string(), e.kind, e.index));
                }
            }
        }
        out
    };
    let mut expected = exports(&wasm);
    expected.push((
        DIRTY_MAP_EXPORT.to_string(),
        wasmparser::ExternalKind::Memory,
        1,
    ));
    assert_eq!(exports(&inst_wasm), expected);

    for (bytes, tracked) in [(&wasm, false), (&inst_wasm, true)] {
        let module = Module::new(&engine, bytes).expect("compile");
        let mut store = Store::new(&engine, Vec::<i32>::new());
        store.set_fuel(1 << 30).expect("fuel");
        let memory =
            wasmtime::Memory::new(&mut store, wasmtime::MemoryType::new(1, None)).expect("memory");
        let log = wasmtime::Func::wrap(
            &mut store,
            |mut c: wasmtime::Caller<'_, Vec<i32>>, x: i32| c.data_mut().push(x),
        );
        let instance =
            Instance::new(&mut store, &module, &[memory.into(), log.into()]).expect("instantiate");
        assert_eq!(store.data(), &[7]);
        let go = instance
            .get_typed_func::<i32, i32>(&mut store, "go")
            .expect("go");
        assert_eq!(go.call(&mut store, 0).expect("call"), 1);
        assert_eq!(go.call(&mut store, 1).expect("call"), 2);
        assert_eq!(go.call(&mut store, 2).expect("call"), 5);
        let data = memory.data(&store);
        assert_eq!(data[10], 1);
        assert_eq!(&data[8192..8197], &[5; 5]);
        assert_eq!(data[5004], 9);
        let map = instance.get_memory(&mut store, DIRTY_MAP_EXPORT);
        assert_eq!(map.is_some(), tracked);
        if let Some(map) = map {
            let marked: Vec<usize> = map
                .data(&store)
                .iter()
                .enumerate()
                .filter(|(_, b)| **b != 0)
                .map(|(i, _)| i)
                .collect();
            assert_eq!(marked, vec![0, 1, 2]);
        }
    }
}

#[test]
fn refuses_modules_without_exactly_one_memory() {
    for wat in [
        "(module (func))",
        "(module (memory 1) (memory 1))",
        r#"(module (import "a" "m" (memory 1)) (memory 1))"#,
        r#"(module (memory 1) (export "__replicode_dirty_pages" (memory 0)))"#,
    ] {
        let wasm = wat::parse_str(wat).expect("wat");
        match track_writes(&wasm) {
            Err(replicode_runtime::error::InstrumentError::Rewrite { pass: "dirty", .. }) => {}
            other => panic!("{wat}: {other:?}"),
        }
    }
}

#[test]
fn module_without_exports_or_stores_gets_the_map() {
    let wasm = wat::parse_str("(module (memory 1) (func (result i32) i32.const 0 i32.load))")
        .expect("wat");
    let out = instrument(&wasm);
    let module = Module::new(&engine(), out).expect("compile");
    let map = module
        .exports()
        .find(|e| e.name() == DIRTY_MAP_EXPORT)
        .expect("map export");
    let ty = map.ty().memory().cloned().expect("a memory");
    assert_eq!(ty.minimum(), (DIRTY_MAP_BYTES >> 16) as u64);
    assert_eq!(ty.maximum(), Some((DIRTY_MAP_BYTES >> 16) as u64));
}

/// One random memory write for the property test.
#[derive(Debug, Clone)]
enum Op {
    /// `kind` index, shape index, effective address, offset, value bits.
    Store(usize, usize, u32, u32, u64),
    Fill(u32, u8, u32),
    Copy(u32, u32, u32),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    // Addresses biased towards page boundaries.
    let target = prop_oneof![
        (0u32..MEM_BYTES / PAGE, -20i32..20).prop_map(|(p, d)| (p * PAGE).wrapping_add(d as u32)),
        0u32..MEM_BYTES,
    ];
    prop_oneof![
        8 => (0..KINDS.len(), 0..3usize, target.clone(), any::<u32>(), any::<u64>()).prop_map(
            |(k, s, t, off, v)| {
                let w = KINDS[k].width;
                let t = t.min(MEM_BYTES - w);
                let off = match off % 3 {
                    0 => 0,
                    1 => off % (t + 1).min(PAGE),
                    _ => off % (t + 1),
                };
                Op::Store(k, s, t, off, v)
            }
        ),
        1 => (target.clone(), any::<u8>(), 0u32..3 * PAGE).prop_map(|(d, v, len)| {
            let d = d.min(MEM_BYTES);
            Op::Fill(d, v, len.min(MEM_BYTES - d))
        }),
        1 => (target.clone(), target, 0u32..3 * PAGE).prop_map(|(d, s, len)| {
            let (d, s) = (d.min(MEM_BYTES), s.min(MEM_BYTES));
            Op::Copy(d, s, len.min(MEM_BYTES - d).min(MEM_BYTES - s))
        }),
    ]
}

fn const_of(ty: &str, v: u64) -> String {
    match ty {
        "i32" => format!("i32.const {}", v as u32 as i32),
        "i64" => format!("i64.const {}", v as i64),
        // Finite values only: wat text round-trips them exactly.
        "f32" => {
            let f = f32::from_bits(v as u32);
            format!("f32.const {:e}", if f.is_finite() { f } else { 1.5 })
        }
        "f64" => {
            let f = f64::from_bits(v);
            format!("f64.const {:e}", if f.is_finite() { f } else { -2.5 })
        }
        "v128" => format!("v128.const i64x2 {} {}", v as i64, v.rotate_left(17) as i64),
        _ => unreachable!(),
    }
}

fn program(ops: &[Op]) -> String {
    let mut body = String::new();
    for op in ops {
        match op {
            Op::Store(k, shape, t, off, v) => {
                let kind = &KINDS[*k];
                let addr = t - off;
                let value = const_of(kind.ty, *v);
                let push = match shape {
                    0 => format!("i32.const {addr} {value}"),
                    1 => format!(
                        "i32.const {} i32.const 1 i32.add {value}",
                        addr.wrapping_sub(1)
                    ),
                    _ => format!("i32.const {addr} {value} nop"),
                };
                let lane = if kind.lane { " 0" } else { "" };
                body.push_str(&format!("{push} {} offset={off}{lane}\n", kind.op));
            }
            Op::Fill(d, v, len) => body.push_str(&format!(
                "i32.const {d} i32.const {v} i32.const {len} memory.fill\n"
            )),
            Op::Copy(d, s, len) => body.push_str(&format!(
                "i32.const {d} i32.const {s} i32.const {len} memory.copy\n"
            )),
        }
    }
    // Start from nonzero memory so copies move something.
    format!(
        "(module (memory (export \"memory\") 2 2)
           (data (i32.const 0) \"{}\")
           (data (i32.const 70000) \"{}\")
           (func (export \"run\") {body}))",
        "\\a5".repeat(9000),
        "\\3c".repeat(20000),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_writes_are_covered(ops in prop::collection::vec(op_strategy(), 1..40)) {
        let engine = engine();
        let wasm = wat::parse_str(program(&ops)).expect("wat");
        let orig = Module::new(&engine, &wasm).expect("compile original");
        let inst = Module::new(&engine, instrument(&wasm)).expect("compile instrumented");
        let before = {
            // Memory after instantiation, before `run`: the data segments.
            let mut store = Store::new(&engine, ());
            store.set_fuel(1 << 40).expect("fuel");
            let instance = Instance::new(&mut store, &orig, &[]).expect("instantiate");
            instance.get_memory(&mut store, "memory").expect("memory").data(&store).to_vec()
        };
        let out = run_both(&engine, &orig, &inst, "run", &[]);
        prop_assert!(out.result.is_ok(), "{:?}", out.result);
        assert_changes_covered(&before, &out, "run");
        // And every mark is explained by some write of the program.
        let mut allowed = std::collections::BTreeSet::new();
        for op in &ops {
            match *op {
                Op::Store(_, _, t, _, _) => { allowed.insert(t / PAGE); }
                Op::Fill(d, _, len) | Op::Copy(d, _, len) if len > 0 => {
                    allowed.extend(d / PAGE..=(d + len - 1) / PAGE);
                }
                _ => {}
            }
        }
        let marks: std::collections::BTreeSet<u32> =
            out.marks.clone().expect("map").into_iter().collect();
        prop_assert_eq!(marks, allowed);
    }
}

/// The kv server after the runtime's own pipeline: every store of memory 0
/// gets exactly one mark, every bulk op one helper call, and it compiles.
#[test]
fn kv_server_after_the_pipeline() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../wasm_programs/build/kv_server.wasm"
    );
    let source =
        std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e} (run `make -C wasm_programs`)"));
    let config = RuntimeConfig::default();
    let prepared = replicode_runtime::instrument::prepare(&source, &config).expect("prepare");
    let input = replicode_runtime::process::globals::export_mutable_globals(&prepared.bytes)
        .expect("export globals");
    let out = instrument(&input);

    #[derive(Default, Debug, PartialEq)]
    struct Counts {
        stores0: usize,
        bulk0: usize,
        marks: usize,
        calls_to_last_func: usize,
        functions: usize,
    }
    let count = |bytes: &[u8]| {
        let mut c = Counts::default();
        let mut funcs = 0u32;
        let mut bodies: Vec<Vec<Operator<'_>>> = Vec::new();
        for p in Parser::new(0).parse_all(bytes) {
            match p.expect("parse") {
                Payload::ImportSection(r) => {
                    for i in r {
                        if matches!(i.expect("import").ty, wasmparser::TypeRef::Func(_)) {
                            funcs += 1;
                        }
                    }
                }
                Payload::FunctionSection(r) => funcs += r.count(),
                Payload::CodeSectionEntry(body) => {
                    let mut ops = Vec::new();
                    let mut r = body.get_operators_reader().expect("body");
                    while !r.eof() {
                        ops.push(r.read().expect("operator"));
                    }
                    bodies.push(ops);
                }
                _ => {}
            }
        }
        c.functions = funcs as usize;
        for op in bodies.iter().flatten() {
            match op {
                Operator::I32Store8 { memarg } if memarg.memory == 1 => c.marks += 1,
                Operator::MemoryFill { mem: 1 } => {}
                Operator::I32Store { memarg }
                | Operator::I32Store8 { memarg }
                | Operator::I32Store16 { memarg }
                | Operator::I64Store { memarg }
                | Operator::I64Store8 { memarg }
                | Operator::I64Store16 { memarg }
                | Operator::I64Store32 { memarg }
                | Operator::F32Store { memarg }
                | Operator::F64Store { memarg } => {
                    assert_eq!(memarg.memory, 0);
                    c.stores0 += 1;
                }
                Operator::MemoryFill { .. } | Operator::MemoryCopy { .. } => c.bulk0 += 1,
                Operator::Call { function_index } if *function_index == funcs - 1 => {
                    c.calls_to_last_func += 1
                }
                _ => {}
            }
        }
        c
    };
    let before = count(&input);
    let after = count(&out);
    assert!(before.stores0 > 100, "{before:?}");
    assert_eq!(before.marks, 0);
    assert_eq!(after.stores0, before.stores0);
    assert_eq!(after.marks, before.stores0, "one mark per store");
    assert_eq!(after.bulk0, before.bulk0);
    if before.bulk0 > 0 {
        assert_eq!(after.functions, before.functions + 1, "helper appended");
        assert_eq!(
            after.calls_to_last_func, before.bulk0,
            "one helper call per bulk op"
        );
    } else {
        assert_eq!(after.functions, before.functions);
    }
    let engine = Engine::new(&wasmtime_config(&config).expect("config")).expect("engine");
    let module = Module::new(&engine, &out).expect("instrumented kv server compiles");
    assert!(module.exports().any(|e| e.name() == DIRTY_MAP_EXPORT));
}
