//! The abstract values of the NaN pass: how a float value computed without
//! canonicalization ("lazy") relates, bit for bit, to the same value computed with
//! cranelift's eager canonicalization.
//!
//! Both executions agree on everything except NaN bits: every float operation gives
//! a NaN in one execution exactly when it gives a NaN in the other, and equal
//! non-NaN results (IEEE 754 arithmetic is exact-rounded; wasm has no flush to zero).
//! What may differ is only the sign and payload of a NaN. [`Kind`] says by how much.

/// Which float type a value has; needed to emit the right canonical constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum FloatTy {
    F32,
    F64,
}

/// Relation between the lazy and the eager bits of one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Never a NaN (constants, int-to-float conversions, zero-initialised locals):
    /// both executions hold the same bits. Joins with anything without loss.
    NotNan,
    /// Bit-identical in both executions, NaN or not (loads, NaN constants,
    /// reinterprets from integers, parameters, call results, canonicalized values).
    Exact,
    /// If it is a NaN, eager holds the positive canonical NaN and lazy holds some NaN
    /// of unknown sign and payload (fresh arithmetic results, `abs` of such values).
    CanonPos,
    /// Like [`Kind::CanonPos`] but eager holds the negative canonical NaN
    /// (an arithmetic result negated an odd number of times).
    CanonNeg,
    /// Different relations on different paths into a merge: no single instruction at
    /// this point can recover the eager bits. Must be made [`Kind::Exact`] upstream.
    Mixed,
}

impl Kind {
    /// Least upper bound: `NotNan` is the bottom, `Mixed` the top, the rest are
    /// pairwise incomparable.
    pub(crate) fn join(self, other: Kind) -> Kind {
        match (self, other) {
            (Kind::NotNan, k) | (k, Kind::NotNan) => k,
            (a, b) if a == b => a,
            _ => Kind::Mixed,
        }
    }

    /// Whether lazy bits may differ from eager bits (so an escape needs a fix).
    pub(crate) fn may_differ(self) -> bool {
        matches!(self, Kind::CanonPos | Kind::CanonNeg | Kind::Mixed)
    }

    /// Whether a select against a canonical constant right here recovers eager bits.
    pub(crate) fn fixable_here(self) -> bool {
        matches!(self, Kind::CanonPos | Kind::CanonNeg)
    }
}

/// One abstract value: its relation to eager, its float type when known, and the
/// program points (operator indices) where inserting a fix would make it `Exact`.
///
/// Invariant: `origins` is non-empty exactly when `kind.may_differ()`, and every
/// origin is an operator whose single result is the top of the stack right after
/// it and is `CanonPos`/`CanonNeg` there, not yet fixed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Val {
    pub(crate) kind: Kind,
    pub(crate) ty: Option<FloatTy>,
    pub(crate) origins: Vec<u32>,
}

impl Val {
    pub(crate) fn not_nan(ty: Option<FloatTy>) -> Val {
        Val {
            kind: Kind::NotNan,
            ty,
            origins: Vec::new(),
        }
    }

    pub(crate) fn exact(ty: Option<FloatTy>) -> Val {
        Val {
            kind: Kind::Exact,
            ty,
            origins: Vec::new(),
        }
    }

    /// A fresh arithmetic result (or a sign-op result) that can be fixed at `point`.
    pub(crate) fn canon(kind: Kind, ty: FloatTy, point: u32) -> Val {
        Val {
            kind,
            ty: Some(ty),
            origins: vec![point],
        }
    }

    /// The same value, but to be fixed at `point` instead of at its origins.
    pub(crate) fn fixable_at(mut self, point: u32) -> Val {
        if self.kind.fixable_here() {
            self.origins = vec![point];
        }
        self
    }

    pub(crate) fn join(&self, other: &Val) -> Val {
        let kind = self.kind.join(other.kind);
        let origins = if kind.may_differ() {
            merge_sorted(&self.origins, &other.origins)
        } else {
            Vec::new()
        };
        Val {
            kind,
            ty: self.ty.or(other.ty),
            origins,
        }
    }
}

/// Union of two sorted, duplicate-free lists, itself sorted and duplicate-free.
fn merge_sorted(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

#[cfg(test)]
mod tests {
    #[allow(unused_imports)] // unused when a harness-less bench includes the pass
    use super::*;

    #[test]
    fn not_nan_is_bottom_and_mixed_is_top() {
        for k in [
            Kind::NotNan,
            Kind::Exact,
            Kind::CanonPos,
            Kind::CanonNeg,
            Kind::Mixed,
        ] {
            assert_eq!(Kind::NotNan.join(k), k);
            assert_eq!(k.join(Kind::Mixed), Kind::Mixed);
            assert_eq!(k.join(k), k);
        }
        assert_eq!(Kind::Exact.join(Kind::CanonPos), Kind::Mixed);
        assert_eq!(Kind::CanonPos.join(Kind::CanonNeg), Kind::Mixed);
    }

    #[test]
    fn joins_union_origins_only_when_values_may_differ() {
        let a = Val::canon(Kind::CanonPos, FloatTy::F64, 7);
        let b = Val::canon(Kind::CanonNeg, FloatTy::F64, 3);
        assert_eq!(a.join(&b).origins, vec![3, 7]);
        let e = Val::exact(None);
        assert!(e.join(&Val::not_nan(None)).origins.is_empty());
        assert_eq!(a.join(&Val::not_nan(None)), a);
    }
}
