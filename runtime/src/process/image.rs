//! Encoding of a process's linear memory inside a snapshot.
//!
//! Why elide zero pages: a fresh C heap is mostly zeros and a 16 MiB process
//! typically touches a fraction of it, so snapshots store only non-zero 4 KiB
//! pages. Layout: `u64` memory length, `u32` count of stored pages, then for
//! each stored page (ascending) its `u32` page index and 4096 bytes.

use super::codec::{DecodeError, Reader, Writer};
use super::digest::PAGE_SIZE;

/// Largest memory a snapshot may describe (wasm32: 4 GiB).
pub(crate) const MAX_MEMORY: u64 = 1 << 32;

pub fn encode_memory(memory: &[u8], w: &mut Writer) {
    w.u64(memory.len() as u64);
    let nonzero: Vec<(usize, &[u8])> = memory
        .chunks(PAGE_SIZE)
        .enumerate()
        .filter(|(_, page)| page.iter().any(|b| *b != 0))
        .collect();
    w.u32(nonzero.len() as u32);
    for (index, page) in nonzero {
        w.u32(index as u32);
        w.raw(page);
        // Memory sizes are multiples of 64 KiB, so every page is full; keep the
        // layout fixed-size even if that ever changes.
        w.raw(&vec![0u8; PAGE_SIZE - page.len()]);
    }
}

pub fn decode_memory(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    let len = r.u64("memory length")?;
    if len > MAX_MEMORY || len % 65536 != 0 {
        return Err(DecodeError::Invalid {
            what: "memory length",
            value: len,
        });
    }
    let mut memory = vec![0u8; len as usize];
    let pages = r.u32("stored page count")?;
    let mut last: Option<u32> = None;
    for _ in 0..pages {
        let index = r.u32("page index")?;
        let start = index as usize * PAGE_SIZE;
        if last.is_some_and(|l| index <= l) || start + PAGE_SIZE > memory.len() {
            return Err(DecodeError::Invalid {
                what: "page index",
                value: u64::from(index),
            });
        }
        last = Some(index);
        memory[start..start + PAGE_SIZE].copy_from_slice(r.take(PAGE_SIZE, "page bytes")?);
    }
    Ok(memory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_elides_zero_pages() {
        let mut mem = vec![0u8; 2 * 65536];
        mem[5] = 1;
        mem[65536 + 4095] = 2;
        let mut w = Writer::new();
        encode_memory(&mem, &mut w);
        let bytes = w.into_bytes();
        assert_eq!(bytes.len(), 8 + 4 + 2 * (4 + PAGE_SIZE));
        let mut r = Reader::new(&bytes);
        assert_eq!(decode_memory(&mut r).unwrap(), mem);
        r.finish().unwrap();
    }

    #[test]
    fn rejects_out_of_range_page() {
        let mut w = Writer::new();
        w.u64(65536);
        w.u32(1);
        w.u32(16);
        w.raw(&[0u8; PAGE_SIZE]);
        let bytes = w.into_bytes();
        assert!(decode_memory(&mut Reader::new(&bytes)).is_err());
    }
}
