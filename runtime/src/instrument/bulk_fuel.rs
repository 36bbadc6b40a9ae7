//! Fuel for operators whose work depends on a runtime operand.
//!
//! The cost model (wasmtime 48.0.8, `consume_fuel`): every operator costs 1
//! fuel except `nop`, `drop`, `block`, `loop`, `unreachable`, `return`, `else`
//! and `end`, which cost 0. Fuel is counted per straight-line block and checked
//! at loop headers, calls and function exits, so a guest stops at the same
//! operator on every machine. Host functions (WASI) cost nothing unless they
//! charge explicitly.
//!
//! Older wasmtime charged `memory.fill`/`memory.copy` a flat 1, so a guest could
//! move gigabytes per unit of fuel. wasmtime 48 has per-operand costs
//! ([`wasmtime::VariableOperatorCost`]) applied *before* the operation (a guest
//! that cannot pay traps with out-of-fuel and the operation does not run); we
//! pin them here instead of relying on defaults so an upgrade cannot silently
//! change consensus. No wasm rewrite is needed for this: validation already
//! refuses `memory.init` and every table-mutating operator, so the rules that
//! matter are:
//!
//! | operator      | cost                          |
//! |---------------|-------------------------------|
//! | `memory.copy` | 1 + 1 per byte                |
//! | `memory.fill` | 1 + 1 per byte                |
//! | `memory.grow` | 1 + [`GROW_FUEL_PER_PAGE`] per page requested (charged even if refused) |
//!
//! One fuel per byte matches what the equivalent byte loop in wasm costs, so
//! compiling with or without `-mbulk-memory` does not change what a guest can
//! afford by much.

use wasmtime::{OperatorCost, VariableOperatorCost};

/// Fuel per 64 KiB page requested by `memory.grow`: growing commits and zeroes
/// host memory, which should not be free.
pub const GROW_FUEL_PER_PAGE: u8 = 255;

/// Fuel per byte for `memory.copy`, `memory.fill` (and the refused `memory.init`).
pub const BULK_FUEL_PER_BYTE: u8 = 1;

/// The operator cost table the engine is configured with.
pub fn operator_cost() -> OperatorCost {
    let mut cost = OperatorCost::new();
    cost.variable = variable_cost();
    cost
}

fn variable_cost() -> VariableOperatorCost {
    let mut v = VariableOperatorCost::new();
    v.memory_copy_per_byte = BULK_FUEL_PER_BYTE;
    v.memory_fill_per_byte = BULK_FUEL_PER_BYTE;
    v.memory_init_per_byte = BULK_FUEL_PER_BYTE;
    v.memory_grow_per_page = GROW_FUEL_PER_PAGE;
    v.table_copy_per_element = 1;
    v.table_fill_per_element = 1;
    v.table_init_per_element = 1;
    v.table_grow_per_element = 1;
    v
}
