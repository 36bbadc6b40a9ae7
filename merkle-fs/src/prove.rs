//! Proof generation (needs the database; verification in [`crate::proof`] does not).

use crate::codec::{Dirent, InodeBody};
use crate::error::{Error, Result};
use crate::keys::{self, Height};
use crate::proof::{FileRangeProof, KeyProof, ListingProof, PathProof};
use crate::read::{components, FsRead};
use crate::{FileKind, Ino, Store, CHUNK_SIZE, INLINE_MAX, ROOT_INO};

/// Where a path resolution ended.
enum Resolved {
    Found(Ino, FileKind),
    Absent,
}

impl Store {
    fn prove_resolution(&self, height: Height, path: &[u8]) -> Result<(PathProof, Resolved)> {
        self.check_height(height)?;
        let comps: Vec<&[u8]> = components(path).collect();
        let mut steps = Vec::with_capacity(comps.len());
        let mut dir = ROOT_INO;
        let mut kind = FileKind::Directory;
        for (i, comp) in comps.iter().enumerate() {
            let step: KeyProof = self.prove_key(&keys::dirent(dir, comp), height)?;
            let entry = match &step.value {
                None => None,
                Some(raw) => Some(Dirent::decode(raw).ok_or_else(|| Error::Corrupt {
                    what: format!(
                        "entry {:?} of directory inode {dir}",
                        String::from_utf8_lossy(comp)
                    ),
                    height,
                })?),
            };
            steps.push(step);
            match entry {
                None => return Ok((PathProof { steps }, Resolved::Absent)),
                Some(e) if i + 1 < comps.len() && e.kind != FileKind::Directory => {
                    return Ok((PathProof { steps }, Resolved::Absent))
                }
                Some(e) => {
                    dir = e.ino;
                    kind = e.kind;
                }
            }
        }
        Ok((PathProof { steps }, Resolved::Found(dir, kind)))
    }

    /// Proves that `path` exists (returns the proof either way; verify with
    /// [`crate::proof::verify_path`] / [`crate::proof::verify_absent`]).
    pub fn prove_path(&self, height: Height, path: &[u8]) -> Result<PathProof> {
        Ok(self.prove_resolution(height, path)?.0)
    }

    /// Proves bytes `[offset, offset + len)` of the regular file at `path`.
    pub fn prove_file_range(
        &self,
        height: Height,
        path: &[u8],
        offset: u64,
        len: u64,
    ) -> Result<FileRangeProof> {
        let (proof, resolved) = self.prove_resolution(height, path)?;
        let ino = match resolved {
            Resolved::Found(ino, FileKind::Regular) => ino,
            Resolved::Found(ino, _) => {
                return Err(Error::Invalid(format!("inode {ino} is not a regular file")))
            }
            Resolved::Absent => {
                return Err(Error::NotFound(format!(
                    "path {:?}",
                    String::from_utf8_lossy(path)
                )))
            }
        };
        let inode = self.prove_key(&keys::inode(ino), height)?;
        let size = match self.at(height)?.inode(ino)?.body {
            InodeBody::File { size, .. } => size,
            _ => return Err(Error::Invalid(format!("inode {ino} is not a regular file"))),
        };
        let end = size.min(offset.saturating_add(len));
        let mut chunks = Vec::new();
        if offset < end && size > INLINE_MAX {
            for idx in offset / CHUNK_SIZE..=(end - 1) / CHUNK_SIZE {
                chunks.push(self.prove_key(&keys::chunk(ino, idx), height)?);
            }
        }
        Ok(FileRangeProof {
            path: proof,
            inode,
            chunks,
        })
    }

    /// Proves the complete listing of the directory at `path`.
    pub fn prove_listing(&self, height: Height, path: &[u8]) -> Result<ListingProof> {
        let (proof, resolved) = self.prove_resolution(height, path)?;
        let ino = match resolved {
            Resolved::Found(ino, FileKind::Directory) => ino,
            Resolved::Found(ino, _) => return Err(Error::NotDir(format!("inode {ino}"))),
            Resolved::Absent => {
                return Err(Error::NotFound(format!(
                    "path {:?}",
                    String::from_utf8_lossy(path)
                )))
            }
        };
        let inode = self.prove_key(&keys::inode(ino), height)?;
        let entries = self
            .at(height)?
            .readdir(ino)?
            .into_iter()
            .map(|e| {
                (
                    e.name,
                    Dirent {
                        ino: e.ino,
                        kind: e.kind,
                    }
                    .encode(),
                )
            })
            .collect();
        Ok(ListingProof {
            path: proof,
            inode,
            entries,
        })
    }
}
