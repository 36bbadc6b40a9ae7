//! What a block writes: the header, the records of the processes it changed,
//! and the memory pages it changed.
//!
//! Why per-process records: one record for the whole table made every block
//! re-encode and rewrite every process (with large arguments, hundreds of MiB
//! of store after a few blocks). Now a process's record is rewritten only when
//! something changed it, which every change announces by marking it dirty
//! (see [`super::txn::Txn::touch`]); the header (time, pid counter, the pid
//! list) is small and rewritten every time.

use super::digest::PAGE_SIZE;
use super::error::ProcessError;
use super::host::ProcessHost;
use super::snapshot::{encode_record, Layout};
use super::table::{Pid, ProcessTable};

/// What a store that keeps each process and each memory page under its own
/// key must write to bring its copy of the table up to date.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PersistDelta {
    /// The table's header (version 3): rewritten every time.
    pub table: Vec<u8>,
    /// `(pid, record)` to store, ascending; `None` = a process removed from the
    /// table (reaped) whose record the store holds: delete it.
    pub processes: Vec<(Pid, Option<Vec<u8>>)>,
    /// `(pid, page, bytes)` to store, ascending; `None` = a page that became all
    /// zeros, whose record is deleted (a missing page reads as zeros). Pages
    /// that are zero and were never stored are not listed.
    pub pages: Vec<(Pid, u32, Option<Vec<u8>>)>,
    /// Processes that ended, with the pages stored for them: delete those records.
    pub ended: Vec<(Pid, Vec<u32>)>,
}

/// The header and every `(pid, record)`, ascending (see
/// [`ProcessTable::stored_records`]).
pub type StoredRecords = (Vec<u8>, Vec<(Pid, Vec<u8>)>);

impl<H: ProcessHost> ProcessTable<H> {
    /// The changes since the last `persist` for a store that keeps the header,
    /// each process record and each non-zero memory page as separate records.
    /// Cost: proportional to the processes and pages changed, plus the header
    /// (8 bytes per process). A process spawned since the last call has its
    /// record and all its pages listed.
    pub fn persist(&mut self) -> Result<PersistDelta, ProcessError> {
        self.check_write_tracking();
        let table = self.encode_header(Layout::Paged);
        let mut processes = Vec::new();
        for &pid in &self.dirty {
            match self.procs.get_mut(&pid) {
                Some(p) => processes.push((pid, Some(encode_record(p)?))),
                None if self.stored_procs.contains(&pid) => processes.push((pid, None)),
                None => {}
            }
        }
        self.dirty.clear();
        for (pid, record) in &processes {
            match record {
                Some(_) => self.stored_procs.insert(*pid),
                None => self.stored_procs.remove(pid),
            };
        }
        Ok(PersistDelta {
            table,
            processes,
            pages: self.changed_pages(),
            ended: std::mem::take(&mut self.ended_pages),
        })
    }

    /// Every record a paged store should hold for this table right now — the
    /// header and each process's record — encoded from scratch. What
    /// [`Self::persist`] wrote since the table was created or restored must add
    /// up to exactly this; tests check that no change escaped the dirty marks.
    pub fn stored_records(&mut self) -> Result<StoredRecords, ProcessError> {
        let header = self.encode_header(Layout::Paged);
        let mut records = Vec::with_capacity(self.procs.len());
        for (pid, p) in &mut self.procs {
            records.push((*pid, encode_record(p)?));
        }
        Ok((header, records))
    }

    /// Pages changed since the last persist, as store operations.
    fn changed_pages(&mut self) -> Vec<(Pid, u32, Option<Vec<u8>>)> {
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
        pages
    }
}
