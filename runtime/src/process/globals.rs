//! Mutable globals: made reachable for snapshots, captured and restored.
//!
//! Why a transform: wasmtime only exposes *exported* globals, but a suspended C
//! program keeps essential state in globals it never exports — clang's
//! `__stack_pointer`, and Asyncify's own `__asyncify_state`/`__asyncify_data`.
//! [`export_mutable_globals`] adds one export per mutable global, named
//! `__replicode_global_<index>`, so the process layer can read and write all of
//! them. It must run after the Asyncify pass (which adds globals) and its output
//! is a pure function of its input bytes, so every validator derives the same
//! module.

use wasm_encoder::reencode::{self, Reencode};
use wasmtime::{AsContextMut, Global, Instance, Val};

use super::codec::{DecodeError, Reader, Writer};

/// Prefix of the exports added by [`export_mutable_globals`].
pub const GLOBAL_EXPORT_PREFIX: &str = "__replicode_global_";

/// A module could not be prepared for snapshots.
#[derive(Debug, thiserror::Error)]
pub enum GlobalsError {
    #[error("module could not be parsed: {0}")]
    Parse(#[from] wasmparser::BinaryReaderError),
    #[error("module could not be re-encoded: {0}")]
    Reencode(String),
    #[error("module imports mutable global {module}.{name}: its value lives outside the process and cannot be snapshotted")]
    ImportedMutableGlobal { module: String, name: String },
    #[error("module already exports {0:?}, a name reserved for snapshot globals")]
    ReservedName(String),
    #[error(
        "module has no export section (a WASI command exports at least `_start` and `memory`)"
    )]
    NoExports,
    #[error(
        "global {index} has type {ty}, which snapshots do not support (only i32, i64, f32, f64)"
    )]
    UnsupportedType { index: u32, ty: String },
    #[error("snapshot has {found} globals but the module has {expected}")]
    CountMismatch { expected: usize, found: usize },
    #[error(
        "snapshot global {index} has type tag {found} but the module's global has tag {expected}"
    )]
    TypeMismatch { index: u32, expected: u8, found: u8 },
    #[error("setting global {index} failed: {reason}")]
    Set { index: u32, reason: String },
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

struct AddGlobalExports {
    mutable: Vec<u32>,
}

impl Reencode for AddGlobalExports {
    type Error = std::convert::Infallible;

    fn parse_export_section(
        &mut self,
        exports: &mut wasm_encoder::ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_export_section(self, exports, section)?;
        for index in &self.mutable {
            exports.export(
                &format!("{GLOBAL_EXPORT_PREFIX}{index}"),
                wasm_encoder::ExportKind::Global,
                *index,
            );
        }
        Ok(())
    }
}

/// Returns `wasm` with every mutable global exported as `__replicode_global_<index>`.
pub fn export_mutable_globals(wasm: &[u8]) -> Result<Vec<u8>, GlobalsError> {
    let mut imported = 0u32;
    let mut mutable = Vec::new();
    let mut has_exports = false;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload? {
            wasmparser::Payload::ImportSection(reader) => {
                for import in reader {
                    let import = import?;
                    if let wasmparser::TypeRef::Global(g) = import.ty {
                        if g.mutable {
                            return Err(GlobalsError::ImportedMutableGlobal {
                                module: import.module.to_string(),
                                name: import.name.to_string(),
                            });
                        }
                        imported += 1;
                    }
                }
            }
            wasmparser::Payload::GlobalSection(reader) => {
                for (i, global) in reader.into_iter().enumerate() {
                    let global = global?;
                    let index = imported + i as u32;
                    if global.ty.mutable {
                        value_tag(global.ty.content_type).ok_or_else(|| {
                            GlobalsError::UnsupportedType {
                                index,
                                ty: format!("{}", global.ty.content_type),
                            }
                        })?;
                        mutable.push(index);
                    }
                }
            }
            wasmparser::Payload::ExportSection(reader) => {
                has_exports = true;
                for export in reader {
                    let export = export?;
                    if export.name.starts_with(GLOBAL_EXPORT_PREFIX) {
                        return Err(GlobalsError::ReservedName(export.name.to_string()));
                    }
                }
            }
            _ => {}
        }
    }
    if !has_exports {
        return Err(GlobalsError::NoExports);
    }
    let mut module = wasm_encoder::Module::new();
    AddGlobalExports { mutable }
        .parse_core_module(&mut module, wasmparser::Parser::new(0), wasm)
        .map_err(|e| GlobalsError::Reencode(format!("{e:?}")))?;
    Ok(module.finish())
}

fn value_tag(ty: wasmparser::ValType) -> Option<u8> {
    match ty {
        wasmparser::ValType::I32 => Some(0),
        wasmparser::ValType::I64 => Some(1),
        wasmparser::ValType::F32 => Some(2),
        wasmparser::ValType::F64 => Some(3),
        _ => None,
    }
}

/// The snapshot-relevant globals of one instance, in ascending index order.
#[derive(Debug, Clone)]
pub struct GlobalHandles {
    globals: Vec<(u32, Global)>,
}

/// Captured values: `(global index, type tag, raw little-endian bits)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GlobalValues(pub Vec<(u32, u8, u64)>);

impl GlobalHandles {
    /// Finds the `__replicode_global_<index>` exports of `instance`.
    pub fn find(mut store: impl AsContextMut, instance: &Instance) -> Self {
        let mut globals: Vec<(u32, Global)> = Vec::new();
        let names: Vec<(u32, String)> = instance
            .exports(&mut store)
            .filter_map(|e| {
                let idx = e
                    .name()
                    .strip_prefix(GLOBAL_EXPORT_PREFIX)?
                    .parse::<u32>()
                    .ok()?;
                Some((idx, e.name().to_string()))
            })
            .collect();
        for (idx, name) in names {
            if let Some(g) = instance.get_global(&mut store, &name) {
                globals.push((idx, g));
            }
        }
        globals.sort_by_key(|(i, _)| *i);
        GlobalHandles { globals }
    }

    pub fn len(&self) -> usize {
        self.globals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.globals.is_empty()
    }

    /// Reads every global's current value.
    pub fn capture(&self, mut store: impl AsContextMut) -> Result<GlobalValues, GlobalsError> {
        let mut out = Vec::with_capacity(self.globals.len());
        for (index, g) in &self.globals {
            let (tag, bits) = match g.get(&mut store) {
                Val::I32(v) => (0, u64::from(v as u32)),
                Val::I64(v) => (1, v as u64),
                Val::F32(bits) => (2, u64::from(bits)),
                Val::F64(bits) => (3, bits),
                other => {
                    return Err(GlobalsError::UnsupportedType {
                        index: *index,
                        ty: format!("{:?}", other.ty(&store)),
                    })
                }
            };
            out.push((*index, tag, bits));
        }
        Ok(GlobalValues(out))
    }

    /// Writes captured values back; the snapshot must match this module's globals.
    pub fn apply(
        &self,
        mut store: impl AsContextMut,
        values: &GlobalValues,
    ) -> Result<(), GlobalsError> {
        if values.0.len() != self.globals.len() {
            return Err(GlobalsError::CountMismatch {
                expected: self.globals.len(),
                found: values.0.len(),
            });
        }
        for ((index, g), (vindex, tag, bits)) in self.globals.iter().zip(&values.0) {
            let expected = match g.ty(&store).content() {
                wasmtime::ValType::I32 => 0,
                wasmtime::ValType::I64 => 1,
                wasmtime::ValType::F32 => 2,
                wasmtime::ValType::F64 => 3,
                other => {
                    return Err(GlobalsError::UnsupportedType {
                        index: *index,
                        ty: format!("{other}"),
                    })
                }
            };
            if index != vindex || *tag != expected {
                return Err(GlobalsError::TypeMismatch {
                    index: *index,
                    expected,
                    found: *tag,
                });
            }
            let val = match tag {
                0 => Val::I32(*bits as u32 as i32),
                1 => Val::I64(*bits as i64),
                2 => Val::F32(*bits as u32),
                _ => Val::F64(*bits),
            };
            g.set(&mut store, val).map_err(|e| GlobalsError::Set {
                index: *index,
                reason: format!("{e:#}"),
            })?;
        }
        Ok(())
    }
}

impl GlobalValues {
    pub fn encode(&self, w: &mut Writer) {
        w.u32(self.0.len() as u32);
        for (index, tag, bits) in &self.0 {
            w.u32(*index);
            w.u8(*tag);
            w.u64(*bits);
        }
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.u32("global count")?;
        let mut out = Vec::new();
        for _ in 0..n {
            let index = r.u32("global index")?;
            let tag = r.u8("global type tag")?;
            if tag > 3 {
                return Err(DecodeError::Invalid {
                    what: "global type tag",
                    value: u64::from(tag),
                });
            }
            out.push((index, tag, r.u64("global value")?));
        }
        Ok(GlobalValues(out))
    }
}
