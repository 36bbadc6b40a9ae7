//! NaN canonicalization at escape points: deterministic floating point at the cost
//! of a few compare-and-selects instead of one after every float operation.
//!
//! Wasm leaves the sign and payload of a NaN produced by arithmetic
//! nondeterministic, so validators must agree on them. Cranelift's
//! `cranelift_nan_canonicalization(true)` ("eager" mode) replaces every arithmetic
//! NaN result by the canonical NaN (`0x7fc00000` / `0x7ff8000000000000`), which
//! costs about 4x on float-heavy code. But NaN bits are only observable where they
//! leave the float domain: stores, reinterprets, the sign operand of `copysign`,
//! values passed to calls or returned, `global.set`. [`canonicalize_nans`] rewrites
//! a module so that, run *without* eager mode, every such escape sees exactly the
//! bits eager mode would have produced, and nothing else changes: loads, constants
//! and integer reinterprets keep their exact bits, so NaN-boxing interpreters work.
//!
//! The proof, operation by operation, is in docs/determinism.md ("NaN
//! canonicalization"); the differential tests in `runtime/tests/nan.rs` check it
//! against eager mode on C guests and on generated modules.
//!
//! Modules using SIMD (or exceptions, GC, typed function references, stack
//! switching) are rejected: a `v128` is untyped, so float lanes would need eager
//! treatment, and the engine keeps those proposals off.

// Submodules carry explicit paths so this file can also be included on its own
// (`#[path]`) by the integration tests; the paths are the conventional ones.
#[path = "nan/analysis.rs"]
mod analysis;
#[path = "nan/lattice.rs"]
mod lattice;
#[path = "nan/ops.rs"]
mod ops;
#[path = "nan/rewrite.rs"]
mod rewrite;

use analysis::{plan_fixes, FunctionInput, ModuleInfo, OpAt};
#[allow(unused_imports)] // unused where a bench includes this file on its own
pub use analysis::{WorkBudget, WORK_PER_OPERATOR};
use rewrite::{rewrite_body, BodyLayout};
use wasmparser::{Encoding, FunctionBody, Parser, Payload, TypeRef, Validator};

/// The canonical `f32` NaN of eager mode (cranelift's `Ieee32::NAN`).
pub const CANONICAL_NAN_F32: u32 = 0x7fc0_0000;
/// The canonical `f64` NaN of eager mode (cranelift's `Ieee64::NAN`).
pub const CANONICAL_NAN_F64: u64 = 0x7ff8_0000_0000_0000;

/// Why a module could not be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum NanPassError {
    /// The input is not a valid module under the features the pass supports.
    #[error("NaN pass: invalid or unsupported wasm module: {0}")]
    Invalid(#[from] wasmparser::BinaryReaderError),
    /// An operator from a proposal the pass does not handle.
    #[error(
        "NaN pass: function {func}, byte offset {offset:#x}: operator {operator} from the \
         `{proposal}` proposal is not supported (SIMD and other proposals must stay off)"
    )]
    Unsupported {
        func: u32,
        offset: usize,
        operator: String,
        proposal: &'static str,
    },
    /// A component instead of a core module.
    #[error("NaN pass: input is a component; only core wasm modules are supported")]
    Component,
    /// The scratch locals the fixes need would exceed the locals limit.
    #[error("NaN pass: function {func} would exceed the limit of {limit} locals")]
    TooManyLocals { func: u32, limit: u32 },
    /// A broken invariant of the pass itself (a bug, never the guest's fault).
    #[error("NaN pass internal error in function {func} at byte offset {offset:#x}: {what}")]
    Internal {
        func: u32,
        offset: usize,
        what: String,
    },
}

/// What the pass did to one module (for benchmarks and docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NanPassStats {
    /// Function bodies analysed.
    pub functions: u32,
    /// Float arithmetic operators: the places eager mode canonicalizes.
    pub arithmetic_ops: u32,
    /// Compare-and-select sequences the pass inserted.
    pub fixes: u32,
    /// Functions whose analysis exceeded its work budget (or round limit) and
    /// were fixed at every arithmetic operator instead, like eager mode.
    pub eager_functions: u32,
    /// The most work steps one function's analysis spent per operator of its
    /// body (rounded up), against the budget of
    /// `WORK_PER_OPERATOR` per operator.
    pub max_work_per_operator: u64,
}

/// Rewrites `wasm` so that, compiled with cranelift NaN canonicalization off, it has
/// exactly the observable behaviour it has with canonicalization on.
///
/// Deterministic: the output depends only on the input bytes.
pub fn canonicalize_nans(wasm: &[u8]) -> Result<Vec<u8>, NanPassError> {
    canonicalize_nans_with_stats(wasm).map(|(out, _)| out)
}

/// [`canonicalize_nans`], also reporting how many fixes were inserted.
pub fn canonicalize_nans_with_stats(wasm: &[u8]) -> Result<(Vec<u8>, NanPassStats), NanPassError> {
    canonicalize_nans_within(wasm, WorkBudget::default())
}

/// [`canonicalize_nans_with_stats`] with another work budget; a zero budget
/// fixes every function eagerly (the fallback path, for tests and benchmarks).
pub fn canonicalize_nans_within(
    wasm: &[u8],
    budget: WorkBudget,
) -> Result<(Vec<u8>, NanPassStats), NanPassError> {
    Validator::new_with_features(ops::supported_features()).validate_all(wasm)?;

    let mut info = ModuleInfo {
        types: Vec::new(),
        func_types: Vec::new(),
    };
    let mut stats = NanPassStats::default();
    let mut module = wasm_encoder::Module::new();
    let mut code: Option<wasm_encoder::CodeSection> = None;
    let mut func_index = 0u32;

    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload?;
        if !matches!(payload, Payload::CodeSectionEntry(_)) {
            if let Some(section) = code.take() {
                module.section(&section);
            }
        }
        match &payload {
            Payload::Version {
                encoding: Encoding::Component,
                ..
            } => return Err(NanPassError::Component),
            Payload::TypeSection(reader) => {
                for group in reader.clone() {
                    info.types.extend(group?.into_types());
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.clone() {
                    if let TypeRef::Func(t) = import?.ty {
                        info.func_types.push(t);
                        func_index += 1;
                    }
                }
            }
            Payload::FunctionSection(reader) => {
                for t in reader.clone() {
                    info.func_types.push(t?);
                }
            }
            _ => {}
        }
        match payload {
            Payload::CodeSectionStart { .. } => code = Some(wasm_encoder::CodeSection::new()),
            Payload::CodeSectionEntry(body) => {
                let new_body =
                    rewrite_function(wasm, &info, func_index, &body, budget, &mut stats)?;
                code.get_or_insert_with(wasm_encoder::CodeSection::new)
                    .raw(&new_body);
                func_index += 1;
            }
            // DWARF describes code offsets that the inserted fixes shift; stale line
            // tables would point traps at the wrong source lines.
            Payload::CustomSection(c) if c.name().starts_with(".debug_") => {}
            other => {
                if let Some((id, range)) = other.as_section() {
                    module.section(&wasm_encoder::RawSection {
                        id,
                        data: &wasm[range],
                    });
                }
            }
        }
    }
    if let Some(section) = code.take() {
        module.section(&section);
    }
    Ok((module.finish(), stats))
}

/// Analyses and rewrites one function body.
fn rewrite_function(
    wasm: &[u8],
    info: &ModuleInfo,
    func_index: u32,
    body: &FunctionBody<'_>,
    budget: WorkBudget,
    stats: &mut NanPassStats,
) -> Result<Vec<u8>, NanPassError> {
    let sig = info
        .type_of_function(func_index)
        .cloned()
        .ok_or(NanPassError::Internal {
            func: func_index,
            offset: body.range().start,
            what: "function has no type".to_string(),
        })?;
    let mut local_types = sig.params().to_vec();
    let mut locals = body.get_locals_reader()?;
    let groups = locals.get_count();
    let groups_start = locals.original_position();
    for _ in 0..groups {
        let (count, ty) = locals.read()?;
        local_types.extend(std::iter::repeat_n(ty, count as usize));
    }
    let mut reader = body.get_operators_reader()?;
    let code_start = reader.original_position();
    let code_end = body.range().end;
    let mut ops = Vec::new();
    while !reader.eof() {
        let (op, offset) = reader.read_with_offset()?;
        ops.push(OpAt { op, offset, end: 0 });
    }
    for i in 0..ops.len() {
        ops[i].end = ops.get(i + 1).map_or(code_end, |next| next.offset);
    }
    let input = FunctionInput {
        func_index,
        sig,
        local_types,
        ops,
    };
    let plan = plan_fixes(info, &input, budget)?;
    let fixes = plan.fixes;

    stats.functions += 1;
    stats.eager_functions += u32::from(plan.eager);
    stats.max_work_per_operator = stats
        .max_work_per_operator
        .max(plan.work.div_ceil(input.ops.len().max(1) as u64));
    stats.fixes += fixes.len() as u32;
    stats.arithmetic_ops += input
        .ops
        .iter()
        .filter(|at| matches!(ops::classify(&at.op), ops::OpClass::Arith(_)))
        .count() as u32;

    let fix_offsets: Vec<usize> = fixes
        .iter()
        .map(|f| input.ops[f.point as usize].end)
        .collect();
    let layout = BodyLayout {
        func_index,
        groups,
        group_bytes: groups_start..code_start,
        total_locals: input.local_types.len() as u32,
        code: code_start..code_end,
    };
    rewrite_body(wasm, &layout, &fixes, &fix_offsets)
}
