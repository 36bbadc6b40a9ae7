//! Reserved metadata keys of the machine (merkle-fs meta space), in one place.

pub const LIMITS: &[u8] = b"replicode/limits";
pub const GENESIS_TIME: &[u8] = b"replicode/genesis-time";
pub const SEED: &[u8] = b"replicode/seed";
pub const TABLE: &[u8] = b"replicode/table";
pub const MODULE_PREFIX: &[u8] = b"replicode/module/";
pub const PROGRAM_PREFIX: &[u8] = b"replicode/program/";

/// `replicode/module/<hex source hash>`: the bytes a user installed.
pub fn module(source_hash: &[u8; 32]) -> Vec<u8> {
    let mut k = MODULE_PREFIX.to_vec();
    k.extend_from_slice(hex::encode(source_hash).as_bytes());
    k
}

/// `replicode/program/<absolute path>`: the install record of `path`: its
/// module's source hash (32 bytes), then the installer's address (20). Paths are normalized and NUL-free (tx rules), so the
/// key is unambiguous.
pub fn program(path: &str) -> Vec<u8> {
    let mut k = PROGRAM_PREFIX.to_vec();
    k.extend_from_slice(path.as_bytes());
    k
}

/// `replicode/proc/<pid, 20 digits>`: one process's record (table format v3:
/// its entry and, if live, its instance and host state), rewritten only in
/// blocks that change the process; the table's header stays under [`TABLE`].
pub fn process(pid: u64) -> Vec<u8> {
    format!("replicode/proc/{pid:020}").into_bytes()
}

/// `replicode/mem/<pid, 20 digits>/<page index, 10 digits>`: one 4 KiB page of
/// a live process's memory (absent = all zeros), so a block rewrites only the
/// pages it changed.
pub fn memory_page(pid: u64, page: u32) -> Vec<u8> {
    format!("replicode/mem/{pid:020}/{page:010}").into_bytes()
}

/// `replicode/recent/<pid zero-padded to 20 digits>`, so keys sort by pid.
pub fn recent(pid: u64) -> Vec<u8> {
    format!("replicode/recent/{pid:020}").into_bytes()
}

/// Fixed big-endian encoding for persisted integers.
pub fn encode_u64(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

pub fn decode_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    let n = b.len().min(8);
    a[..n].copy_from_slice(&b[..n]);
    u64::from_be_bytes(a)
}

/// The 32-byte entropy seed (shorter input is zero-padded).
pub fn decode_seed(b: &[u8]) -> [u8; 32] {
    let mut a = [0u8; 32];
    let n = b.len().min(32);
    a[..n].copy_from_slice(&b[..n]);
    a
}
