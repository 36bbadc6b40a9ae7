//! Lowest-free inode allocation.
//!
//! Inode numbers are observable (`st_ino`) and part of the committed state, so the
//! allocator must not remember history: its state is a pure function of the set of
//! live inodes (`high` = one past the largest live inode, `free` = the gaps below it),
//! which is what freeing in [`Alloc::free`] maintains.

use std::collections::BTreeSet;

use crate::Ino;

/// The inode allocator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alloc {
    /// One past the largest live inode.
    high: Ino,
    /// Unused inodes below `high`.
    free: BTreeSet<Ino>,
}

impl Alloc {
    /// An allocator with no live inodes (the first allocation is 1, the root).
    pub fn new() -> Alloc {
        Alloc {
            high: 1,
            free: BTreeSet::new(),
        }
    }

    /// Takes the lowest unused inode number.
    pub fn alloc(&mut self) -> Ino {
        if let Some(ino) = self.free.pop_first() {
            return ino;
        }
        self.high += 1;
        self.high - 1
    }

    /// Returns `ino` to the pool, keeping the canonical form.
    pub fn free(&mut self, ino: Ino) {
        if ino + 1 == self.high {
            self.high -= 1;
            while self.free.last().is_some_and(|&last| last + 1 == self.high) {
                self.free.pop_last();
                self.high -= 1;
            }
        } else if ino < self.high {
            self.free.insert(ino);
        }
    }

    /// Encodes as `high ‖ count ‖ free…`, u64 big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(16 + 8 * self.free.len());
        v.extend_from_slice(&self.high.to_be_bytes());
        v.extend_from_slice(&(self.free.len() as u64).to_be_bytes());
        for ino in &self.free {
            v.extend_from_slice(&ino.to_be_bytes());
        }
        v
    }

    /// Decodes [`Alloc::encode`].
    pub fn decode(v: &[u8]) -> Option<Alloc> {
        let mut words = v.chunks_exact(8).map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            u64::from_be_bytes(b)
        });
        if !v.len().is_multiple_of(8) {
            return None;
        }
        let high = words.next()?;
        let count = words.next()?;
        let free: BTreeSet<Ino> = words.collect();
        (free.len() as u64 == count).then_some(Alloc { high, free })
    }
}

impl Default for Alloc {
    fn default() -> Self {
        Alloc::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_lowest_and_forgets_history() {
        let mut a = Alloc::new();
        let inos: Vec<Ino> = (0..5).map(|_| a.alloc()).collect();
        assert_eq!(inos, vec![1, 2, 3, 4, 5]);
        a.free(2);
        a.free(4);
        assert_eq!(a.alloc(), 2);
        a.free(5);
        a.free(2);
        // Live set {1, 3}: same state as allocating 1..=3 and freeing 2.
        let mut b = Alloc::new();
        for _ in 0..3 {
            b.alloc();
        }
        b.free(2);
        assert_eq!(a, b);
        assert_eq!(Alloc::decode(&a.encode()), Some(a));
    }
}
