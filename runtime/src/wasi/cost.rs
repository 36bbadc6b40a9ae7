//! What host calls cost, in fuel: the one place the WASI cost model lives.
//!
//! Why: wasm pays one fuel per operator, but a single host call can copy a
//! gigabyte, generate megabytes of randomness or rewrite thousands of storage
//! chunks. Every call therefore pays [`CALL`] plus a price per unit of work it
//! does — bytes, iovecs, directory entries, path components, storage chunks and
//! records — and it pays *before* doing the work, so a call the guest cannot
//! afford does nothing and ends the run out of fuel (see [`Meter`]).
//!
//! Calibration (docs/determinism.md, "Host-call costs", with the measurements):
//! wasm runs ~2–5 fuel per nanosecond on this kind of machine (a tight loop
//! measured 0.22 ns/fuel), so a price is about four times the nanoseconds of
//! host work per unit, rounded, so that no host call buys more time per unit
//! of fuel than wasm does. A byte copy (memcpy) is priced like `memory.copy`.
//! Prices only ever depend on the call's arguments and on filesystem state every
//! validator shares, so the fuel a guest uses is identical everywhere.

use std::cell::Cell;

use crate::errno::Errno;
use crate::fs::{FsLimits, FsUsage};

/// Every host call: the trampoline, fuel in and out, finding guest memory, the
/// fd table (a trivial call measured ~140 ns).
pub const CALL: u64 = 500;
/// Per iovec: its bounds check and one storage or sink call.
pub const IOVEC: u64 = 16;
/// Per byte copied between guest memory and the host (pipes, captured output,
/// file reads, args/environ, readlink, readdir records).
pub const COPY_BYTE: u64 = 1;
/// Per byte of `random_get` (ChaCha20 keystream, ~1.4 ns/byte measured).
pub const RANDOM_BYTE: u64 = 6;
/// Per byte written to a file or zero-filled by growing one: copied into the
/// working set, undo-logged, hashed at commit (merkle-fs: ~9 ns/byte measured
/// into the working set, ~1.5 ns/byte of SHA-256).
pub const STORE_BYTE: u64 = 16;
/// Per storage chunk ([`STORAGE_CHUNK`] bytes) a write, resize or delete touches:
/// a read-modify-write of the chunk, a working-set key, a Merkle update at commit.
pub const CHUNK_WRITE: u64 = 100_000;
/// Per storage chunk a read touches, and per iovec of a file read (each is one
/// storage read: a working-set or RocksDB get).
pub const CHUNK_READ: u64 = 8_000;
/// Per metadata record written: an inode (times, size, open count) or an entry;
/// also per iovec of a file write (each is one storage write of the inode).
/// (`mkdir`, three records, measured ~9 µs on merkle-fs.)
pub const RECORD_WRITE: u64 = 10_000;
/// Creating, removing or renaming a name writes the entry, the inode and the
/// directory's inode.
pub const ENTRY_CHANGE: u64 = 3 * RECORD_WRITE;
/// Per named path component resolved (a lookup and a getattr, ~2 × 0.3 µs).
pub const LOOKUP: u64 = 3_000;
/// Per `.` or `..` component (no storage access).
pub const DOT_COMPONENT: u64 = 10;
/// Per entry of a directory listing built by `fd_readdir` (it is rebuilt on every
/// call; ~330 ns per entry measured on merkle-fs, the record copied out included).
pub const DIR_ENTRY: u64 = 1_500;
/// Per inode of the filesystem when a directory is renamed: the storage walks the
/// target's ancestors to refuse a move into its own subtree, and the depth is not
/// known beforehand, so the bound (the inode count) is what is charged.
pub const ANCESTOR_STEP: u64 = 1_000;
/// Per `poll_oneoff` subscription (decoding it, a readiness check that may be a
/// getattr, its event).
pub const POLL_SUBSCRIPTION: u64 = 1_000;
/// Per argument or environment string listed.
pub const LIST_ITEM: u64 = 8;

/// The most iovecs one call may pass (Linux's `IOV_MAX`); more is `EINVAL`.
pub const IOV_MAX: u32 = 1024;
/// Bytes of one storage chunk (merkle-fs's `CHUNK_SIZE`).
pub const STORAGE_CHUNK: u64 = 4096;
/// Most bytes handed to the filesystem in one `write` call. Why: when a write
/// hits the quota, the storage finds how much fits by a binary search of trial
/// writes (O(n log n) for n bytes); pieces bound that search, and a short piece
/// pays [`quota_probe`] after the fact.
pub const WRITE_PIECE: usize = 64 * 1024;

/// The errno a failed charge returns inside host code. The guest never sees it:
/// the linker adapter turns every call whose charge failed into `Trap::OutOfFuel`.
pub const OUT_OF_FUEL: Errno = Errno::Canceled;

/// The fuel budget of the host call in progress.
///
/// The linker adapter starts it with the store's remaining fuel, host code
/// charges against it before working, and the adapter writes what is left back
/// to the store. Interior mutability lets code that holds the filesystem lock
/// (borrowed from the context) still charge.
#[derive(Debug)]
pub struct Meter {
    left: Cell<u64>,
    exhausted: Cell<bool>,
}

impl Default for Meter {
    fn default() -> Self {
        Meter::unlimited()
    }
}

impl Meter {
    /// A meter that never runs out: outside a metered call (host-side cleanup
    /// such as closing every fd at exit) and in unit tests.
    pub fn unlimited() -> Meter {
        Meter {
            left: Cell::new(u64::MAX),
            exhausted: Cell::new(false),
        }
    }

    /// Starts a call with `fuel` to spend.
    pub(crate) fn start(&self, fuel: u64) {
        self.left.set(fuel);
        self.exhausted.set(false);
    }

    /// Ends a call: returns the fuel left and whether a charge failed, and goes
    /// back to unlimited.
    pub(crate) fn finish(&self) -> (u64, bool) {
        let result = (self.left.get(), self.exhausted.get());
        self.start(u64::MAX);
        result
    }

    /// Takes `fuel` from the budget, or empties it and fails with [`OUT_OF_FUEL`].
    pub fn charge(&self, fuel: u64) -> Result<(), Errno> {
        match self.left.get().checked_sub(fuel) {
            Some(left) if !self.exhausted.get() => {
                self.left.set(left);
                Ok(())
            }
            _ => {
                self.left.set(0);
                self.exhausted.set(true);
                Err(OUT_OF_FUEL)
            }
        }
    }
}

/// `count` units at `price` each (saturating: an absurd count is unaffordable).
pub fn per(count: u64, price: u64) -> u64 {
    count.saturating_mul(price)
}

/// Storage chunks overlapping the byte range `[start, end)`.
pub fn chunks(start: u64, end: u64) -> u64 {
    if end <= start {
        return 0;
    }
    (end - 1) / STORAGE_CHUNK - start / STORAGE_CHUNK + 1
}

/// `EINVAL` for more than [`IOV_MAX`] iovecs, else the price of walking them.
pub fn iovecs(count: u32) -> Result<u64, Errno> {
    if count > IOV_MAX {
        return Err(Errno::Inval);
    }
    Ok(per(u64::from(count), IOVEC))
}

/// Reading `len` bytes of a file at `offset`.
pub fn file_read(offset: u64, len: u64) -> u64 {
    per(len, COPY_BYTE).saturating_add(per(chunks(offset, offset.saturating_add(len)), CHUNK_READ))
}

/// Where growing a file from `size` to `end` would stop: at the file size
/// limit and at the quota, when the limits are known (the filesystem refuses
/// the rest with `EFBIG`/`ENOSPC` before doing any work, so it is not charged).
fn growth_end(size: u64, end: u64, limits: Option<&FsLimits>, usage: FsUsage) -> u64 {
    match limits {
        None => end,
        Some(l) => {
            let room = l.max_total_bytes.saturating_sub(usage.bytes);
            end.min(l.max_file_size).min(size.saturating_add(room))
        }
    }
}

/// Writing `len` bytes at `offset` of a file of `size` bytes: the bytes, the
/// zeros of any hole before them, the chunks touched and the inode.
pub fn file_write(
    size: u64,
    offset: u64,
    len: u64,
    limits: Option<&FsLimits>,
    usage: FsUsage,
) -> u64 {
    let end = offset.saturating_add(len);
    let stored_end = growth_end(size, end, limits, usage).max(size.min(end));
    if stored_end <= offset {
        // Past the limits: refused before any byte is stored.
        return RECORD_WRITE;
    }
    let first = offset.min(size).min(stored_end);
    per(stored_end - first, STORE_BYTE)
        .saturating_add(per(chunks(first, stored_end), CHUNK_WRITE))
        .saturating_add(RECORD_WRITE)
}

/// Resizing a file from `size` to `new_size`: zero-filled chunks when growing,
/// deleted chunks when shrinking, and the inode. A resize is all or nothing: one
/// the limits refuse (`EFBIG`/`ENOSPC`) does no work and pays only the inode.
pub fn resize(size: u64, new_size: u64, limits: Option<&FsLimits>, usage: FsUsage) -> u64 {
    let work = if new_size >= size {
        if growth_end(size, new_size, limits, usage) < new_size {
            return RECORD_WRITE;
        }
        per(new_size - size, STORE_BYTE).saturating_add(per(chunks(size, new_size), CHUNK_WRITE))
    } else {
        per(chunks(new_size, size), CHUNK_WRITE)
    };
    work.saturating_add(RECORD_WRITE)
}

/// Freeing a file of `size` bytes (its last name and handle gone).
pub fn free_file(size: u64) -> u64 {
    per(chunks(0, size), CHUNK_WRITE)
}

/// What a write piece that came back short (or failed on the quota) cost the
/// storage's binary search: about log2(n) + 1 trial writes of up to n bytes.
pub fn quota_probe(piece: usize) -> u64 {
    let n = piece as u64;
    let trials = u64::from(u64::BITS - n.leading_zeros()) + 1;
    per(n.saturating_mul(trials), STORE_BYTE)
}

/// Listing `strings` (args or environ): each string and its bytes.
pub fn strings(list: &[Vec<u8>]) -> u64 {
    list.iter().fold(0u64, |acc, s| {
        acc.saturating_add(LIST_ITEM)
            .saturating_add(per(s.len() as u64 + 1, COPY_BYTE))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_charge_empties_the_budget_and_stays_failed() {
        let m = Meter::unlimited();
        m.start(100);
        assert_eq!(m.charge(60), Ok(()));
        assert_eq!(m.charge(41), Err(OUT_OF_FUEL));
        assert_eq!(m.charge(0), Err(OUT_OF_FUEL), "exhaustion is sticky");
        assert_eq!(m.finish(), (0, true));
        assert_eq!(m.charge(u64::MAX - 1), Ok(()), "back to unlimited");
    }

    #[test]
    fn chunk_counts_cover_partial_chunks() {
        assert_eq!(chunks(0, 0), 0);
        assert_eq!(chunks(0, 1), 1);
        assert_eq!(chunks(4095, 4097), 2);
        assert_eq!(chunks(4096, 8192), 1);
        assert_eq!(chunks(0, 1 << 30), 1 << 18);
    }

    #[test]
    fn growth_is_charged_up_to_the_limits_only() {
        let limits = FsLimits {
            max_file_size: 1 << 20,
            max_total_bytes: 1 << 30,
            max_inodes: 10,
        };
        let usage = FsUsage::default();
        assert_eq!(
            resize(0, 1 << 40, Some(&limits), usage),
            RECORD_WRITE,
            "refused"
        );
        assert!(resize(0, 1 << 20, Some(&limits), usage) > per(1 << 20, STORE_BYTE));
        assert!(
            resize(0, 1 << 40, None, usage) > 1 << 40,
            "unknown limits: all of it"
        );
        // A hole before the bytes is zero-filled, so it is paid like bytes.
        let hole = file_write(0, 1 << 20, 1, None, usage);
        assert!(hole >= per(1 << 20, STORE_BYTE));
        // Overwriting inside the file pays only the bytes and their chunk.
        assert_eq!(
            file_write(8192, 0, 10, None, usage),
            10 * STORE_BYTE + CHUNK_WRITE + RECORD_WRITE
        );
    }

    #[test]
    fn iov_max_is_einval() {
        assert_eq!(iovecs(IOV_MAX), Ok(u64::from(IOV_MAX) * IOVEC));
        assert_eq!(iovecs(IOV_MAX + 1), Err(Errno::Inval));
    }
}
