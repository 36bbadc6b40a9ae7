//! The content digest of a filesystem, shared by every [`FileSystem`] implementation.
//!
//! Computed only through the trait, so `MemFs` and the merkle-fs adapter give the same
//! digest for the same content: that is what lets `replicode run --digest` be compared
//! with a validator's state. Inode numbers are deliberately left out (they are an
//! allocation detail); names, kinds, sizes, link counts, logical times and bytes are in.
//! Every integer is encoded little-endian with a fixed width and every variable-length
//! field is length-prefixed, so no two different trees share an encoding.
//!
//! The walk uses an explicit stack rather than recursion: a guest can nest directories
//! as deep as its inode quota allows, and the host's native stack must not decide
//! whether the digest can be computed.

use sha2::{Digest, Sha256};

use super::{Attr, FileKind, FileSystem, Ino, ROOT_INO};

/// Chunk size used to stream file contents into the hash without copying whole files.
const CHUNK: usize = 64 * 1024;

/// Computes the digest of everything reachable from [`ROOT_INO`].
pub fn digest<F: FileSystem + ?Sized>(fs: &F) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"replicode-fs-digest-v1");
    let mut buf = vec![0u8; CHUNK];
    // Stack of directory iterators: (entries, next index). An entry record is emitted
    // when it is reached; a directory's children follow it, closed by an end marker.
    let mut stack: Vec<(Vec<super::DirEntry>, usize)> = Vec::new();
    hash_node(fs, &mut h, b"", ROOT_INO, &mut buf, &mut stack);
    while let Some((entries, idx)) = stack.last_mut() {
        match entries.get(*idx) {
            Some(entry) => {
                *idx += 1;
                let (name, ino) = (entry.name.clone(), entry.ino);
                hash_node(fs, &mut h, &name, ino, &mut buf, &mut stack);
            }
            None => {
                stack.pop();
                h.update([b'E']);
            }
        }
    }
    h.finalize().into()
}

/// Hashes one inode's record; for a directory, pushes its listing onto `stack`.
fn hash_node<F: FileSystem + ?Sized>(
    fs: &F,
    h: &mut Sha256,
    name: &[u8],
    ino: Ino,
    buf: &mut [u8],
    stack: &mut Vec<(Vec<super::DirEntry>, usize)>,
) {
    let attr = match fs.getattr(ino) {
        Ok(a) => a,
        Err(e) => {
            // Cannot happen for a consistent filesystem; hashed so it is still visible.
            h.update([b'X']);
            h.update(e.raw().to_le_bytes());
            return;
        }
    };
    h.update([kind_tag(attr.kind)]);
    h.update((name.len() as u64).to_le_bytes());
    h.update(name);
    hash_attr(h, &attr);
    match attr.kind {
        FileKind::Regular => hash_contents(fs, h, ino, attr.size, buf),
        FileKind::Symlink => {
            let target = fs.readlink(ino).unwrap_or_default();
            h.update((target.len() as u64).to_le_bytes());
            h.update(&target);
        }
        FileKind::Directory => {
            let entries = fs.readdir(ino).unwrap_or_default();
            stack.push((entries, 0));
        }
    }
}

fn hash_attr(h: &mut Sha256, a: &Attr) {
    h.update(a.size.to_le_bytes());
    h.update(a.nlink.to_le_bytes());
    h.update(a.atime_ns.to_le_bytes());
    h.update(a.mtime_ns.to_le_bytes());
    h.update(a.ctime_ns.to_le_bytes());
}

fn hash_contents<F: FileSystem + ?Sized>(
    fs: &F,
    h: &mut Sha256,
    ino: Ino,
    size: u64,
    buf: &mut [u8],
) {
    let mut offset = 0u64;
    while offset < size {
        match fs.read(ino, offset, buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                offset += n as u64;
            }
        }
    }
}

fn kind_tag(kind: FileKind) -> u8 {
    match kind {
        FileKind::Regular => b'F',
        FileKind::Directory => b'D',
        FileKind::Symlink => b'L',
    }
}
