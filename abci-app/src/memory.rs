//! A deterministic in-memory [`Executor`] for this crate's unit tests only.
//!
//! Its "programs" are opaque bytes and its "processes" echo their input in upper
//! case, costing one fuel per byte; the input `loop` burns all fuel. That is
//! enough to exercise ordering, codes, commits and queries without wasm.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};

use crate::account::Address;
use crate::codes::Code;
use crate::executor::{
    AppHash, BlockContext, Committed, ExecError, Executor, FileRead, Input, Outcome, ProcessInfo,
    ProgramValidator, StateReader, Status,
};
use crate::genesis::{GenesisState, Limits};
use crate::result::{Exit, Write};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct World {
    files: BTreeMap<String, Vec<u8>>,
    procs: BTreeMap<u64, ProcessInfo>,
    next_pid: u64,
    limits: Option<Limits>,
    /// App records (accounts, chain id).
    records: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl World {
    fn root(&self) -> AppHash {
        let mut h = Sha256::new();
        for (path, bytes) in &self.files {
            h.update((path.len() as u64).to_be_bytes());
            h.update(path.as_bytes());
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        }
        for (pid, p) in &self.procs {
            h.update(pid.to_be_bytes());
            h.update(p.state.as_bytes());
            h.update(p.fuel_used.to_be_bytes());
        }
        h.update(self.next_pid.to_be_bytes());
        for (key, value) in &self.records {
            h.update((key.len() as u64).to_be_bytes());
            h.update(key);
            h.update((value.len() as u64).to_be_bytes());
            h.update(value);
        }
        h.finalize().to_vec()
    }
}

#[derive(Default)]
pub struct MemoryExecutor {
    working: World,
    history: Arc<History>,
    block: Option<BlockContext>,
}

/// Every committed world, shared with the executor's [`StateReader`].
#[derive(Default)]
struct History(RwLock<Vec<(u64, World)>>);

impl History {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<(u64, World)>> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn last(&self) -> Option<(u64, World)> {
        self.read().last().cloned()
    }
}

impl MemoryExecutor {
    fn last(&self) -> Option<(u64, World)> {
        self.history.last()
    }
}

impl Executor for MemoryExecutor {
    fn committed(&self) -> Result<Committed, ExecError> {
        self.history.committed()
    }

    fn init_chain(
        &mut self,
        genesis: &GenesisState,
        _ctx: &BlockContext,
        records: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<AppHash, ExecError> {
        let mut world = World {
            next_pid: 1,
            limits: Some(genesis.limits.clone()),
            records: records.iter().cloned().collect(),
            ..World::default()
        };
        for f in genesis
            .files()
            .map_err(|e| ExecError::new("init_chain", e))?
        {
            world.files.insert(f.path, f.bytes);
        }
        for p in genesis
            .programs()
            .map_err(|e| ExecError::new("init_chain", e))?
        {
            world.files.insert(p.path, p.bytes);
        }
        self.working = world;
        for s in genesis
            .spawns()
            .map_err(|e| ExecError::new("init_chain", e))?
        {
            let env: Vec<(String, String)> = s
                .env
                .iter()
                .map(|v| (v.key.clone(), v.value.clone()))
                .collect();
            self.execute(
                &Input::Spawn {
                    path: &s.path,
                    args: &s.args,
                    env: &env,
                    public: s.public,
                },
                &Address::GENESIS,
                u64::MAX,
            )?;
        }
        Ok(self.working.root())
    }

    fn limits(&self) -> Result<Limits, ExecError> {
        Ok(self.working.limits.clone().unwrap_or_default())
    }

    fn begin_block(&mut self, ctx: &BlockContext) -> Result<(), ExecError> {
        self.block = Some(ctx.clone());
        Ok(())
    }

    fn app_record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ExecError> {
        Ok(self.working.records.get(key).cloned())
    }

    fn put_app_record(&mut self, key: &[u8], value: &[u8]) -> Result<(), ExecError> {
        self.working.records.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    /// Ownership is the machine's; this executor lets every caller do anything.
    fn execute(
        &mut self,
        input: &Input<'_>,
        _caller: &Address,
        fuel: u64,
    ) -> Result<Outcome, ExecError> {
        let ok = |pid| Outcome {
            status: Status::Ok,
            pid,
            writes: vec![],
            exits: vec![],
            fuel_used: 0,
        };
        let refuse = |pid, code, why: String| Outcome {
            status: Status::Refused(code, why),
            ..ok(pid)
        };
        let w = &mut self.working;
        Ok(match input {
            Input::Install { path, wasm } => {
                w.files.insert(path.to_string(), wasm.to_vec());
                ok(0)
            }
            Input::Spawn { path, args, .. } => {
                if !w.files.contains_key(*path) {
                    return Ok(refuse(
                        0,
                        Code::ProgramNotFound,
                        format!("{path} does not exist"),
                    ));
                }
                let pid = w.next_pid.max(1);
                w.next_pid = pid + 1;
                let info = ProcessInfo {
                    pid,
                    program: path.to_string(),
                    args: args.to_vec(),
                    state: "blocked".into(),
                    exit_code: None,
                    fuel_used: 0,
                    recent_output: vec![],
                    owner: String::new(),
                    public: true,
                };
                w.procs.insert(pid, info);
                ok(pid)
            }
            Input::Stdin { pid, data, .. } => {
                let Some(p) = w.procs.get_mut(pid) else {
                    return Ok(refuse(*pid, Code::UnknownPid, format!("no process {pid}")));
                };
                if p.exit_code.is_some() {
                    return Ok(refuse(
                        *pid,
                        Code::NotRunning,
                        format!("process {pid} has exited"),
                    ));
                }
                if *data == b"loop" {
                    p.fuel_used += fuel;
                    return Ok(Outcome {
                        status: Status::OutOfFuel,
                        fuel_used: fuel,
                        ..ok(*pid)
                    });
                }
                let out = data.to_ascii_uppercase();
                p.fuel_used += data.len() as u64;
                p.recent_output = out.clone();
                Outcome {
                    writes: vec![Write {
                        pid: *pid,
                        fd: 1,
                        data: out,
                        truncated: false,
                    }],
                    fuel_used: data.len() as u64,
                    ..ok(*pid)
                }
            }
            Input::Uninstall { path } => match w.files.remove(*path) {
                Some(_) => ok(0),
                None => refuse(0, Code::ProgramNotFound, format!("{path} is not installed")),
            },
            Input::Kill { pid } => {
                let Some(p) = w.procs.get_mut(pid) else {
                    return Ok(refuse(*pid, Code::UnknownPid, format!("no process {pid}")));
                };
                p.state = "killed".into();
                p.exit_code = Some(137);
                Outcome {
                    exits: vec![Exit {
                        pid: *pid,
                        code: 137,
                    }],
                    ..ok(*pid)
                }
            }
        })
    }

    fn end_block(&mut self) -> Result<AppHash, ExecError> {
        Ok(self.working.root())
    }

    fn commit(&mut self) -> Result<Committed, ExecError> {
        let height = self
            .block
            .as_ref()
            .map(|b| b.height)
            .ok_or_else(|| ExecError::new("commit", "no block"))?;
        self.history
            .0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((height, self.working.clone()));
        self.committed()
    }

    fn live_pids(&self) -> Result<Vec<u64>, ExecError> {
        Ok(self
            .last()
            .map(|(_, w)| {
                w.procs
                    .values()
                    .filter(|p| p.exit_code.is_none())
                    .map(|p| p.pid)
                    .collect()
            })
            .unwrap_or_default())
    }

    fn reader(&self) -> Arc<dyn StateReader> {
        self.history.clone()
    }
}

impl StateReader for History {
    fn committed(&self) -> Result<Committed, ExecError> {
        Ok(self
            .last()
            .map(|(h, w)| Committed {
                height: h,
                app_hash: w.root(),
            })
            .unwrap_or_default())
    }

    fn read_file(
        &self,
        path: &str,
        height: Option<u64>,
        prove: bool,
    ) -> Result<FileRead, ExecError> {
        let entry = match height {
            Some(h) => self.read().iter().find(|(hh, _)| *hh == h).cloned(),
            None => self.last(),
        };
        let Some((h, world)) = entry else {
            return Err(ExecError::new(
                "read_file",
                format!("no committed state at {height:?}"),
            ));
        };
        let contents = world.files.get(path).cloned();
        let proof = prove.then(|| world.root());
        Ok(FileRead {
            height: h,
            contents,
            proof,
        })
    }

    fn processes(&self) -> Result<Vec<ProcessInfo>, ExecError> {
        Ok(self
            .last()
            .map(|(_, w)| w.procs.values().cloned().collect())
            .unwrap_or_default())
    }

    fn app_record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ExecError> {
        Ok(self.last().and_then(|(_, w)| w.records.get(key).cloned()))
    }
}

/// Accepts bytes that start with the wasm magic.
pub struct MagicValidator;

impl ProgramValidator for MagicValidator {
    fn validate(&self, wasm: &[u8]) -> Result<(), String> {
        if wasm.starts_with(b"\0asm") {
            Ok(())
        } else {
            Err("missing the \\0asm magic".into())
        }
    }
}
