//! Write tracking for process memory: which 4 KiB pages an input may have changed.
//!
//! After every input the process layer must know which pages of the guest's
//! linear memory changed (for the undo image and the app hash). Comparing the
//! whole memory costs time proportional to its size; instead [`track_writes`]
//! rewrites the module so that every wasm write to memory 0 first marks its
//! page in a private *dirty map*: a second memory (index 1, exactly
//! [`DIRTY_MAP_BYTES`] long, exported as [`DIRTY_MAP_EXPORT`]) holding one byte
//! per 4 KiB page of a 4 GiB memory. Host writes (WASI calls) are tracked by the
//! host, not here.
//!
//! # Contract
//!
//! - A store whose first byte is at page `p` (`p = (addr + offset) >> 12`, i32
//!   wrapping add) sets `map[p] != 0` *before* it runs. A store is at most 16
//!   bytes, so the reader must treat a mark at `p` as "pages `p` and `p + 1`".
//!   The mark is made even if the store then traps (out of bounds), so marks
//!   may name pages beyond the memory's current size.
//! - `memory.fill`, `memory.copy` and `memory.init` with `len > 0` mark every
//!   page of `[dst >> 12, (dst + len - 1) >> 12]`; if `dst + len` wraps past
//!   4 GiB (the operation then traps) they mark `[dst >> 12, 0xFFFFF]`.
//! - Marking never traps: every index is `x >> 12` for a 32-bit `x`, which is
//!   below `DIRTY_MAP_BYTES`. `memory.grow` is not marked (new pages are zero).
//! - Nothing else changes: function, type (new one appended), global, table
//!   and export indices stay the same; results and trap codes are the same.
//!   Fuel use grows by the marking code (a few operators per store).
//! - The output is a pure function of the input bytes.
//!
//! # Code
//!
//! A store `[addr, val] store offset=O` is preceded by the shortest of
//!
//! ```text
//! A; [i32.const O; i32.add;] i32.const 12; i32.shr_u; i32.const 1; i32.store8 (memory 1)
//!     ;; when the two operators before the store are A (pushing addr) and V
//!     ;; (pushing val), both side-effect-free pushes (`local.get`,
//!     ;; `global.get`, constants): the mark goes before A and re-evaluates it
//! i32.const P; i32.const 1; i32.store8 (memory 1)
//!     ;; the same when A is `i32.const`: the page P is computed statically
//! local.tee $a; [i32.const O; i32.add;] i32.const 12; i32.shr_u; i32.const 1;
//!     i32.store8 (memory 1); local.get $a
//!     ;; when only V is such a push: inserted between the addr and V
//! local.set $v; local.tee $a; ...mark...; local.get $a; local.get $v
//!     ;; otherwise
//! ```
//!
//! with fresh locals appended to the function (one i32 address temp, one temp
//! per stored value type). The bulk operators, whose operands are all
//! `[dst, x, len]` (x = value or source), are preceded by a call to one helper
//! function appended after every existing function, of type
//! `(i32, i32, i32) -> (i32, i32, i32)` (appended after every existing type):
//! it marks the range with one `memory.fill` on the map and returns its
//! arguments unchanged (fuel: about 30 plus one per marked page).
//!
//! Between a mark and its write there is never a call, so an input cannot
//! end (a blocking WASI call, an Asyncify unwind) after the mark and before
//! the write: the write always lands in the input whose map holds its mark.
//! (That is why the mark is not hoisted above a value computed by a subtree.)
//! The helper's frame is not counted by the logical stack limit
//! ([`crate::instrument::stack`] runs earlier); it is a small leaf frame,
//! well inside the 1 MiB native headroom above that limit.

use wasm_encoder::reencode::{self, Reencode};
use wasm_encoder::{BlockType, ExportKind, Instruction, MemArg, MemoryType, SectionId, ValType};
use wasmparser::{Operator, Parser, Payload, TypeRef, ValidPayload, Validator, WasmFeatures};

use crate::error::InstrumentError;
use crate::instrument::section_order as order;

/// Export name of the private memory holding the dirty-page map.
pub const DIRTY_MAP_EXPORT: &str = "__replicode_dirty_pages";

/// Bytes of the map: one per 4 KiB page of a 4 GiB memory, so no mark can be
/// out of the map's bounds.
pub const DIRTY_MAP_BYTES: usize = 1 << 20;

/// log2 of the tracked page size (4 KiB).
pub const PAGE_SHIFT: u32 = 12;

/// Wasm pages (64 KiB) of the map memory.
const MAP_WASM_PAGES: u64 = (DIRTY_MAP_BYTES as u64) >> 16;

/// Index the map memory gets: the guest's single memory is 0.
const MAP_MEMORY: u32 = 1;

/// wasmparser's limit on params + locals of one function.
const MAX_FUNCTION_LOCALS: u64 = 50_000;

/// Returns `wasm` with every write to memory 0 marked in the dirty-page map.
///
/// `wasm` must be valid, with exactly one 32-bit unshared memory (defined or
/// imported) and no atomics; anything else is refused.
pub fn track_writes(wasm: &[u8]) -> Result<Vec<u8>, InstrumentError> {
    let plan = plan(wasm)?;
    let mut rewriter = DirtyRewriter {
        plan,
        next_func: 0,
        memory_done: false,
        export_done: false,
    };
    let mut module = wasm_encoder::Module::new();
    rewriter
        .parse_core_module(&mut module, Parser::new(0), wasm)
        .map_err(|e| match e {
            reencode::Error::UserError(detail) => err(detail),
            other => err(format!("{other:?}")),
        })?;
    Ok(module.finish())
}

fn err(detail: String) -> InstrumentError {
    InstrumentError::Rewrite {
        pass: "dirty",
        detail,
    }
}

/// Facts about the input gathered (and validated) before rewriting.
struct Plan {
    /// Number of types in the input (the helper's type goes after them).
    type_count: u32,
    /// Imported plus defined functions (the helper's index).
    func_count: u32,
    /// Parameter count of each defined function.
    params: Vec<u32>,
    /// Whether some function uses `memory.fill`, `memory.copy` or `memory.init`.
    needs_helper: bool,
}

impl Plan {
    fn helper_type(&self) -> u32 {
        self.type_count
    }
    fn helper_func(&self) -> u32 {
        self.func_count
    }
}

/// Validation features: what the engine may accept, minus what this pass
/// cannot track (atomics, 64-bit or shared memory).
fn features() -> WasmFeatures {
    WasmFeatures::default()
        & !(WasmFeatures::THREADS
            | WasmFeatures::SHARED_EVERYTHING_THREADS
            | WasmFeatures::MEMORY64
            | WasmFeatures::CUSTOM_PAGE_SIZES)
}

fn plan(wasm: &[u8]) -> Result<Plan, InstrumentError> {
    let mut validator = Validator::new_with_features(features());
    let mut type_params: Vec<u32> = Vec::new();
    let mut func_types: Vec<u32> = Vec::new();
    let mut imported_funcs = 0usize;
    let mut memories = 0u32;
    let mut needs_helper = false;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| err(e.to_string()))?;
        match &payload {
            Payload::TypeSection(reader) => {
                for ty in reader.clone().into_iter_err_on_gc_types() {
                    let ty = ty.map_err(|e| err(e.to_string()))?;
                    type_params.push(ty.params().len() as u32);
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.clone() {
                    match import.map_err(|e| err(e.to_string()))?.ty {
                        TypeRef::Func(t) => {
                            func_types.push(t);
                            imported_funcs += 1;
                        }
                        TypeRef::Memory(_) => memories += 1,
                        _ => {}
                    }
                }
            }
            Payload::FunctionSection(reader) => {
                for t in reader.clone() {
                    func_types.push(t.map_err(|e| err(e.to_string()))?);
                }
            }
            Payload::MemorySection(reader) => memories += reader.count(),
            Payload::ExportSection(reader) => {
                for export in reader.clone() {
                    let export = export.map_err(|e| err(e.to_string()))?;
                    if export.name == DIRTY_MAP_EXPORT {
                        return Err(err(format!(
                            "module already exports {DIRTY_MAP_EXPORT:?}, the dirty map's name"
                        )));
                    }
                }
            }
            Payload::CodeSectionStart { .. } if memories != 1 => {
                return Err(err(format!(
                    "module has {memories} memories; write tracking needs exactly one"
                )));
            }
            _ => {}
        }
        if let ValidPayload::Func(func, body) = validator
            .payload(&payload)
            .map_err(|e| err(e.to_string()))?
        {
            let mut fv = func.into_validator(Default::default());
            fv.validate(&body).map_err(|e| err(e.to_string()))?;
            let mut ops = body
                .get_operators_reader()
                .map_err(|e| err(e.to_string()))?;
            while !ops.eof() && !needs_helper {
                let op = ops.read().map_err(|e| err(e.to_string()))?;
                needs_helper = matches!(
                    op,
                    Operator::MemoryFill { .. }
                        | Operator::MemoryCopy { .. }
                        | Operator::MemoryInit { .. }
                );
            }
        }
    }
    if memories != 1 {
        return Err(err(format!(
            "module has {memories} memories; write tracking needs exactly one"
        )));
    }
    let params = func_types[imported_funcs..]
        .iter()
        .map(|&t| {
            type_params
                .get(t as usize)
                .copied()
                .ok_or_else(|| err(format!("missing type {t}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Plan {
        type_count: type_params.len() as u32,
        func_count: func_types.len() as u32,
        params,
        needs_helper,
    })
}

/// Value type of a store's operand, indexing the per-function temps.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Val {
    I32 = 0,
    I64 = 1,
    F32 = 2,
    F64 = 3,
    V128 = 4,
}

const VAL_TYPES: [ValType; 5] = [
    ValType::I32,
    ValType::I64,
    ValType::F32,
    ValType::F64,
    ValType::V128,
];

/// The memarg and stored value type of a store to memory, if `op` is one.
fn store(op: &Operator<'_>) -> Option<(wasmparser::MemArg, Val)> {
    use Operator as O;
    Some(match *op {
        O::I32Store { memarg } | O::I32Store8 { memarg } | O::I32Store16 { memarg } => {
            (memarg, Val::I32)
        }
        O::I64Store { memarg }
        | O::I64Store8 { memarg }
        | O::I64Store16 { memarg }
        | O::I64Store32 { memarg } => (memarg, Val::I64),
        O::F32Store { memarg } => (memarg, Val::F32),
        O::F64Store { memarg } => (memarg, Val::F64),
        O::V128Store { memarg }
        | O::V128Store8Lane { memarg, .. }
        | O::V128Store16Lane { memarg, .. }
        | O::V128Store32Lane { memarg, .. }
        | O::V128Store64Lane { memarg, .. } => (memarg, Val::V128),
        _ => return None,
    })
}

/// Whether `op` pushes one value and has no other effect (so it can be moved
/// past, or evaluated twice, without changing anything).
fn pure_push(op: &Operator<'_>) -> bool {
    matches!(
        op,
        Operator::LocalGet { .. }
            | Operator::GlobalGet { .. }
            | Operator::I32Const { .. }
            | Operator::I64Const { .. }
            | Operator::F32Const { .. }
            | Operator::F64Const { .. }
            | Operator::V128Const { .. }
    )
}

/// How the mark of the store at some position is made.
#[derive(Clone, Copy)]
enum Mark {
    /// Re-evaluate the address operator (at this position) for the mark.
    Recompute { offset: u64 },
    /// `local.tee` the address sitting under the value operator at this position.
    Tee { offset: u64 },
    /// Save both operands in temps right before the store.
    Spill { offset: u64, val: Val },
}

struct DirtyRewriter {
    plan: Plan,
    next_func: usize,
    memory_done: bool,
    export_done: bool,
}

fn map_memory_type() -> MemoryType {
    MemoryType {
        minimum: MAP_WASM_PAGES,
        maximum: Some(MAP_WASM_PAGES),
        memory64: false,
        shared: false,
        page_size_log2: None,
    }
}

/// `[x] -> []`: `map[(x + offset) >> 12] = 1`, or `map[x] = 1` when `offset`
/// is `None` (`x` is already the page).
fn emit_mark_tail(f: &mut wasm_encoder::Function, offset: Option<u64>) {
    if let Some(offset) = offset {
        emit_page_of(f, offset);
    }
    f.instruction(&Instruction::I32Const(1));
    f.instruction(&Instruction::I32Store8(MemArg {
        offset: 0,
        align: 0,
        memory_index: MAP_MEMORY,
    }));
}

/// `[x] -> [(x + offset) >> 12]`.
fn emit_page_of(f: &mut wasm_encoder::Function, offset: u64) {
    if offset != 0 {
        // A 32-bit memory's offsets fit in u32; the add wraps like the
        // effective address would (a wrapped store traps anyway).
        f.instruction(&Instruction::I32Const(offset as u32 as i32));
        f.instruction(&Instruction::I32Add);
    }
    f.instruction(&Instruction::I32Const(PAGE_SHIFT as i32));
    f.instruction(&Instruction::I32ShrU);
}

/// The helper `(dst, x, len) -> (dst, x, len)` marking `[dst, dst + len)`.
fn helper_body() -> wasm_encoder::Function {
    let (dst, x, len, end) = (0, 1, 2, 3);
    let mut f = wasm_encoder::Function::new([(1, ValType::I32)]);
    for ins in [
        Instruction::LocalGet(len),
        Instruction::If(BlockType::Empty),
        // end = dst + len - 1 (last byte); if that wrapped, the op traps:
        // mark up to the last page instead.
        Instruction::LocalGet(dst),
        Instruction::LocalGet(len),
        Instruction::I32Add,
        Instruction::I32Const(1),
        Instruction::I32Sub,
        Instruction::LocalTee(end),
        Instruction::LocalGet(dst),
        Instruction::I32LtU,
        Instruction::If(BlockType::Empty),
        Instruction::I32Const(-1),
        Instruction::LocalSet(end),
        Instruction::End,
        // memory.fill(map, dst >> 12, 1, (end >> 12) - (dst >> 12) + 1)
        Instruction::LocalGet(dst),
        Instruction::I32Const(PAGE_SHIFT as i32),
        Instruction::I32ShrU,
        Instruction::I32Const(1),
        Instruction::LocalGet(end),
        Instruction::I32Const(PAGE_SHIFT as i32),
        Instruction::I32ShrU,
        Instruction::LocalGet(dst),
        Instruction::I32Const(PAGE_SHIFT as i32),
        Instruction::I32ShrU,
        Instruction::I32Sub,
        Instruction::I32Const(1),
        Instruction::I32Add,
        Instruction::MemoryFill(MAP_MEMORY),
        Instruction::End,
        Instruction::LocalGet(dst),
        Instruction::LocalGet(x),
        Instruction::LocalGet(len),
        Instruction::End,
    ] {
        f.instruction(&ins);
    }
    f
}

impl DirtyRewriter {
    fn add_memory(&mut self, memories: &mut wasm_encoder::MemorySection) {
        memories.memory(map_memory_type());
        self.memory_done = true;
    }

    fn add_export(&mut self, exports: &mut wasm_encoder::ExportSection) {
        exports.export(DIRTY_MAP_EXPORT, ExportKind::Memory, MAP_MEMORY);
        self.export_done = true;
    }
}

impl Reencode for DirtyRewriter {
    type Error = String;

    fn parse_type_section(
        &mut self,
        types: &mut wasm_encoder::TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_type_section(self, types, section)?;
        if self.plan.needs_helper {
            let i32s = [ValType::I32; 3];
            types.ty().function(i32s, i32s);
        }
        Ok(())
    }

    fn parse_function_section(
        &mut self,
        functions: &mut wasm_encoder::FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_function_section(self, functions, section)?;
        if self.plan.needs_helper {
            functions.function(self.plan.helper_type());
        }
        Ok(())
    }

    fn parse_memory_section(
        &mut self,
        memories: &mut wasm_encoder::MemorySection,
        section: wasmparser::MemorySectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_memory_section(self, memories, section)?;
        self.add_memory(memories);
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut wasm_encoder::ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_export_section(self, exports, section)?;
        self.add_export(exports);
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut wasm_encoder::CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_code_section(self, code, section)?;
        if self.plan.needs_helper {
            code.function(&helper_body());
        }
        Ok(())
    }

    fn intersperse_section_hook(
        &mut self,
        module: &mut wasm_encoder::Module,
        _after: Option<SectionId>,
        before: Option<SectionId>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        let past = |id: SectionId| before.is_none_or(|b| order(b) > order(id));
        if !self.memory_done && past(SectionId::Memory) {
            let mut memories = wasm_encoder::MemorySection::new();
            self.add_memory(&mut memories);
            module.section(&memories);
        }
        if !self.export_done && past(SectionId::Export) {
            let mut exports = wasm_encoder::ExportSection::new();
            self.add_export(&mut exports);
            module.section(&exports);
        }
        Ok(())
    }

    fn parse_function_body(
        &mut self,
        code: &mut wasm_encoder::CodeSection,
        func: wasmparser::FunctionBody<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        let index = self.next_func;
        self.next_func += 1;
        let params =
            *self.plan.params.get(index).ok_or_else(|| {
                reencode::Error::UserError(format!("no type for function {index}"))
            })?;

        let mut locals = Vec::new();
        let mut declared = u64::from(params);
        for pair in func.get_locals_reader()? {
            let (count, ty) = pair?;
            declared += u64::from(count);
            locals.push((count, self.val_type(ty)?));
        }
        let mut reader = func.get_operators_reader()?;
        let mut ops = Vec::new();
        while !reader.eof() {
            ops.push(reader.read()?);
        }

        // Decide how each store is marked; `marks[i]` is emitted before op i.
        let mut marks: Vec<Option<Mark>> = vec![None; ops.len()];
        let mut spilled = [false; 5];
        let mut need_addr = false;
        for (i, op) in ops.iter().enumerate() {
            let Some((memarg, val)) = store(op) else {
                continue;
            };
            if memarg.memory != 0 {
                return Err(reencode::Error::UserError(format!(
                    "store to memory {} in function {index}",
                    memarg.memory
                )));
            }
            let offset = memarg.offset;
            let value_pure = i >= 1 && pure_push(&ops[i - 1]);
            let addr_pure = i >= 2 && pure_push(&ops[i - 2]);
            if value_pure && addr_pure {
                marks[i - 2] = Some(Mark::Recompute { offset });
            } else if value_pure {
                marks[i - 1] = Some(Mark::Tee { offset });
                need_addr = true;
            } else {
                marks[i] = Some(Mark::Spill { offset, val });
                need_addr = true;
                spilled[val as usize] = true;
            }
        }
        // Temps, appended in a fixed order: address, then one per value type.
        let mut next = declared;
        let addr = next as u32;
        if need_addr {
            locals.push((1, ValType::I32));
            next += 1;
        }
        let mut temp = [0u32; 5];
        for (k, used) in spilled.iter().enumerate() {
            if *used {
                temp[k] = next as u32;
                locals.push((1, VAL_TYPES[k]));
                next += 1;
            }
        }
        if next > MAX_FUNCTION_LOCALS {
            return Err(reencode::Error::UserError(format!(
                "function {index} would have {next} locals with the marking temps, above {MAX_FUNCTION_LOCALS}"
            )));
        }

        let mut f = wasm_encoder::Function::new(locals);
        let helper = self.plan.helper_func();
        for (i, op) in ops.iter().enumerate() {
            match marks[i] {
                None => {}
                Some(Mark::Recompute { offset }) => {
                    if let Operator::I32Const { value } = *op {
                        // A constant address (clang's globals): the page is
                        // known now; same wrapping rule as at run time.
                        let page = (value as u32).wrapping_add(offset as u32) >> PAGE_SHIFT;
                        f.instruction(&Instruction::I32Const(page as i32));
                        emit_mark_tail(&mut f, None);
                    } else {
                        f.instruction(&self.instruction(op.clone())?);
                        emit_mark_tail(&mut f, Some(offset));
                    }
                }
                Some(Mark::Tee { offset }) => {
                    f.instruction(&Instruction::LocalTee(addr));
                    emit_mark_tail(&mut f, Some(offset));
                    f.instruction(&Instruction::LocalGet(addr));
                }
                Some(Mark::Spill { offset, val }) => {
                    let v = temp[val as usize];
                    f.instruction(&Instruction::LocalSet(v));
                    f.instruction(&Instruction::LocalTee(addr));
                    emit_mark_tail(&mut f, Some(offset));
                    f.instruction(&Instruction::LocalGet(addr));
                    f.instruction(&Instruction::LocalGet(v));
                }
            }
            match op {
                Operator::MemoryFill { mem: 0 }
                | Operator::MemoryInit { mem: 0, .. }
                | Operator::MemoryCopy { dst_mem: 0, .. } => {
                    f.instruction(&Instruction::Call(helper));
                }
                Operator::MemoryFill { .. }
                | Operator::MemoryInit { .. }
                | Operator::MemoryCopy { .. } => {
                    return Err(reencode::Error::UserError(format!(
                        "bulk write to a memory other than 0 in function {index}"
                    )));
                }
                _ => {}
            }
            f.instruction(&self.instruction(op.clone())?);
        }
        code.function(&f);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Operators of the last defined function, in text form.
    fn body_ops(wasm: &[u8]) -> Vec<String> {
        let mut last = Vec::new();
        for payload in Parser::new(0).parse_all(wasm) {
            if let Ok(Payload::CodeSectionEntry(body)) = payload {
                last.clear();
                let mut reader = body.get_operators_reader().expect("operators");
                while !reader.eof() {
                    last.push(format!("{:?}", reader.read().expect("operator")));
                }
            }
        }
        last
    }

    fn added(body: &str) -> (usize, Vec<String>) {
        let wat = format!(
            "(module (memory 1) (global $g (mut i32) (i32.const 0))
               (func (param $p i32) (param $v i64) {body}))"
        );
        let wasm = wat::parse_str(wat).expect("wat");
        let out = track_writes(&wasm).expect("track_writes");
        wasmparser::Validator::new_with_features(features())
            .validate_all(&out)
            .expect("valid output");
        let (a, b) = (body_ops(&wasm), body_ops(&out));
        (b.len() - a.len(), b)
    }

    #[test]
    fn each_shape_costs_what_the_docs_say() {
        // Both operands pushed by local.get / global.get: mark re-evaluates the address.
        assert_eq!(added("local.get $p local.get $v i64.store").0, 5);
        assert_eq!(added("global.get $g local.get $v i64.store offset=8").0, 7);
        // Constant address: the page is a constant.
        assert_eq!(added("i32.const 5 i64.const 1 i64.store offset=8").0, 3);
        // Computed address, pushed value: tee.
        assert_eq!(
            added("local.get $p i32.const 4 i32.add local.get $v i64.store").0,
            6
        );
        // Computed value: both operands spilled to temps.
        assert_eq!(
            added("local.get $p local.get $v i64.const 1 i64.add i64.store").0,
            8
        );
        // Stores elsewhere are untouched; loads add nothing.
        assert_eq!(added("local.get $p i64.load drop").0, 0);
    }

    #[test]
    fn constant_pages_wrap_like_the_runtime_sum() {
        let (_, ops) = added("i32.const -1 i64.const 1 i64.store offset=4096");
        assert_eq!(ops[0], "I32Const { value: 0 }");
        let (_, ops) = added("i32.const 8192 i64.const 1 i64.store offset=4095");
        assert_eq!(ops[0], "I32Const { value: 2 }");
    }

    #[test]
    fn bulk_ops_call_the_appended_helper() {
        let wat = "(module (memory 1) (func) (func (param i32)
            local.get 0 i32.const 0 i32.const 9 memory.fill
            local.get 0 i32.const 0 i32.const 9 memory.copy))";
        let wasm = wat::parse_str(wat).expect("wat");
        let out = track_writes(&wasm).expect("track_writes");
        let mut funcs = 0;
        let mut calls = Vec::new();
        for payload in Parser::new(0).parse_all(&out) {
            match payload.expect("parse") {
                Payload::FunctionSection(r) => funcs = r.count(),
                Payload::CodeSectionEntry(body) => {
                    let mut reader = body.get_operators_reader().expect("operators");
                    while !reader.eof() {
                        if let Operator::Call { function_index } = reader.read().expect("op") {
                            calls.push(function_index);
                        }
                    }
                }
                _ => {}
            }
        }
        assert_eq!(funcs, 3, "helper appended after the two functions");
        assert_eq!(calls, vec![2, 2]);
    }
}
