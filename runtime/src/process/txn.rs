//! Atomic inputs: everything an input changes is undone if the input is rejected.
//!
//! Why lazy undo records: an input usually touches one or two processes of
//! many. Before a process is first changed by an input, [`Txn::touch`] records
//! its table entry and its small state (globals, phase, host state such as the
//! fd table and pending stdin). Its memory needs no copy: the process's
//! [`super::digest::MemoryShadow`] already holds the memory as of the end of
//! the last accepted input, so rejecting copies back only the pages that
//! differ. Filesystem changes are undone through a filesystem savepoint.
//!
//! Why accepting is cheap: the shadow catches up by comparing only the pages
//! the input may have written (the store barrier's map plus the host's write
//! log, see [`super::dirty`]), not the whole memory.

use std::collections::BTreeMap;

use super::codec::{Reader, Writer};
use super::error::ProcessError;
use super::host::ProcessHost;
use super::instance::ProcessInstance;
use super::table::{InputOutcome, InputStatus, Output, Pid, ProcessInfo, ProcessTable};
use crate::fs::Savepoint;

struct Undo {
    info: ProcessInfo,
    /// `ProcessInstance::encode_state` bytes, if the process was live.
    live: Option<Vec<u8>>,
}

/// The undo records and the results of one input in progress.
pub(crate) struct Txn {
    savepoint: Savepoint,
    next_pid: Pid,
    now_ns: u64,
    spawned: Vec<Pid>,
    touched: BTreeMap<Pid, Undo>,
    pub fuel_used: u64,
    pub outputs: Vec<Output>,
    /// Output bytes this input may still produce ([`super::TableLimits::max_output_bytes`]).
    pub output_room: usize,
    pub exits: Vec<(Pid, i32)>,
}

impl Txn {
    pub fn begin<H: ProcessHost>(table: &ProcessTable<H>) -> Txn {
        Txn {
            savepoint: H::savepoint(&table.env),
            next_pid: table.next_pid,
            now_ns: table.now_ns,
            spawned: Vec::new(),
            touched: BTreeMap::new(),
            fuel_used: 0,
            outputs: Vec::new(),
            output_room: table.limits.max_output_bytes,
            exits: Vec::new(),
        }
    }

    /// Ends an input that changed nothing but the filesystem (it failed before
    /// touching any process): the filesystem goes back to the savepoint.
    pub fn abandon<H: ProcessHost>(self, table: &mut ProcessTable<H>) {
        H::rollback_to(&table.env, self.savepoint);
        H::release_savepoint(&table.env, self.savepoint);
    }

    /// Records that `pid` is created by this input (removed on rejection); the
    /// producer feeding it, if any, is touched since its pipe end changes.
    pub fn record_spawn<H: ProcessHost>(
        &mut self,
        table: &mut ProcessTable<H>,
        pid: Pid,
        stdin_from: Option<Pid>,
    ) -> Result<(), ProcessError> {
        self.spawned.push(pid);
        table.dirty.insert(pid);
        match stdin_from {
            Some(from) => self.touch(table, from),
            None => Ok(()),
        }
    }

    /// Records `pid`'s state before this input first changes it, and marks its
    /// record for the next persist: every change to a process's entry or host
    /// state goes through here (or is a spawn), which is what keeps
    /// [`ProcessTable::persist`] exact. A stale random stream is rekeyed first
    /// (see [`ProcessTable::set_entropy_seed`]); the undo record then holds the
    /// rekeyed stream, which is what the process would have drawn anyway.
    ///
    /// A pid that is not in the table (a pipe reader since reaped) records
    /// nothing: what would have gone to it is dropped, as for an ended reader.
    pub fn touch<H: ProcessHost>(
        &mut self,
        table: &mut ProcessTable<H>,
        pid: Pid,
    ) -> Result<(), ProcessError> {
        if self.touched.contains_key(&pid) || self.spawned.contains(&pid) {
            return Ok(());
        }
        if !table.procs.contains_key(&pid) {
            return Ok(());
        }
        table.dirty.insert(pid);
        table.bring_entropy_up_to_date(pid);
        let Some(p) = table.procs.get_mut(&pid) else {
            return Ok(());
        };
        let live = match &mut p.live {
            Some(live) => {
                let mut w = Writer::new();
                live.inst.encode_state(&mut w)?;
                Some(w.into_bytes())
            }
            None => None,
        };
        self.touched.insert(
            pid,
            Undo {
                info: p.info.clone(),
                live,
            },
        );
        Ok(())
    }

    /// Keeps the input's effects: shadows catch up with memory, ended
    /// processes release their instance, the filesystem savepoint is released.
    pub fn commit<H: ProcessHost>(self, table: &mut ProcessTable<H>) -> InputOutcome {
        let pids = self.touched.keys().chain(self.spawned.iter());
        for pid in pids {
            if let Some(p) = table.procs.get_mut(pid) {
                if p.info.state.exit_code().is_some() {
                    if let Some(live) = p.live.take() {
                        let stored = (0..live.stored.len() as u32)
                            .filter(|&i| live.stored[i as usize])
                            .collect();
                        table.ended_pages.push((*pid, stored));
                    }
                } else if let Some(live) = p.live.as_mut() {
                    let written = live.inst.take_written_pages();
                    live.shadow.sync_written(live.inst.memory(), &written);
                    live.unchecked = true;
                }
            }
        }
        H::release_savepoint(&table.env, self.savepoint);
        InputOutcome {
            status: InputStatus::Ok,
            outputs: self.outputs,
            exits: self.exits,
            fuel_used: self.fuel_used,
        }
    }

    /// Undoes the input's effects and reports `status`.
    ///
    /// A failure here (rebuilding an instance, restoring memory) is a host
    /// failure reported as [`ProcessError::Undo`], never an answer to the input.
    pub fn rollback<H: ProcessHost>(
        self,
        table: &mut ProcessTable<H>,
        status: InputStatus,
    ) -> Result<InputOutcome, ProcessError> {
        self.undo(table, status)
            .map_err(|e| ProcessError::Undo(Box::new(e)))
    }

    fn undo<H: ProcessHost>(
        self,
        table: &mut ProcessTable<H>,
        status: InputStatus,
    ) -> Result<InputOutcome, ProcessError> {
        for pid in &self.spawned {
            table.procs.remove(pid);
        }
        for (pid, undo) in self.touched {
            let max_memory = table.limits.max_memory_bytes;
            let Some(p) = table.procs.get_mut(&pid) else {
                continue;
            };
            p.info = undo.info;
            let (Some(bytes), Some(live)) = (undo.live, p.live.as_mut()) else {
                continue;
            };
            let mut r = Reader::new(&bytes);
            if live.inst.memory().len() == live.shadow.bytes().len() {
                live.shadow
                    .restore_into(live.inst.memory_mut())
                    .map_err(|e| ProcessError::Memory {
                        pid,
                        reason: e.to_string(),
                    })?;
                live.inst.rewind_state(&table.env, &mut r)?;
                // Every page is back as it was; what was written is moot.
                live.inst.take_written_pages();
            } else {
                // The input grew memory, which wasm cannot shrink: rebuild.
                live.inst = ProcessInstance::restore(
                    &p.module,
                    &table.env,
                    &mut r,
                    live.shadow.bytes(),
                    max_memory,
                    pid,
                )?;
            }
            r.finish()?;
        }
        table.next_pid = self.next_pid;
        table.now_ns = self.now_ns;
        H::rollback_to(&table.env, self.savepoint);
        H::release_savepoint(&table.env, self.savepoint);
        Ok(InputOutcome {
            status,
            outputs: Vec::new(),
            exits: Vec::new(),
            fuel_used: self.fuel_used,
        })
    }
}

impl<H: ProcessHost> ProcessTable<H> {
    /// Runs the machine until quiet under `fuel`, then commits or rolls back.
    pub(crate) fn finish_input(
        &mut self,
        mut txn: Txn,
        fuel: u64,
    ) -> Result<InputOutcome, ProcessError> {
        let status = self.run_until_quiet(&mut txn, fuel)?;
        match status {
            InputStatus::Ok => Ok(txn.commit(self)),
            rejected => txn.rollback(self, rejected),
        }
    }
}
