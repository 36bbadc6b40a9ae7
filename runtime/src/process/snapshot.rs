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
use super::digest::{Hash, MemoryShadow, PAGE_SIZE};
use super::error::ProcessError;
use super::host::ProcessHost;
use super::image::{decode_memory, encode_memory, MAX_MEMORY};
use super::instance::ProcessInstance;
use super::module::{hex_prefix, ModuleHash, ProcessModule};
use super::table::{Live, Pid, Proc, ProcessInfo, ProcessTable, TableLimits};

const MAGIC: &[u8] = b"RPROCTBL";
/// Memory pages inline (version 1).
const VERSION: u32 = 1;
/// Memory pages kept apart, one record per page (see [`ProcessTable::persist`]).
const PAGED_VERSION: u32 = 2;

/// What a store that keeps each memory page under its own key must write to
/// bring its copy of the table up to date (see [`ProcessTable::persist`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PersistDelta {
    /// The table without memory pages (version 2): rewritten every time.
    pub table: Vec<u8>,
    /// `(pid, page, bytes)` to store, ascending; `None` = a page that became all
    /// zeros, whose record is deleted (a missing page reads as zeros). Pages
    /// that are zero and were never stored are not listed.
    pub pages: Vec<(Pid, u32, Option<Vec<u8>>)>,
    /// Processes that ended, with the pages stored for them: delete those records.
    pub ended: Vec<(Pid, Vec<u32>)>,
}

impl<H: ProcessHost> ProcessTable<H> {
    /// Serializes every process, memory included. Cost: proportional to the
    /// non-zero memory (and one whole-memory comparison per process changed
    /// since the last check, see [`ProcessTable::check_write_tracking`]).
    pub fn snapshot_all(&mut self) -> Result<Vec<u8>, ProcessError> {
        self.check_write_tracking();
        self.encode_table(VERSION)
    }

    /// The changes since the last `persist` for a store that keeps the table
    /// (version 2, no memory) and each non-zero memory page as separate
    /// records: the table, the pages changed since, and the processes ended.
    /// Cost: proportional to the pages changed, not to memory. A process
    /// spawned since the last call has all its pages listed.
    pub fn persist(&mut self) -> Result<PersistDelta, ProcessError> {
        self.check_write_tracking();
        let table = self.encode_table(PAGED_VERSION)?;
        let mut pages = Vec::new();
        for (pid, p) in &mut self.procs {
            let Some(live) = p.live.as_mut() else {
                continue;
            };
            let changed = live.shadow.take_unpersisted();
            let bytes = live.shadow.bytes();
            live.stored.resize(live.shadow.pages(), false);
            for page in changed {
                let start = page as usize * PAGE_SIZE;
                let Some(data) = bytes.get(start..start + PAGE_SIZE) else {
                    continue;
                };
                let nonzero = data.iter().any(|b| *b != 0);
                let was_stored = std::mem::replace(&mut live.stored[page as usize], nonzero);
                if nonzero {
                    pages.push((*pid, page, Some(data.to_vec())));
                } else if was_stored {
                    pages.push((*pid, page, None));
                }
            }
        }
        Ok(PersistDelta {
            table,
            pages,
            ended: std::mem::take(&mut self.ended_pages),
        })
    }

    fn encode_table(&mut self, version: u32) -> Result<Vec<u8>, ProcessError> {
        let mut w = Writer::new();
        w.raw(MAGIC);
        w.u32(version);
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
                    if version == PAGED_VERSION {
                        w.u64(live.shadow.bytes().len() as u64);
                    } else {
                        encode_memory(live.shadow.bytes(), &mut w);
                    }
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
        Self::restore_paged(bytes, env, limits, resolve, |pid, page| {
            Err(format!(
                "page {page} of pid {pid} requested from an inline snapshot"
            ))
        })
    }

    /// Rebuilds a table from [`ProcessTable::snapshot_all`] bytes or from the
    /// table of a [`PersistDelta`]; for the latter, `page(pid, index)` reads a
    /// stored page (`None` = all zeros). The restored table has nothing to
    /// persist until something changes.
    pub fn restore_paged(
        bytes: &[u8],
        env: H::Env,
        limits: TableLimits,
        resolve: impl Fn(&ModuleHash) -> Option<Arc<ProcessModule<H>>>,
        mut page: impl FnMut(Pid, u32) -> Result<Option<Vec<u8>>, String>,
    ) -> Result<Self, ProcessError> {
        let mut r = Reader::new(bytes);
        let version = r.header_versions(MAGIC, &[VERSION, PAGED_VERSION])?;
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
                let memory = if version == PAGED_VERSION {
                    read_pages(&mut r, info.pid, &mut page)?
                } else {
                    decode_memory(&mut r)?
                };
                let mut sr = state_start;
                let inst = ProcessInstance::restore(
                    &module,
                    &table.env,
                    &mut sr,
                    &memory,
                    limits.max_memory_bytes,
                    info.pid,
                )?;
                let mut shadow = MemoryShadow::new(&memory);
                let mut stored = Vec::new();
                if version == PAGED_VERSION {
                    // The store holds exactly the non-zero pages: nothing to write.
                    shadow.take_unpersisted();
                    stored = memory
                        .chunks(PAGE_SIZE)
                        .map(|page| page.iter().any(|b| *b != 0))
                        .collect();
                }
                // From an inline (version 1) snapshot no page record exists yet,
                // so every page stays listed for the next persist.
                Some(Live {
                    shadow,
                    inst,
                    unchecked: false,
                    stored,
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

/// A paged process's memory: its length from the table, its pages from the store.
fn read_pages(
    r: &mut Reader<'_>,
    pid: Pid,
    page: &mut impl FnMut(Pid, u32) -> Result<Option<Vec<u8>>, String>,
) -> Result<Vec<u8>, ProcessError> {
    let len = r.u64("memory length")?;
    if len > MAX_MEMORY || len % 65536 != 0 {
        return Err(ProcessError::Decode(super::codec::DecodeError::Invalid {
            what: "memory length",
            value: len,
        }));
    }
    let mut memory = vec![0u8; len as usize];
    for (index, chunk) in memory.chunks_mut(PAGE_SIZE).enumerate() {
        let stored = page(pid, index as u32).map_err(|reason| ProcessError::Memory {
            pid,
            reason: format!("reading page {index}: {reason}"),
        })?;
        match stored {
            None => {}
            Some(bytes) if bytes.len() == PAGE_SIZE => chunk.copy_from_slice(&bytes),
            Some(bytes) => {
                return Err(ProcessError::Memory {
                    pid,
                    reason: format!("stored page {index} has {} bytes", bytes.len()),
                })
            }
        }
    }
    Ok(memory)
}

/// Skips one `ProcessInstance::encode_state` record.
fn skip_state(r: &mut Reader<'_>) -> Result<(), ProcessError> {
    r.u8("phase")?;
    r.u32("unwind buffer")?;
    super::globals::GlobalValues::decode(r)?;
    r.bytes("host state")?;
    Ok(())
}
