//! Typed errors of the engine, the module pipeline and the executor.
//!
//! Every variant names the thing that was wrong (the import, the feature, the
//! limit) because these messages are what an operator or a guest author sees
//! when a program is refused. Outcomes of *running* a guest (traps, fuel, stack)
//! are not errors: they are [`crate::exec::RunOutcome`] values, since they are
//! ordinary, deterministic results that every validator must agree on.
//!
//! # Two kinds of failure
//!
//! [`RuntimeError::is_host_failure`] splits every error in two:
//! - **the module's fault** (false): validation refused it, a pass refused it
//!   (binaryen, the NaN or stack pass), or instantiating it trapped. A function
//!   of the module's bytes and the consensus limits, so every validator reaches
//!   the same error: refuse the transaction with a result code.
//! - **the host's fault** (true): the node's configuration, memory or file
//!   descriptors for binaryen's scratch files, a thread that could not start,
//!   a panic while preparing, wasmtime failing to compile a module validation
//!   accepted. Another validator would have succeeded: stop the node, never
//!   turn it into an answer (that answer would fork the chain).

use thiserror::Error;

/// A runtime configuration that would break determinism or is inconsistent.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A limit that must be positive was zero.
    #[error("config: `{0}` must be greater than zero")]
    Zero(&'static str),
    /// A limit exceeded what the runtime can honour.
    #[error("config: `{name}` is {value}, above the supported maximum {max}")]
    TooLarge {
        name: &'static str,
        value: u64,
        max: u64,
    },
    /// The native stack cannot hold the logical stack limit, so a native
    /// overflow (machine-dependent) could fire before the logical one.
    #[error(
        "config: max_wasm_stack ({native} bytes) is below the {needed} bytes the logical stack \
         limit of {slots} slots may use; the native limit would fire first on some machines"
    )]
    NativeStackTooSmall {
        native: usize,
        needed: usize,
        slots: u32,
    },
    /// Lazy NaN canonicalization was requested but its pass is not available.
    #[error("config: NaN mode `lazy` needs the instrument::nan pass, which is not built in")]
    LazyNanUnavailable,
    /// The lazy NaN pass cannot track NaN bits through untyped v128 lanes.
    #[error("config: NaN mode `lazy` cannot be combined with `simd = true`; turn SIMD off or use NaN mode `eager`")]
    LazyNanWithSimd,
}

/// A module refused by [`crate::validate`] before anything ran.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ValidationError {
    /// The bytes are not a valid WebAssembly module.
    #[error("invalid wasm module: {0}")]
    Malformed(String),
    /// The module is larger than `Limits::max_module_bytes`.
    #[error("module is {size} bytes, above the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// An import outside the host API.
    #[error("unknown import `{module}.{name}` ({kind}); only wasi_snapshot_preview1 functions are provided")]
    UnknownImport {
        module: String,
        name: String,
        kind: &'static str,
    },
    /// A known import name with the wrong signature.
    #[error("import `{module}.{name}` has type {found}, expected {expected}")]
    ImportSignature {
        module: String,
        name: String,
        found: String,
        expected: String,
    },
    /// A post-MVP feature we refuse (see docs/determinism.md for why each).
    #[error("forbidden wasm feature `{feature}` used ({detail})")]
    ForbiddenFeature {
        feature: &'static str,
        detail: String,
    },
    /// An operator we refuse because it would make process state unserializable.
    #[error("forbidden operator `{op}` in function {func}: {why}")]
    ForbiddenOperator {
        op: &'static str,
        func: u32,
        why: &'static str,
    },
    /// Some count (functions, globals, data segments, ...) is above its limit.
    #[error("module declares {count} {what}, above the limit of {limit}")]
    TooMany {
        what: &'static str,
        count: u64,
        limit: u64,
    },
    /// One function body exceeds a structural limit (`Limits::max_*`) that
    /// keeps the later passes bounded in time and native stack.
    #[error("function {func} exceeds `{limit}`: {value}, above the limit of {max}")]
    FunctionTooComplex {
        func: u32,
        limit: &'static str,
        value: u64,
        max: u32,
    },
    /// The module's initial memory already exceeds the memory limit.
    #[error("module needs {pages} initial memory pages, above the limit of {limit} pages")]
    InitialMemory { pages: u64, limit: u64 },
    /// The module has no `_start` export of type `() -> ()`.
    #[error("module does not export a `_start` function of type () -> ()")]
    NoStart,
    /// The module has no exported linear memory named `memory`.
    #[error("module does not export its linear memory as `memory`")]
    NoMemory,
    /// A name the instrumentation reserves is already used by the guest.
    #[error("module already uses the reserved name `{0}`")]
    ReservedName(String),
}

/// A wasm-to-wasm transform failed.
#[derive(Debug, Error)]
pub enum InstrumentError {
    /// Parsing or re-encoding the module failed.
    #[error("instrument {pass}: {detail}")]
    Rewrite { pass: &'static str, detail: String },
    /// Binaryen (the asyncify pass) failed.
    #[error("asyncify: {0}")]
    Asyncify(String),
    /// Binaryen's in-memory scratch files could not be created, written or
    /// read (out of memory or descriptors, `/proc` missing). A host failure.
    #[error("asyncify scratch file {path}: {source}")]
    Scratch {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The big-stack thread preparation runs on could not be started.
    #[error("cannot start the preparation thread with {stack} bytes of stack: {detail}")]
    Thread { stack: usize, detail: String },
    /// Preparation panicked (a bug in a pass, not the module's fault).
    #[error("preparation panicked: {0}")]
    Panicked(String),
}

impl InstrumentError {
    /// Whether this is the host's failure rather than the module's; see the
    /// module docs ("Two kinds of failure").
    pub fn is_host_failure(&self) -> bool {
        match self {
            InstrumentError::Rewrite { .. } | InstrumentError::Asyncify(_) => false,
            InstrumentError::Scratch { .. }
            | InstrumentError::Thread { .. }
            | InstrumentError::Panicked(_) => true,
        }
    }
}

/// Anything that can go wrong preparing, compiling or instantiating a guest.
#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error(transparent)]
    Instrument(#[from] InstrumentError),
    /// wasmtime refused the configuration or the module.
    #[error("wasmtime {what}: {detail}")]
    Wasmtime { what: &'static str, detail: String },
    /// An export the executor relies on is missing (the module was not prepared).
    #[error("prepared module lacks export `{0}`")]
    MissingExport(&'static str),
    /// A guest call was attempted outside [`crate::exec::on_guest_stack`].
    #[error(
        "guest code must run inside exec::on_guest_stack (the native stack is too small otherwise)"
    )]
    NotOnGuestStack,
    /// `start` was called twice.
    #[error("cannot start: the guest is {0}, not fresh")]
    NotFresh(&'static str),
    /// Memory could not grow for Asyncify's unwind buffer.
    #[error("cannot add {pages} pages for the asyncify buffer within the memory limit")]
    AsyncifyBuffer { pages: u32 },
    /// The host could not create the big-stack thread guests run on.
    #[error("cannot spawn a guest thread with {stack} bytes of stack: {detail}")]
    GuestThread { stack: usize, detail: String },
    /// `resume` was called on a guest that is not blocked.
    #[error("cannot resume: the guest is {0}, not blocked")]
    NotBlocked(&'static str),
}

impl RuntimeError {
    /// Whether this is the host's failure (stop the node) rather than the
    /// module's or guest's (refuse the transaction with a deterministic code);
    /// see the module docs ("Two kinds of failure").
    ///
    /// wasmtime's errors count as the host's except at instantiation, where a
    /// guest's data segment out of bounds traps the same way everywhere.
    pub fn is_host_failure(&self) -> bool {
        match self {
            RuntimeError::Validation(_) | RuntimeError::AsyncifyBuffer { .. } => false,
            RuntimeError::Instrument(e) => e.is_host_failure(),
            RuntimeError::Wasmtime { what, .. } => *what != "instantiate",
            RuntimeError::Config(_)
            | RuntimeError::MissingExport(_)
            | RuntimeError::NotOnGuestStack
            | RuntimeError::NotFresh(_)
            | RuntimeError::GuestThread { .. }
            | RuntimeError::NotBlocked(_) => true,
        }
    }

    /// Wraps a wasmtime error with what we were doing.
    pub fn wasmtime(what: &'static str, err: impl std::fmt::Display) -> Self {
        RuntimeError::Wasmtime {
            what,
            detail: format!("{err:#}"),
        }
    }
}
