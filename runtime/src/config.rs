//! What a guest may use: fuel, memory, logical stack, module size, fds, storage.
//!
//! Every limit here is part of consensus: two validators with different limits
//! would compute different results, so a network fixes them in genesis. The
//! defaults are what `replicode run` uses when no flag overrides them.

use crate::error::ConfigError;
pub use crate::fs::FsLimits;

/// One wasm page: 64 KiB.
pub const WASM_PAGE_BYTES: u64 = 65_536;

/// Native stack bytes the engine budgets per logical stack slot.
///
/// A slot is one local, parameter or operand-stack value (at most 16 bytes, a
/// `v128`) or the fixed per-frame overhead of [`crate::instrument::stack`].
/// Cranelift spills at most one 16-byte value per live slot; twice that leaves
/// room for callee-saved registers and alignment. The engine sets
/// `max_wasm_stack` from this so the logical limit always fires first.
pub const NATIVE_BYTES_PER_SLOT: usize = 32;

/// Native stack kept free above the wasm frames for host calls (WASI, libcalls).
pub const HOST_STACK_HEADROOM: usize = 4 << 20;

/// How NaN bit patterns are made identical on every machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NanMode {
    /// wasmtime's `cranelift_nan_canonicalization`: every float result is
    /// canonicalized. Correct everywhere, ~3.5x slower on FP-heavy code; kept
    /// as the reference the lazy pass is differentially tested against.
    Eager,
    /// The issue-3 wasm pass (`instrument::nan`): canonicalize only where a NaN
    /// can become observable (stores, reinterprets, exports, host calls). Same
    /// observable bits as `Eager` at near-native speed. Requires SIMD off.
    #[default]
    Lazy,
}

/// Resource limits of one guest run. All are deterministic: hitting one has
/// the same effect, at the same point, on every machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel for one `start` or `resume` (see `docs/determinism.md` for the cost model).
    pub fuel: u64,
    /// Linear memory pages (64 KiB). `memory.grow` past this returns -1.
    pub max_memory_pages: u32,
    /// Logical stack limit in slots (see [`crate::instrument::stack`]).
    pub max_stack_slots: u32,
    /// Largest accepted module, in bytes, before instrumentation.
    pub max_module_bytes: usize,
    /// Functions (imported + defined) a module may declare.
    pub max_functions: u32,
    /// Function types a module may declare.
    pub max_types: u32,
    /// Bytes of one function body (locals and code). With
    /// `max_operators_per_function` this bounds every per-function pass
    /// (Asyncify's flattening, the NaN analysis budget, cranelift) in time.
    pub max_function_body_bytes: u32,
    /// Operators in one function body.
    pub max_operators_per_function: u32,
    /// Locals of one function, parameters included. Passes that copy the
    /// locals at every branch (the NaN analysis) or save them at every
    /// suspension point (Asyncify) cost this times the body size.
    pub max_locals_per_function: u32,
    /// Control-flow nesting (`block`/`loop`/`if` inside each other) in one
    /// function. Binaryen recurses on nesting: 10,000 levels overflow an 8 MiB
    /// stack, so this bounds the native stack every later pass needs.
    pub max_nesting_depth: u32,
    /// Depth of one function's expression tree as Binaryen builds it from the
    /// stack code (`i32.eqz` applied 100,000 times is a tree 100,000 deep), the
    /// nesting of blocks included. Binaryen recurses on it like on nesting.
    pub max_expression_depth: u32,
    /// Targets of one `br_table` (its default included).
    pub max_br_table_targets: u32,
    /// Globals a module may declare.
    pub max_globals: u32,
    /// Data segments a module may declare.
    pub max_data_segments: u32,
    /// Table elements (initial and maximum size of the one table).
    pub max_table_elements: u32,
    /// Open file descriptors (`EMFILE` past it).
    pub max_fds: u32,
    /// Pages the executor adds above the guest's memory for Asyncify's unwind
    /// buffer (see [`crate::instrument::asyncify`]).
    pub asyncify_pages: u32,
    /// File size, storage quota and inode limits of the virtual filesystem.
    pub fs: FsLimits,
    /// Bytes of stdout + stderr one input may leave in its results; past it the
    /// guest's writes still succeed (and are charged) but the bytes are dropped
    /// and the output is marked truncated (`process::Output::truncated`).
    pub max_output_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 20_000_000_000,
            max_memory_pages: 4096, // 256 MiB
            max_stack_slots: 1 << 20,
            max_module_bytes: 32 << 20,
            // Measured maxima of real programs (validate::module_shape; printed
            // by engine::preparation::real_*): SQLite 3.46 amalgamation with
            // wasi-libc (clang-14 -O2, 1.1 MB; -Os, 760 KB), Go 1.26 wasip1
            // programs (fmt+bufio 2.6 MB; fmt+json+net/http 5.2 MB), the C
            // guests of wasm_programs/. Each comment: SQLite / Go / C guests.
            max_functions: 100_000, //              1,528 / 3,032 / 202
            max_types: 10_000,      //                      64 / 15 / 31
            max_function_body_bytes: 256 << 10, // 49,306 / 45,763 / 75,823
            max_operators_per_function: 100_000, // 22,763 / 20,599 / 24,080
            max_locals_per_function: 2_000, //         65 / 18 / 43
            max_nesting_depth: 2_000, //              276 / 549 / 43
            max_expression_depth: 2_000, //           279 / 555 / 48
            max_br_table_targets: 20_000, //          345 / 896 / 87
            max_globals: 10_000,
            max_data_segments: 100_000,
            max_table_elements: 100_000,
            max_fds: 1024,
            asyncify_pages: 1,
            fs: FsLimits::default(),
            max_output_bytes: 1 << 20,
        }
    }
}

/// Everything that decides how a module is prepared and compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    pub limits: Limits,
    pub nan: NanMode,
    /// Fixed-width SIMD (`v128`). Deterministic given NaN canonicalization;
    /// relaxed SIMD is always off.
    pub simd: bool,
    /// Compiled modules kept in the engine's cache.
    pub module_cache_entries: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            limits: Limits::default(),
            nan: NanMode::Lazy,
            simd: false,
            module_cache_entries: 64,
        }
    }
}

/// Largest logical stack we accept: 8 Mi slots is 256 MiB of native stack.
pub const MAX_STACK_SLOTS: u32 = 8 << 20;
/// wasm32 memories cannot exceed 65536 pages (4 GiB).
pub const MAX_MEMORY_PAGES: u32 = 65_536;

impl RuntimeConfig {
    /// Refuses configurations that cannot be honoured deterministically.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let positive: [(&'static str, u64); 8] = [
            ("fuel", l.fuel),
            ("max_memory_pages", u64::from(l.max_memory_pages)),
            ("max_stack_slots", u64::from(l.max_stack_slots)),
            ("max_module_bytes", l.max_module_bytes as u64),
            ("max_functions", u64::from(l.max_functions)),
            ("max_fds", u64::from(l.max_fds)),
            ("asyncify_pages", u64::from(l.asyncify_pages)),
            ("module_cache_entries", self.module_cache_entries as u64),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if l.max_stack_slots > MAX_STACK_SLOTS {
            return Err(ConfigError::TooLarge {
                name: "max_stack_slots",
                value: l.max_stack_slots.into(),
                max: MAX_STACK_SLOTS.into(),
            });
        }
        if l.max_memory_pages > MAX_MEMORY_PAGES {
            return Err(ConfigError::TooLarge {
                name: "max_memory_pages",
                value: l.max_memory_pages.into(),
                max: MAX_MEMORY_PAGES.into(),
            });
        }
        if self.nan == NanMode::Lazy && !crate::instrument::LAZY_NAN_AVAILABLE {
            return Err(ConfigError::LazyNanUnavailable);
        }
        if self.nan == NanMode::Lazy && self.simd {
            // v128 lanes are untyped: a float lane can be read as integers by any
            // lane op, so the lazy pass cannot see where NaN bits escape.
            return Err(ConfigError::LazyNanWithSimd);
        }
        Ok(())
    }

    /// Native bytes the logical stack limit can use at most.
    pub fn logical_stack_bytes(&self) -> usize {
        self.limits.max_stack_slots as usize * NATIVE_BYTES_PER_SLOT
    }

    /// wasmtime's `max_wasm_stack`: above the logical limit, so it never fires.
    pub fn max_wasm_stack(&self) -> usize {
        self.logical_stack_bytes() + (1 << 20)
    }

    /// Native stack of the thread that runs guests ([`crate::exec::on_guest_stack`]).
    pub fn guest_thread_stack(&self) -> usize {
        self.max_wasm_stack() + HOST_STACK_HEADROOM
    }

    /// Linear memory limit in bytes (guest memory plus the asyncify pages).
    pub fn max_memory_bytes(&self) -> u64 {
        u64::from(self.limits.max_memory_pages) * WASM_PAGE_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        assert_eq!(RuntimeConfig::default().validate(), Ok(()));
    }

    #[test]
    fn zero_fuel_is_refused_by_name() {
        let mut c = RuntimeConfig::default();
        c.limits.fuel = 0;
        assert_eq!(c.validate(), Err(ConfigError::Zero("fuel")));
    }

    #[test]
    fn oversize_stack_is_refused() {
        let mut c = RuntimeConfig::default();
        c.limits.max_stack_slots = MAX_STACK_SLOTS + 1;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::TooLarge {
                name: "max_stack_slots",
                ..
            })
        ));
    }

    #[test]
    fn native_stack_covers_logical_stack() {
        let c = RuntimeConfig::default();
        assert!(c.max_wasm_stack() > c.logical_stack_bytes());
        assert!(c.guest_thread_stack() > c.max_wasm_stack());
    }
}
