//! Choosing the deterministic machine `start` serves.
//!
//! The product machine is the runtime's process table over a merkle-fs store in
//! `<home>/replicode/`. Until that wiring exists in this tree, `start` refuses to
//! run rather than serving anything that is not the real machine.

use std::sync::Arc;

use replicode_abci::{Executor, ProgramValidator};

use crate::home::Home;

/// Opens the machine for a validator home.
pub fn open(home: &Home) -> anyhow::Result<(Box<dyn Executor>, Arc<dyn ProgramValidator>)> {
    anyhow::bail!(
        "cannot open the deterministic machine in {}: the runtime process table over merkle-fs is not wired into this build yet",
        home.store_dir().display()
    )
}
