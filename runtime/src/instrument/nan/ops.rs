//! What each non-control operator does to NaN bits.
//!
//! Control flow, locals, `select` and calls are handled by the analysis itself;
//! this module classifies the rest. Anything not listed explicitly falls in
//! [`OpClass::Escape`], the conservative default: its float inputs must carry the
//! eager bits (for integer inputs that demand is free) and its results are exact.
//! That default is what `f32.store`, `f64.store`, `i32.reinterpret_f32`,
//! `i64.reinterpret_f64`, `copysign` and `global.set` need, so an operator added to
//! wasm later can only make the pass more conservative, never unsound.

use super::lattice::FloatTy;
use wasmparser::{Operator, WasmFeatures};

/// The NaN behaviour of one operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpClass {
    /// Cranelift's eager mode canonicalizes this result (its `is_fp_arith` list:
    /// add, sub, mul, div, min, max, sqrt, ceil, floor, trunc, nearest, promote,
    /// demote), so a NaN result is canonical in eager and arbitrary in lazy.
    Arith(FloatTy),
    /// `fneg`: flips the sign bit only, NaN or not.
    Neg,
    /// `fabs`: clears the sign bit only, NaN or not.
    Abs,
    /// Reads floats without revealing NaN bits (comparisons: a NaN compares
    /// unordered whatever its payload; truncations: any NaN traps or saturates to 0).
    Opaque,
    /// Produces a float that is never a NaN (integer-to-float conversions).
    NeverNan(FloatTy),
    /// A float constant: exact bits, a NaN only if the constant is one.
    Const { ty: FloatTy, nan: bool },
    /// Everything else: inputs escape, outputs are exact.
    Escape,
}

/// Classifies a non-control operator.
pub(crate) fn classify(op: &Operator<'_>) -> OpClass {
    use FloatTy::{F32, F64};
    use Operator as O;
    match op {
        O::F32Add
        | O::F32Sub
        | O::F32Mul
        | O::F32Div
        | O::F32Min
        | O::F32Max
        | O::F32Sqrt
        | O::F32Ceil
        | O::F32Floor
        | O::F32Trunc
        | O::F32Nearest
        | O::F32DemoteF64 => OpClass::Arith(F32),
        O::F64Add
        | O::F64Sub
        | O::F64Mul
        | O::F64Div
        | O::F64Min
        | O::F64Max
        | O::F64Sqrt
        | O::F64Ceil
        | O::F64Floor
        | O::F64Trunc
        | O::F64Nearest
        | O::F64PromoteF32 => OpClass::Arith(F64),
        O::F32Neg | O::F64Neg => OpClass::Neg,
        O::F32Abs | O::F64Abs => OpClass::Abs,
        O::F32Eq
        | O::F32Ne
        | O::F32Lt
        | O::F32Gt
        | O::F32Le
        | O::F32Ge
        | O::F64Eq
        | O::F64Ne
        | O::F64Lt
        | O::F64Gt
        | O::F64Le
        | O::F64Ge
        | O::I32TruncF32S
        | O::I32TruncF32U
        | O::I32TruncF64S
        | O::I32TruncF64U
        | O::I64TruncF32S
        | O::I64TruncF32U
        | O::I64TruncF64S
        | O::I64TruncF64U
        | O::I32TruncSatF32S
        | O::I32TruncSatF32U
        | O::I32TruncSatF64S
        | O::I32TruncSatF64U
        | O::I64TruncSatF32S
        | O::I64TruncSatF32U
        | O::I64TruncSatF64S
        | O::I64TruncSatF64U => OpClass::Opaque,
        O::F32ConvertI32S | O::F32ConvertI32U | O::F32ConvertI64S | O::F32ConvertI64U => {
            OpClass::NeverNan(F32)
        }
        O::F64ConvertI32S | O::F64ConvertI32U | O::F64ConvertI64S | O::F64ConvertI64U => {
            OpClass::NeverNan(F64)
        }
        O::F32Const { value } => OpClass::Const {
            ty: F32,
            nan: f32::from_bits(value.bits()).is_nan(),
        },
        O::F64Const { value } => OpClass::Const {
            ty: F64,
            nan: f64::from_bits(value.bits()).is_nan(),
        },
        _ => OpClass::Escape,
    }
}

/// The wasm features a module may use to be rewritten. SIMD is excluded: a `v128`
/// can be reread as integers lane by lane, so float lanes would need eager
/// treatment, and the engine keeps SIMD off anyway. Exceptions, GC, typed function
/// references and stack switching are excluded because their operators are not
/// classified here (and the engine does not enable them).
pub(crate) fn supported_features() -> WasmFeatures {
    WasmFeatures::MUTABLE_GLOBAL
        | WasmFeatures::FLOATS
        | WasmFeatures::GC_TYPES
        | WasmFeatures::SATURATING_FLOAT_TO_INT
        | WasmFeatures::SIGN_EXTENSION
        | WasmFeatures::MULTI_VALUE
        | WasmFeatures::BULK_MEMORY
        | WasmFeatures::BULK_MEMORY_OPT
        | WasmFeatures::CALL_INDIRECT_OVERLONG
        | WasmFeatures::REFERENCE_TYPES
        | WasmFeatures::TAIL_CALL
        | WasmFeatures::EXTENDED_CONST
        | WasmFeatures::MULTI_MEMORY
        | WasmFeatures::MEMORY64
        | WasmFeatures::THREADS
        | WasmFeatures::WIDE_ARITHMETIC
}

/// Proposals whose operators the analysis knows; a second line of defence behind
/// validation with [`supported_features`].
const SUPPORTED_PROPOSALS: &[&str] = &[
    "mvp",
    "sign_extension",
    "saturating_float_to_int",
    "bulk_memory",
    "reference_types",
    "tail_call",
    "threads",
    "wide_arithmetic",
];

macro_rules! define_proposal_of {
    ($( @$proposal:ident $op:ident $({ $($arg:ident: $argty:ty),* })? => $visit:ident ($($ann:tt)*) )*) => {
        /// The wasm proposal that introduced `op`, as wasmparser names it.
        pub(crate) fn proposal_of(op: &Operator<'_>) -> &'static str {
            #[allow(unreachable_patterns)]
            match op {
                $( Operator::$op { .. } => stringify!($proposal), )*
                _ => "unknown",
            }
        }
    };
}
wasmparser::for_each_operator!(define_proposal_of);

/// `Some(proposal)` when `op` belongs to a proposal the pass does not handle.
pub(crate) fn unsupported_proposal(op: &Operator<'_>) -> Option<&'static str> {
    let proposal = proposal_of(op);
    (!SUPPORTED_PROPOSALS.contains(&proposal)).then_some(proposal)
}

#[cfg(test)]
mod tests {
    #[allow(unused_imports)] // unused when a harness-less bench includes the pass
    use super::*;

    #[test]
    fn simd_is_unsupported_and_mvp_is_supported() {
        assert_eq!(unsupported_proposal(&Operator::F32x4Add), Some("simd"));
        assert_eq!(unsupported_proposal(&Operator::F64Add), None);
        assert_eq!(unsupported_proposal(&Operator::I32TruncSatF64S), None);
    }

    #[test]
    fn arithmetic_and_sign_ops_are_classified() {
        assert_eq!(
            classify(&Operator::F64PromoteF32),
            OpClass::Arith(FloatTy::F64)
        );
        assert_eq!(classify(&Operator::F32Neg), OpClass::Neg);
        assert_eq!(classify(&Operator::F64Copysign), OpClass::Escape);
        assert_eq!(
            classify(&Operator::F64Store { memarg: memarg() }),
            OpClass::Escape
        );
        assert_eq!(classify(&Operator::I64ReinterpretF64), OpClass::Escape);
        assert_eq!(classify(&Operator::F64Lt), OpClass::Opaque);
    }

    fn memarg() -> wasmparser::MemArg {
        wasmparser::MemArg {
            align: 3,
            max_align: 3,
            offset: 0,
            memory: 0,
        }
    }
}
