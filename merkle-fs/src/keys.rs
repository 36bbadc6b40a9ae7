//! Every byte string this crate persists or hashes is built here, so the layout in
//! `docs/merkle-fs-format.md` has exactly one implementation.
//!
//! Integers are big-endian so byte order equals numeric order (RocksDB iterates in
//! byte order), and heights are fixed-width (zero-padded) for the same reason.
//! Variable-length parts (names, meta keys) are escaped so that no logical key is a
//! prefix of another: `0x00` becomes `0x00 0xFF` and the part ends with `0x00 0x01`.
//! Escaping keeps byte order, so a directory's entries iterate sorted by name.

use crate::Ino;

/// A committed height (= jmt version).
pub type Height = u64;

/// Tag of an inode record key: `0x01 ‖ ino`.
pub const TAG_INODE: u8 = 0x01;
/// Tag of a directory entry key: `0x02 ‖ dir ino ‖ escaped name`.
pub const TAG_DIRENT: u8 = 0x02;
/// Tag of a file chunk key: `0x03 ‖ ino ‖ chunk index`.
pub const TAG_CHUNK: u8 = 0x03;
/// Tag of the node's own state (process table, snapshots): `0x04 ‖ escaped key`.
pub const TAG_META: u8 = 0x04;

/// A logical key: what jmt hashes into its key space and what the value store is
/// ordered by (followed by the height).
pub type LKey = Vec<u8>;

fn escape_into(out: &mut Vec<u8>, part: &[u8]) {
    for &b in part {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
}

fn escape_terminated(out: &mut Vec<u8>, part: &[u8]) {
    escape_into(out, part);
    out.extend_from_slice(&[0x00, 0x01]);
}

/// Reverses [`escape_terminated`] on a slice that holds exactly one escaped part.
fn unescape(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == 0 {
            match bytes.get(i + 1) {
                Some(0xFF) => {
                    out.push(0);
                    i += 2;
                }
                Some(0x01) if i + 2 == bytes.len() => return Some(out),
                _ => return None,
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
    None
}

/// Key of the inode record of `ino`.
pub fn inode(ino: Ino) -> LKey {
    let mut k = Vec::with_capacity(9);
    k.push(TAG_INODE);
    k.extend_from_slice(&ino.to_be_bytes());
    k
}

/// Prefix shared by all entries of directory `dir` (iteration is sorted by name).
pub fn dirent_prefix(dir: Ino) -> LKey {
    let mut k = Vec::with_capacity(9);
    k.push(TAG_DIRENT);
    k.extend_from_slice(&dir.to_be_bytes());
    k
}

/// Key of the entry `name` in directory `dir`.
pub fn dirent(dir: Ino, name: &[u8]) -> LKey {
    let mut k = dirent_prefix(dir);
    escape_terminated(&mut k, name);
    k
}

/// The name inside a directory entry key built by [`dirent`].
pub fn dirent_name(key: &[u8]) -> Option<Vec<u8>> {
    if key.len() < 9 || key[0] != TAG_DIRENT {
        return None;
    }
    unescape(&key[9..])
}

/// Key of chunk `index` of file `ino`.
pub fn chunk(ino: Ino, index: u64) -> LKey {
    let mut k = Vec::with_capacity(17);
    k.push(TAG_CHUNK);
    k.extend_from_slice(&ino.to_be_bytes());
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// Key of the node-state entry `key`.
pub fn meta(key: &[u8]) -> LKey {
    let mut k = vec![TAG_META];
    escape_terminated(&mut k, key);
    k
}

/// Prefix of every node-state key that starts with `prefix`.
pub fn meta_prefix(prefix: &[u8]) -> LKey {
    let mut k = vec![TAG_META];
    escape_into(&mut k, prefix);
    k
}

/// The caller's key inside a node-state key built by [`meta`].
pub fn meta_name(key: &[u8]) -> Option<Vec<u8>> {
    if key.first() != Some(&TAG_META) {
        return None;
    }
    unescape(&key[1..])
}

/// The jmt key hash of a logical key (SHA-256, as jmt computes it).
pub fn key_hash(key: &[u8]) -> jmt::KeyHash {
    jmt::KeyHash::with::<sha2::Sha256>(key)
}

/// Value-store key: logical key followed by the height it was written at.
pub fn versioned(key: &[u8], height: Height) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 8);
    versioned_into(&mut k, key, height);
    k
}

/// [`versioned`] into `out` (cleared first), to reuse one buffer.
pub fn versioned_into(out: &mut Vec<u8>, key: &[u8], height: Height) {
    out.clear();
    out.extend_from_slice(key);
    out.extend_from_slice(&height.to_be_bytes());
}

/// Splits a value-store key into logical key and height.
pub fn split_versioned(k: &[u8]) -> Option<(&[u8], Height)> {
    let cut = k.len().checked_sub(8)?;
    let mut h = [0u8; 8];
    h.copy_from_slice(&k[cut..]);
    Some((&k[..cut], Height::from_be_bytes(h)))
}

/// Node-store key: jmt version (u64 big-endian), the nibble count (one byte), then the
/// nibbles packed two per byte (an odd count leaves the last low nibble 0).
pub fn node_key(nk: &jmt::storage::NodeKey) -> Vec<u8> {
    let path: Vec<u8> = nk.nibble_path().nibbles().map(u8::from).collect();
    let mut k = Vec::with_capacity(9 + path.len().div_ceil(2));
    k.extend_from_slice(&nk.version().to_be_bytes());
    k.push(path.len() as u8);
    for pair in path.chunks(2) {
        k.push((pair[0] << 4) | pair.get(1).copied().unwrap_or(0));
    }
    k
}

/// Kind byte of the stale record listing the tree nodes a height superseded.
pub const STALE_NODES: u8 = 3;
/// Kind byte of the stale record listing the logical keys a height changed (their older
/// versions become unreadable once that height is the oldest retained).
pub const STALE_VALUES: u8 = 4;

/// Stale-index key: the height from which the listed records are stale and a kind byte.
/// Ordered by height so pruning scans a prefix. One record per kind per height, its value
/// a list (see [`push_list_item`]): one RocksDB entry per commit instead of one per node.
pub fn stale(since: Height, kind: u8) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&since.to_be_bytes());
    k[8] = kind;
    k
}

/// Appends `item` to a list value: `len (u32 big-endian) ‖ item`.
pub fn push_list_item(list: &mut Vec<u8>, item: &[u8]) {
    list.extend_from_slice(&(item.len() as u32).to_be_bytes());
    list.extend_from_slice(item);
}

/// The items of a list value built by [`push_list_item`]; `None` if it is malformed.
pub fn list_items(mut list: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !list.is_empty() {
        let (len, rest) = list.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return None;
        }
        let (item, rest) = rest.split_at(len);
        out.push(item);
        list = rest;
    }
    Some(out)
}

/// Key of the root hash committed at `height` in the `roots` column family.
pub fn root(height: Height) -> [u8; 8] {
    height.to_be_bytes()
}

/// Bookkeeping keys in the `state` column family (not part of the root).
pub mod state {
    /// The latest committed height.
    pub const LATEST: &[u8] = b"latest";
    /// The oldest height still readable (everything below was pruned).
    pub const RETAINED: &[u8] = b"retained";
    /// The inode allocator and usage counters as of the latest height.
    pub const ALLOC: &[u8] = b"alloc";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_prefix_free_and_order_preserving() {
        let names: Vec<&[u8]> = vec![b"", b"a", b"a\0", b"a\0b", b"a\x01", b"ab", b"b", b"\0"];
        let mut sorted = names.clone();
        sorted.sort();
        let keys: Vec<LKey> = sorted.iter().map(|n| dirent(7, n)).collect();
        for w in keys.windows(2) {
            assert!(w[0] < w[1], "escaped keys must keep name order");
        }
        for a in &keys {
            for b in &keys {
                if a != b {
                    assert!(!b.starts_with(a), "no key may prefix another");
                }
            }
        }
        for n in names {
            assert_eq!(dirent_name(&dirent(7, n)).as_deref(), Some(n));
        }
    }

    #[test]
    fn meta_prefix_matches_meta_keys() {
        assert!(meta(b"proc/\x001").starts_with(&meta_prefix(b"proc/\x00")));
        assert!(!meta(b"proc").starts_with(&meta_prefix(b"proc/")));
        assert_eq!(meta_name(&meta(b"x\0y")).as_deref(), Some(&b"x\0y"[..]));
    }

    #[test]
    fn list_round_trips() {
        let mut l = Vec::new();
        for item in [&b"abc"[..], b"", b"\x00\x01"] {
            push_list_item(&mut l, item);
        }
        assert_eq!(list_items(&l), Some(vec![&b"abc"[..], b"", b"\x00\x01"]));
        assert_eq!(list_items(&l[..l.len() - 1]), None);
    }

    #[test]
    fn versioned_round_trips() {
        let k = versioned(&inode(3), 42);
        assert_eq!(split_versioned(&k), Some((&inode(3)[..], 42)));
    }
}
