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
//!
//! All of it runs on a thread of its own with [`PREPARE_STACK_BYTES`] of
//! stack: binaryen recurses on the depth of a function's expression tree, and
//! although validation bounds that depth (`Limits::max_expression_depth`), the
//! caller's stack (the consensus thread's) is never what decides whether a
//! module can be prepared. A panic there becomes [`InstrumentError::Panicked`],
//! a host failure.

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

/// Native stack of the preparation thread. Only touched pages are backed, so
/// this is address space, not memory. With the default structural limits
/// binaryen needs well under it: modules at the nesting and expression-depth
/// limits (2,000) prepare on a quarter of it (test
/// `engine::preparation::modules_at_the_nesting_limits_prepare_on_a_quarter_of_the_stack`);
/// without limits, 200,000 nested `if`s overflowed even 64 MiB.
pub const PREPARE_STACK_BYTES: usize = 256 << 20;

/// Runs the whole pipeline on a fresh thread with [`PREPARE_STACK_BYTES`] of
/// stack; see the module docs.
///
/// A thread per call rather than a long-lived worker: nothing is shared
/// between preparations, a panic dies with its own thread (a worker would have
/// to be restarted and its queue drained), CheckTx and consensus never queue
/// behind each other, and starting a thread (tens of microseconds, its stack
/// reserved lazily) is noise next to a preparation (milliseconds to seconds).
pub fn prepare(wasm: &[u8], config: &RuntimeConfig) -> Result<PreparedModule, RuntimeError> {
    on_preparation_thread(|| prepare_on_this_thread(wasm, config))
}

/// Runs `work` on a fresh thread with [`PREPARE_STACK_BYTES`] of stack; its
/// panic becomes [`InstrumentError::Panicked`].
fn on_preparation_thread<T: Send>(
    work: impl FnOnce() -> Result<T, RuntimeError> + Send,
) -> Result<T, RuntimeError> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("replicode-prepare".into())
            .stack_size(PREPARE_STACK_BYTES)
            .spawn_scoped(scope, work)
            .map_err(|e| InstrumentError::Thread {
                stack: PREPARE_STACK_BYTES,
                detail: e.to_string(),
            })?;
        thread
            .join()
            .unwrap_or_else(|panic| Err(InstrumentError::Panicked(panic_message(&*panic)).into()))
    })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

/// The pipeline on the caller's thread and stack: only for callers that
/// already run on a stack of [`PREPARE_STACK_BYTES`] (and tests measuring
/// what a pass needs).
pub fn prepare_on_this_thread(
    wasm: &[u8],
    config: &RuntimeConfig,
) -> Result<PreparedModule, RuntimeError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_preparing_is_a_host_failure() {
        let e = on_preparation_thread::<()>(|| panic!("a bug in a pass")).expect_err("panicked");
        assert!(matches!(
            &e,
            RuntimeError::Instrument(InstrumentError::Panicked(m)) if m == "a bug in a pass"
        ));
        assert!(e.is_host_failure());
    }

    /// Recursion using ~100 MiB of stack (a test thread has 2 MiB) completes.
    #[test]
    fn preparation_runs_on_its_own_large_stack() {
        fn burn(n: usize) -> usize {
            // The frame is read after the call, so it lives on the stack across it.
            let frame = [n as u8; 1024];
            if n == 0 {
                0
            } else {
                let below = std::hint::black_box(burn(n - 1));
                below + usize::from(std::hint::black_box(&frame)[0] & 1)
            }
        }
        let depth = 100_000;
        let odd = on_preparation_thread(|| Ok(burn(depth))).expect("runs");
        assert_eq!(odd, depth / 2);
    }
}
