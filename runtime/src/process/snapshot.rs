//! The table's byte formats, restore, and state digests.
//!
//! Version 3 (written; all integers little-endian, see docs/design.md
//! `## Processes` for the full layout and its invariants):
//! ```text
//! header:  "RPROCTBL" u32 version=3  u8 layout (0 paged, 1 inline)
//!          u64 next_pid  u64 now_ns  u32 count  count × u64 pid (ascending)
//! record:  ProcessInfo  u8 live
//!          if live: opt [32] keyed_by  phase u8  unwind buffer u32  globals
//!                   host state (len-prefixed)  u64 memory length
//! paged:   the header alone; each record and each non-zero 4 KiB page is a
//!          record of its own in the store (see [`super::persist`]);
//! inline:  after the header, per pid: the record (len-prefixed), then, if live,
//!          the memory (length, then non-zero pages with their index).
//! ```
//! Versions 1 (one inline blob) and 2 (one blob, memory pages apart) are still
//! read; see [`restore_legacy`]. Snapshots are taken between inputs, when no
//! process has a live wasm frame: blocked processes are unwound into their
//! memory, so memory + globals + host state is the whole process. The digest
//! hashes the same records, with the memory replaced by its incremental
//! Merkle root (see [`super::digest`]).

use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::codec::{DecodeError, Reader, Writer};
use super::digest::{Hash, MemoryShadow, PAGE_SIZE};
use super::error::ProcessError;
use super::host::ProcessHost;
use super::image::{decode_memory, encode_memory, MAX_MEMORY};
use super::instance::ProcessInstance;
use super::module::{hex_prefix, ModuleHash, ProcessModule};
use super::table::{Live, Pid, Proc, ProcessInfo, ProcessTable, TableLimits};

pub(crate) const MAGIC: &[u8] = b"RPROCTBL";
/// One blob, memory pages inline.
const INLINE_V1: u32 = 1;
/// One blob without memory; pages are records of their own.
const PAGED_V2: u32 = 2;
/// A header plus one record per process (pages apart, or all inline).
pub(crate) const RECORDS_V3: u32 = 3;

/// Where a version-3 table keeps its process records and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Header only: process records and pages are separate store records.
    Paged = 0,
    /// Everything in one byte string ([`ProcessTable::snapshot_all`]).
    Inline = 1,
}

/// Reads a process's stored record by pid (`None`: there is none).
pub type RecordSource<'a> = dyn FnMut(Pid) -> Result<Option<Vec<u8>>, String> + 'a;
/// Reads one stored 4 KiB memory page (`None`: all zeros).
pub type PageSource<'a> = dyn FnMut(Pid, u32) -> Result<Option<Vec<u8>>, String> + 'a;

fn invalid(what: &'static str, value: u64) -> ProcessError {
    ProcessError::Decode(DecodeError::Invalid { what, value })
}

impl<H: ProcessHost> ProcessTable<H> {
    /// Serializes every process, memory included (version 3, inline). Cost:
    /// proportional to the non-zero memory (and one whole-memory comparison per
    /// process changed since the last check, see [`ProcessTable::check_write_tracking`]).
    pub fn snapshot_all(&mut self) -> Result<Vec<u8>, ProcessError> {
        self.check_write_tracking();
        let mut w = Writer::new();
        w.raw(&self.encode_header(Layout::Inline));
        for p in self.procs.values_mut() {
            w.bytes(&encode_record(p)?);
            if let Some(live) = &p.live {
                encode_memory(live.shadow.bytes(), &mut w);
            }
        }
        Ok(w.into_bytes())
    }

    /// The version-3 header: table-wide state and the pids of every process.
    pub(crate) fn encode_header(&self, layout: Layout) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(MAGIC);
        w.u32(RECORDS_V3);
        w.u8(layout as u8);
        w.u64(self.next_pid);
        w.u64(self.now_ns);
        w.u32(self.procs.len() as u32);
        for pid in self.procs.keys() {
            w.u64(*pid);
        }
        w.into_bytes()
    }

    /// Rebuilds a table from [`ProcessTable::snapshot_all`] bytes (any version
    /// without separate records). `resolve` maps a module hash to the program
    /// compiled in the (possibly fresh) engine.
    pub fn restore(
        bytes: &[u8],
        env: H::Env,
        limits: TableLimits,
        resolve: impl Fn(&ModuleHash) -> Option<Arc<ProcessModule<H>>>,
    ) -> Result<Self, ProcessError> {
        Self::restore_paged(
            bytes,
            env,
            limits,
            resolve,
            |pid| {
                Err(format!(
                    "record of pid {pid} requested from an inline snapshot"
                ))
            },
            |pid, page| {
                Err(format!(
                    "page {page} of pid {pid} requested from an inline snapshot"
                ))
            },
        )
    }

    /// Rebuilds a table from [`ProcessTable::snapshot_all`] bytes or from what
    /// [`ProcessTable::persist`] wrote: `bytes` is then the stored header (or a
    /// version-2 table), `process(pid)` reads a stored process record and
    /// `page(pid, index)` a stored page (`None` = all zeros). A table restored
    /// from version-3 records has nothing to persist until something changes;
    /// from any other form, its first persist writes every record and page.
    pub fn restore_paged(
        bytes: &[u8],
        env: H::Env,
        limits: TableLimits,
        resolve: impl Fn(&ModuleHash) -> Option<Arc<ProcessModule<H>>>,
        mut process: impl FnMut(Pid) -> Result<Option<Vec<u8>>, String>,
        mut page: impl FnMut(Pid, u32) -> Result<Option<Vec<u8>>, String>,
    ) -> Result<Self, ProcessError> {
        let mut r = Reader::new(bytes);
        let version = r.header_versions(MAGIC, &[INLINE_V1, PAGED_V2, RECORDS_V3])?;
        let mut table = ProcessTable::new(env, limits);
        if version == RECORDS_V3 {
            restore_records(&mut table, &mut r, &resolve, &mut process, &mut page)?;
        } else {
            restore_legacy(&mut table, &mut r, version, &resolve, &mut page)?;
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

/// A process's version-3 record: its table entry and, if live, the seed its
/// random stream is keyed by, its instance state and memory length (the memory
/// itself is kept apart).
pub(crate) fn encode_record<H: ProcessHost>(p: &mut Proc<H>) -> Result<Vec<u8>, ProcessError> {
    let mut w = Writer::new();
    p.info.encode(&mut w);
    match &mut p.live {
        None => w.u8(0),
        Some(live) => {
            w.u8(1);
            match &live.keyed_by {
                None => w.u8(0),
                Some(seed) => {
                    w.u8(1);
                    w.raw(seed);
                }
            }
            live.inst.encode_state(&mut w)?;
            w.u64(live.shadow.bytes().len() as u64);
        }
    }
    Ok(w.into_bytes())
}

fn digest_proc<H: ProcessHost>(p: &mut Proc<H>) -> Result<Hash, ProcessError> {
    let record = encode_record(p)?;
    let mut h = Sha256::new();
    h.update(b"replicode/process/v2");
    h.update((record.len() as u64).to_le_bytes());
    h.update(record);
    if let Some(live) = p.live.as_mut() {
        h.update(live.shadow.root());
    }
    Ok(h.finalize().into())
}

/// A version-3 table: header fields, its pids, then each process.
fn restore_records<H: ProcessHost>(
    table: &mut ProcessTable<H>,
    r: &mut Reader<'_>,
    resolve: &impl Fn(&ModuleHash) -> Option<Arc<ProcessModule<H>>>,
    process: &mut RecordSource<'_>,
    page: &mut PageSource<'_>,
) -> Result<(), ProcessError> {
    let layout = match r.u8("layout")? {
        0 => Layout::Paged,
        1 => Layout::Inline,
        v => return Err(invalid("layout", u64::from(v))),
    };
    table.next_pid = r.u64("next pid")?;
    table.now_ns = r.u64("logical time")?;
    let count = r.u32("process count")?;
    let mut pids = Vec::new();
    for _ in 0..count {
        let pid = r.u64("pid")?;
        if pid >= table.next_pid || pids.last().is_some_and(|&last| pid <= last) {
            return Err(invalid("pid", pid));
        }
        pids.push(pid);
    }
    for pid in pids {
        let stored;
        let record: &[u8] = match layout {
            Layout::Inline => r.bytes("process record")?,
            Layout::Paged => {
                stored = process(pid)
                    .map_err(|reason| ProcessError::Record { pid, reason })?
                    .ok_or_else(|| ProcessError::Record {
                        pid,
                        reason: "missing".into(),
                    })?;
                &stored
            }
        };
        let mut rr = Reader::new(record);
        let info = ProcessInfo::decode(&mut rr)?;
        if info.pid != pid {
            return Err(invalid("record pid", info.pid));
        }
        let module = resolve(&info.module)
            .ok_or_else(|| ProcessError::UnknownModule(hex_prefix(&info.module)))?;
        let live = if rr.bool("live flag")? {
            let keyed_by = if rr.bool("keyed-by flag")? {
                Some(rr.hash("keyed-by seed")?)
            } else {
                None
            };
            let state = rr.clone_position();
            skip_state(&mut rr)?;
            let len = memory_length(rr.u64("memory length")?)?;
            let (memory, paged) = match layout {
                Layout::Inline => {
                    let memory = decode_memory(r)?;
                    if memory.len() as u64 != len {
                        return Err(invalid("inline memory length", memory.len() as u64));
                    }
                    (memory, false)
                }
                Layout::Paged => (read_pages(len, pid, page)?, true),
            };
            let mut live = revive(table, &module, state, &memory, pid, paged)?;
            live.keyed_by = keyed_by;
            Some(live)
        } else {
            None
        };
        rr.finish()?;
        table.procs.insert(pid, Proc { info, module, live });
        if layout == Layout::Paged {
            table.stored_procs.insert(pid);
        } else {
            table.dirty.insert(pid);
        }
    }
    Ok(())
}

/// Versions 1 and 2: one blob holding every process (v1 with its memory, v2
/// with its memory length, the pages being records of their own). They do
/// not say which seed a stream is keyed by: every process is rekeyed at the
/// next seed, as these versions did at every block. No process record is stored yet, so
/// every process is listed for the next persist.
fn restore_legacy<H: ProcessHost>(
    table: &mut ProcessTable<H>,
    r: &mut Reader<'_>,
    version: u32,
    resolve: &impl Fn(&ModuleHash) -> Option<Arc<ProcessModule<H>>>,
    page: &mut PageSource<'_>,
) -> Result<(), ProcessError> {
    table.next_pid = r.u64("next pid")?;
    table.now_ns = r.u64("logical time")?;
    let count = r.u32("process count")?;
    for _ in 0..count {
        let info = ProcessInfo::decode(r)?;
        let pid = info.pid;
        if pid >= table.next_pid || table.procs.contains_key(&pid) {
            return Err(invalid("pid", pid));
        }
        let module = resolve(&info.module)
            .ok_or_else(|| ProcessError::UnknownModule(hex_prefix(&info.module)))?;
        let live = if r.bool("live flag")? {
            // The state precedes the memory in the stream; read both, then build.
            let state = r.clone_position();
            skip_state(r)?;
            let (memory, paged) = if version == PAGED_V2 {
                let len = memory_length(r.u64("memory length")?)?;
                (read_pages(len, pid, page)?, true)
            } else {
                (decode_memory(r)?, false)
            };
            Some(revive(table, &module, state, &memory, pid, paged)?)
        } else {
            None
        };
        table.procs.insert(pid, Proc { info, module, live });
        table.dirty.insert(pid);
    }
    Ok(())
}

/// Builds a live process from its encoded state and memory. With `paged`, the
/// store already holds exactly its non-zero pages (nothing to write);
/// otherwise every page stays listed for the next persist.
fn revive<H: ProcessHost>(
    table: &ProcessTable<H>,
    module: &ProcessModule<H>,
    mut state: Reader<'_>,
    memory: &[u8],
    pid: Pid,
    paged: bool,
) -> Result<Live<H>, ProcessError> {
    let inst = ProcessInstance::restore(
        module,
        &table.env,
        &mut state,
        memory,
        table.limits.max_memory_bytes,
        pid,
    )?;
    let mut shadow = MemoryShadow::new(memory);
    let mut stored = Vec::new();
    if paged {
        shadow.take_unpersisted();
        stored = memory
            .chunks(PAGE_SIZE)
            .map(|page| page.iter().any(|b| *b != 0))
            .collect();
    }
    Ok(Live {
        shadow,
        inst,
        unchecked: false,
        stored,
        keyed_by: None,
    })
}

fn memory_length(len: u64) -> Result<u64, ProcessError> {
    if len > MAX_MEMORY || !len.is_multiple_of(65536) {
        return Err(invalid("memory length", len));
    }
    Ok(len)
}

/// A paged process's memory of `len` bytes, its pages read from the store.
fn read_pages(len: u64, pid: Pid, page: &mut PageSource<'_>) -> Result<Vec<u8>, ProcessError> {
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
