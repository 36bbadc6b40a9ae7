//! The product [`Executor`]: the runtime's process table over a merkle-fs store.
//!
//! State layout (all inside merkle-fs, so all under the app hash):
//! - guest files: the filesystem proper (programs are files below `/bin/`);
//! - `replicode/limits`: the genesis limits (JSON);
//! - `replicode/genesis-time`: block time of InitChain (the guests' realtime base);
//! - `replicode/table`: the process table's header (format v3: time, pid
//!   counter, the block's random seed, the pids);
//! - `replicode/proc/<pid, 20 digits>`: each process's record (globals, stack,
//!   fds, pending stdin, memory length — everything but memory); a block
//!   rewrites only the records of the processes it changed, and deletes those
//!   of processes reaped (at most `max_processes` ended ones are kept);
//! - `replicode/mem/<pid, 20 digits>/<page, 10 digits>`: each non-zero 4 KiB page
//!   of a live process's memory; a block rewrites only the pages it changed;
//! - `replicode/program/<path>` and `replicode/module/<hex source hash>`: install
//!   records and the sources of every module an install record or a live
//!   process refers to (see [`programs`]);
//! - `replicode/recent/<pid, 20 digits>`: the tail of each process's stdout.
//!
//! Durability: InitChain reports the genesis root computed in the working set, which
//! carries the genesis state into block 1; FinalizeBlock seals the block into a
//! [`merkle_fs::PreparedCommit`] (root known, nothing written) and Commit writes it
//! in one atomic batch. A validator killed before Commit reopens at the last
//! committed height and re-executes the block CometBFT replays; see docs/tx-format.md.

pub mod fs;
mod keys;
mod owners;
mod prepared_cache;
pub mod programs;
mod reader;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use merkle_fs::{FsRead, StateRead, Store};
use replicode_runtime::config::RuntimeConfig;
use replicode_runtime::engine::GuestEngine;
use replicode_runtime::process::wasi_host::{HomeView, WasiEnv, WasiProcess};
use replicode_runtime::process::{
    InputOutcome, InputStatus, ProcState, ProcessError, ProcessTable, StreamKind, TableLimits,
};

use crate::account::Address;
use crate::codes::Code;
use crate::executor::{
    AppHash, BlockContext, Committed, ExecError, Executor, Input, Outcome, ProcessInfo,
    ProgramValidator, StateReader, Status,
};
use crate::genesis::{GenesisState, Limits};
use crate::limits::{MAX_BLOCK_OUTPUT_BYTES, MAX_INPUT_OUTPUT_BYTES};
use crate::result::{Exit, Write};
use fs::{HostFailures, MerkleFs, Slot};
use owners::{Access, Owners, ProcessOwner};
use programs::Programs;
use reader::MachineReader;

/// Bytes of stdout kept per process for `query proc`.
const RECENT_BYTES: usize = 4096;

/// The deterministic machine of one validator.
pub struct Machine {
    store: Store,
    slot: Slot,
    engine: GuestEngine,
    config: RuntimeConfig,
    programs: Programs,
    /// Who owns each process in the table (mirrors `replicode/owner/*`).
    owners: Owners,
    /// Storage failures met under guest syscalls; checked after every step.
    failures: HostFailures,
    table: ProcessTable<WasiProcess>,
    limits: Limits,
    genesis_time_ns: u64,
    block_height: u64,
    /// The finalized block, sealed and hashed, waiting for Commit to write it.
    prepared: Option<merkle_fs::PreparedCommit>,
    /// How many recent heights stay readable (queries, proofs); older versions
    /// are pruned after each commit. `None` keeps every height.
    keep_heights: Option<u64>,
    /// What queries read: published at every commit, since between
    /// FinalizeBlock and Commit the live table already holds the next block.
    reader: Arc<MachineReader>,
    /// Guest output bytes the current block may still keep
    /// ([`MAX_BLOCK_OUTPUT_BYTES`]).
    block_output_left: usize,
}

fn err(op: &'static str) -> impl Fn(merkle_fs::Error) -> ExecError {
    move |e| ExecError::new(op, e)
}

impl Machine {
    /// Keeps only the last `keep` heights readable (`None`: all of them). Pruning
    /// never changes a root: it deletes what only older heights need, so storage
    /// stays proportional to the live state plus `keep` blocks of changes.
    pub fn set_keep_heights(&mut self, keep: Option<u64>) {
        self.keep_heights = keep.filter(|&k| k > 0);
    }

    /// Prunes after the commit of `height`. A failure is logged, not fatal: the
    /// block is already durable and only old versions linger until the next try.
    fn prune_old_heights(&self, height: u64) {
        let Some(keep) = self.keep_heights else {
            return;
        };
        // At or below the retained height, `prune` is a no-op.
        let retain = height.saturating_sub(keep - 1).max(1);
        match self.store.prune(retain) {
            Ok(removed) => tracing::debug!(height, retain, removed, "pruned old heights"),
            Err(e) => tracing::warn!(height, retain, error = %e, "pruning old heights failed"),
        }
    }

    /// Opens (or creates) the store in `dir` and restores the committed
    /// processes, preparing and compiling every installed program.
    pub fn open(dir: &Path) -> Result<Machine, ExecError> {
        Machine::open_with_cache(dir, None)
    }

    /// [`Machine::open`], keeping prepared and compiled modules in `cache_dir`
    /// too, so a restart reuses them instead of preparing every installed
    /// program again (host-local files, never consensus data).
    pub fn open_with_cache(dir: &Path, cache_dir: Option<&Path>) -> Result<Machine, ExecError> {
        let store = Store::open(dir).map_err(err("open store"))?;
        let config = machine_config();
        let engine = match cache_dir {
            Some(cache) => GuestEngine::with_code_cache(config.clone(), &cache.join("code")),
            None => GuestEngine::new(config.clone()),
        }
        .map_err(|e| ExecError::new("engine", e))?;
        let prepared_cache =
            cache_dir.map(|c| prepared_cache::PreparedCache::new(&c.join("prepared"), &config));
        let slot: Slot = Arc::new(Mutex::new(None));
        let failures = HostFailures::default();
        let latest = store.latest();
        let limits: Limits = match latest.get_meta_bytes(keys::LIMITS)? {
            Some(json) => {
                serde_json::from_slice(&json).map_err(|e| ExecError::new("read limits", e))?
            }
            None => Limits::default(),
        };
        let genesis_time_ns = latest
            .get_meta_bytes(keys::GENESIS_TIME)?
            .map(|b| keys::decode_u64(&b))
            .unwrap_or(0);
        let seed = latest
            .get_meta_bytes(keys::SEED)?
            .map(|b| keys::decode_seed(&b))
            .unwrap_or([0; 32]);
        let mut env = WasiEnv::new(replicode_runtime::fs::shared(MerkleFs::new(
            slot.clone(),
            failures.clone(),
        )));
        env.realtime_base_ns = genesis_time_ns;
        env.seed = seed;
        // Every process gets its owner's view (see `spawn`); none the whole tree.
        env.preopens = Vec::new();
        env.fs_limits = Some(guest_fs_limits(&limits));
        let mut machine = Machine {
            table: ProcessTable::new(env.clone(), table_limits(&limits)),
            slot,
            engine,
            config,
            programs: Programs::new(prepared_cache),
            failures,
            limits,
            genesis_time_ns,
            block_height: 0,
            prepared: None,
            keep_heights: None,
            reader: Arc::new(MachineReader::new(store.clone())),
            store,
            block_output_left: MAX_BLOCK_OUTPUT_BYTES,
            owners: Owners::default(),
        };
        // Every module state refers to was loadable when it was installed; one
        // that no longer is means this node's state or build is not what the
        // others run, so it must not start.
        for (key, source) in latest.list_meta_bytes(keys::MODULE_PREFIX)? {
            if let Err(refusal) =
                machine
                    .programs
                    .load(&machine.engine, &machine.config, &source)?
            {
                let key = String::from_utf8_lossy(&key).into_owned();
                return Err(ExecError::new(
                    "reload module",
                    format!("{key}: {refusal:?}"),
                ));
            }
        }
        for (key, record) in latest.list_meta_bytes(keys::PROGRAM_PREFIX)? {
            let path = String::from_utf8_lossy(&key[keys::PROGRAM_PREFIX.len()..]).into_owned();
            let bad = || ExecError::new("reload program", format!("{path}: bad record"));
            if record.len() != 52 {
                return Err(bad());
            }
            let (hash, owner) = record.split_at(32);
            let hash: [u8; 32] = hash.try_into().map_err(|_| bad())?;
            let owner: [u8; 20] = owner.try_into().map_err(|_| bad())?;
            if !machine.programs.has_source(&hash) {
                return Err(ExecError::new(
                    "reload program",
                    format!("{path}: its module record is missing"),
                ));
            }
            machine.programs.record(&path, hash, Address(owner));
        }
        for (key, record) in latest.list_meta_bytes(owners::PREFIX)? {
            let pid = std::str::from_utf8(&key[owners::PREFIX.len()..])
                .ok()
                .and_then(|digits| digits.parse::<u64>().ok());
            let (Some(pid), Some(owner)) = (pid, ProcessOwner::from_record(&record)) else {
                let key = String::from_utf8_lossy(&key).into_owned();
                return Err(ExecError::new(
                    "reload owners",
                    format!("{key}: bad record"),
                ));
            };
            machine.owners.insert(pid, owner);
        }
        machine.programs.prune_cache();
        if let Some(snapshot) = latest.get_meta_bytes(keys::TABLE)? {
            let programs = &machine.programs;
            machine.table = ProcessTable::restore_paged(
                &snapshot,
                env,
                table_limits(&machine.limits),
                |h| programs.by_prepared(h),
                |pid| {
                    latest
                        .get_meta_bytes(&keys::process(pid))
                        .map_err(|e| e.to_string())
                },
                |pid, page| {
                    latest
                        .get_meta_bytes(&keys::memory_page(pid, page))
                        .map_err(|e| e.to_string())
                },
            )
            .map_err(|e| ExecError::new("restore process table", e))?;
        }
        machine.publish()?;
        Ok(machine)
    }

    /// A validator for CheckTx that shares nothing with consensus state.
    pub fn validator() -> Arc<dyn ProgramValidator> {
        Arc::new(WasmValidator {
            config: machine_config(),
        })
    }

    fn ws_do<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut merkle_fs::WorkingSet) -> merkle_fs::Result<T>,
    ) -> Result<T, ExecError> {
        let mut guard = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let ws = guard
            .as_mut()
            .ok_or_else(|| ExecError::new(op, "no working set (no block started)"))?;
        f(ws).map_err(err(op))
    }

    /// Stores the process table in the working set, so the root covers every
    /// process: the header (small), the records of the processes changed since
    /// the last call ([`keys::process`]) and their changed memory pages
    /// ([`keys::memory_page`]). First the oldest ended processes past
    /// `max_processes` are reaped, with their recent output.
    fn write_table(&mut self) -> Result<(), ExecError> {
        let reaped = self.table.reap();
        for pid in &reaped {
            self.owners.remove(*pid);
        }
        let delta = self
            .table
            .persist()
            .map_err(|e| ExecError::new("snapshot processes", e))?;
        self.ws_do("write process table", |ws| {
            ws.put_meta(keys::TABLE, &delta.table);
            for (pid, record) in &delta.processes {
                match record {
                    Some(record) => ws.put_meta(&keys::process(*pid), record),
                    None => ws.delete_meta(&keys::process(*pid)),
                }
            }
            for pid in &reaped {
                ws.delete_meta(&keys::recent(*pid));
                ws.delete_meta(&owners::key(*pid));
            }
            for (pid, page, bytes) in &delta.pages {
                let key = keys::memory_page(*pid, *page);
                match bytes {
                    Some(bytes) => ws.put_meta(&key, bytes),
                    None => ws.delete_meta(&key),
                }
            }
            for (pid, pages) in &delta.ended {
                for page in pages {
                    ws.delete_meta(&keys::memory_page(*pid, *page));
                }
            }
            Ok(())
        })
    }

    fn ensure_working_set(&self) {
        let mut guard = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let mut ws = self.store.working_set();
            ws.set_limits(fs_limits(&self.limits));
            *guard = Some(ws);
        }
    }

    /// Writes `bytes` at absolute `path`, creating parent directories; all or
    /// nothing. `Ok(Err(_))` is an answer about the path (missing parent, a
    /// non-directory on the way, quota): the working set is as before.
    /// Storage failures are `Err`.
    fn write_file(
        &self,
        path: &str,
        bytes: &[u8],
        now_ns: u64,
    ) -> Result<Result<(), merkle_fs::Error>, ExecError> {
        let mut guard = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let ws = guard
            .as_mut()
            .ok_or_else(|| ExecError::new("write file", "no working set"))?;
        let savepoint = ws.savepoint();
        let written = write_path(ws, path, bytes, now_ns);
        if written.is_err() {
            ws.rollback_to(savepoint).map_err(err("write file"))?;
        }
        ws.release_savepoint(savepoint).map_err(err("write file"))?;
        match written {
            Err(e) if e.is_host_failure() => Err(ExecError::new("write file", e)),
            other => Ok(other),
        }
    }

    /// Stops the node if a guest syscall met a storage failure (see [`HostFailures`]).
    fn check_host_failures(&self, step: &'static str) -> Result<(), ExecError> {
        match self.failures.take() {
            Some(failure) => Err(ExecError::new(step, failure)),
            None => Ok(()),
        }
    }

    fn now_ns(&self) -> u64 {
        self.table.now_ns()
    }

    fn outcome(
        &mut self,
        pid: u64,
        result: Result<InputOutcome, ProcessError>,
    ) -> Result<Outcome, ExecError> {
        let out = match result {
            Ok(out) => out,
            Err(e) => return refusal(pid, e),
        };
        let status = match &out.status {
            InputStatus::Ok => Status::Ok,
            InputStatus::OutOfFuel => Status::OutOfFuel,
            InputStatus::Trap { pid, reason } => Status::Trap(format!("pid {pid}: {reason}")),
        };
        let writes = self.outcome_writes(&out);
        if status == Status::Ok {
            self.remember_output(&writes)?;
        }
        Ok(Outcome {
            status,
            pid,
            writes,
            exits: out
                .exits
                .iter()
                .map(|(pid, code)| Exit {
                    pid: *pid,
                    code: *code,
                })
                .collect(),
            fuel_used: out.fuel_used,
        })
    }

    fn remember_output(&self, writes: &[Write]) -> Result<(), ExecError> {
        let mut by_pid: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        for w in writes.iter().filter(|w| w.fd == 1) {
            by_pid.entry(w.pid).or_default().extend_from_slice(&w.data);
        }
        for (pid, new) in by_pid {
            let key = keys::recent(pid);
            let mut tail = self
                .ws_do("read recent output", |ws| ws.get_meta(&key))?
                .unwrap_or_default();
            tail.extend_from_slice(&new);
            let cut = tail.len().saturating_sub(RECENT_BYTES);
            let tail = tail.split_off(cut);
            self.ws_do("write recent output", |ws| {
                ws.put_meta(&key, &tail);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Installs `wasm` at `path`: charges [`Limits::install_fuel`] (refused
    /// before any work if `fuel` cannot pay; `None` at genesis), prepares and
    /// compiles it once, writes the file and the install record. A refusal
    /// changes nothing.
    fn install(
        &mut self,
        path: &str,
        wasm: &[u8],
        owner: &Address,
        fuel: Option<u64>,
    ) -> Result<Outcome, ExecError> {
        if let Some(installer) = self.programs.owner(path).filter(|o| o != owner) {
            return Ok(refused(
                0,
                Code::Unauthorized,
                format!(
                    "{path} was installed by {}; account {owner} may not replace it",
                    installer.owner_name()
                ),
            ));
        }
        let cost = self.limits.install_fuel(wasm.len());
        if let Some(fuel) = fuel.filter(|&f| cost > f) {
            return Ok(refused(
                0,
                Code::OutOfFuel,
                format!(
                    "{path}: installing {} bytes costs {cost} fuel, more than the {fuel} a transaction has",
                    wasm.len()
                ),
            ));
        }
        let source = replicode_runtime::instrument::sha256(wasm);
        if let Err(refusal) = self.programs.admit(
            path,
            &source,
            wasm.len(),
            self.limits.max_programs,
            self.limits.program_bytes_quota,
        ) {
            return Ok(install_refused(path, refusal));
        }
        let loaded = match self.programs.load(&self.engine, &self.config, wasm)? {
            Ok((_, loaded)) => loaded,
            Err(refusal) => return Ok(install_refused(path, refusal)),
        };
        let now = self.now_ns();
        let refusal = match self.write_file(path, wasm, now)? {
            Ok(()) => None,
            Err(e @ (merkle_fs::Error::NoSpace(_) | merkle_fs::Error::FileTooBig { .. })) => {
                Some(refused(
                    0,
                    Code::LimitExceeded,
                    format!("{path}: storage quota: {e}"),
                ))
            }
            Err(e) => Some(refused(0, Code::InvalidField, format!("{path}: {e}"))),
        };
        if let Some(refusal) = refusal {
            // Memory must hold what a restarted node loads: only recorded modules.
            if loaded {
                self.programs.unload(&source);
            }
            return Ok(refusal);
        }
        let mut record = source.to_vec();
        record.extend_from_slice(&owner.0);
        self.ws_do("record program", |ws| {
            ws.put_meta(&keys::program(path), &record);
            ws.put_meta(&keys::module(&source), wasm);
            Ok(())
        })?;
        self.programs.record(path, source, *owner);
        Ok(Outcome {
            status: Status::Ok,
            pid: 0,
            writes: vec![],
            exits: vec![],
            fuel_used: cost,
        })
    }

    /// Spawns the program installed at `path`. The path is resolved through the
    /// install records only, never the guest filesystem (see [`programs`]).
    fn spawn(
        &mut self,
        path: &str,
        args: &[String],
        env: &[(String, String)],
        owner: ProcessOwner,
        fuel: u64,
    ) -> Result<Outcome, ExecError> {
        let Some(module) = self.programs.at_path(path) else {
            if self.programs.dangling(path) {
                return Err(ExecError::new(
                    "spawn",
                    format!("{path} has an install record but no loaded module"),
                ));
            }
            return Ok(refused(
                0,
                Code::ProgramNotFound,
                format!("{path} is not an installed program"),
            ));
        };
        let mut argv = vec![path.to_string()];
        argv.extend_from_slice(args);
        // The owner's own filesystem: `/home/<address>` as `/`, `/bin` read-only.
        let view = HomeView {
            home: owner.owner.to_string().into_bytes(),
        };
        let result = self
            .table
            .spawn_with_view(module, &argv, env, Some(view), None, fuel);
        let pid = result.as_ref().map(|(pid, _)| *pid).unwrap_or(0);
        let outcome = self.outcome(pid, result.map(|(_, out)| out))?;
        // A rejected first run rolls the spawn back: no process, no owner.
        if outcome.status == Status::Ok {
            self.owners.insert(pid, owner);
            self.ws_do("record owner", |ws| {
                ws.put_meta(&owners::key(pid), &owner.to_record());
                Ok(())
            })?;
        }
        Ok(outcome)
    }

    /// Removes the program installed at `path` (its owner only): the install
    /// record and the `/bin` file. Processes running it keep their module,
    /// which is collected once none refers to it.
    fn uninstall(&mut self, path: &str, caller: &Address) -> Result<Outcome, ExecError> {
        let Some(owner) = self.programs.owner(path) else {
            return Ok(refused(
                0,
                Code::ProgramNotFound,
                format!("{path} is not an installed program"),
            ));
        };
        if owner != *caller {
            return Ok(refused(
                0,
                Code::Unauthorized,
                format!(
                    "{path} was installed by {}; account {caller} may not remove it",
                    owner.owner_name()
                ),
            ));
        }
        let now = self.now_ns();
        self.ws_do("uninstall", |ws| {
            ws.delete_meta(&keys::program(path));
            // The file is gone already if the chain removed it some other way
            // (genesis files are not programs); only storage failures matter.
            match remove_path(ws, path, now) {
                Err(e) if e.is_host_failure() => Err(e),
                _ => Ok(()),
            }
        })?;
        self.programs.remove(path);
        Ok(Outcome {
            status: Status::Ok,
            pid: 0,
            writes: vec![],
            exits: vec![],
            fuel_used: 0,
        })
    }

    /// Deletes the records of modules nothing refers to any more: no install
    /// record and no process still in the table (an ended process counts until
    /// it is reaped, since a restart resolves the module of every entry).
    fn collect_module_garbage(&mut self) -> Result<(), ExecError> {
        let in_table = self.table.list().into_iter().map(|p| p.module).collect();
        let dropped = self.programs.collect_garbage(&in_table);
        if dropped.is_empty() {
            return Ok(());
        }
        self.ws_do("delete unused modules", |ws| {
            for source in &dropped {
                ws.delete_meta(&keys::module(source));
            }
            Ok(())
        })
    }
}

impl Machine {
    fn execute_input(
        &mut self,
        input: &Input<'_>,
        caller: &Address,
        fuel: u64,
    ) -> Result<Outcome, ExecError> {
        match input {
            Input::Install { path, wasm } => self.install(path, wasm, caller, Some(fuel)),
            Input::Spawn {
                path,
                args,
                env,
                public,
            } => {
                let owner = ProcessOwner {
                    owner: *caller,
                    public: *public,
                };
                self.spawn(path, args, env, owner, fuel)
            }
            Input::Stdin { pid, data, eof } => {
                if let Err((code, reason)) = self.owners.check(*pid, caller, Access::Stdin) {
                    return Ok(refused(*pid, code, reason));
                }
                let result = self.table.deliver_stdin(*pid, data, *eof, fuel);
                self.outcome(*pid, result)
            }
            Input::Uninstall { path } => self.uninstall(path, caller),
            Input::Kill { pid } => {
                if let Err((code, reason)) = self.owners.check(*pid, caller, Access::Kill) {
                    return Ok(refused(*pid, code, reason));
                }
                let result = self.table.kill(*pid, fuel);
                self.outcome(*pid, result)
            }
        }
    }
}

fn install_refused(path: &str, refusal: programs::Refusal) -> Outcome {
    match refusal {
        programs::Refusal::Invalid(reason) => {
            refused(0, Code::InvalidProgram, format!("{path}: {reason}"))
        }
        programs::Refusal::Limit(reason) => refused(0, Code::LimitExceeded, reason),
    }
}

impl Executor for Machine {
    fn committed(&self) -> Result<Committed, ExecError> {
        let height = self.store.latest_height();
        if height == 0 {
            return Ok(Committed::default());
        }
        let root = self.store.root().map_err(err("read root"))?;
        Ok(Committed {
            height,
            app_hash: root.to_vec(),
        })
    }

    fn init_chain(
        &mut self,
        genesis: &GenesisState,
        ctx: &BlockContext,
        records: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<AppHash, ExecError> {
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.prepared = None;
        self.limits = genesis.limits.clone();
        self.genesis_time_ns = ctx.time_unix_nanos;
        self.ensure_working_set();
        let mut env = WasiEnv::new(replicode_runtime::fs::shared(MerkleFs::new(
            self.slot.clone(),
            self.failures.clone(),
        )));
        env.realtime_base_ns = ctx.time_unix_nanos;
        env.seed = ctx.seed;
        // Every process gets its owner's view (see `spawn`); none the whole tree.
        env.preopens = Vec::new();
        env.fs_limits = Some(guest_fs_limits(&self.limits));
        self.table = ProcessTable::new(env, table_limits(&self.limits));
        self.table.set_entropy_seed(ctx.seed);
        let limits_json =
            serde_json::to_vec(&self.limits).map_err(|e| ExecError::new("encode limits", e))?;
        self.ws_do("write genesis meta", |ws| {
            ws.put_meta(keys::LIMITS, &limits_json);
            ws.put_meta(keys::GENESIS_TIME, &keys::encode_u64(ctx.time_unix_nanos));
            ws.put_meta(keys::SEED, &ctx.seed);
            for (key, value) in records {
                ws.put_meta(key, value);
            }
            Ok(())
        })?;
        self.programs.clear();
        self.owners = Owners::default();
        let files = genesis
            .files()
            .map_err(|e| ExecError::new("genesis files", e))?;
        let programs = genesis
            .programs()
            .map_err(|e| ExecError::new("genesis programs", e))?;
        for f in &files {
            self.write_file(&f.path, &f.bytes, 0)?
                .map_err(|e| ExecError::new("genesis file", format!("{}: {e}", f.path)))?;
        }
        for p in &programs {
            let out = self.install(&p.path, &p.bytes, &Address::GENESIS, None)?;
            if out.status != Status::Ok {
                return Err(ExecError::new(
                    "genesis program",
                    format!("{}: {:?}", p.path, out.status),
                ));
            }
        }
        for s in genesis
            .spawns()
            .map_err(|e| ExecError::new("genesis spawn", e))?
        {
            let env: Vec<(String, String)> = s
                .env
                .iter()
                .map(|v| (v.key.clone(), v.value.clone()))
                .collect();
            let owner = ProcessOwner {
                owner: Address::GENESIS,
                public: s.public,
            };
            let out = self.spawn(&s.path, &s.args, &env, owner, self.limits.fuel_per_tx)?;
            if out.status != Status::Ok {
                return Err(ExecError::new(
                    "genesis spawn",
                    format!("{}: {:?}", s.path, out.status),
                ));
            }
        }
        // The genesis state stays in the working set and becomes durable with block 1
        // (a crash before that reopens at height 0, and CometBFT repeats InitChain);
        // its root, computed without writing, is the genesis app hash.
        self.write_table()?;
        self.check_host_failures("init chain")?;
        let root = self.ws_do("genesis root", |ws| {
            let height = ws.base_height() + 1;
            ws.root(height)
        })?;
        Ok(root.to_vec())
    }

    fn limits(&self) -> Result<Limits, ExecError> {
        Ok(self.limits.clone())
    }

    fn begin_block(&mut self, ctx: &BlockContext) -> Result<(), ExecError> {
        if let Some(prepared) = &self.prepared {
            return Err(ExecError::new(
                "begin block",
                format!(
                    "block {} was finalized but not committed (starting block {})",
                    prepared.height(),
                    ctx.height
                ),
            ));
        }
        self.ensure_working_set();
        self.block_height = ctx.height;
        self.block_output_left = MAX_BLOCK_OUTPUT_BYTES;
        // Per-block randomness (context::seed), keyed per pid; before the timers run.
        self.table.set_entropy_seed(ctx.seed);
        // Every block, also when its time did not move: sleepers deferred by
        // the last block's bound are due, and what is held is recomputed from
        // the table alone (a restarted node holds nothing from before).
        let logical = ctx.time_unix_nanos.saturating_sub(self.genesis_time_ns);
        {
            let wakes = self
                .table
                .wake_timers(
                    logical,
                    self.limits.fuel_per_tx,
                    self.limits.timer_wakes_per_block as usize,
                )
                .map_err(|e| ExecError::new("advance clock", e))?;
            for wake in &wakes {
                let writes = self.outcome_writes(&wake.outcome);
                self.remember_output(&writes)?;
                if let Some(killed) = &wake.killed {
                    tracing::info!(
                        height = ctx.height,
                        pid = wake.pid,
                        status = ?wake.outcome.status,
                        "killed: its timer wake-up was rejected"
                    );
                    let writes = self.outcome_writes(killed);
                    self.remember_output(&writes)?;
                }
            }
        }
        self.check_host_failures("begin block")
    }

    fn execute(
        &mut self,
        input: &Input<'_>,
        caller: &Address,
        fuel: u64,
    ) -> Result<Outcome, ExecError> {
        let outcome = self.execute_input(input, caller, fuel);
        self.check_host_failures("execute")?;
        outcome
    }

    fn app_record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ExecError> {
        let guard = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(ws) => ws.get_meta(key).map_err(err("read app record")),
            None => self.store.latest().get_meta_bytes(key),
        }
    }

    fn put_app_record(&mut self, key: &[u8], value: &[u8]) -> Result<(), ExecError> {
        self.ws_do("write app record", |ws| {
            ws.put_meta(key, value);
            Ok(())
        })
    }

    fn end_block(&mut self) -> Result<AppHash, ExecError> {
        self.check_host_failures("end block")?;
        self.write_table()?;
        self.collect_module_garbage()?;
        let ws = self.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        let ws = ws.ok_or_else(|| ExecError::new("end block", "no working set"))?;
        let prepared = ws
            .prepare_commit(self.block_height)
            .map_err(err("prepare commit"))?;
        let root = prepared.root();
        self.prepared = Some(prepared);
        Ok(root.to_vec())
    }

    fn commit(&mut self) -> Result<Committed, ExecError> {
        let prepared = self
            .prepared
            .take()
            .ok_or_else(|| ExecError::new("commit", "no finalized block to write"))?;
        prepared.write().map_err(err("commit"))?;
        let committed = self.committed()?;
        self.publish()?;
        self.prune_old_heights(committed.height);
        Ok(committed)
    }

    fn live_pids(&self) -> Result<Vec<u64>, ExecError> {
        Ok(self.table.live_pids())
    }

    fn reader(&self) -> Arc<dyn StateReader> {
        self.reader.clone()
    }
}

impl Machine {
    /// Makes the last commit visible to queries; only meaningful right after a
    /// commit (or open), when table and store agree.
    fn publish(&self) -> Result<(), ExecError> {
        self.reader
            .publish(self.committed()?, self.list_processes()?);
        Ok(())
    }

    /// The live table's processes with their committed recent output.
    fn list_processes(&self) -> Result<Vec<ProcessInfo>, ExecError> {
        let snap = self.store.latest();
        let mut out = Vec::new();
        for p in self.table.list() {
            let (state, exit_code) = match &p.state {
                ProcState::Runnable => ("running", None),
                ProcState::Blocked(_) => ("blocked", None),
                ProcState::Exited(c) => ("exited", Some(*c)),
                ProcState::Killed => ("killed", Some(replicode_runtime::process::KILLED_EXIT_CODE)),
            };
            out.push(ProcessInfo {
                pid: p.pid,
                program: p.args.first().cloned().unwrap_or_default(),
                args: p.args.iter().skip(1).cloned().collect(),
                state: state.into(),
                exit_code,
                fuel_used: p.fuel_used,
                recent_output: snap
                    .get_meta_bytes(&keys::recent(p.pid))?
                    .unwrap_or_default(),
                owner: self
                    .owners
                    .get(p.pid)
                    .map(|o| o.owner.owner_name())
                    .unwrap_or_default(),
                public: self.owners.get(p.pid).is_some_and(|o| o.public),
            });
        }
        Ok(out)
    }
}

impl Machine {
    /// An accepted input's output as result writes, within what the block may
    /// still keep: past [`MAX_BLOCK_OUTPUT_BYTES`] a write is cut and marked
    /// truncated, as the runtime marks one cut at the per-input cap.
    fn outcome_writes(&mut self, out: &InputOutcome) -> Vec<Write> {
        if out.status != InputStatus::Ok {
            return Vec::new();
        }
        out.outputs
            .iter()
            .map(|o| {
                let keep = o.bytes.len().min(self.block_output_left);
                self.block_output_left -= keep;
                Write {
                    pid: o.pid,
                    fd: if o.stream == StreamKind::Stderr { 2 } else { 1 },
                    data: o.bytes[..keep].to_vec(),
                    truncated: o.truncated || keep < o.bytes.len(),
                }
            })
            .collect()
    }
}

fn refused(pid: u64, code: Code, reason: String) -> Outcome {
    Outcome {
        status: Status::Refused(code, reason),
        pid,
        writes: vec![],
        exits: vec![],
        fuel_used: 0,
    }
}

/// Process-table refusals become codes; host failures stop the node.
fn refusal(pid: u64, e: ProcessError) -> Result<Outcome, ExecError> {
    let code = match &e {
        ProcessError::NoSuchProcess(_) => Code::UnknownPid,
        ProcessError::Exited { .. } => Code::NotRunning,
        ProcessError::TooManyProcesses { .. }
        | ProcessError::Memory { .. }
        | ProcessError::StdinFull { .. }
        | ProcessError::SpawnArgsTooLarge { .. } => Code::LimitExceeded,
        ProcessError::StdinIsPipe { .. } | ProcessError::PipeTaken { .. } => Code::InvalidField,
        ProcessError::MissingExport(_)
        | ProcessError::Compile(_)
        | ProcessError::Link(_)
        | ProcessError::Instantiate(_)
        | ProcessError::UnknownModule(_) => Code::InvalidProgram,
        _ => return Err(ExecError::new("process table", e)),
    };
    Ok(refused(pid, code, e.to_string()))
}

/// The runtime configuration every validator uses (it is consensus-critical).
///
/// The logical stack is 32,000 slots (1000 KiB of native stack) instead of the
/// runtime default: with wasmtime's `async` feature compiled in (the workspace
/// enables it), wasmtime refuses a `max_wasm_stack` above its 2 MiB
/// `async_stack_size`, and the default limit needs more. See the node report.
pub fn machine_config() -> RuntimeConfig {
    let mut config = RuntimeConfig::default();
    config.limits.max_stack_slots = 32_000;
    config
}

fn table_limits(limits: &Limits) -> TableLimits {
    TableLimits {
        max_processes: usize::try_from(limits.max_processes).unwrap_or(usize::MAX),
        max_memory_bytes: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
        max_output_bytes: MAX_INPUT_OUTPUT_BYTES,
    }
}

/// The guest filesystem's limits from genesis: merkle-fs enforces them, and
/// the WASI layer prices growth only up to them (see `wasi::cost`).
fn guest_fs_limits(limits: &Limits) -> replicode_runtime::fs::FsLimits {
    replicode_runtime::fs::FsLimits {
        max_file_size: limits.max_file_bytes,
        max_total_bytes: limits.storage_quota_bytes,
        max_inodes: limits.max_inodes,
    }
}

fn fs_limits(limits: &Limits) -> merkle_fs::Limits {
    fs::limits(&guest_fs_limits(limits))
}

/// The parent directories and the name of absolute `path`.
fn split_path(path: &str) -> Result<(Vec<&[u8]>, &[u8]), merkle_fs::Error> {
    let mut parts: Vec<&[u8]> = path
        .as_bytes()
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    match parts.pop() {
        Some(name) => Ok((parts, name)),
        None => Err(merkle_fs::Error::Invalid(format!("{path} names no file"))),
    }
}

/// `mkdir -p` of the parents, then create-or-truncate and write.
fn write_path(
    ws: &mut merkle_fs::WorkingSet,
    path: &str,
    bytes: &[u8],
    now_ns: u64,
) -> Result<(), merkle_fs::Error> {
    let (dirs, name) = split_path(path)?;
    let mut dir = merkle_fs::ROOT_INO;
    for d in dirs {
        dir = match ws.lookup(dir, d) {
            Ok(ino) => ino,
            Err(merkle_fs::Error::NotFound(_)) => ws.mkdir(dir, d, now_ns)?,
            Err(e) => return Err(e),
        };
    }
    let ino = match ws.lookup(dir, name) {
        Ok(ino) => {
            ws.set_size(ino, 0, now_ns)?;
            ino
        }
        Err(merkle_fs::Error::NotFound(_)) => ws.create_file(dir, name, now_ns)?,
        Err(e) => return Err(e),
    };
    let mut off = 0usize;
    while off < bytes.len() {
        let n = ws.write(ino, off as u64, &bytes[off..], now_ns)?;
        if n == 0 {
            return Err(merkle_fs::Error::NoSpace(format!("{path}: short write")));
        }
        off += n;
    }
    Ok(())
}

/// Unlinks the file at absolute `path` (no symlinks followed).
fn remove_path(
    ws: &mut merkle_fs::WorkingSet,
    path: &str,
    now_ns: u64,
) -> Result<(), merkle_fs::Error> {
    let (dirs, name) = split_path(path)?;
    let mut dir = merkle_fs::ROOT_INO;
    for d in dirs {
        dir = ws.lookup(dir, d)?;
    }
    ws.unlink(dir, name, now_ns)
}

/// Module validation for CheckTx and FinalizeBlock: the runtime's own checks.
struct WasmValidator {
    config: RuntimeConfig,
}

impl ProgramValidator for WasmValidator {
    fn validate(&self, wasm: &[u8]) -> Result<(), String> {
        replicode_runtime::validate::validate(wasm, &self.config)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// `(key, value)` pairs of metadata records, keys as the caller wrote them.
type MetaRecords = Vec<(Vec<u8>, Vec<u8>)>;

/// Meta reads on any state view, mapped to host errors.
trait MetaRead {
    fn get_meta_bytes(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ExecError>;
    fn list_meta_bytes(&self, prefix: &[u8]) -> Result<MetaRecords, ExecError>;
}

impl MetaRead for merkle_fs::Snapshot {
    fn get_meta_bytes(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ExecError> {
        self.get(&merkle_fs::keys::meta(key))
            .map_err(err("read meta"))
    }
    fn list_meta_bytes(&self, prefix: &[u8]) -> Result<MetaRecords, ExecError> {
        let rows = self
            .scan(&merkle_fs::keys::meta_prefix(prefix))
            .map_err(err("list meta"))?;
        rows.into_iter()
            .map(|(k, v)| {
                let name = merkle_fs::keys::meta_name(&k).ok_or_else(|| {
                    ExecError::new("list meta", format!("undecodable meta key {k:?}"))
                })?;
                Ok((name, v))
            })
            .collect()
    }
}
