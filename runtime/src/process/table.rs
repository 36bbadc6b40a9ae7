//! The process table: pids, states, pipes, and the inputs the machine accepts.
//!
//! Pids are allocated monotonically from 1 and never reused, so an input aimed
//! at a process that has since exited can never reach a newer one. Exited and
//! killed processes stay in the table (with their exit code, memory freed) so
//! queries and late inputs get a definite answer, until [`ProcessTable::reap`]
//! removes the oldest of them: at most `max_processes` ended ones are kept, so
//! the table's size has a bound whatever clients spawn. A reaped pid is unknown
//! from then on (inputs and queries answer "no such process").

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::codec::{DecodeError, Reader, Writer};
use super::digest::MemoryShadow;
use super::error::ProcessError;
use super::host::{ProcessHost, StreamKind, Wait};
use super::instance::ProcessInstance;
use super::module::{ModuleHash, ProcessModule};
use super::txn::Txn;

/// A process id.
pub type Pid = u64;

/// Exit code reported for killed processes (128 + SIGKILL), as shells do.
pub const KILLED_EXIT_CODE: i32 = 137;

/// Most unread stdin bytes a process may have pending after a stdin input
/// ([`ProcessTable::deliver_stdin`] refuses more). Pending stdin is part of the
/// persisted host state, so without a bound anyone could grow a process that
/// does not read (a sleeper, a server busy elsewhere) by every input, forever.
pub const MAX_PENDING_STDIN: usize = 1 << 20;

/// Most bytes of arguments and environment (each argument, each `key=value`
/// counted with its length) one spawned process may have. They are stored
/// twice in its record (table entry and host state) and rewritten whenever the
/// process changes, so they must stay small.
pub const MAX_SPAWN_ARG_BYTES: usize = 64 << 10;

/// Where a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcState {
    /// Spawned, not run yet (only seen inside an input).
    Runnable,
    /// Suspended in a syscall, waiting for this.
    Blocked(Wait),
    /// Returned from `_start` or called `proc_exit(code)`.
    Exited(i32),
    /// Ended by [`ProcessTable::kill`].
    Killed,
}

impl ProcState {
    pub(crate) fn encode(&self, w: &mut Writer) {
        match self {
            ProcState::Runnable => w.u8(0),
            ProcState::Blocked(wait) => {
                w.u8(1);
                wait.encode(w);
            }
            ProcState::Exited(code) => {
                w.u8(2);
                w.i32(*code);
            }
            ProcState::Killed => w.u8(3),
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8("process state")? {
            0 => ProcState::Runnable,
            1 => ProcState::Blocked(Wait::decode(r)?),
            2 => ProcState::Exited(r.i32("exit code")?),
            3 => ProcState::Killed,
            v => {
                return Err(DecodeError::Invalid {
                    what: "process state",
                    value: u64::from(v),
                })
            }
        })
    }

    /// The exit code if the process has ended.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            ProcState::Exited(c) => Some(*c),
            ProcState::Killed => Some(KILLED_EXIT_CODE),
            _ => None,
        }
    }
}

/// Table-level facts about a process (everything but the live instance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: Pid,
    pub module: ModuleHash,
    pub args: Vec<String>,
    pub state: ProcState,
    /// The process whose stdout feeds this one's stdin.
    pub stdin_from: Option<Pid>,
    /// The process this one's stdout feeds.
    pub stdout_to: Option<Pid>,
    /// Fuel consumed by this process over its life (accepted inputs only).
    pub fuel_used: u64,
}

impl ProcessInfo {
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u64(self.pid);
        w.raw(&self.module);
        w.u32(self.args.len() as u32);
        for a in &self.args {
            w.bytes(a.as_bytes());
        }
        self.state.encode(w);
        encode_opt_pid(w, self.stdin_from);
        encode_opt_pid(w, self.stdout_to);
        w.u64(self.fuel_used);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let pid = r.u64("pid")?;
        let module = r.hash("module hash")?;
        let n = r.u32("arg count")?;
        let mut args = Vec::new();
        for _ in 0..n {
            let a = r.bytes("arg")?;
            args.push(
                String::from_utf8(a.to_vec()).map_err(|_| DecodeError::Invalid {
                    what: "arg utf-8",
                    value: pid,
                })?,
            );
        }
        Ok(ProcessInfo {
            pid,
            module,
            args,
            state: ProcState::decode(r)?,
            stdin_from: decode_opt_pid(r)?,
            stdout_to: decode_opt_pid(r)?,
            fuel_used: r.u64("fuel used")?,
        })
    }
}

fn encode_opt_pid(w: &mut Writer, p: Option<Pid>) {
    match p {
        None => w.u8(0),
        Some(p) => {
            w.u8(1);
            w.u64(p);
        }
    }
}

fn decode_opt_pid(r: &mut Reader<'_>) -> Result<Option<Pid>, DecodeError> {
    Ok(if r.bool("pid present")? {
        Some(r.u64("pid")?)
    } else {
        None
    })
}

/// A running (not ended) process: its instance and the shadow of its memory as
/// of the end of the last accepted input.
pub(crate) struct Live<H: ProcessHost> {
    pub inst: ProcessInstance<H>,
    pub shadow: MemoryShadow,
    /// The shadow was last synced from tracked writes only; the next snapshot or
    /// digest compares the whole memory once to check the tracking.
    pub unchecked: bool,
    /// Per page: whether a paged store holds a record for it (a non-zero page
    /// as of the last [`ProcessTable::persist`]), so only those are deleted.
    pub stored: Vec<bool>,
    /// The block seed the process's random stream is keyed by (`None`: the
    /// stream [`ProcessHost::spawn`] gave it). A process keyed by another seed
    /// than the table's is rekeyed before it next runs (see
    /// [`super::txn::Txn::touch`]), so a new block does not rewrite every process.
    pub keyed_by: Option<[u8; 32]>,
}

pub(crate) struct Proc<H: ProcessHost> {
    pub info: ProcessInfo,
    pub module: Arc<ProcessModule<H>>,
    /// `None` once the process has ended and the input that ended it was accepted.
    pub live: Option<Live<H>>,
}

/// How an input ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputStatus {
    /// Accepted: its effects are applied.
    Ok,
    /// Handling it needed more fuel than its budget; nothing was applied.
    OutOfFuel,
    /// A process trapped while handling it; nothing was applied.
    Trap { pid: Pid, reason: String },
}

/// Bytes a process wrote to an output stream that is not piped to another process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub pid: Pid,
    pub stream: StreamKind,
    pub bytes: Vec<u8>,
    /// The input's output cap ([`TableLimits::max_output_bytes`]) cut this
    /// stream: the process wrote more than `bytes` (it was told all of it was
    /// written, and paid for it). For a stream piped to another process the
    /// record has no bytes and only says its pipe lost data.
    pub truncated: bool,
}

/// Everything one input produced, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputOutcome {
    pub status: InputStatus,
    /// Output attributed to this input (empty when rejected).
    pub outputs: Vec<Output>,
    /// Processes that ended while handling this input (empty when rejected).
    pub exits: Vec<(Pid, i32)>,
    /// Fuel spent, counted even when the input is rejected.
    pub fuel_used: u64,
}

impl InputOutcome {
    /// All stdout bytes of `pid` in this outcome, concatenated.
    pub fn stdout_of(&self, pid: Pid) -> Vec<u8> {
        self.outputs
            .iter()
            .filter(|o| o.pid == pid && o.stream == StreamKind::Stdout)
            .flat_map(|o| o.bytes.clone())
            .collect()
    }
}

/// One process to start: program, arguments (`args[0]` is its name), environment.
pub struct SpawnSpec<H: ProcessHost> {
    pub module: Arc<ProcessModule<H>>,
    pub args: Vec<String>,
    pub vars: Vec<(String, String)>,
    /// What the process sees (its filesystem root, ...).
    pub view: H::View,
}

/// Limits enforced by the table on every process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableLimits {
    /// Most processes alive at once.
    pub max_processes: usize,
    /// Linear memory cap per process; growth past it fails with -1 (deterministic).
    pub max_memory_bytes: usize,
    /// Bytes of output one input may produce, all processes and streams (pipes
    /// between processes included) together; the rest is dropped and marked
    /// ([`Output::truncated`]). Bounds what the host holds per input.
    pub max_output_bytes: usize,
}

impl Default for TableLimits {
    /// 1024 processes of at most 256 MiB each, 1 MiB of output per input.
    fn default() -> Self {
        TableLimits {
            max_processes: 1024,
            max_memory_bytes: 256 << 20,
            max_output_bytes: usize::try_from(crate::config::Limits::default().max_output_bytes)
                .unwrap_or(usize::MAX),
        }
    }
}

/// All processes of one machine. See the module docs of [`crate::process`].
pub struct ProcessTable<H: ProcessHost> {
    pub(crate) env: H::Env,
    pub(crate) limits: TableLimits,
    pub(crate) procs: BTreeMap<Pid, Proc<H>>,
    pub(crate) next_pid: Pid,
    pub(crate) now_ns: u64,
    /// Seed of the current block's randomness; `None` until the machine sets
    /// one, and then processes keep the stream [`ProcessHost::spawn`] gave them.
    /// Not persisted: it only matters within its block (see
    /// [`Self::set_entropy_seed`]).
    pub(crate) entropy_seed: Option<[u8; 32]>,
    /// Processes whose record may differ from the one last persisted: marked
    /// by every change of a process's entry or host state ([`Txn::touch`],
    /// spawns, reaping). Over-marking costs a rewrite; a missed mark would
    /// leave a stale record in the store, so every change goes through touch.
    pub(crate) dirty: BTreeSet<Pid>,
    /// Pids whose record a paged store holds (as of the last persist), so a
    /// removed process is deleted only if it was ever written.
    pub(crate) stored_procs: BTreeSet<Pid>,
    /// Changed pages that write tracking missed, found by the end-of-block
    /// check (a bug if ever nonzero; kept so tests can assert it).
    pub(crate) untracked_pages: u64,
    /// Processes ended since the last [`ProcessTable::persist`], with the pages
    /// a paged store holds for them: it deletes those records.
    pub(crate) ended_pages: Vec<(Pid, Vec<u32>)>,
    /// Due sleepers that must not run now: during a wake-up, the others; for
    /// the rest of the block, those past the per-block bound (see
    /// [`super::timers`]). Recomputed at every block's wake-up, never persisted.
    pub(crate) held: BTreeSet<Pid>,
}

/// The key of `pid`'s random stream under block seed `seed`: distinct per
/// process (same-argument processes do not share bytes) and per block.
pub fn entropy_key(seed: &[u8; 32], pid: Pid) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    h.update(b"replicode/block-entropy/v1");
    h.update(seed);
    h.update(pid.to_le_bytes());
    h.finalize().into()
}

impl<H: ProcessHost> ProcessTable<H> {
    /// An empty table whose processes share `env` (filesystem, seeds).
    pub fn new(env: H::Env, limits: TableLimits) -> Self {
        ProcessTable {
            env,
            limits,
            procs: BTreeMap::new(),
            next_pid: 1,
            now_ns: 0,
            entropy_seed: None,
            dirty: BTreeSet::new(),
            stored_procs: BTreeSet::new(),
            untracked_pages: 0,
            ended_pages: Vec::new(),
            held: BTreeSet::new(),
        }
    }

    /// Changed memory pages write tracking failed to report, as found by the
    /// whole-memory check before each snapshot and digest. Always 0 unless
    /// there is a bug; the check repairs the shadow either way.
    pub fn untracked_pages(&self) -> u64 {
        self.untracked_pages
    }

    /// Compares the whole memory of every process synced from tracked writes
    /// since the last check, so a page tracking missed still reaches the
    /// snapshot and the hash before the block ends: a validator that restarts
    /// from the snapshot must see exactly the memory the others run on.
    pub(crate) fn check_write_tracking(&mut self) {
        for p in self.procs.values_mut() {
            let Some(live) = p.live.as_mut() else {
                continue;
            };
            if !std::mem::replace(&mut live.unchecked, false) {
                continue;
            }
            let missed = live.shadow.sync(live.inst.memory()).changed_pages;
            if missed > 0 {
                self.untracked_pages += missed as u64;
                tracing::error!(
                    pid = p.info.pid,
                    pages = missed,
                    "write tracking missed changed memory pages (repaired by the whole-memory check)"
                );
            }
        }
    }

    /// Starts a new randomness epoch (a block): every live process's stream, and
    /// every process spawned from now on, is keyed by [`entropy_key`]`(seed, pid)`
    /// from its start. Call it between inputs.
    ///
    /// Lazily: a process records the seed its stream is keyed by, and is rekeyed
    /// only when an input first touches it under a different seed — before it
    /// can draw, so it draws what it would if every process were rekeyed here,
    /// but a block rewrites only the processes it ran, not all of them. Setting
    /// the same seed again continues the streams (block seeds differ by height).
    ///
    /// The seed is not part of the persisted table (after the block nothing
    /// depends on it): after a restore, set it before the next input, as the
    /// machine does at the start of every block.
    pub fn set_entropy_seed(&mut self, seed: [u8; 32]) {
        self.entropy_seed = Some(seed);
    }

    /// Rekeys `pid`'s stream if it is keyed by another seed than the current
    /// one (see [`Self::set_entropy_seed`]); called before an input first
    /// changes it.
    pub(crate) fn bring_entropy_up_to_date(&mut self, pid: Pid) {
        let Some(seed) = self.entropy_seed else {
            return;
        };
        let Some(live) = self.procs.get_mut(&pid).and_then(|p| p.live.as_mut()) else {
            return;
        };
        if live.keyed_by != Some(seed) {
            live.inst.host_mut().reseed_entropy(entropy_key(&seed, pid));
            live.keyed_by = Some(seed);
        }
    }

    /// The shared environment.
    pub fn env(&self) -> &H::Env {
        &self.env
    }

    /// Current logical time in nanoseconds.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// Every process, by ascending pid.
    pub fn list(&self) -> Vec<ProcessInfo> {
        self.procs.values().map(|p| p.info.clone()).collect()
    }

    /// One process.
    pub fn info(&self, pid: Pid) -> Option<&ProcessInfo> {
        self.procs.get(&pid).map(|p| &p.info)
    }

    /// Pids of processes that have not ended.
    pub fn live_pids(&self) -> Vec<Pid> {
        self.procs
            .values()
            .filter(|p| p.info.state.exit_code().is_none())
            .map(|p| p.info.pid)
            .collect()
    }

    /// Starts `module` as a new process and runs the machine until it is quiet.
    ///
    /// With `stdin_from = Some(a)`, the new process's stdin is process `a`'s
    /// stdout (a pipe); bytes `a` writes afterwards go to it instead of being
    /// reported, and its stdin ends when `a` ends.
    pub fn spawn(
        &mut self,
        module: Arc<ProcessModule<H>>,
        args: &[String],
        vars: &[(String, String)],
        stdin_from: Option<Pid>,
        fuel: u64,
    ) -> Result<(Pid, InputOutcome), ProcessError> {
        self.spawn_with_view(module, args, vars, H::View::default(), stdin_from, fuel)
    }

    /// [`ProcessTable::spawn`] of a process that sees `view`.
    pub fn spawn_with_view(
        &mut self,
        module: Arc<ProcessModule<H>>,
        args: &[String],
        vars: &[(String, String)],
        view: H::View,
        stdin_from: Option<Pid>,
        fuel: u64,
    ) -> Result<(Pid, InputOutcome), ProcessError> {
        let spec = SpawnSpec {
            module,
            args: args.to_vec(),
            vars: vars.to_vec(),
            view,
        };
        let (pids, outcome) = self.spawn_pipeline(vec![spec], stdin_from, fuel)?;
        Ok((pids.first().copied().unwrap_or(self.next_pid), outcome))
    }

    /// Starts `specs[0] | specs[1] | ...` as one input, like a shell pipeline:
    /// each process's stdout feeds the next one's stdin. All are created before
    /// any runs, so a producer that writes everything at once loses nothing.
    /// `stdin_from` optionally feeds the first one from an existing process.
    pub fn spawn_pipeline(
        &mut self,
        specs: Vec<SpawnSpec<H>>,
        stdin_from: Option<Pid>,
        fuel: u64,
    ) -> Result<(Vec<Pid>, InputOutcome), ProcessError> {
        if self.live_pids().len() + specs.len() > self.limits.max_processes {
            return Err(ProcessError::TooManyProcesses {
                max: self.limits.max_processes,
            });
        }
        for spec in &specs {
            let bytes = spawn_arg_bytes(&spec.args, &spec.vars);
            if bytes > MAX_SPAWN_ARG_BYTES {
                return Err(ProcessError::SpawnArgsTooLarge {
                    bytes,
                    max: MAX_SPAWN_ARG_BYTES,
                });
            }
        }
        let producer_ended = match stdin_from {
            None => false,
            Some(from) => {
                let p = self
                    .procs
                    .get(&from)
                    .ok_or(ProcessError::NoSuchProcess(from))?;
                if let Some(consumer) = p.info.stdout_to {
                    return Err(ProcessError::PipeTaken {
                        producer: from,
                        consumer,
                    });
                }
                p.info.state.exit_code().is_some()
            }
        };
        // Instantiate everything first, inside the input's savepoint: building a
        // host opens its preopened directories (an open count in the
        // filesystem), so a failure here must roll that back to change nothing.
        let mut txn = Txn::begin(self);
        let mut built = Vec::with_capacity(specs.len());
        for (pid, spec) in (self.next_pid..).zip(specs) {
            let host = H::spawn(&self.env, &spec.args, &spec.vars, &spec.view)
                .map_err(ProcessError::Instantiate)
                .and_then(|mut host| {
                    if let Some(seed) = &self.entropy_seed {
                        host.reseed_entropy(entropy_key(seed, pid));
                    }
                    ProcessInstance::spawn(&spec.module, host, self.limits.max_memory_bytes)
                });
            let inst = match host {
                Ok(inst) => inst,
                Err(e) => {
                    txn.abandon(self);
                    return Err(e);
                }
            };
            let shadow = MemoryShadow::new(inst.memory());
            built.push((spec, inst, shadow));
        }
        let first = self.next_pid;
        let count = built.len() as u64;
        let pids: Vec<Pid> = (first..first + count).collect();
        for (i, (spec, inst, shadow)) in built.into_iter().enumerate() {
            let pid = first + i as u64;
            let from = if i == 0 { stdin_from } else { Some(pid - 1) };
            txn.record_spawn(self, pid, if i == 0 { stdin_from } else { None })?;
            let info = ProcessInfo {
                pid,
                module: *spec.module.hash(),
                args: spec.args,
                state: ProcState::Runnable,
                stdin_from: from,
                stdout_to: (i as u64 + 1 < count).then_some(pid + 1),
                fuel_used: 0,
            };
            let mut entry = Proc {
                info,
                module: spec.module,
                live: Some(Live {
                    inst,
                    shadow,
                    unchecked: false,
                    stored: Vec::new(),
                    keyed_by: self.entropy_seed,
                }),
            };
            if i == 0 && producer_ended {
                if let Some(live) = entry.live.as_mut() {
                    live.inst.host_mut().close_stdin();
                }
            }
            self.procs.insert(pid, entry);
        }
        self.next_pid = first + count;
        if let (Some(from), false, Some(&head)) = (stdin_from, producer_ended, pids.first()) {
            if let Some(p) = self.procs.get_mut(&from) {
                p.info.stdout_to = Some(head);
            }
        }
        let outcome = self.finish_input(txn, fuel)?;
        Ok((pids, outcome))
    }

    /// Appends `bytes` to `pid`'s stdin (and ends it if `eof`), then runs the
    /// machine until it is quiet.
    pub fn deliver_stdin(
        &mut self,
        pid: Pid,
        bytes: &[u8],
        eof: bool,
        fuel: u64,
    ) -> Result<InputOutcome, ProcessError> {
        let p = self
            .procs
            .get(&pid)
            .ok_or(ProcessError::NoSuchProcess(pid))?;
        if let Some(code) = p.info.state.exit_code() {
            return Err(ProcessError::Exited { pid, code });
        }
        if let Some(from) = p.info.stdin_from {
            return Err(ProcessError::StdinIsPipe { pid, from });
        }
        let pending = p.live.as_ref().map_or(0, |l| l.inst.host().stdin_pending());
        if pending.saturating_add(bytes.len()) > MAX_PENDING_STDIN {
            return Err(ProcessError::StdinFull {
                pid,
                pending,
                bytes: bytes.len(),
                max: MAX_PENDING_STDIN,
            });
        }
        let mut txn = Txn::begin(self);
        txn.touch(self, pid)?;
        if let Some(live) = self.procs.get_mut(&pid).and_then(|p| p.live.as_mut()) {
            live.inst.host_mut().push_stdin(bytes);
            if eof {
                live.inst.host_mut().close_stdin();
            }
        }
        self.finish_input(txn, fuel)
    }

    /// Ends `pid` (exit code [`KILLED_EXIT_CODE`]); a process reading its stdout
    /// sees end of input. Runs the machine until it is quiet.
    pub fn kill(&mut self, pid: Pid, fuel: u64) -> Result<InputOutcome, ProcessError> {
        let p = self
            .procs
            .get(&pid)
            .ok_or(ProcessError::NoSuchProcess(pid))?;
        if let Some(code) = p.info.state.exit_code() {
            return Err(ProcessError::Exited { pid, code });
        }
        let mut txn = Txn::begin(self);
        txn.touch(self, pid)?;
        let mut exits = std::mem::take(&mut txn.exits);
        self.end_process(&mut txn, pid, ProcState::Killed, &mut exits)?;
        txn.exits = exits;
        self.finish_input(txn, fuel)
    }

    /// Moves logical time forward by `delta_ns` and runs processes whose
    /// deadlines passed.
    pub fn advance_time(&mut self, delta_ns: u64, fuel: u64) -> Result<InputOutcome, ProcessError> {
        let txn = Txn::begin(self);
        self.now_ns = self.now_ns.saturating_add(delta_ns);
        self.finish_input(txn, fuel)
    }

    /// Sets logical time to `now_ns` (block time); time never goes backwards.
    pub fn set_time(&mut self, now_ns: u64, fuel: u64) -> Result<InputOutcome, ProcessError> {
        let delta = now_ns.saturating_sub(self.now_ns);
        self.advance_time(delta, fuel)
    }

    /// Removes the oldest ended processes (lowest pids) until at most
    /// `max_processes` ended ones remain, and returns their pids so the caller
    /// can drop what it keeps per process (recent output). Their records go
    /// with the next [`Self::persist`]. Call it between inputs (the machine
    /// does at the end of every block); a reaped pid is unknown from then on.
    /// A live process whose pipe reader was reaped keeps writing into nothing,
    /// as into an ended reader.
    pub fn reap(&mut self) -> Vec<Pid> {
        let ended: Vec<Pid> = self
            .procs
            .values()
            .filter(|p| p.live.is_none() && p.info.state.exit_code().is_some())
            .map(|p| p.info.pid)
            .collect();
        let excess = ended.len().saturating_sub(self.limits.max_processes);
        let reaped = ended[..excess].to_vec();
        for pid in &reaped {
            self.procs.remove(pid);
            self.dirty.insert(*pid);
        }
        reaped
    }

    /// Marks `pid` ended and closes the stdin of the process it feeds.
    pub(crate) fn end_process(
        &mut self,
        txn: &mut Txn,
        pid: Pid,
        state: ProcState,
        exits: &mut Vec<(Pid, i32)>,
    ) -> Result<(), ProcessError> {
        let consumer = match self.procs.get_mut(&pid) {
            Some(p) => {
                p.info.state = state;
                if let Some(live) = p.live.as_mut() {
                    live.inst.host_mut().on_exit();
                }
                exits.push((pid, state.exit_code().unwrap_or(KILLED_EXIT_CODE)));
                p.info.stdout_to
            }
            None => return Err(ProcessError::NoSuchProcess(pid)),
        };
        if let Some(c) = consumer {
            txn.touch(self, c)?;
            if let Some(live) = self.procs.get_mut(&c).and_then(|p| p.live.as_mut()) {
                live.inst.host_mut().close_stdin();
            }
        }
        Ok(())
    }
}

/// What [`MAX_SPAWN_ARG_BYTES`] counts: every argument and every `key=value`.
fn spawn_arg_bytes(args: &[String], vars: &[(String, String)]) -> usize {
    let args: usize = args.iter().map(String::len).sum();
    let vars: usize = vars.iter().map(|(k, v)| k.len() + 1 + v.len()).sum();
    args + vars
}
