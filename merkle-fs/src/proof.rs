//! Proof types and their verification: pure functions of (root, claim, proof), no
//! database, so a light client can check what a node tells it.
//!
//! Paths are resolved literally from the root directory (inode 1), one component at a
//! time, without following symlinks: step `i` proves the entry (or its absence) for
//! component `i` in the directory named by step `i - 1`. The final inode's record and
//! (for files) its chunks are proven against the same root. All proofs are jmt sparse
//! Merkle proofs of logical keys (see `keys`), and serialize with borsh.

use borsh::{BorshDeserialize, BorshSerialize};
use jmt::proof::SparseMerkleProof;
use jmt::RootHash;
use sha2::Sha256;

use crate::codec::{Dirent, Inode, InodeBody};
use crate::hash;
use crate::keys;
use crate::read::{chunk_len, components};
use crate::{FileKind, Ino, Root, CHUNK_SIZE, INLINE_MAX, ROOT_INO};

/// Why a proof was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    /// A Merkle proof does not match the root for the named key.
    #[error("proof of {what} does not verify against the root: {reason}")]
    Mismatch { what: String, reason: String },
    /// The proof's shape does not fit the claim (missing or extra steps, wrong kinds).
    #[error("malformed proof: {0}")]
    Malformed(String),
    /// The proof is valid but shows something other than what was claimed.
    #[error("proof shows {0}")]
    Contradicts(String),
}

/// A jmt proof of one logical key's value (`None` = the key is absent).
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct KeyProof {
    /// The proven value.
    pub value: Option<Vec<u8>>,
    /// The sparse Merkle proof.
    pub proof: SparseMerkleProof<Sha256>,
}

impl KeyProof {
    fn check(
        &self,
        root: &Root,
        key: &[u8],
        what: impl FnOnce() -> String,
    ) -> Result<(), ProofError> {
        self.proof
            .verify(RootHash(*root), keys::key_hash(key), self.value.as_ref())
            .map_err(|e| ProofError::Mismatch {
                what: what(),
                reason: format!("{e:#}"),
            })
    }
}

/// Entry proofs for each component of a path, in order.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct PathProof {
    /// One proof per resolved component (may stop early at an absent entry or a
    /// non-directory).
    pub steps: Vec<KeyProof>,
}

/// What a verified path proof shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathOutcome {
    /// The path names this inode.
    Found { ino: Ino, kind: FileKind },
    /// No such path.
    Absent,
}

/// Byte range `[offset, offset + len)` of the file at a path (clipped to its size).
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct FileRangeProof {
    /// Resolution of the path.
    pub path: PathProof,
    /// The file's inode record.
    pub inode: KeyProof,
    /// The chunks covering the range, in order.
    pub chunks: Vec<KeyProof>,
}

/// A directory's complete listing.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct ListingProof {
    /// Resolution of the path.
    pub path: PathProof,
    /// The directory's inode record (entry count and listing root).
    pub inode: KeyProof,
    /// Every entry, sorted by name: `(name, inode, kind byte)`.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Verifies a path resolution against `root`.
pub fn verify_path(root: &Root, path: &[u8], proof: &PathProof) -> Result<PathOutcome, ProofError> {
    let comps: Vec<&[u8]> = components(path).collect();
    if comps.is_empty() {
        if !proof.steps.is_empty() {
            return Err(ProofError::Malformed(
                "steps given for the root path".into(),
            ));
        }
        return Ok(PathOutcome::Found {
            ino: ROOT_INO,
            kind: FileKind::Directory,
        });
    }
    let mut dir = ROOT_INO;
    for (i, comp) in comps.iter().enumerate() {
        let step = proof
            .steps
            .get(i)
            .ok_or_else(|| ProofError::Malformed(format!("no step for component {i}")))?;
        let key = keys::dirent(dir, comp);
        step.check(root, &key, || {
            format!(
                "entry {:?} of directory inode {dir}",
                String::from_utf8_lossy(comp)
            )
        })?;
        let last = i + 1 == comps.len();
        let stop = |outcome| {
            if proof.steps.len() != i + 1 {
                Err(ProofError::Malformed(format!(
                    "{} steps after the resolution ended",
                    proof.steps.len() - i - 1
                )))
            } else {
                Ok(outcome)
            }
        };
        match &step.value {
            None => return stop(PathOutcome::Absent),
            Some(raw) => {
                let e = Dirent::decode(raw).ok_or_else(|| {
                    ProofError::Malformed(format!("undecodable entry at step {i}"))
                })?;
                if last {
                    return stop(PathOutcome::Found {
                        ino: e.ino,
                        kind: e.kind,
                    });
                }
                if e.kind != FileKind::Directory {
                    return stop(PathOutcome::Absent);
                }
                dir = e.ino;
            }
        }
    }
    Err(ProofError::Malformed("path resolution did not end".into()))
}

/// Verifies that nothing exists at `path`.
pub fn verify_absent(root: &Root, path: &[u8], proof: &PathProof) -> Result<(), ProofError> {
    match verify_path(root, path, proof)? {
        PathOutcome::Absent => Ok(()),
        PathOutcome::Found { ino, .. } => Err(ProofError::Contradicts(format!(
            "the path exists (inode {ino})"
        ))),
    }
}

fn verify_inode(root: &Root, ino: Ino, p: &KeyProof) -> Result<Inode, ProofError> {
    p.check(root, &keys::inode(ino), || format!("inode {ino}"))?;
    let raw = p
        .value
        .as_ref()
        .ok_or_else(|| ProofError::Contradicts(format!("inode {ino} does not exist")))?;
    Inode::decode(raw).ok_or_else(|| ProofError::Malformed(format!("undecodable inode {ino}")))
}

/// Verifies a byte range of the regular file at `path`; returns the proven bytes
/// (shorter than `len` when the range passes the end of the file).
pub fn verify_file_range(
    root: &Root,
    path: &[u8],
    offset: u64,
    len: u64,
    proof: &FileRangeProof,
) -> Result<Vec<u8>, ProofError> {
    let ino = match verify_path(root, path, &proof.path)? {
        PathOutcome::Found {
            ino,
            kind: FileKind::Regular,
        } => ino,
        PathOutcome::Found { kind, .. } => {
            return Err(ProofError::Contradicts(format!(
                "the path is a {kind:?}, not a file"
            )))
        }
        PathOutcome::Absent => {
            return Err(ProofError::Contradicts("the path does not exist".into()))
        }
    };
    let (size, inline) = match verify_inode(root, ino, &proof.inode)?.body {
        InodeBody::File { size, inline } => (size, inline),
        _ => {
            return Err(ProofError::Contradicts(format!(
                "inode {ino} is not a regular file"
            )))
        }
    };
    let end = size.min(offset.saturating_add(len));
    if offset >= end || size <= INLINE_MAX {
        if !proof.chunks.is_empty() {
            return Err(ProofError::Malformed(
                "chunk proofs given for inline content or an empty range".into(),
            ));
        }
        return Ok(if offset >= end {
            Vec::new()
        } else {
            inline[offset as usize..end as usize].to_vec()
        });
    }
    let first = offset / CHUNK_SIZE;
    let last = (end - 1) / CHUNK_SIZE;
    if proof.chunks.len() as u64 != last - first + 1 {
        return Err(ProofError::Malformed(format!(
            "{} chunk proofs for chunks {first}..={last}",
            proof.chunks.len()
        )));
    }
    let mut out = Vec::with_capacity((end - offset) as usize);
    for (idx, p) in (first..=last).zip(&proof.chunks) {
        p.check(root, &keys::chunk(ino, idx), || {
            format!("chunk {idx} of file inode {ino}")
        })?;
        let data = p.value.as_ref().ok_or_else(|| {
            ProofError::Contradicts(format!("chunk {idx} of inode {ino} is absent"))
        })?;
        if data.len() as u64 != chunk_len(size, idx) {
            return Err(ProofError::Malformed(format!(
                "chunk {idx} has {} bytes",
                data.len()
            )));
        }
        let cstart = idx * CHUNK_SIZE;
        let s = offset.max(cstart) - cstart;
        let e = end.min(cstart + data.len() as u64) - cstart;
        out.extend_from_slice(&data[s as usize..e as usize]);
    }
    Ok(out)
}

/// Verifies the complete listing of the directory at `path`; returns the entries.
pub fn verify_listing(
    root: &Root,
    path: &[u8],
    proof: &ListingProof,
) -> Result<Vec<crate::DirEntry>, ProofError> {
    let ino = match verify_path(root, path, &proof.path)? {
        PathOutcome::Found {
            ino,
            kind: FileKind::Directory,
        } => ino,
        PathOutcome::Found { kind, .. } => {
            return Err(ProofError::Contradicts(format!(
                "the path is a {kind:?}, not a directory"
            )))
        }
        PathOutcome::Absent => {
            return Err(ProofError::Contradicts("the path does not exist".into()))
        }
    };
    let (entries, listing_root) = match verify_inode(root, ino, &proof.inode)?.body {
        InodeBody::Dir {
            entries,
            listing_root,
            ..
        } => (entries, listing_root),
        _ => {
            return Err(ProofError::Contradicts(format!(
                "inode {ino} is not a directory"
            )))
        }
    };
    let mut decoded = Vec::with_capacity(proof.entries.len());
    for (name, raw) in &proof.entries {
        let e = Dirent::decode(raw).ok_or_else(|| {
            ProofError::Malformed(format!(
                "undecodable entry {:?}",
                String::from_utf8_lossy(name)
            ))
        })?;
        decoded.push((name.clone(), e));
    }
    if decoded.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(ProofError::Malformed(
            "entries are not strictly sorted by name".into(),
        ));
    }
    if decoded.len() as u64 != entries {
        return Err(ProofError::Contradicts(format!(
            "directory has {entries} entries, proof lists {}",
            decoded.len()
        )));
    }
    let computed = hash::listing_root_of(decoded.iter().map(|(n, d)| (n.as_slice(), d)));
    if computed != listing_root {
        return Err(ProofError::Mismatch {
            what: format!("listing of directory inode {ino}"),
            reason: "listing root differs".into(),
        });
    }
    Ok(decoded
        .into_iter()
        .map(|(name, e)| crate::DirEntry {
            name,
            ino: e.ino,
            kind: e.kind,
        })
        .collect())
}
