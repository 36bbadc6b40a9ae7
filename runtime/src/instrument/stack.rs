//! The logical stack-depth limit: the same recursion depth traps on every machine.
//!
//! wasmtime's own stack check depends on native frame sizes (compiler version,
//! CPU features) and on how much native stack the host thread has, so it cannot
//! decide consensus. Instead every function is rewritten to
//!
//! ```text
//! global.get $depth; i32.const COST; i32.add; global.set $depth      ;; entry
//! global.get $depth; i32.const LIMIT; i32.gt_u; if unreachable end
//! block (result ...)            ;; the original body; a `br` to the function
//!   ...                         ;; label now lands here
//! end
//! global.get $depth; i32.const COST; i32.sub; global.set $depth      ;; exit
//! ```
//!
//! and every `return` is preceded by the exit sequence, so the counter is
//! balanced on every exit (tail calls are refused by validation). `COST` is the
//! function's frame size in *slots*: [`FRAME_OVERHEAD_SLOTS`] + params + locals
//! plus the maximum operand-stack height (computed by wasmparser's validator).
//! The depth global is exported as [`DEPTH_EXPORT`]; after an `unreachable`
//! trap the executor reads it: a value above the limit means a stack overflow,
//! anything else was the guest's own `unreachable` (e.g. `abort()`).
//!
//! The engine gives wasm `NATIVE_BYTES_PER_SLOT` bytes of native stack per slot
//! (see [`crate::config`]), so the logical limit always fires first.

use wasm_encoder::reencode::{self, Reencode, RoundtripReencoder};
use wasm_encoder::{BlockType, ConstExpr, ExportKind, GlobalType, Instruction, SectionId, ValType};
use wasmparser::{FuncType, Parser, Payload, ValidPayload, Validator, WasmFeatures};

use super::section_order as order;
use crate::error::InstrumentError;

/// Export name of the depth counter.
pub const DEPTH_EXPORT: &str = "__replicode_stack_depth";

/// Slots charged per frame on top of params, locals and operands: return
/// address, frame pointer and callee-saved registers.
pub const FRAME_OVERHEAD_SLOTS: u32 = 4;

/// Per-function facts gathered before rewriting.
struct Plan {
    /// Frame cost of each defined function, in slots.
    costs: Vec<u32>,
    /// Result types of each defined function.
    results: Vec<Vec<wasmparser::ValType>>,
    /// Number of types in the input type section (new block types go after).
    type_count: u32,
    /// Result lists that need a `() -> results` type for the wrapper block.
    multi_results: Vec<Vec<wasmparser::ValType>>,
    /// Index the depth global gets (after every existing global).
    depth_global: u32,
}

/// Adds the logical stack counter with limit `max_slots` to `wasm`.
pub fn instrument(wasm: &[u8], max_slots: u32) -> Result<Vec<u8>, InstrumentError> {
    let plan = plan(wasm)?;
    let mut rewriter = StackRewriter {
        plan,
        max_slots,
        next_func: 0,
        global_done: false,
        export_done: false,
    };
    let mut module = wasm_encoder::Module::new();
    rewriter
        .parse_core_module(&mut module, Parser::new(0), wasm)
        .map_err(|e| err(format!("{e:?}")))?;
    Ok(module.finish())
}

fn err(detail: String) -> InstrumentError {
    InstrumentError::Rewrite {
        pass: "stack",
        detail,
    }
}

/// Validates the module once, recording per-function frame costs.
fn plan(wasm: &[u8]) -> Result<Plan, InstrumentError> {
    let mut validator = Validator::new_with_features(WasmFeatures::default());
    let mut types: Vec<FuncType> = Vec::new();
    let mut func_types: Vec<u32> = Vec::new();
    let mut imported_funcs = 0usize;
    let mut globals = 0u32;
    let mut costs = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| err(e.to_string()))?;
        match &payload {
            Payload::TypeSection(reader) => {
                for ty in reader.clone().into_iter_err_on_gc_types() {
                    types.push(ty.map_err(|e| err(e.to_string()))?);
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.clone() {
                    match import.map_err(|e| err(e.to_string()))?.ty {
                        wasmparser::TypeRef::Func(t) => {
                            func_types.push(t);
                            imported_funcs += 1;
                        }
                        wasmparser::TypeRef::Global(_) => globals += 1,
                        _ => {}
                    }
                }
            }
            Payload::FunctionSection(reader) => {
                for t in reader.clone() {
                    func_types.push(t.map_err(|e| err(e.to_string()))?);
                }
            }
            Payload::GlobalSection(reader) => globals += reader.count(),
            _ => {}
        }
        if let ValidPayload::Func(func, body) = validator
            .payload(&payload)
            .map_err(|e| err(e.to_string()))?
        {
            let mut fv = func.into_validator(Default::default());
            let mut slots: u64 = u64::from(FRAME_OVERHEAD_SLOTS) + fv.len_locals() as u64;
            let mut locals = body.get_locals_reader().map_err(|e| err(e.to_string()))?;
            for _ in 0..locals.get_count() {
                let offset = locals.original_position();
                let (count, ty) = locals.read().map_err(|e| err(e.to_string()))?;
                fv.define_locals(offset, count, ty)
                    .map_err(|e| err(e.to_string()))?;
                slots += u64::from(count);
            }
            let mut ops = body
                .get_operators_reader()
                .map_err(|e| err(e.to_string()))?;
            let mut max_height = 0u32;
            while !ops.eof() {
                let (op, offset) = ops.read_with_offset().map_err(|e| err(e.to_string()))?;
                fv.op(offset, &op).map_err(|e| err(e.to_string()))?;
                max_height = max_height.max(fv.operand_stack_height());
            }
            slots += u64::from(max_height);
            costs.push(u32::try_from(slots).map_err(|_| err(format!("frame of {slots} slots")))?);
        }
    }
    let mut results = Vec::with_capacity(costs.len());
    let mut multi_results: Vec<Vec<wasmparser::ValType>> = Vec::new();
    for &t in &func_types[imported_funcs..] {
        let ty = types
            .get(t as usize)
            .ok_or_else(|| err(format!("missing type {t}")))?;
        let r = ty.results().to_vec();
        if r.len() > 1 && !multi_results.contains(&r) {
            multi_results.push(r.clone());
        }
        results.push(r);
    }
    Ok(Plan {
        costs,
        results,
        type_count: types.len() as u32,
        multi_results,
        depth_global: globals,
    })
}

struct StackRewriter {
    plan: Plan,
    max_slots: u32,
    next_func: usize,
    global_done: bool,
    export_done: bool,
}

impl StackRewriter {
    fn add_global(&mut self, globals: &mut wasm_encoder::GlobalSection) {
        let ty = GlobalType {
            val_type: ValType::I32,
            mutable: true,
            shared: false,
        };
        globals.global(ty, &ConstExpr::i32_const(0));
        self.global_done = true;
    }

    fn add_export(&mut self, exports: &mut wasm_encoder::ExportSection) {
        exports.export(DEPTH_EXPORT, ExportKind::Global, self.plan.depth_global);
        self.export_done = true;
    }

    fn wrapper_block(
        &mut self,
        func: usize,
    ) -> Result<BlockType, reencode::Error<std::convert::Infallible>> {
        let results = &self.plan.results[func];
        Ok(match results.len() {
            0 => BlockType::Empty,
            1 => BlockType::Result(RoundtripReencoder.val_type(results[0])?),
            _ => {
                let pos = self
                    .plan
                    .multi_results
                    .iter()
                    .position(|r| r == results)
                    .unwrap_or(0);
                BlockType::FunctionType(self.plan.type_count + pos as u32)
            }
        })
    }

    fn exit_sequence(&self, f: &mut wasm_encoder::Function, cost: i32) {
        let g = self.plan.depth_global;
        f.instruction(&Instruction::GlobalGet(g));
        f.instruction(&Instruction::I32Const(cost));
        f.instruction(&Instruction::I32Sub);
        f.instruction(&Instruction::GlobalSet(g));
    }
}

impl Reencode for StackRewriter {
    type Error = std::convert::Infallible;

    fn parse_type_section(
        &mut self,
        types: &mut wasm_encoder::TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_type_section(self, types, section)?;
        for results in self.plan.multi_results.clone() {
            let results = results
                .into_iter()
                .map(|t| self.val_type(t))
                .collect::<Result<Vec<_>, _>>()?;
            types.ty().function([], results);
        }
        Ok(())
    }

    fn parse_global_section(
        &mut self,
        globals: &mut wasm_encoder::GlobalSection,
        section: wasmparser::GlobalSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_global_section(self, globals, section)?;
        self.add_global(globals);
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

    fn intersperse_section_hook(
        &mut self,
        module: &mut wasm_encoder::Module,
        _after: Option<SectionId>,
        before: Option<SectionId>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        let past = |id: SectionId| before.is_none_or(|b| order(b) > order(id));
        if !self.global_done && past(SectionId::Global) {
            let mut globals = wasm_encoder::GlobalSection::new();
            self.add_global(&mut globals);
            module.section(&globals);
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
        let cost = self.plan.costs.get(index).copied().unwrap_or(u32::MAX);
        // Costs above i32::MAX cannot be represented; such a frame always overflows.
        let cost = i32::try_from(cost).unwrap_or(i32::MAX);
        let limit = i32::try_from(self.max_slots).unwrap_or(i32::MAX);
        let block = self.wrapper_block(index)?;
        let g = self.plan.depth_global;
        let mut f = self.new_function_with_parsed_locals(&func)?;
        for ins in [
            Instruction::GlobalGet(g),
            Instruction::I32Const(cost),
            Instruction::I32Add,
            Instruction::GlobalSet(g),
            Instruction::GlobalGet(g),
            Instruction::I32Const(limit),
            Instruction::I32GtU,
            Instruction::If(BlockType::Empty),
            Instruction::Unreachable,
            Instruction::End,
            Instruction::Block(block),
        ] {
            f.instruction(&ins);
        }
        let mut reader = func.get_operators_reader()?;
        let mut ops = Vec::new();
        while !reader.eof() {
            ops.push(reader.read()?);
        }
        // The last operator is the function's own `end`: it closes our block instead.
        ops.pop();
        for op in ops {
            if matches!(op, wasmparser::Operator::Return) {
                self.exit_sequence(&mut f, cost);
            }
            f.instruction(&self.instruction(op)?);
        }
        f.instruction(&Instruction::End);
        self.exit_sequence(&mut f, cost);
        f.instruction(&Instruction::End);
        code.function(&f);
        Ok(())
    }
}
