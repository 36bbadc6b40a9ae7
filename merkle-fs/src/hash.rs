//! Domain-separated SHA-256 hashing for the structures this crate defines itself.
//!
//! jmt separates its own leaf and internal nodes; the directory listing tree below
//! separates leaf (`0x00`), inner (`0x01`) and empty (`0x02`) so a leaf can never be
//! passed off as an inner node (the second-preimage gap plain Merkle trees have).

use sha2::{Digest, Sha256};

use crate::{codec::Dirent, keys};

const LEAF: u8 = 0x00;
const INNER: u8 = 0x01;
const EMPTY: u8 = 0x02;
const LISTING_DOMAIN: &[u8] = b"merkle-fs/listing/v1";

/// SHA-256 of the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Leaf hash of one directory entry: name length, name, and the entry value.
pub fn listing_leaf(name: &[u8], entry: &Dirent) -> [u8; 32] {
    let len = (name.len() as u64).to_be_bytes();
    sha256(&[LISTING_DOMAIN, &[LEAF], &len, name, &entry.encode()])
}

/// Root of the listing tree over leaves sorted by name (RFC 6962 shape: split at the
/// largest power of two below the count, so the shape depends only on the count).
pub fn listing_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => sha256(&[LISTING_DOMAIN, &[EMPTY]]),
        1 => leaves[0],
        n => {
            let split = n.next_power_of_two() / 2;
            let l = listing_root(&leaves[..split]);
            let r = listing_root(&leaves[split..]);
            sha256(&[LISTING_DOMAIN, &[INNER], &l, &r])
        }
    }
}

/// Listing root of sorted `(name, entry)` pairs.
pub fn listing_root_of<'a>(entries: impl IntoIterator<Item = (&'a [u8], &'a Dirent)>) -> [u8; 32] {
    let leaves: Vec<[u8; 32]> = entries
        .into_iter()
        .map(|(n, e)| listing_leaf(n, e))
        .collect();
    listing_root(&leaves)
}

/// Checksum stored beside every value (equal to jmt's value hash, SHA-256 of the
/// value), so a corrupted value is caught on read without walking the tree.
pub fn value_checksum(value: &[u8]) -> [u8; 32] {
    sha256(&[value])
}

/// Hash of a logical key as jmt sees it (re-exported for proofs).
pub fn key_hash(key: &[u8]) -> jmt::KeyHash {
    keys::key_hash(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_root_depends_on_every_leaf_and_count() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        let c = [3u8; 32];
        assert_ne!(listing_root(&[a, b]), listing_root(&[b, a]));
        assert_ne!(listing_root(&[a, b, c]), listing_root(&[a, b]));
        assert_ne!(listing_root(&[]), listing_root(&[a]));
    }
}
