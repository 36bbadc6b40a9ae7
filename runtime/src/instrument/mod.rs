//! Wasm-to-wasm transforms applied before compilation.
//!
//! [`prepare`] is the whole pipeline, in this order (each step's output is
//! deterministic bytes, so every validator compiles the same module):
//!
//! 1. [`crate::validate`]: refuse what we cannot run deterministically.
//! 2. [`asyncify`]: binaryen's Asyncify, so a guest blocked in `fd_read` /
//!    `poll_oneoff` can unwind its stack into linear memory (serializable state).
//! 3. [`stack`]: the logical stack-depth counter. It runs *after* asyncify so
//!    the early returns asyncify adds for unwinding are counted like any other.
//! 4. [`bulk_fuel`]: nothing to rewrite with wasmtime 48 (it already charges
//!    bulk memory operators per byte); the module pins that cost table.
//! 5. The lazy NaN pass (issue 3) when [`NanMode::Lazy`] is selected.

pub mod asyncify;
pub mod bulk_fuel;
pub mod nan;
pub mod stack;

use sha2::{Digest, Sha256};

use crate::config::{NanMode, RuntimeConfig};
use crate::error::{InstrumentError, RuntimeError};
use crate::validate::{self, ModuleInfo};

/// Whether the lazy NaN pass (`instrument::nan`, issue 3) is built in; when it
/// is not, [`RuntimeConfig::validate`] refuses [`NanMode::Lazy`].
pub const LAZY_NAN_AVAILABLE: bool = true;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// A module ready to compile: validated and instrumented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedModule {
    /// The instrumented bytes.
    pub bytes: Vec<u8>,
    /// SHA-256 of the bytes the guest author supplied.
    pub source_hash: Hash,
    /// SHA-256 of [`PreparedModule::bytes`]: the compiled-module cache key.
    pub hash: Hash,
    /// What validation learned about the source module.
    pub info: ModuleInfo,
    /// Whether the module can block (it imports a blocking function), so a
    /// one-shot run reserves an unwind buffer for it. Asyncify itself is applied
    /// to every module: any program may run as a long-lived process, whose layer
    /// drives the asyncify exports; where nothing can block, binaryen instruments
    /// no function, so it costs a few bytes, not speed.
    pub asyncified: bool,
}

/// Position of a section in the binary format's required order, for passes
/// that add a section the input lacks (`intersperse_section_hook`).
pub(crate) fn section_order(id: wasm_encoder::SectionId) -> u8 {
    use wasm_encoder::SectionId;
    match id {
        SectionId::Custom => 0,
        SectionId::Type => 1,
        SectionId::Import => 2,
        SectionId::Function => 3,
        SectionId::Table => 4,
        SectionId::Memory => 5,
        SectionId::Tag => 6,
        SectionId::Global => 7,
        SectionId::Export => 8,
        SectionId::Start => 9,
        SectionId::Element => 10,
        SectionId::DataCount => 11,
        SectionId::Code => 12,
        SectionId::Data => 13,
    }
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// Runs the whole pipeline; see the module docs.
pub fn prepare(wasm: &[u8], config: &RuntimeConfig) -> Result<PreparedModule, RuntimeError> {
    config.validate()?;
    let info = validate::validate(wasm, config)?;
    let source_hash = sha256(wasm);
    let asyncified = asyncify::needs_asyncify(wasm)?;
    let mut bytes = asyncify::asyncify(wasm)?;
    bytes = stack::instrument(&bytes, config.limits.max_stack_slots)?;
    if config.nan == NanMode::Lazy {
        bytes = lazy_nan(&bytes)?;
    }
    let hash = sha256(&bytes);
    Ok(PreparedModule {
        bytes,
        source_hash,
        hash,
        info,
        asyncified,
    })
}

/// The issue-3 pass: canonicalize NaNs only where they can become observable.
fn lazy_nan(wasm: &[u8]) -> Result<Vec<u8>, InstrumentError> {
    nan::canonicalize_nans(wasm).map_err(|e| InstrumentError::Rewrite {
        pass: "nan",
        detail: e.to_string(),
    })
}

/// This build's preparation pipeline (every source file of the runtime and the
/// lock file, hashed by `build.rs`): the key under which a validator may reuse
/// prepared bytes it cached on disk. Never part of consensus.
pub const PIPELINE_ID: &str = env!("REPLICODE_PIPELINE_ID");
