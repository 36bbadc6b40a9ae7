//! Choosing the deterministic machine `start` serves: the runtime's process table
//! over a merkle-fs store in `<home>/replicode/`.

use std::sync::Arc;

use replicode_abci::machine::Machine;
use replicode_abci::{Executor, ProgramValidator};

use crate::home::Home;

/// Opens the machine for a validator home, keeping `keep_heights` recent heights
/// readable (0: all).
pub fn open(
    home: &Home,
    keep_heights: u64,
) -> anyhow::Result<(Box<dyn Executor>, Arc<dyn ProgramValidator>)> {
    let dir = home.store_dir();
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let cache = home.module_cache_dir();
    let mut machine = Machine::open_with_cache(&dir, Some(&cache))
        .map_err(|e| anyhow::anyhow!("opening the store in {}: {e}", dir.display()))?;
    machine.set_keep_heights(Some(keep_heights));
    Ok((Box::new(machine), Machine::validator()))
}
