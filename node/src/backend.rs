//! Choosing the deterministic machine `start` serves: the runtime's process table
//! over a merkle-fs store in `<home>/replicode/`.

use std::sync::Arc;

use replicode_abci::machine::Machine;
use replicode_abci::{Executor, ProgramValidator};

use crate::home::Home;

/// Opens the machine for a validator home.
pub fn open(home: &Home) -> anyhow::Result<(Box<dyn Executor>, Arc<dyn ProgramValidator>)> {
    let dir = home.store_dir();
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let machine = Machine::open(&dir)
        .map_err(|e| anyhow::anyhow!("opening the store in {}: {e}", dir.display()))?;
    Ok((Box::new(machine), Machine::validator()))
}
