//! Whole-table snapshots and state digests.
//!
//! Snapshot layout (version 1, all integers little-endian):
//! ```text
//! "RPROCTBL" u32 version  u64 next_pid  u64 now_ns  u32 count
//! per process, ascending pid:
//!   ProcessInfo (pid, module hash, args, state, pipe ends, fuel used)
//!   u8 live
//!   if live: phase u8, unwind buffer u32, globals, host state (len-prefixed),
//!            memory (length, then non-zero 4 KiB pages with their index)
//! ```
//! Snapshots are taken between inputs, when no process has a live wasm frame:
//! blocked processes are unwound into their memory, so memory + globals + host
//! state is the whole process. The digest hashes the same fields, with the
//! memory replaced by its incremental Merkle root (see [`super::digest`]).

use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::codec::{Reader, Writer};
use super::digest::{Hash, MemoryShadow};
use super::error::ProcessError;
use super::host::ProcessHost;
use super::image::{decode_memory, encode_memory};
use super::instance::ProcessInstance;
use super::module::{hex_prefix, ModuleHash, ProcessModule};
use super::table::{Live, Pid, Proc, ProcessInfo, ProcessTable, TableLimits};

const MAGIC: &[u8] = b"RPROCTBL";
const VERSION: u32 = 1;

impl<H: ProcessHost> ProcessTable<H> {
    /// Serializes every process. Cost: proportional to the non-zero memory (and
    /// one whole-memory comparison per process changed since the last snapshot,
    /// see [`ProcessTable::check_write_tracking`]).
    pub fn snapshot_all(&mut self) -> Result<Vec<u8>, ProcessError> {
        self.check_write_tracking();
        let mut w = Writer::new();
        w.raw(MAGIC);
        w.u32(VERSION);
        w.u64(self.next_pid);
        w.u64(self.now_ns);
        w.u32(self.procs.len() as u32);
        for p in self.procs.values_mut() {
            p.info.encode(&mut w);
            match &mut p.live {
                None => w.u8(0),
                Some(live) => {
                    w.u8(1);
                    live.inst.encode_state(&mut w)?;
                    encode_memory(live.shadow.bytes(), &mut w);
                }
            }
        }
        Ok(w.into_bytes())
    }

    /// Rebuilds a table from [`ProcessTable::snapshot_all`] bytes. `resolve` maps a
    /// module hash to the program compiled in the (possibly fresh) engine.
    pub fn restore(
        bytes: &[u8],
        env: H::Env,
        limits: TableLimits,
        resolve: impl Fn(&ModuleHash) -> Option<Arc<ProcessModule<H>>>,
    ) -> Result<Self, ProcessError> {
        let mut r = Reader::new(bytes);
        r.header(MAGIC, VERSION)?;
        let next_pid = r.u64("next pid")?;
        let now_ns = r.u64("logical time")?;
        let count = r.u32("process count")?;
        let mut table = ProcessTable::new(env, limits);
        table.next_pid = next_pid;
        table.now_ns = now_ns;
        for _ in 0..count {
            let info = ProcessInfo::decode(&mut r)?;
            let module = resolve(&info.module)
                .ok_or_else(|| ProcessError::UnknownModule(hex_prefix(&info.module)))?;
            let live = if r.bool("live flag")? {
                // The state precedes the memory in the stream; read both, then build.
                let state_start = r.clone_position();
                skip_state(&mut r)?;
                let memory = decode_memory(&mut r)?;
                let mut sr = state_start;
                let inst = ProcessInstance::restore(
                    &module,
                    &table.env,
                    &mut sr,
                    &memory,
                    limits.max_memory_bytes,
                    info.pid,
                )?;
                Some(Live {
                    shadow: MemoryShadow::new(&memory),
                    inst,
                    unchecked: false,
                })
            } else {
                None
            };
            if info.pid >= next_pid || table.procs.contains_key(&info.pid) {
                return Err(ProcessError::Decode(super::codec::DecodeError::Invalid {
                    what: "pid",
                    value: info.pid,
                }));
            }
            table.procs.insert(info.pid, Proc { info, module, live });
        }
        r.finish()?;
        Ok(table)
    }

    /// Digest of one process: changes iff its state changes. Re-hashes only the
    /// memory pages changed since the previous digest.
    pub fn process_digest(&mut self, pid: Pid) -> Result<Hash, ProcessError> {
        self.check_write_tracking();
        let p = self
            .procs
            .get_mut(&pid)
            .ok_or(ProcessError::NoSuchProcess(pid))?;
        digest_proc(p)
    }

    /// Digest of the whole table: pid allocation, time and every process digest.
    pub fn digest(&mut self) -> Result<Hash, ProcessError> {
        self.check_write_tracking();
        let mut h = Sha256::new();
        h.update(b"replicode/process-table/v1");
        h.update(self.next_pid.to_le_bytes());
        h.update(self.now_ns.to_le_bytes());
        for p in self.procs.values_mut() {
            h.update(p.info.pid.to_le_bytes());
            h.update(digest_proc(p)?);
        }
        Ok(h.finalize().into())
    }
}

fn digest_proc<H: ProcessHost>(p: &mut Proc<H>) -> Result<Hash, ProcessError> {
    let mut w = Writer::new();
    p.info.encode(&mut w);
    let mut h = Sha256::new();
    h.update(b"replicode/process/v1");
    match p.live.as_mut() {
        None => {
            h.update(w.into_bytes());
            h.update([0]);
        }
        Some(live) => {
            live.inst.encode_state(&mut w)?;
            h.update(w.into_bytes());
            h.update([1]);
            h.update(live.shadow.root());
        }
    }
    Ok(h.finalize().into())
}

/// Skips one `ProcessInstance::encode_state` record.
fn skip_state(r: &mut Reader<'_>) -> Result<(), ProcessError> {
    r.u8("phase")?;
    r.u32("unwind buffer")?;
    super::globals::GlobalValues::decode(r)?;
    r.bytes("host state")?;
    Ok(())
}
