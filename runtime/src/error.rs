//! Typed errors of the engine, the module pipeline and the executor.
//!
//! Every variant names the thing that was wrong (the import, the feature, the
//! limit) because these messages are what an operator or a guest author sees
//! when a program is refused. Outcomes of *running* a guest (traps, fuel, stack)
//! are not errors: they are [`crate::exec::RunOutcome`] values, since they are
//! ordinary, deterministic results that every validator must agree on.

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
    /// Scratch files for binaryen could not be written or read.
    #[error("asyncify scratch file {path}: {source}")]
    Scratch {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
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
    /// Wraps a wasmtime error with what we were doing.
    pub fn wasmtime(what: &'static str, err: impl std::fmt::Display) -> Self {
        RuntimeError::Wasmtime {
            what,
            detail: format!("{err:#}"),
        }
    }
}
