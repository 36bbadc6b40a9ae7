//! Value encodings (big-endian, tagged) of inode records and directory entries.
//!
//! The first byte of every value names its type, so a value can never be read as
//! another type's value and the hashes of different types are domain-separated even
//! though jmt hashes all values the same way.

use crate::{FileKind, Ino};

/// Value tag of a regular-file inode record.
pub const V_FILE: u8 = 0x11;
/// Value tag of a directory inode record.
pub const V_DIR: u8 = 0x12;
/// Value tag of a symlink inode record.
pub const V_SYMLINK: u8 = 0x13;
/// Value tag of a directory entry.
pub const V_DIRENT: u8 = 0x14;

/// Attributes shared by every inode record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    /// What the inode is, with the kind-specific part.
    pub body: InodeBody,
    /// Directory entries naming it (directories: 2 + subdirectories).
    pub nlink: u64,
    /// Open handles keeping it alive (`retain`/`release`); part of the state because
    /// processes and their fds are.
    pub open: u64,
    /// Logical access time.
    pub atime_ns: u64,
    /// Logical modification time.
    pub mtime_ns: u64,
    /// Logical status-change time.
    pub ctime_ns: u64,
}

/// The kind-specific part of an inode record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InodeBody {
    /// A regular file of `size` bytes: content inline when `size <= INLINE_MAX`,
    /// otherwise in `ceil(size / CHUNK_SIZE)` chunks (and `inline` is empty).
    File { size: u64, inline: Vec<u8> },
    /// A directory inside `parent` (itself for the root) with `entries` names whose
    /// sorted listing hashes to `listing_root`. The parent is kept so `rename` can refuse
    /// to move a directory into its own subtree without a search.
    Dir {
        entries: u64,
        parent: Ino,
        listing_root: [u8; 32],
    },
    /// A symlink with its target bytes.
    Symlink { target: Vec<u8> },
}

impl Inode {
    /// The file kind of this inode.
    pub fn kind(&self) -> FileKind {
        match self.body {
            InodeBody::File { .. } => FileKind::Regular,
            InodeBody::Dir { .. } => FileKind::Directory,
            InodeBody::Symlink { .. } => FileKind::Symlink,
        }
    }

    /// The `size` attribute: bytes, target length, or entry count.
    pub fn size(&self) -> u64 {
        match &self.body {
            InodeBody::File { size, .. } => *size,
            InodeBody::Dir { entries, .. } => *entries,
            InodeBody::Symlink { target } => target.len() as u64,
        }
    }

    /// Encodes as `tag ‖ nlink ‖ open ‖ atime ‖ mtime ‖ ctime ‖ body`, all u64 big-endian;
    /// body = `size ‖ inline content` (file), `entries ‖ parent ‖ listing_root` (dir), target bytes (symlink).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(41 + 40);
        v.push(match self.body {
            InodeBody::File { .. } => V_FILE,
            InodeBody::Dir { .. } => V_DIR,
            InodeBody::Symlink { .. } => V_SYMLINK,
        });
        for n in [
            self.nlink,
            self.open,
            self.atime_ns,
            self.mtime_ns,
            self.ctime_ns,
        ] {
            v.extend_from_slice(&n.to_be_bytes());
        }
        match &self.body {
            InodeBody::File { size, inline } => {
                v.extend_from_slice(&size.to_be_bytes());
                v.extend_from_slice(inline);
            }
            InodeBody::Dir {
                entries,
                parent,
                listing_root,
            } => {
                v.extend_from_slice(&entries.to_be_bytes());
                v.extend_from_slice(&parent.to_be_bytes());
                v.extend_from_slice(listing_root);
            }
            InodeBody::Symlink { target } => v.extend_from_slice(target),
        }
        v
    }

    /// Decodes [`Inode::encode`]; `None` if the bytes are not an inode record.
    pub fn decode(v: &[u8]) -> Option<Inode> {
        let (&tag, rest) = v.split_first()?;
        let mut r = Reader(rest);
        let nlink = r.u64()?;
        let open = r.u64()?;
        let atime_ns = r.u64()?;
        let mtime_ns = r.u64()?;
        let ctime_ns = r.u64()?;
        let body = match tag {
            V_FILE => {
                let size = r.u64()?;
                let inline = r.0.to_vec();
                let expect = if size <= crate::INLINE_MAX { size } else { 0 };
                if inline.len() as u64 != expect {
                    return None;
                }
                InodeBody::File { size, inline }
            }
            V_DIR => {
                let entries = r.u64()?;
                let parent = r.u64()?;
                let listing_root = r.array32()?;
                r.end()?;
                InodeBody::Dir {
                    entries,
                    parent,
                    listing_root,
                }
            }
            V_SYMLINK => InodeBody::Symlink {
                target: r.0.to_vec(),
            },
            _ => return None,
        };
        Some(Inode {
            body,
            nlink,
            open,
            atime_ns,
            mtime_ns,
            ctime_ns,
        })
    }
}

/// The value of a directory entry: the inode it names and that inode's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dirent {
    /// The named inode.
    pub ino: Ino,
    /// Its kind (kinds never change, so this never goes stale).
    pub kind: FileKind,
}

fn kind_byte(kind: FileKind) -> u8 {
    match kind {
        FileKind::Regular => 1,
        FileKind::Directory => 2,
        FileKind::Symlink => 3,
    }
}

fn byte_kind(b: u8) -> Option<FileKind> {
    match b {
        1 => Some(FileKind::Regular),
        2 => Some(FileKind::Directory),
        3 => Some(FileKind::Symlink),
        _ => None,
    }
}

impl Dirent {
    /// Encodes as `tag ‖ ino ‖ kind`.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(10);
        v.push(V_DIRENT);
        v.extend_from_slice(&self.ino.to_be_bytes());
        v.push(kind_byte(self.kind));
        v
    }

    /// Decodes [`Dirent::encode`]; `None` if the bytes are not a directory entry.
    pub fn decode(v: &[u8]) -> Option<Dirent> {
        if v.len() != 10 || v[0] != V_DIRENT {
            return None;
        }
        let mut r = Reader(&v[1..]);
        let ino = r.u64()?;
        let kind = byte_kind(*r.0.first()?)?;
        Some(Dirent { ino, kind })
    }
}

/// A cursor over big-endian fields.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u64(&mut self) -> Option<u64> {
        let (head, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(u64::from_be_bytes(*head))
    }
    fn array32(&mut self) -> Option<[u8; 32]> {
        let (head, rest) = self.0.split_first_chunk::<32>()?;
        self.0 = rest;
        Some(*head)
    }
    fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inode_round_trips_every_kind() {
        for body in [
            InodeBody::File {
                size: 3,
                inline: b"abc".to_vec(),
            },
            InodeBody::File {
                size: 1 << 20,
                inline: vec![],
            },
            InodeBody::Dir {
                entries: 3,
                parent: 1,
                listing_root: [9; 32],
            },
            InodeBody::Symlink {
                target: b"../x".to_vec(),
            },
        ] {
            let i = Inode {
                body,
                nlink: 2,
                open: 1,
                atime_ns: 3,
                mtime_ns: 4,
                ctime_ns: 5,
            };
            assert_eq!(Inode::decode(&i.encode()), Some(i));
        }
        assert_eq!(Inode::decode(&[V_FILE, 1, 2]), None);
    }

    #[test]
    fn dirent_round_trips() {
        let d = Dirent {
            ino: 12,
            kind: FileKind::Symlink,
        };
        assert_eq!(Dirent::decode(&d.encode()), Some(d));
        assert_eq!(Dirent::decode(&[V_DIRENT]), None);
    }
}
