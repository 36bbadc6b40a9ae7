//! The deterministic scheduler.
//!
//! Order is fixed: passes over the table in ascending pid order, each running
//! every runnable process once until it blocks or ends; passes repeat until one
//! runs nothing. No host threads, no timing: the same table and input always
//! give the same interleaving. Fuel is one budget for the whole input, shared
//! by all processes it wakes.

use super::error::ProcessError;
use super::host::{Captured, ProcessHost, StreamKind};
use super::instance::RunEnd;
use super::table::{InputStatus, Output, Pid, ProcState, ProcessTable};
use super::txn::Txn;

impl<H: ProcessHost> ProcessTable<H> {
    /// True when `pid` would make progress if run now.
    pub(crate) fn is_runnable(&self, pid: Pid) -> bool {
        let Some(p) = self.procs.get(&pid) else {
            return false;
        };
        let Some(live) = p.live.as_ref() else {
            return false;
        };
        if self.held.contains(&pid) {
            return false;
        }
        match p.info.state {
            ProcState::Runnable => true,
            ProcState::Blocked(wait) => {
                (wait.stdin && live.inst.host().stdin_ready())
                    || wait.deadline_ns.is_some_and(|d| d <= self.now_ns)
            }
            ProcState::Exited(_) | ProcState::Killed => false,
        }
    }

    pub(crate) fn run_until_quiet(
        &mut self,
        txn: &mut Txn,
        budget: u64,
    ) -> Result<InputStatus, ProcessError> {
        loop {
            let mut ran = false;
            let pids: Vec<Pid> = self.procs.keys().copied().collect();
            for pid in pids {
                if !self.is_runnable(pid) {
                    continue;
                }
                ran = true;
                txn.touch(self, pid)?;
                let remaining = budget.saturating_sub(txn.fuel_used);
                let now = self.now_ns;
                let Some(p) = self.procs.get_mut(&pid) else {
                    continue;
                };
                let Some(live) = p.live.as_mut() else {
                    continue;
                };
                live.inst.host_mut().set_output_limit(txn.output_room);
                let (end, used) = live.inst.run(remaining, now);
                txn.fuel_used = txn.fuel_used.saturating_add(used);
                p.info.fuel_used = p.info.fuel_used.saturating_add(used);
                self.route_output(txn, pid)?;
                match end {
                    RunEnd::Blocked(wait) => {
                        if let Some(p) = self.procs.get_mut(&pid) {
                            p.info.state = ProcState::Blocked(wait);
                        }
                    }
                    RunEnd::Exited(code) => {
                        let mut exits = std::mem::take(&mut txn.exits);
                        let r = self.end_process(txn, pid, ProcState::Exited(code), &mut exits);
                        txn.exits = exits;
                        r?;
                    }
                    RunEnd::OutOfFuel => return Ok(InputStatus::OutOfFuel),
                    RunEnd::Trap(reason) => return Ok(InputStatus::Trap { pid, reason }),
                }
            }
            if !ran {
                return Ok(InputStatus::Ok);
            }
        }
    }

    /// Sends what `pid` wrote to its pipe reader or to the input's outputs,
    /// keeping at most the input's remaining output room; a stream that lost
    /// bytes is marked once on its output record.
    ///
    /// Bytes written to a pipe whose reader has ended are dropped (the guest is
    /// not told: EPIPE is not modelled).
    fn route_output(&mut self, txn: &mut Txn, pid: Pid) -> Result<(), ProcessError> {
        let Some(p) = self.procs.get_mut(&pid) else {
            return Ok(());
        };
        let consumer = p.info.stdout_to;
        let Some(live) = p.live.as_mut() else {
            return Ok(());
        };
        let written = live.inst.host_mut().take_output();
        for Captured {
            stream,
            mut bytes,
            truncated,
        } in written
        {
            let kept = bytes.len().min(txn.output_room);
            let truncated = truncated || kept < bytes.len();
            bytes.truncate(kept);
            txn.output_room -= kept;
            let record = match (stream, consumer) {
                (StreamKind::Stdout, Some(c)) => {
                    txn.touch(self, c)?;
                    if let Some(cl) = self.procs.get_mut(&c).and_then(|cp| cp.live.as_mut()) {
                        cl.inst.host_mut().push_stdin(&bytes);
                    }
                    if !truncated {
                        continue;
                    }
                    Vec::new()
                }
                _ => bytes,
            };
            match txn
                .outputs
                .last_mut()
                .filter(|o| o.pid == pid && o.stream == stream)
            {
                Some(last) => {
                    last.bytes.extend_from_slice(&record);
                    last.truncated |= truncated;
                }
                None => txn.outputs.push(Output {
                    pid,
                    stream,
                    bytes: record,
                    truncated,
                }),
            }
        }
        Ok(())
    }
}
