//! Drives one server program through a list of inputs: `replicode run --inputs`.
//!
//! Why here and not in the CLI: the same loop (spawn, deliver each input, print
//! the output attributed to it, optionally snapshot and restore into a fresh
//! engine mid-way) is what tests and benchmarks need, and it only uses the
//! process API.

use std::sync::Arc;

use super::error::ProcessError;
use super::table::{InputOutcome, ProcessTable, TableLimits};
use super::wasi_host::{WasiEnv, WasiProcess};
use super::ProcessModule;
use crate::config::RuntimeConfig;
use crate::engine::GuestEngine;
use crate::instrument;

/// What to run and feed.
pub struct ServeSpec {
    /// `args[0]` is the program name.
    pub args: Vec<String>,
    pub vars: Vec<(String, String)>,
    /// Delivered one by one to the server's stdin; after the last, stdin ends.
    pub inputs: Vec<Vec<u8>>,
    /// Fuel per input (spawn included).
    pub fuel: u64,
    /// After this many inputs (1-based K: after input K; 0: right after the
    /// spawn), snapshot every process, drop the engine, restore into a fresh
    /// one and continue.
    pub snapshot_at: Option<usize>,
}

/// One step's result: `index` 0 is the spawn, `1..=n` the inputs, `n+1` the EOF.
pub struct Step<'a> {
    pub index: usize,
    pub outcome: &'a InputOutcome,
}

/// Final state of a served run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeReport {
    /// Process-table digest after the last step.
    pub table_digest: [u8; 32],
    /// Filesystem digest after the last step.
    pub fs_digest: [u8; 32],
    /// Bytes of the snapshot taken at `snapshot_at`, if any (none if the
    /// program ended before that input).
    pub snapshot_bytes: Option<usize>,
    /// The server's exit code if it ended (`None`: still blocked after EOF,
    /// or its spawn was rejected).
    pub exit_code: Option<i32>,
}

/// A prepared server: validated, Asyncify-transformed, compiled.
fn load(
    engine: &GuestEngine,
    wasm: &[u8],
) -> Result<Arc<ProcessModule<WasiProcess>>, ProcessError> {
    let prepared = instrument::prepare(wasm, engine.config())
        .map_err(|e| ProcessError::Compile(e.to_string()))?;
    Ok(Arc::new(ProcessModule::new(
        engine.engine(),
        &prepared.bytes,
    )?))
}

/// True once `pid` has ended or was never created (its spawn was rejected):
/// nothing more can be delivered to it.
fn ended(table: &ProcessTable<WasiProcess>, pid: super::Pid) -> bool {
    table
        .info(pid)
        .is_none_or(|p| p.state.exit_code().is_some())
}

/// Snapshots every process of `table` and restores them into a table over a
/// fresh engine, returning it and the snapshot's size.
fn restore_fresh(
    mut table: ProcessTable<WasiProcess>,
    config: &RuntimeConfig,
    wasm: &[u8],
    limits: TableLimits,
) -> Result<(ProcessTable<WasiProcess>, usize), ProcessError> {
    let bytes = table.snapshot_all()?;
    let env = table.env().clone();
    drop(table);
    // A fresh engine: nothing compiled or instantiated before is reused.
    let fresh =
        GuestEngine::new(config.clone()).map_err(|e| ProcessError::Runtime(e.to_string()))?;
    let m = load(&fresh, wasm)?;
    let table = ProcessTable::restore(&bytes, env, limits, move |h| {
        (h == m.hash()).then(|| m.clone())
    })?;
    Ok((table, bytes.len()))
}

/// Runs `wasm` as a server over `env`, calling `report` after every step.
pub fn serve(
    config: &RuntimeConfig,
    wasm: &[u8],
    env: WasiEnv,
    spec: &ServeSpec,
    mut report: impl FnMut(Step<'_>),
) -> Result<ServeReport, ProcessError> {
    let engine =
        GuestEngine::new(config.clone()).map_err(|e| ProcessError::Runtime(e.to_string()))?;
    let module = load(&engine, wasm)?;
    let limits = TableLimits::default();
    let mut table = ProcessTable::new(env, limits);
    let (pid, spawned) = table.spawn(module.clone(), &spec.args, &spec.vars, None, spec.fuel)?;
    report(Step {
        index: 0,
        outcome: &spawned,
    });
    let mut snapshot_bytes = None;
    if spec.snapshot_at == Some(0) && !ended(&table, pid) {
        let (t, n) = restore_fresh(table, config, wasm, limits)?;
        table = t;
        snapshot_bytes = Some(n);
    }
    for (i, input) in spec.inputs.iter().enumerate() {
        if ended(&table, pid) {
            break;
        }
        let out = table.deliver_stdin(pid, input, false, spec.fuel)?;
        report(Step {
            index: i + 1,
            outcome: &out,
        });
        if spec.snapshot_at == Some(i + 1) {
            let (t, n) = restore_fresh(table, config, wasm, limits)?;
            table = t;
            snapshot_bytes = Some(n);
        }
    }
    if !ended(&table, pid) {
        let out = table.deliver_stdin(pid, b"", true, spec.fuel)?;
        report(Step {
            index: spec.inputs.len() + 1,
            outcome: &out,
        });
    }
    let exit_code = table.info(pid).and_then(|p| p.state.exit_code());
    let fs_digest = table
        .env()
        .fs
        .lock()
        .map(|fs| fs.digest())
        .map_err(|_| ProcessError::Runtime("filesystem lock poisoned".into()))?;
    Ok(ServeReport {
        table_digest: table.digest()?,
        fs_digest,
        snapshot_bytes,
        exit_code,
    })
}
