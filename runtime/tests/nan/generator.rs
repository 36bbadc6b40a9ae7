//! A generator of float-heavy wasm modules for the differential test.
//!
//! Every module has many small functions (so one compilation covers many cases)
//! built from typed expression trees: float arithmetic of every kind, sign ops,
//! promote/demote, reinterprets both ways, loads of NaN-boxed patterns, stores,
//! locals, `select`, blocks/ifs/loops carrying values (also multi-value and block
//! parameters), `br_if`/`br_table`, calls, early returns, global.set of exported and
//! internal globals, and host calls that observe float bits. Constants come from a
//! pool rich in NaNs (canonical, negative, signalling, payload-carrying), infinities
//! and zeros, so arithmetic NaNs and exact NaN bits meet at every kind of merge.
//! Loops are bounded by counters and calls only go to leaf functions, so every
//! function terminates quickly (traps are fine: they are compared too).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, DataSection, EntityType, ExportKind, ExportSection,
    Function, FunctionSection, GlobalSection, GlobalType, Ieee32, Ieee64, ImportSection,
    Instruction as I, MemArg, MemorySection, MemoryType, Module, TypeSection, ValType as V,
};

/// An argument for an exported function, by bits.
#[derive(Clone, Copy, Debug)]
pub enum Arg {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
}

/// A generated module and the calls that exercise it.
pub struct Generated {
    pub wasm: Vec<u8>,
    pub calls: Vec<(String, Vec<Arg>)>,
    pub functions: usize,
}

const F64_POOL: &[u64] = &[
    0x0000_0000_0000_0000, // +0
    0x8000_0000_0000_0000, // -0
    0x3ff8_0000_0000_0000, // 1.5
    0xc002_0000_0000_0000, // -2.25
    0x7fe0_0000_0000_0000, // huge
    0x7ff0_0000_0000_0000, // +inf
    0xfff0_0000_0000_0000, // -inf
    0x7ff8_0000_0000_0000, // canonical NaN
    0xfff8_0000_0000_0000, // negative canonical NaN (x86 default NaN)
    0x7ff8_0000_dead_beef, // quiet NaN with payload
    0x7ff0_0000_0000_0001, // signalling NaN
    0xfff4_0000_0000_1234, // negative signalling NaN
    0xfffc_0000_1234_5678, // NaN-boxed pointer-like payload
    0x0000_0000_0000_0001, // smallest subnormal
];

const F32_POOL: &[u32] = &[
    0x0000_0000,
    0x8000_0000,
    0x3fc0_0000,
    0xc010_0000,
    0x7f00_0000,
    0x7f80_0000,
    0xff80_0000,
    0x7fc0_0000,
    0xffc0_0000,
    0x7fc0_beef,
    0x7f80_0001,
    0xffa0_1234,
    0x0000_0001,
];

const SIGS: &[(&[V], &[V])] = &[
    (&[V::F64, V::F64], &[V::F64]),
    (&[V::F32, V::F32], &[V::F32]),
    (&[V::F64, V::I64], &[V::F64]),
    (&[V::F64, V::F32], &[V::F64, V::F32]),
    (&[V::I64, V::F64], &[V::I64]),
    (&[V::F64], &[]),
    (&[V::F32, V::F64, V::I32], &[V::F32]),
];

/// Type indices: imports, signatures, then block types.
const TY_OBS_F32: u32 = 0;
const TY_OBS_F64: u32 = 1;
const TY_SIG0: u32 = 2;
const TY_BLOCK_MULTI: u32 = TY_SIG0 + SIGS.len() as u32; // [] -> [f64 f32]
const TY_BLOCK_PARAM_F64: u32 = TY_BLOCK_MULTI + 1; // [f64] -> [f64]
const TY_BLOCK_PARAM_F32: u32 = TY_BLOCK_MULTI + 2; // [f32] -> [f32]

const FN_OBS_F32: u32 = 0;
const FN_OBS_F64: u32 = 1;
const IMPORTED: u32 = 2;

const GLOBAL_G32: u32 = 0; // exported
const GLOBAL_G64: u32 = 1; // exported
const GLOBAL_H64: u32 = 2; // internal

/// Bytes of NaN-boxed patterns at address 0 that loads read.
const PATTERN_BYTES: u32 = 512;
const MEMORY_BYTES: u32 = 4096;
const MAX_DEPTH: u32 = 5;
const COUNTERS: usize = 3;

/// Declared locals of every generated function, after its parameters.
const LOCALS: &[(u32, V)] = &[
    (3, V::F64),
    (3, V::F32),
    (2, V::I32),
    (2, V::I64),
    (3, V::I32),
];

/// Builds module number `seed` with `functions` functions.
pub fn generate(seed: u64, functions: usize) -> Generated {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let leaves = (functions / 5).max(1);
    let sig_of: Vec<usize> = (0..functions)
        .map(|_| rng.gen_range(0..SIGS.len()))
        .collect();

    let mut types = TypeSection::new();
    types.ty().function([V::F32], []);
    types.ty().function([V::F64], []);
    for (p, r) in SIGS {
        types.ty().function(p.iter().copied(), r.iter().copied());
    }
    types.ty().function([], [V::F64, V::F32]);
    types.ty().function([V::F64], [V::F64]);
    types.ty().function([V::F32], [V::F32]);

    let mut imports = ImportSection::new();
    imports.import("env", "obs_f32", EntityType::Function(TY_OBS_F32));
    imports.import("env", "obs_f64", EntityType::Function(TY_OBS_F64));

    let mut funcs = FunctionSection::new();
    for s in &sig_of {
        funcs.function(TY_SIG0 + *s as u32);
    }
    let mut memory = MemorySection::new();
    memory.memory(MemoryType {
        minimum: 1,
        maximum: Some(1),
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    let mut globals = GlobalSection::new();
    let g = |ty| GlobalType {
        val_type: ty,
        mutable: true,
        shared: false,
    };
    globals.global(g(V::F32), &ConstExpr::f32_const(Ieee32::new(0x7fc0_1234)));
    globals.global(
        g(V::F64),
        &ConstExpr::f64_const(Ieee64::new(0xfff8_0000_0000_0042)),
    );
    globals.global(g(V::F64), &ConstExpr::f64_const(Ieee64::new(0)));

    let mut exports = ExportSection::new();
    exports.export("mem", ExportKind::Memory, 0);
    exports.export("g32", ExportKind::Global, GLOBAL_G32);
    exports.export("g64", ExportKind::Global, GLOBAL_G64);
    let mut code = CodeSection::new();
    let mut calls = Vec::new();
    for k in 0..functions {
        let name = format!("f{k}");
        exports.export(&name, ExportKind::Func, IMPORTED + k as u32);
        let callees: Vec<(u32, usize)> = if k < leaves {
            Vec::new()
        } else {
            (0..leaves)
                .map(|j| (IMPORTED + j as u32, sig_of[j]))
                .collect()
        };
        let (params, results) = SIGS[sig_of[k]];
        let mut fg = FnGen::new(&mut rng, params, results, callees);
        let body = fg.body(results);
        let mut f = Function::new(LOCALS.iter().copied());
        for ins in &body {
            f.instruction(ins);
        }
        f.instruction(&I::End);
        code.function(&f);
        for _ in 0..3 {
            let args = params.iter().map(|t| arg(&mut rng, *t)).collect();
            calls.push((name.clone(), args));
        }
    }
    let mut data = DataSection::new();
    let pattern: Vec<u8> = (0..PATTERN_BYTES / 8)
        .flat_map(|_| {
            let bits = if rng.gen_bool(0.7) {
                F64_POOL[rng.gen_range(0..F64_POOL.len())]
            } else if rng.gen_bool(0.5) {
                // Two f32 NaN patterns side by side.
                let a = u64::from(F32_POOL[rng.gen_range(0..F32_POOL.len())]);
                let b = u64::from(F32_POOL[rng.gen_range(0..F32_POOL.len())]);
                a | (b << 32)
            } else {
                rng.gen::<u64>()
            };
            bits.to_le_bytes()
        })
        .collect();
    data.active(0, &ConstExpr::i32_const(0), pattern);

    let mut module = Module::new();
    module
        .section(&types)
        .section(&imports)
        .section(&funcs)
        .section(&memory)
        .section(&globals)
        .section(&exports)
        .section(&code)
        .section(&data);
    Generated {
        wasm: module.finish(),
        calls,
        functions,
    }
}

fn arg(rng: &mut ChaCha8Rng, ty: V) -> Arg {
    match ty {
        V::I32 => Arg::I32(rng.gen_range(-3..4)),
        V::I64 => Arg::I64(if rng.gen_bool(0.6) {
            F64_POOL[rng.gen_range(0..F64_POOL.len())] as i64
        } else {
            rng.gen_range(-5..6)
        }),
        V::F32 => Arg::F32(F32_POOL[rng.gen_range(0..F32_POOL.len())]),
        _ => Arg::F64(F64_POOL[rng.gen_range(0..F64_POOL.len())]),
    }
}

struct FnGen<'r> {
    rng: &'r mut ChaCha8Rng,
    out: Vec<I<'static>>,
    locals: BTreeMap<u8, Vec<u32>>,
    counters: [u32; COUNTERS],
    loop_level: usize,
    callees: Vec<(u32, usize)>,
    results: Vec<V>,
    budget: u32,
}

fn key(ty: V) -> u8 {
    match ty {
        V::I32 => 0,
        V::I64 => 1,
        V::F32 => 2,
        _ => 3,
    }
}

fn mem(align: u32, offset: u64) -> MemArg {
    MemArg {
        offset,
        align,
        memory_index: 0,
    }
}

impl<'r> FnGen<'r> {
    fn new(
        rng: &'r mut ChaCha8Rng,
        params: &[V],
        results: &[V],
        callees: Vec<(u32, usize)>,
    ) -> Self {
        let mut locals: BTreeMap<u8, Vec<u32>> = BTreeMap::new();
        let mut index = 0u32;
        for p in params {
            locals.entry(key(*p)).or_default().push(index);
            index += 1;
        }
        let mut counters = [0; COUNTERS];
        for (n, ty) in LOCALS {
            for i in 0..*n {
                if *ty == V::I32 && *n == COUNTERS as u32 {
                    counters[i as usize] = index;
                } else {
                    locals.entry(key(*ty)).or_default().push(index);
                }
                index += 1;
            }
        }
        let budget = rng.gen_range(20..120);
        FnGen {
            rng,
            out: Vec::new(),
            locals,
            counters,
            loop_level: 0,
            callees,
            results: results.to_vec(),
            budget,
        }
    }

    fn body(&mut self, results: &[V]) -> Vec<I<'static>> {
        let n = self.rng.gen_range(1..6);
        for _ in 0..n {
            self.stmt(0);
        }
        for r in results {
            self.value(*r, 0);
        }
        std::mem::take(&mut self.out)
    }

    fn emit(&mut self, ins: I<'static>) {
        self.budget = self.budget.saturating_sub(1);
        self.out.push(ins);
    }

    fn local(&mut self, ty: V) -> u32 {
        let list = &self.locals[&key(ty)];
        list[self.rng.gen_range(0..list.len())]
    }

    fn has_local(&self, ty: V) -> bool {
        self.locals.get(&key(ty)).is_some_and(|l| !l.is_empty())
    }

    fn float_const(&mut self, ty: V) {
        if ty == V::F32 {
            let bits = if self.rng.gen_bool(0.85) {
                F32_POOL[self.rng.gen_range(0..F32_POOL.len())]
            } else {
                self.rng.gen()
            };
            self.emit(I::F32Const(Ieee32::new(bits)));
        } else {
            let bits = if self.rng.gen_bool(0.85) {
                F64_POOL[self.rng.gen_range(0..F64_POOL.len())]
            } else {
                self.rng.gen()
            };
            self.emit(I::F64Const(Ieee64::new(bits)));
        }
    }

    fn addr(&mut self, area: u32, align: u32) {
        let slots = area / align;
        let a = self.rng.gen_range(0..slots) * align;
        self.emit(I::I32Const(a as i32));
    }

    fn leaf(&mut self, ty: V) {
        let roll = self.rng.gen_range(0..100);
        match ty {
            V::F32 | V::F64 if roll < 15 => {
                let align = if ty == V::F32 { 4 } else { 8 };
                self.addr(PATTERN_BYTES, align);
                self.emit(if ty == V::F32 {
                    I::F32Load(mem(2, 0))
                } else {
                    I::F64Load(mem(3, 0))
                });
            }
            V::F32 | V::F64 if roll < 20 => {
                let g = if ty == V::F32 {
                    GLOBAL_G32
                } else if self.rng.gen_bool(0.5) {
                    GLOBAL_G64
                } else {
                    GLOBAL_H64
                };
                self.emit(I::GlobalGet(g));
            }
            V::F32 | V::F64 if roll < 60 => self.float_const(ty),
            V::I32 if roll < 50 => {
                let v = self.rng.gen_range(-2..3);
                self.emit(I::I32Const(v));
            }
            V::I64 if roll < 50 => {
                let v = F64_POOL[self.rng.gen_range(0..F64_POOL.len())] as i64;
                self.emit(I::I64Const(v));
            }
            _ => {
                if self.has_local(ty) {
                    let l = self.local(ty);
                    self.emit(I::LocalGet(l));
                } else {
                    match ty {
                        V::I32 => self.emit(I::I32Const(1)),
                        V::I64 => self.emit(I::I64Const(1)),
                        _ => self.float_const(ty),
                    }
                }
            }
        }
    }

    fn value(&mut self, ty: V, depth: u32) {
        if depth >= MAX_DEPTH || self.budget == 0 {
            return self.leaf(ty);
        }
        match ty {
            V::F32 | V::F64 => self.float_value(ty, depth),
            V::I32 => self.i32_value(depth),
            _ => self.i64_value(depth),
        }
    }

    fn float_value(&mut self, ty: V, depth: u32) {
        let f32 = ty == V::F32;
        let d = depth + 1;
        match self.rng.gen_range(0..100) {
            0..=24 => self.leaf(ty),
            25..=49 => {
                self.value(ty, d);
                self.value(ty, d);
                let op = self.rng.gen_range(0..7);
                self.emit(match (f32, op) {
                    (true, 0) => I::F32Add,
                    (true, 1) => I::F32Sub,
                    (true, 2) => I::F32Mul,
                    (true, 3) => I::F32Div,
                    (true, 4) => I::F32Min,
                    (true, 5) => I::F32Max,
                    (true, _) => I::F32Copysign,
                    (false, 0) => I::F64Add,
                    (false, 1) => I::F64Sub,
                    (false, 2) => I::F64Mul,
                    (false, 3) => I::F64Div,
                    (false, 4) => I::F64Min,
                    (false, 5) => I::F64Max,
                    (false, _) => I::F64Copysign,
                });
            }
            50..=62 => {
                self.value(ty, d);
                let op = self.rng.gen_range(0..7);
                self.emit(match (f32, op) {
                    (true, 0) => I::F32Sqrt,
                    (true, 1) => I::F32Ceil,
                    (true, 2) => I::F32Floor,
                    (true, 3) => I::F32Trunc,
                    (true, 4) => I::F32Nearest,
                    (true, 5) => I::F32Neg,
                    (true, _) => I::F32Abs,
                    (false, 0) => I::F64Sqrt,
                    (false, 1) => I::F64Ceil,
                    (false, 2) => I::F64Floor,
                    (false, 3) => I::F64Trunc,
                    (false, 4) => I::F64Nearest,
                    (false, 5) => I::F64Neg,
                    (false, _) => I::F64Abs,
                });
            }
            63..=66 => {
                // Explicit NaN makers: 0/0, inf-inf, sqrt(-1).
                match self.rng.gen_range(0..3) {
                    0 if f32 => {
                        self.emit(I::F32Const(Ieee32::new(0)));
                        self.emit(I::F32Const(Ieee32::new(0)));
                        self.emit(I::F32Div);
                    }
                    0 => {
                        self.emit(I::F64Const(Ieee64::new(0)));
                        self.emit(I::F64Const(Ieee64::new(0)));
                        self.emit(I::F64Div);
                    }
                    1 if f32 => {
                        self.emit(I::F32Const(Ieee32::new(0x7f80_0000)));
                        self.value(ty, d);
                        self.emit(I::F32Sub);
                    }
                    1 => {
                        self.emit(I::F64Const(Ieee64::new(0x7ff0_0000_0000_0000)));
                        self.value(ty, d);
                        self.emit(I::F64Sub);
                    }
                    _ if f32 => {
                        self.emit(I::F32Const(Ieee32::new(0xbf80_0000)));
                        self.emit(I::F32Sqrt);
                    }
                    _ => {
                        self.emit(I::F64Const(Ieee64::new(0xbff0_0000_0000_0000)));
                        self.emit(I::F64Sqrt);
                    }
                }
            }
            67..=70 => {
                if f32 {
                    self.value(V::F64, d);
                    self.emit(I::F32DemoteF64);
                } else {
                    self.value(V::F32, d);
                    self.emit(I::F64PromoteF32);
                }
            }
            71..=73 => {
                if f32 {
                    self.value(V::I32, d);
                    self.emit(I::F32ReinterpretI32);
                } else {
                    self.value(V::I64, d);
                    self.emit(I::F64ReinterpretI64);
                }
            }
            74..=75 => {
                self.value(V::I32, d);
                self.emit(if f32 {
                    I::F32ConvertI32S
                } else {
                    I::F64ConvertI32U
                });
            }
            76..=80 => {
                self.value(ty, d);
                self.value(ty, d);
                self.value(V::I32, d);
                let typed = self.rng.gen_bool(0.5);
                self.emit(if typed { I::TypedSelect(ty) } else { I::Select });
            }
            81..=83 => {
                self.value(V::I32, d);
                self.emit(I::If(BlockType::Result(ty)));
                self.value(ty, d);
                self.emit(I::Else);
                self.value(ty, d);
                self.emit(I::End);
            }
            84..=86 => {
                // A block whose result comes from a taken br_if or the fallthrough.
                self.emit(I::Block(BlockType::Result(ty)));
                self.value(ty, d);
                self.value(V::I32, d);
                self.emit(I::BrIf(0));
                self.emit(I::Drop);
                self.stmt(d);
                self.value(ty, d);
                self.emit(I::End);
            }
            87..=88 => {
                // Multi-value block, then keep the requested type.
                self.emit(I::Block(BlockType::FunctionType(TY_BLOCK_MULTI)));
                self.value(V::F64, d);
                self.value(V::F32, d);
                self.value(V::I32, d);
                self.emit(I::BrIf(0));
                self.emit(I::Drop);
                self.emit(I::Drop);
                self.value(V::F64, d);
                self.value(V::F32, d);
                self.emit(I::End);
                if f32 {
                    let l = self.local(V::F32);
                    self.emit(I::LocalSet(l));
                    self.emit(I::Drop);
                    self.emit(I::LocalGet(l));
                } else {
                    self.emit(I::Drop);
                }
            }
            89..=90 => {
                // A block parameter flowing through a sign op or arithmetic.
                self.value(ty, d);
                let bt = if f32 {
                    TY_BLOCK_PARAM_F32
                } else {
                    TY_BLOCK_PARAM_F64
                };
                self.emit(I::Block(BlockType::FunctionType(bt)));
                match self.rng.gen_range(0..3) {
                    0 => self.emit(if f32 { I::F32Neg } else { I::F64Neg }),
                    1 => {
                        self.value(V::I32, d);
                        self.emit(I::BrIf(0));
                        self.emit(if f32 { I::F32Abs } else { I::F64Abs });
                    }
                    _ => {
                        self.value(ty, d);
                        self.emit(if f32 { I::F32Mul } else { I::F64Mul });
                    }
                }
                self.emit(I::End);
            }
            91..=94 => {
                self.value(ty, d);
                let l = self.local(ty);
                self.emit(I::LocalTee(l));
            }
            95..=97 => {
                let matching: Vec<(u32, usize)> = self
                    .callees
                    .iter()
                    .copied()
                    .filter(|(_, s)| SIGS[*s].1 == [ty])
                    .collect();
                if matching.is_empty() {
                    return self.leaf(ty);
                }
                let (f, s) = matching[self.rng.gen_range(0..matching.len())];
                for p in SIGS[s].0 {
                    self.value(*p, d);
                }
                self.emit(I::Call(f));
            }
            _ => {
                if self.loop_level >= COUNTERS {
                    return self.leaf(ty);
                }
                let c = self.counters[self.loop_level];
                let n = self.rng.gen_range(1..4);
                self.emit(I::I32Const(n));
                self.emit(I::LocalSet(c));
                self.emit(I::Loop(BlockType::Result(ty)));
                self.loop_level += 1;
                self.stmt(d);
                self.value(ty, d);
                self.loop_level -= 1;
                self.loop_back(c);
                self.emit(I::End);
            }
        }
    }

    /// `c -= 1; br_if 0 (c != 0)`: the back edge of a bounded loop.
    fn loop_back(&mut self, c: u32) {
        self.emit(I::LocalGet(c));
        self.emit(I::I32Const(1));
        self.emit(I::I32Sub);
        self.emit(I::LocalTee(c));
        self.emit(I::BrIf(0));
    }

    fn i32_value(&mut self, depth: u32) {
        let d = depth + 1;
        match self.rng.gen_range(0..100) {
            0..=39 => self.leaf(V::I32),
            40..=59 => {
                let f32 = self.rng.gen_bool(0.4);
                let ty = if f32 { V::F32 } else { V::F64 };
                self.value(ty, d);
                self.value(ty, d);
                let op = self.rng.gen_range(0..4);
                self.emit(match (f32, op) {
                    (true, 0) => I::F32Eq,
                    (true, 1) => I::F32Ne,
                    (true, 2) => I::F32Lt,
                    (true, _) => I::F32Ge,
                    (false, 0) => I::F64Eq,
                    (false, 1) => I::F64Ne,
                    (false, 2) => I::F64Le,
                    (false, _) => I::F64Gt,
                });
            }
            60..=69 => {
                self.value(V::F64, d);
                self.emit(I::I32TruncSatF64S);
            }
            70..=71 => {
                // Traps on NaN or out of range: traps are compared too.
                self.value(V::F32, d);
                self.emit(I::I32TruncF32S);
            }
            72..=83 => {
                self.value(V::F32, d);
                self.emit(I::I32ReinterpretF32);
            }
            84..=93 => {
                self.value(V::F64, d);
                self.emit(I::I64ReinterpretF64);
                self.emit(I::I64Const(29));
                self.emit(I::I64ShrU);
                self.emit(I::I32WrapI64);
            }
            _ => {
                self.value(V::I32, d);
                self.emit(I::I32Eqz);
            }
        }
    }

    fn i64_value(&mut self, depth: u32) {
        let d = depth + 1;
        match self.rng.gen_range(0..100) {
            0..=39 => self.leaf(V::I64),
            40..=74 => {
                self.value(V::F64, d);
                self.emit(I::I64ReinterpretF64);
            }
            75..=89 => {
                self.value(V::F32, d);
                self.emit(I::I64TruncSatF32U);
            }
            _ => {
                self.value(V::I32, d);
                self.emit(I::I64ExtendI32S);
            }
        }
    }

    fn stmt(&mut self, depth: u32) {
        let d = depth + 1;
        if depth >= MAX_DEPTH || self.budget == 0 {
            let ty = if self.rng.gen_bool(0.5) {
                V::F64
            } else {
                V::F32
            };
            let l = self.local(ty);
            self.leaf(ty);
            return self.emit(I::LocalSet(l));
        }
        let float = if self.rng.gen_bool(0.6) {
            V::F64
        } else {
            V::F32
        };
        match self.rng.gen_range(0..100) {
            0..=24 => {
                let ty = match self.rng.gen_range(0..6) {
                    0 => V::I32,
                    1 => V::I64,
                    2 | 3 => V::F32,
                    _ => V::F64,
                };
                self.value(ty, d);
                let l = self.local(ty);
                self.emit(I::LocalSet(l));
            }
            25..=44 => {
                let align = if float == V::F32 { 4 } else { 8 };
                let area = if self.rng.gen_bool(0.8) {
                    MEMORY_BYTES
                } else {
                    PATTERN_BYTES
                };
                self.addr(area, align);
                self.value(float, d);
                self.emit(if float == V::F32 {
                    I::F32Store(mem(2, 0))
                } else {
                    I::F64Store(mem(3, 0))
                });
            }
            45..=49 => {
                self.addr(MEMORY_BYTES, 8);
                self.value(V::I64, d);
                self.emit(I::I64Store(mem(3, 0)));
            }
            50..=56 => {
                self.value(float, d);
                let g = if float == V::F32 {
                    GLOBAL_G32
                } else if self.rng.gen_bool(0.6) {
                    GLOBAL_G64
                } else {
                    GLOBAL_H64
                };
                self.emit(I::GlobalSet(g));
            }
            57..=68 => {
                self.value(float, d);
                self.emit(I::Call(if float == V::F32 {
                    FN_OBS_F32
                } else {
                    FN_OBS_F64
                }));
            }
            69..=76 => {
                self.value(V::I32, d);
                self.emit(I::If(BlockType::Empty));
                self.stmt(d);
                if self.rng.gen_bool(0.6) {
                    self.emit(I::Else);
                    self.stmt(d);
                }
                self.emit(I::End);
            }
            77..=81 => {
                self.emit(I::Block(BlockType::Empty));
                self.stmt(d);
                self.value(V::I32, d);
                self.emit(I::BrIf(0));
                self.stmt(d);
                self.emit(I::End);
            }
            82..=84 => {
                self.emit(I::Block(BlockType::Empty));
                self.emit(I::Block(BlockType::Empty));
                self.stmt(d);
                self.value(V::I32, d);
                self.emit(I::BrTable(vec![0, 1, 0].into(), 1));
                self.emit(I::End);
                self.stmt(d);
                self.emit(I::End);
            }
            85..=90 if self.loop_level < COUNTERS => {
                let c = self.counters[self.loop_level];
                let n = self.rng.gen_range(1..4);
                self.emit(I::I32Const(n));
                self.emit(I::LocalSet(c));
                self.emit(I::Loop(BlockType::Empty));
                self.loop_level += 1;
                self.stmt(d);
                self.stmt(d);
                self.loop_level -= 1;
                self.loop_back(c);
                self.emit(I::End);
            }
            91..=94 if !self.callees.is_empty() => {
                let (f, s) = self.callees[self.rng.gen_range(0..self.callees.len())];
                for p in SIGS[s].0 {
                    self.value(*p, d);
                }
                self.emit(I::Call(f));
                for _ in SIGS[s].1 {
                    self.emit(I::Drop);
                }
            }
            _ => {
                // An early return of whatever the function returns.
                self.value(V::I32, d);
                self.emit(I::If(BlockType::Empty));
                self.early_return(d);
                self.emit(I::End);
            }
        }
    }

    fn early_return(&mut self, depth: u32) {
        let results = self.results.clone();
        for r in results {
            self.value(r, depth);
        }
        self.emit(I::Return);
    }
}
