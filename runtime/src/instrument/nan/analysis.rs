//! Where one function needs fixes: an abstract interpretation over the structured
//! control flow of a wasm function body, in the lattice of [`super::lattice`].
//!
//! A round analyses the body with a given set of fix points (operators after which
//! the top of the stack is replaced by its eager bits) until every loop header is
//! stable, and collects *demands*: the origins of every value that reaches an escape
//! (store, reinterpret, copysign, call argument, return, global.set, ...) while its
//! bits may differ from eager. Demanded origins become fix points and the next round
//! starts. Fix points only ever get added, and an origin is always a point that is
//! not yet fixed, so the rounds end; in the last round no escaping value may differ,
//! which is the soundness argument (docs/determinism.md, "NaN canonicalization").

use super::lattice::{FloatTy, Kind, Val};
use super::ops::{classify, unsupported_proposal, OpClass};
use super::NanPassError;
use std::collections::{BTreeMap, BTreeSet};
use wasmparser::{
    BlockType, CompositeInnerType, ContType, FrameKind, FuncType, ModuleArity, Operator, RefType,
    SubType, ValType,
};

/// After this many rounds a function is fixed at every arithmetic operator instead
/// (eager canonicalization done by the pass), which needs no further rounds. It
/// bounds the work a hostile module can cause; a count, not a time, so every
/// validator makes the same choice.
const MAX_ROUNDS: u32 = 64;

/// Work the analysis of one function may do per operator of its body before
/// it gives up and fixes the function eagerly ([`eager_fixes`]). Work is
/// counted in steps, never time: one step per operator visited and one per
/// abstract value (and per origin it carries) that is copied, joined or
/// compared. Abstract states are as wide as the function's float locals and
/// origin lists as long as its arithmetic, so without a budget a crafted body
/// costs passes x operators x locals (a 100 KB module: 9.4 s). Real code
/// stays far below it: `NanPassStats::max_work_per_operator` is 28 on SQLite
/// (-O2), 23 on Go wasip1 programs, at most 19 on the C guests.
pub const WORK_PER_OPERATOR: u64 = 200;

/// Work every function may do whatever its size (copying its float locals
/// once costs that many steps already).
pub const WORK_FLOOR: u64 = 1_000;

/// The work one function's analysis may spend: `floor + per_operator x
/// operators` steps (see [`WORK_PER_OPERATOR`]). Part of consensus like every
/// limit: it decides which functions are fixed eagerly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkBudget {
    pub per_operator: u64,
    pub floor: u64,
}

impl Default for WorkBudget {
    fn default() -> Self {
        WorkBudget {
            per_operator: WORK_PER_OPERATOR,
            floor: WORK_FLOOR,
        }
    }
}

/// Loop-header fixpoint passes per round before the analysis gives up (a lattice
/// of height 3 converges long before this; it only guards against bugs).
const MAX_PASSES: u32 = 10_000;

/// Types of the module, enough to know the arity of calls and blocks.
pub(crate) struct ModuleInfo {
    pub(crate) types: Vec<SubType>,
    /// Type index of every function, imports first.
    pub(crate) func_types: Vec<u32>,
}

impl ModuleInfo {
    fn func_type_at(&self, type_index: u32) -> Option<&FuncType> {
        match &self.types.get(type_index as usize)?.composite_type.inner {
            CompositeInnerType::Func(f) => Some(f),
            _ => None,
        }
    }

    pub(crate) fn type_of_function(&self, func_index: u32) -> Option<&FuncType> {
        self.func_type_at(*self.func_types.get(func_index as usize)?)
    }
}

/// Only what plain (non-control, non-call) operators need: the analysis handles
/// control flow and calls itself.
impl ModuleArity for ModuleInfo {
    fn sub_type_at(&self, type_idx: u32) -> Option<&SubType> {
        self.types.get(type_idx as usize)
    }
    fn tag_type_arity(&self, _at: u32) -> Option<(u32, u32)> {
        None
    }
    fn type_index_of_function(&self, function_idx: u32) -> Option<u32> {
        self.func_types.get(function_idx as usize).copied()
    }
    fn func_type_of_cont_type(&self, _c: &ContType) -> Option<&FuncType> {
        None
    }
    fn sub_type_of_ref_type(&self, _rt: &RefType) -> Option<&SubType> {
        None
    }
    fn control_stack_height(&self) -> u32 {
        0
    }
    fn label_block(&self, _depth: u32) -> Option<(BlockType, FrameKind)> {
        None
    }
}

/// One operator of a body with its byte range in the module.
pub(crate) struct OpAt<'a> {
    pub(crate) op: Operator<'a>,
    pub(crate) offset: usize,
    pub(crate) end: usize,
}

/// A function body ready for analysis.
pub(crate) struct FunctionInput<'a> {
    pub(crate) func_index: u32,
    pub(crate) sig: FuncType,
    /// Parameters first, then declared locals, one entry per local.
    pub(crate) local_types: Vec<ValType>,
    pub(crate) ops: Vec<OpAt<'a>>,
}

/// Replace the top of the stack right after operator `point` by its eager bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fix {
    pub(crate) point: u32,
    pub(crate) ty: FloatTy,
    /// Eager holds the negative canonical NaN here (an odd number of negations).
    pub(crate) negative: bool,
}

/// Decides the fixes for one function: by analysis within `budget`, or every
/// arithmetic result ([`eager_fixes`]) when the analysis exceeds it.
pub(crate) fn plan_fixes(
    module: &ModuleInfo,
    input: &FunctionInput<'_>,
    budget: WorkBudget,
) -> Result<Plan, NanPassError> {
    for at in &input.ops {
        if let Some(proposal) = unsupported_proposal(&at.op) {
            return Err(NanPassError::Unsupported {
                func: input.func_index,
                offset: at.offset,
                operator: format!("{:?}", at.op),
                proposal,
            });
        }
    }
    let budget = budget
        .floor
        .saturating_add(budget.per_operator.saturating_mul(input.ops.len() as u64));
    let mut analyzer = Analyzer::new(module, input, budget);
    for _ in 0..MAX_ROUNDS {
        let outcome = analyzer.round()?;
        if analyzer.over_budget() {
            break;
        }
        if !analyzer.add_fix_points(&outcome.demands) {
            return Ok(Plan {
                fixes: outcome.fixes,
                work: analyzer.work,
                eager: false,
            });
        }
    }
    Ok(Plan {
        fixes: eager_fixes(input),
        work: analyzer.work,
        eager: true,
    })
}

/// The fixes of one function, and how they were found.
pub(crate) struct Plan {
    pub(crate) fixes: Vec<Fix>,
    /// Work steps the analysis spent (see [`WORK_PER_OPERATOR`]).
    pub(crate) work: u64,
    /// Whether the analysis gave up (work budget or rounds) and every
    /// arithmetic result is fixed instead.
    pub(crate) eager: bool,
}

/// The fallback: a fix right after every arithmetic operator, which is what
/// cranelift's eager mode does (canonicalize every arithmetic result), so the
/// function's bits equal eager mode's everywhere, not only where they escape.
/// Needs no analysis; a fix in unreachable code is dead but still valid (the
/// operator pushes a typed float there too).
pub(crate) fn eager_fixes(input: &FunctionInput<'_>) -> Vec<Fix> {
    input
        .ops
        .iter()
        .enumerate()
        .filter_map(|(i, at)| match classify(&at.op) {
            OpClass::Arith(ty) => Some(Fix {
                point: i as u32,
                ty,
                negative: false,
            }),
            _ => None,
        })
        .collect()
}

/// Work steps to copy, join or compare `vals` (see [`WORK_PER_OPERATOR`]).
fn cost(vals: &[Val]) -> u64 {
    vals.iter().map(|v| 1 + v.origins.len() as u64).sum()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FrameKindAbs {
    Func,
    Block,
    Loop,
    If,
    Else,
}

/// Abstract state at a label: the float locals and the values carried by the branch.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LabelState {
    locals: Vec<Val>,
    vals: Vec<Val>,
}

impl LabelState {
    fn cost(&self) -> u64 {
        cost(&self.locals) + cost(&self.vals)
    }

    fn join(&self, other: &LabelState) -> Option<LabelState> {
        if self.locals.len() != other.locals.len() || self.vals.len() != other.vals.len() {
            return None;
        }
        Some(LabelState {
            locals: self
                .locals
                .iter()
                .zip(&other.locals)
                .map(|(a, b)| a.join(b))
                .collect(),
            vals: self
                .vals
                .iter()
                .zip(&other.vals)
                .map(|(a, b)| a.join(b))
                .collect(),
        })
    }
}

#[derive(Clone, Debug)]
struct State {
    locals: Vec<Val>,
    stack: Vec<Val>,
    reachable: bool,
}

struct Frame {
    kind: FrameKindAbs,
    op: u32,
    height: usize,
    params: usize,
    results: usize,
    merged: Option<LabelState>,
    else_entry: Option<State>,
}

struct Outcome {
    demands: BTreeSet<u32>,
    fixes: Vec<Fix>,
}

struct Analyzer<'a, 'm> {
    module: &'m ModuleInfo,
    input: &'a FunctionInput<'a>,
    /// Slot in the abstract locals for each float local, `None` for other locals.
    local_slot: Vec<Option<usize>>,
    initial_locals: Vec<Val>,
    loop_depth: Vec<u32>,
    fixset: Vec<bool>,
    // Per-pass state.
    headers: BTreeMap<u32, LabelState>,
    header_changed: bool,
    state: State,
    frames: Vec<Frame>,
    demands: BTreeSet<u32>,
    fixes: Vec<Fix>,
    /// Work steps spent so far, over all rounds, and the most allowed.
    work: u64,
    budget: u64,
}

fn float_ty(ty: ValType) -> Option<FloatTy> {
    match ty {
        ValType::F32 => Some(FloatTy::F32),
        ValType::F64 => Some(FloatTy::F64),
        _ => None,
    }
}

impl<'a, 'm> Analyzer<'a, 'm> {
    fn new(module: &'m ModuleInfo, input: &'a FunctionInput<'a>, budget: u64) -> Self {
        let params = input.sig.params().len();
        let mut local_slot = Vec::with_capacity(input.local_types.len());
        let mut initial_locals = Vec::new();
        for (i, ty) in input.local_types.iter().enumerate() {
            match float_ty(*ty) {
                Some(fty) => {
                    local_slot.push(Some(initial_locals.len()));
                    // Parameters come from the caller with exact bits (every call
                    // site and the host pass exact values); declared locals start
                    // at +0.0.
                    initial_locals.push(if i < params {
                        Val::exact(Some(fty))
                    } else {
                        Val::not_nan(Some(fty))
                    });
                }
                None => local_slot.push(None),
            }
        }
        let mut loop_depth = Vec::with_capacity(input.ops.len());
        let mut kinds: Vec<bool> = Vec::new();
        let mut depth = 0u32;
        for at in &input.ops {
            loop_depth.push(depth);
            match at.op {
                Operator::Loop { .. } => {
                    kinds.push(true);
                    depth += 1;
                }
                Operator::Block { .. } | Operator::If { .. } => kinds.push(false),
                Operator::End if kinds.pop() == Some(true) => {
                    depth = depth.saturating_sub(1);
                }
                _ => {}
            }
        }
        Analyzer {
            module,
            input,
            local_slot,
            initial_locals,
            loop_depth,
            fixset: vec![false; input.ops.len()],
            headers: BTreeMap::new(),
            header_changed: false,
            state: State {
                locals: Vec::new(),
                stack: Vec::new(),
                reachable: true,
            },
            frames: Vec::new(),
            demands: BTreeSet::new(),
            fixes: Vec::new(),
            work: 0,
            budget,
        }
    }

    fn charge(&mut self, steps: u64) {
        self.work = self.work.saturating_add(steps);
    }

    fn over_budget(&self) -> bool {
        self.work > self.budget
    }

    /// Charges for the current abstract state (locals and operand stack),
    /// which control operators copy or join.
    fn charge_state(&mut self) {
        self.charge(cost(&self.state.locals) + cost(&self.state.stack));
    }

    fn internal(&self, offset: usize, what: &str) -> NanPassError {
        NanPassError::Internal {
            func: self.input.func_index,
            offset,
            what: what.to_string(),
        }
    }

    /// Adds demanded points to the fix set; false when nothing was new.
    fn add_fix_points(&mut self, demands: &BTreeSet<u32>) -> bool {
        let mut grew = false;
        for &d in demands {
            if let Some(slot) = self.fixset.get_mut(d as usize) {
                if !*slot {
                    *slot = true;
                    grew = true;
                }
            }
        }
        grew
    }

    /// Passes over the body until the loop headers are stable.
    fn round(&mut self) -> Result<Outcome, NanPassError> {
        self.headers.clear();
        for _ in 0..MAX_PASSES {
            self.header_changed = false;
            self.pass()?;
            if !self.header_changed || self.over_budget() {
                return Ok(Outcome {
                    demands: std::mem::take(&mut self.demands),
                    fixes: std::mem::take(&mut self.fixes),
                });
            }
        }
        Err(self.internal(0, "loop analysis did not converge"))
    }

    fn pass(&mut self) -> Result<(), NanPassError> {
        self.state = State {
            locals: self.initial_locals.clone(),
            stack: Vec::new(),
            reachable: true,
        };
        self.frames.clear();
        self.frames.push(Frame {
            kind: FrameKindAbs::Func,
            op: 0,
            height: 0,
            params: 0,
            results: self.input.sig.results().len(),
            merged: None,
            else_entry: None,
        });
        self.demands.clear();
        self.fixes.clear();
        self.charge(cost(&self.initial_locals));
        for i in 0..self.input.ops.len() {
            if self.over_budget() {
                break;
            }
            self.step(i)?;
        }
        Ok(())
    }

    fn block_arity(&self, ty: BlockType, offset: usize) -> Result<(usize, usize), NanPassError> {
        match ty {
            BlockType::Empty => Ok((0, 0)),
            BlockType::Type(_) => Ok((0, 1)),
            BlockType::FuncType(t) => self
                .module
                .func_type_at(t)
                .map(|f| (f.params().len(), f.results().len()))
                .ok_or_else(|| self.internal(offset, "block type index out of range")),
        }
    }

    fn pop(&mut self) -> Val {
        let floor = self.frames.last().map_or(0, |f| f.height);
        if self.state.stack.len() > floor {
            self.state.stack.pop().unwrap_or_else(|| Val::not_nan(None))
        } else {
            Val::not_nan(None)
        }
    }

    fn pop_n(&mut self, n: usize) -> Vec<Val> {
        let mut vals: Vec<Val> = (0..n).map(|_| self.pop()).collect();
        vals.reverse();
        vals
    }

    fn top_n(&self, n: usize) -> Vec<Val> {
        let len = self.state.stack.len();
        self.state.stack[len.saturating_sub(n)..].to_vec()
    }

    fn demand(&mut self, v: &Val) {
        self.charge(v.origins.len() as u64);
        if self.state.reachable && v.kind.may_differ() {
            self.demands.extend(v.origins.iter().copied());
        }
    }

    fn set_unreachable(&mut self) {
        let floor = self.frames.last().map_or(0, |f| f.height);
        self.state.stack.truncate(floor);
        self.state.reachable = false;
    }

    fn push_frame(&mut self, kind: FrameKindAbs, op: u32, params: usize, results: usize) {
        let height = self.state.stack.len().saturating_sub(params);
        let else_entry =
            (kind == FrameKindAbs::If && self.state.reachable).then(|| self.state.clone());
        self.frames.push(Frame {
            kind,
            op,
            height,
            params,
            results,
            merged: None,
            else_entry,
        });
    }

    fn join_into(slot: &mut Option<LabelState>, incoming: LabelState) -> Option<bool> {
        match slot {
            None => {
                *slot = Some(incoming);
                Some(true)
            }
            Some(existing) => {
                let joined = existing.join(&incoming)?;
                let changed = joined != *existing;
                *existing = joined;
                Some(changed)
            }
        }
    }

    fn join_header(
        &mut self,
        op: u32,
        incoming: LabelState,
        offset: usize,
    ) -> Result<(), NanPassError> {
        let mut slot = self.headers.remove(&op);
        self.charge(incoming.cost() + slot.as_ref().map_or(0, LabelState::cost));
        let changed = Self::join_into(&mut slot, incoming)
            .ok_or_else(|| self.internal(offset, "loop label shapes differ"))?;
        self.header_changed |= changed;
        if let Some(h) = slot {
            self.headers.insert(op, h);
        }
        Ok(())
    }

    /// A branch (taken) to the label `depth` levels out.
    fn branch(&mut self, depth: u32, offset: usize) -> Result<(), NanPassError> {
        let idx = self
            .frames
            .len()
            .checked_sub(1 + depth as usize)
            .ok_or_else(|| self.internal(offset, "branch depth out of range"))?;
        let (kind, op, arity) = {
            let f = &self.frames[idx];
            (
                f.kind,
                f.op,
                if f.kind == FrameKindAbs::Loop {
                    f.params
                } else {
                    f.results
                },
            )
        };
        let vals = self.top_n(arity);
        if kind == FrameKindAbs::Func {
            for v in &vals {
                self.demand(v);
            }
            return Ok(());
        }
        let incoming = LabelState {
            locals: self.state.locals.clone(),
            vals,
        };
        if kind == FrameKindAbs::Loop {
            return self.join_header(op, incoming, offset);
        }
        self.charge(incoming.cost() + self.frames[idx].merged.as_ref().map_or(0, LabelState::cost));
        Self::join_into(&mut self.frames[idx].merged, incoming)
            .ok_or_else(|| self.internal(offset, "block label shapes differ"))?;
        Ok(())
    }

    fn step(&mut self, i: usize) -> Result<(), NanPassError> {
        let input = self.input;
        let at = &input.ops[i];
        let p = i as u32;
        let offset = at.offset;
        self.charge(1);
        if matches!(
            at.op,
            Operator::Block { .. }
                | Operator::Loop { .. }
                | Operator::If { .. }
                | Operator::Else
                | Operator::End
                | Operator::Br { .. }
                | Operator::BrIf { .. }
                | Operator::BrTable { .. }
                | Operator::Return
        ) {
            // Copies or joins of the state (labels, headers, if entries).
            self.charge_state();
        }
        match &at.op {
            Operator::Block { blockty } => {
                let (n, m) = self.block_arity(*blockty, offset)?;
                self.push_frame(FrameKindAbs::Block, p, n, m);
            }
            Operator::Loop { blockty } => {
                let (n, m) = self.block_arity(*blockty, offset)?;
                self.push_frame(FrameKindAbs::Loop, p, n, m);
                if self.state.reachable {
                    let incoming = LabelState {
                        locals: self.state.locals.clone(),
                        vals: self.top_n(n),
                    };
                    self.join_header(p, incoming, offset)?;
                    if let Some(h) = self.headers.get(&p) {
                        self.work = self.work.saturating_add(h.cost());
                        self.state.locals = h.locals.clone();
                        let len = self.state.stack.len();
                        self.state.stack.truncate(len.saturating_sub(n));
                        self.state.stack.extend(h.vals.iter().cloned());
                    }
                }
            }
            Operator::If { blockty } => {
                let (n, m) = self.block_arity(*blockty, offset)?;
                if self.state.reachable {
                    self.pop();
                }
                self.push_frame(FrameKindAbs::If, p, n, m);
            }
            Operator::Else => self.else_(offset)?,
            Operator::End => self.end(p, offset)?,
            _ if !self.state.reachable => {}
            Operator::Unreachable => self.set_unreachable(),
            Operator::Br { relative_depth } => {
                self.branch(*relative_depth, offset)?;
                self.set_unreachable();
            }
            Operator::BrIf { relative_depth } => {
                self.pop();
                self.branch(*relative_depth, offset)?;
            }
            Operator::BrTable { targets } => {
                self.pop();
                let mut depths = BTreeSet::new();
                depths.insert(targets.default());
                for t in targets.targets() {
                    depths.insert(t.map_err(NanPassError::Invalid)?);
                }
                for d in depths {
                    self.charge_state();
                    self.branch(d, offset)?;
                }
                self.set_unreachable();
            }
            Operator::Return => {
                let vals = self.top_n(input.sig.results().len());
                for v in &vals {
                    self.demand(v);
                }
                self.set_unreachable();
            }
            Operator::Call { function_index } => {
                let f = self.callee(*function_index, offset)?;
                self.call(f.0, f.1);
            }
            Operator::CallIndirect { type_index, .. } => {
                let f = self.callee_type(*type_index, offset)?;
                self.pop();
                self.call(f.0, f.1);
            }
            Operator::ReturnCall { function_index } => {
                let f = self.callee(*function_index, offset)?;
                self.call(f.0, 0);
                self.set_unreachable();
            }
            Operator::ReturnCallIndirect { type_index, .. } => {
                let f = self.callee_type(*type_index, offset)?;
                self.pop();
                self.call(f.0, 0);
                self.set_unreachable();
            }
            Operator::Drop => {
                self.pop();
            }
            Operator::Select | Operator::TypedSelect { .. } => {
                self.pop();
                let b = self.pop();
                let a = self.pop();
                self.charge(2 + (a.origins.len() + b.origins.len()) as u64);
                self.state.stack.push(a.join(&b).fixable_at(p));
            }
            Operator::LocalGet { local_index } => {
                let v = match self.slot(*local_index) {
                    Some(s) => self.local_read(s, i),
                    None => Val::exact(None),
                };
                self.charge(1 + v.origins.len() as u64);
                self.state.stack.push(v);
            }
            Operator::LocalSet { local_index } => {
                let v = self.pop();
                if let Some(s) = self.slot(*local_index) {
                    self.state.locals[s] = v;
                }
            }
            Operator::LocalTee { local_index } => {
                if let Some(s) = self.slot(*local_index) {
                    let top = self
                        .state
                        .stack
                        .last()
                        .cloned()
                        .unwrap_or_else(|| Val::not_nan(None));
                    self.state.locals[s] = top;
                }
            }
            op => self.plain(op, p, offset)?,
        }
        if self.state.reachable && self.fixset[i] {
            self.apply_fix(p, offset)?;
        }
        Ok(())
    }

    fn slot(&self, local_index: u32) -> Option<usize> {
        self.local_slot.get(local_index as usize).copied().flatten()
    }

    /// Reading a local: a value that differs is fixed either where it was defined
    /// or right here, whichever sits in fewer loops (a value computed in a loop and
    /// read after it is fixed once, after the loop).
    fn local_read(&self, slot: usize, i: usize) -> Val {
        let v = self.state.locals[slot].clone();
        if !v.kind.fixable_here() {
            return v;
        }
        let here = self.loop_depth[i];
        let deepest = v
            .origins
            .iter()
            .filter_map(|o| self.loop_depth.get(*o as usize).copied())
            .max()
            .unwrap_or(0);
        if here < deepest {
            v.fixable_at(i as u32)
        } else {
            v
        }
    }

    fn callee(&self, func: u32, offset: usize) -> Result<(usize, usize), NanPassError> {
        self.module
            .type_of_function(func)
            .map(|f| (f.params().len(), f.results().len()))
            .ok_or_else(|| self.internal(offset, "call to a function index out of range"))
    }

    fn callee_type(&self, ty: u32, offset: usize) -> Result<(usize, usize), NanPassError> {
        self.module
            .func_type_at(ty)
            .map(|f| (f.params().len(), f.results().len()))
            .ok_or_else(|| self.internal(offset, "call_indirect type index out of range"))
    }

    /// Arguments escape (to the host, or to a callee whose parameters are assumed
    /// exact); results are exact because every function returns eager bits.
    fn call(&mut self, params: usize, results: usize) {
        for v in self.pop_n(params) {
            self.demand(&v);
        }
        for _ in 0..results {
            self.state.stack.push(Val::exact(None));
        }
    }

    fn else_(&mut self, offset: usize) -> Result<(), NanPassError> {
        let idx = self
            .frames
            .len()
            .checked_sub(1)
            .ok_or_else(|| self.internal(offset, "else without if"))?;
        if self.state.reachable {
            let results = self.frames[idx].results;
            let fall = LabelState {
                locals: self.state.locals.clone(),
                vals: self.top_n(results),
            };
            Self::join_into(&mut self.frames[idx].merged, fall)
                .ok_or_else(|| self.internal(offset, "if label shapes differ"))?;
        }
        let frame = &mut self.frames[idx];
        frame.kind = FrameKindAbs::Else;
        match frame.else_entry.take() {
            Some(entry) => self.state = entry,
            None => {
                let height = frame.height;
                self.state.stack.truncate(height);
                self.state.reachable = false;
            }
        }
        Ok(())
    }

    fn end(&mut self, p: u32, offset: usize) -> Result<(), NanPassError> {
        let frame = self
            .frames
            .pop()
            .ok_or_else(|| self.internal(offset, "end without a frame"))?;
        match frame.kind {
            FrameKindAbs::Func => {
                let vals = self.top_n(frame.results);
                for v in &vals {
                    self.demand(v);
                }
                // Keep the frame so trailing bytes (none in valid code) stay harmless.
                self.frames.push(frame);
                self.set_unreachable();
            }
            FrameKindAbs::Loop => {
                if !self.state.reachable {
                    self.state.stack.truncate(frame.height);
                }
            }
            FrameKindAbs::Block | FrameKindAbs::If | FrameKindAbs::Else => {
                let mut merged = frame.merged;
                self.charge(
                    merged.as_ref().map_or(0, LabelState::cost)
                        + frame.else_entry.as_ref().map_or(0, |e| cost(&e.locals)),
                );
                if self.state.reachable {
                    let fall = LabelState {
                        locals: self.state.locals.clone(),
                        vals: self.top_n(frame.results),
                    };
                    Self::join_into(&mut merged, fall)
                        .ok_or_else(|| self.internal(offset, "block label shapes differ"))?;
                }
                if let Some(entry) = frame.else_entry {
                    // An `if` without `else`: the parameters pass through unchanged.
                    let len = entry.stack.len();
                    let vals = entry.stack[len.saturating_sub(frame.params)..].to_vec();
                    let implicit = LabelState {
                        locals: entry.locals,
                        vals,
                    };
                    Self::join_into(&mut merged, implicit)
                        .ok_or_else(|| self.internal(offset, "if label shapes differ"))?;
                }
                self.state.stack.truncate(frame.height);
                match merged {
                    Some(m) => {
                        self.state.locals = m.locals;
                        let n = m.vals.len();
                        for (k, v) in m.vals.into_iter().enumerate() {
                            // Only the last result is on top right after `end`.
                            let v = if k + 1 == n { v.fixable_at(p) } else { v };
                            self.state.stack.push(v);
                        }
                        self.state.reachable = true;
                    }
                    None => self.state.reachable = false,
                }
            }
        }
        Ok(())
    }

    fn plain(&mut self, op: &Operator<'_>, p: u32, offset: usize) -> Result<(), NanPassError> {
        let class = classify(op);
        let (pops, pushes) = op
            .operator_arity(self.module)
            .map(|(a, b)| (a as usize, b as usize))
            .ok_or_else(|| self.internal(offset, "operator arity unknown"))?;
        let inputs = self.pop_n(pops);
        let push = |s: &mut Self, v: Val| s.state.stack.push(v);
        match class {
            OpClass::Arith(ty) => push(self, Val::canon(Kind::CanonPos, ty, p)),
            OpClass::Neg | OpClass::Abs => {
                let v = inputs
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| Val::not_nan(None));
                let out = match (class, v.kind, v.ty) {
                    (OpClass::Neg, Kind::CanonPos, Some(ty)) => Val::canon(Kind::CanonNeg, ty, p),
                    (OpClass::Neg, Kind::CanonNeg, Some(ty)) => Val::canon(Kind::CanonPos, ty, p),
                    (OpClass::Abs, Kind::CanonPos | Kind::CanonNeg, Some(ty)) => {
                        Val::canon(Kind::CanonPos, ty, p)
                    }
                    (_, Kind::CanonPos | Kind::CanonNeg, None) => {
                        return Err(self.internal(offset, "float value without a type"))
                    }
                    // Exact, NotNan and Mixed keep their relation under a sign op.
                    _ => v,
                };
                push(self, out);
            }
            OpClass::Opaque => {
                for _ in 0..pushes {
                    push(self, Val::exact(None));
                }
            }
            OpClass::NeverNan(ty) => push(self, Val::not_nan(Some(ty))),
            OpClass::Const { ty, nan } => push(
                self,
                if nan {
                    Val::exact(Some(ty))
                } else {
                    Val::not_nan(Some(ty))
                },
            ),
            OpClass::Escape => {
                for v in &inputs {
                    self.demand(v);
                }
                for _ in 0..pushes {
                    push(self, Val::exact(None));
                }
            }
        }
        Ok(())
    }

    fn apply_fix(&mut self, p: u32, offset: usize) -> Result<(), NanPassError> {
        let Some(top) = self.state.stack.last_mut() else {
            return Ok(());
        };
        if !top.kind.fixable_here() {
            // Exact or NotNan: nothing to do. Mixed: the demand moves to its origins.
            return Ok(());
        }
        let negative = top.kind == Kind::CanonNeg;
        let Some(ty) = top.ty else {
            return Err(self.internal(offset, "fixing a float value without a type"));
        };
        *top = Val::exact(Some(ty));
        self.fixes.push(Fix {
            point: p,
            ty,
            negative,
        });
        Ok(())
    }
}
