//! Path resolution, confined to a directory descriptor.
//!
//! A guest path is resolved component by component from the directory of the fd it is
//! relative to, keeping a stack of the directory inodes walked through. `..` pops the
//! stack and can never pop the starting directory (`ENOTCAPABLE`), so no path — however
//! it mixes `..` and symlinks — leaves the capability it was given. Symlink targets are
//! spliced in front of the remaining components; absolute targets are refused
//! (`ENOTCAPABLE`) and more than [`MAX_SYMLINK_HOPS`] expansions is `ELOOP`.
//! Resolution never recurses, so its cost and failure modes do not depend on the
//! host's native stack, and every component walked is charged to the call's
//! [`Meter`] before its lookup (symlink targets are charged per byte too).

use std::borrow::Cow;

use super::cost::{self, Meter};
use crate::errno::Errno;
use crate::fs::{FileKind, FileSystem, Ino, NAME_MAX};

/// Most symlinks followed while resolving one path (Linux's limit).
pub const MAX_SYMLINK_HOPS: u32 = 40;

/// The final component of a path resolved for creation or removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Last<'p> {
    /// A plain name.
    Name(&'p [u8]),
    /// "." — the directory itself.
    Dot,
    /// ".." — the parent.
    DotDot,
}

/// A path split into its resolved parent directory and final component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent<'p> {
    /// The directory containing the final component.
    pub dir: Ino,
    /// The final component.
    pub last: Last<'p>,
    /// Whether the path ended in '/' (the final component must be a directory).
    pub trailing_slash: bool,
}

impl<'p> Parent<'p> {
    /// The final name, or `err` if it is "." or "..".
    pub fn name_or(&self, err: Errno) -> Result<&'p [u8], Errno> {
        match self.last {
            Last::Name(n) => Ok(n),
            Last::Dot | Last::DotDot => Err(err),
        }
    }
}

/// A run of path bytes still to be walked.
struct Segment<'p> {
    bytes: Cow<'p, [u8]>,
    pos: usize,
}

impl Segment<'_> {
    /// The next non-empty component, advancing past it and the slashes after it
    /// (so [`Segment::has_more`] is O(1) and no byte is scanned twice).
    fn next(&mut self) -> Option<(usize, usize)> {
        let bytes: &[u8] = &self.bytes;
        let skip = |from: usize| {
            let rest = bytes.get(from..).unwrap_or_default();
            from + rest.iter().position(|&b| b != b'/').unwrap_or(rest.len())
        };
        let start = skip(self.pos);
        let rest = bytes.get(start..).unwrap_or_default();
        let len = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
        self.pos = skip(start + len);
        (len > 0).then_some((start, start + len))
    }

    /// Whether a non-empty component remains.
    fn has_more(&self) -> bool {
        self.pos < self.bytes.len()
    }
}

fn check_relative(path: &[u8]) -> Result<(), Errno> {
    match path.first() {
        None => Err(Errno::Noent),
        Some(b'/') => Err(Errno::Notcapable),
        Some(_) => Ok(()),
    }
}

/// Resolves `path` relative to directory `root`. The final component is followed if it
/// is a symlink and `follow_last` is set (or the path ends in '/'). Returns the inode and
/// its kind.
pub fn resolve(
    fs: &dyn FileSystem,
    root: Ino,
    path: &[u8],
    follow_last: bool,
    meter: &Meter,
) -> Result<(Ino, FileKind), Errno> {
    check_relative(path)?;
    let trailing_slash = path.last() == Some(&b'/');
    let follow_last = follow_last || trailing_slash;
    let mut stack: Vec<Ino> = vec![root];
    let mut segs: Vec<Segment<'_>> = vec![Segment {
        bytes: Cow::Borrowed(path),
        pos: 0,
    }];
    let mut hops = 0u32;
    // The current component, copied out so the segment stack can change under it.
    let mut comp: Vec<u8> = Vec::with_capacity(64);
    while let Some(seg) = segs.last_mut() {
        let Some((start, end)) = seg.next() else {
            segs.pop();
            continue;
        };
        comp.clear();
        comp.extend_from_slice(seg.bytes.get(start..end).unwrap_or_default());
        let more = segs.iter().any(Segment::has_more);
        let cur = *stack.last().ok_or(Errno::Notcapable)?;
        let price = match comp.as_slice() {
            b"." | b".." => cost::DOT_COMPONENT,
            _ => cost::LOOKUP,
        };
        meter.charge(price)?;
        match comp.as_slice() {
            b"." => {}
            b".." => {
                if stack.len() == 1 {
                    return Err(Errno::Notcapable);
                }
                stack.pop();
            }
            name => {
                if name.len() > NAME_MAX {
                    return Err(Errno::Nametoolong);
                }
                let child = fs.lookup(cur, name)?;
                match fs.getattr(child)?.kind {
                    FileKind::Directory => stack.push(child),
                    FileKind::Symlink if more || follow_last => {
                        hops += 1;
                        if hops > MAX_SYMLINK_HOPS {
                            return Err(Errno::Loop);
                        }
                        let target = fs.readlink(child)?;
                        if target.first() == Some(&b'/') {
                            return Err(Errno::Notcapable);
                        }
                        meter.charge(cost::per(target.len() as u64, cost::COPY_BYTE))?;
                        segs.push(Segment {
                            bytes: Cow::Owned(target),
                            pos: 0,
                        });
                    }
                    kind @ (FileKind::Symlink | FileKind::Regular) => {
                        if more || trailing_slash {
                            return Err(Errno::Notdir);
                        }
                        return Ok((child, kind));
                    }
                }
            }
        }
    }
    let dir = *stack.last().ok_or(Errno::Notcapable)?;
    Ok((dir, FileKind::Directory))
}

/// Resolves all but the final component of `path` (following symlinks), for calls that
/// create, remove or rename the final component itself.
pub fn resolve_parent<'p>(
    fs: &dyn FileSystem,
    root: Ino,
    path: &'p [u8],
    meter: &Meter,
) -> Result<Parent<'p>, Errno> {
    check_relative(path)?;
    let end = path.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
    let trimmed = path.get(..end).unwrap_or_default();
    let trailing_slash = trimmed.len() < path.len();
    let (dir_part, last) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => (
            trimmed.get(..i).unwrap_or_default(),
            trimmed.get(i + 1..).unwrap_or_default(),
        ),
        None => (&b""[..], trimmed),
    };
    let last = match last {
        b"." => Last::Dot,
        b".." => Last::DotDot,
        name if name.len() > NAME_MAX => return Err(Errno::Nametoolong),
        name => Last::Name(name),
    };
    let dir = if dir_part.is_empty() {
        root
    } else {
        match resolve(fs, root, dir_part, true, meter)? {
            (ino, FileKind::Directory) => ino,
            _ => return Err(Errno::Notdir),
        }
    };
    Ok(Parent {
        dir,
        last,
        trailing_slash,
    })
}

/// Where `O_CREAT` through a dangling symlink creates its file: follows the chain of
/// symlinks named by the final component (at most [`MAX_SYMLINK_HOPS`]) by splicing each
/// target into the path, so the result stays confined exactly like any other path.
/// Returns the directory and name of the missing final target.
pub fn resolve_dangling(
    fs: &dyn FileSystem,
    root: Ino,
    path: &[u8],
    meter: &Meter,
) -> Result<(Ino, Vec<u8>), Errno> {
    let mut cur = path.to_vec();
    for _ in 0..MAX_SYMLINK_HOPS {
        let parent = resolve_parent(fs, root, &cur, meter)?;
        meter.charge(cost::LOOKUP)?;
        let name = parent.name_or(Errno::Isdir)?.to_vec();
        let ino = match fs.lookup(parent.dir, &name) {
            Err(Errno::Noent) => return Ok((parent.dir, name)),
            Err(e) => return Err(e),
            Ok(ino) => ino,
        };
        if fs.getattr(ino)?.kind != FileKind::Symlink {
            return Err(Errno::Exist);
        }
        let target = fs.readlink(ino)?;
        if target.first() == Some(&b'/') {
            return Err(Errno::Notcapable);
        }
        meter.charge(cost::per(target.len() as u64, cost::COPY_BYTE))?;
        let trimmed_len = cur.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
        cur.truncate(trimmed_len);
        let dir_len = cur.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
        cur.truncate(dir_len);
        cur.extend_from_slice(&target);
        if cur.len() > crate::wasi::types::PATH_MAX as usize {
            return Err(Errno::Nametoolong);
        }
    }
    Err(Errno::Loop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::mem::MemFs;
    use crate::fs::{FsLimits, ROOT_INO};

    fn tree() -> (MemFs, Ino) {
        let mut fs = MemFs::new(FsLimits::default(), 0);
        let sandbox = fs.mkdir(ROOT_INO, b"sandbox", 0).expect("mkdir");
        let a = fs.mkdir(sandbox, b"a", 0).expect("mkdir");
        fs.create_file(a, b"f", 0).expect("create");
        fs.create_file(ROOT_INO, b"secret", 0).expect("create");
        fs.symlink(sandbox, b"up", b"..", 0).expect("symlink");
        fs.symlink(sandbox, b"abs", b"/secret", 0).expect("symlink");
        fs.symlink(sandbox, b"loop1", b"loop2", 0).expect("symlink");
        fs.symlink(sandbox, b"loop2", b"loop1", 0).expect("symlink");
        fs.symlink(sandbox, b"tof", b"a/f", 0).expect("symlink");
        fs.symlink(a, b"back", b"../a", 0).expect("symlink");
        (fs, sandbox)
    }

    #[test]
    fn dotdot_and_symlinks_cannot_leave_the_root() {
        let (fs, sb) = tree();
        assert_eq!(
            resolve(&fs, sb, b"..", true, &Meter::unlimited()),
            Err(Errno::Notcapable)
        );
        assert_eq!(
            resolve(&fs, sb, b"a/../../secret", true, &Meter::unlimited()),
            Err(Errno::Notcapable)
        );
        assert_eq!(
            resolve(&fs, sb, b"up/secret", true, &Meter::unlimited()),
            Err(Errno::Notcapable)
        );
        assert_eq!(
            resolve(&fs, sb, b"abs", true, &Meter::unlimited()),
            Err(Errno::Notcapable)
        );
        assert_eq!(
            resolve(&fs, sb, b"/secret", true, &Meter::unlimited()),
            Err(Errno::Notcapable)
        );
        assert_eq!(
            resolve(&fs, sb, b"a/..", true, &Meter::unlimited()),
            Ok((sb, FileKind::Directory))
        );
    }

    #[test]
    fn loops_are_eloop_and_names_are_checked() {
        let (fs, sb) = tree();
        assert_eq!(
            resolve(&fs, sb, b"loop1", true, &Meter::unlimited()),
            Err(Errno::Loop)
        );
        assert_eq!(
            resolve(&fs, sb, b"loop1/x", false, &Meter::unlimited()),
            Err(Errno::Loop)
        );
        assert_eq!(
            resolve(&fs, sb, b"loop1", false, &Meter::unlimited()).map(|r| r.1),
            Ok(FileKind::Symlink)
        );
        let long = vec![b'x'; 256];
        assert_eq!(
            resolve(&fs, sb, &long, true, &Meter::unlimited()),
            Err(Errno::Nametoolong)
        );
        assert_eq!(
            resolve(&fs, sb, b"", true, &Meter::unlimited()),
            Err(Errno::Noent)
        );
        assert_eq!(
            resolve(&fs, sb, b"a/f/x", true, &Meter::unlimited()),
            Err(Errno::Notdir)
        );
        assert_eq!(
            resolve(&fs, sb, b"a/f/", true, &Meter::unlimited()),
            Err(Errno::Notdir)
        );
        assert_eq!(
            resolve(&fs, sb, b"tof/", true, &Meter::unlimited()),
            Err(Errno::Notdir)
        );
    }

    #[test]
    fn symlinks_resolve_relative_to_their_directory() {
        let (fs, sb) = tree();
        let f = resolve(&fs, sb, b"a/f", true, &Meter::unlimited()).expect("a/f");
        assert_eq!(resolve(&fs, sb, b"tof", true, &Meter::unlimited()), Ok(f));
        assert_eq!(
            resolve(&fs, sb, b"a/back/back/./f", true, &Meter::unlimited()),
            Ok(f)
        );
        assert_eq!(resolve(&fs, sb, b"a//f", true, &Meter::unlimited()), Ok(f));
    }

    #[test]
    fn dangling_symlinks_name_their_confined_target() {
        let (mut fs, sb) = tree();
        let a = resolve(&fs, sb, b"a", true, &Meter::unlimited())
            .expect("a")
            .0;
        fs.symlink(a, b"dangle", b"../a/new", 0).expect("symlink");
        fs.symlink(sb, b"chain", b"a/dangle", 0).expect("symlink");
        fs.symlink(sb, b"out", b"../x", 0).expect("symlink");
        assert_eq!(
            resolve_dangling(&fs, sb, b"chain", &Meter::unlimited()),
            Ok((a, b"new".to_vec()))
        );
        assert_eq!(
            resolve_dangling(&fs, sb, b"a/dangle", &Meter::unlimited()),
            Ok((a, b"new".to_vec()))
        );
        assert_eq!(
            resolve_dangling(&fs, sb, b"out", &Meter::unlimited()),
            Err(Errno::Notcapable)
        );
        assert_eq!(
            resolve_dangling(&fs, sb, b"abs", &Meter::unlimited()),
            Err(Errno::Notcapable)
        );
        assert_eq!(
            resolve_dangling(&fs, sb, b"loop1", &Meter::unlimited()),
            Err(Errno::Loop)
        );
        assert_eq!(
            resolve_dangling(&fs, sb, b"tof", &Meter::unlimited()),
            Err(Errno::Exist)
        );
    }

    #[test]
    fn parent_split_handles_dots_and_trailing_slashes() {
        let (fs, sb) = tree();
        let a = resolve(&fs, sb, b"a", true, &Meter::unlimited())
            .expect("a")
            .0;
        let p = resolve_parent(&fs, sb, b"a/new/", &Meter::unlimited()).expect("parent");
        assert_eq!(
            p,
            Parent {
                dir: a,
                last: Last::Name(b"new"),
                trailing_slash: true
            }
        );
        assert_eq!(
            resolve_parent(&fs, sb, b"a/..", &Meter::unlimited()).map(|p| p.last),
            Ok(Last::DotDot)
        );
        assert_eq!(
            resolve_parent(&fs, sb, b"x", &Meter::unlimited()).map(|p| p.dir),
            Ok(sb)
        );
        assert_eq!(
            resolve_parent(&fs, sb, b"up/x", &Meter::unlimited()),
            Err(Errno::Notcapable)
        );
        assert_eq!(
            resolve_parent(&fs, sb, b"a/f/x", &Meter::unlimited()),
            Err(Errno::Notdir)
        );
    }
}
