//! Binaryen's Asyncify: makes a blocked guest's call stack serializable.
//!
//! A guest blocked in `fd_read` has wasm frames on the native stack; those
//! cannot be hashed or shipped to another validator. Asyncify rewrites every
//! function that can reach a blocking import so that, when the host asks, it
//! saves its locals and call position into a buffer in linear memory and
//! returns ("unwind"); calling `_start` again with the rewind flag set rebuilds
//! the same frames ("rewind"). The whole process state is then linear memory
//! plus globals. Emscripten uses the same transform in production.
//!
//! Determinism: binaryen is compiled into the node (the `wasm-opt` crate, pinned
//! at 0.116.1), never taken from the host, so every validator produces the same
//! bytes. Only functions that can reach a blocking import are instrumented, so
//! compute loops that never block run unchanged.
//!
//! The unwind buffer: the executor grows memory by `Limits::asyncify_pages`
//! pages before `_start` and puts the 8-byte `{current, end}` header plus the
//! saved frames there (see [`crate::exec`]). wasi-libc's allocator only takes
//! memory through `memory.grow` (sbrk), so it never hands out those pages.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use wasm_opt::{Feature, OptimizationError, OptimizationOptions, Pass};
use wasmparser::{Parser, Payload, TypeRef};

use crate::error::InstrumentError;
use crate::validate::WASI_MODULE;

/// Imports at which a guest may block (suspend until consensus delivers input).
pub const BLOCKING_IMPORTS: [&str; 4] = ["fd_read", "poll_oneoff", "sock_accept", "sock_recv"];

/// Exports Asyncify adds, used by the executor.
pub const START_UNWIND: &str = "asyncify_start_unwind";
pub const STOP_UNWIND: &str = "asyncify_stop_unwind";
pub const START_REWIND: &str = "asyncify_start_rewind";
pub const STOP_REWIND: &str = "asyncify_stop_rewind";
pub const GET_STATE: &str = "asyncify_get_state";

/// `asyncify_get_state()` values.
pub const STATE_NORMAL: i32 = 0;
pub const STATE_UNWINDING: i32 = 1;
pub const STATE_REWINDING: i32 = 2;

/// Binaryen keeps process-global state; one transform at a time keeps it simple.
static BINARYEN: Mutex<()> = Mutex::new(());

/// The `asyncify-imports` pass argument.
pub fn imports_arg() -> String {
    BLOCKING_IMPORTS
        .iter()
        .map(|f| format!("{WASI_MODULE}.{f}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// True if the module imports a blocking function (otherwise it can never
/// block and asyncify would only cost code size).
pub fn needs_asyncify(wasm: &[u8]) -> Result<bool, InstrumentError> {
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| rewrite_err(e.to_string()))?;
        if let Payload::ImportSection(reader) = payload {
            for import in reader {
                let import = import.map_err(|e| rewrite_err(e.to_string()))?;
                if matches!(import.ty, TypeRef::Func(_))
                    && import.module == WASI_MODULE
                    && BLOCKING_IMPORTS.contains(&import.name)
                {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// Applies `--asyncify` with our blocking imports; returns the new bytes.
///
/// Binaryen assumes by default that any indirect call may reach a blocking
/// import, so a function that calls through a pointer (every caller of
/// `printf`, via stdio's write hook) is instrumented, and its loops get slower
/// with it (the integer kernel: 1.4x). When the module imports no blocking
/// function, nothing can ever unwind, so `asyncify-ignore-indirect` is exact
/// there: no function is instrumented and only the exports are added, which the
/// process layer uses uniformly for every program.
pub fn asyncify(wasm: &[u8]) -> Result<Vec<u8>, InstrumentError> {
    let can_block = needs_asyncify(wasm)?;
    let mut scratch = Scratch::new()?;
    scratch.fill_input(wasm)?;
    let mut opts = OptimizationOptions::new_opt_level_1();
    opts.add_default_passes(false)
        .add_pass(Pass::Asyncify)
        .set_pass_arg("asyncify-imports", &imports_arg())
        .debug_info(true)
        .mvp_features_only();
    if !can_block {
        opts.set_pass_arg("asyncify-ignore-indirect", "");
    }
    for feature in [
        Feature::MutableGlobals,
        Feature::TruncSat,
        Feature::SignExt,
        Feature::BulkMemory,
        Feature::Multivalue,
        Feature::ReferenceTypes,
        Feature::ExtendedConst,
        Feature::Simd,
    ] {
        opts.enable_feature(feature);
    }
    {
        let _guard = BINARYEN
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match opts.run(scratch.input_path(), scratch.output_path()) {
            Ok(()) => {}
            // The output goes to memory we created; failing to write it is the
            // host's failure (out of memory), never the module's.
            Err(OptimizationError::Write { source }) => {
                return Err(InstrumentError::Scratch {
                    path: scratch.output_path(),
                    source: std::io::Error::other(source),
                })
            }
            // The input was checked readable, so failing to read it is binaryen
            // refusing the module: the same on every validator.
            Err(e) => return Err(InstrumentError::Asyncify(format!("{e:#}"))),
        }
    }
    scratch.take_output()
}

/// Binaryen's input and output, in memory: its Rust API only reads and writes
/// files by path, so it gets `/proc/self/fd/N` of two `memfd_create` files.
/// Nothing touches a disk, so a full `$TMPDIR` cannot turn into "this module
/// is invalid" on one validator (a fork); what can still fail (no memory, no
/// fd, no `/proc`) is reported as [`InstrumentError::Scratch`], a host failure.
/// The files vanish with their descriptors when this is dropped.
struct Scratch {
    input: File,
    output: File,
}

impl Scratch {
    fn new() -> Result<Self, InstrumentError> {
        Ok(Scratch {
            input: memfd(c"replicode-asyncify-in")?,
            output: memfd(c"replicode-asyncify-out")?,
        })
    }

    fn input_path(&self) -> PathBuf {
        fd_path(&self.input)
    }

    fn output_path(&self) -> PathBuf {
        fd_path(&self.output)
    }

    /// Writes the module and checks binaryen will be able to open it by path.
    fn fill_input(&mut self, wasm: &[u8]) -> Result<(), InstrumentError> {
        let path = self.input_path();
        self.input
            .write_all(wasm)
            .and_then(|()| File::open(&path).map(drop))
            .map_err(|source| scratch_err(&path, source))
    }

    /// Reads what binaryen wrote (it opened the file anew, so from offset 0).
    fn take_output(&mut self) -> Result<Vec<u8>, InstrumentError> {
        let path = self.output_path();
        let mut out = Vec::new();
        self.output
            .rewind()
            .and_then(|()| self.output.read_to_end(&mut out))
            .map_err(|source| scratch_err(&path, source))?;
        Ok(out)
    }
}

/// An anonymous in-memory file.
fn memfd(name: &std::ffi::CStr) -> Result<File, InstrumentError> {
    rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)
        .map(File::from)
        .map_err(|e| scratch_err(Path::new("memfd_create"), e.into()))
}

/// The path by which another open of `file` reaches the same in-memory file.
fn fd_path(file: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

fn scratch_err(path: &Path, source: std::io::Error) -> InstrumentError {
    InstrumentError::Scratch {
        path: path.to_path_buf(),
        source,
    }
}

fn rewrite_err(detail: String) -> InstrumentError {
    InstrumentError::Rewrite {
        pass: "asyncify",
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmparser::{ExternalKind, Operator};

    /// A caller reaching an import only through `call_indirect`, plus
    /// `extra_import` when given.
    fn module(extra_import: &str) -> Vec<u8> {
        wat::parse_str(format!(
            r#"(module
                 (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
                 {extra_import}
                 (type $t (func (result i32)))
                 (table 1 funcref)
                 (elem (i32.const 0) $callee)
                 (memory (export "memory") 1)
                 (func $callee (type $t) (call $write (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0)))
                 (func (export "_start")
                   (local $i i32)
                   (loop $l
                     (local.set $i (i32.add (local.get $i) (call_indirect (type $t) (i32.const 0))))
                     (br_if $l (i32.lt_u (local.get $i) (i32.const 10))))))"#
        ))
        .expect("valid wat")
    }

    /// Defined functions, other than asyncify's own exports, that read the
    /// asyncify state global (that is, were instrumented).
    fn instrumented_functions(wasm: &[u8]) -> usize {
        let mut imported = 0u32;
        let mut own_exports = Vec::new();
        let mut bodies = Vec::new();
        for payload in Parser::new(0).parse_all(wasm) {
            match payload.expect("parses") {
                Payload::ImportSection(r) => {
                    imported += r
                        .into_iter()
                        .filter(|i| matches!(i.as_ref().map(|i| i.ty), Ok(TypeRef::Func(_))))
                        .count() as u32;
                }
                Payload::ExportSection(r) => {
                    for e in r {
                        let e = e.expect("export");
                        if e.kind == ExternalKind::Func && e.name.starts_with("asyncify_") {
                            own_exports.push(e.index);
                        }
                    }
                }
                Payload::CodeSectionEntry(body) => bodies.push(body),
                _ => {}
            }
        }
        let global_reads = |body: &wasmparser::FunctionBody<'_>| -> Vec<u32> {
            let mut reads = Vec::new();
            let mut ops = body.get_operators_reader().expect("ops");
            while !ops.eof() {
                if let Operator::GlobalGet { global_index } = ops.read().expect("op") {
                    reads.push(global_index);
                }
            }
            reads
        };
        let get_state = own_exports
            .iter()
            .map(|&f| global_reads(&bodies[(f - imported) as usize]))
            .find(|reads| reads.len() == 1)
            .expect("asyncify_get_state reads exactly the state global")[0];
        bodies
            .iter()
            .enumerate()
            .filter(|(i, _)| !own_exports.contains(&(*i as u32 + imported)))
            .filter(|(_, body)| global_reads(body).contains(&get_state))
            .count()
    }

    #[test]
    fn a_module_that_cannot_block_keeps_its_indirect_callers_uninstrumented() {
        let out = asyncify(&module("")).expect("asyncify");
        assert_eq!(instrumented_functions(&out), 0);
    }

    #[test]
    fn a_module_that_can_block_instruments_indirect_callers() {
        let blocking = r#"(import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))"#;
        let out = asyncify(&module(blocking)).expect("asyncify");
        assert!(instrumented_functions(&out) >= 1);
    }
}
