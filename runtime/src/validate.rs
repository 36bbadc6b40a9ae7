//! Refuses modules before anything runs, naming the culprit.
//!
//! Checks, in order: size; structural validity under the feature set we allow
//! (wasm 2.0 with the deterministic subset, see [`allowed_features`]); imports
//! (only `wasi_snapshot_preview1` functions with their exact signatures);
//! declared counts against [`Limits`]; the shape of every function body
//! (size, operators, locals, nesting, expression depth, `br_table` targets;
//! see [`code`]) against the limits that keep every later pass bounded in
//! time and native stack; operators that would keep state outside
//! linear memory and globals (table mutation, passive data) or that the stack
//! instrumentation does not model (tail calls); the `_start`/`memory` exports;
//! names the instrumentation reserves.

mod code;

pub use code::BodyShape;

use wasmparser::{
    ExternalKind, FuncType, Operator, Parser, Payload, SubType, TypeRef, ValType, Validator,
    WasmFeatures,
};

use crate::config::{Limits, RuntimeConfig};
use crate::error::ValidationError;

/// The only import module a guest may use.
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// Export names reserved for the instrumentation.
pub const RESERVED_EXPORT_PREFIXES: [&str; 2] = ["asyncify_", "__replicode_"];

use ValType::{I32, I64};

/// Every `wasi_snapshot_preview1` function with its core wasm signature.
/// Functions the host does not support still link and return `ENOSYS`.
pub const WASI_FUNCTIONS: &[(&str, &[ValType], &[ValType])] = &[
    ("args_get", &[I32, I32], &[I32]),
    ("args_sizes_get", &[I32, I32], &[I32]),
    ("environ_get", &[I32, I32], &[I32]),
    ("environ_sizes_get", &[I32, I32], &[I32]),
    ("clock_res_get", &[I32, I32], &[I32]),
    ("clock_time_get", &[I32, I64, I32], &[I32]),
    ("fd_advise", &[I32, I64, I64, I32], &[I32]),
    ("fd_allocate", &[I32, I64, I64], &[I32]),
    ("fd_close", &[I32], &[I32]),
    ("fd_datasync", &[I32], &[I32]),
    ("fd_fdstat_get", &[I32, I32], &[I32]),
    ("fd_fdstat_set_flags", &[I32, I32], &[I32]),
    ("fd_fdstat_set_rights", &[I32, I64, I64], &[I32]),
    ("fd_filestat_get", &[I32, I32], &[I32]),
    ("fd_filestat_set_size", &[I32, I64], &[I32]),
    ("fd_filestat_set_times", &[I32, I64, I64, I32], &[I32]),
    ("fd_pread", &[I32, I32, I32, I64, I32], &[I32]),
    ("fd_prestat_get", &[I32, I32], &[I32]),
    ("fd_prestat_dir_name", &[I32, I32, I32], &[I32]),
    ("fd_pwrite", &[I32, I32, I32, I64, I32], &[I32]),
    ("fd_read", &[I32, I32, I32, I32], &[I32]),
    ("fd_readdir", &[I32, I32, I32, I64, I32], &[I32]),
    ("fd_renumber", &[I32, I32], &[I32]),
    ("fd_seek", &[I32, I64, I32, I32], &[I32]),
    ("fd_sync", &[I32], &[I32]),
    ("fd_tell", &[I32, I32], &[I32]),
    ("fd_write", &[I32, I32, I32, I32], &[I32]),
    ("path_create_directory", &[I32, I32, I32], &[I32]),
    ("path_filestat_get", &[I32, I32, I32, I32, I32], &[I32]),
    (
        "path_filestat_set_times",
        &[I32, I32, I32, I32, I64, I64, I32],
        &[I32],
    ),
    ("path_link", &[I32, I32, I32, I32, I32, I32, I32], &[I32]),
    (
        "path_open",
        &[I32, I32, I32, I32, I32, I64, I64, I32, I32],
        &[I32],
    ),
    ("path_readlink", &[I32, I32, I32, I32, I32, I32], &[I32]),
    ("path_remove_directory", &[I32, I32, I32], &[I32]),
    ("path_rename", &[I32, I32, I32, I32, I32, I32], &[I32]),
    ("path_symlink", &[I32, I32, I32, I32, I32], &[I32]),
    ("path_unlink_file", &[I32, I32, I32], &[I32]),
    ("poll_oneoff", &[I32, I32, I32, I32], &[I32]),
    ("proc_exit", &[I32], &[]),
    ("proc_raise", &[I32], &[I32]),
    ("sched_yield", &[], &[I32]),
    ("random_get", &[I32, I32], &[I32]),
    ("sock_accept", &[I32, I32, I32], &[I32]),
    ("sock_recv", &[I32, I32, I32, I32, I32, I32], &[I32]),
    ("sock_send", &[I32, I32, I32, I32, I32], &[I32]),
    ("sock_shutdown", &[I32, I32], &[I32]),
];

/// The wasm features a guest may use. Everything else is refused:
/// threads/shared memory (scheduling-dependent), relaxed SIMD (hardware-dependent),
/// memory64 and multi-memory (the executor and snapshots assume one 32-bit memory),
/// exceptions, GC, function references and tail calls (state outside linear
/// memory, or exits the stack instrumentation does not model).
pub fn allowed_features(config: &RuntimeConfig) -> WasmFeatures {
    let mut f = WasmFeatures::WASM2 | WasmFeatures::EXTENDED_CONST;
    if !config.simd {
        f.remove(WasmFeatures::SIMD);
    }
    f
}

/// Summary of a validated module that the later passes use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Initial pages of the guest's memory.
    pub initial_pages: u64,
    /// Number of imported functions.
    pub imported_functions: u32,
    /// Number of defined functions.
    pub defined_functions: u32,
    /// Sum over the defined functions of operators x (1 + expression depth):
    /// the measure preparation time grows with. Binaryen's time grows with
    /// depth times size (10,000 nested `if`s in 50 KB: 21.6 s; 2,000 in 10 KB:
    /// 1.3 s), so charging for preparation by bytes alone would undercharge
    /// deep code; this is deterministic and known before any pass runs.
    pub preparation_work: u64,
}

/// Validates `wasm` against `config`; see the module docs for what is checked.
pub fn validate(wasm: &[u8], config: &RuntimeConfig) -> Result<ModuleInfo, ValidationError> {
    let limits = &config.limits;
    if wasm.len() > limits.max_module_bytes {
        return Err(ValidationError::TooLarge {
            size: wasm.len(),
            limit: limits.max_module_bytes,
        });
    }
    precheck_features(wasm)?;
    let mut validator = Validator::new_with_features(allowed_features(config));
    validator
        .validate_all(wasm)
        .map_err(|e| ValidationError::Malformed(e.to_string()))?;
    inspect(wasm, limits)
}

/// Finds features the validator would reject with a generic message, so the
/// error names the feature and where it was found.
fn precheck_features(wasm: &[u8]) -> Result<(), ValidationError> {
    let mut memories = 0u32;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(malformed)?;
        match payload {
            Payload::ImportSection(reader) => {
                for import in reader {
                    if let TypeRef::Memory(m) = import.map_err(malformed)?.ty {
                        memories += 1;
                        check_memory(&m)?;
                    }
                }
            }
            Payload::MemorySection(reader) => {
                for m in reader {
                    memories += 1;
                    check_memory(&m.map_err(malformed)?)?;
                }
            }
            Payload::TagSection(_) => {
                return Err(forbidden(
                    "exceptions",
                    "the module has a tag section".into(),
                ));
            }
            Payload::StartSection { func, .. } => {
                return Err(forbidden(
                    "start function",
                    format!("function {func} would run during instantiation, before fuel is set"),
                ));
            }
            _ => {}
        }
    }
    if memories > 1 {
        return Err(forbidden(
            "multi-memory",
            format!("{memories} memories declared"),
        ));
    }
    Ok(())
}

fn check_memory(m: &wasmparser::MemoryType) -> Result<(), ValidationError> {
    if m.shared {
        return Err(forbidden("threads", "shared linear memory".into()));
    }
    if m.memory64 {
        return Err(forbidden("memory64", "64-bit linear memory".into()));
    }
    if m.page_size_log2.is_some() {
        return Err(forbidden(
            "custom-page-sizes",
            "non-default page size".into(),
        ));
    }
    Ok(())
}

/// Walks a structurally valid module: imports, counts, operators, exports.
fn inspect(wasm: &[u8], limits: &Limits) -> Result<ModuleInfo, ValidationError> {
    let mut types: Vec<FuncType> = Vec::new();
    let mut sub_types: Vec<SubType> = Vec::new();
    let mut func_types: Vec<u32> = Vec::new();
    let mut imported_functions = 0u32;
    let mut globals = 0u64;
    let mut initial_pages = 0u64;
    let mut has_start = false;
    let mut has_memory_export = false;
    let mut func_index = 0u32;
    let mut preparation_work = 0u64;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(malformed)? {
            Payload::TypeSection(reader) => {
                check_count("types", reader.count().into(), limits.max_types.into())?;
                read_types(reader, &mut sub_types, &mut types)?;
            }
            Payload::ImportSection(reader) => {
                for import in reader {
                    let import = import.map_err(malformed)?;
                    check_import(&import, &types)?;
                    match import.ty {
                        TypeRef::Func(t) => {
                            func_types.push(t);
                            imported_functions += 1;
                        }
                        TypeRef::Memory(m) => initial_pages = m.initial,
                        TypeRef::Global(_) => globals += 1,
                        _ => {}
                    }
                }
            }
            Payload::FunctionSection(reader) => {
                for t in reader {
                    func_types.push(t.map_err(malformed)?);
                }
                check_count(
                    "functions",
                    func_types.len() as u64,
                    limits.max_functions.into(),
                )?;
                func_index = imported_functions;
            }
            Payload::TableSection(reader) => {
                for table in reader {
                    let table = table.map_err(malformed)?;
                    let size = table.ty.maximum.unwrap_or(table.ty.initial);
                    check_count("table elements", size, limits.max_table_elements.into())?;
                }
            }
            Payload::MemorySection(reader) => {
                for m in reader {
                    initial_pages = m.map_err(malformed)?.initial;
                }
            }
            Payload::GlobalSection(reader) => {
                globals += u64::from(reader.count());
                check_count("globals", globals, limits.max_globals.into())?;
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(malformed)?;
                    if RESERVED_EXPORT_PREFIXES
                        .iter()
                        .any(|p| export.name.starts_with(p))
                    {
                        return Err(ValidationError::ReservedName(export.name.to_string()));
                    }
                    match (export.name, export.kind) {
                        ("_start", ExternalKind::Func) => {
                            let ty = func_types
                                .get(export.index as usize)
                                .and_then(|t| types.get(*t as usize));
                            has_start =
                                ty.is_some_and(|t| t.params().is_empty() && t.results().is_empty());
                        }
                        ("memory", ExternalKind::Memory) => has_memory_export = true,
                        _ => {}
                    }
                }
            }
            Payload::DataSection(reader) => {
                check_count(
                    "data segments",
                    reader.count().into(),
                    limits.max_data_segments.into(),
                )?;
                for data in reader {
                    if let wasmparser::DataKind::Passive = data.map_err(malformed)?.kind {
                        return Err(forbidden(
                            "passive data segments",
                            "data.drop state lives outside linear memory and cannot be snapshotted"
                                .into(),
                        ));
                    }
                }
            }
            Payload::CodeSectionEntry(body) => {
                let arity = code::Arity {
                    types: &sub_types,
                    func_types: &func_types,
                };
                let shape = code::measure_body(&body, func_index, &arity, Some(limits))?;
                preparation_work = preparation_work.saturating_add(
                    u64::from(shape.operators) * (1 + u64::from(shape.expression_depth)),
                );
                check_operators(&body, func_index)?;
                func_index += 1;
            }
            _ => {}
        }
    }
    if initial_pages > u64::from(limits.max_memory_pages) {
        return Err(ValidationError::InitialMemory {
            pages: initial_pages,
            limit: limits.max_memory_pages.into(),
        });
    }
    if !has_memory_export {
        return Err(ValidationError::NoMemory);
    }
    if !has_start {
        return Err(ValidationError::NoStart);
    }
    Ok(ModuleInfo {
        initial_pages,
        imported_functions,
        defined_functions: func_types.len() as u32 - imported_functions,
        preparation_work,
    })
}

/// The types of a type section, as sub types (for operator arities) and as
/// function types (for import signatures; validation refused GC types).
fn read_types(
    reader: wasmparser::TypeSectionReader<'_>,
    sub_types: &mut Vec<SubType>,
    types: &mut Vec<FuncType>,
) -> Result<(), ValidationError> {
    for group in reader {
        for sub in group.map_err(malformed)?.into_types() {
            match &sub.composite_type.inner {
                wasmparser::CompositeInnerType::Func(f) => types.push(f.clone()),
                _ => return Err(forbidden("gc", "a non-function type".into())),
            }
            sub_types.push(sub);
        }
    }
    Ok(())
}

/// What a module measures against the structural limits: its counts and the
/// maximum of every [`BodyShape`] measure over its functions. Enforces
/// nothing; tests and docs use it to choose limits that real programs pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModuleShape {
    /// Functions, imported and defined.
    pub functions: u32,
    /// Function types.
    pub types: u32,
    /// Each measure's maximum over the defined functions.
    pub max: BodyShape,
}

/// Measures a structurally valid module (see [`ModuleShape`]).
pub fn module_shape(wasm: &[u8]) -> Result<ModuleShape, ValidationError> {
    let mut sub_types = Vec::new();
    let mut types = Vec::new();
    let mut func_types: Vec<u32> = Vec::new();
    let mut func_index = 0u32;
    let mut shape = ModuleShape::default();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(malformed)? {
            Payload::TypeSection(reader) => read_types(reader, &mut sub_types, &mut types)?,
            Payload::ImportSection(reader) => {
                for import in reader {
                    if let TypeRef::Func(t) = import.map_err(malformed)?.ty {
                        func_types.push(t);
                    }
                }
                func_index = func_types.len() as u32;
            }
            Payload::FunctionSection(reader) => {
                for t in reader {
                    func_types.push(t.map_err(malformed)?);
                }
            }
            Payload::CodeSectionEntry(body) => {
                let arity = code::Arity {
                    types: &sub_types,
                    func_types: &func_types,
                };
                let body = code::measure_body(&body, func_index, &arity, None)?;
                shape.max = shape.max.max(body);
                func_index += 1;
            }
            _ => {}
        }
    }
    shape.functions = func_types.len() as u32;
    shape.types = types.len() as u32;
    Ok(shape)
}

fn check_import(
    import: &wasmparser::Import<'_>,
    types: &[FuncType],
) -> Result<(), ValidationError> {
    let unknown = |kind| ValidationError::UnknownImport {
        module: import.module.to_string(),
        name: import.name.to_string(),
        kind,
    };
    let TypeRef::Func(type_index) = import.ty else {
        let kind = match import.ty {
            TypeRef::Memory(_) => "memory",
            TypeRef::Table(_) => "table",
            TypeRef::Global(_) => "global",
            _ => "tag",
        };
        return Err(unknown(kind));
    };
    if import.module != WASI_MODULE {
        return Err(unknown("function"));
    }
    let Some((_, params, results)) = WASI_FUNCTIONS.iter().find(|(n, _, _)| *n == import.name)
    else {
        return Err(unknown("function"));
    };
    let found = types.get(type_index as usize).ok_or_else(|| {
        ValidationError::Malformed(format!(
            "import `{}` uses missing type {type_index}",
            import.name
        ))
    })?;
    if found.params() != *params || found.results() != *results {
        return Err(ValidationError::ImportSignature {
            module: import.module.to_string(),
            name: import.name.to_string(),
            found: format!("{:?} -> {:?}", found.params(), found.results()),
            expected: format!("{params:?} -> {results:?}"),
        });
    }
    Ok(())
}

/// Refuses operators that mutate tables or passive segments (state a process
/// snapshot of memory + globals would lose) and tail calls (exits the logical
/// stack counter does not model).
fn check_operators(body: &wasmparser::FunctionBody<'_>, func: u32) -> Result<(), ValidationError> {
    const TABLE: &str = "tables must stay as instantiated so process state is memory + globals";
    const TAIL: &str = "tail calls are not supported by the logical stack limit";
    const PASSIVE: &str = "passive segment state cannot be snapshotted";
    let mut reader = body.get_operators_reader().map_err(malformed)?;
    while !reader.eof() {
        let op = reader.read().map_err(malformed)?;
        let refused = match op {
            Operator::TableSet { .. } => Some(("table.set", TABLE)),
            Operator::TableGrow { .. } => Some(("table.grow", TABLE)),
            Operator::TableFill { .. } => Some(("table.fill", TABLE)),
            Operator::TableCopy { .. } => Some(("table.copy", TABLE)),
            Operator::TableInit { .. } => Some(("table.init", TABLE)),
            Operator::ElemDrop { .. } => Some(("elem.drop", TABLE)),
            Operator::MemoryInit { .. } => Some(("memory.init", PASSIVE)),
            Operator::DataDrop { .. } => Some(("data.drop", PASSIVE)),
            Operator::ReturnCall { .. } => Some(("return_call", TAIL)),
            Operator::ReturnCallIndirect { .. } => Some(("return_call_indirect", TAIL)),
            _ => None,
        };
        if let Some((op, why)) = refused {
            return Err(ValidationError::ForbiddenOperator { op, func, why });
        }
    }
    Ok(())
}

fn check_count(what: &'static str, count: u64, limit: u64) -> Result<(), ValidationError> {
    if count > limit {
        return Err(ValidationError::TooMany { what, count, limit });
    }
    Ok(())
}

fn forbidden(feature: &'static str, detail: String) -> ValidationError {
    ValidationError::ForbiddenFeature { feature, detail }
}

fn malformed(e: wasmparser::BinaryReaderError) -> ValidationError {
    ValidationError::Malformed(e.to_string())
}
