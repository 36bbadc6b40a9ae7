//! The shape of function bodies: the structural limits that keep every later
//! pass bounded.
//!
//! Binaryen (Asyncify) recurses on the depth of a function's expression tree,
//! the NaN analysis and cranelift do work per operator and per local, and the
//! Asyncify/stack/dirty-page rewrites grow with the body. A module that passes
//! [`measure_body`] for every function therefore has a known bound on the native
//! stack and the time each pass needs, whatever its author intended.

use wasmparser::{
    BlockType, ContType, FrameKind, FuncType, FunctionBody, ModuleArity, Operator, RefType, SubType,
};

use crate::config::Limits;
use crate::error::ValidationError;

/// What one function body measures against [`Limits`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyShape {
    /// Bytes of the body (local declarations and code).
    pub body_bytes: u32,
    /// Operators in the body (its final `end` included).
    pub operators: u32,
    /// Parameters plus declared locals.
    pub locals: u32,
    /// Deepest control nesting (`block`/`loop`/`if`), the function frame not counted.
    pub nesting_depth: u32,
    /// Deepest expression tree as Binaryen builds it from the stack code.
    pub expression_depth: u32,
    /// Most targets of one `br_table`, its default included.
    pub br_table_targets: u32,
}

impl BodyShape {
    /// The larger of each measure of `self` and `other`.
    pub fn max(self, other: BodyShape) -> BodyShape {
        BodyShape {
            body_bytes: self.body_bytes.max(other.body_bytes),
            operators: self.operators.max(other.operators),
            locals: self.locals.max(other.locals),
            nesting_depth: self.nesting_depth.max(other.nesting_depth),
            expression_depth: self.expression_depth.max(other.expression_depth),
            br_table_targets: self.br_table_targets.max(other.br_table_targets),
        }
    }
}

/// Types of the module, enough to know how many values each operator pops and
/// pushes (control operators are handled by [`measure_body`] itself).
pub(crate) struct Arity<'a> {
    pub(crate) types: &'a [SubType],
    /// Type index of every function, imports first.
    pub(crate) func_types: &'a [u32],
}

impl ModuleArity for Arity<'_> {
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

/// One open control frame while measuring.
struct Frame {
    /// Operand stack height at entry, its parameters excluded.
    height: usize,
    /// Values a branch to this frame carries.
    label_arity: usize,
    results: usize,
    /// Deepest expression completed inside the frame so far.
    deepest_child: u32,
}

/// Measures `body` in one linear pass; with `limits`, refuses it at the
/// first limit it exceeds (so a hostile body costs at most one scan).
pub(crate) fn measure_body(
    body: &FunctionBody<'_>,
    func: u32,
    arity: &Arity<'_>,
    limits: Option<&Limits>,
) -> Result<BodyShape, ValidationError> {
    let over = |limit: &'static str, value: u64, max: u32| -> Result<(), ValidationError> {
        if limits.is_some() && value > u64::from(max) {
            return Err(ValidationError::FunctionTooComplex {
                func,
                limit,
                value,
                max,
            });
        }
        Ok(())
    };
    let l = limits.copied().unwrap_or_default();
    let mut shape = BodyShape {
        body_bytes: body.range().len() as u32,
        ..BodyShape::default()
    };
    over(
        "max_function_body_bytes",
        body.range().len() as u64,
        l.max_function_body_bytes,
    )?;

    let sig = arity
        .type_index_of_function(func)
        .and_then(|t| arity.sub_type_at(t))
        .and_then(|t| arity.sub_type_arity(t))
        .ok_or_else(|| ValidationError::Malformed(format!("function {func} has no type")))?;
    let mut locals = u64::from(sig.0);
    for group in body.get_locals_reader().map_err(super::malformed)? {
        locals += u64::from(group.map_err(super::malformed)?.0);
    }
    over("max_locals_per_function", locals, l.max_locals_per_function)?;
    shape.locals = locals as u32;

    // Operand stack of expression depths, and the open control frames.
    let mut stack: Vec<u32> = Vec::new();
    let mut frames = vec![Frame {
        height: 0,
        label_arity: sig.1 as usize,
        results: sig.1 as usize,
        deepest_child: 0,
    }];
    let mut reader = body.get_operators_reader().map_err(super::malformed)?;
    while !reader.eof() {
        let op = reader.read().map_err(super::malformed)?;
        shape.operators += 1;
        over(
            "max_operators_per_function",
            shape.operators.into(),
            l.max_operators_per_function,
        )?;
        let values = match &op {
            Operator::Br { relative_depth } | Operator::BrIf { relative_depth } => {
                label_arity(&frames, *relative_depth)
            }
            Operator::BrTable { targets } => label_arity(&frames, targets.default()),
            _ => 0,
        };
        let Some(frame) = frames.last_mut() else {
            // Operators after the function's final `end`: the validator refused those.
            break;
        };
        // Pops `n` values of the current frame; returns the deepest.
        let pop = |stack: &mut Vec<u32>, frame: &Frame, n: usize| -> u32 {
            let keep = stack.len().saturating_sub(n).max(frame.height);
            stack.drain(keep..).max().unwrap_or(0)
        };
        match op {
            Operator::Block { blockty } | Operator::Loop { blockty } | Operator::If { blockty } => {
                let cond = if matches!(op, Operator::If { .. }) {
                    pop(&mut stack, frame, 1)
                } else {
                    0
                };
                let (params, results) = arity
                    .block_type_arity(blockty)
                    .ok_or_else(|| ValidationError::Malformed("unknown block type".into()))?;
                let (params, results) = (params as usize, results as usize);
                let height = stack.len().saturating_sub(params).max(frame.height);
                let deepest_param = stack[height..].iter().copied().max().unwrap_or(0);
                let label_arity = if matches!(op, Operator::Loop { .. }) {
                    params
                } else {
                    results
                };
                frames.push(Frame {
                    height,
                    label_arity,
                    results,
                    deepest_child: cond.max(deepest_param),
                });
                let nesting = frames.len() as u64 - 1;
                over("max_nesting_depth", nesting, l.max_nesting_depth)?;
                shape.nesting_depth = shape.nesting_depth.max(nesting as u32);
            }
            Operator::Else => {
                let deepest = pop(&mut stack, frame, usize::MAX);
                frame.deepest_child = frame.deepest_child.max(deepest);
            }
            Operator::End => {
                let deepest = pop(&mut stack, frame, usize::MAX);
                let Some(done) = frames.pop() else { break };
                let depth = 1 + done.deepest_child.max(deepest);
                note_depth(&mut shape, depth, &l, func, limits.is_some())?;
                if let Some(parent) = frames.last_mut() {
                    parent.deepest_child = parent.deepest_child.max(depth);
                    stack.extend(std::iter::repeat_n(depth, done.results));
                }
            }
            Operator::Br { .. } => {
                let depth = 1 + pop(&mut stack, frame, values);
                end_of_reachable(&mut stack, frame, depth);
                note_depth(&mut shape, depth, &l, func, limits.is_some())?;
            }
            Operator::BrIf { .. } => {
                let depth = 1 + pop(&mut stack, frame, values + 1);
                frame.deepest_child = frame.deepest_child.max(depth);
                stack.extend(std::iter::repeat_n(depth, values));
                note_depth(&mut shape, depth, &l, func, limits.is_some())?;
            }
            Operator::BrTable { ref targets } => {
                let count = u64::from(targets.len()) + 1;
                over("max_br_table_targets", count, l.max_br_table_targets)?;
                shape.br_table_targets = shape.br_table_targets.max(count as u32);
                let depth = 1 + pop(&mut stack, frame, values + 1);
                end_of_reachable(&mut stack, frame, depth);
                note_depth(&mut shape, depth, &l, func, limits.is_some())?;
            }
            Operator::Return | Operator::Unreachable => {
                let depth = 1 + pop(&mut stack, frame, usize::MAX);
                end_of_reachable(&mut stack, frame, depth);
                note_depth(&mut shape, depth, &l, func, limits.is_some())?;
            }
            ref other => {
                let (pops, pushes) = other.operator_arity(arity).ok_or_else(|| {
                    ValidationError::Malformed(format!(
                        "function {func}: operator {other:?} has no known arity"
                    ))
                })?;
                let depth = 1 + pop(&mut stack, frame, pops as usize);
                if pushes == 0 {
                    frame.deepest_child = frame.deepest_child.max(depth);
                }
                stack.extend(std::iter::repeat_n(depth, pushes as usize));
                note_depth(&mut shape, depth, &l, func, limits.is_some())?;
            }
        }
    }
    Ok(shape)
}

/// Values a branch `relative_depth` labels out carries.
fn label_arity(frames: &[Frame], relative_depth: u32) -> usize {
    frames
        .len()
        .checked_sub(1 + relative_depth as usize)
        .and_then(|i| frames.get(i))
        .map_or(0, |f| f.label_arity)
}

/// After an unconditional branch: the rest of the frame is unreachable and
/// starts from an empty (polymorphic) stack.
fn end_of_reachable(stack: &mut Vec<u32>, frame: &mut Frame, depth: u32) {
    stack.truncate(frame.height);
    frame.deepest_child = frame.deepest_child.max(depth);
}

fn note_depth(
    shape: &mut BodyShape,
    depth: u32,
    limits: &Limits,
    func: u32,
    enforce: bool,
) -> Result<(), ValidationError> {
    if enforce && depth > limits.max_expression_depth {
        return Err(ValidationError::FunctionTooComplex {
            func,
            limit: "max_expression_depth",
            value: depth.into(),
            max: limits.max_expression_depth,
        });
    }
    shape.expression_depth = shape.expression_depth.max(depth);
    Ok(())
}
