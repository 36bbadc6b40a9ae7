//! Splices the planned fixes into a function body, byte for byte.
//!
//! The original operator bytes are copied unchanged (no decode/re-encode round
//! trip that could alter immediates or encodings); after each fix point this
//! sequence is inserted, `t` being a scratch local of the value's type:
//!
//! ```text
//! local.tee t ; fNN.const <canonical NaN> ; local.get t ; local.get t ; fNN.eq ; select
//! ```
//!
//! i.e. `t == t ? t : canonical`, the same compare-and-select cranelift's eager
//! mode emits after every arithmetic operation. Scratch locals are appended after
//! all existing locals so no existing local index changes.

use super::analysis::Fix;
use super::lattice::FloatTy;
use super::{NanPassError, CANONICAL_NAN_F32, CANONICAL_NAN_F64};
use wasm_encoder::Encode;

/// Wasm's limit on locals per function, as enforced by wasmparser and wasmtime.
const MAX_LOCALS: u32 = 50_000;

/// The parts of an original body the rewrite copies from.
pub(crate) struct BodyLayout {
    pub(crate) func_index: u32,
    /// Number of local declaration groups.
    pub(crate) groups: u32,
    /// Bytes of the declaration groups (after their count).
    pub(crate) group_bytes: std::ops::Range<usize>,
    /// Parameters plus declared locals.
    pub(crate) total_locals: u32,
    /// Bytes of the instructions, up to the end of the body.
    pub(crate) code: std::ops::Range<usize>,
}

/// Builds the new body (locals and instructions, without the size prefix).
/// `fix_offsets[i]` is the byte offset right after the operator of `fixes[i]`.
pub(crate) fn rewrite_body(
    wasm: &[u8],
    layout: &BodyLayout,
    fixes: &[Fix],
    fix_offsets: &[usize],
) -> Result<Vec<u8>, NanPassError> {
    let needs = |ty| fixes.iter().any(|f| f.ty == ty);
    let (need_f32, need_f64) = (needs(FloatTy::F32), needs(FloatTy::F64));
    let extra = u32::from(need_f32) + u32::from(need_f64);
    let too_many = || NanPassError::TooManyLocals {
        func: layout.func_index,
        limit: MAX_LOCALS,
    };
    let total = layout
        .total_locals
        .checked_add(extra)
        .ok_or_else(too_many)?;
    if extra > 0 && total > MAX_LOCALS {
        return Err(too_many());
    }
    let f32_local = layout.total_locals;
    let f64_local = layout.total_locals + u32::from(need_f32);

    let mut out = Vec::with_capacity(layout.code.len() + fixes.len() * 16 + 16);
    (layout.groups + extra).encode(&mut out);
    out.extend_from_slice(&wasm[layout.group_bytes.clone()]);
    if need_f32 {
        1u32.encode(&mut out);
        wasm_encoder::ValType::F32.encode(&mut out);
    }
    if need_f64 {
        1u32.encode(&mut out);
        wasm_encoder::ValType::F64.encode(&mut out);
    }

    let mut cursor = layout.code.start;
    for (fix, &at) in fixes.iter().zip(fix_offsets) {
        if at < cursor || at > layout.code.end {
            return Err(NanPassError::Internal {
                func: layout.func_index,
                offset: at,
                what: "fix points out of order".to_string(),
            });
        }
        out.extend_from_slice(&wasm[cursor..at]);
        cursor = at;
        let local = match fix.ty {
            FloatTy::F32 => f32_local,
            FloatTy::F64 => f64_local,
        };
        emit_fix(&mut out, fix, local);
    }
    out.extend_from_slice(&wasm[cursor..layout.code.end]);
    Ok(out)
}

/// `local.tee t ; const canon ; local.get t ; local.get t ; eq ; select`.
fn emit_fix(out: &mut Vec<u8>, fix: &Fix, local: u32) {
    const LOCAL_GET: u8 = 0x20;
    const LOCAL_TEE: u8 = 0x22;
    const F32_CONST: u8 = 0x43;
    const F64_CONST: u8 = 0x44;
    const F32_EQ: u8 = 0x5b;
    const F64_EQ: u8 = 0x61;
    const SELECT: u8 = 0x1b;
    out.push(LOCAL_TEE);
    local.encode(out);
    let eq = match fix.ty {
        FloatTy::F32 => {
            let sign = if fix.negative { 0x8000_0000 } else { 0 };
            out.push(F32_CONST);
            out.extend_from_slice(&(CANONICAL_NAN_F32 | sign).to_le_bytes());
            F32_EQ
        }
        FloatTy::F64 => {
            let sign = if fix.negative {
                0x8000_0000_0000_0000
            } else {
                0
            };
            out.push(F64_CONST);
            out.extend_from_slice(&(CANONICAL_NAN_F64 | sign).to_le_bytes());
            F64_EQ
        }
    };
    out.push(LOCAL_GET);
    local.encode(out);
    out.push(LOCAL_GET);
    local.encode(out);
    out.push(eq);
    out.push(SELECT);
}
