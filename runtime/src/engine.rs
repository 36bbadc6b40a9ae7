//! The wasmtime engine configured for determinism, and the compiled-module cache.
//!
//! Settings that matter for consensus (see `docs/determinism.md`):
//! - NaN canonicalization per [`NanMode`]; relaxed SIMD off (and its
//!   deterministic lowering on, should it ever be enabled); threads, shared
//!   memory, multi-memory, memory64, GC, exceptions, tail calls, stack
//!   switching and components off.
//! - Fuel on with a pinned cost table ([`crate::instrument::bulk_fuel`]); epoch
//!   interruption (wall clock) off.
//! - `max_wasm_stack` above the logical stack limit ([`RuntimeConfig::max_wasm_stack`]),
//!   so the logical limit (identical everywhere) always fires first.
//! - Copy-on-write memory initialization: changes only how fast memory is
//!   set up, never what the guest sees. Fuel is set after instantiation
//!   (wasmtime issue 14331), so how initialization is done cannot change fuel.
//! - Memory reservation and guard sizes are wasmtime's defaults: they decide
//!   whether bounds checks are explicit or use guard pages, which never changes
//!   which accesses trap.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use wasmtime::{Config, Engine, Module, OptLevel};

use crate::config::{NanMode, RuntimeConfig};
use crate::error::{ConfigError, RuntimeError};
use crate::instrument::{self, bulk_fuel, Hash, PreparedModule};

/// A prepared module compiled for this engine.
#[derive(Debug)]
pub struct CompiledModule {
    pub module: Module,
    pub prepared: PreparedModule,
}

/// A wasmtime engine plus the configuration it was built from.
pub struct GuestEngine {
    engine: Engine,
    config: RuntimeConfig,
    cache: Mutex<ModuleCache>,
}

impl std::fmt::Debug for GuestEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestEngine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The wasmtime configuration for `config`.
pub fn wasmtime_config(config: &RuntimeConfig) -> Result<Config, RuntimeError> {
    config.validate()?;
    if config.max_wasm_stack() <= config.logical_stack_bytes() {
        return Err(ConfigError::NativeStackTooSmall {
            native: config.max_wasm_stack(),
            needed: config.logical_stack_bytes(),
            slots: config.limits.max_stack_slots,
        }
        .into());
    }
    let mut c = Config::new();
    c.cranelift_nan_canonicalization(config.nan == NanMode::Eager)
        .wasm_simd(config.simd)
        .wasm_relaxed_simd(false)
        .relaxed_simd_deterministic(true)
        .wasm_threads(false)
        .wasm_shared_everything_threads(false)
        // Guests may declare one memory only (validation refuses more); the
        // process layer adds a second, private one: its dirty-page map.
        .wasm_multi_memory(true)
        .wasm_memory64(false)
        .wasm_tail_call(false)
        .wasm_gc(false)
        .wasm_function_references(false)
        .wasm_exceptions(false)
        .wasm_stack_switching(false)
        .wasm_wide_arithmetic(false)
        .wasm_custom_page_sizes(false)
        .wasm_component_model(false)
        .wasm_reference_types(true)
        .wasm_bulk_memory(true)
        .wasm_multi_value(true)
        .wasm_extended_const(true)
        // Trap messages reach transaction logs, whose size decides which outputs
        // fit a block's results: never let WASMTIME_BACKTRACE_DETAILS change them.
        .wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Disable)
        .consume_fuel(true)
        .operator_cost(bulk_fuel::operator_cost())
        .epoch_interruption(false)
        .max_wasm_stack(config.max_wasm_stack())
        // Unused (guests never run on async fibers) but wasmtime requires it
        // to be at least `max_wasm_stack` when the `async` feature is built in.
        .async_stack_size(config.guest_thread_stack())
        .memory_init_cow(true)
        .cranelift_opt_level(OptLevel::Speed)
        .parallel_compilation(true);
    Ok(c)
}

impl GuestEngine {
    /// Builds the engine; refuses configurations that break determinism.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        Self::build(config, None)
    }

    /// Like [`GuestEngine::new`], with compiled code cached on disk in `dir`
    /// (wasmtime's own cache: keyed by the module bytes, the engine settings
    /// and wasmtime's version), so a restarted validator does not recompile
    /// what it already compiled. The cache changes how fast a module is ready,
    /// never what it computes.
    pub fn with_code_cache(
        config: RuntimeConfig,
        dir: &std::path::Path,
    ) -> Result<Self, RuntimeError> {
        Self::build(config, Some(dir))
    }

    fn build(
        config: RuntimeConfig,
        code_cache: Option<&std::path::Path>,
    ) -> Result<Self, RuntimeError> {
        let mut wt = wasmtime_config(&config)?;
        if let Some(dir) = code_cache {
            let mut cache = wasmtime::CacheConfig::new();
            cache.with_directory(dir);
            let cache =
                wasmtime::Cache::new(cache).map_err(|e| RuntimeError::wasmtime("code cache", e))?;
            wt.cache(Some(cache));
        }
        let engine = Engine::new(&wt).map_err(|e| RuntimeError::wasmtime("engine", e))?;
        let cache = Mutex::new(ModuleCache::new(config.module_cache_entries));
        Ok(GuestEngine {
            engine,
            config,
            cache,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Validates, instruments and compiles `wasm`, or returns the cached result.
    ///
    /// Both the source hash and the prepared hash are cache keys: a known
    /// source skips instrumentation, and two sources that instrument to the
    /// same bytes share one compiled module.
    pub fn load(&self, wasm: &[u8]) -> Result<Arc<CompiledModule>, RuntimeError> {
        let source_hash = instrument::sha256(wasm);
        if let Some(hit) = self.lock_cache().by_source(&source_hash) {
            return Ok(hit);
        }
        let prepared = instrument::prepare(wasm, &self.config)?;
        self.compile_prepared(prepared)
    }

    /// Compiles an already prepared module (e.g. restored from storage).
    pub fn compile_prepared(
        &self,
        prepared: PreparedModule,
    ) -> Result<Arc<CompiledModule>, RuntimeError> {
        if let Some(hit) = self.lock_cache().by_prepared(&prepared.hash) {
            return Ok(hit);
        }
        let module = Module::new(&self.engine, &prepared.bytes)
            .map_err(|e| RuntimeError::wasmtime("compile", e))?;
        let compiled = Arc::new(CompiledModule { module, prepared });
        self.lock_cache().insert(compiled.clone());
        Ok(compiled)
    }

    /// Number of compiled modules in the cache.
    pub fn cached_modules(&self) -> usize {
        self.lock_cache().modules.len()
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, ModuleCache> {
        // The cache holds only immutable compiled modules; a panic elsewhere
        // cannot leave it inconsistent, so a poisoned lock is still usable.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Least-recently-used cache of compiled modules keyed by prepared-bytes SHA-256.
/// BTreeMaps and a use counter: eviction order never depends on hashing.
struct ModuleCache {
    capacity: usize,
    clock: u64,
    modules: BTreeMap<Hash, (Arc<CompiledModule>, u64)>,
    sources: BTreeMap<Hash, Hash>,
}

impl ModuleCache {
    fn new(capacity: usize) -> Self {
        ModuleCache {
            capacity,
            clock: 0,
            modules: BTreeMap::new(),
            sources: BTreeMap::new(),
        }
    }

    fn by_source(&mut self, source: &Hash) -> Option<Arc<CompiledModule>> {
        let prepared = *self.sources.get(source)?;
        self.by_prepared(&prepared)
    }

    fn by_prepared(&mut self, prepared: &Hash) -> Option<Arc<CompiledModule>> {
        self.clock += 1;
        let clock = self.clock;
        let (module, used) = self.modules.get_mut(prepared)?;
        *used = clock;
        Some(module.clone())
    }

    fn insert(&mut self, module: Arc<CompiledModule>) {
        self.clock += 1;
        while self.modules.len() >= self.capacity {
            let Some(oldest) = self
                .modules
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            self.modules.remove(&oldest);
            self.sources.retain(|_, p| *p != oldest);
        }
        self.sources
            .insert(module.prepared.source_hash, module.prepared.hash);
        self.modules
            .insert(module.prepared.hash, (module, self.clock));
    }
}
